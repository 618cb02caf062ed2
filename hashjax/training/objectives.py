"""The objective registry: config.loss = dict(name=..., **hyperparameters) -> a training loss.

An objective turns (model, variables, batch, rng) into (loss, diagnostics, state updates). The
ones here score two-tower queries against the whole tag table and call the loss math in
hashjax.losses (WARP) or optax (softmax / sigmoid cross-entropy); a loss that needs more of a
model than its two towers (Veit et al.'s negatives along the user axis) is an objective too, and
plugs into the same trainer.

    warp      Weston et al. 2011, Denton et al.: sum over a post's positives of the rank-weighted
              hinge, averaged over posts (one post's update = the paper's per-positive steps)
    softmax   -log softmax(scores)[y], y drawn uniformly from the post's hashtags at every visit
              (Veit et al.'s MCLL); mean over posts that have a hashtag, or over users
              (Durand et al.'s eq. 9); over every hashtag or the training split's
    sampled_softmax  the same softmax estimated from S candidates shared by the batch, drawn
              from a uniform or log-uniform (Zipf) proposal, with the log-Q correction and the
              accidental hits removed (hashjax.losses.sampled_softmax): for vocabularies of
              100k+ hashtags; only the needed tag rows are computed (`tag_rows`)
    sigmoid   sum over the vocabulary of binary cross-entropy against the multi-hot hashtag set
              (the HARRISON classifier); mean over posts that have a hashtag
    ncsl      Veit et al.'s negative cosine similarity loss: -cos(query, sum of the post's tag
              rows), mean over posts with a hashtag whose row is nonzero; for a fixed tag table
              (the ncsl model's PPMI-SVD rows: a learned one could collapse onto the queries)
    triplet   Veit et al.: the hinge over six in-batch negatives along the tag, image and user
              axes of one uniformly drawn (hashtag, image, user) triplet per post
              (hashjax.losses.triplet), the tag axis's candidates from the batch (the
              paper's) or the vocabulary; needs a model with `train_axis_scores` (the
              tensor, the concatenation MLP)

    sequence  a generator's (#okboomer's) token cross-entropy: -log p(y_t | y_<t, post) of its
              target tokens (the post's hashtags in order, then END), averaged over the batch's
              tokens; needs a model with `train_logits` (hashjax.models.okboomer)

Sequence batches (fields [S, W, ...]) are flattened to posts, and only the targets
(`target_mask`) count. An objective's `inputs` are the batch fields it reads beyond the
model's and the hashtags (none here).
"""

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from hashjax.eval import bleu
from hashjax.losses import sampled_softmax, targets, triplet, warp


def _two_tower(model, variables, batch, rng):
  """Training-mode queries flattened to [N, d], tags [N, T] with non-targets masked, the
  tag table [Y, d], the number of posts the loss averages over, and the state updates."""
  queries, tag_ids, tag_mask, num_posts, updates = _query_tower(model, variables, batch, rng)
  return queries, tag_ids, tag_mask, model.tags(variables), num_posts, updates


def _query_tower(model, variables, batch, rng):
  """_two_tower without the tag table: (queries [N, d], tag_ids [N, T], tag_mask [N, T],
  num_posts, updates), for a loss that needs only some of the tag rows (`tag_rows`)."""
  if not hasattr(model, "tags"):
    raise ValueError(f"this loss scores queries against the tag table, and model {model.name!r} "
                     "is not two towers; train it with loss 'triplet'")
  queries, updates = model.train_query(variables, batch, rng)
  tag_ids, tag_mask = batch["tag_ids"], batch["tag_mask"]
  if "target_mask" in batch:
    tag_mask = tag_mask & batch["target_mask"][..., None]
    num_posts = jnp.maximum(batch["target_mask"].sum(), 1)
  else:
    num_posts = tag_ids.shape[0]
  num_slots = tag_ids.shape[-1]
  return (queries.reshape(-1, queries.shape[-1]), tag_ids.reshape(-1, num_slots),
          tag_mask.reshape(-1, num_slots), num_posts, updates)


