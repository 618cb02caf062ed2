"""The concatenation MLP baseline: its split first layer and pair scores equal the MLP run on
explicit concatenations, evaluation by PairScorer equals a full argsort, and a two-stage run
(MCLL, then the MLP with the triplet loss) trains end to end."""

import json

import jax
import numpy as np
import pytest

from hashjax.data.reader import PostDataset
from hashjax.data.spec import DatasetSpec
from hashjax.eval import evaluate
from hashjax.models.concat_mlp import ConcatMLP
from hashjax.training import objectives, trainer
from tests.dataset_fixtures import tiny_train_config, write_random_dataset

SPEC = DatasetSpec(feature_dim=5, user_meta_dim=0, num_tags=6, num_users=4, max_tags_per_post=2)


def _setup(seed=0, scorer_hidden=(4, 3)):
  model = ConcatMLP(num_users=4, num_tags=6, hidden=(3,), tag_dim=2, user_dim=3,
                    scorer_hidden=scorer_hidden)
  variables = model.init(jax.random.key(seed), SPEC)
  rng = np.random.default_rng(seed)
  batch = {"features": rng.normal(size=(5, 5)).astype(np.float32),
           "user_index": np.array([0, 1, 2, 3, 1], np.int32),
           "user_train_posts": np.array([4, 2, 0, 1, 2], np.int32)}
  return model, variables, batch


def _naive_score(params, h, f, u):
  """g([h; f; u]) with one Dense layer on the concatenation, then the rest, in numpy."""
  s = params["scorer"]
  kernel = np.concatenate([s["first_tag"]["kernel"], s["first_image"]["kernel"],
                           s["first_user"]["kernel"]])
  x = np.concatenate([h, f, u]) @ kernel + s["first_user"]["bias"]
  names = sorted(k for k in s if k.startswith("rest_")) + ["out"]
  for name in names:
    x = np.maximum(x, 0) @ s[name]["kernel"] + s[name]["bias"]
  return float(x[0])


def _embeddings(model, variables, batch):
  params = variables["params"]
  f = np.asarray(model.module().apply(variables, batch["features"], False,
                                      method=lambda m, x, t: m.image(x, t)))
  users = np.asarray(params["user"]["embedding"])
  u = np.where(batch["user_train_posts"][:, None] > 0, users[batch["user_index"]], 1 / 3)
  return f, u, np.asarray(params["tags"]["embedding"])


def test_scores_are_the_mlp_of_the_concatenated_embeddings():
  model, variables, batch = _setup()
  f, u, table = _embeddings(model, variables, batch)
  params = jax.tree.map(np.asarray, variables["params"])
  tag_ids = np.array([5, 0, 3])
  scores = np.asarray(model.scores(variables, batch, tag_ids))
  naive = [[_naive_score(params, table[t], f[b], u[b]) for t in tag_ids] for b in range(5)]
  np.testing.assert_allclose(scores, naive, rtol=1e-5, atol=1e-6)


def test_axis_scores_replace_one_element_of_each_triplet_by_the_batchs():
  model, variables, batch = _setup(seed=1)
  f, u, table = _embeddings(model, variables, batch)
  params = jax.tree.map(np.asarray, variables["params"])
  positive = np.array([1, 4, 4, 0, 2])
  (s_tag, s_img, s_user), _ = model.train_axis_scores(
      {"params": variables["params"]}, batch, positive, jax.random.key(0))
  h = table[positive]
  for b in range(5):
    for c in range(5):
      np.testing.assert_allclose(s_tag[b, c], _naive_score(params, h[c], f[b], u[b]),
                                 rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(s_img[b, c], _naive_score(params, h[b], f[c], u[b]),
                                 rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(s_user[b, c], _naive_score(params, h[b], f[b], u[c]),
                                 rtol=1e-5, atol=1e-6)


def test_the_pair_scorer_ranks_the_vocabulary_as_a_full_argsort(tmp_path):
  directory = str(tmp_path / "data")
  write_random_dataset(directory, num_users=6, num_tags=23, feature_dim=5, seed=3)
  dataset = PostDataset(directory)
  num_tags = dataset.num_tags
  model = ConcatMLP(num_users=dataset.spec.num_users, num_tags=num_tags, hidden=(3,), tag_dim=2,
                    user_dim=3, scorer_hidden=(4,))
  variables = model.init(jax.random.key(2), dataset.spec)
  scorer = evaluate.model_scorer("MLP", model, variables)
  scorer.tag_block = 5  # several blocks, the last one padded
  out = evaluate.predict_top_k(scorer, dataset, "test", k=4, batch_size=7, tag_chunk=9)
  batch = dataset.read(out["rows"], fields=model.inputs)
  full = np.asarray(model.scores(variables, batch, np.arange(num_tags)))
  expected = np.lexsort((np.broadcast_to(np.arange(num_tags), full.shape), -full))[:, :4]
  np.testing.assert_array_equal(out["pred_ids"], expected)


def test_a_loss_against_the_tag_table_is_refused_with_the_reason():
  model, variables, batch = _setup()
  batch = {**batch, "tag_ids": np.zeros((5, 2), np.int32), "tag_mask": np.ones((5, 2), bool)}
  with pytest.raises(ValueError, match="not two towers"):
    objectives.make_objective({"name": "softmax"})(model, variables, batch, jax.random.key(0))
  with pytest.raises(ValueError, match="at least one hidden layer"):
    ConcatMLP(num_users=4, num_tags=6, scorer_hidden=())


def test_mcll_then_the_mlp_baseline_train_end_to_end(tmp_path, tiny_dataset):
  stage1 = str(tmp_path / "mcll")
  trainer.train_and_evaluate(tiny_train_config("veit", "model=mcll,hidden=16,D=8,E=4",
                                               steps=20), stage1, tiny_dataset)
  config = tiny_train_config("veit", f"model=mlp,init={stage1},hidden=16,D=8,E=4", steps=20)
  config.plateau_patience = 0
  out = trainer.train_and_evaluate(config, str(tmp_path / "mlp"), tiny_dataset)
  assert np.isfinite(out["test"]["P@1"]) and out["test"]["A@10"] > 0
  history = [json.loads(line) for line in open(tmp_path / "mlp" / "metrics.jsonl")]
  assert any("violated_hard_tag" in h for h in history)
  assert "| MLP (MCLL) |" in open(tmp_path / "mlp" / "report.md").read()


def test_tag_candidates_score_every_listed_hashtag_on_the_tag_axis():
  model, variables, batch = _setup(seed=2)
  f, u, table = _embeddings(model, variables, batch)
  params = jax.tree.map(np.asarray, variables["params"])
  candidates = np.arange(6)
  (s_tag, _, _), _ = model.train_axis_scores(
      {"params": variables["params"]}, {**batch, "tag_candidates": candidates},
      np.array([1, 4, 4, 0, 2]), jax.random.key(0))
  naive = [[_naive_score(params, table[t], f[b], u[b]) for t in candidates] for b in range(5)]
  np.testing.assert_allclose(s_tag, naive, rtol=1e-5, atol=1e-6)
