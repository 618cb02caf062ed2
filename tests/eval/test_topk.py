"""Tests for hashjax.topk against a naive full-matrix argsort."""

import numpy as np
import pytest

from hashjax.eval import topk


def naive_top_k(scores: np.ndarray, k: int):
  """Reference: sort each full row by (score desc, id asc)."""
  ids = np.arange(scores.shape[1])
  order = np.stack([np.lexsort((ids, -row))[:k] for row in scores])
  return np.take_along_axis(scores, order, axis=1), order


def int_embeddings(rng, n, v, d, lo=-2, hi=2):
  """Small-integer embeddings: dot products are exact in float32 and tie often."""
  q = rng.integers(lo, hi + 1, size=(n, d)).astype(np.float32)
  t = rng.integers(lo, hi + 1, size=(v, d)).astype(np.float32)
  return q, t


def block_fn(scores):
  return lambda p0, p1, t0, t1: scores[p0:p1, t0:t1]


# (N, V, d, k, tag_chunk, post_chunk)
SHAPES = [
    (7, 13, 3, 1, 4, 3),      # k = 1; V, N not multiples of the chunks
    (7, 13, 3, 13, 4, 3),     # k = V
    (20, 50, 4, 5, 16, 8),    # several tag blocks, last one padded
    (5, 10, 2, 7, 3, 2),      # k > tag_chunk: the block is widened to k
    (9, 32, 3, 4, 8, 9),      # V a multiple of tag_chunk, one post chunk
    (1, 1, 2, 1, 8192, 1024), # single post, single tag
    (6, 11, 2, 3, 100, 100),  # chunks larger than the data
    # Blocks wide enough for the two-stage block top-k (see TWO_STAGE below).
    (20, 300, 3, 1, 200, 8),
    (13, 2000, 3, 10, 1500, 5),
    (4, 700, 2, 5, 8192, 4),
]
TWO_STAGE = SHAPES[-3:]


@pytest.mark.parametrize("n,v,d,k,tag_chunk,post_chunk", TWO_STAGE)
def test_two_stage_shapes_really_use_two_stage(n, v, d, k, tag_chunk, post_chunk):
  width, _ = topk._block_layout(v, k, tag_chunk)
  assert topk._use_two_stage(width, k)


def test_block_layout_is_balanced():
  # 10000 tags in blocks of <= 8192: two blocks of 5000 (rounded to 5024), not 2 x 8192.
  assert topk._block_layout(10000, 10, 8192) == (5024, 2)
  assert topk._block_layout(13, 1, 4) == (4, 4)  # 4 blocks of 3.25 -> width 4
  assert topk._block_layout(10, 7, 3) == (7, 2)   # widened to k, then balanced


@pytest.mark.parametrize("n,v,d,k,tag_chunk,post_chunk", SHAPES)
def test_two_tower_matches_naive_with_ties(n, v, d, k, tag_chunk, post_chunk):
  rng = np.random.default_rng(n * 1000 + v)
  q, t = int_embeddings(rng, n, v, d)
  full = q @ t.T
  if full.size > 1:
    assert len(np.unique(full)) < full.size  # the data really has ties
  ref_s, ref_i = naive_top_k(full, k)
  s, i = topk.top_k_two_tower(q, t, k, tag_chunk=tag_chunk, post_chunk=post_chunk)
  assert s.shape == i.shape == (n, k)
  assert s.dtype == np.float32 and i.dtype == np.int32
  np.testing.assert_array_equal(i, ref_i)
  np.testing.assert_array_equal(s, ref_s)


@pytest.mark.parametrize("n,v,d,k,tag_chunk,post_chunk", SHAPES)
def test_generic_matches_naive_and_two_tower(n, v, d, k, tag_chunk, post_chunk):
  rng = np.random.default_rng(n * 1000 + v)
  q, t = int_embeddings(rng, n, v, d)
  full = q @ t.T
  ref_s, ref_i = naive_top_k(full, k)
  s, i = topk.top_k_from_scores(block_fn(full), n, v, k,
                                post_chunk=post_chunk, tag_chunk=tag_chunk)
  assert s.dtype == np.float32 and i.dtype == np.int32
  np.testing.assert_array_equal(i, ref_i)
  np.testing.assert_array_equal(s, ref_s)
  s2, i2 = topk.top_k_two_tower(q, t, k, tag_chunk=tag_chunk, post_chunk=post_chunk)
  np.testing.assert_array_equal(i, i2)
  np.testing.assert_array_equal(s, s2)


def test_two_tower_float_data_and_jax_inputs():
  import jax.numpy as jnp
  rng = np.random.default_rng(0)
  q = rng.normal(size=(37, 8)).astype(np.float32)
  t = rng.normal(size=(101, 8)).astype(np.float32)
  ref_s, ref_i = naive_top_k(q @ t.T, 10)
  s, i = topk.top_k_two_tower(jnp.asarray(q), jnp.asarray(t), 10,
                              tag_chunk=32, post_chunk=16)
  np.testing.assert_array_equal(i, ref_i)
  np.testing.assert_allclose(s, ref_s, rtol=1e-5, atol=1e-5)


