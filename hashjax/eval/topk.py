"""Top-k over a large vocabulary without materialising the full score matrix.

Evaluation ranks every test post against every hashtag. For N test posts and a
vocabulary of V tags the score matrix S (S[i, y] = score of tag y for post i)
has N x V entries: 100k x 500k floats is 200 GB, so it is never built. Instead
S is produced block by block (``post_chunk`` x ``tag_chunk`` entries at a time)
and each post keeps a running top-k that is merged with every block's top-k:

    top_k(S[i, :]) = top_k( top_k(S[i, block_1]) ++ ... ++ top_k(S[i, block_C]) )

which holds because an entry in the overall top-k is necessarily in the top-k of
its own block.

Tie rule (every function in this module): results are sorted by score,
descending, and equal scores are ordered by id, ascending. Among tied candidates
at the k-th place the smaller ids are kept. The rule makes results deterministic
and independent of the chunk sizes, so the JAX two-tower path, the numpy generic
path and a naive ``argsort`` all agree exactly (tests rely on this).

Scores are compared in float32 (what is returned), and must not be NaN: NaN has
no place in a descending order. ``top_k_from_scores`` checks each block for NaN;
``top_k_two_tower`` does not (its order is then unspecified).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

ScoreFn = Callable[[int, int, int, int], np.ndarray]


def _check_k(k: int, num_items: int) -> None:
  if not 1 <= k <= num_items:
    raise ValueError(f"k must be in [1, {num_items}], got {k}.")


def _effective_chunk(chunk: int, k: int, num_items: int) -> int:
  """Block width: at least k (a block must be able to hold a whole top-k), at most V."""
  if chunk < 1:
    raise ValueError(f"chunk sizes must be positive, got {chunk}.")
  return min(max(chunk, k), num_items)


# Group width of the two-stage block top-k below (32 measured fastest on CPU
# among 16..256 for k = 10, 1024 x 8192 blocks).
_GROUP = 32


def _block_layout(num_tags: int, k: int, tag_chunk: int) -> tuple[int, int]:
  """(block width, number of blocks) covering num_tags with little padding.

  Blocks are balanced (V = 10000 with tag_chunk = 8192 gives 2 x 5000, not
  2 x 8192 with 39% padding). When a block is wide enough for the two-stage
  top-k it is rounded up to a multiple of _GROUP.
  """
  width = _effective_chunk(tag_chunk, k, num_tags)
  num_blocks = -(-num_tags // width)
  width = max(-(-num_tags // num_blocks), k)
  if _use_two_stage(width, k):
    width = -(-width // _GROUP) * _GROUP
    num_blocks = -(-num_tags // width)
  return width, num_blocks


def _use_two_stage(width: int, k: int) -> bool:
  # Worth it only if the second stage (k * _GROUP candidates) is much smaller
  # than the block.
  return width >= 2 * k * _GROUP


# ----------------------------------------------------------------------------
# Two-tower scores, in JAX.
# ----------------------------------------------------------------------------


def _merge_top_k(best_s, best_i, new_s, new_i, k):
  """Top-k of the union of two candidate lists.

  ``lax.top_k`` puts the lower position first on ties. The running list comes
  first and holds only ids smaller than the new block's, and within each list
  tied entries are already id-ascending, so position order on ties is id order.
  """
  all_s = jnp.concatenate([best_s, new_s], axis=1)
  all_i = jnp.concatenate([best_i, new_i], axis=1)
  top_s, pos = jax.lax.top_k(all_s, k)
  return top_s, jnp.take_along_axis(all_i, pos, axis=1)


def _two_stage_top_k(scores, k):
  """Exact ``lax.top_k(scores, k)`` (same tie rule), about 2x faster on CPU.

  Split each row into groups of _GROUP and keep the k groups with the largest
  maxima (ties: lower group). Every top-k entry lies in those groups: if an
  entry x is in another group, each kept group's maximum beats x (higher score,
  or equal score and a smaller id), giving k entries ranked above x. A full
  top_k then runs on k * _GROUP candidates instead of the whole row.
  """
  rows, width = scores.shape
  groups = scores.reshape(rows, width // _GROUP, _GROUP)
  _, gid = jax.lax.top_k(groups.max(axis=-1), k)
  # Gather the groups in id order so that ties still resolve to the smaller id.
  gid = jnp.sort(gid, axis=1)
  cand = jnp.take_along_axis(groups, gid[:, :, None], axis=1).reshape(rows, -1)
  top_s, pos = jax.lax.top_k(cand, k)
  ids = jnp.take_along_axis(gid, pos // _GROUP, axis=1) * _GROUP + pos % _GROUP
  return top_s, ids


@functools.partial(jax.jit, static_argnames=("k", "width", "num_tags"))
def _post_chunk_top_k(queries, padded_table, *, k, width, num_tags):
  """Top-k tags for one chunk of posts; scans the padded tag table block by block."""
  return scan_top_k(queries, padded_table, num_tags, k=k, width=width)


def scan_top_k(queries, padded_table, num_valid, *, k: int, width: int):
  """Top-k of queries . padded_table^T over its first num_valid rows, `width` rows a block.

  num_valid may be traced (a vocabulary shard's real rows depend on its index,
  hashjax.eval.sharded_topk). Traceable; jit it through its caller.
  """
  num_blocks = padded_table.shape[0] // width
  queries = queries.astype(jnp.float32)
  block_select = _two_stage_top_k if _use_two_stage(width, k) else jax.lax.top_k

  def block_top_k(b):
    start = b * width
    block = jax.lax.dynamic_slice_in_dim(padded_table, start, width, axis=0)
    scores = queries @ block.T
    ids = start + jnp.arange(width, dtype=jnp.int32)
    # Padding rows are not tags: -inf keeps them out of any top-k that has
    # enough real candidates (always the case: block 0 holds >= k real tags,
    # and padding has the largest ids, so it loses every tie).
    scores = jnp.where(ids[None, :] < num_valid, scores, -jnp.inf)
    top_s, pos = block_select(scores, k)
    return top_s, pos.astype(jnp.int32) + start

  # The first block seeds the running top-k. Seeding with (-inf, dummy id)
  # instead would let dummies win ties against genuine -inf scores.
  def body(b, carry):
    return _merge_top_k(*carry, *block_top_k(b), k)

  return jax.lax.fori_loop(1, num_blocks, body, block_top_k(0))


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  if x.shape[0] == rows:
    return x
  return np.concatenate([x, np.zeros((rows - x.shape[0],) + x.shape[1:], x.dtype)])


def top_k_two_tower(queries, tag_table, k: int, *, tag_chunk: int = 16384,
                    post_chunk: int = 128) -> tuple[np.ndarray, np.ndarray]:
  """Top-k tags per post for dot-product scores, in bounded memory.

  Computes, for every post i and without forming the N x V matrix,

      S[i, y] = <queries[i], tag_table[y]>,
      ids[i]  = the k tags y with the largest S[i, y] (ties: smaller y first).

  Peak memory is about post_chunk x tag_chunk float32 scores plus the tag table.
  The defaults (a 128 x 16384 block, 8 MB) were the fastest of those measured
  on a 2-core CPU: blocks much larger than the cache, or many small blocks
  (a fixed cost per loop iteration), were both up to 3x slower.

  Args:
    queries: [N, d] query-tower outputs (numpy or jax array).
    tag_table: [V, d] tag-tower outputs.
    k: number of tags to return per post, 1 <= k <= V.
    tag_chunk: target number of tags scored per block (raised to k if
      smaller; blocks are then balanced and may be rounded up to a multiple of
      32, see ``_block_layout``).
    post_chunk: posts per jitted call. The last chunk is zero-padded so every
      call has the same shape and XLA compiles once.

  Returns:
    (scores [N, k] float32, ids [N, k] int32) as host numpy arrays, each row
    sorted by descending score with the module's tie rule.
  """
  n, d = queries.shape
  num_tags, d_tags = tag_table.shape
  if d != d_tags:
    raise ValueError(f"queries have dim {d} but tag_table has dim {d_tags}.")
  _check_k(k, num_tags)
  if post_chunk < 1:
    raise ValueError(f"post_chunk must be positive, got {post_chunk}.")
  width, num_blocks = _block_layout(num_tags, k, tag_chunk)
  table = jnp.asarray(tag_table, jnp.float32)
  table = jnp.pad(table, ((0, num_blocks * width - num_tags), (0, 0)))

  post_chunk = min(post_chunk, max(n, 1))
  fn = functools.partial(_post_chunk_top_k, k=k, width=width, num_tags=num_tags)
  queries = np.asarray(queries, np.float32)
  # Dispatch every chunk before reading any result back: JAX runs them
  # asynchronously, so host-side slicing/padding overlaps device work.
  pending = [fn(_pad_rows(queries[s:s + post_chunk], post_chunk), table)
             for s in range(0, n, post_chunk)]
  if not pending:
    return np.zeros((0, k), np.float32), np.zeros((0, k), np.int32)
  scores = np.concatenate([np.asarray(s) for s, _ in pending])[:n]
  ids = np.concatenate([np.asarray(i) for _, i in pending])[:n]
  return scores, ids


def top_k_posts_per_tag(queries, tag_table, k: int, tag_ids=None, *,
                        post_chunk: int = 16384, tag_chunk: int = 128
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Top-k posts per tag: the same score matrix read column-wise (retrieval).

  For each requested tag y, the k posts i with the largest S[i, y] =
  <queries[i], tag_table[y]> (ties: smaller post index first). This is
  ``top_k_two_tower`` with the roles of posts and tags swapped, so the tags play
  the query side (chunked by ``tag_chunk``) and the posts are scanned in blocks
  of ``post_chunk``.

  Args:
    queries: [N, d] query-tower outputs of the test posts.
    tag_table: [V, d] tag-tower outputs.
    k: posts to return per tag, 1 <= k <= N.
    tag_ids: optional [H] tag ids to query; all V tags if None.

  Returns:
    (tag_ids [H] int, scores [H, k] float32, post_ids [H, k] int32).
  """
  if tag_ids is None:
    tag_ids = np.arange(tag_table.shape[0])
  tag_ids = np.asarray(tag_ids)
  scores, post_ids = top_k_two_tower(
      tag_table[tag_ids], queries, k,
      tag_chunk=post_chunk, post_chunk=tag_chunk)
  return tag_ids, scores, post_ids


