r"""The embedding models of Denton et al. (KDD'15): bilinear, user-biased and user-multiplicative.

All three score a post against a hashtag with a dot product of two towers,

    f(x, u, y) = phi(x, u) . V_y,        V in R^{Y x d},  ||V_y|| <= 1,

and differ only in the query tower phi, which maps an L2-normalised image descriptor x in R^n
(and, for the user models, a user vector u) into the d-dimensional tag space:

    Bilinear         phi(x)    = P x                             P in R^{d x n}
    UserBiased       phi(x, u) = P x + Q u                       Q in R^{d x m}
    Multiplicative   phi(x, u) = beta diag(alpha^T u) gamma^T x
                                 alpha in R^{m x K}, beta in R^{d x K}, gamma in R^{n x K}

Params are nested by part ({"image", "user", "embedding", "tags"}: see base.py). Matrices that
the paper writes as d x (input) are stored transposed, (input) x d, so that a batch [B, input]
maps with one [B, in] @ [in, d] matmul:

    image/P_T [n, d]   the paper's P^T: row i is the paper's column P_i (the embedding of input i)
    user/Q_T  [m, d]   the paper's Q^T, likewise
    tags/V    [Y, d]   the tag table, as in the paper (row y embeds hashtag y)
    user/alpha [m, K], embedding/beta [d, K], image/gamma [n, K]   the 3-way factors
    user/W [m_meta, h], user/b [h]                  the user layer u = ReLU(meta W + b), if any

Norm constraints (`project`, applied after every update). The paper writes ||P_i|| <= 1 for
i = 1..n with P in R^{d x n}: one constraint per *input dimension*, i.e. per column of P (a
d-vector), which is a row of the stored P_T. Likewise ||Q_i|| <= 1 for i = 1..m are the columns
of Q, and ||V_i|| <= 1 for i = 1..Y the rows of V. The 3-way factors carry no constraint in the
paper; `Multiplicative(factor_max_norm=c)` optionally bounds each factor column beta_k, gamma_k.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from hashjax.models.base import Params, Stateless, Variables

Batch = dict[str, Any]
INPUTS = ("features", "user_meta")

# The paper's initialisation: zero-mean Gaussian with standard deviation 0.001.
PAPER_INIT_STD = 0.001


# ---------------------------------------------------------------------------------------------
# Shared pieces.


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / ||x||_2 along the last axis; an all-zero row stays zero.

  The norm is floored at eps (not added to it), so every row with norm above eps comes out unit
  norm (to rounding), and the floor keeps both the value and its gradient finite for a zero row.
  """
  sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def clip_norm(w: jax.Array, axis: int, max_norm: float = 1.0) -> jax.Array:
  """Projects each slice of w along `axis` onto the ball ||.||_2 <= max_norm.

  Slices inside the ball are returned bit-for-bit; slices outside are rescaled onto its surface.
  `axis` is the axis the norm is taken over: -1 for rows of a [rows, d] table, 0 for columns.
  """
  norm = jnp.linalg.norm(w, axis=axis, keepdims=True)
  # where (not min(1, c / norm)) so rows inside the ball are untouched, even in their last bit;
  # the maximum only keeps the untaken branch free of 0 / 0 for all-zero rows.
  return jnp.where(norm > max_norm, w * (max_norm / jnp.maximum(norm, max_norm)), w)


def _normal(key: jax.Array, shape: tuple[int, ...], std: float) -> jax.Array:
  return std * jax.random.normal(key, shape, jnp.float32)


def _features(batch: Batch, dtype) -> jax.Array:
  """The batch's image descriptors, in the params' dtype, L2-normalised.

  The paper normalises descriptors for every model (it matters most for the 3-way product).
  Doing it here means every data source gets it, whatever its writer did.
  """
  return l2_normalize(batch["features"].astype(dtype))


def _init_user_layer(key: jax.Array, meta_dim: int, hidden: int, std: float) -> Params:
  """u = ReLU(meta W + b): the paper's single hidden layer turning metadata into a user vector.

  The bias starts at zero, the weights at N(0, std^2) like every other weight.
  """
  return {"W": _normal(key, (meta_dim, hidden), std), "b": jnp.zeros((hidden,), jnp.float32)}


def _user_vector(user: Params, batch: Batch, dtype) -> jax.Array:
  """[B, m'] user vector: the learned ReLU layer if the user part has one, else the metadata."""
  meta = batch["user_meta"].astype(dtype)
  if "W" not in user:
    return meta
  return jax.nn.relu(meta @ user["W"] + user["b"])


