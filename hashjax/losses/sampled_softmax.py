r"""Sampled softmax: the softmax over K hashtags, estimated from S << K shared candidates.

The full softmax of post n with query q_n against its drawn hashtag y_n (Durand et al.'s eq. 8,
the `softmax` objective) costs a [N, K] score matrix, and the same again twice in the backward
pass: at K = 442k hashtags (the paper's training vocabulary) that is the whole step. Here the
batch shares S candidates s_1..s_S drawn with replacement from a proposal Q over [0, K) (TF's
sampled_softmax_loss; one draw per batch, so the candidates' rows are computed once), and each
post scores only [y_n, s_1, ..., s_S]:

    o_n0 = q_n . t_{y_n}                                      the positive, as it is
    o_ns = q_n . t_{s_j} - log(S Q(s_j))                       every sample (the log-Q correction)
    o_ns = -inf                              if s_j = y_n      (an accidental hit, removed)
    l_n  = -log softmax(o_n)_0 = log(e^{o_n0} + sum_j e^{o_nj}) - o_n0

Why this is the full softmax in the limit: sum_j e^{q . t_{s_j}} / (S Q(s_j)) over draws from Q
is an unbiased estimate of sum_k e^{q . t_k}, the sum over every hashtag the draws can reach;
with the hits on y removed it estimates Z_n - e^{o_n0} (Z_n the full softmax's normaliser), so
the denominator e^{o_n0} + (estimate) tends to Z_n and l_n to log Z_n - q_n . t_{y_n}, the full
softmax's loss, value and gradient (a consistent estimator, for any Q that covers the
vocabulary; the bias at finite S is O(1/S), from the log of a noisy sum). Two choices follow:

- The positive gets no log(S Q(y)) correction. TF's sampled_softmax_loss subtracts
  log(expected count) from the true logit too; that is the softmax over the candidate set,
  whose limit is not the full softmax: as S grows its sampled terms grow like S while the
  positive stays one term, so the positive's probability tends to 0 and the gradient at y to
  -1 instead of p_y - 1. Measured (tests/losses/test_sampled_softmax.py: K = 20, uniform Q,
  the relative error of the gradient's mean over 4,000 draws against the full softmax's): 14%,
  1.8%, 0.19% at S = 5, 50, 500 here, falling as 1/S; 27%, 8%, 15% with TF's form, which does
  not converge. With a uniform proposal the two differ by that one constant on the positive;
  with K in the hundreds of thousands p_y is small and they nearly agree.
- Only hits on the drawn positive y_n are removed, not on the post's other hashtags. The full
  softmax (eq. 8 and the `softmax` objective) keeps a post's other hashtags in its normaliser,
  so removing them too would estimate a different objective (a softmax over y and the non-tags
  of the post), and sampled-vs-full comparisons would mix two changes. Hits on y must go:
  otherwise y is counted twice, once exactly and once in the estimate (the limit is then a
  softmax whose normaliser counts y twice); `remove_accidental_hits=False` keeps them, as
  TF allows.

Proposals over the ids [0, K) (`sample_candidates`, `proposal_log_prob`):

  uniform       Q(k) = 1 / K
  log_uniform   Q(k) = log((k + 2) / (k + 1)) / log(K + 1)    (Zipf's law; TF's
                log_uniform_candidate_sampler). Hashtag ids are ordered by training frequency
                (hashjax.data.spec), so this follows the unigram distribution without counts:
                the frequent hashtags, the negatives that matter, are drawn often, and the
                correction keeps the estimate unbiased for the rare ones.

The log-uniform draw is exact to float32 rounding of its probabilities: the inverse CDF
k = floor((K + 1)^u) - 1 is not, in float32. At K = 442k a tag near the end of the vocabulary
has Q ~ 2e-7, under two steps of a float32 u (2^-23), so its realised probability would be one
or two steps (an error of tens of percent, on a tenth of all draws) while the correction
assumed the formula. Instead, with r = k + 1: draw the octave m (r in [2^m, 2^{m+1})) with its
exact mass log(hi_m / lo_m) / log(K + 1) (a telescoping sum of Q), then r uniform in the octave,
accepted with probability log(1 + 1/r) / log(1 + 1/lo_m) in (1/2, 1]: the accepted r has
probability proportional to log(1 + 1/r) within its octave, that is Q. Up to `tries` proposals
are made at once and the first accepted kept; all of them fail with probability < 0.31^tries
(~1e-12 at 24), and the last one is then kept (a negligible bias).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PROPOSALS = ("uniform", "log_uniform")


class Candidates(NamedTuple):
  """S hashtag ids drawn from Q (int32 [S], repeats possible) and log(S Q(id)) [S]."""
  ids: jax.Array
  log_expected_count: jax.Array


def proposal_log_prob(ids: jax.Array, num_tags: int, proposal: str) -> jax.Array:
  """log Q(ids), float32 like ids' shape, for ids in [0, num_tags) (module docstring)."""
  _check(num_tags, proposal)
  if proposal == "uniform":
    return jnp.full(jnp.shape(ids), -np.log(num_tags), jnp.float32)
  # log1p(1 / (k + 1)), not log(k + 2) - log(k + 1): the difference of two logs near 13 loses
  # all but a few bits of a probability ~1e-6 in float32.
  r = jnp.asarray(ids, jnp.float32) + 1.0
  return jnp.log(jnp.log1p(1.0 / r)) - np.float32(np.log(np.log1p(num_tags)))


