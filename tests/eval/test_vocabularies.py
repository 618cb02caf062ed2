"""Evaluation over the seen / unseen / all hashtag ranges of an open vocabulary."""

import jax
import numpy as np
import pytest

from hashjax.data import format as fmt
from hashjax.data.reader import PostDataset
from hashjax.data.writer import DatasetWriter
from hashjax.eval import evaluate, metrics
from tests import toy_models

NUM_TAGS, SEEN, FEATURES, USERS = 12, 8, 6, 5
K = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """Training posts use old tags 0..7 only; test posts mix those with 8..11 (never trained)."""
  directory = str(tmp_path_factory.mktemp("open_vocab"))
  rng = np.random.default_rng(0)
  writer = DatasetWriter(directory, feature_dim=FEATURES, num_tags=NUM_TAGS, user_meta_dim=0,
                         split_scheme="temporal", posts_per_shard=8)
  for user in range(USERS):
    n = 9
    split = np.repeat([fmt.SPLIT_CODES["train"], fmt.SPLIT_CODES["test"]], [6, 3])
    tags = [rng.choice(SEEN, 2, replace=False) for _ in range(6)]
    tags += [np.array([rng.integers(SEEN), rng.integers(SEEN, NUM_TAGS)]),
             rng.choice(np.arange(SEEN, NUM_TAGS), 2, replace=False),
             rng.choice(SEEN, 1)]
    writer.add_block(post_id=np.arange(n) + 100 * user, user_id=np.full(n, user),
                     timestamp=np.arange(n), split=split,
                     features=rng.standard_normal((n, FEATURES)).astype(np.float32),
                     user_meta=np.zeros((n, 0), np.float32),
                     tags=[t.astype(np.int32) for t in tags])
  writer.finalize(vocab=[f"t{i}" for i in range(NUM_TAGS)], provenance={"generator": "tests"})
  return PostDataset(directory)


class _FeatureScorer:
  """A non-two-tower scorer (the numpy path): scores = features @ W."""
  name, fields = "pairs", ("features",)

  def __init__(self, weights):
    self.weights = weights

  def scores(self, batch, tag_start, tag_stop):
    return batch["features"] @ self.weights[:, tag_start:tag_stop]


def _reference(queries, table, true_ids, true_mask, start, stop):
  """Brute force: rank the range's tags by score, keep the range's true tags, drop the rest."""
  scores = queries @ table[start:stop].T
  pred = np.argsort(-scores, axis=1, kind="stable")[:, :K] + start
  mask = true_mask & (true_ids >= start) & (true_ids < stop)
  counted = mask.any(axis=1)
  return metrics.ranking_metrics(pred[counted], true_ids[counted], mask[counted], ks=(1, K))


def test_the_seen_range_is_the_trained_tags(dataset):
  assert dataset.spec.num_seen_tags == SEEN
  assert evaluate.vocabulary_range(dataset.spec, "seen") == (0, SEEN)
  assert evaluate.vocabulary_range(dataset.spec, "unseen") == (SEEN, NUM_TAGS)
  with pytest.raises(ValueError, match="unknown vocabulary 'new'"):
    evaluate.vocabulary_range(dataset.spec, "new")


@pytest.mark.parametrize("path", ["two_tower", "pairs"])
def test_each_range_ranks_only_its_tags_and_counts_only_its_truth(dataset, path):
  model = toy_models.UserEmbedding(d=4)
  variables = model.init(jax.random.key(1), dataset.spec)
  if path == "two_tower":
    scorer = evaluate.model_scorer("model", model, variables)
  else:
    weights = np.random.default_rng(2).standard_normal((FEATURES, NUM_TAGS)).astype(np.float32)
    scorer = _FeatureScorer(weights)
  rows = dataset.split_rows("test")
  batch = dataset.read(rows, fields=("features", "user_index"))
  if path == "two_tower":
    queries = np.asarray(model.query(variables, batch))
    table = np.asarray(model.tags(variables))
  else:
    queries, table = batch["features"], scorer.weights.T
  results = evaluate.evaluate_scorers([scorer], dataset, "test", ks=(1, K),
                                      vocabularies=("all", "seen", "unseen"))[scorer.name]
  for vocabulary in ("all", "seen", "unseen"):
    start, stop = evaluate.vocabulary_range(dataset.spec, vocabulary)
    expected = _reference(queries, table, batch["tag_ids"], batch["tag_mask"], start, stop)
    prefix = evaluate.metric_prefix(vocabulary)
    for key, value in expected.items():
      assert results[prefix + key] == pytest.approx(value), (vocabulary, key)
  out = evaluate.predict_top_k(scorer, dataset, "test", k=K, tag_range=(SEEN, NUM_TAGS))
  assert (out["pred_ids"] >= SEEN).all()
  assert out["true_mask"].any(axis=1).all()
  assert not (out["true_mask"] & (out["true_ids"] < SEEN)).any()
  # One test post per user has only seen tags: the unseen range does not count it.
  assert len(out["rows"]) == 2 * USERS


def test_a_dataset_whose_tags_are_all_seen_has_no_unseen_range(dataset):
  spec = dataset.spec
  closed = type(spec)(**{**spec.__dict__, "num_seen_tags": spec.num_tags})
  with pytest.raises(ValueError, match="no unseen hashtags"):
    evaluate.vocabulary_range(closed, "unseen")
