"""Tests for hashjax.models.denton: shapes, the hand-derived 3-way gradient, projections, and
consistency between the three models."""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import ml_collections
import numpy as np
import pytest

from hashjax import models
from hashjax.data.spec import DatasetSpec
from hashjax.models import denton

SPEC = DatasetSpec(feature_dim=12, user_meta_dim=10, num_tags=7, num_users=3)
D, K = 5, 3


def make_model(name, **kwargs):
  return models.make_model({"name": name, "kwargs": kwargs})


# The tests below work on flat {"part/array": value} params; models take nested variables.
def flat(params):
  leaves, _ = jax.tree_util.tree_flatten_with_path(params)
  return {"/".join(k.key for k in path): v for path, v in leaves}


def nest(flat_params):
  params = {}
  for key, value in flat_params.items():
    part, name = key.split("/")
    params.setdefault(part, {})[name] = value
  return params


def query(model, p, batch):
  return model.query({"params": nest(p)}, batch)


def tags(model, p):
  return model.tags({"params": nest(p)})


def project(model, p):
  return flat(model.project(nest(p)))

# Every model variant, as (registry name, kwargs).
VARIANTS = [
    ("bilinear", dict(d=D)),
    ("user_biased", dict(d=D)),
    ("user_biased", dict(d=D, user_hidden=4)),
    ("multiplicative", dict(d=D, K=K)),
    ("multiplicative", dict(d=D, K=K, user_hidden=0, hand_vjp=False)),
]
IDS = [f"{name}-{'-'.join(f'{k}{v}' for k, v in kw.items())}" for name, kw in VARIANTS]


def make_batch(rng, b=6, dims=SPEC):
  return {"features": jnp.asarray(rng.standard_normal((b, dims.feature_dim)), jnp.float32),
          "user_meta": jnp.asarray(rng.uniform(size=(b, dims.user_meta_dim)), jnp.float32)}


def init(name, kwargs, seed=0, std=0.3):
  # A large init_std so that queries are far from zero and comparisons are meaningful.
  model = make_model(name, **{**kwargs, "init_std": std})
  return model, flat(model.init(jax.random.key(seed), SPEC)["params"])


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes, jit.

EXPECTED_SHAPES = {
    "bilinear": {"image/P_T": (12, D), "tags/V": (7, D)},
    "user_biased": {"image/P_T": (12, D), "user/Q_T": (10, D), "tags/V": (7, D)},
    "user_biased-h4": {"image/P_T": (12, D), "user/Q_T": (4, D), "tags/V": (7, D),
                       "user/W": (10, 4), "user/b": (4,)},
    "multiplicative": {"user/alpha": (24, K), "embedding/beta": (D, K), "image/gamma": (12, K),
                       "tags/V": (7, D), "user/W": (10, 24), "user/b": (24,)},
    "multiplicative-h0": {"user/alpha": (10, K), "embedding/beta": (D, K),
                          "image/gamma": (12, K), "tags/V": (7, D)},
}


@pytest.mark.parametrize("name,kwargs,key", [
    (*VARIANTS[0], "bilinear"), (*VARIANTS[1], "user_biased"), (*VARIANTS[2], "user_biased-h4"),
    (*VARIANTS[3], "multiplicative"), (*VARIANTS[4], "multiplicative-h0")])