def sample_candidates(key: jax.Array, num_samples: int, num_tags: int,
                      proposal: str = "log_uniform", tries: int = 24) -> Candidates:
  """S = num_samples ids drawn independently (with replacement) from the proposal over
  [0, num_tags), with their log expected counts log(S Q(id)). Nothing of size num_tags is
  built: the cost is O(S) (O(S tries) for log_uniform)."""
  _check(num_tags, proposal)
  if proposal == "uniform":
    ids = jax.random.randint(key, (num_samples,), 0, num_tags, jnp.int32)
  else:
    ids = _log_uniform(key, num_samples, num_tags, tries)
  log_q = proposal_log_prob(ids, num_tags, proposal)
  return Candidates(ids, log_q + np.float32(np.log(num_samples)))


def _log_uniform(key, num_samples: int, num_tags: int, tries: int) -> jax.Array:
  # Octave m holds r = k + 1 in [2^m, min(2^{m+1}, K + 1)); its masses are exact in float64
  # (K is static) and only M ~ log2(K) of them exist.
  octaves = int(np.ceil(np.log2(num_tags + 1)))
  lo = 2 ** np.arange(octaves, dtype=np.int64)
  hi = np.minimum(2 * lo, num_tags + 1)
  mass = np.log(hi / lo) / np.log1p(num_tags)
  octave_key, rank_key, accept_key = jax.random.split(key, 3)
  octave = jax.random.categorical(octave_key, jnp.asarray(np.log(mass), jnp.float32),
                                  shape=(num_samples,))
  low = jnp.asarray(lo, jnp.int32)[octave][:, None]
  high = jnp.asarray(hi, jnp.int32)[octave][:, None]
  r = jax.random.randint(rank_key, (num_samples, tries), low, high, jnp.int32)
  u = jax.random.uniform(accept_key, (num_samples, tries))
  accepted = u * jnp.log1p(1.0 / low.astype(jnp.float32)) < jnp.log1p(1.0 / r.astype(jnp.float32))
  # The first accepted try; none accepted (prob. < 0.31^tries): the last.
  first = jnp.where(accepted.any(axis=1), jnp.argmax(accepted, axis=1), tries - 1)
  return jnp.take_along_axis(r, first[:, None], axis=1)[:, 0] - 1


def _check(num_tags: int, proposal: str):
  if proposal not in PROPOSALS:
    raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
  if num_tags < 1:
    raise ValueError(f"the proposal needs a vocabulary of at least one hashtag, got {num_tags}")


def sampled_logits(queries: jax.Array, positive_rows: jax.Array, labels: jax.Array,
                   candidates: Candidates, sampled_rows: jax.Array,
                   remove_accidental_hits: bool = True) -> jax.Array:
  """o [N, 1 + S]: column 0 the positive's score, then every sample's, corrected (module doc).

  queries [N, d]; positive_rows [N, d] the rows of labels [N] (the drawn positives);
  candidates the batch's S samples and sampled_rows [S, d] their rows.
  """
  positive = jnp.einsum("nd,nd->n", queries, positive_rows)
  sampled = queries @ sampled_rows.T - candidates.log_expected_count
  if remove_accidental_hits:
    # where, not adding a large negative: the hit's score must not reach the gradient at all.
    sampled = jnp.where(labels[:, None] == candidates.ids[None, :], -jnp.inf, sampled)
  return jnp.concatenate([positive[:, None], sampled], axis=1)


def sampled_softmax_loss(queries: jax.Array, positive_rows: jax.Array, labels: jax.Array,
                         candidates: Candidates, sampled_rows: jax.Array,
                         remove_accidental_hits: bool = True) -> jax.Array:
  """Per-post loss l_n = -log softmax(o_n)_0 [N], o = sampled_logits(...) (module docstring).

  The positive's logit is always finite, so l_n is finite and >= 0 even when every sample is a
  hit (then l_n = 0, as the full softmax of a one-hashtag vocabulary). Mask padding posts out of
  the mean with where (their label is a placeholder)."""
  logits = sampled_logits(queries, positive_rows, labels, candidates, sampled_rows,
                          remove_accidental_hits)
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.zeros(logits.shape[:1], jnp.int32))
