"""The flax adapter, on the MLP classifier: parts, training vs inference mode, state, scores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax import models
from hashjax.data.spec import DatasetSpec

SPEC = DatasetSpec(feature_dim=6, user_meta_dim=0, num_tags=5, num_users=2)


def _model(**kwargs):
  return models.make_model({"name": "mlp", "kwargs": kwargs}, SPEC)


def _batch(seed=0, b=8):
  return {"features": jnp.asarray(np.random.default_rng(seed).standard_normal((b, 6)),
                                  jnp.float32)}


def test_parameters_are_nested_by_part_and_sized_from_the_spec():
  model = _model(hidden=(7, 3), batch_norm=True)
  variables = model.init(jax.random.key(0), SPEC)
  assert set(variables) == {"params", "batch_stats"}
  assert set(variables["params"]) == {"image", "tags"}
  assert variables["params"]["tags"]["embedding"].shape == (5, 3)
  assert model.query(variables, _batch()).shape == (8, 4)  # hidden + the bias's 1
  assert model.tags(variables).shape == (5, 4)
  assert model.report_columns() == {"hidden": "7x3"}
  with pytest.raises(ValueError, match="sized from the dataset"):
    models.make_model({"name": "mlp", "kwargs": {}})


def test_the_two_tower_score_is_the_output_layer():
  model = _model(hidden=(4,))
  variables = model.init(jax.random.key(1), SPEC)
  variables["params"]["tags"]["bias"] = jnp.arange(5, dtype=jnp.float32)
  batch = _batch()
  p = variables["params"]["image"]["Dense_0"]
  h = jax.nn.relu(batch["features"] @ p["kernel"] + p["bias"])
  expected = h @ variables["params"]["tags"]["embedding"].T + jnp.arange(5)
  np.testing.assert_allclose(model.query(variables, batch) @ model.tags(variables).T, expected,
                             rtol=1e-5, atol=1e-6)


def test_dropout_is_random_in_training_and_off_in_inference():
  model = _model(hidden=(16,), dropout_rate=0.5)
  variables = model.init(jax.random.key(2), SPEC)
  batch = _batch()
  a, updates = model.train_query(variables, batch, jax.random.key(3))
  b, _ = model.train_query(variables, batch, jax.random.key(4))
  assert updates == {} and not np.allclose(a, b)
  assert np.mean(np.asarray(a)[:, :-1] == 0) > 0.3  # about half the units dropped
  np.testing.assert_array_equal(model.query(variables, batch), model.query(variables, batch))


def test_batch_norm_updates_its_statistics_in_training_only():
  model = _model(hidden=(4,), batch_norm=True)
  variables = model.init(jax.random.key(5), SPEC)
  batch = _batch(b=32)
  _, updates = model.train_query(variables, batch, jax.random.key(6))
  stats = updates["batch_stats"]["image"]["BatchNorm_0"]
  p = variables["params"]["image"]["Dense_0"]
  pre = np.asarray(batch["features"] @ p["kernel"] + p["bias"])
  # flax: running = 0.9 running + 0.1 batch mean (running mean starts at 0).
  np.testing.assert_allclose(stats["mean"], 0.1 * pre.mean(axis=0), rtol=1e-4, atol=1e-6)
  before = variables["batch_stats"]["image"]["BatchNorm_0"]["mean"]
  np.testing.assert_array_equal(before, 0.0)  # inference never changes them


def test_without_hidden_layers_it_is_a_linear_classifier_on_the_features():
  model = _model(hidden=())
  variables = model.init(jax.random.key(0), SPEC)
  assert sorted(variables["params"]) == ["tags"]
  batch = _batch()
  table = variables["params"]["tags"]
  want = batch["features"] @ table["embedding"].T + table["bias"]
  np.testing.assert_allclose(model.query(variables, batch) @ model.tags(variables).T, want,
                             rtol=1e-5, atol=1e-6)
  assert model.report_columns() == {"hidden": "linear"}
  with pytest.raises(ValueError, match="positive"):
    _model(hidden=(4, 0))
