"""Veit et al.'s breakdowns (Figs. 5 and 10) on hand-computed cases."""

import numpy as np
import pytest

from hashjax.eval import breakdowns, metrics


# ----------------------------------------------------------------------------------------------
# Buckets.


def test_log2_edges_hand_computed():
  # 0 gets its own bucket; 1 is in [1, 2), 3 in [2, 4), 9 in [8, 16).
  np.testing.assert_array_equal(breakdowns.log2_edges([0, 1, 3, 9]), [0, 1, 2, 4, 8, 16])
  # No zero: the first edge is the power of two at or below the smallest value (5 -> 4); the
  # last is above the largest (8 -> 16, since buckets are half-open).
  np.testing.assert_array_equal(breakdowns.log2_edges([5, 8]), [4, 8, 16])
  np.testing.assert_array_equal(breakdowns.log2_edges([0, 0]), [0, 1])
  with pytest.raises(ValueError, match="integers"):
    breakdowns.log2_edges([1.5])
  with pytest.raises(ValueError, match=">= 0"):
    breakdowns.log2_edges([-1, 2])


def test_quantile_edges_hand_computed():
  # Ten values in two buckets: inner edge s[5] = 6, so {1..5} and {6..10}.
  np.testing.assert_array_equal(breakdowns.quantile_edges(np.arange(1, 11), 2), [1, 6, 11])
  # s = [1, 1, 1, 1, 2, 7]: inner edges s[2] = 1 and s[4] = 2; the first merges with the
  # minimum, leaving two buckets, [1, 2) with four values and [2, 8) with two.
  np.testing.assert_array_equal(breakdowns.quantile_edges([7, 1, 1, 2, 1, 1], 3), [1, 2, 8])
  np.testing.assert_array_equal(breakdowns.quantile_edges([4, 4, 4], 5), [4, 5])
  np.testing.assert_array_equal(breakdowns.bucket_edges(np.arange(1, 11), "quantile:2"),
                                [1, 6, 11])
  np.testing.assert_array_equal(breakdowns.bucket_edges([3], "log2"), [2, 4])
  with pytest.raises(ValueError, match="unknown bucket scheme"):
    breakdowns.bucket_edges([3], "quantile")


def test_assign_buckets_and_labels_hand_computed():
  edges = [0, 1, 2, 4, 8]
  np.testing.assert_array_equal(breakdowns.assign_buckets([0, 1, 2, 3, 4, 7], edges),
                                [0, 1, 2, 2, 3, 3])
  assert breakdowns.bucket_labels(edges) == ["0", "1", "2-3", "4-7"]
  with pytest.raises(ValueError, match="outside the buckets"):
    breakdowns.assign_buckets([8], edges)
  with pytest.raises(ValueError, match="increasing"):
    breakdowns.assign_buckets([1], [2, 2])


def test_grouped_mean_hand_computed():
  mean, count = breakdowns.grouped_mean([1.0, 0.0, 1.0, 0.5], [0, 0, 2, 2], 4)
  np.testing.assert_allclose(mean[[0, 2]], [0.5, 0.75])
  assert np.isnan(mean[1]) and np.isnan(mean[3])
  np.testing.assert_array_equal(count, [2, 0, 2, 0])
  with pytest.raises(ValueError, match="group ids"):
    breakdowns.grouped_mean([1.0], [3], 3)


# ----------------------------------------------------------------------------------------------
# Fig. 5.