def tag_rows(model, variables, ids: jax.Array) -> jax.Array:
  """The tag rows tags(variables)[ids], [..., d], computed for those ids only where the model
  can: `model.tags_for(variables, ids)` if it has one (a computed tag tower, e.g. Durand's
  phi_tag(psi[ids])), else a gather from the table (a learned table: only the gathered rows
  enter the gradient)."""
  if hasattr(model, "tags_for"):
    return model.tags_for(variables, ids)
  return model.tags(variables)[ids]


@dataclasses.dataclass(frozen=True)
class Warp:
  """WARP with `margin` and up to `max_trials` draws per positive (hashjax.losses.warp)."""
  margin: float = 0.1
  max_trials: int = 1000
  name: ClassVar[str] = "warp"
  inputs: ClassVar[tuple[str, ...]] = ()

  def __call__(self, model, variables, batch, rng):
    # The negative draws use rng itself, the model's own randomness a key derived from it.
    queries, tag_ids, tag_mask, table, num_posts, updates = _two_tower(
        model, variables, batch, jax.random.fold_in(rng, 1))
    per_positive, sample = warp.warp_loss_two_tower(rng, queries, table, tag_ids, tag_mask,
                                                    margin=self.margin,
                                                    max_trials=self.max_trials)
    positives = jnp.maximum(tag_mask.sum(), 1)
    aux = {"violator_found": (sample.found & tag_mask).sum() / positives,
           "mean_draws": jnp.where(tag_mask, sample.num_draws, 0).sum() / positives}
    return per_positive.sum() / num_posts, aux, updates


@dataclasses.dataclass(frozen=True)
class _OneTagSoftmax:
  r"""What the softmax objectives share: the target, the vocabulary and the average.

  vocabulary: "all" hashtags in the denominator, or only the "seen" ones (used in the training
    split, ids [0, spec.num_seen_tags)): Durand et al.'s eq. 8 over H^train, so that an open
    vocabulary's unseen hashtags are never pushed down by training.
  average: "posts" (the mean over posts) or "users", Durand et al.'s eq. 9 on user sequences:

      L = -1/U sum_u 1/N_u sum_{n of u} log p(y_n | I_n, u)

    each sequence's mean over its target posts, then the mean over sequences (with one
    sequence per user, seq_len >= the longest history, that is eq. 9 exactly).
  """
  vocabulary: str = "all"
  average: str = "posts"
  num_seen_tags: int = 0  # set from the dataset by make_objective
  name: ClassVar[str]
  inputs: ClassVar[tuple[str, ...]] = ()

  def __post_init__(self):
    if self.vocabulary not in ("all", "seen"):
      raise ValueError(f"loss {self.name!r}: vocabulary must be all or seen, got "
                       f"{self.vocabulary!r}")
    if self.average not in ("posts", "users"):
      raise ValueError(f"loss {self.name!r}: average must be posts or users, got "
                       f"{self.average!r}")

  def for_dataset(self, spec):
    return dataclasses.replace(self, num_seen_tags=spec.seen_tags)

  def _targets(self, key, tag_ids, tag_mask, num_tags: int):
    """(labels [N], has_positive [N], K): one hashtag drawn uniformly from each post's,
    among the vocabulary's K (num_tags, or the seen ones)."""
    if self.vocabulary == "seen":
      if not self.num_seen_tags:
        raise ValueError(f"loss {self.name!r} over the seen vocabulary needs the dataset's spec "
                         "(make_objective(config.loss, spec))")
      num_tags = self.num_seen_tags
      tag_mask = tag_mask & (tag_ids < num_tags)
    labels, has_positive = targets.uniform_positive(key, tag_ids, tag_mask)
    return labels, has_positive, num_tags

  def _average(self, per_post, has_positive, batch):
    if self.average == "posts":
      return _mean_over(per_post, has_positive)
    if "target_mask" not in batch:
      raise ValueError(f"loss {self.name!r} averaged over users needs user sequences (a model "
                       "of layout 'sequences')")
    sequences = batch["target_mask"].shape[0]
    per_post = jnp.where(has_positive, per_post, 0.0).reshape(sequences, -1)
    counted = has_positive.reshape(sequences, -1).sum(axis=1)
    per_user = per_post.sum(axis=1) / jnp.maximum(counted, 1)
    return _mean_over(per_user, counted > 0)


