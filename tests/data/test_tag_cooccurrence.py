"""PPMI of hashtag co-occurrence and its SVD embeddings, on a table small enough to do by hand."""

import numpy as np
import pytest

from hashjax.data import tag_cooccurrence
from hashjax.data.reader import PAD_ID

# Six posts over five hashtags; hashtag 4 only ever appears alone.
POSTS = [[0, 1], [0, 1], [0, 1], [0, 2], [1, 2, 3], [4]]


def _padded(posts):
  width = max(map(len, posts))
  ids = np.array([p + [PAD_ID] * (width - len(p)) for p in posts], np.int32)
  return ids, ids != PAD_ID


def _counts():
  return tag_cooccurrence.cooccurrence_counts(*_padded(POSTS), num_tags=5)


def test_cooccurrence_counts_the_posts_shared_by_two_distinct_hashtags():
  expected = np.zeros((5, 5))
  for a, b, n in [(0, 1, 3), (0, 2, 1), (1, 2, 1), (1, 3, 1), (2, 3, 1)]:
    expected[a, b] = expected[b, a] = n
  np.testing.assert_array_equal(_counts().toarray(), expected)
  with pytest.raises(ValueError, match="outside the vocabulary"):
    tag_cooccurrence.cooccurrence_counts(*_padded([[0, 5]]), num_tags=5)


def test_ppmi_by_hand():
  # Row sums C_a = (4, 5, 3, 2, 0), C = 14; PPMI_ab = max(0, log(C_ab C / (C_a C_b))).
  expected = np.zeros((5, 5))
  for a, b, value in [(0, 1, np.log(3 * 14 / (4 * 5))), (0, 2, np.log(14 / (4 * 3))),
                      (1, 3, np.log(14 / (5 * 2))), (2, 3, np.log(14 / (3 * 2)))]:
    expected[a, b] = expected[b, a] = value
  # (1, 2): log(14 / 15) < 0, clipped; never-paired hashtags are 0 (log 0 would be -inf).
  matrix = tag_cooccurrence.ppmi(_counts())
  np.testing.assert_allclose(matrix.toarray(), expected, rtol=1e-12)
  assert matrix.nnz == 8  # only the positive entries are stored
  with pytest.raises(ValueError, match="no two hashtags share a post"):
    tag_cooccurrence.ppmi(tag_cooccurrence.cooccurrence_counts(*_padded([[0], [1]]), 5))


def test_full_rank_svd_reconstructs_the_ppmi_matrix_and_the_isolated_hashtag_is_zero():
  matrix = tag_cooccurrence.ppmi(_counts())
  dense = matrix.toarray()
  rank = np.linalg.matrix_rank(dense)
  assert rank == 4  # hashtag 4's row and column are zero
  u, s, vt = tag_cooccurrence.truncated_svd(matrix, rank)
  np.testing.assert_allclose((u * s) @ vt, dense, atol=1e-10)
  assert np.all(np.diff(s) <= 0)
  np.testing.assert_allclose(s, np.linalg.svd(dense, compute_uv=False)[:rank], rtol=1e-10)
  emb = tag_cooccurrence.ppmi_embeddings(matrix, rank)
  np.testing.assert_allclose(emb.embeddings, u * np.sqrt(s), rtol=1e-6, atol=1e-7)
  assert emb.embeddings.dtype == np.float32 and emb.num_zero_rows == 1
  np.testing.assert_array_equal(emb.embeddings[4], 0.0)
  # The symmetric split: E (V S^(1/2))^T is the matrix again.
  np.testing.assert_allclose(emb.embeddings @ (vt.T * np.sqrt(s)).T, dense, atol=1e-6)


def test_truncated_svd_is_the_top_directions_and_deterministic():
  rng = np.random.default_rng(0)
  dense = rng.random((12, 12))
  dense = np.maximum(dense + dense.T - 1.0, 0.0)  # symmetric, sparse-ish, like a PPMI matrix
  u, s, vt = tag_cooccurrence.truncated_svd(dense, 3)
  np.testing.assert_allclose(s, np.linalg.svd(dense, compute_uv=False)[:3], rtol=1e-8)
  again = tag_cooccurrence.truncated_svd(dense, 3)
  for x, y in zip((u, s, vt), again):
    np.testing.assert_array_equal(x, y)
  # The sign convention: each column's largest-magnitude entry is positive.
  assert np.all(u[np.argmax(np.abs(u), axis=0), np.arange(3)] > 0)


@pytest.mark.parametrize("dim", [0, 5, 6])
def test_a_dimension_the_vocabulary_does_not_allow_is_an_error(dim):
  with pytest.raises(ValueError, match=r"D=\d+ must be in \[1, 5\)"):
    tag_cooccurrence.ppmi_embeddings(tag_cooccurrence.ppmi(_counts()), dim)


def test_training_embeddings_read_only_the_training_posts(tiny_dataset):
  rows = tiny_dataset.split_rows("train")
  batch = tiny_dataset.read(rows, fields=("row",))
  counts = tag_cooccurrence.training_cooccurrence(tiny_dataset, chunk=100)  # several chunks
  expected = tag_cooccurrence.cooccurrence_counts(batch["tag_ids"], batch["tag_mask"],
                                                  tiny_dataset.num_tags)
  np.testing.assert_array_equal(counts.toarray(), expected.toarray())
  emb = tag_cooccurrence.training_ppmi_embeddings(tiny_dataset, 8)
  assert emb.embeddings.shape == (tiny_dataset.num_tags, 8)
  isolated = np.asarray(counts.sum(axis=1)).ravel() == 0
  assert emb.num_zero_rows == isolated.sum()
  assert np.all(np.linalg.norm(emb.embeddings[~isolated], axis=1) > 0)