# ----------------------------------------------------------------------------
# Arbitrary scorers, in numpy.
# ----------------------------------------------------------------------------


def _select_top_k(scores: np.ndarray, ids: np.ndarray, k: int):
  """Row-wise top-k of [P, m] candidates, in score-desc / id-asc order.

  Requires that, among equal scores in a row, position order is id order (the
  callers guarantee it), so "smaller id wins ties" becomes "earlier position
  wins", which a stable sort and a running count of ties both respect.
  """
  m = scores.shape[1]
  # kth = the k-th largest score of each row, found in O(m) by partitioning.
  kth = np.partition(scores, m - k, axis=1)[:, m - k:m - k + 1]
  above = scores > kth
  at = scores == kth
  # Keep all entries above kth plus the first (k - #above) entries equal to it.
  room = k - above.sum(axis=1, keepdims=True)
  keep = above | at
  # Only rows with more ties at kth than room need the (costly) running count.
  tight = np.flatnonzero(at.sum(axis=1, keepdims=True)[:, 0] > room[:, 0])
  if tight.size:
    first_ties = np.cumsum(at[tight], axis=1) <= room[tight]
    keep[tight] = above[tight] | (at[tight] & first_ties)
  # Exactly k True per row, so the row-major nonzero reshapes cleanly.
  sel_s = scores[keep].reshape(-1, k)
  sel_i = ids[keep].reshape(-1, k)
  order = np.argsort(-sel_s, axis=1, kind="stable")
  return (np.take_along_axis(sel_s, order, axis=1),
          np.take_along_axis(sel_i, order, axis=1))


