"""The balanced distribution against hand-computed values, and evaluation on the thinned truth."""

import numpy as np
import pytest

from hashjax.data import format as fmt
from hashjax.data import tag_distribution
from hashjax.data.reader import PostDataset
from hashjax.data.writer import DatasetWriter
from hashjax.eval import evaluate


def test_denton_downsamples_500_of_10k_and_5_percent_of_other_vocabularies():
  assert tag_distribution.num_downsampled(10_000) == 500
  assert tag_distribution.num_downsampled(1500) == 75
  assert tag_distribution.num_downsampled(40) == 2
  assert tag_distribution.num_downsampled(5) == 1  # at least one


def test_keep_probabilities_by_hand():
  # 40 tags, 5%: the 2 most frequent are cut to the count of the third (96).
  counts = 100.0 - 2 * np.arange(40)
  keep = tag_distribution.keep_probabilities(counts, "balanced")
  np.testing.assert_allclose(keep[:3], [96 / 100, 96 / 98, 1.0])
  np.testing.assert_array_equal(keep[3:], 1.0)
  # Denton's vocabulary: ids 0..499 are thinned to the count of id 500, id 500 on are kept.
  counts = np.arange(10_000, 0, -1, dtype=np.float64)
  keep = tag_distribution.keep_probabilities(counts, "balanced")
  assert keep[499] == pytest.approx(9500 / 9501) and keep[500] == 1.0
  assert keep[0] == pytest.approx(9500 / 10_000)
  assert tag_distribution.keep_probabilities(counts, "natural") is None
  with pytest.raises(ValueError):
    tag_distribution.keep_probabilities(counts, "uniform")
  with pytest.raises(ValueError):
    tag_distribution.keep_probabilities(counts[::-1], "balanced")


def test_apply_drops_what_keep_rejects_and_nothing_else():
  batch = {"post_id": np.array([3, 4]), "tag_ids": np.array([[0, 1, 2], [2, 0, -1]]),
           "tag_mask": np.array([[True, True, True], [True, True, False]])}
  out = tag_distribution.apply(batch, np.array([0.0, 1.0, 1.0]))
  np.testing.assert_array_equal(out["tag_mask"], [[False, True, True], [True, False, False]])
  np.testing.assert_array_equal(batch["tag_mask"][0], [True, True, True])  # input unchanged
  assert tag_distribution.apply(batch, None) is batch
  # A keep probability of 1/2 keeps about half of many occurrences (hash of (post, tag)).
  many = {"post_id": np.arange(20_000), "tag_ids": np.zeros((20_000, 1), np.int64),
          "tag_mask": np.ones((20_000, 1), bool)}
  assert abs(tag_distribution.apply(many, np.array([0.5]))["tag_mask"].mean() - 0.5) < 0.02


class _FixedRanking:
  """Scores every post alike: a fixed ranking of the tags."""
  name, fields = "fixed", ()

  def __init__(self, scores):
    self.s = np.asarray(scores, np.float64)

  def scores(self, batch, tag_start, tag_stop):
    return np.broadcast_to(self.s[tag_start:tag_stop], (len(batch["row"]), tag_stop - tag_start))


@pytest.fixture(scope="module")
def hand_dataset(tmp_path_factory):
  """Tags in training frequency order 0 (the head), 1, 2, 3; three test posts."""
  directory = str(tmp_path_factory.mktemp("thin") / "ds")
  writer = DatasetWriter(directory, feature_dim=2, num_tags=4, user_meta_dim=0,
                         split_scheme="temporal")
  train, test = fmt.SPLIT_CODES["train"], fmt.SPLIT_CODES["test"]
  tags = [[0, 1, 2, 3], [0, 1, 2], [0, 1], [0],  # training counts 4, 3, 2, 1: ids stay
          [0], [0, 2], [2, 3]]  # test posts: only the head tag; head and 2; 2 and 3
  split = [train] * 4 + [test] * 3
  n = len(tags)
  writer.add_block(post_id=np.arange(n), user_id=np.zeros(n), timestamp=np.arange(n),
                   split=split, features=np.ones((n, 2), np.float32),
                   tags=[np.array(t, np.int32) for t in tags])
  order = writer.finalize(vocab=["a", "b", "c", "d"])
  np.testing.assert_array_equal(order, [0, 1, 2, 3])
  return PostDataset(directory)


def test_evaluation_on_the_thinned_truth_by_hand(hand_dataset):
  ds = hand_dataset
  ranking = _FixedRanking([4.0, 1.0, 3.0, 2.0])  # predicts 0, 2, 3, 1
  natural = evaluate.predict_top_k(ranking, ds, "test", k=2)
  assert len(natural["rows"]) == 3
  m = evaluate.evaluate_scorers([ranking], ds, "test", ks=(1, 2))["fixed"]
  assert m["P@1"] == pytest.approx(2 / 3)  # posts 1 and 2 have the head tag
  assert m["R@2"] == pytest.approx((1 + 1 + 1 / 2) / 3)
  # keep rejects every occurrence of the head tag: the first test post has nothing left and
  # leaves the evaluation; the second keeps only tag 2; the third is unchanged.
  keep = np.array([0.0, 1.0, 1.0, 1.0])
  out = evaluate.predict_top_k(ranking, ds, "test", k=2, keep=keep)
  test_rows = ds.split_rows("test")
  np.testing.assert_array_equal(out["rows"], test_rows[1:])
  assert [set(ids[mask]) for ids, mask in zip(out["true_ids"], out["true_mask"])] == [{2}, {2, 3}]
  m = evaluate.evaluate_scorers([ranking], ds, "test", ks=(1, 2), keep=keep)["fixed"]
  assert m["P@1"] == 0.0  # the head tag is never right any more
  assert m["P@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
  assert m["R@2"] == pytest.approx((1 + 1 / 2) / 2)
