"""Top-k over a tag table sharded along the vocabulary across devices.

A tag table too large for one device is split by rows over a mesh axis
("model"): device s holds rows [s R, (s + 1) R) of the table padded to S x R
rows (S = the axis size, R = rows per shard). Each device ranks its own rows,
and the global top-k is the top-k of the shards' top-k lists:

    top_k(S[i, :]) = top_k( top_k(S[i, shard_0]) ++ ... ++ top_k(S[i, shard_{S-1}]) )

(an entry of the global top-k is necessarily in the top-k of its own shard).
Every device scans its shard in blocks exactly like ``topk.top_k_two_tower``,
shifts the ids by its offset s R, the S candidate lists are all-gathered over
the axis, and each device merges the S x k candidates. No device ever holds
more than post_chunk x block-width scores, never [N, K].

On a 2-D mesh ("data", "model") the queries are also split, over "data" (more
generally over every mesh axis other than the table's): each device then scores
its slice of the queries against its slice of the table, and the all-gather
runs within a "model" row only.

Tie rule: the one of ``hashjax.eval.topk`` (score descending, equal scores by
id ascending), so results are identical to the unsharded ``top_k_two_tower``.
It survives the merge because the gathered candidates are laid out shard after
shard, every id of shard s is smaller than every id of shard s + 1, and each
shard's list is already id-ascending on ties: position order on ties is id
order, which ``lax.top_k`` keeps (lower position first).

Padding (K not a multiple of S, or of the block width) gets ids >= K and the
score -inf by masking, not by the padded values (a finite row cannot score
-inf, and a -inf row gives NaN against a zero query). Padding never reaches
the output: real rows lose no tie to it (smaller ids), and the shards return
at least k real candidates in total. With k_s = min(k, R) candidates per
shard and r_s real rows in shard s, they return sum_s min(k_s, r_s) real
ones: if k_s = R that is all K >= k real rows; otherwise k_s = k, and either
some shard has r_s >= k or the sum is sum_s r_s = K >= k.

Only single-process jobs read results back (``np.asarray`` of the outputs);
in a multi-host job the outputs are not fully addressable.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from hashjax.eval import topk

# Chunks dispatched before waiting on an older one. A multi-device CPU loop that
# never waits can deadlock in XLA's CPU collectives (DESIGN.md, section 6); a
# small window still overlaps host slicing with device work.
_IN_FLIGHT = 4


def make_vocab_mesh(data: int = 1, model: int | None = None, devices=None) -> Mesh:
  """A 2-D mesh ("data", "model") over the first data x model local devices.

  Queries split over "data", the tag table's rows over "model". ``model``
  defaults to every remaining device (len(devices) // data). Axis types are
  Auto: shard_map does the manual partitioning, and ``jax.make_mesh`` would
  default to Explicit axes in this jax version.
  """
  devices = list(jax.local_devices() if devices is None else devices)
  if data < 1:
    raise ValueError(f"data must be >= 1, got {data}.")
  model = len(devices) // data if model is None else model
  if model < 1 or data * model > len(devices):
    raise ValueError(f"a {data} x {model} mesh needs {data * model} devices, "
                     f"{len(devices)} available.")
  grid = np.array(devices[:data * model]).reshape(data, model)
  return Mesh(grid, ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))


class VocabLayout(NamedTuple):
  """How the table is cut: R rows per shard, scanned in blocks of ``width``.

  ``k_local`` = min(k, R) candidates per shard; R is a multiple of ``width``
  so every block is a full, static-shape slice.
  """
  rows_per_shard: int
  width: int
  k_local: int


def vocab_layout(num_tags: int, num_shards: int, k: int,
                 tag_chunk: int = 16384) -> VocabLayout:
  """Rows per shard and block width for K tags over S shards.

  Starts from the balanced R0 = ceil(K / S) rows per shard and blocks them
  as ``top_k_two_tower`` blocks a table of R0 tags (``topk._block_layout``):
  R = (number of blocks) x width >= R0. When k > R0 the block is the whole
  shard (width = R0 = R), so k_local = min(k, R0) = min(k, R) either way.
  """
  topk._check_k(k, num_tags)
  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}.")
  rows0 = -(-num_tags // num_shards)
  k_local = min(k, rows0)
  width, num_blocks = topk._block_layout(rows0, k_local, tag_chunk)
  rows = width * num_blocks
  assert k_local == min(k, rows), (k, rows0, rows)
  return VocabLayout(rows, width, k_local)


def shard_tag_table(tag_table, mesh: Mesh, axis: str = "model",
                    rows_per_shard: int | None = None) -> jax.Array:
  """The [K, d] table zero-padded to S x R rows, rows split over ``axis``.

  Each device receives only its own [R, d] shard (built from the host copy
  by ``make_array_from_callback``): the full table is never put on one
  device. Padding values are irrelevant, the scan masks ids >= K.
  """
  _check_axis(mesh, axis)
  num_shards = mesh.shape[axis]
  num_tags, d = tag_table.shape
  rows = -(-num_tags // num_shards) if rows_per_shard is None else rows_per_shard
  if rows * num_shards < num_tags:
    raise ValueError(f"{num_shards} shards of {rows} rows cannot hold {num_tags} tags.")
  host = np.asarray(tag_table, np.float32)
  host = np.pad(host, ((0, rows * num_shards - num_tags), (0, 0)))
  sharding = NamedSharding(mesh, P(axis, None))
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _check_axis(mesh: Mesh, axis: str) -> None:
  if axis not in mesh.axis_names:
    raise ValueError(f"axis {axis!r} is not an axis of the mesh {mesh.axis_names}.")


def _query_axes(mesh: Mesh, axis: str) -> tuple[str, ...]:
  # Every other axis splits the queries, so no two devices do the same work.
  return tuple(name for name in mesh.axis_names if name != axis)


@functools.lru_cache(maxsize=64)
def make_sharded_top_k_fn(mesh: Mesh, axis: str, k: int, layout: VocabLayout,
                          num_tags: int):
  """Jitted (queries [P, d], sharded table [S R, d]) -> (scores, ids) [P, k].

  The queries are split over the mesh's other axes (P must be a multiple of
  their size), the table over ``axis``; both outputs come back split like the
  queries. Cached, so repeated calls with one configuration compile once.
  """
  _check_axis(mesh, axis)
  rows, width, k_local = layout
  if rows % width:
    raise ValueError(f"rows_per_shard {rows} is not a multiple of width {width}.")
  query_spec = P(_query_axes(mesh, axis) or None, None)

  def local(queries, shard):
    offset = jax.lax.axis_index(axis) * rows
    num_valid = jnp.clip(num_tags - offset, 0, rows)
    # Rows >= num_valid (the padding) score -inf and have the shard's largest ids, so they
    # lose every tie, and seeding with block 0 (even an all-padding block) is safe.
    scores, ids = topk.scan_top_k(queries, shard, num_valid, k=k_local, width=width)
    ids = ids + offset.astype(jnp.int32)
    # [p, S k_local], shard 0's candidates first: position order on ties is
    # id order (module docstring). 'invarying': every device of the axis ends
    # up with the same merge, so the output is not split over it.
    scores = jax.lax.all_gather(scores, axis, axis=1, tiled=True, to="invarying")
    ids = jax.lax.all_gather(ids, axis, axis=1, tiled=True, to="invarying")
    top_s, pos = jax.lax.top_k(scores, k)
    return top_s, jnp.take_along_axis(ids, pos, axis=1)

  fn = jax.shard_map(local, mesh=mesh, in_specs=(query_spec, P(axis, None)),
                     out_specs=(query_spec, query_spec))
  return jax.jit(fn)


def sharded_top_k(queries, tag_table, k: int, mesh: Mesh, axis: str = "model", *,
                  tag_chunk: int = 16384, post_chunk: int = 128
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Top-k tags per post, the tag table's rows split over a mesh axis.

  Computes, for every post i and without any device forming the N x K
  matrix (or even its N x K/S slice),

      S[i, y] = <queries[i], tag_table[y]>,
      ids[i]  = the k tags y with the largest S[i, y] (ties: smaller y first),

  identical to ``topk.top_k_two_tower(queries, tag_table, k)``.

  Args:
    queries: [N, d] query-tower outputs (numpy or jax array).
    tag_table: [K, d] tag-tower outputs; split over ``axis`` (padded to a
      multiple of its size, see ``vocab_layout``).
    k: number of tags to return per post, 1 <= k <= K (may exceed K / S).
    mesh: a device mesh with the axis ``axis``; any other axes (e.g. "data"
      of ``make_vocab_mesh``) split the queries.
    axis: the mesh axis the vocabulary is split over.
    tag_chunk: target block width within a shard, as in ``top_k_two_tower``.
    post_chunk: posts per device per jitted call (a call scores post_chunk
      x (size of the query axes) posts); the last call is zero-padded.

  Returns:
    (scores [N, k] float32, ids [N, k] int32) as host numpy arrays, each row
    sorted by descending score with the tie rule of ``hashjax.eval.topk``.
  """
  return ShardedTopK(tag_table, k, mesh, axis, tag_chunk=tag_chunk,
                     post_chunk=post_chunk)(queries)