def test_accuracy_by_bucket_hand_computed():
  pred = np.array([[0, 1], [2, 0], [1, 3], [4, 2]])
  true = np.array([[0, 2], [0, 1], [3, 3], [2, -1]])
  mask = np.array([[True, True], [True, True], [True, False], [True, False]])
  # Top 1: post 0 predicts 0 (true), post 1 predicts 2 (false), post 2 predicts 1 (false),
  # post 3 predicts 4 (false). Top 2 adds: post 1's 0 and post 2's 3 and post 3's 2.
  np.testing.assert_array_equal(breakdowns.accuracy_hits(pred, true, mask, 1),
                                [True, False, False, False])
  np.testing.assert_array_equal(breakdowns.accuracy_hits(pred, true, mask, 2), [True] * 4)
  buckets = np.array([1, 1, 0, 2])
  got = breakdowns.accuracy_by_bucket(pred, true, mask, buckets, 4, k=1)
  np.testing.assert_allclose(got["accuracy"][:3], [0.0, 0.5, 0.0])
  assert np.isnan(got["accuracy"][3])
  np.testing.assert_array_equal(got["posts"], [1, 2, 1, 0])
  # The posts' mean is A@1 as metrics computes it.
  assert np.mean(breakdowns.accuracy_hits(pred, true, mask, 1)) == metrics.accuracy_at_k(
      pred, true, mask, 1)
  with pytest.raises(ValueError, match="ks"):
    breakdowns.accuracy_hits(pred, true, mask, 3)


# ----------------------------------------------------------------------------------------------
# Figs. 9 and 10.


def test_retrieval_queries_count_each_post_once():
  true = np.array([[0, 0, 1], [1, 2, -1], [1, -1, -1]])
  mask = np.array([[True, True, True], [True, True, False], [True, False, False]])
  # Tag 0 is listed twice in post 0 but labels one post; tag 1 labels three, tag 2 one.
  np.testing.assert_array_equal(breakdowns.positives_per_tag(true, mask, 4), [1, 3, 1, 0])
  np.testing.assert_array_equal(breakdowns.retrieval_queries(true, mask, 4), [0, 1, 2])
  np.testing.assert_array_equal(breakdowns.retrieval_queries(true, mask, 4, min_positives=2), [1])
  with pytest.raises(ValueError, match="min_positives"):
    breakdowns.retrieval_queries(true, mask, 4, min_positives=0)


def test_per_tag_retrieval_precision_hand_computed():
  # Posts 0..3 and their tags: {0, 1}, {1}, {2}, {0}.
  true = np.array([[0, 1], [1, -1], [2, -1], [0, -1]])
  mask = true >= 0
  queries = np.array([0, 1, 2])
  top = np.array([[3, 1, 0],   # tag 0: posts 3 (yes), 1 (no), 0 (yes)
                  [2, 0, 1],   # tag 1: 2 (no), 0 (yes), 1 (yes)
                  [2, 3, 0]])  # tag 2: 2 (yes), then no, no
  np.testing.assert_array_equal(breakdowns.retrieval_relevance(queries, top, true, mask),
                                [[1, 0, 1], [0, 1, 1], [1, 0, 0]])
  np.testing.assert_allclose(breakdowns.per_tag_retrieval_precision(queries, top, true, mask, 2),
                             [0.5, 0.5, 0.5])
  per_tag = breakdowns.per_tag_retrieval_precision(queries, top, true, mask, 3)
  np.testing.assert_allclose(per_tag, [2 / 3, 2 / 3, 1 / 3])
  # Their mean is metrics' P@k (Veit eq. 8).
  assert np.isclose(per_tag.mean(),
                    metrics.tag_retrieval_precision_at_k(queries, top, true, mask, ks=(3,))["P@3"])
  # By training-frequency bucket (ids are ranks): tags 0 and 1 in one bucket, tag 2 in another.
  mean, tags = breakdowns.grouped_mean(per_tag, breakdowns.assign_buckets(queries, [0, 2, 4]), 2)
  np.testing.assert_allclose(mean, [2 / 3, 1 / 3])
  np.testing.assert_array_equal(tags, [2, 1])
  with pytest.raises(ValueError, match="k=4"):
    breakdowns.per_tag_retrieval_precision(queries, top, true, mask, 4)
  with pytest.raises(ValueError, match="index the 4 posts"):
    breakdowns.retrieval_relevance(queries, top + 2, true, mask)
