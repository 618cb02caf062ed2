"""Flax layers shared by the neural models (an MLP tower, a learned tag table)."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """[Dense -> (BatchNorm) -> ReLU -> (Dropout)] for each width in `features`, then, with
  out_features > 0, a linear Dense layer "out" to that width (outputs of any sign).

  Batch norm uses batch statistics in training and running averages (momentum 0.9) otherwise;
  dropout is active only in training and draws from the "dropout" rng. Every image head is
  this module, so a head trained by one model loads into another (init_from "image").
  """
  features: Sequence[int]
  dropout_rate: float = 0.0
  batch_norm: bool = False
  out_features: int = 0

  @nn.compact
  def __call__(self, x, train: bool):
    for width in self.features:
      x = nn.Dense(width)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.relu(x)
      if self.dropout_rate:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    if self.out_features:
      x = nn.Dense(self.out_features, name="out")(x)
    return x

  @property
  def width(self) -> int:
    return self.out_features or self.features[-1]


def head_widths(hidden, dropout_rate: float) -> tuple[int, ...]:
  """An MLP head's hidden widths as a tuple of ints, checked along with its dropout rate."""
  hidden = tuple(int(h) for h in hidden)
  if any(h < 1 for h in hidden):
    raise ValueError(f"hidden widths must be positive, got {hidden}")
  if not 0 <= dropout_rate < 1:
    raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
  return hidden


class TagTable(nn.Module):
  """A learned table of hashtag embeddings [Y, d], with an optional bias per hashtag.

  Rows start like the kernel of a Dense layer from d inputs (LeCun normal). With bias=True the
  table is [Y, d + 1] (last column the bias), to be scored against queries ending in a 1, so
  that q . row_y = h . w_y + b_y: a classifier's output layer as a two-tower dot product.
  """
  num_tags: int
  features: int
  bias: bool = True

  @nn.compact
  def __call__(self):
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=-1,
                                            out_axis=-2)
    table = self.param("embedding", init, (self.num_tags, self.features))
    if not self.bias:
      return table
    b = self.param("bias", nn.initializers.zeros_init(), (self.num_tags,))
    return jnp.concatenate([table, b[:, None]], axis=-1)


def append_one(h):
  """[..., d] -> [..., d + 1] with a trailing 1: the query side of TagTable(bias=True)."""
  return jnp.concatenate([h, jnp.ones(h.shape[:-1] + (1,), h.dtype)], axis=-1)


class UserTable(nn.Module):
  """A learned embedding u_k in R^E per training user, and the constant 1/E vector for a user
  without training posts (`user_train_posts` = 0: the user-disjoint test users), as Durand et
  al. do for Veit et al.'s models. Entries start ~ N(0, 1/E), so |u_k| starts near 1."""
  num_users: int
  features: int

  @nn.compact
  def __call__(self, batch):
    table = self.param("embedding", nn.initializers.normal(1.0 / self.features ** 0.5),
                       (self.num_users, self.features))
    seen = (batch["user_train_posts"] > 0)[..., None]
    return jnp.where(seen, table[batch["user_index"]], 1.0 / self.features)