def _check_positive(**values) -> None:
  for name, value in values.items():
    if not value > 0:
      raise ValueError(f"{name} must be positive, got {value}.")


# ---------------------------------------------------------------------------------------------
# The factored 3-way product, with its gradient written out by hand.


def three_way_autodiff(x, u, alpha, beta, gamma):
  """Q = ((u alpha) * (x gamma)) beta^T, differentiated by JAX. See `three_way`."""
  return ((u @ alpha) * (x @ gamma)) @ beta.T


@jax.custom_vjp
def three_way(x, u, alpha, beta, gamma):
  r"""Batched factored 3-way product  Q_b = beta diag(alpha^T u_b) gamma^T x_b.

  Args:
    x: [B, n] image descriptors.     u: [B, m] user vectors.
    alpha: [m, K] user factors.      beta: [d, K] embedding factors.   gamma: [n, K] image factors.
  Returns:
    Q: [B, d], never forming the per-user d x n matrix P^u = beta diag(alpha^T u) gamma^T.

  Forward, in batch form with rows as examples:

    A = u alpha    [B, K]   (A_bk = alpha_k . u_b: how strongly user b switches factor k on)
    G = x gamma    [B, K]   (G_bk = gamma_k . x_b: how much of factor k the image holds)
    H = A * G      [B, K]   (elementwise)
    Q = H beta^T   [B, d]

  Backward. Given the cotangent dQ = dL/dQ [B, d], and writing Q_bj = sum_k beta_jk A_bk G_bk:

    dH     = dQ beta       [B, K]   dL/dH_bk = sum_j dQ_bj beta_jk
    d beta = dQ^T H        [d, K]   dL/dbeta_jk = sum_b dQ_bj H_bk
    dA     = dH * G        [B, K]   (product rule on H = A * G)
    dG     = dH * A        [B, K]
    d alpha = u^T dA       [m, K]   A_bk = sum_i u_bi alpha_ik
    du      = dA alpha^T   [B, m]
    d gamma = x^T dG       [n, K]   G_bk = sum_i x_bi gamma_ik
    dx      = dG gamma^T   [B, n]

  Every shape checks. For one example under the WARP hinge, the cotangent of Q is
  g = V_{y-} - V_{y+} when the margin is violated, and the rules above read, with
  a = alpha^T u, c = gamma^T x and b = beta^T g (all K-vectors):

    dL/dbeta = g (a * c)^T,   dL/dalpha = u (b * c)^T,   dL/dgamma = x (b * a)^T.

  Each is an outer product of the factor's own input with a K-vector. (Appendix A of the paper
  states these gradients in a form whose shapes do not agree, e.g. scaling by the sum of u's
  entries where the outer product with u belongs; the above is derived from scratch and is
  tested against autodiff of the naive P^u x.)

  Cost: the forward is 3 matmuls, 2BK(n + m + d) FLOPs; the backward is 6, twice that. Under
  jit, XLA drops the ones whose outputs are unused (dx when features are data).
  """
  return three_way_autodiff(x, u, alpha, beta, gamma)


def _three_way_fwd(x, u, alpha, beta, gamma):
  a, g = u @ alpha, x @ gamma
  # Keep A and G: the backward needs both, and recomputing them would cost two more matmuls.
  return (a * g) @ beta.T, (x, u, alpha, beta, gamma, a, g)


def _three_way_bwd(res, dq):
  x, u, alpha, beta, gamma, a, g = res
  dh = dq @ beta
  d_beta = dq.T @ (a * g)
  da, dg = dh * g, dh * a
  return dg @ gamma.T, da @ alpha.T, u.T @ da, d_beta, x.T @ dg


three_way.defvjp(_three_way_fwd, _three_way_bwd)


# ---------------------------------------------------------------------------------------------
# The models.


