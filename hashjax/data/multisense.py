r"""Multi-sense hashtag embeddings: the MSSG model of Neelakantan et al. (2014), fixed K senses.

Veit et al.'s NCSL-MS (2018, Section 3.1) regresses images onto the *global* vectors of a
multi-sense skip-gram model trained on hashtag co-occurrence; NCSL-PPMI's table is in
tag_cooccurrence.py. Here a "sentence" is a training post's hashtag set and the context of
hashtag w in a post is every other hashtag of that post (a post is a bag: no window, no order).

Every hashtag w has a global vector g_w, K sense vectors s_wk and K cluster centres mu_wk, all in
R^D. One example is (w, C): a post with at least two hashtags, w one of them, C the others.

    c     = (1 / |C|) sum_{t in C} g_t                 the context vector (no gradient flows)
    k*    = argmax_k cos(mu_wk, c)                      the sense this context is read as
    mu_wk* <- running mean of the contexts assigned to (w, k*), c now among them
    loss  = - sum_{t in C} [ log sigma(s_wk* . o_t) + sum_{j=1..n} log sigma(-s_wk* . o_{z_tj}) ]

with z_tj ~ P(z) oc count(z)^0.75 drawn afresh for every (example, context tag) pair (Mikolov
et al.'s negative sampling; count(z) = occurrences of z in posts with two or more hashtags, so
a hashtag without co-occurrence is never drawn) and a draw equal to w skipped. The loss trains
s_wk* and the output vectors o of the context and negative tags, by SGD with a rate decaying
linearly to 1e-4 of its start over the whole run (word2vec's schedule). Each sense is trained
only on the contexts assigned to it, so an ambiguous tag's senses drift apart while its global
vector, the average reading, serves every context.

What o is (`outputs`):
  * "global" (the default, Neelakantan et al.'s model): o_t = g_t. The global vectors are both
    what contexts are averaged from and what the senses predict, and are learned only through
    that second role (g_w gets gradient when w is a context tag or a negative, never as the
    centre word). Their paper's objective and their released code (MultiSenseSkipGram, where
    the positive and negative examples score a sense vector against global_weights) do this.
  * "separate" (a word2vec-style variant): a third table o, zero at the start, and the global
    vector of w is trained by the same skip-gram loss as its sense, against the same targets:
    the loss above plus the same sum with g_w in place of s_wk*.

Veit et al. take the global vectors, one per hashtag, as the embeddings (Section 3.1, following
Neelakantan et al.), so `global_vectors` is what NCSL-MS regresses onto; sense vectors, centres
and per-sense counts are returned too (disambiguation, diagnostics).

The centres start at a random vector counted as one observation (the authors' code), so the
first contexts of a hashtag go to the senses they happen to point at, and a sense whose centre
attracts a few contexts moves towards them and attracts more. The vectors start uniform in
+-0.5 / D (word2vec's input init; the authors' code draws U(0, 1) / D), the separate output
table at zero.

Approximation: the sequential algorithm reads and updates every vector and centre one example
at a time. Here a minibatch of up to B examples reads them all as they were before the batch:
its senses are chosen with the centres left by the previous batch, its gradients are taken at
the previous parameters, and the updates (gradient steps and centre sums) are summed, repeats
of a row included, like Hogwild threads that all read stale values. So a hashtag's contexts
within one batch do not see each other's centre update; with B small against the number of
examples (about 108k an epoch on the default synthetic data) that is one batch of staleness.
The final loss per pair on that data is 1.82 at B = 256 and 1.80 at B = 1024.

What to expect. Fixed-K MSSG is online k-means over context vectors, and skip-gram vectors
share a common direction, so the contexts of both meanings of a tag point roughly the same
way. Whichever centre the first informative contexts reach can keep them all: a tag gets two
senses only when its meanings' contexts differ by more than that common part. A planted tag
with two disjoint meanings splits (tests/data/test_multisense.py, every seed tried); on the
default synthetic data, 1 of its 8 polysemous tags does, and a concept tag sends a median 99%
of its contexts to one sense. The same common direction dominates the global vectors of rare
hashtags (cosine 0.97 with the frequency-weighted mean row for the ~200 rarest, 0.55 for the
50 most frequent; PPMI-SVD: 0.03 and 0.23), which NCSL then ranks first for every image; see
ncsl.centered_rows.

Hashtags that never share a training post with another have no example: all their vectors
and centres are the zero row (as their PPMI-SVD embedding is), and they are counted.
Deterministic for a seed: the example order, the initial values and the negatives follow
from it, and XLA's CPU scatter-adds run in a fixed order.
"""