@dataclasses.dataclass(frozen=True)
class Softmax(_OneTagSoftmax):
  """Softmax cross-entropy over the vocabulary against one uniformly drawn hashtag per post
  (vocabulary and average: _OneTagSoftmax)."""
  name: ClassVar[str] = "softmax"

  def __call__(self, model, variables, batch, rng):
    label_key, model_key = jax.random.split(rng)
    queries, tag_ids, tag_mask, table, _, updates = _two_tower(model, variables, batch,
                                                               model_key)
    labels, has_positive, num_tags = self._targets(label_key, tag_ids, tag_mask, len(table))
    per_post = optax.softmax_cross_entropy_with_integer_labels(queries @ table[:num_tags].T,
                                                               labels)
    return self._average(per_post, has_positive, batch), {}, updates


@dataclasses.dataclass(frozen=True)
class SampledSoftmax(_OneTagSoftmax):
  r"""The softmax objective estimated from S candidates shared by the batch
  (hashjax.losses.sampled_softmax): per post, with y drawn as the softmax's,

      l = log(e^{q . t_y} + sum_{j=1..S, s_j != y} e^{q . t_{s_j} - log(S Q(s_j))}) - q . t_y

  the candidates s_j drawn with replacement from `proposal` Q ("uniform" or "log_uniform",
  Zipf over the frequency-ordered ids) over the same vocabulary the softmax's denominator
  would span (vocabulary all or seen), and averaged the same way (average posts or users).
  A consistent estimator of the `softmax` objective: as S grows its value and gradient tend to
  the full softmax's. Only the S + N needed tag rows are computed (`tag_rows`: a model's
  `tags_for`), never the [N, K] scores; aux "accidental_hits" is the mean fraction of a post's
  samples that hit its positive (removed if remove_accidental_hits).
  """
  num_samples: int = 1024
  proposal: str = "log_uniform"
  remove_accidental_hits: bool = True
  name: ClassVar[str] = "sampled_softmax"

  def __post_init__(self):
    super().__post_init__()
    if self.proposal not in sampled_softmax.PROPOSALS:
      raise ValueError(f"loss {self.name!r}: proposal must be one of "
                       f"{sampled_softmax.PROPOSALS}, got {self.proposal!r}")
    if self.num_samples < 1:
      raise ValueError(f"loss {self.name!r}: num_samples must be >= 1, got {self.num_samples}")

  def __call__(self, model, variables, batch, rng):
    # The label and model keys are the softmax objective's: with the same rng both see the same
    # positives and dropout, and differ only by the sampling.
    label_key, model_key = jax.random.split(rng)
    queries, tag_ids, tag_mask, _, updates = _query_tower(model, variables, batch, model_key)
    # The table's size without computing it (a tag tower's would cost the [K, d] it avoids).
    table = jax.eval_shape(model.tags, variables)
    labels, has_positive, num_tags = self._targets(label_key, tag_ids, tag_mask,
                                                   table.shape[0])
    candidates = sampled_softmax.sample_candidates(jax.random.fold_in(rng, 2), self.num_samples,
                                                   num_tags, self.proposal)
    # One call for both sets of rows: a tag tower runs once, on N + S inputs.
    rows = tag_rows(model, variables, jnp.concatenate([labels, candidates.ids]))
    per_post = sampled_softmax.sampled_softmax_loss(
        queries, rows[:len(labels)], labels, candidates, rows[len(labels):],
        self.remove_accidental_hits)
    hits = (labels[:, None] == candidates.ids[None, :]).mean(axis=1)
    aux = {"accidental_hits": _mean_over(hits, has_positive)}
    return self._average(per_post, has_positive, batch), aux, updates