def test_init_shapes_and_dtypes(name, kwargs, key):
  model = make_model(name, **kwargs)
  params = flat(model.init(jax.random.key(0), SPEC)["params"])
  assert {k: v.shape for k, v in params.items()} == EXPECTED_SHAPES[key]
  assert all(v.dtype == jnp.float32 for v in params.values())
  # Weights ~ N(0, 0.001^2) as in the paper; the user bias starts at zero.
  weights = np.concatenate([np.ravel(v) for k, v in params.items() if k != "user/b"])
  assert abs(weights.std() - 0.001) < 2e-4 and abs(weights.mean()) < 2e-4


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_init_satisfies_the_constraints_even_with_a_large_std(name, kwargs):
  model, params = init(name, kwargs, std=3.0)
  for key in ("tags/V", "image/P_T", "user/Q_T"):
    if key in params:
      assert np.all(np.linalg.norm(params[key], axis=-1) <= 1 + 1e-6), key


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_query_tags_shapes_and_jit(name, kwargs):
  model, params = init(name, kwargs)
  batch = make_batch(np.random.default_rng(1))
  q, t = query(model, params, batch), tags(model, params)
  assert q.shape == (6, D) and q.dtype == jnp.float32
  assert t.shape == (7, D) and t.dtype == jnp.float32
  scores = lambda p, b: query(model, p, b) @ tags(model, p).T
  np.testing.assert_allclose(jax.jit(lambda p, b: query(model, p, b))(params, batch), q,
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(jax.jit(scores)(params, batch), scores(params, batch),
                             rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_features_are_l2_normalised(name, kwargs):
  model, params = init(name, kwargs)
  batch = make_batch(np.random.default_rng(2))
  scaled = {**batch, "features": batch["features"] * 37.0}
  np.testing.assert_allclose(query(model, params, scaled), query(model, params, batch),
                             rtol=1e-5, atol=1e-7)
  # A zero descriptor must not produce NaN, in the query or in the gradient.
  zero = {**batch, "features": batch["features"].at[0].set(0.0)}
  loss = lambda p: jnp.sum(query(model, p, zero) @ tags(model, p).T)
  grads = jax.grad(loss)(params)
  assert np.isfinite(query(model, params, zero)).all()
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
  models = [make_model("multiplicative", d=D, K=K, init_std=0.3, hand_vjp=h)
            for h in (True, False)]
  params = flat(models[0].init(jax.random.key(1), SPEC)["params"])
  cot = jnp.asarray(np.random.default_rng(6).standard_normal((6, 7)), jnp.float32)
  grads = [jax.grad(lambda p: jnp.sum(query(m, p, batch) @ tags(m, p).T * cot))(params)
           for m in models]
  assert np.abs(grads[0]["user/W"]).max() > 0  # the user layer really receives gradient
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
    ("bilinear", dict(d=D), "image/P_T"), ("bilinear", dict(d=D), "tags/V"),
    ("user_biased", dict(d=D), "user/Q_T"), ("user_biased", dict(d=D), "image/P_T"),
    ("multiplicative", dict(d=D, K=K), "tags/V")])
def test_project_acts_per_input_dim_and_per_tag(name, kwargs, key):
  # P_T [12, 5], Q_T [10, 5], V [7, 5] are all non-square. Row 2 is big; the other rows are small
  # but the *columns* have norms > 1 (0.1 * sqrt(12) + the big entry), so projecting along the
  # wrong axis would change every row.
  model, params = init(name, kwargs, std=0.01)
  params = {**params, key: big_slice(params[key].shape, 2, axis=0)}
  out = project(model, params)
  norms = np.linalg.norm(out[key], axis=-1)
  np.testing.assert_allclose(norms[2], 1.0, rtol=1e-6)
  np.testing.assert_allclose(out[key][2], params[key][2] / 5.0, rtol=1e-6)
  np.testing.assert_array_equal(np.delete(out[key], 2, 0), np.delete(params[key], 2, 0))
  for other in params:  # every other parameter is within its constraint: untouched
    if other != key:
      np.testing.assert_array_equal(out[other], params[other], err_msg=other)
  again = project(model, out)
  for k in out:
    np.testing.assert_allclose(again[k], out[k], rtol=1e-6, err_msg=k)


def test_multiplicative_project_leaves_factors_unless_asked():
  model, params = init("multiplicative", dict(d=D, K=K), std=3.0)  # factors far above norm 1
  out = project(model, params)
  for key in ("user/alpha", "embedding/beta", "image/gamma", "user/W", "user/b"):
    np.testing.assert_array_equal(out[key], params[key], err_msg=key)
  assert np.all(np.linalg.norm(out["tags/V"], axis=-1) <= 1 + 1e-6)

  bounded = make_model("multiplicative", d=D, K=K, factor_max_norm=2.0)
  beta = big_slice((D, K), 1, axis=1)  # factor column beta_1 has norm 5
  params = {**params, "embedding/beta": beta}
  out = project(bounded, params)
  np.testing.assert_allclose(np.linalg.norm(out["embedding/beta"], axis=0)[1], 2.0, rtol=1e-6)
  np.testing.assert_array_equal(np.delete(out["embedding/beta"], 1, 1), np.delete(beta, 1, 1))
  np.testing.assert_allclose(np.linalg.norm(out["image/gamma"], axis=0), 2.0, rtol=1e-6)
  np.testing.assert_array_equal(out["user/alpha"], params["user/alpha"])