import dataclasses
import functools
import time
from typing import Any, NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from hashjax.data.reader import PAD_ID

_EPS2 = 1e-12
_MIN_RATE = 1e-4  # word2vec's floor of the linearly decaying learning rate, x the initial rate
OUTPUTS = ("global", "separate")
# Steps per scan (one dispatch); an epoch is padded with empty steps to a multiple of it, so
# every scan has the same shape and compiles once.
_CHUNK = 16


@dataclasses.dataclass(frozen=True)
class MultiSenseEmbeddings:
  """global_vectors [Y, D] float32 (NCSL-MS's table), sense_vectors [Y, K, D], centres [Y, K, D]
  (mean of the contexts assigned to each sense, and of its random start), sense_counts [Y, K]
  (contexts assigned to each sense over all epochs), output_vectors [Y, D] (what the senses are
  scored against: the global vectors themselves unless outputs="separate"), epoch_losses
  [epochs] (mean loss per (hashtag, context tag) pair), num_zero_rows (hashtags without
  co-occurrence, all rows zero)."""
  global_vectors: np.ndarray
  sense_vectors: np.ndarray
  centres: np.ndarray
  sense_counts: np.ndarray
  output_vectors: np.ndarray
  epoch_losses: np.ndarray
  num_zero_rows: int


