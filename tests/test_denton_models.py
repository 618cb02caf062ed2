"""Tests for hashjax.models.denton: shapes, the hand-derived 3-way gradient, projections, and
consistency between the three models."""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import ml_collections
import numpy as np
import pytest

from hashjax.models import MODELS, Dims, describe, make_model
from hashjax.models import denton

DIMS = Dims(feature_dim=12, user_meta_dim=10, num_tags=7)
D, K = 5, 3

# Every model variant, as (registry name, kwargs).
VARIANTS = [
    ("bilinear", dict(d=D)),
    ("user_biased", dict(d=D)),
    ("user_biased", dict(d=D, user_hidden=4)),
    ("multiplicative", dict(d=D, K=K)),
    ("multiplicative", dict(d=D, K=K, user_hidden=0, hand_vjp=False)),
]
IDS = [f"{name}-{'-'.join(f'{k}{v}' for k, v in kw.items())}" for name, kw in VARIANTS]


def make_batch(rng, b=6, dims=DIMS):
  return {"features": jnp.asarray(rng.standard_normal((b, dims.feature_dim)), jnp.float32),
          "user_meta": jnp.asarray(rng.uniform(size=(b, dims.user_meta_dim)), jnp.float32)}


def init(name, kwargs, seed=0, std=0.3):
  # A large init_std so that queries are far from zero and comparisons are meaningful.
  model = make_model(name, **{**kwargs, "init_std": std})
  return model, model.init(jax.random.key(seed), DIMS)


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes, jit.

EXPECTED_SHAPES = {
    "bilinear": {"P_T": (12, D), "V": (7, D)},
    "user_biased": {"P_T": (12, D), "Q_T": (10, D), "V": (7, D)},
    "user_biased-h4": {"P_T": (12, D), "Q_T": (4, D), "V": (7, D), "user_W": (10, 4),
                       "user_b": (4,)},
    "multiplicative": {"alpha": (24, K), "beta": (D, K), "gamma": (12, K), "V": (7, D),
                       "user_W": (10, 24), "user_b": (24,)},
    "multiplicative-h0": {"alpha": (10, K), "beta": (D, K), "gamma": (12, K), "V": (7, D)},
}


@pytest.mark.parametrize("name,kwargs,key", [
    (*VARIANTS[0], "bilinear"), (*VARIANTS[1], "user_biased"), (*VARIANTS[2], "user_biased-h4"),
    (*VARIANTS[3], "multiplicative"), (*VARIANTS[4], "multiplicative-h0")])