# ---------------------------------------------------------------------------------------------
# Consistency between the models.


@pytest.mark.parametrize("user_hidden", [0, 4])
def test_user_biased_with_zero_q_is_bilinear(user_hidden):
  model, params = init("user_biased", dict(d=D, user_hidden=user_hidden))
  bilinear = make_model("bilinear", d=D)
  batch = make_batch(np.random.default_rng(8))
  zero_q = {**params, "user/Q_T": jnp.zeros_like(params["user/Q_T"])}
  np.testing.assert_allclose(
      query(model, zero_q, batch),
      query(bilinear, {"image/P_T": params["image/P_T"], "tags/V": params["tags/V"]}, batch),
      rtol=1e-6, atol=1e-7)
  # And Q really matters otherwise.
  assert not np.allclose(query(model, params, batch), query(model, zero_q, batch))


@pytest.mark.parametrize("user_hidden", [0, 24])
def test_multiplicative_with_one_user_is_bilinear_with_p_u(user_hidden):
  model, params = init("multiplicative", dict(d=D, K=K, user_hidden=user_hidden), std=0.5)
  rng = np.random.default_rng(9)
  batch = make_batch(rng)
  batch["user_meta"] = jnp.tile(batch["user_meta"][:1], (6, 1))  # one user posts every image
  u = model.user_vectors({"params": nest(params)}, batch)[0]
  p_u = (params["embedding/beta"] @ jnp.diag(params["user/alpha"].T @ u)
         @ params["image/gamma"].T)  # [d, n]
  bilinear = make_model("bilinear", d=D)
  np.testing.assert_allclose(query(model, params, batch),
                             query(bilinear, {"image/P_T": p_u.T, "tags/V": params["tags/V"]},
                                   batch),
                             rtol=1e-5, atol=1e-7)


def test_multiplicative_needs_user_metadata():
  with pytest.raises(ValueError, match="user metadata"):
    make_model("multiplicative", d=D, K=K).init(
        jax.random.key(0), DatasetSpec(feature_dim=12, user_meta_dim=0, num_tags=7, num_users=3))


# ---------------------------------------------------------------------------------------------
# Registry.


def test_make_model_builds_registered_models():
  assert make_model("bilinear", d=4) == models.MODELS["bilinear"](d=4)
  config = ml_collections.ConfigDict({"name": "multiplicative", "kwargs": {"d": 4, "K": 2}})
  assert models.make_model(config).name == "multiplicative"


def test_make_model_unknown_name_lists_available():
  with pytest.raises(ValueError, match="unknown model 'wsabie'.*bilinear.*multiplicative"):
    make_model("wsabie", d=4)


def test_labels_and_columns_are_the_papers():
  assert make_model("bilinear", d=64).label == "Bilinear"
  assert make_model("user_biased", d=64).label == "User-biased"
  model = make_model("multiplicative", d=64, K=100, init_std=0.1)
  assert model.label == "3-way mult." and model.report_columns() == {"d": 64, "K": 100}
  assert make_model("user_biased", d=32).report_columns() == {"d": 32}


def test_bad_hyperparameters_fail_fast():
  with pytest.raises(ValueError, match="K must be positive"):
    make_model("multiplicative", d=4, K=0)
  with pytest.raises(ValueError, match="user_hidden"):
    make_model("user_biased", d=4, user_hidden=-1)


@pytest.mark.parametrize("name,kwargs", [("multiplicative", dict(d=D, K=K)),
                                         ("user_biased", dict(d=D, user_hidden=4))])
def test_the_user_layer_is_a_relu_of_the_metadata(name, kwargs):
  model, params = init(name, kwargs)
  batch = make_batch(np.random.default_rng(10))
  pre = np.asarray(batch["user_meta"] @ params["user/W"] + params["user/b"])
  assert (pre < 0).any() and (pre > 0).any()  # the ReLU has something to cut
  # The query as the paper writes it, from u = ReLU(W meta + b) and nothing else.
  u = np.maximum(pre, 0.0)
  x = np.asarray(denton.l2_normalize(batch["features"]))
  if name == "multiplicative":
    expected = ((u @ params["user/alpha"]) * (x @ params["image/gamma"])) @ params[
        "embedding/beta"].T
  else:
    expected = x @ params["image/P_T"] + u @ params["user/Q_T"]
  np.testing.assert_allclose(query(model, params, batch), expected, rtol=1e-5, atol=1e-6)
