"""Frequency baselines against plain Python counting, and the evaluation table."""

import collections

import numpy as np
import pytest

from hashjax.eval import baselines, evaluate, report
from hashjax.data.reader import PostDataset
from tests.dataset_fixtures import write_random_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("base") / "ds")
  write_random_dataset(directory, num_users=25, num_tags=30)
  return PostDataset(directory)


def _naive_user_counts(ds):
  counts = collections.defaultdict(collections.Counter)
  batch = ds.read(ds.split_rows("train"), fields=("user_id", "tag_ids", "tag_mask"))
  for user, ids, mask in zip(batch["user_id"], batch["tag_ids"], batch["tag_mask"]):
    counts[int(user)].update(ids[mask].tolist())
  return counts


def test_global_frequency_is_the_training_count(ds):
  batch = ds.read(ds.split_rows("test")[:5], fields=("user_id", "tag_ids", "tag_mask"))
  scores = baselines.GlobalFrequency(ds).scores(batch, 3, 9)
  assert scores.shape == (5, 6)
  np.testing.assert_array_equal(scores[2], ds.tag_counts[3:9])


def test_user_frequency_ranks_own_tags_first_then_global(ds):
  scorer = baselines.UserFrequency(ds)
  naive = _naive_user_counts(ds)
  batch = ds.read(ds.split_rows("test"), fields=("user_id", "tag_ids", "tag_mask"))
  scores = scorer.scores(batch, 0, ds.num_tags)
  for user, row in zip(batch["user_id"], scores):
    own = naive[int(user)]
    expected = sorted(range(ds.num_tags), key=lambda y: (-own[y], -ds.tag_counts[y], y))
    got = sorted(range(ds.num_tags), key=lambda y: (-row[y], y))
    assert got == expected
  # Chunks agree with the full matrix.
  np.testing.assert_array_equal(scorer.scores(batch, 7, 19), scores[:, 7:19])


def test_user_without_training_posts_backs_off_to_global(ds):
  scorer = baselines.UserFrequency(ds)
  unknown = {"user_id": np.array([-5, 10 ** 9])}
  scores = scorer.scores(unknown, 0, ds.num_tags)
  np.testing.assert_array_equal(np.argsort(-scores[0], kind="stable"),
                                np.argsort(-ds.tag_counts, kind="stable"))


def test_evaluate_and_table(ds):
  results = evaluate.evaluate_scorers([baselines.GlobalFrequency(ds), baselines.UserFrequency(ds)],
                                      ds, "test", batch_size=4, tag_chunk=7)
  glob, user = results["Global frequency"], results["User-specific frequency"]
  # Global frequency predicts the same list for every post: check P@1 by hand.
  batch = ds.read(ds.split_rows("test"), fields=("user_id",))
  top1 = int(np.argmax(ds.tag_counts))
  assert glob["P@1"] == pytest.approx(np.mean([(ids[m] == top1).any()
                                               for ids, m in zip(batch["tag_ids"],
                                                                 batch["tag_mask"])]))
  # User frequency: every post's top 10 are the 10 best of the naive count (ties in any order),
  # best first, and P@1 / R@10 are those lists scored by hand.
  out = evaluate.predict_top_k(baselines.UserFrequency(ds), ds, "test", k=10, batch_size=4,
                               tag_chunk=7)
  naive = _naive_user_counts(ds)
  backoff = ds.tag_counts / (1.0 + ds.tag_counts.max())
  p1, r10 = [], []
  for row, pred, ids, mask in zip(out["rows"], out["pred_ids"], out["true_ids"],
                                  out["true_mask"]):
    own = naive[int(ds.user_ids[row])]
    score = np.array([own[y] for y in range(ds.num_tags)]) + backoff
    assert score[pred].min() >= np.delete(score, pred).max()
    assert np.all(np.diff(score[pred]) <= 0)
    truth = set(ids[mask].tolist())
    p1.append(pred[0] in truth)
    r10.append(len(truth & set(pred.tolist())) / len(truth))
  assert user["P@1"] == pytest.approx(np.mean(p1)) and user["R@10"] == pytest.approx(np.mean(r10))
  table = report.format_table(results)
  assert table.splitlines()[0] == "| Method | P@1 | R@10 | A@10 |"
  assert f"{100 * glob['R@10']:.2f}" in table
