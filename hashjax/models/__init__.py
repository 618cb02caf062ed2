"""Model registry: config name -> model class (see base.py for the interface every model follows).

  model = make_model("multiplicative", d=64, K=100)
  params = model.init(rng, dims)
"""

from typing import Any

from hashjax.models.base import Dims, TwoTowerModel
from hashjax.models.denton import Bilinear, Multiplicative, UserBiased

MODELS = {
    "bilinear": Bilinear,
    "user_biased": UserBiased,
    "multiplicative": Multiplicative,
}

def _check_name(name: str) -> None:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}.")


def make_model(name: str, **kwargs) -> TwoTowerModel:
  """Builds the model registered as `name` with the given hyperparameters."""
  _check_name(name)
  return MODELS[name](**kwargs)


def describe(model_config: Any) -> str:
  """Report label of a config.model ({name, kwargs}) in the paper's words, e.g. "3-way mult.".

  Sizes (d, K) have their own table columns; every hyperparameter is in metrics.json.
  """
  _check_name(model_config.name)
  return MODELS[model_config.name].label


__all__ = ["Dims", "MODELS", "TwoTowerModel", "describe", "make_model"]
