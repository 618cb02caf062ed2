r"""Veit et al.'s user-specific MLP baseline: the three embeddings concatenated, scored by an MLP.

The image head f_j in R^F (as the tensor's, loadable from a stage-1 run), the hashtag
embedding h_i in R^D and the user embedding u_k in R^E (1/E for users unseen in training) are
concatenated and scored by an MLP with one output,

    s(i, j, k) = g([h_i; f_j; u_k]),   g(x) = w^T relu(... relu(A x + a) ...) + c

trained with the same triplet hinge as the tensor (hashjax.losses.triplet). It is the
baseline that tells whether the tensor's multiplicative interaction matters, so everything else
(heads, embeddings, loss, negatives) is shared with the tensor.

The score is not a dot product of a post side and a tag side, so the model is not two towers:
it is scored by `scores(variables, batch, tag_ids)` -> [B, len(tag_ids)], which evaluation
reaches through evaluate.PairScorer. Both the training view and that one use the fact that the
first layer is linear in the concatenation, A [h; f; u] = A_h h + A_f f + A_u u, so the first
layer costs one [B, H] product per element and the pairs only add:

    S_tag[b, c]  = s(i_c, j_b, k_b) = g'(A_f f_b + A_u u_b + A_h h_c)
    S_img[b, c]  = s(i_b, j_c, k_b) = g'(A_h h_b + A_u u_b + A_f f_c)
    S_user[b, c] = s(i_b, j_b, k_c) = g'(A_h h_b + A_f f_b + A_u u_c)

where g' is g after its first matrix product ([B, C, H] activations, never [B, C, D + F + E]).

Parts: "image", "user", "tags" (learned, as the tensor's) and "scorer" (the MLP g).
"""

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from hashjax.models import layers
from hashjax.models.user_specific import UserSpecificModel, UserSpecificModule


class _PairMLP(nn.Module):
  """g over [h; f; u], its first layer split by input (module docstring)."""
  widths: tuple[int, ...]
  input_sizes: tuple[int, int, int]  # D, F, E

  def setup(self):
    # A Dense layer on the concatenation, in three blocks: each starts with variance
    # 1 / (D + F + E) per entry, as one LeCun-initialised layer of that fan-in would.
    total = sum(self.input_sizes)
    def block(size, bias):
      init = nn.initializers.variance_scaling(size / total, "fan_in", "truncated_normal")
      return nn.Dense(self.widths[0], use_bias=bias, kernel_init=init)
    self.first_tag = block(self.input_sizes[0], False)
    self.first_image = block(self.input_sizes[1], False)
    self.first_user = block(self.input_sizes[2], True)  # the layer's one bias
    self.rest = [nn.Dense(w) for w in self.widths[1:]]
    self.out = nn.Dense(1)

  def first_layer(self, h, f, u):
    """(A_h h, A_f f, A_u u + a): the first layer's three blocks, [B, H] each."""
    return self.first_tag(h), self.first_image(f), self.first_user(u)

  def __call__(self, rows, cols):
    """g'(rows[b] + cols[c]) for every pair: [B, H] and [C, H] first-layer sums -> [B, C]."""
    x = rows[:, None, :] + cols[None, :, :]
    for layer in self.rest:
      x = layer(nn.relu(x))
    return self.out(nn.relu(x))[..., 0]


class _ConcatMLP(UserSpecificModule):
  widths: tuple[int, ...] = (300,)

  def setup(self):
    super().setup()
    self.tags = layers.TagTable(self.num_tags, self.tag_dim, bias=False)
    self.scorer = _PairMLP(self.widths, (self.tag_dim, self.image_width, self.user_dim))

  def _first_layer(self, batch, tag_ids, train):
    f, u = self.image(batch["features"], train), self.user(batch)
    return self.scorer.first_layer(self.tags()[tag_ids], f, u)

  def tag_scores(self, batch, train: bool):
    """[B, C] scores of the batch's posts (image and user) for the hashtags batch["candidates"]."""
    h, f, u = self._first_layer(batch, batch["candidates"], train)
    return self.scorer(f + u, h)

  def axis_scores(self, batch, train: bool):
    """(S_tag, S_img, S_user) [B, B] of the positives batch["positive"] (module docstring);
    with batch["tag_candidates"] (ids [C]), S_tag [B, C] replaces the hashtag by those."""
    h, f, u = self._first_layer(batch, batch["positive"], train)
    rows = (self.scorer.first_tag(self.tags()[batch["tag_candidates"]])
            if "tag_candidates" in batch else h)
    return self.scorer(f + u, rows), self.scorer(h + u, f), self.scorer(h + f, u)


@dataclasses.dataclass(frozen=True)
class ConcatMLP(UserSpecificModel):
  """Attributes: those of UserSpecificModel, and scorer_hidden, the hidden widths of the
  scoring MLP g (at least one)."""
  scorer_hidden: tuple[int, ...] = (300,)
  name: ClassVar[str] = "concat_mlp"
  label: ClassVar[str] = "MLP"

  def __post_init__(self):
    super().__post_init__()
    object.__setattr__(self, "scorer_hidden", layers.head_widths(self.scorer_hidden, 0.0))
    if not self.scorer_hidden:
      raise ValueError("the scoring MLP needs at least one hidden layer (scorer_hidden)")

  def module(self) -> nn.Module:
    return _ConcatMLP(**self.module_fields(), widths=self.scorer_hidden)

  def init_method(self, module, batch):
    return module.axis_scores({**batch, "positive": jnp.zeros(len(batch["features"]), int)},
                              train=False)

  def scores(self, variables, batch: dict[str, Any], tag_ids):
    """[B, len(tag_ids)] inference scores of the batch's posts for the hashtags tag_ids."""
    return self.apply_eval(variables, "tag_scores", {**batch, "candidates": tag_ids})