def test_two_stage_tie_across_groups_keeps_smaller_id():
  # Tag 0 (group 0) ties with tag 33 (group 1), whose group has the larger max
  # (tag 32). The smaller id, 0, must win even though its group ranks second.
  t = np.zeros((200, 1), np.float32)
  t[0], t[32], t[33] = 1.0, 2.0, 1.0
  assert topk._use_two_stage(topk._block_layout(200, 2, 16384)[0], 2)
  s, i = topk.top_k_two_tower(np.ones((3, 1), np.float32), t, 2)
  np.testing.assert_array_equal(i, [[32, 0]] * 3)
  np.testing.assert_array_equal(s, [[2.0, 1.0]] * 3)


def test_two_stage_float_data():
  rng = np.random.default_rng(1)
  q = rng.normal(size=(50, 16)).astype(np.float32)
  t = rng.normal(size=(3000, 16)).astype(np.float32)
  ref_s, ref_i = naive_top_k(q @ t.T, 10)
  s, i = topk.top_k_two_tower(q, t, 10, tag_chunk=2000, post_chunk=32)
  np.testing.assert_array_equal(i, ref_i)
  np.testing.assert_allclose(s, ref_s, rtol=1e-5, atol=1e-5)


def test_all_tied_rows_return_smallest_ids():
  q = np.zeros((3, 4), np.float32)
  t = np.ones((10, 4), np.float32)
  s, i = topk.top_k_two_tower(q, t, 4, tag_chunk=3, post_chunk=2)
  np.testing.assert_array_equal(i, np.tile(np.arange(4), (3, 1)))
  np.testing.assert_array_equal(s, 0.0)
  s, i = topk.top_k_from_scores(block_fn(np.zeros((3, 10))), 3, 10, 4, tag_chunk=3)
  np.testing.assert_array_equal(i, np.tile(np.arange(4), (3, 1)))


def test_generic_handles_minus_inf_scores():
  # -inf is a legal score (e.g. a masked tag); ties among -inf follow the id rule
  # and must never be beaten by internal padding.
  scores = np.full((2, 7), -np.inf, np.float32)
  scores[0, 5] = 1.0
  s, i = topk.top_k_from_scores(block_fn(scores), 2, 7, 3, tag_chunk=3, post_chunk=1)
  np.testing.assert_array_equal(i, [[5, 0, 1], [0, 1, 2]])
  assert s[0, 0] == 1.0 and np.all(np.isneginf(s[0, 1:])) and np.all(np.isneginf(s[1]))


def test_two_tower_minus_inf_scores_do_not_lose_to_padding():
  # Tags 0-2 score -inf (a legal score). With V=5 and blocks of 3 the table is
  # padded by one row that also scores -inf; padding must never be returned.
  q = np.ones((2, 1), np.float32)
  t = np.array([[-np.inf], [-np.inf], [-np.inf], [1.0], [2.0]], np.float32)
  s, i = topk.top_k_two_tower(q, t, 3, tag_chunk=3, post_chunk=2)
  np.testing.assert_array_equal(i, [[4, 3, 0]] * 2)
  np.testing.assert_array_equal(s[:, :2], [[2.0, 1.0]] * 2)
  assert np.all(np.isneginf(s[:, 2]))
  s, i = topk.top_k_two_tower(q, t, 5, tag_chunk=2, post_chunk=2)
  np.testing.assert_array_equal(i, [[4, 3, 0, 1, 2]] * 2)


def test_posts_per_tag_reads_the_matrix_by_column():
  rng = np.random.default_rng(3)
  q, t = int_embeddings(rng, 23, 9, 3)
  full = q @ t.T
  tag_ids = np.array([7, 0, 4])
  ref_s, ref_i = naive_top_k(full[:, tag_ids].T, 5)
  got_tags, s, i = topk.top_k_posts_per_tag(q, t, 5, tag_ids, post_chunk=4, tag_chunk=2)
  np.testing.assert_array_equal(got_tags, tag_ids)
  np.testing.assert_array_equal(i, ref_i)
  np.testing.assert_array_equal(s, ref_s)
  all_tags, _, i_all = topk.top_k_posts_per_tag(q, t, 5, post_chunk=4)
  np.testing.assert_array_equal(all_tags, np.arange(9))
  np.testing.assert_array_equal(i_all[tag_ids], ref_i)


def test_empty_query_set():
  t = np.ones((5, 2), np.float32)
  s, i = topk.top_k_two_tower(np.zeros((0, 2), np.float32), t, 2)
  assert s.shape == i.shape == (0, 2)


@pytest.mark.parametrize("k", [0, 6])
def test_bad_k_raises(k):
  q, t = np.ones((2, 2), np.float32), np.ones((5, 2), np.float32)
  with pytest.raises(ValueError):
    topk.top_k_two_tower(q, t, k)
  with pytest.raises(ValueError):
    topk.top_k_from_scores(block_fn(q @ t.T), 2, 5, k)


def test_dim_mismatch_raises():
  with pytest.raises(ValueError):
    topk.top_k_two_tower(np.ones((2, 3)), np.ones((5, 2)), 1)


def test_generic_rejects_nan_and_wrong_block_shape():
  scores = np.zeros((2, 5), np.float32)
  scores[1, 3] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    topk.top_k_from_scores(block_fn(scores), 2, 5, 2)
  with pytest.raises(ValueError, match="shape"):
    topk.top_k_from_scores(lambda *a: np.zeros((1, 1)), 2, 5, 2)
