"""Tests for hashjax.metrics on small cases computed by hand."""

import numpy as np
import pytest

from hashjax.eval import metrics

# Three posts, five tags (0..4). Padding entries have mask False; post 1 pads
# with id 0, which it also predicts at rank 1, so counting padding would show.
#   post 0: GT {1, 3}     pred [3, 0, 1, 4] -> hits [1, 0, 1, 0]
#   post 1: GT {2}        pred [0, 4, 2, 1] -> hits [0, 0, 1, 0]
#   post 2: GT {0, 1, 4}  pred [4, 2, 3, 0] -> hits [1, 0, 0, 1]
TRUE_IDS = np.array([[1, 3, -1], [2, 0, 7], [0, 1, 4]])
TRUE_MASK = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1]], bool)
PRED = np.array([[3, 0, 1, 4], [0, 4, 2, 1], [4, 2, 3, 0]])


def test_hits_ignores_padding():
  expected = [[1, 0, 1, 0], [0, 0, 1, 0], [1, 0, 0, 1]]
  np.testing.assert_array_equal(metrics.hits(PRED, TRUE_IDS, TRUE_MASK), np.array(expected, bool))


def test_ranking_metrics_hand_computed():
  got = metrics.ranking_metrics(PRED, TRUE_IDS, TRUE_MASK, ks=(1, 2, 4))
  expected = {
      "P@1": 2 / 3, "P@2": (1 / 2 + 0 + 1 / 2) / 3, "P@4": (2 / 4 + 1 / 4 + 2 / 4) / 3,
      "R@1": (1 / 2 + 0 + 1 / 3) / 3, "R@2": (1 / 2 + 0 + 1 / 3) / 3,
      "R@4": (2 / 2 + 1 / 1 + 2 / 3) / 3,
      "A@1": 2 / 3, "A@2": 2 / 3, "A@4": 1.0,
  }
  assert got.keys() == expected.keys()
  for key, value in expected.items():
    assert got[key] == pytest.approx(value), key


def test_single_metric_functions_agree_with_hand_values():
  assert metrics.precision_at_k(PRED, TRUE_IDS, TRUE_MASK, 4) == pytest.approx(5 / 12)
  assert metrics.recall_at_k(PRED, TRUE_IDS, TRUE_MASK, 4) == pytest.approx(8 / 9)
  assert metrics.accuracy_at_k(PRED, TRUE_IDS, TRUE_MASK, 1) == pytest.approx(2 / 3)


def test_k_larger_than_ground_truth():
  # One true tag found at rank 1: recall is complete, precision is capped at 1/k.
  got = metrics.ranking_metrics([[5, 1, 2]], [[5]], [[True]], ks=(3,))
  assert got == {"P@3": pytest.approx(1 / 3), "R@3": 1.0, "A@3": 1.0}


def test_duplicate_ground_truth_counts_once():
  # GT lists tag 2 twice: |GT| = 2, not 3.
  got = metrics.ranking_metrics([[2, 9]], [[2, 2, 4]], [[True, True, True]], ks=(2,))
  assert got["R@2"] == pytest.approx(1 / 2)
  assert got["P@2"] == pytest.approx(1 / 2)


def test_padding_values_are_irrelevant():
  other_pad = np.where(TRUE_MASK, TRUE_IDS, 4)  # pads now collide with predictions
  a = metrics.ranking_metrics(PRED, TRUE_IDS, TRUE_MASK, ks=(1, 4))
  b = metrics.ranking_metrics(PRED, other_pad, TRUE_MASK, ks=(1, 4))
  assert a == b


def test_empty_ground_truth_raises():
  mask = TRUE_MASK.copy()
  mask[1] = False
  with pytest.raises(ValueError, match="empty ground truth"):
    metrics.ranking_metrics(PRED, TRUE_IDS, mask, ks=(1,))
  with pytest.raises(ValueError, match="empty ground truth"):
    metrics.per_tag_precision_recall(PRED, TRUE_IDS, mask, 5, 2)


@pytest.mark.parametrize("ks", [(1, 5), (0,)])
def test_bad_ks_raise(ks):
  with pytest.raises(ValueError):
    metrics.ranking_metrics(PRED, TRUE_IDS, TRUE_MASK, ks=ks)


def test_duplicate_predictions_raise():
  pred = PRED.copy()
  pred[2, 3] = 4  # post 2 would predict its true tag 4 twice
  with pytest.raises(ValueError, match="repeat"):
    metrics.ranking_metrics(pred, TRUE_IDS, TRUE_MASK, ks=(4,))


