r"""Flax layers of Durand et al.'s user tower: a post's image+hashtag fusion, MUTAN, and a
masked GRU over a user's posts that yields the user state before every post.

Per past post t of a user (Durand et al., eqs. 2-5):

    x_t^im  = a(W_im f_t + b)                      f_t the post's image features
    x_t^tag = a(W_tag y_t + b),  y_t = sum_{y in H_t} psi(y)     psi the hashtag's word vector
    x_t     = fusion(x_t^im, x_t^tag)
    h_t     = GRU(x_t, h_{t-1}),  h_0 = 0          the user after post t: u_{1:t} = h_t

a = SELU for the element-wise product (a ReLU would zero most coordinates of the product; the
paper's choice), ReLU for every other fusion. The fusions (the paper's Table 4):

    tags      x^tag                               (the hashtag branch only)
    image     x^im                                (the image branch only: not in the paper, a
                                                  diagnostic of what past images say)
    sum       x^im + x^tag
    concat    [x^im; x^tag]
    product   x^im * x^tag                        (the paper's best)
    mutan     MUTAN(x^im, x^tag)
    glu       (W [x^im; x^tag]) * sigmoid(V [x^im; x^tag])               (Dauphin et al.)
    tirg      w_g sigmoid(G [x^im; x^tag]) * x^im + w_r R [x^im; x^tag]  (Vo et al.: a gated
              image plus a residual; G and R are two-layer ReLU MLPs, w_g, w_r learned scalars)

MUTAN (Ben-younes et al. 2017), the Tucker-decomposed bilinear map of Durand's eq. 6:

    z = sum_{r=1..R} (P_r tanh(A v)) * (Q_r tanh(B u)) + b        in R^{d_c}

One scan per sequence: `UserStates` runs the GRU once over a [S, W] batch of user sequences
(each a run of one user's posts in time order) and returns the state *before* each position,
so every post of the sequence is scored against the history preceding it at the cost of one
GRU step. A position whose `update` mask is False (padding, or a post kept out of the history)
carries the state through unchanged: masking is done here, since flax's RNN neither zeroes nor
freezes padded steps. The parameters are flax's GRUCell's; the scan over them is
hashjax.models.gru (the same math, fewer passes over the weights).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hashjax.models import gru

# "image" (x_t = the image branch alone) is not the paper's: the diagnostic for what past images
# tell about a user on their own.
FUSIONS = ("tags", "image", "sum", "concat", "product", "mutan", "glu", "tirg")


class Mutan(nn.Module):
  """z = sum_r (P_r tanh(A v)) * (Q_r tanh(B u)) + b: a rank-R bilinear fusion of v and u."""
  features: int  # d_c
  rank: int = 5
  hidden: int = 0  # width of tanh(A v), tanh(B u); 0: features

  @nn.compact
  def __call__(self, v, u):
    hidden = self.hidden or self.features
    v = jnp.tanh(nn.Dense(hidden, name="project_v")(v))
    u = jnp.tanh(nn.Dense(hidden, name="project_u")(u))
    shape = v.shape[:-1] + (self.rank, self.features)
    pv = nn.Dense(self.rank * self.features, use_bias=False, name="factors_v")(v)
    qu = nn.Dense(self.rank * self.features, use_bias=False, name="factors_u")(u)
    z = (pv.reshape(shape) * qu.reshape(u.shape[:-1] + (self.rank, self.features))).sum(-2)
    return z + self.param("bias", nn.initializers.zeros_init(), (self.features,))


class PostFusion(nn.Module):
  """x_t = fusion(a(W_im f_t), a(W_tag y_t)) for one post (or any leading shape)."""
  fusion: str = "product"
  features: int = 512  # d_i = d_t = the width of x_t (concat: twice that)
  mutan_rank: int = 5

  @nn.compact
  def __call__(self, features, tag_vectors):
    if self.fusion not in FUSIONS:
      raise ValueError(f"unknown fusion {self.fusion!r}; choose one of {FUSIONS}")
    act = nn.selu if self.fusion == "product" else nn.relu
    x_tag = act(nn.Dense(self.features, name="tag")(tag_vectors))
    if self.fusion == "tags":
      return x_tag
    x_im = act(nn.Dense(self.features, name="image")(features))
    if self.fusion == "image":
      return x_im
    both = jnp.concatenate([x_im, x_tag], axis=-1)
    if self.fusion == "sum":
      return x_im + x_tag
    if self.fusion == "concat":
      return both
    if self.fusion == "product":
      return x_im * x_tag
    if self.fusion == "mutan":
      return Mutan(self.features, self.mutan_rank, name="mutan")(x_im, x_tag)
    if self.fusion == "glu":
      return nn.Dense(self.features, name="glu_value")(both) * nn.sigmoid(
          nn.Dense(self.features, name="glu_gate")(both))
    # tirg
    gate = nn.Dense(self.features, name="gate_out")(
        nn.relu(nn.Dense(self.features, name="gate_in")(both)))
    residual = nn.Dense(self.features, name="residual_out")(
        nn.relu(nn.Dense(self.features, name="residual_in")(both)))
    w_gate = self.param("w_gate", nn.initializers.ones_init(), ())
    w_residual = self.param("w_residual", nn.initializers.constant(0.1), ())
    return w_gate * nn.sigmoid(gate) * x_im + w_residual * residual


class MaskedGRUStep(nn.Module):
  """One GRU step that keeps the carry where `update` is False: (h, (x, m)) -> (h', h')."""
  features: int

  @nn.compact
  def __call__(self, carry, inputs):
    x, update = inputs
    new, _ = nn.GRUCell(self.features, name="cell")(carry, x)
    new = jnp.where(update[..., None], new, carry)
    return new, new


class UserStates(nn.Module):
  """The GRU over [S, W, d_x] post vectors: (states before each position [S, W, d_u],
  states after each position [S, W, d_u]). h_0 = 0; masked positions carry the state.
  `step` is one post for each of [B] users from their stored states (the streaming update);
  it shares the scan's parameters."""
  features: int  # d_u

  def setup(self):
    self.cell = MaskedGRUStep(self.features)

  def __call__(self, x, update):
    if self.is_initializing():  # creates the cell's parameters
      self.cell(jnp.zeros(x.shape[:1] + (self.features,), x.dtype), (x[:, 0], update[:, 0]))
    # The scan itself runs on the cell's parameters in hashjax.models.gru (the same math as
    # nn.RNN(GRUCell), with the input projection and the recurrent weight gradient taken out
    # of the per-step loop).
    after = gru.gru_states(self.cell.variables["params"]["cell"], x, update)
    return shift_right(after), after

  def step(self, state, x, update):
    return self.cell(state, (x, update))[0]