def context_examples(tag_ids: np.ndarray, tag_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(words [M], contexts [M, T - 1], PAD_ID-padded): one example per hashtag of every post
  [N, T] with at least two hashtags, its context the post's other hashtags."""
  tag_ids, tag_mask = np.asarray(tag_ids), np.asarray(tag_mask, bool)
  width = tag_ids.shape[1]
  # others[i] = the slots other than i; a post's examples are its valid slots.
  others = np.array([[j for j in range(width) if j != i] for i in range(width)], np.int64)
  others = others.reshape(width, max(width - 1, 0))
  keep = tag_mask & (tag_mask.sum(axis=1, keepdims=True) >= 2)
  post, slot = np.nonzero(keep)
  contexts = np.where(tag_mask[post[:, None], others[slot]], tag_ids[post[:, None], others[slot]],
                      PAD_ID)
  return tag_ids[post, slot].astype(np.int32), contexts.astype(np.int32)


def training_examples(dataset, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
  """context_examples of a PostDataset's training posts (read in chunks, hashtags only)."""
  words, contexts = [], []
  for _, batch in dataset.read_chunks(dataset.split_rows("train"), chunk=chunk):
    w, c = context_examples(batch["tag_ids"], batch["tag_mask"])
    words.append(w)
    contexts.append(c)
  return np.concatenate(words), np.concatenate(contexts)


def negative_cdf(words: np.ndarray, num_tags: int, power: float = 0.75) -> np.ndarray:
  """The cumulative distribution [Y] of P(z) oc count(z)^power, count(z) = examples of z.

  Each example is one occurrence of its word in a post with two or more hashtags, so a hashtag
  without co-occurrence has probability 0. The last entry is exactly 1 (a uniform draw in [0, 1)
  always finds a hashtag of positive probability)."""
  weights = np.bincount(words, minlength=num_tags).astype(np.float64) ** power
  cdf = np.cumsum(weights)
  return (cdf / cdf[-1]).astype(np.float32)


def context_vectors(global_vectors: jax.Array, contexts: jax.Array,
                    mask: jax.Array) -> jax.Array:
  """c [B, D]: the mean global vector of each example's context tags (contexts [B, C], mask)."""
  rows = global_vectors[jnp.where(mask, contexts, 0)] * mask[..., None]
  return rows.sum(axis=1) / jnp.maximum(mask.sum(axis=1, keepdims=True), 1)


def choose_senses(centre_sums: jax.Array, context: jax.Array) -> jax.Array:
  """k* [B] = argmax_k cos(mu_k, c) of centres [B, K, D] (sums or means: a cosine does not see
  the count) and context vectors [B, D]; the first of equal senses."""
  dots = jnp.einsum("bkd,bd->bk", centre_sums, context)
  # |c| is the same for every k: dividing by |mu_k| alone ranks the cosines.
  return jnp.argmax(dots * jax.lax.rsqrt(jnp.maximum(jnp.square(centre_sums).sum(-1), _EPS2)),
                    axis=1)


def sgns_loss(inputs: jax.Array, targets: jax.Array, negatives: jax.Array, pair_mask: jax.Array,
              negative_mask: jax.Array) -> jax.Array:
  r"""The skip-gram negative-sampling loss, summed over a batch of pairs p:

      - sum_p m_p [ log sigma(x_p . o_p) + sum_j m_pj log sigma(-x_p . o_pj) ]

  inputs x [P, D] (the pair's sense or global vector), targets o [P, D] (its context tag's
  output vector), negatives [P, n, D]; masks m [P] and [P, n]. Summed, not averaged: each pair
  takes a full SGD step, as in word2vec."""
  positive = (inputs * targets).sum(axis=-1)
  negative = jnp.einsum("pd,pnd->pn", inputs, negatives)
  return -(jnp.where(pair_mask, jax.nn.log_sigmoid(positive), 0.0).sum()
           + jnp.where(negative_mask, jax.nn.log_sigmoid(-negative), 0.0).sum())


class Batch(NamedTuple):
  """One step: B examples (words [B], contexts [B, C] PAD_ID-padded, valid [B]) and their
  (hashtag, context tag) pairs flattened to P slots (pair_example [P]: the example's slot in
  the batch, pair_target [P]: the context tag, pair_valid [P]). The context vectors and senses
  are per example; the skip-gram loss is per pair, so no work goes to empty context slots (a
  post has 2.7 hashtags on average on the default synthetic data, up to 12)."""
  words: Any
  contexts: Any
  valid: Any
  pair_example: Any
  pair_target: Any
  pair_valid: Any


def _step(state, batch: Batch, key, rate, *, cdf, negatives: int, separate: bool):
  """One minibatch (module docstring), every read from the state before it."""
  mask = (batch.contexts != PAD_ID) & batch.valid[:, None]
  c = context_vectors(state["global"], batch.contexts, mask)
  senses = choose_senses(state["centre"][batch.words], c)
  word, sense = batch.words[batch.pair_example], senses[batch.pair_example]
  target = jnp.where(batch.pair_valid, batch.pair_target, 0)
  # Inverse CDF: the first z with cdf[z] > u; zero-probability hashtags have empty intervals.
  draws = jax.random.uniform(key, target.shape + (negatives,))
  neg = jnp.minimum(jnp.searchsorted(cdf, draws, side="right"), cdf.shape[0] - 1)
  neg_mask = batch.pair_valid[:, None] & (neg != word[:, None])
  out_name = "output" if separate else "global"
  out = state[out_name]
  inputs = {"sense": state["sense"][word, sense]}
  if separate:
    inputs["global"] = state["global"][word]

  def loss_fn(inputs, targets, negative_rows):
    return sum(sgns_loss(x, targets, negative_rows, batch.pair_valid, neg_mask)
               for x in inputs.values())

  loss, (g_inputs, g_targets, g_negatives) = jax.value_and_grad(loss_fn, argnums=(0, 1, 2))(
      inputs, out[target], out[neg])
  new = dict(state)
  new[out_name] = out.at[target].add(-rate * g_targets).at[neg].add(-rate * g_negatives)
  new["sense"] = state["sense"].at[word, sense].add(-rate * g_inputs["sense"])
  if separate:
    new["global"] = new["global"].at[word].add(-rate * g_inputs["global"])
  assigned = batch.valid.astype(c.dtype)
  new["centre"] = state["centre"].at[batch.words, senses].add(c * assigned[:, None])
  new["count"] = state["count"].at[batch.words, senses].add(assigned)
  return new, loss


@functools.partial(jax.jit, static_argnames=("negatives", "separate"), donate_argnums=(0,))
def _steps(state, batches: Batch, rates, step_ids, *, key, cdf, negatives: int, separate: bool):
  """A run of steps (batches with a leading axis [S], rates [S]) in one scan, one dispatch.
  Returns the state and each step's loss. Step i draws its negatives with fold_in(key, i)."""
  step = functools.partial(_step, cdf=cdf, negatives=negatives, separate=separate)

  def body(state, xs):
    batch, rate, i = xs
    return step(state, batch, jax.random.fold_in(key, i), rate)

  return jax.lax.scan(body, state, (batches, rates, step_ids))


def _initial_state(rng: np.random.Generator, num_tags: int, dim: int, senses: int,
                   separate: bool) -> dict[str, jax.Array]:
  def uniform(*shape):  # word2vec's input init: U(-0.5, 0.5) / D
    return jnp.asarray((rng.random(shape, np.float32) - 0.5) / dim)

  state = {"global": uniform(num_tags, dim), "sense": uniform(num_tags, senses, dim),
           # One pseudo-observation at a random point: the authors' code starts k-means so.
           "centre": uniform(num_tags, senses, dim),
           "count": jnp.ones((num_tags, senses), jnp.float32)}
  if separate:
    state["output"] = jnp.zeros((num_tags, dim), jnp.float32)
  return state


def _batch_starts(lengths: np.ndarray, batch_size: int, pairs_per_batch: int) -> np.ndarray:
  """First example of each batch: consecutive examples, at most batch_size of them and at most
  pairs_per_batch pairs (lengths [M] = pairs per example, each <= pairs_per_batch)."""
  ends = np.concatenate([[0], np.cumsum(lengths)])
  starts, s = [], 0
  while s < len(lengths):
    starts.append(s)
    fits = np.searchsorted(ends, ends[s] + pairs_per_batch, side="right") - 1
    s = min(int(fits), s + batch_size)
  return np.array(starts, np.int64)


def _epoch_batches(words, contexts, batch_size: int, pairs_per_batch: int, chunk: int):
  """The examples in the given order packed into Batch arrays with a leading axis of steps
  (a multiple of `chunk`, the last ones empty), and each step's first example (starts)."""
  lengths = (contexts != PAD_ID).sum(axis=1)
  starts = _batch_starts(lengths, batch_size, pairs_per_batch)
  steps = -(-len(starts) // chunk) * chunk
  batch = np.searchsorted(starts, np.arange(len(words)), side="right") - 1
  slot = np.arange(len(words)) - starts[batch]
  ex_words = np.zeros((steps, batch_size), np.int32)
  ex_contexts = np.full((steps, batch_size, contexts.shape[1]), PAD_ID, np.int32)
  ex_valid = np.zeros((steps, batch_size), bool)
  ex_words[batch, slot], ex_contexts[batch, slot], ex_valid[batch, slot] = words, contexts, True
  # Row-major nonzero lists each example's pairs together, in example order: pair k is the
  # k-th of the epoch, and its place in its batch is k minus the pairs of earlier batches.
  i, j = np.nonzero(contexts != PAD_ID)
  ends = np.concatenate([[0], np.cumsum(lengths)])
  place = np.arange(len(i)) - ends[starts[batch[i]]]
  pair_example = np.zeros((steps, pairs_per_batch), np.int32)
  pair_target = np.zeros((steps, pairs_per_batch), np.int32)
  pair_valid = np.zeros((steps, pairs_per_batch), bool)
  pair_example[batch[i], place], pair_target[batch[i], place] = slot[i], contexts[i, j]
  pair_valid[batch[i], place] = True
  return Batch(ex_words, ex_contexts, ex_valid, pair_example, pair_target, pair_valid), starts


def train_mssg(words: np.ndarray, contexts: np.ndarray, num_tags: int, *, dim: int = 300,
               senses: int = 3, epochs: int = 5, negatives: int = 5,
               learning_rate: float = 0.025, batch_size: int = 256, outputs: str = "global",
               seed: int = 0) -> MultiSenseEmbeddings:
  """MSSG (module docstring) on examples (words [M], PAD_ID-padded contexts [M, C]), e.g. from
  context_examples: `epochs` passes in a fresh random order, minibatches of `batch_size`
  examples. The rate decays linearly in the examples seen, over all epochs."""
  _check(dim=dim, senses=senses, epochs=epochs, negatives=negatives, batch_size=batch_size)
  if not learning_rate > 0:
    raise ValueError(f"learning_rate must be positive, got {learning_rate}")
  if outputs not in OUTPUTS:
    raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
  words, contexts = _checked_examples(words, contexts, num_tags)
  lengths = (contexts != PAD_ID).sum(axis=1)
  # Room for a full batch of average examples, and for any one example.
  pairs_per_batch = max(int(np.ceil(1.25 * batch_size * lengths.mean())), int(lengths.max()))
  rng = np.random.default_rng(seed)
  separate = outputs == "separate"
  state = _initial_state(rng, num_tags, dim, senses, separate)
  cdf, key = jnp.asarray(negative_cdf(words, num_tags)), jax.random.key(seed)
  run = functools.partial(_steps, key=key, cdf=cdf, negatives=negatives, separate=separate)
  losses, start, first_step = [], time.perf_counter(), 0
  for epoch in range(epochs):
    order = rng.permutation(len(words))
    batches, starts = _epoch_batches(words[order], contexts[order], batch_size,
                                     pairs_per_batch, _CHUNK)
    seen = (epoch * len(words) + starts) / (epochs * len(words))
    rates = np.zeros(len(batches.words), np.float32)  # the empty steps after `starts` do nothing
    rates[:len(starts)] = learning_rate * np.maximum(1.0 - seen, _MIN_RATE)
    state, total = _run_epoch(run, state, batches, rates, first_step)
    first_step += len(rates)
    losses.append(total / lengths.sum())
    if not np.isfinite(losses[-1]):
      raise FloatingPointError(f"MSSG: the loss became {losses[-1]} in epoch {epoch}; lower "
                               f"learning_rate ({learning_rate}) or batch_size ({batch_size})")
  result = _result(state, words, num_tags, np.array(losses))
  logging.info("MSSG hashtag embeddings: D=%d, K=%d, %d epochs of %d examples in %.1f s, loss "
               "per pair %.4f -> %.4f; %d of %d hashtags share no training post with another: "
               "zero rows", dim, senses, epochs, len(words), time.perf_counter() - start,
               losses[0], losses[-1], result.num_zero_rows, num_tags)
  return result


def _run_epoch(run, state, batches: Batch, rates: np.ndarray, first_step: int):
  """One epoch's steps, _CHUNK per dispatch; returns the state and the summed loss. Waiting
  for each chunk's loss keeps at most one chunk in flight."""
  total = 0.0
  for s in range(0, len(rates), _CHUNK):
    part = Batch(*(x[s:s + _CHUNK] for x in batches))
    step_ids = np.arange(first_step + s, first_step + s + _CHUNK)
    state, step_losses = run(state, part, rates[s:s + _CHUNK], step_ids)
    total += float(step_losses.sum())
  return state, total


def _checked_examples(words, contexts, num_tags: int) -> tuple[np.ndarray, np.ndarray]:
  words, contexts = np.asarray(words, np.int32), np.asarray(contexts, np.int32)
  if len(words) == 0:
    raise ValueError("no training post has two hashtags: MSSG has no context to learn from")
  if contexts.ndim != 2 or len(contexts) != len(words):
    raise ValueError(f"contexts {contexts.shape} must be [len(words)={len(words)}, C]")
  if not (contexts != PAD_ID).any(axis=1).all():
    raise ValueError("every example needs at least one context hashtag")
  bad_context = (contexts != PAD_ID) & ((contexts < 0) | (contexts >= num_tags))
  if ((words < 0) | (words >= num_tags)).any() or bad_context.any():
    raise ValueError(f"hashtag ids outside the vocabulary [0, {num_tags})")
  return words, contexts


def _check(**positive_ints):
  for name, value in positive_ints.items():
    if int(value) != value or value < 1:
      raise ValueError(f"{name} must be a positive integer, got {value}")


def _result(state, words, num_tags, losses) -> MultiSenseEmbeddings:
  """The trained tables as float32 numpy, the rows of hashtags without an example zeroed."""
  isolated = np.bincount(words, minlength=num_tags) == 0
  state = {name: np.array(value) for name, value in state.items()}
  for name in state:
    state[name][isolated] = 0.0
  counts = np.rint(state["count"]).astype(np.int64)
  centres = state["centre"] / np.maximum(state["count"], 1.0)[..., None]
  counts = np.where(isolated[:, None], 0, counts - 1)  # not the random start
  return MultiSenseEmbeddings(state["global"], state["sense"], centres, counts,
                              state.get("output", state["global"]), losses,
                              int(isolated.sum()))


def assign_senses(embeddings: MultiSenseEmbeddings, words: np.ndarray,
                  contexts: np.ndarray) -> np.ndarray:
  """k* [M]: the sense the trained centres give each example (words [M], contexts [M, C]), by
  the rule training used."""
  return np.asarray(_assign(jnp.asarray(embeddings.centres), jnp.asarray(embeddings.global_vectors),
                            jnp.asarray(words), jnp.asarray(contexts)))


@jax.jit
def _assign(centres, global_vectors, words, contexts):
  c = context_vectors(global_vectors, contexts, contexts != PAD_ID)
  return choose_senses(centres[words], c)


def training_mssg_embeddings(dataset, dim: int, **hyperparameters) -> MultiSenseEmbeddings:
  """MSSG on a PostDataset's training posts (train_mssg's hyperparameters): what NCSL-MS
  regresses onto is its `global_vectors`."""
  words, contexts = training_examples(dataset)
  return train_mssg(words, contexts, dataset.num_tags, dim=dim, **hyperparameters)