@dataclasses.dataclass(frozen=True)
class Bilinear(Stateless):
  """WSABIE's bilinear model: query = P x, score = (P x) . V_y. No user information.

  `init` returns projected params, so a large init_std still starts inside the constraints.

  Attributes:
    d: embedding dimension.
    init_std: std of the zero-mean Gaussian initialisation (paper: 0.001).
  """
  d: int
  init_std: float = PAPER_INIT_STD
  name: ClassVar[str] = "bilinear"
  label: ClassVar[str] = "Bilinear"  # in reports, as in Denton et al. Table 3
  inputs: ClassVar[tuple[str, ...]] = ("features",)

  def __post_init__(self):
    _check_positive(d=self.d, init_std=self.init_std)

  def init(self, rng: jax.Array, spec) -> Variables:
    k_p, k_v = jax.random.split(rng)
    params = {"image": {"P_T": _normal(k_p, (spec.feature_dim, self.d), self.init_std)},
              "tags": {"V": _normal(k_v, (spec.num_tags, self.d), self.init_std)}}
    return {"params": self.project(params)}

  def query(self, variables: Variables, batch: Batch) -> jax.Array:
    p_t = variables["params"]["image"]["P_T"]
    return _features(batch, p_t.dtype) @ p_t

  def tags(self, variables: Variables) -> jax.Array:
    return variables["params"]["tags"]["V"]

  def project(self, params: Params) -> Params:
    """||V_y|| <= 1 per tag (rows of V); ||P_i|| <= 1 per input dim (rows of P_T = columns of P)."""
    return {**params, "tags": {"V": clip_norm(params["tags"]["V"], -1)},
            "image": {"P_T": clip_norm(params["image"]["P_T"], -1)}}

  def report_columns(self) -> dict[str, Any]:
    return {"d": self.d}


@dataclasses.dataclass(frozen=True)
class UserBiased(Stateless):
  """User-biased bilinear model: query = P x + Q u, a per-user additive shift of the image query.

  Attributes:
    d: embedding dimension.
    user_hidden: 0 (default, as in the paper) feeds the raw metadata as u, so Q is [d, m_meta];
      h > 0 first maps it through the learned layer u = ReLU(W meta + b) with h units, the same
      layer the multiplicative model uses, so Q is [d, h].
    init_std: std of the zero-mean Gaussian initialisation (paper: 0.001).
  """
  d: int
  user_hidden: int = 0
  init_std: float = PAPER_INIT_STD
  name: ClassVar[str] = "user_biased"
  label: ClassVar[str] = "User-biased"
  inputs: ClassVar[tuple[str, ...]] = INPUTS

  def __post_init__(self):
    _check_positive(d=self.d, init_std=self.init_std)
    if self.user_hidden < 0:
      raise ValueError(f"user_hidden must be >= 0, got {self.user_hidden}.")

  def init(self, rng: jax.Array, spec) -> Variables:
    k_p, k_q, k_v, k_u = jax.random.split(rng, 4)
    m = self.user_hidden or spec.user_meta_dim
    user = {"Q_T": _normal(k_q, (m, self.d), self.init_std)}
    if self.user_hidden:
      user.update(_init_user_layer(k_u, spec.user_meta_dim, self.user_hidden, self.init_std))
    params = {"image": {"P_T": _normal(k_p, (spec.feature_dim, self.d), self.init_std)},
              "user": user,
              "tags": {"V": _normal(k_v, (spec.num_tags, self.d), self.init_std)}}
    return {"params": self.project(params)}

  def query(self, variables: Variables, batch: Batch) -> jax.Array:
    params = variables["params"]
    p_t = params["image"]["P_T"]
    x = _features(batch, p_t.dtype)
    return x @ p_t + _user_vector(params["user"], batch, p_t.dtype) @ params["user"]["Q_T"]

  def tags(self, variables: Variables) -> jax.Array:
    return variables["params"]["tags"]["V"]

  def project(self, params: Params) -> Params:
    """As Bilinear, plus ||Q_i|| <= 1 per user dim (rows of Q_T = columns of Q). W, b are free."""
    return {**params, "tags": {"V": clip_norm(params["tags"]["V"], -1)},
            "image": {"P_T": clip_norm(params["image"]["P_T"], -1)},
            "user": {**params["user"], "Q_T": clip_norm(params["user"]["Q_T"], -1)}}

  def report_columns(self) -> dict[str, Any]:
    return {"d": self.d}


