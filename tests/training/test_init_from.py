"""Two-stage training: loading named parts of another run, and the errors when they don't fit."""

import jax
import ml_collections
import numpy as np
import pytest

from hashjax import models
from hashjax.training import init_from, trainer
from tests.dataset_fixtures import tiny_train_config


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, tiny_dataset):
  """A short bilinear run (d=8): parts image and tags."""
  workdir = str(tmp_path_factory.mktemp("init_from") / "bilinear")
  config = tiny_train_config("denton", "model=bilinear,d=8", steps=10)
  out = trainer.train_and_evaluate(config, workdir, tiny_dataset)
  return workdir, out["selected_variables"]


def _fresh(tiny_dataset, name, **kwargs):
  model = models.make_model({"name": name, "kwargs": kwargs}, tiny_dataset.spec)
  return model.init(jax.random.key(7), tiny_dataset.spec)


def _spec(workdir, *parts):
  return ml_collections.ConfigDict({"workdir": workdir, "parts": parts})


def test_loads_the_named_parts_and_leaves_the_others(source_run, tiny_dataset):
  workdir, selected = source_run
  fresh = _fresh(tiny_dataset, "user_biased", d=8)  # image and tags fit, user is new
  loaded = init_from.load_parts(_spec(workdir, "image"), fresh)
  np.testing.assert_array_equal(loaded["params"]["image"]["P_T"],
                                selected["params"]["image"]["P_T"])
  for part in ("user", "tags"):
    np.testing.assert_array_equal(loaded["params"][part]["Q_T" if part == "user" else "V"],
                                  fresh["params"][part]["Q_T" if part == "user" else "V"])


def test_errors_name_the_part_the_array_and_the_shapes(source_run, tiny_dataset, tmp_path):
  workdir, _ = source_run
  with pytest.raises(ValueError, match=r"this model has no part 'gamma'; it has \['image', "
                                       r"'tags'\]"):
    init_from.load_parts(_spec(workdir, "gamma"), _fresh(tiny_dataset, "bilinear", d=8))
  with pytest.raises(ValueError, match=r"params/image/P_T is float32\[32, 8\] in the run, "
                                       r"this model expects float32\[32, 16\]"):
    init_from.load_parts(_spec(workdir, "image"), _fresh(tiny_dataset, "bilinear", d=16))
  with pytest.raises(ValueError, match=r"run has no params for part 'user'"):
    init_from.load_parts(_spec(workdir, "user"), _fresh(tiny_dataset, "user_biased", d=8))
  with pytest.raises(ValueError, match=r"params/image has other arrays.*missing "
                                       r"\['params/image/gamma'\], unexpected "
                                       r"\['params/image/P_T'\]"):
    init_from.load_parts(_spec(workdir, "image"),
                         _fresh(tiny_dataset, "multiplicative", d=8, K=4))
  with pytest.raises(ValueError, match="name the parts"):
    init_from.load_parts(_spec(workdir), _fresh(tiny_dataset, "bilinear", d=8))
  with pytest.raises(FileNotFoundError, match="no checkpoints there"):
    init_from.load_parts(_spec(str(tmp_path / "nothing"), "image"),
                         _fresh(tiny_dataset, "bilinear", d=8))
  assert "(model bilinear)" in _message(workdir, tiny_dataset)


def _message(workdir, tiny_dataset) -> str:
  try:
    init_from.load_parts(_spec(workdir, "gamma"), _fresh(tiny_dataset, "bilinear", d=8))
  except ValueError as e:
    return str(e)
  return ""