@dataclasses.dataclass(frozen=True)
class SigmoidCrossEntropy:
  """Binary cross-entropy of every hashtag against the post's multi-hot set, summed over tags."""
  name: ClassVar[str] = "sigmoid"
  inputs: ClassVar[tuple[str, ...]] = ()

  def __call__(self, model, variables, batch, rng):
    queries, tag_ids, tag_mask, table, _, updates = _two_tower(model, variables, batch, rng)
    labels = targets.multi_hot(tag_ids, tag_mask, table.shape[0])
    per_post = optax.sigmoid_binary_cross_entropy(queries @ table.T, labels).sum(axis=-1)
    return _mean_over(per_post, tag_mask.any(axis=-1)), {}, updates


@dataclasses.dataclass(frozen=True)
class NegativeCosine:
  """Veit et al.'s NCSL: the query regressed in direction onto the sum of the post's tag rows."""
  epsilon: float = 1e-12
  name: ClassVar[str] = "ncsl"
  inputs: ClassVar[tuple[str, ...]] = ()

  def __call__(self, model, variables, batch, rng):
    queries, tag_ids, tag_mask, table, _, updates = _two_tower(model, variables, batch, rng)
    per_post, counted = negative_cosine(queries, table, tag_ids, tag_mask, self.epsilon)
    return _mean_over(per_post, counted), {}, updates


def negative_cosine(queries, table, tag_ids, tag_mask, epsilon: float = 1e-12):
  r"""(-cos(q_n, t_n) [N], counted [N]) for t_n = sum_{y in post n} table[y].

      cos(q, t) = q . t / (max(|q|^2, eps) max(|t|^2, eps))^(1/2)       (optax's epsilon)

  The floor eps on the squared norms keeps a zero vector at cosine 0, and the query's gradient
  there at 0, instead of 0 / 0 (the target's gradient is then q / (|q| eps^(1/2)), which only a
  learned table would feel: the rows of a post that cancel exactly). A post counts if one of
  its (unmasked) hashtags has a nonzero row: a post without one has no target direction, and
  would only dilute the mean with a constant 0.
  """
  rows = table[jnp.where(tag_mask, tag_ids, 0)]  # [N, T, d]
  present = tag_mask & (jnp.square(rows).sum(axis=-1) > 0)
  target = jnp.where(present[..., None], rows, 0.0).sum(axis=-2)
  per_post = -optax.cosine_similarity(queries, target, epsilon=epsilon)
  return per_post, present.any(axis=-1)