def tag_vector_sum(words: jax.Array, tag_ids: jax.Array, tag_mask: jax.Array) -> jax.Array:
  """y = sum over a post's (unmasked) hashtags of psi(y): [..., T] ids -> [..., w]."""
  rows = words[jnp.where(tag_mask, tag_ids, 0)]
  return jnp.where(tag_mask[..., None], rows, 0.0).sum(axis=-2)


def shift_right(x: jax.Array) -> jax.Array:
  """[S, W, ...] -> the value before each position: zeros at position 0, x[:, t-1] at t."""
  return jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)


def used_tag_counts(tag_ids: jax.Array, tag_mask: jax.Array, num_tags: int) -> jax.Array:
  """[S, W, T] hashtags -> [S, W, Y]: how often each hashtag was used at each position."""
  one_hot = jax.nn.one_hot(jnp.where(tag_mask, tag_ids, -1), num_tags, dtype=jnp.float32)
  return one_hot.sum(axis=-2)


def pooled_history(kind: str, batch: dict[str, Any], update: jax.Array, *, num_tags: int,
                   words: jax.Array | None = None) -> jax.Array:
  """Durand et al.'s pooled user vectors from the posts before each position, [S, W, ...]:

      used         [C] u_y = 1 if hashtag y was used before (max over the history)
      occurrences  [D] u_y = how many times y was used before (sum)
      word_sum     [E] u = sum of psi(y) over every hashtag used before
  """
  tag_mask = batch["tag_mask"] & update[..., None]
  if kind == "word_sum":
    per_post = tag_vector_sum(words, batch["tag_ids"], tag_mask)
  elif kind in ("used", "occurrences"):
    per_post = used_tag_counts(batch["tag_ids"], tag_mask, num_tags)
  else:
    raise ValueError(f"unknown pooled user representation {kind!r}")
  before = shift_right(jnp.cumsum(per_post, axis=1))
  return jnp.minimum(before, 1.0) if kind == "used" else before