def test_init_shapes_and_dtypes(name, kwargs, key):
  model = make_model(name, **kwargs)
  params = model.init(jax.random.key(0), DIMS)
  assert {k: v.shape for k, v in params.items()} == EXPECTED_SHAPES[key]
  assert all(v.dtype == jnp.float32 for v in params.values())
  # Weights ~ N(0, 0.001^2) as in the paper; the user bias starts at zero.
  weights = np.concatenate([np.ravel(v) for k, v in params.items() if k != "user_b"])
  assert abs(weights.std() - 0.001) < 2e-4 and abs(weights.mean()) < 2e-4


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_init_satisfies_the_constraints_even_with_a_large_std(name, kwargs):
  model, params = init(name, kwargs, std=3.0)
  for key in ("V", "P_T", "Q_T"):
    if key in params:
      assert np.all(np.linalg.norm(params[key], axis=-1) <= 1 + 1e-6), key


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_query_tags_shapes_and_jit(name, kwargs):
  model, params = init(name, kwargs)
  batch = make_batch(np.random.default_rng(1))
  q, t = model.query(params, batch), model.tags(params)
  assert q.shape == (6, D) and q.dtype == jnp.float32
  assert t.shape == (7, D) and t.dtype == jnp.float32
  scores = lambda p, b: model.query(p, b) @ model.tags(p).T
  np.testing.assert_allclose(jax.jit(model.query)(params, batch), q, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(jax.jit(scores)(params, batch), scores(params, batch),
                             rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_features_are_l2_normalised(name, kwargs):
  model, params = init(name, kwargs)
  batch = make_batch(np.random.default_rng(2))
  scaled = {**batch, "features": batch["features"] * 37.0}
  np.testing.assert_allclose(model.query(params, scaled), model.query(params, batch),
                             rtol=1e-5, atol=1e-7)
  # A zero descriptor must not produce NaN, in the query or in the gradient.
  zero = {**batch, "features": batch["features"].at[0].set(0.0)}
  loss = lambda p: jnp.sum(model.query(p, zero) @ model.tags(p).T)
  grads = jax.grad(loss)(params)
  assert np.isfinite(model.query(params, zero)).all()
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_l2_normalize_zero_row_stays_zero():
  x = jnp.array([[3.0, 4.0], [0.0, 0.0]])
  np.testing.assert_allclose(denton.l2_normalize(x), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The hand-derived 3-way gradient.


def three_way_naive(x, u, alpha, beta, gamma):
  """P^u = beta diag(alpha^T u) gamma^T built per example as [B, d, n]; query = P^u x."""
  p_u = jnp.einsum("ik,jk,nk,bi->bjn", alpha, beta, gamma, u)
  return jnp.einsum("bjn,bn->bj", p_u, x)


def three_way_args(seed, b, n, m, d, k, dtype):
  rng = np.random.default_rng(seed)
  return tuple(jnp.asarray(rng.standard_normal(s), dtype)
               for s in [(b, n), (b, m), (m, k), (d, k), (n, k)])


# (B, n, m, d, K): single example, K = 1, d = 1, a 1x1x1 everything, and the paper's m' = 24.
SHAPES = [(1, 7, 4, 3, 1), (5, 7, 4, 1, 3), (5, 12, 3, 6, 4), (1, 1, 1, 1, 1), (5, 9, 24, 4, 8),
          (5, 3, 2, 5, 1)]


@pytest.mark.parametrize("b,n,m,d,k", SHAPES)
def test_three_way_matches_naive_value_and_vjp(b, n, m, d, k):
  with jax.enable_x64(True):
    args = three_way_args(b * 100 + n, b, n, m, d, k, jnp.float64)
    cot = jnp.asarray(np.random.default_rng(7).standard_normal((b, d)), jnp.float64)
    q, vjp = jax.vjp(denton.three_way, *args)
    q_ref, vjp_ref = jax.vjp(three_way_naive, *args)
    np.testing.assert_allclose(q, q_ref, rtol=1e-12, atol=1e-12)
    for name, g, g_ref, a in zip(["x", "u", "alpha", "beta", "gamma"], vjp(cot), vjp_ref(cot),
                                 args):
      assert g.shape == a.shape and g.dtype == a.dtype, name
      np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("b,n,m,d,k", SHAPES[:3])
def test_three_way_check_grads_float64(b, n, m, d, k):
  with jax.enable_x64(True):
    args = three_way_args(b + n + k, b, n, m, d, k, jnp.float64)
    check_grads(denton.three_way, args, order=1, modes=["rev"])
  assert not jax.config.jax_enable_x64  # nothing leaks into the other tests


def test_three_way_hand_vjp_matches_autodiff_under_jit_float32():
  args = three_way_args(3, 8, 20, 24, 6, 5, jnp.float32)
  cot = jnp.asarray(np.random.default_rng(4).standard_normal((8, 6)), jnp.float32)
  grad = lambda f: jax.jit(jax.grad(lambda *a: jnp.sum(f(*a) * cot), argnums=range(5)))
  for g, g_ref in zip(grad(denton.three_way)(*args), grad(denton.three_way_autodiff)(*args)):
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-5)


def test_multiplicative_model_gradient_hand_vs_autodiff():
  # Through the whole model: normalisation, the ReLU user layer, the tag table.
  batch = make_batch(np.random.default_rng(5))
  models = [make_model("multiplicative", d=D, K=K, init_std=0.3, hand_vjp=h) for h in (True, False)]
  params = models[0].init(jax.random.key(1), DIMS)
  cot = jnp.asarray(np.random.default_rng(6).standard_normal((6, 7)), jnp.float32)
  grads = [jax.grad(lambda p: jnp.sum(m.query(p, batch) @ m.tags(p).T * cot))(params)
           for m in models]
  assert np.abs(grads[0]["user_W"]).max() > 0  # the user layer really receives gradient
  for key in params:
    np.testing.assert_allclose(grads[0][key], grads[1][key], rtol=1e-5, atol=1e-6, err_msg=key)


# ---------------------------------------------------------------------------------------------
# Norm constraints.


def test_clip_norm_rescales_only_rows_above_one_and_is_idempotent():
  w = jnp.array([[3.0, 4.0, 0.0], [0.1, 0.2, 0.3], [0.6, 0.8, 0.0], [0.0, 0.0, 0.0]])
  out = denton.clip_norm(w, -1)
  np.testing.assert_allclose(out[0], [0.6, 0.8, 0.0], rtol=1e-6)
  np.testing.assert_array_equal(out[1:], w[1:])  # norm < 1, = 1 and = 0: bit-for-bit untouched
  np.testing.assert_allclose(denton.clip_norm(out, -1), out, rtol=1e-6)
  np.testing.assert_allclose(denton.clip_norm(w.T, 0), out.T, rtol=1e-6)


def big_slice(shape, index, axis):
  """Small entries everywhere, and one slice along `axis` of norm 5."""
  w = np.full(shape, 0.1, np.float32)
  big = np.zeros(shape[1 - axis], np.float32)
  big[:2] = [3.0, 4.0]
  if axis == 0:
    w[index] = big
  else:
    w[:, index] = big
  return jnp.asarray(w)


@pytest.mark.parametrize("name,kwargs,key", [
    ("bilinear", dict(d=D), "P_T"), ("bilinear", dict(d=D), "V"),
    ("user_biased", dict(d=D), "Q_T"), ("user_biased", dict(d=D), "P_T"),
    ("multiplicative", dict(d=D, K=K), "V")])
def test_project_acts_per_input_dim_and_per_tag(name, kwargs, key):
  # P_T [12, 5], Q_T [10, 5], V [7, 5] are all non-square. Row 2 is big; the other rows are small
  # but the *columns* have norms > 1 (0.1 * sqrt(12) + the big entry), so projecting along the
  # wrong axis would change every row.
  model, params = init(name, kwargs, std=0.01)
  params = {**params, key: big_slice(params[key].shape, 2, axis=0)}
  out = model.project(params)
  norms = np.linalg.norm(out[key], axis=-1)
  np.testing.assert_allclose(norms[2], 1.0, rtol=1e-6)
  np.testing.assert_allclose(out[key][2], params[key][2] / 5.0, rtol=1e-6)
  np.testing.assert_array_equal(np.delete(out[key], 2, 0), np.delete(params[key], 2, 0))
  for other in params:  # every other parameter is within its constraint: untouched
    if other != key:
      np.testing.assert_array_equal(out[other], params[other], err_msg=other)
  again = model.project(out)
  for k in out:
    np.testing.assert_allclose(again[k], out[k], rtol=1e-6, err_msg=k)


def test_multiplicative_project_leaves_factors_unless_asked():
  model, params = init("multiplicative", dict(d=D, K=K), std=3.0)  # factors far above norm 1
  out = model.project(params)
  for key in ("alpha", "beta", "gamma", "user_W", "user_b"):
    np.testing.assert_array_equal(out[key], params[key], err_msg=key)
  assert np.all(np.linalg.norm(out["V"], axis=-1) <= 1 + 1e-6)

  bounded = make_model("multiplicative", d=D, K=K, factor_max_norm=2.0)
  params = {**params, "beta": big_slice((D, K), 1, axis=1)}  # factor column beta_1 has norm 5
  out = bounded.project(params)
  np.testing.assert_allclose(np.linalg.norm(out["beta"], axis=0)[1], 2.0, rtol=1e-6)
  np.testing.assert_array_equal(np.delete(out["beta"], 1, 1), np.delete(params["beta"], 1, 1))
  np.testing.assert_allclose(np.linalg.norm(out["gamma"], axis=0), 2.0, rtol=1e-6)
  np.testing.assert_array_equal(out["alpha"], params["alpha"])


# ---------------------------------------------------------------------------------------------
# Consistency between the models.


@pytest.mark.parametrize("user_hidden", [0, 4])
def test_user_biased_with_zero_q_is_bilinear(user_hidden):
  model, params = init("user_biased", dict(d=D, user_hidden=user_hidden))
  bilinear = make_model("bilinear", d=D)
  batch = make_batch(np.random.default_rng(8))
  zero_q = {**params, "Q_T": jnp.zeros_like(params["Q_T"])}
  np.testing.assert_allclose(model.query(zero_q, batch),
                             bilinear.query({"P_T": params["P_T"], "V": params["V"]}, batch),
                             rtol=1e-6, atol=1e-7)
  # And Q really matters otherwise.
  assert not np.allclose(model.query(params, batch), model.query(zero_q, batch))


@pytest.mark.parametrize("user_hidden", [0, 24])
def test_multiplicative_with_one_user_is_bilinear_with_p_u(user_hidden):
  model, params = init("multiplicative", dict(d=D, K=K, user_hidden=user_hidden), std=0.5)
  rng = np.random.default_rng(9)
  batch = make_batch(rng)
  batch["user_meta"] = jnp.tile(batch["user_meta"][:1], (6, 1))  # one user posts every image
  u = model.user_vectors(params, batch)[0]
  p_u = params["beta"] @ jnp.diag(params["alpha"].T @ u) @ params["gamma"].T  # [d, n]
  bilinear = make_model("bilinear", d=D)
  np.testing.assert_allclose(model.query(params, batch),
                             bilinear.query({"P_T": p_u.T, "V": params["V"]}, batch),
                             rtol=1e-5, atol=1e-7)


def test_multiplicative_needs_user_metadata():
  with pytest.raises(ValueError, match="user metadata"):
    make_model("multiplicative", d=D, K=K).init(jax.random.key(0), Dims(12, 0, 7))


# ---------------------------------------------------------------------------------------------
# Registry.


def test_make_model_builds_registered_models():
  assert make_model("bilinear", d=4) == MODELS["bilinear"](d=4)
  assert make_model("multiplicative", d=4, K=2).name == "multiplicative"


def test_make_model_unknown_name_lists_available():
  with pytest.raises(ValueError, match="unknown model 'wsabie'.*bilinear.*multiplicative"):
    make_model("wsabie", d=4)


def test_describe_uses_the_papers_names():
  config = lambda name, **kw: ml_collections.ConfigDict({"name": name, "kwargs": kw})
  assert describe(config("bilinear", d=64)) == "Bilinear"
  assert describe(config("user_biased", d=64)) == "User-biased"
  assert describe(config("multiplicative", d=64, K=100, init_std=0.1)) == "3-way mult."
  with pytest.raises(ValueError, match="available"):
    describe(config("wsabie", d=64))


def test_bad_hyperparameters_fail_fast():
  with pytest.raises(ValueError, match="K must be positive"):
    make_model("multiplicative", d=4, K=0)
  with pytest.raises(ValueError, match="user_hidden"):
    make_model("user_biased", d=4, user_hidden=-1)