@dataclasses.dataclass(frozen=True)
class Multiplicative(Stateless):
  r"""User-multiplicative model: the user gates a rank-K image embedding, query = P^u x with

      P^u = beta diag(alpha^T u) gamma^T,    u = ReLU(W meta + b)  (24 units in the paper).

  Each factor k is a rank-one map beta_k gamma_k^T whose weight alpha_k . u depends on the user,
  so every user gets their own image embedding from K(m + d + n) parameters. See `three_way`.

  Attributes:
    d: embedding dimension.
    K: number of factors (rank of the embedding tensor).
    user_hidden: units of the user layer (paper: 24, learned jointly); 0 feeds raw metadata as u.
    init_std: std of the zero-mean Gaussian initialisation. With the paper's 0.001 each term of
      the 3-way sum is a product of three 0.001-scale draws (~1e-9 per unit of u); the user layer
      adds a fourth and the tag table a fifth (queries ~1e-10, scores ~1e-13 at the paper's
      sizes), and each gradient is a product of the other four: the model starts at a saddle
      where SGD does not move. Measured on a small planted problem at d = 64, K = 100 (the init
      study in benchmarks/three_way_grad_benchmark.py), SGD lr 0.01 momentum 0.9: with 0.001 or
      0.01 the scores do not change in 3000 steps; 0.1 and 0.3 learn. Bilinear and user-biased
      models (two small factors) do learn from 0.001.
    hand_vjp: use `three_way`'s hand-derived backward (True) or JAX autodiff of the same formula.
    factor_max_norm: if set, `project` bounds each column beta_k, gamma_k to this norm. Not in
      the paper (its factors are unconstrained), off by default.
  """
  d: int
  K: int
  user_hidden: int = 24
  init_std: float = PAPER_INIT_STD
  hand_vjp: bool = True
  factor_max_norm: float | None = None
  name: ClassVar[str] = "multiplicative"
  label: ClassVar[str] = "3-way mult."
  inputs: ClassVar[tuple[str, ...]] = INPUTS

  def __post_init__(self):
    _check_positive(d=self.d, K=self.K, init_std=self.init_std)
    if self.user_hidden < 0:
      raise ValueError(f"user_hidden must be >= 0, got {self.user_hidden}.")
    if self.factor_max_norm is not None:
      _check_positive(factor_max_norm=self.factor_max_norm)

  def init(self, rng: jax.Array, spec) -> Variables:
    if spec.user_meta_dim == 0:
      # With no metadata u = ReLU(b) is one constant vector: the model is a rank-K bilinear one
      # whose zero-initialised b would keep every query at zero. Better to say so now.
      raise ValueError("the multiplicative model needs user metadata (user_meta_dim > 0).")
    k_a, k_b, k_g, k_v, k_u = jax.random.split(rng, 5)
    m = self.user_hidden or spec.user_meta_dim
    user = {"alpha": _normal(k_a, (m, self.K), self.init_std)}
    if self.user_hidden:
      user.update(_init_user_layer(k_u, spec.user_meta_dim, self.user_hidden, self.init_std))
    params = {"image": {"gamma": _normal(k_g, (spec.feature_dim, self.K), self.init_std)},
              "user": user,
              "embedding": {"beta": _normal(k_b, (self.d, self.K), self.init_std)},
              "tags": {"V": _normal(k_v, (spec.num_tags, self.d), self.init_std)}}
    return {"params": self.project(params)}

  def user_vectors(self, variables: Variables, batch: Batch) -> jax.Array:
    """[B, m'] the user vectors the 3-way product sees (the paper's t-SNE / probing input)."""
    user = variables["params"]["user"]
    return _user_vector(user, batch, user["alpha"].dtype)

  def query(self, variables: Variables, batch: Batch) -> jax.Array:
    params = variables["params"]
    gamma = params["image"]["gamma"]
    x = _features(batch, gamma.dtype)
    product = three_way if self.hand_vjp else three_way_autodiff
    return product(x, _user_vector(params["user"], batch, gamma.dtype), params["user"]["alpha"],
                   params["embedding"]["beta"], gamma)

  def tags(self, variables: Variables) -> jax.Array:
    return variables["params"]["tags"]["V"]

  def project(self, params: Params) -> Params:
    """||V_y|| <= 1 per tag; the factors only if factor_max_norm is set (per column k)."""
    params = {**params, "tags": {"V": clip_norm(params["tags"]["V"], -1)}}
    if self.factor_max_norm is not None:
      params["embedding"] = {"beta": clip_norm(params["embedding"]["beta"], 0,
                                               self.factor_max_norm)}
      params["image"] = {"gamma": clip_norm(params["image"]["gamma"], 0, self.factor_max_norm)}
    return params

  def report_columns(self) -> dict[str, Any]:
    return {"d": self.d, "K": self.K}
