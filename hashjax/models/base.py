"""The one abstraction: a query tower and a tag tower whose dot product is the score.

    score(post, tag) = query(variables, batch)[post] . tags(variables)[tag]

A model is a small frozen dataclass of hyperparameters with pure functions:

  inputs                                  the batch fields the query tower reads, e.g.
                                          ("features", "user_meta"); the pipeline reads these
  layout                                  "posts" (fields [B, ...]) or "sequences" (fields
                                          [S, W, ...]: user histories, pipeline.sequence_batches)
  init(rng, spec) -> variables            {"params": {part: ...}, other collections (e.g.
                                          "batch_stats") if the model has state}
  query(variables, batch) -> [..., d]     inference: deterministic, state unchanged
  train_query(variables, batch, rng)      training mode (dropout, batch statistics):
      -> ([..., d], state updates)        the updated non-param collections ({} if none)
  tags(variables) -> [Y, d]               one row per hashtag
  project(params) -> params               constraints enforced after every update
  report_columns() -> {name: value}       descriptive table columns, e.g. {"d": 64, "K": 100}

Parameters are nested by *part* at the top level (image / user / tags / ...): a part is the
unit that `init_from` loads from another run and `config.frozen` keeps fixed.
Losses, evaluation, serving and sharding are written once against this interface.

A model whose score is not a dot product (Veit et al.'s concatenation MLP) has the same
members except query / train_query / tags, and instead

  scores(variables, batch, tag_ids) -> [B, len(tag_ids)]    inference scores of the batch's
                                                            posts for those hashtags

which evaluation reaches through evaluate.PairScorer (top-k over the vocabulary in blocks); it
trains with an objective that needs no tag table (the triplet loss).
"""

from typing import Any, ClassVar, Protocol

import jax

Variables = dict[str, Any]
Params = dict[str, Any]


class TwoTowerModel(Protocol):
  name: ClassVar[str]
  label: ClassVar[str]  # the row name in reports, in the paper's words
  inputs: tuple[str, ...]
  layout: str

  def init(self, rng: jax.Array, spec) -> Variables:
    ...

  def query(self, variables: Variables, batch: dict[str, Any]) -> jax.Array:
    ...

  def train_query(self, variables: Variables, batch: dict[str, Any],
                  rng: jax.Array) -> tuple[jax.Array, Variables]:
    ...

  def tags(self, variables: Variables) -> jax.Array:
    ...

  def project(self, params: Params) -> Params:
    ...

  def report_columns(self) -> dict[str, Any]:
    ...


class Stateless:
  """Mixin for models without state or randomness: training mode is inference mode."""
  layout: ClassVar[str] = "posts"

  def train_query(self, variables, batch, rng):
    del rng
    return self.query(variables, batch), {}

  def project(self, params):
    return params
