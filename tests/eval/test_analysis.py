"""The figure computations (Denton Sec. 4.2-4.3) on hand-computed cases."""

import numpy as np
import pytest

from hashjax.data.synthetic import vocab as synthetic_vocab
from hashjax.eval import analysis, metrics

K = synthetic_vocab.KIND


# ----------------------------------------------------------------------------------------------
# Figure 6.


def test_per_tag_recall_hand_computed():
  pred = np.array([[0, 1], [2, 0], [1, 3]])
  true = np.array([[0, 2], [2, 1], [3, 3]])
  mask = np.array([[True, True], [True, True], [True, False]])
  # Tag 0 labels post 0 (hit). Tag 1 labels post 1 (missed: post 1 predicts 2, 0). Tag 2
  # labels posts 0 (missed) and 1 (hit). Tag 3 labels post 2 (hit). Tag 4 labels nothing.
  recall, num_true = analysis.per_tag_recall(pred, true, mask, num_tags=5, k=2)
  np.testing.assert_array_equal(num_true, [1, 1, 2, 1, 0])
  np.testing.assert_allclose(recall[:4], [1.0, 0.0, 0.5, 1.0])
  assert np.isnan(recall[4])
  recall1, _ = analysis.per_tag_recall(pred, true, mask, num_tags=5, k=1)
  np.testing.assert_allclose(recall1[:4], [1.0, 0.0, 0.5, 0.0])  # tag 3 is second in post 2


def test_recall_subsets_hand_computed():
  recalls = {"bil": np.array([0.9, 0.2, 0.5, 1.0, 0.1, 0.4]),
             "mult": np.array([0.8, 0.9, 0.5, 1.0, 0.6, 0.4])}
  num_true = np.array([50, 20, 30, 1, 10, 0])
  frequency = np.array([100, 90, 80, 70, 60, 50])
  sets = analysis.recall_subsets(recalls, num_true, frequency, base="bil", other="mult", n=3,
                                 min_positives=10)
  # Most frequent: by frequency, among tags with a test positive (tag 5 has none).
  np.testing.assert_array_equal(sets["most frequent"], [0, 1, 2])
  # Best for bilinear: tag 3 (recall 1 from one positive) is left out by min_positives.
  np.testing.assert_array_equal(sets["best for bil"], [0, 2, 1])
  # Gains: tag 1 +0.7, tag 4 +0.5, tag 2 0.0, tag 0 -0.1.
  np.testing.assert_array_equal(sets["largest gain of mult"], [1, 4, 2])


def test_recall_subsets_break_ties_by_lower_id():
  recalls = {"a": np.array([0.5, 0.5, 0.5]), "b": np.array([0.5, 0.5, 0.5])}
  sets = analysis.recall_subsets(recalls, np.array([10, 10, 10]), np.array([1, 1, 1]), base="a",
                                 other="b", n=2)
  for ids in sets.values():
    np.testing.assert_array_equal(ids, [0, 1])


# ----------------------------------------------------------------------------------------------
# Figure 5.


def test_choose_pr_tags_takes_the_commonest_of_each_kind_in_kind_order():
  kinds = np.array([K["concept"], K["social"], K["concept"], K["city"], K["concept"],
                    K["social"], K["tail"]])
  num_true = np.array([30, 40, 50, 5, 25, 20, 100])
  chosen = analysis.choose_pr_tags(kinds, num_true, kinds=("concept", "city", "social"),
                                   per_kind=2, min_positives=20)
  # concept: tags 2 (50), 0 (30); city: tag 3 has too few positives; social: 1 (40), 5 (20).
  np.testing.assert_array_equal(chosen, [2, 0, 1, 5])


def test_pr_curves_are_the_metrics_curves():
  scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.9]])
  labels = np.array([[True, False], [False, True], [True, False], [False, True]])
  curves = analysis.pr_curves(scores, labels)
  # Tag 0 ranks posts 0 (+), 1 (-), 2 (+), 3 (-): precision 1, 1/2, 2/3, 2/4.
  np.testing.assert_allclose(curves[0]["precision"], [1, 0.5, 2 / 3, 0.5])
  np.testing.assert_allclose(curves[0]["recall"], [0.5, 0.5, 1, 1])
  assert curves[0]["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
  assert curves[1]["ap"] == pytest.approx(1.0)  # both positives ranked first
  assert curves[1]["ap"] == metrics.average_precision(scores[:, 1], labels[:, 1])


def test_examples_kind_shares_and_presence():
  picked = analysis.choose_examples(np.arange(10, 20), 3)
  assert len(picked) == 3 and np.all(np.diff(picked) > 0) and set(picked) <= set(range(10, 20))
  np.testing.assert_array_equal(picked, analysis.choose_examples(np.arange(10, 20), 3))
  assert len(analysis.choose_examples(np.arange(2), 5)) == 2
  kinds = np.array([K["concept"], K["social"], K["generic"]])
  shares = analysis.kind_shares(np.array([[0, 1], [0, 2]]), kinds)
  assert shares[K["concept"]] == 0.5 and shares[K["social"]] == 0.25 and shares.sum() == 1
  np.testing.assert_allclose(analysis.presence(np.array([[0, 1], [0, 2]]), [0, 1, 3]),
                             [1.0, 0.5, 0.0])


def test_neighbour_measures_on_two_clusters():
  rng = np.random.default_rng(0)
  points = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
  labels = np.repeat([0, 1], 20)
  out = analysis.neighbour_agreement(points, labels, k=5)
  assert out == {"agreement": 1.0, "chance": 0.5}
  assert analysis.neighbour_agreement(points, rng.permutation(labels), k=5)["agreement"] < 0.8
  values = points[:, 0] + rng.normal(0, 0.01, 40)
  assert analysis.neighbour_correlation(points, values, k=5) > 0.95


def test_tsne_is_deterministic():
  vectors = np.random.default_rng(0).normal(size=(30, 5))
  a, b = analysis.tsne(vectors), analysis.tsne(vectors)
  assert a.shape == (30, 2)
  np.testing.assert_array_equal(a, b)
