r"""Veit et al.'s user-specific three-way tensor model (flax), a two-tower model.

An image head f (an MLP over the precomputed CNN features, f_j in R^F), a table of hashtag
embeddings h_i in R^D, a learned embedding u_k in R^E per user and a weight tensor
W in R^{E x D x F} score the triplet (hashtag i, image j, user k) as

    s(i, j, k) = sum_{a,b,r} W_rab h_ia f_jb u_kr = h_i^T W^(k) f_j,   W^(k) = sum_r u_kr W_r

so with the query q_jk = W^(k) f_j the model is two towers (query . tag row): top-k evaluation,
retrieval and the whole-vocabulary losses reuse what every model has. The ranking loss with
negatives along the image, tag and user axes (hashjax.losses.triplet) needs one more view,
`axis_scores`: for a batch of positive triplets (i_b, j_b, k_b) the three [B, B] matrices of
scores with one element replaced by the batch's c-th,

    S_tag[b, c]  = s(i_c, j_b, k_b) = h_{i_c} . (W^(k_b) f_{j_b})
    S_img[b, c]  = s(i_b, j_c, k_b) = (W^(k_b)^T h_{i_b}) . f_{j_c}
    S_user[b, c] = s(i_b, j_b, k_c) = u_{k_c} . g_b,   g_br = h_{i_b}^T W_r f_{j_b}

each one [B, E, D] or [B, E, F] contraction and a [B, B] matrix product: the B x B x B score
tensor is never formed.

Users unseen in training (`user_train_posts` = 0, the user-disjoint test users) get the constant
vector 1/E in every entry (W^(k) = the mean of the W_r), as Durand et al. do for Veit's model.

Options beyond the paper's form (off by default), for starting stage 2 where stage 1 ended:

    shared_slice   W^(k) = W_0 + sum_r u_kr W_r with W_0 [D, F] learned and starting at the
                   identity (a user coordinate fixed at 1): with W small, s = h^T f, the
                   user-agnostic bilinear score of the stage-1 model
    tag_bias       a learned bias b_i per hashtag added to s, as MCLL's classifier layer has, so
                   that its tag table (rows and biases) loads as the tensor's (init_from "tags")
    image_dim      F from a linear last layer of the head (NCSL's head: hidden then "out")

With both, a tensor loaded from an MCLL run (parts image and tags, D = F) and W = 0 scores
exactly as the MCLL run did (tests/models/test_tensor.py).

Parts: "image" (the MLP head: the part `init_from` loads from a stage-1 MCLL / NCSL run with
the same hidden widths), "user" (the embeddings), "tensor" (W), "shared" (W_0, with
shared_slice) and "tags" (the h_i, and the b_i with tag_bias).
"""

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from hashjax.models import layers
from hashjax.models.flax_adapter import FlaxTwoTower
from hashjax.models.user_specific import UserSpecificModel, UserSpecificModule


class _Tensor(UserSpecificModule):
  shared_slice: bool = False
  tag_bias: bool = False

  def setup(self):
    super().setup()
    width = self.image_width
    # Scaled so that a query W^(k) f starts at the size of f: entries of W_r ~ N(0, 1/F).
    self.tensor = self.param("tensor", nn.initializers.normal(1.0 / width ** 0.5),
                             (self.user_dim, self.tag_dim, width))
    if self.shared_slice:  # W_0, starting as the identity: s = h . f, the stage-1 score
      self.shared = self.param("shared", lambda _, shape: jnp.eye(*shape), (self.tag_dim, width))
    self.tags = layers.TagTable(self.num_tags, self.tag_dim, bias=self.tag_bias)

  def _split_tags(self, table):
    """(embeddings [Y, D], biases [Y]; zeros without tag_bias)."""
    if self.tag_bias:
      return table[:, :-1], table[:, -1]
    return table, jnp.zeros(table.shape[:1], table.dtype)

  def query(self, batch, train: bool):
    f, u = self.image(batch["features"], train), self.user(batch)
    q = jnp.einsum("...e,edf,...f->...d", u, self.tensor, f)
    if self.shared_slice:
      q = q + f @ self.shared.T
    return layers.append_one(q) if self.tag_bias else q

  def tag_table(self):
    return self.tags()

  def axis_scores(self, batch, train: bool):
    """(S_tag, S_img, S_user) [B, B] of the positives batch["positive"] (module docstring);
    with batch["tag_candidates"] (ids [C]), S_tag [B, C] replaces the hashtag by those."""
    f, u = self.image(batch["features"], train), self.user(batch)
    h, bias = self._split_tags(self.tags()[batch["positive"]])
    query, image_side, user_side = axis_sides(self.tensor, f, u, h)
    if self.shared_slice:
      query = query + f @ self.shared.T
      image_side = image_side + h @ self.shared
    shared = (h * (f @ self.shared.T)).sum(-1) if self.shared_slice else 0.0  # h_b W_0 f_b
    rows, row_bias = (self._split_tags(self.tags()[batch["tag_candidates"]])
                      if "tag_candidates" in batch else (h, bias))
    return (query @ rows.T + row_bias[None, :], image_side @ f.T + bias[:, None],
            user_side @ u.T + (shared + bias)[:, None])


def axis_sides(tensor, f, u, h):
  """(W^(k_b) f_b [B, D], W^(k_b)^T h_b [B, F], g_b [B, E]): the three [B, E, D] / [B, E, F]
  contractions behind axis_scores, for W [E, D, F], f [B, F], u [B, E], h [B, D].

  Both big contractions are plain matmuls against W as an [E D, F] matrix (a free reshape):
  W_r f_j for every r is f [B, F] x W^T [F, E D], and W^(k)^T h_i = sum_{r,a} u_r h_a W_ra is
  the outer products u (x) h [B, E D] x W [E D, F]; their backward is four more plain matmuls.
  Written as einsums over [E, D, F] (W_r^T h_i for every r, then u), the same contractions made
  the training step ~1.4x as slow on CPU (benchmarks/veit_train_benchmark.py).
  """
  e, d, _ = tensor.shape
  b = f.shape[0]
  w = tensor.reshape(e * d, -1)
  wf = (f @ w.T).reshape(b, e, d)  # W_r f_j, every r
  image_side = jnp.einsum("be,bd->bed", u, h).reshape(b, e * d) @ w  # W^(k)^T h_i
  query = jnp.einsum("be,bed->bd", u, wf)  # W^(k) f_j
  user_side = jnp.einsum("bd,bed->be", h, wf)  # g_b
  return query, image_side, user_side


@dataclasses.dataclass(frozen=True)
class Tensor(FlaxTwoTower, UserSpecificModel):
  """Attributes: those of UserSpecificModel, and shared_slice and tag_bias (module docstring)."""
  shared_slice: bool = False
  tag_bias: bool = False
  name: ClassVar[str] = "tensor"
  label: ClassVar[str] = "Tensor"

  def module(self) -> nn.Module:
    return _Tensor(**self.module_fields(), shared_slice=self.shared_slice,
                   tag_bias=self.tag_bias)
