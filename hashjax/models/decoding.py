r"""Greedy and beam-search decoding of token sequences, for any step function.

A step function maps (state, tokens [N]) to (log-probabilities [N, V], new state), the state a
pytree with leading axis N. Decoding starts from `start` tokens and stops a sequence at `end`;
after it, a sequence emits `pad` (= -1 in the output) at no cost.

Greedy: y_t = argmax_v log p(v | y_<t), for t = 1 .. max_len.

Beam search with K beams: every step extends each live beam by every token and keeps, per
sequence, the K best of the K x V extensions by total log-probability
    score(y_1..y_t) = sum_s log p(y_s | y_<s)
(no length normalisation); a beam that has emitted `end` is carried unchanged. The result is
the best of the K final beams. K = 1 is greedy.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

StepFn = Callable[[Any, jax.Array], tuple[jax.Array, Any]]
PAD = -1


def greedy(step_fn: StepFn, state, start: jax.Array, *, max_len: int, end: int) -> jax.Array:
  """int32 [N, max_len]: the argmax tokens, `end` once and then PAD."""
  def body(carry, _):
    state, previous, done = carry
    log_probs, state = step_fn(state, previous)
    token = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
    out = jnp.where(done, PAD, token)
    return (state, jnp.where(done, previous, token), done | (token == end)), out

  init = (state, start.astype(jnp.int32), jnp.zeros(start.shape, bool))
  _, tokens = jax.lax.scan(body, init, None, length=max_len)
  return tokens.T


def beam_search(step_fn: StepFn, state, start: jax.Array, *, max_len: int, end: int,
                beam: int) -> tuple[jax.Array, jax.Array]:
  """(int32 [N, max_len] the best beam's tokens, float [N] its score); module docstring."""
  n = start.shape[0]
  tile = lambda x: jnp.repeat(x, beam, axis=0)  # [N, ...] -> [N * K, ...], beams of a row adjacent
  state = jax.tree.map(tile, state)
  # Only the first beam is live at the start (the others would duplicate it).
  scores = jnp.tile(jnp.where(jnp.arange(beam) == 0, 0.0, -jnp.inf), (n, 1))
  previous = tile(start.astype(jnp.int32))
  done = jnp.zeros((n, beam), bool)
  history = jnp.full((n, beam, max_len), PAD, jnp.int32)

  def body(carry, t):
    state, previous, scores, done, history = carry
    log_probs, new_state = step_fn(state, previous)
    vocab = log_probs.shape[-1]
    log_probs = log_probs.reshape(n, beam, vocab)
    # A finished beam has one continuation, itself, at no cost (kept at index `end`).
    finished = jnp.where(jnp.arange(vocab) == end, 0.0, -jnp.inf)
    step_scores = jnp.where(done[..., None], finished, log_probs)
    total = (scores[..., None] + step_scores).reshape(n, beam * vocab)
    scores, flat = jax.lax.top_k(total, beam)
    source, token = flat // vocab, (flat % vocab).astype(jnp.int32)
    was_done = jnp.take_along_axis(done, source, axis=1)
    history = jnp.take_along_axis(history, source[..., None], axis=1)
    history = history.at[:, :, t].set(jnp.where(was_done, PAD, token))
    rows = (jnp.arange(n)[:, None] * beam + source).reshape(-1)
    state = jax.tree.map(lambda x: x[rows], new_state)
    done = was_done | (token == end)
    previous = jnp.where(was_done, jnp.take_along_axis(previous.reshape(n, beam), source,
                                                       axis=1), token).reshape(-1)
    return (state, previous, scores, done, history), None

  carry = (state, previous, scores, done, history)
  (_, _, scores, _, history), _ = jax.lax.scan(body, carry, jnp.arange(max_len))
  best = jnp.argmax(scores, axis=1)
  return history[jnp.arange(n), best], scores[jnp.arange(n), best]