def test_per_tag_precision_recall_hand_computed():
  # Top-2: post 0 [3, 0], post 1 [0, 4], post 2 [4, 2]; correct: 3 (post 0), 4 (post 2).
  # V = 6 so tag 5 is never true nor predicted.
  stats = metrics.per_tag_precision_recall(PRED, TRUE_IDS, TRUE_MASK, num_tags=6, k=2)
  np.testing.assert_array_equal(stats.num_predicted, [2, 0, 1, 1, 2, 0])
  np.testing.assert_array_equal(stats.num_correct, [0, 0, 0, 1, 1, 0])
  np.testing.assert_array_equal(stats.num_true, [1, 2, 1, 1, 1, 0])  # pad 0 of post 1 ignored
  np.testing.assert_array_equal(stats.precision, [0, np.nan, 0, 1, 0.5, np.nan])
  np.testing.assert_array_equal(stats.recall, [0, 0, 0, 1, 1, np.nan])
  # The formula as printed in Denton et al. divides by all N * k predictions.
  assert stats.num_correct[3] / (3 * 2) == pytest.approx(1 / 6)


def test_per_tag_rejects_out_of_range_ids():
  with pytest.raises(ValueError, match="tag ids"):
    metrics.per_tag_precision_recall(PRED, TRUE_IDS, TRUE_MASK, num_tags=4, k=2)


# scores 0.9 0.8 0.8 0.5 0.3, labels 1 0 1 0 1 (3 positives):
#   t=0.9: 1 predicted, TP 1 -> P 1,   R 1/3
#   t=0.8: 3 predicted, TP 2 -> P 2/3, R 2/3  (the tied pair enters together)
#   t=0.5: 4 predicted, TP 2 -> P 1/2, R 2/3
#   t=0.3: 5 predicted, TP 3 -> P 3/5, R 1
#   AP = 1/3 * 1 + 1/3 * 2/3 + 0 * 1/2 + 1/3 * 3/5 = 34/45
PR_SCORES = np.array([0.5, 0.8, 0.9, 0.3, 0.8])
PR_LABELS = np.array([0, 1, 1, 1, 0], bool)


def test_precision_recall_curve_hand_computed():
  precision, recall, thresholds = metrics.precision_recall_curve(PR_SCORES, PR_LABELS)
  np.testing.assert_allclose(thresholds, [0.9, 0.8, 0.5, 0.3])
  np.testing.assert_allclose(precision, [1, 2 / 3, 1 / 2, 3 / 5])
  np.testing.assert_allclose(recall, [1 / 3, 2 / 3, 2 / 3, 1])
  assert metrics.average_precision(PR_SCORES, PR_LABELS) == pytest.approx(34 / 45)


def test_average_precision_perfect_and_worst_ranking():
  labels = np.array([1, 1, 0, 0, 0], bool)
  assert metrics.average_precision([5, 4, 3, 2, 1], labels) == pytest.approx(1.0)
  # Positives last: AP = 1/2 * 1/4 + 1/2 * 2/5.
  assert metrics.average_precision([1, 2, 3, 4, 5], labels) == pytest.approx(0.325)


def test_average_precision_matches_sklearn_if_installed():
  sklearn_metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 6, size=200).astype(float)  # many ties
  labels = rng.random(200) < 0.3
  assert metrics.average_precision(scores, labels) == pytest.approx(
      sklearn_metrics.average_precision_score(labels, scores))


def test_precision_recall_curve_rejects_bad_input():
  with pytest.raises(ValueError, match="positive"):
    metrics.precision_recall_curve([1.0, 2.0], [False, False])
  with pytest.raises(ValueError, match="NaN"):
    metrics.precision_recall_curve([np.nan, 2.0], [True, False])


def test_tags_in_ground_truth():
  np.testing.assert_array_equal(metrics.tags_in_ground_truth(TRUE_IDS, TRUE_MASK), [0, 1, 2, 3, 4])
  # Padding id 7 of post 1 is not a tag of the test set.
  assert 7 not in metrics.tags_in_ground_truth(TRUE_IDS, TRUE_MASK)