class ShardedTopK:
  """``sharded_top_k`` against one table for many batches of queries: the table is padded
  and split over the devices once, here, and each call only ranks (evaluation calls it once
  per batch)."""

  def __init__(self, tag_table, k: int, mesh: Mesh, axis: str = "model", *,
               tag_chunk: int = 16384, post_chunk: int = 128):
    _check_axis(mesh, axis)
    self.num_tags, self.dim = tag_table.shape
    topk._check_k(k, self.num_tags)
    if post_chunk < 1:
      raise ValueError(f"post_chunk must be positive, got {post_chunk}.")
    self.k, self.mesh, self.axis, self.post_chunk = k, mesh, axis, post_chunk
    layout = vocab_layout(self.num_tags, mesh.shape[axis], k, tag_chunk)
    self.table = shard_tag_table(tag_table, mesh, axis, layout.rows_per_shard)
    self.fn = make_sharded_top_k_fn(mesh, axis, k, layout, self.num_tags)
    query_axes = _query_axes(mesh, axis)
    self.splits = int(np.prod([mesh.shape[a] for a in query_axes]))
    self.query_sharding = NamedSharding(mesh, P(query_axes or None, None))

  def __call__(self, queries) -> tuple[np.ndarray, np.ndarray]:
    n, d = queries.shape
    if d != self.dim:
      raise ValueError(f"queries have dim {d} but tag_table has dim {self.dim}.")
    if n == 0:
      return np.zeros((0, self.k), np.float32), np.zeros((0, self.k), np.int32)
    step = min(self.post_chunk, -(-n // self.splits)) * self.splits
    queries = np.asarray(queries, np.float32)
    pending, done = [], []
    for start in range(0, n, step):
      chunk = jax.device_put(topk._pad_rows(queries[start:start + step], step),
                             self.query_sharding)
      pending.append(self.fn(chunk, self.table))
      if len(pending) > _IN_FLIGHT:
        done.append(jax.tree.map(np.asarray, pending.pop(0)))
    done.extend(jax.tree.map(np.asarray, p) for p in pending)
    scores = np.concatenate([s for s, _ in done])[:n]
    ids = np.concatenate([i for _, i in done])[:n]
    return scores, ids
