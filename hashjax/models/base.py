"""The one abstraction: a query tower and a tag tower whose dot product is the score.

    score(post, tag) = query(params, batch)[post] . tags(params)[tag]

A model is a small frozen dataclass holding its hyperparameters, with pure functions:
  init(rng, dims) -> params          a pytree of jnp arrays
  query(params, batch) -> [B, d]     batch: dict from PostDataset.read ('features' [B, n],
                                     'user_meta' [B, m], later 'history', ...)
  tags(params) -> [Y, d]             one row per hashtag
  project(params) -> params          constraints enforced after every update (identity if none)
Losses, evaluation, serving and sharding are written once against this interface.
"""

import dataclasses
from typing import Any, Protocol

import jax

Params = Any


@dataclasses.dataclass(frozen=True)
class Dims:
  """Sizes a model needs from the dataset."""
  feature_dim: int
  user_meta_dim: int
  num_tags: int


class TwoTowerModel(Protocol):
  name: str

  def init(self, rng: jax.Array, dims: Dims) -> Params:
    ...

  def query(self, params: Params, batch: dict[str, Any]) -> jax.Array:
    ...

  def tags(self, params: Params) -> jax.Array:
    ...

  def project(self, params: Params) -> Params:
    ...