def top_k_from_scores(score_fn: ScoreFn, num_posts: int, num_tags: int, k: int, *,
                      post_chunk: int = 256, tag_chunk: int = 16384
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Top-k tags per post for any scorer, block by block, in numpy.

  For scorers that are not a dot product (frequency baselines, oracles, ...).
  ``score_fn(post_start, post_stop, tag_start, tag_stop)`` must return the block
  S[post_start:post_stop, tag_start:tag_stop] as an array of that shape. Only
  one block (post_chunk x tag_chunk) plus the running [post_chunk, k] top-k is
  alive at a time. Same outputs and tie rule as ``top_k_two_tower``.

  Returns:
    (scores [N, k] float32, ids [N, k] int32), rows sorted descending.

  Raises:
    ValueError: on a bad k, a block of the wrong shape, or NaN scores.
  """
  _check_k(k, num_tags)
  if post_chunk < 1:
    raise ValueError(f"post_chunk must be positive, got {post_chunk}.")
  tag_chunk = _effective_chunk(tag_chunk, k, num_tags)
  out_s = np.empty((num_posts, k), np.float32)
  out_i = np.empty((num_posts, k), np.int32)
  for p0 in range(0, num_posts, post_chunk):
    p1 = min(p0 + post_chunk, num_posts)
    best_s = np.empty((p1 - p0, 0), np.float32)
    best_i = np.empty((p1 - p0, 0), np.int32)
    for t0 in range(0, num_tags, tag_chunk):
      t1 = min(t0 + tag_chunk, num_tags)
      block = np.asarray(score_fn(p0, p1, t0, t1), np.float32)
      if block.shape != (p1 - p0, t1 - t0):
        raise ValueError(f"score_fn({p0}, {p1}, {t0}, {t1}) returned shape "
                         f"{block.shape}, expected {(p1 - p0, t1 - t0)}.")
      if np.isnan(block).any():
        raise ValueError("score_fn returned NaN scores.")
      block_i = np.broadcast_to(np.arange(t0, t1, dtype=np.int32), block.shape)
      # Running list first: its ids are all smaller, and its ties are already
      # id-ascending, which is what _select_top_k needs.
      cand_s = np.concatenate([best_s, block], axis=1)
      cand_i = np.concatenate([best_i, block_i], axis=1)
      best_s, best_i = _select_top_k(cand_s, cand_i, min(k, cand_s.shape[1]))
    out_s[p0:p1], out_i[p0:p1] = best_s, best_i
  return out_s, out_i
