"""Model registry: config name -> model class (see base.py for the interface every model follows).

  model = make_model(config.model, dataset.spec, dataset)   # config.model = {name, kwargs}
  variables = model.init(rng, dataset.spec)

A class that needs sizes from the dataset to build itself (a flax module's tag table) defines
`from_spec(spec, **hyperparameters)`; one that needs the data itself (NCSL's tag table, the
PPMI-SVD embeddings of the training posts) defines `from_dataset(dataset, **hyperparameters)`
and is built from the PostDataset; the others are built from their hyperparameters alone.
"""

from hashjax.models.concat_mlp import ConcatMLP
from hashjax.models.denton import Bilinear, Multiplicative, UserBiased
from hashjax.models.mlp import MLPClassifier
from hashjax.models.durand import Durand
from hashjax.models.ncsl import NCSL
from hashjax.models.okboomer import HashtagGenerator
from hashjax.models.tensor import Tensor

MODELS = {cls.name: cls for cls in (Bilinear, UserBiased, Multiplicative, MLPClassifier,
                                      Tensor, NCSL, ConcatMLP, Durand, HashtagGenerator)}


def make_model(model_config, spec=None, dataset=None):
  """Builds the model config.model = {name, kwargs} names, sized for `spec` where it needs it
  (or built from `dataset`, a PostDataset, if it defines from_dataset)."""
  name, kwargs = model_config["name"], dict(model_config.get("kwargs", {}))
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}.")
  cls = MODELS[name]
  if hasattr(cls, "from_dataset"):
    if dataset is None:
      raise ValueError(f"model {name!r} is built from the dataset's training posts: pass the "
                       "dataset")
    return cls.from_dataset(dataset, **kwargs)
  if hasattr(cls, "from_spec"):
    if spec is None:
      raise ValueError(f"model {name!r} is sized from the dataset: pass its spec")
    return cls.from_spec(spec, **kwargs)
  return cls(**kwargs)
