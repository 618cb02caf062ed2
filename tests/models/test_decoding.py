"""Greedy and beam-search decoding against a hand-made table language model and brute force."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from hashjax.models import decoding

END, A, B, START = 0, 1, 2, 3
# p(next | previous) for previous = END, a, b, <start>; columns END, a, b
TABLE = np.array([[1.0, 0.0, 0.0],
                  [0.5, 0.25, 0.25],
                  [0.9, 0.05, 0.05],
                  [1e-6, 0.6, 0.4 - 1e-6]])


def table_step(state, tokens):
  del state
  return jnp.log(jnp.asarray(TABLE, jnp.float32))[tokens], tokens


def run(kind, max_len, **kwargs):
  start = jnp.full((2,), START)
  if kind == "greedy":
    return np.asarray(decoding.greedy(table_step, start, start, max_len=max_len, end=END))
  tokens, scores = decoding.beam_search(table_step, start, start, max_len=max_len, end=END,
                                        **kwargs)
  return np.asarray(tokens), np.asarray(scores)


def brute_force(max_len):
  """The most probable sequence: tokens until END (included) or max_len."""
  best, best_p = None, -1.0
  for length in range(1, max_len + 1):
    for seq in itertools.product(range(3), repeat=length):
      if END in seq[:-1] or (length < max_len and seq[-1] != END):
        continue
      p, previous = 1.0, START
      for token in seq:
        p, previous = p * TABLE[previous, token], token
      if p > best_p:
        best, best_p = seq, p
  return list(best) + [decoding.PAD] * (max_len - len(best)), best_p


def test_greedy_takes_the_locally_best_token_and_beam_search_finds_the_better_sequence():
  np.testing.assert_array_equal(run("greedy", 3), [[A, END, -1]] * 2)  # p = 0.6 * 0.5 = 0.30
  tokens, scores = run("beam", 3, beam=2)
  np.testing.assert_array_equal(tokens, [[B, END, -1]] * 2)             # p = 0.4 * 0.9 = 0.36
  np.testing.assert_allclose(np.exp(scores), 0.36, rtol=1e-5)
  one, _ = run("beam", 3, beam=1)
  np.testing.assert_array_equal(one, run("greedy", 3))  # one beam is greedy


@pytest.mark.parametrize("max_len", [1, 2, 3, 4])
def test_a_wide_beam_is_the_exhaustive_search(max_len):
  tokens, scores = run("beam", max_len, beam=9)
  want, p = brute_force(max_len)
  np.testing.assert_array_equal(tokens[0], want)
  np.testing.assert_allclose(np.exp(scores[0]), p, rtol=1e-5)