def test_tag_retrieval_hand_computed():
  # Query tag 1 -> posts [2, 1]: post 2 has 1, post 1 does not.
  # Query tag 3 -> posts [1, 0]: only post 0 has 3.
  # Query tag 0 -> posts [1, 2]: post 1 only pads with 0 (no), post 2 has 0.
  got = metrics.tag_retrieval_precision_at_k(
      [1, 3, 0], [[2, 1], [1, 0], [1, 2]], TRUE_IDS, TRUE_MASK, ks=(1, 2))
  assert got["P@1"] == pytest.approx(1 / 3)
  assert got["P@2"] == pytest.approx(1 / 2)


def test_tag_retrieval_rejects_bad_queries():
  with pytest.raises(ValueError, match="label no test post"):
    metrics.tag_retrieval_precision_at_k([7], [[1]], TRUE_IDS, TRUE_MASK, ks=(1,))
  with pytest.raises(ValueError, match="index"):
    metrics.tag_retrieval_precision_at_k([1], [[3]], TRUE_IDS, TRUE_MASK, ks=(1,))
  with pytest.raises(ValueError, match="repeat"):
    metrics.tag_retrieval_precision_at_k([1], [[2, 2]], TRUE_IDS, TRUE_MASK, ks=(2,))


# Five representations; user C has one, so it is skipped as a query.
#   r0 = [2, 0] A, r1 = [0, 3] A, r2 = [1, 1] B, r3 = [5, 5] B, r4 = [-1, 0] C
# cosines: r0.r1 = 0, r0.r2 = r0.r3 = .71, r1.r2 = r1.r3 = .71, r1.r4 = 0, r2.r3 = 1.
#   r0: best A match r1 at 0; r2, r3 above       -> rank 3
#   r1: best A match r0 at 0; r2, r3 above, r4 tied at 0 (counts against) -> rank 4
#   r2, r3: each other at 1                       -> rank 1
REPS = np.array([[2, 0], [0, 3], [1, 1], [5, 5], [-1, 0]], np.float32)
USERS = np.array(["A", "A", "B", "B", "C"])


def test_user_retrieval_ranks_hand_computed():
  ranks, queries = metrics.user_retrieval_ranks(REPS, USERS)
  np.testing.assert_array_equal(queries, [0, 1, 2, 3])
  np.testing.assert_array_equal(ranks, [3, 4, 1, 1])


def test_user_retrieval_summary():
  got = metrics.user_retrieval(REPS, USERS, ks=(1, 3, 10))
  assert got == {"A@1": 0.5, "A@3": 0.75, "A@10": 1.0, "median_rank": 2.0,
                 "num_queries": 4, "num_skipped": 1}


def naive_user_ranks(x, users):
  """Reference: full similarity matrix, sort the others, pessimistic ties."""
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  sims = x @ x.T
  ranks = []
  for q in range(len(x)):
    others = [j for j in range(len(x)) if j != q]
    same = [j for j in others if users[j] == users[q]]
    if not same:
      continue
    # Sort by descending similarity, other users first among equals.
    order = sorted(others, key=lambda j: (-sims[q, j], users[j] == users[q]))
    ranks.append(1 + next(r for r, j in enumerate(order) if users[j] == users[q]))
  return np.array(ranks)


def test_user_retrieval_chunking_matches_naive_with_ties():
  # Rows are +-e_i scaled by powers of two: normalisation is exact and every
  # cosine is exactly -1, 0 or 1, so ties are real ties in floating point too.
  rng = np.random.default_rng(0)
  x = np.eye(4)[rng.integers(0, 4, size=60)] * rng.choice([-4.0, -1.0, 0.5, 2.0], size=(60, 1))
  users = rng.integers(0, 25, size=60)
  ref = naive_user_ranks(x, users)
  assert len(ref) > 40
  for chunk in (1, 7, 256):
    ranks, _ = metrics.user_retrieval_ranks(x, users, query_chunk=chunk)
    np.testing.assert_array_equal(ranks, ref)


def test_user_retrieval_matches_naive_on_random_data():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(80, 5))
  users = rng.integers(0, 30, size=80)
  ranks, _ = metrics.user_retrieval_ranks(x, users, query_chunk=16)
  np.testing.assert_array_equal(ranks, naive_user_ranks(x, users))


def test_user_retrieval_rejects_degenerate_input():
  with pytest.raises(ValueError, match="zero"):
    metrics.user_retrieval(np.zeros((2, 2)), [0, 0])
  with pytest.raises(ValueError, match="nothing to retrieve"):
    metrics.user_retrieval(np.eye(3), [0, 1, 2])
