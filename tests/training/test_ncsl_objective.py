"""The negative cosine similarity loss: by hand, against finite differences, and end to end."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hashjax.data import tag_cooccurrence
from hashjax.training import objectives, trainer
from tests.dataset_fixtures import tiny_train_config


class _Given:
  """A stand-in two-tower model whose queries and tag table are its params "q" and "t"."""
  layout = "posts"

  def train_query(self, variables, batch, rng):
    del batch, rng
    return variables["params"]["q"], {}

  def tags(self, variables):
    return variables["params"]["t"]


def _loss(q, t, tag_ids):
  batch = {"tag_ids": jnp.asarray(tag_ids), "tag_mask": jnp.asarray(np.asarray(tag_ids) >= 0)}
  return objectives.NegativeCosine()(_Given(), {"params": {"q": q, "t": t}}, batch,
                                     jax.random.key(0))[0]


def test_registry_builds_it():
  assert objectives.make_objective(ml_collections.ConfigDict({"name": "ncsl"})) == (
      objectives.NegativeCosine())


def test_hand_computed_case():
  t = jnp.array([[1., 0.], [0., 1.], [0., 0.], [-1., 0.]])  # row 2: no embedding
  q = jnp.array([[1., 0.], [3., 4.], [1., 1.], [1., 1.], [2., 1.]])
  tag_ids = [[0, 1], [3, -1], [2, -1], [-1, -1], [0, 3]]
  # Post 0: target (1, 1), cos 1/sqrt(2). Post 1: target (-1, 0), cos -3/5. Post 2 (only the
  # zero row) and post 3 (no hashtag) do not count. Post 4: its rows cancel, target 0, cos 0.
  expected = (-1 / np.sqrt(2) + 3 / 5 + 0.0) / 3
  np.testing.assert_allclose(_loss(q, t, tag_ids), expected, rtol=1e-6)
  per_post, counted = objectives.negative_cosine(q, t, jnp.asarray(tag_ids),
                                                 jnp.asarray(np.asarray(tag_ids) >= 0))
  np.testing.assert_array_equal(counted, [True, True, False, False, True])
  np.testing.assert_allclose(per_post, [-1 / np.sqrt(2), 3 / 5, 0, 0, 0], atol=1e-6)
  grad_q = jax.grad(_loss)(q, t, tag_ids)
  assert np.isfinite(grad_q).all()
  np.testing.assert_array_equal(grad_q[2:], 0.0)  # posts that carry no direction


def _reference(q, t, tag_ids):
  """The loss in float64 numpy: mean over counted posts of -q.s / (|q| |s|)."""
  losses = []
  for qn, ids in zip(q, tag_ids):
    rows = [t[y] for y in ids if y >= 0 and np.any(t[y] != 0)]
    if rows:
      s = np.sum(rows, axis=0)
      losses.append(-qn @ s / np.linalg.norm(qn) / np.linalg.norm(s))
  return np.mean(losses)


def test_gradient_matches_finite_differences():
  rng = np.random.default_rng(0)
  q = rng.standard_normal((6, 4))
  t = rng.standard_normal((7, 4))
  t[5] = 0.0  # a hashtag without an embedding
  tag_ids = [[0, 1, 2], [3, -1, -1], [5, -1, -1], [4, 6, 5], [-1, -1, -1], [1, 2, 6]]
  np.testing.assert_allclose(_loss(jnp.asarray(q, jnp.float32), jnp.asarray(t, jnp.float32),
                                   tag_ids), _reference(q, t, tag_ids), rtol=1e-5)
  grad_q, grad_t = jax.grad(_loss, argnums=(0, 1))(jnp.asarray(q, jnp.float32),
                                                   jnp.asarray(t, jnp.float32), tag_ids)
  h = 1e-6
  for x, grad, skip in ((q, grad_q, ()), (t, grad_t, (5,))):
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
      if index[0] in skip:  # the zero row: any perturbation would give it a direction
        continue
      up, down = x.copy(), x.copy()
      up[index] += h
      down[index] -= h
      args = (up, t) if x is q else (q, up)
      args_down = (down, t) if x is q else (q, down)
      numeric[index] = (_reference(*args, tag_ids) - _reference(*args_down, tag_ids)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5)
  np.testing.assert_array_equal(grad_t[5], 0.0)


def test_trains_end_to_end_with_the_tag_table_fixed(tmp_path, tiny_dataset):
  config = tiny_train_config("classifier", steps=20, frozen=("tags",))
  config.model = ml_collections.ConfigDict({"name": "ncsl", "kwargs": {"dim": 16,
                                                                       "hidden": (32,)}})
  config.loss = ml_collections.ConfigDict({"name": "ncsl"})
  workdir = str(tmp_path / "ncsl")
  out = trainer.train_and_evaluate(config, workdir, tiny_dataset)
  table = tag_cooccurrence.training_ppmi_embeddings(tiny_dataset, 16).embeddings
  for variables in (out["variables"], out["selected_variables"]):
    np.testing.assert_array_equal(variables["params"]["tags"]["embedding"], table)
  initial = out["model"].init(jax.random.split(jax.random.PRNGKey(config.seed))[0],
                              tiny_dataset.spec)
  assert not np.allclose(out["variables"]["params"]["image"]["out"]["kernel"],
                         initial["params"]["image"]["out"]["kernel"])  # the head did train
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  losses = [l["loss"] for l in lines if "loss" in l]
  assert len(losses) == 4 and all(-1 <= x <= 1 for x in losses)
  with open(os.path.join(workdir, "metrics.json")) as f:
    metrics = json.load(f)
  assert metrics["model"] == "NCSL-PPMI" and metrics["columns"] == {"D": 16, "hidden": "32"}
  assert np.isfinite(metrics["test"]["P@1"])
  assert "| NCSL-PPMI |" in open(os.path.join(workdir, "report.md")).read()
