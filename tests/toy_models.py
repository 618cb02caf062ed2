"""Small models that exercise the platform's inputs a paper's model will read (tests only).

- UserEmbedding: query = P x + E[user_index], a learned vector per user (Veit et al.'s kind of
  input), to check that a declared input other than features / metadata reaches the train step
  and the evaluation.
- HistoryMean: a sequence-layout model, query = P x_t + Q mean(x_1..x_{t-1}) over the user's
  earlier posts in the sequence (a stand-in for Durand et al.'s GRU).
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from hashjax.models.base import Stateless


def _normal(key, shape):
  return 0.1 * jax.random.normal(key, shape, jnp.float32)


@dataclasses.dataclass(frozen=True)
class UserEmbedding(Stateless):
  d: int = 8
  name: ClassVar[str] = "user_embedding"
  label: ClassVar[str] = "User embedding"
  inputs: ClassVar[tuple[str, ...]] = ("features", "user_index")

  def init(self, rng, spec):
    k_p, k_e, k_v = jax.random.split(rng, 3)
    return {"params": {"image": {"P": _normal(k_p, (spec.feature_dim, self.d))},
                       "user": {"E": _normal(k_e, (spec.num_users, self.d))},
                       "tags": {"V": _normal(k_v, (spec.num_tags, self.d))}}}

  def query(self, variables, batch):
    p = variables["params"]
    return batch["features"] @ p["image"]["P"] + p["user"]["E"][batch["user_index"]]

  def tags(self, variables):
    return variables["params"]["tags"]["V"]

  def report_columns(self):
    return {"d": self.d}


@dataclasses.dataclass(frozen=True)
class HistoryMean(Stateless):
  d: int = 8
  name: ClassVar[str] = "history_mean"
  label: ClassVar[str] = "History mean"
  inputs: ClassVar[tuple[str, ...]] = ("features", "seq_mask")
  layout: ClassVar[str] = "sequences"

  def init(self, rng, spec):
    k_p, k_q, k_v = jax.random.split(rng, 3)
    return {"params": {"image": {"P": _normal(k_p, (spec.feature_dim, self.d))},
                       "user": {"Q": _normal(k_q, (spec.feature_dim, self.d))},
                       "tags": {"V": _normal(k_v, (spec.num_tags, self.d))}}}

  def query(self, variables, batch):
    p = variables["params"]
    x = batch["features"] * batch["seq_mask"][..., None]  # [S, W, n]
    earlier = jnp.cumsum(x, axis=1) - x
    count = jnp.cumsum(batch["seq_mask"], axis=1) - batch["seq_mask"]
    history = earlier / jnp.maximum(count, 1)[..., None]
    return x @ p["image"]["P"] + history @ p["user"]["Q"]

  def tags(self, variables):
    return variables["params"]["tags"]["V"]

  def report_columns(self):
    return {"d": self.d}
