"""hashjax.models.gru: the masked GRU scan and its custom VJP against flax's GRUCell under plain
autodiff, and against numeric differences."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hashjax.models import gru

S, W, DX, D = 3, 7, 5, 4


def _cell_params(seed=0):
  """flax GRUCell parameters, every bias made non-zero (zero biases would hide a wrong one)."""
  params = nn.GRUCell(D).init(jax.random.key(seed), jnp.zeros((1, D)), jnp.zeros((1, DX)))
  leaves, tree = jax.tree.flatten(params["params"])
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  return jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, keys)])


def _inputs(seed=2):
  rng = np.random.default_rng(seed)
  update = rng.random((S, W)) < 0.7
  update[0] = False  # a sequence without any update keeps h_0 = 0
  return jnp.asarray(rng.normal(size=(S, W, DX)), jnp.float32), jnp.asarray(update)


def _flax_states(params, x, update):
  """The reference: flax's cell in a plain lax.scan, the masked carry kept by jnp.where."""
  cell = nn.GRUCell(D)

  def step(h, inputs):
    x_t, update_t = inputs
    new, _ = cell.apply({"params": params}, h, x_t)
    new = jnp.where(update_t[:, None], new, h)
    return new, new

  _, states = jax.lax.scan(step, jnp.zeros((S, D)), (jnp.swapaxes(x, 0, 1), update.T))
  return jnp.swapaxes(states, 0, 1)


def test_states_equal_flax_gru_cell():
  params, (x, update) = _cell_params(), _inputs()
  states = gru.gru_states(params, x, update)
  np.testing.assert_allclose(states, _flax_states(params, x, update), rtol=1e-5, atol=1e-6)
  assert not np.asarray(states[0]).any()  # never updated: the zero state throughout


def test_every_gradient_equals_autodiff_of_flax_gru_cell():
  params, (x, update) = _cell_params(), _inputs()
  weights = jax.random.normal(jax.random.key(3), (S, W, D))  # a loss that reads every state

  def loss(states_fn):
    return lambda p, x_: (jnp.tanh(states_fn(p, x_, update)) * weights).sum()

  ours = jax.grad(loss(gru.gru_states), (0, 1))(params, x)
  reference = jax.grad(loss(_flax_states), (0, 1))(params, x)
  assert jax.tree.structure(ours) == jax.tree.structure(reference)
  for (path, a), b in zip(jax.tree.leaves_with_path(reference), jax.tree.leaves(ours)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    assert np.abs(np.asarray(a)).max() > 0  # every parameter is exercised


@pytest.mark.parametrize("seed", [0, 1])
def test_custom_vjp_against_numeric_differences(seed):
  rng = np.random.default_rng(seed)
  w_h = jnp.asarray(rng.normal(size=(D, 3 * D)) * 0.5)
  b_h = jnp.asarray(rng.normal(size=(3 * D,)) * 0.5)
  xi = jnp.asarray(rng.normal(size=(S, W, 3 * D)))
  update = jnp.asarray(rng.random((S, W)) < 0.7)
  with jax.enable_x64():
    args = tuple(jnp.asarray(a, jnp.float64) for a in (w_h, b_h, xi))
    check_grads(lambda w, b, i: gru.recurrence(w, b, i, update), args, order=1,
                modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)
