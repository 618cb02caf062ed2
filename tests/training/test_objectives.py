"""The objective registry: each loss against its formula written out, masks, sequences."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from hashjax.data.spec import DatasetSpec
from hashjax.losses import targets, warp
from hashjax.models import denton
from hashjax.training import objectives
from tests import toy_models

SPEC = DatasetSpec(feature_dim=6, user_meta_dim=0, num_tags=9, num_users=4)


def _batch(seed=0, b=5):
  rng = np.random.default_rng(seed)
  tag_ids = np.array([[1, 4, -1], [0, -1, -1], [8, 2, 5], [3, -1, -1], [6, 7, -1]])[:b]
  return {"features": jnp.asarray(rng.standard_normal((b, 6)), jnp.float32),
          "tag_ids": jnp.asarray(tag_ids), "tag_mask": jnp.asarray(tag_ids >= 0)}


def _model():
  model = denton.Bilinear(d=4, init_std=0.5)
  return model, model.init(jax.random.key(0), SPEC)


def test_registry_builds_from_the_config_and_names_what_exists():
  loss = objectives.make_objective(ml_collections.ConfigDict(dict(name="warp", margin=0.2)))
  assert loss == objectives.Warp(margin=0.2, max_trials=1000)
  with pytest.raises(ValueError, match="unknown loss 'hinge'; available: ncsl, "
                     "sampled_softmax, sequence, sigmoid, softmax, triplet, warp"):
    objectives.make_objective({"name": "hinge"})
  with pytest.raises(ValueError, match="loss 'sigmoid' takes no options"):
    objectives.make_objective({"name": "sigmoid", "margin": 0.1})
  with pytest.raises(ValueError, match=r"loss 'softmax' takes \['vocabulary', 'average', "):
    objectives.make_objective({"name": "softmax", "margin": 0.1})


def test_warp_objective_is_the_warp_loss_summed_over_positives_per_post():
  model, variables = _model()
  batch = _batch()
  key = jax.random.key(3)
  loss, aux, updates = objectives.Warp(max_trials=50)(model, variables, batch, key)
  per_positive, sample = warp.warp_loss_two_tower(
      key, model.query(variables, batch), model.tags(variables), batch["tag_ids"],
      batch["tag_mask"], margin=0.1, max_trials=50)
  np.testing.assert_allclose(loss, per_positive.sum() / 5, rtol=1e-6)
  assert updates == {} and 0 < aux["violator_found"] <= 1


def test_softmax_objective_is_minus_log_softmax_of_the_drawn_hashtag():
  model, variables = _model()
  batch = _batch()
  key = jax.random.key(4)
  loss, _, _ = objectives.Softmax()(model, variables, batch, key)
  label_key, _ = jax.random.split(key)
  labels, _ = targets.uniform_positive(label_key, batch["tag_ids"], batch["tag_mask"])
  scores = np.asarray(model.query(variables, batch) @ model.tags(variables).T, np.float64)
  log_z = np.log(np.exp(scores).sum(axis=1))
  expected = np.mean(log_z - scores[np.arange(5), np.asarray(labels)])
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert np.all(np.isin(labels, batch["tag_ids"][batch["tag_mask"]]))


def test_sigmoid_objective_is_binary_cross_entropy_summed_over_the_vocabulary():
  model, variables = _model()
  batch = _batch()
  loss, _, _ = objectives.SigmoidCrossEntropy()(model, variables, batch, jax.random.key(0))
  scores = np.asarray(model.query(variables, batch) @ model.tags(variables).T, np.float64)
  y = np.zeros((5, 9))
  for i, (ids, mask) in enumerate(zip(batch["tag_ids"], batch["tag_mask"])):
    y[i, np.asarray(ids)[np.asarray(mask)]] = 1
  p = 1 / (1 + np.exp(-scores))
  expected = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("objective", [objectives.Softmax(), objectives.SigmoidCrossEntropy()])
def test_posts_without_hashtags_do_not_count(objective):
  model, variables = _model()
  batch = _batch()
  emptied = dict(batch, tag_mask=batch["tag_mask"].at[1].set(False))
  kept = {k: jnp.delete(v, 1, axis=0) for k, v in batch.items()}
  # Same keys for the kept posts: sigmoid is deterministic; for softmax, post 1 had one tag.
  a, _, _ = objective(model, variables, emptied, jax.random.key(5))
  if isinstance(objective, objectives.SigmoidCrossEntropy):
    b, _, _ = objective(model, variables, kept, jax.random.key(5))
    np.testing.assert_allclose(a, b, rtol=1e-6)
  grads = jax.grad(lambda v: objective(model, v, emptied, jax.random.key(5))[0])(variables)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_sequence_batches_count_only_their_targets():
  model = toy_models.HistoryMean(d=4)
  variables = model.init(jax.random.key(1), SPEC)
  rng = np.random.default_rng(2)
  seq_mask = np.array([[True, True, True, False], [True, True, False, False]])
  target_mask = np.array([[False, True, True, False], [True, True, False, False]])
  tag_ids = rng.integers(0, 9, (2, 4, 2))
  batch = {"features": jnp.asarray(rng.standard_normal((2, 4, 6)), jnp.float32),
           "seq_mask": jnp.asarray(seq_mask), "target_mask": jnp.asarray(target_mask),
           "tag_ids": jnp.asarray(tag_ids), "tag_mask": jnp.asarray(seq_mask[..., None]
                                                                    & np.ones((2, 4, 2), bool))}
  loss, _, _ = objectives.SigmoidCrossEntropy()(model, variables, batch, jax.random.key(0))
  queries = np.asarray(model.query(variables, batch)).reshape(8, -1)
  scores = queries @ np.asarray(model.tags(variables)).T
  y = np.zeros((8, 9))
  for i, ids in enumerate(tag_ids.reshape(8, 2)):
    y[i, ids] = 1
  p = 1 / (1 + np.exp(-scores.astype(np.float64)))
  per_post = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1)
  np.testing.assert_allclose(loss, per_post[target_mask.reshape(-1)].mean(), rtol=1e-5)
