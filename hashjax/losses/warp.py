r"""Ranking losses for two-tower hashtag models, as plain functions (optax style).

WARP (Weston et al. 2011; the loss of Denton et al. 2015)
=========================================================

Notation: a batch of B posts; post b has the positive tags P_b = {pos_ids[b, t] :
pos_mask[b, t]} (a set: padding is ignored, a tag listed twice counts once), and
t_b = |P_b|. The vocabulary has Y tags, f(b, y) is the score of tag y for post b
and m is the margin.

For each positive (b, y+), negatives are drawn one at a time, uniformly from the
complement {0..Y-1} \ P_b, until one *violates*, f(b, y-) > f(b, y+) - m, or
``max_trials`` draws have failed. If the N-th draw violates,

    k = floor((Y - 1) / N)                       (estimated rank of y+)
    L(k) = sum_{i=1..k} 1 / i,   L(0) = 0        (rank weight)
    loss(b, y+) = L(k) * max(0, m - f(b, y+) + f(b, y-))

and a positive without a violator contributes nothing. Rank: Y - 1 is the
number of other tags (Weston et al.'s formula). The number of tags that can
actually be drawn is Y - t_b, which differs by t_b - 1 (at most ~15 here):
negligible next to a vocabulary of thousands, and Y - 1 keeps the weight a
function of N alone, so a table of max_trials + 1 entries serves every post.

Vectorised sampler (``warp_sample``): positive (b, t) owns a random stream,
cut into blocks of ``chunk_size`` draws; block i comes from the key
fold_in(fold_in(key, b * T + t), i). A positive's N and y- are those of the
first violating draw of its stream, exactly as in the one-draw-at-a-time loop
(draws after the first violator are computed and ignored). The work is a queue
in a ``lax.while_loop``: ``buffer_size`` positives are in flight, each step
evaluates one block for each of them, and a positive that has its violator (or
max_trials draws) is replaced by the next queued one. Padding never enters the
queue. Since the draws are keyed by (positive, block) and not by buffer
position, the sample does not depend on ``buffer_size``, nor on how the batch
is sharded; ``chunk_size`` does change which draws are made (not their law).

Why a queue (benchmarks/warp_benchmark.py, B = 256, T = 16, 2.7 tags per post,
Y = 10,000, max_trials = 1000; the README has the measured numbers): drawing
every trial of every slot at once costs tens of milliseconds per step, almost
all of it random bits, and late in training some positive of a batch nearly
always has no violator, so stopping "when the whole batch is done" saves
little; the queue pays only for the draws each positive needs (a few ms).

Exact draws from the complement: with the distinct positives of a post sorted,
s_0 < s_1 < ... < s_{t-1}, exactly s_j - j non-positive tags lie below s_j. So
the r-th non-positive tag (0-based, r in [0, Y - t)) is

    c(r) = r + #{j : s_j - j <= r}

(each positive whose count of non-positives below it is <= r sits below c(r)
and shifts it up by one). Drawing r uniformly in [0, Y - t_b) therefore draws
uniformly from the complement with one draw. r is exactly uniform too: 32-bit
words are reduced modulo Y - t_b after rejecting the few (probability
< (Y - t_b) / 2^32) above the largest multiple of Y - t_b; a rejected word is
not a draw and does not count in N.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_BIG = np.iinfo(np.int32).max


class WarpSample(NamedTuple):
  """Result of ``warp_sample``, one entry per (post, positive slot), all [B, T].

  neg_ids:   int32, the violating negative; -1 where none was found (and on
             padding / duplicate slots).
  num_draws: int32, N: draws made until the violator (inclusive); max_trials
             when none was found; 0 on padding / duplicate slots.
  found:     bool, a violator was found (False on padding / duplicate slots).
  rank:      int32, k = floor((Y - 1) / N) where found, else 0.
  weight:    float32, L(k) where found, else 0.
  """
  neg_ids: jax.Array
  num_draws: jax.Array
  found: jax.Array
  rank: jax.Array
  weight: jax.Array


def harmonic_numbers(k) -> np.ndarray:
  """L(k) = sum_{i=1..k} 1/i in float64 (L(0) = 0), elementwise over k >= 0."""
  k = np.asarray(k, dtype=np.int64)
  cut = 1024
  exact = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, cut + 1))])
  # Beyond the table, the asymptotic series; its next term, 1/(252 k^6), is
  # ~1e-20 at k = 1024, far below float64 resolution.
  n = np.maximum(k, 1).astype(np.float64)
  series = (np.log(n) + np.euler_gamma + 1 / (2 * n) - 1 / (12 * n**2)
            + 1 / (120 * n**4))
  return np.where(k <= cut, exact[np.minimum(k, cut)], series)


def rank_weight_table(num_tags: int, max_trials: int) -> np.ndarray:
  """Weight by number of draws: entry N = L(floor((Y - 1) / N)), entry 0 = 0.

  Float32 [max_trials + 1]; entry 0 is what a positive without violator gets.
  """
  n = np.arange(1, max_trials + 1)
  weights = harmonic_numbers((num_tags - 1) // n)
  return np.concatenate([[0.0], weights]).astype(np.float32)


def _positive_sets(pos_ids, pos_mask, num_tags: int):
  """Per post: active slots, complement offsets and complement size.

  Returns (active [B, T] bool: a valid slot holding the first occurrence of its
  tag; offsets [B, T] int32: s_j - j for the sorted distinct positives, then
  _BIG, a non-decreasing row; num_neg [B] int32 = Y - t_b).
  """
  num_slots = pos_ids.shape[1]
  # Ids outside [0, Y) are treated as padding: they name no tag to exclude.
  valid = pos_mask & (pos_ids >= 0) & (pos_ids < num_tags)
  # A tag listed twice is one positive (as in hashjax.eval.metrics): only its
  # first slot is active, otherwise it would be counted twice in the loss and
  # twice in t_b.
  same = (pos_ids[:, :, None] == pos_ids[:, None, :]) & valid[:, None, :]
  earlier = jnp.tril(jnp.ones((num_slots, num_slots), bool), k=-1)
  active = valid & ~jnp.any(same & earlier, axis=-1)
  sorted_ids = jnp.sort(jnp.where(active, pos_ids, _BIG), axis=-1)
  num_pos = jnp.sum(active, axis=-1, dtype=jnp.int32)
  j = jnp.arange(num_slots, dtype=jnp.int32)
  offsets = jnp.where(j < num_pos[:, None], sorted_ids - j, _BIG)
  return active, offsets, num_tags - num_pos


def _nth_non_positive(r, offsets):
  """c(r) = r + #{j : s_j - j <= r}: the r-th tag outside the post's positives.

  r: int32 [B, ...]; offsets: [B, T] from _positive_sets.
  """
  offsets = offsets.reshape(offsets.shape[:1] + (1,) * (r.ndim - 1) + offsets.shape[1:])
  return r + jnp.sum(offsets <= r[..., None], axis=-1, dtype=jnp.int32)


def _uniform_below(bits, n):
  """Exactly uniform integers in [0, n) from uint32 words, by rejection.

  Words at or above the largest multiple of n below 2^32 are rejected (probability
  < n / 2^32); the accepted ones, taken modulo n, are exactly uniform. Returns
  (r int32, accepted bool), both shaped like bits. n: uint32, >= 1.
  """
  rem = (jnp.uint32(0) - n) % n  # 2^32 mod n, in wrapping uint32 arithmetic
  accepted = bits <= jnp.uint32(0xFFFFFFFF) - rem
  return (bits % n).astype(jnp.int32), accepted


def _stream_words(key, slots, blocks, chunk: int):
  """uint32 [R, chunk]: block `blocks[e]` of the random stream of positive `slots[e]`.

  A fixed function of (key, slot, block), so where a positive sits in the work
  buffer (or on which device its post lives) cannot change its draws.
  """
  def one(slot, block):
    k = jax.random.fold_in(jax.random.fold_in(key, slot), block)
    return jax.random.bits(k, (chunk,), jnp.uint32)
  return jax.vmap(one)(slots, blocks)


@functools.partial(jax.jit, static_argnames=("margin", "max_trials", "chunk_size", "buffer_size"))
def warp_sample(key, scores, pos_ids, pos_mask, *, margin: float = 0.1, max_trials: int = 1000,
                chunk_size: int = 256, buffer_size: int = 256) -> WarpSample:
  """Draws WARP negatives for every positive (see the module docstring).

  Args:
    key: a jax PRNG key.
    scores: [B, Y] scores f(b, y) of every tag; only their values are used
      (under stop_gradient).
    pos_ids: int [B, T] positive tag ids, padded.
    pos_mask: bool [B, T], False on padding.
    margin: m.
    max_trials: most draws per positive.
    chunk_size: draws per positive per step of the work loop. The draws of a
      positive depend on it (blocks are keyed by their index), nothing else does.
    buffer_size: positives in flight per step; does not change the result.
      buffer_size >= B * T and chunk_size >= max_trials draw everything at once.
      The defaults were fastest on a 2-core CPU (see the module docstring); an
      accelerator wants a larger buffer (more parallel work per step).

  Returns:
    A WarpSample of [B, T] arrays.
  """
  scores = jax.lax.stop_gradient(scores)
  batch, num_tags = scores.shape
  num_slots = pos_ids.shape[1]
  total = batch * num_slots
  pos_ids = pos_ids.astype(jnp.int32)
  active, offsets, num_neg = _positive_sets(pos_ids, pos_mask.astype(bool), num_tags)
  # A post whose positives cover the vocabulary has nothing to draw.
  active = (active & (num_neg > 0)[:, None]).reshape(total)
  threshold = jnp.take_along_axis(scores, jnp.clip(pos_ids, 0, num_tags - 1), axis=1) - margin
  threshold = threshold.reshape(total)
  chunk = max(1, min(chunk_size, max_trials))
  width = max(1, min(buffer_size, total))

  # Work queue: padding slots never enter it, so (with T = 16 slots for ~2.7
  # tags) most of the [B, T] grid costs nothing. A positive leaves the buffer as
  # soon as it has its violator or max_trials draws and a queued one takes its
  # place: the cost follows the draws actually needed, not the batch's worst
  # positive (late in training some positive nearly always exhausts max_trials).
  queue = jnp.nonzero(active, size=total, fill_value=total)[0].astype(jnp.int32)
  num_queued = jnp.sum(active, dtype=jnp.int32)
  empty = jnp.int32(total)  # slot id of an empty buffer entry; scatters drop it

  def body(state):
    slot, drawn, block, head, found, num_draws, neg_ids = state
    live = slot < empty
    row = jnp.minimum(slot, total - 1) // num_slots
    words = _stream_words(key, slot, block, chunk)
    r, accepted = _uniform_below(words, jnp.maximum(num_neg[row], 1).astype(jnp.uint32)[:, None])
    neg = _nth_non_positive(r, offsets[row])
    neg_scores = scores[row[:, None], neg]
    # Draw numbers count accepted words only: rejected words are not draws.
    index = drawn[:, None] + jnp.cumsum(accepted, axis=1, dtype=jnp.int32)
    violates = (accepted & (index <= max_trials)
                & (neg_scores > threshold[jnp.minimum(slot, total - 1)][:, None]))
    hit = live & jnp.any(violates, axis=1)
    first = jnp.argmax(violates, axis=1)[:, None]
    drawn = drawn + jnp.sum(accepted, axis=1, dtype=jnp.int32)
    done = hit | (live & (drawn >= max_trials))
    out = jnp.where(done, slot, empty)
    found = found.at[out].set(hit, mode="drop")
    hit_draws = jnp.take_along_axis(index, first, axis=1)[:, 0]
    num_draws = num_draws.at[out].set(jnp.where(hit, hit_draws, max_trials), mode="drop")
    hit_ids = jnp.take_along_axis(neg, first, axis=1)[:, 0]
    neg_ids = neg_ids.at[out].set(jnp.where(hit, hit_ids, -1), mode="drop")
    free = done | ~live
    at = head + jnp.cumsum(free, dtype=jnp.int32) - 1
    refill = jnp.where(at < num_queued, queue[jnp.minimum(at, total - 1)], empty)
    return (jnp.where(free, refill, slot), jnp.where(free, 0, drawn), jnp.where(free, 0, block + 1),
            head + jnp.sum(free, dtype=jnp.int32), found, num_draws, neg_ids)

  def cond(state):
    return jnp.any(state[0] < empty)

  init = (queue[:width], jnp.zeros(width, jnp.int32), jnp.zeros(width, jnp.int32), jnp.int32(width),
          jnp.zeros(total, bool), jnp.zeros(total, jnp.int32), jnp.full(total, -1, jnp.int32))
  _, _, _, _, found, num_draws, neg_ids = jax.lax.while_loop(cond, body, init)
  shape = (batch, num_slots)
  found, num_draws, neg_ids = found.reshape(shape), num_draws.reshape(shape), neg_ids.reshape(shape)
  rank = jnp.where(found, (num_tags - 1) // jnp.maximum(num_draws, 1), 0)
  weight = jnp.where(found, jnp.asarray(rank_weight_table(num_tags, max_trials))[num_draws], 0.0)
  return WarpSample(neg_ids, num_draws, found, rank.astype(jnp.int32), weight)


def warp_loss(pos_scores, neg_scores, sample: WarpSample, pos_mask, *, margin: float = 0.1):
  """Per-positive WARP loss, [B, T].

    loss[b, t] = weight[b, t] * max(0, m - pos_scores[b, t] + neg_scores[b, t])

  where sample.found and pos_mask, else 0. pos_scores / neg_scores are f(b, y+)
  and f(b, y-) for y- = sample.neg_ids, computed *with* gradient; the sample
  (weight, found) is a constant. Reduce with e.g. sum / number of positives.
  """
  keep = sample.found & pos_mask.astype(bool)
  hinge = jax.nn.relu(margin - pos_scores + neg_scores)
  # where, not a product with keep: a non-finite score on a slot that does not
  # count (padding, no violator) must not turn the loss into NaN (0 * inf).
  return jnp.where(keep, jax.lax.stop_gradient(sample.weight) * hinge, 0.0)


def warp_loss_two_tower(key, queries, tag_table, pos_ids, pos_mask, *, margin: float = 0.1,
                        max_trials: int = 1000, chunk_size: int = 256,
                        buffer_size: int = 256):
  """WARP loss of a two-tower model, score(b, y) = queries[b] . tag_table[y].

  Args:
    key: PRNG key for the negative draws.
    queries: [B, d] query-tower outputs.
    tag_table: [Y, d] tag-tower outputs for the whole vocabulary.
    pos_ids, pos_mask: [B, T] padded positives.
    margin, max_trials, chunk_size, buffer_size: as in warp_sample.

  Returns:
    (per-positive loss [B, T], WarpSample).
  """
  # The full [B, Y] scores are only needed to find violators, which is not
  # differentiable: no gradient flows through them.
  scores = jax.lax.stop_gradient(queries) @ jax.lax.stop_gradient(tag_table).T
  sample = warp_sample(key, scores, pos_ids, pos_mask, margin=margin, max_trials=max_trials,
                       chunk_size=chunk_size, buffer_size=buffer_size)
  # The loss itself is recomputed from the gathered rows: 2 rows per positive.
  # Differentiating the [B, Y] score matrix instead would add two dense
  # [B, Y] x d matmuls to the backward pass (twice the FLOPs of the scoring);
  # here the backward is a [B, T, d] scatter-add. This is the main speed lever
  # besides the sampler: 2-2.5x per step in benchmarks/warp_benchmark.py.
  num_tags = tag_table.shape[0]
  pos_rows = tag_table[jnp.clip(pos_ids, 0, num_tags - 1)]
  neg_rows = tag_table[jnp.maximum(sample.neg_ids, 0)]
  pos_scores = jnp.einsum("bd,btd->bt", queries, pos_rows)
  neg_scores = jnp.einsum("bd,btd->bt", queries, neg_rows)
  return warp_loss(pos_scores, neg_scores, sample, pos_mask, margin=margin), sample