@dataclasses.dataclass(frozen=True)
class Triplet:
  """Veit et al.'s ranking loss with intermediate and hard negatives on each axis (margin 1).

  negatives: "both" (the paper's six), or only the three "intermediate" or "hard" ones.
  tag_candidates: "batch" (the paper's: the other posts' positives) or "vocabulary" (every
  hashtag: the uniform draw and the argmax along the tag axis reach rare hashtags too).
  """
  margin: float = 1.0
  negatives: str = "both"
  tag_candidates: str = "batch"
  name: ClassVar[str] = "triplet"
  inputs: ClassVar[tuple[str, ...]] = ("user_index",)

  def __call__(self, model, variables, batch, rng):
    if self.negatives not in ("both", "intermediate", "hard"):
      raise ValueError(f"loss 'triplet': negatives must be both, intermediate or hard, got "
                       f"{self.negatives!r}")
    if self.tag_candidates not in ("batch", "vocabulary"):
      raise ValueError(f"loss 'triplet': tag_candidates must be batch or vocabulary, got "
                       f"{self.tag_candidates!r}")
    if not hasattr(model, "train_axis_scores"):
      raise ValueError(f"loss 'triplet' scores triplets along the user axis; model "
                       f"{model.name!r} has no train_axis_scores (use tensor or concat_mlp)")
    if model.layout != "posts":
      raise ValueError("loss 'triplet' takes post batches, not user sequences")
    label_key, negative_key, model_key = jax.random.split(rng, 3)
    positive, has_positive = targets.uniform_positive(label_key, batch["tag_ids"],
                                                      batch["tag_mask"])
    num_tags = model.num_tags if self.tag_candidates == "vocabulary" else 0
    if num_tags:
      batch = {**batch, "tag_candidates": jnp.arange(num_tags)}
    scores, updates = model.train_axis_scores(variables, batch, positive, model_key)
    valid = triplet.valid_candidates(batch["tag_ids"], batch["tag_mask"], positive,
                                     has_positive, batch["user_index"], num_tags)
    negatives = triplet.choose_negatives(negative_key, scores, valid)
    if self.negatives == "intermediate":
      negatives = negatives._replace(hard_exists=jnp.zeros_like(negatives.hard_exists))
    elif self.negatives == "hard":
      negatives = negatives._replace(
          intermediate_exists=jnp.zeros_like(negatives.intermediate_exists))
    per_post, hinges = triplet.triplet_hinge(scores, negatives, self.margin)
    counted = jnp.maximum(has_positive.sum(), 1)
    kinds = [f"{kind}_{axis}" for kind in ("intermediate", "hard") for axis in triplet.AXES]
    aux = {f"violated_{kind}": (h > 0).sum() / counted for kind, h in zip(kinds, hinges)}
    return _mean_over(per_post, has_positive), aux, updates


@dataclasses.dataclass(frozen=True)
class SequenceCrossEntropy:
  """Token cross-entropy of a generated hashtag sequence, mean over the real target tokens."""
  name: ClassVar[str] = "sequence"
  inputs: ClassVar[tuple[str, ...]] = ()

  def __call__(self, model, variables, batch, rng):
    if not hasattr(model, "train_logits"):
      raise ValueError(f"loss 'sequence' trains a generator, and model {model.name!r} writes no "
                       "sequence")
    logits, tokens, mask, updates = model.train_logits(variables, batch, rng)
    per_token = optax.softmax_cross_entropy_with_integer_labels(logits, tokens)
    # BLEU-1 of what the decoder wrote in this step (its argmax under teacher forcing, up to
    # its first END) against the post's hashtags: #okboomer's training BLEU
    written = jnp.argmax(logits, axis=-1)
    before_end = jnp.cumsum(written == model.end, axis=1) == 0
    truth = mask & (tokens != model.end)
    posts = mask.any(axis=1)
    score = bleu.batch_sentence_bleu1(written, before_end, tokens, truth, logits.shape[-1])
    return _mean_over(per_token, mask), {"bleu1": _mean_over(score, posts)}, updates


def _mean_over(per_post: jax.Array, where: jax.Array) -> jax.Array:
  # where, not a product: a post that does not count must not turn the loss into NaN.
  return jnp.where(where, per_post, 0.0).sum() / jnp.maximum(where.sum(), 1)


OBJECTIVES = {cls.name: cls for cls in (Warp, Softmax, SampledSoftmax, SigmoidCrossEntropy,
                                        Triplet, NegativeCosine, SequenceCrossEntropy)}


def make_objective(loss_config: Any, spec=None):
  """The objective config.loss describes: {name, **hyperparameters}; one that depends on the
  dataset (`for_dataset`: the seen vocabulary) is bound to `spec`."""
  options = dict(loss_config)
  name = options.pop("name", None)
  if name not in OBJECTIVES:
    raise ValueError(f"unknown loss {name!r}; available: {', '.join(sorted(OBJECTIVES))}")
  try:
    objective = OBJECTIVES[name](**options)
  except TypeError as e:
    fields = [f.name for f in dataclasses.fields(OBJECTIVES[name])]
    raise ValueError(f"loss {name!r} takes {fields or 'no options'}; got {sorted(options)}"
                     ) from e
  if spec is not None and hasattr(objective, "for_dataset"):
    objective = objective.for_dataset(spec)
  return objective
