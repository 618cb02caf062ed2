r"""The masked GRU over [S, W] sequences, computed from flax's GRUCell parameters, fast.

flax's GRUCell (the parameters: ir, iz, in with biases on the input x, hr, hz, hn on the state
h, hn with a bias) computes, per step,

    r = sigmoid(x W_ir + b_ir + h W_hr)
    z = sigmoid(x W_iz + b_iz + h W_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
    h' = (1 - z) * n + z * h,         and here h' = h where the step's mask is False.

Run inside a scan (nn.RNN), every step multiplies a few rows (S sequences) by both the input
and the recurrent kernels, and the backward pass adds a rank-S update to both kernels'
gradients: each step streams the weights (19 MB at d_u = 1024) three times, which is
memory-bound when S is small (8 user sequences of 200 posts). Two changes keep the math and
cut the traffic to the one recurrent product each way:

  - the input projection X W_i + b_i of all S x W positions is one matmul before the scan
    (its gradient one matmul after, by autodiff);
  - `recurrence` has a custom VJP: the backward scan carries dh and returns, per step, the
    cotangent dA_t of the recurrent pre-activation A_t = h_{t-1} W_h + b_h; then
    dW_h = sum_{s,t} h_{s,t-1}^T dA_{s,t} is one matmul over all positions, db_h = sum dA, and
    dh_{t-1} = (d/dh of the step's gates) + dA_t W_h^T. The gates' derivatives come from
    jax.vjp of the same step function, not from hand-written formulas.

tests/models/test_gru.py checks the states and every gradient against flax's cell under
autodiff, and the VJP against numeric differences (jax.test_util.check_grads).
"""

import jax
import jax.numpy as jnp

INPUT_GATES = ("ir", "iz", "in")
STATE_GATES = ("hr", "hz", "hn")


def _step(a, xi, h, update):
  """h' from A = h W_h + b_h and XI = x W_i + b_i ([..., 3 d], gates r | z | n)."""
  ar, az, an = jnp.split(a, 3, axis=-1)
  xr, xz, xn = jnp.split(xi, 3, axis=-1)
  r = jax.nn.sigmoid(xr + ar)
  z = jax.nn.sigmoid(xz + az)
  n = jnp.tanh(xn + r * an)
  return jnp.where(update[..., None], (1.0 - z) * n + z * h, h)


def _time_major(x):
  return jnp.swapaxes(x, 0, 1)


def _scan_forward(w_h, b_h, xi, update):
  def step(h, inputs):
    xi_t, update_t = inputs
    a = h @ w_h + b_h
    new = _step(a, xi_t, h, update_t)
    return new, (new, a)

  h0 = jnp.zeros(xi.shape[:1] + w_h.shape[:1], jnp.result_type(xi, w_h))
  _, (states, pre) = jax.lax.scan(step, h0, (_time_major(xi), _time_major(update)))
  return _time_major(states), _time_major(pre)


@jax.custom_vjp
def recurrence(w_h, b_h, xi, update):
  """States after each position [S, W, d] from h_0 = 0: w_h [d, 3d], b_h [3d], the input
  projections xi [S, W, 3d], update [S, W] bool (False: the state is carried)."""
  return _scan_forward(w_h, b_h, xi, update)[0]


def _recurrence_fwd(w_h, b_h, xi, update):
  states, pre = _scan_forward(w_h, b_h, xi, update)
  return states, (w_h, xi, update, states, pre)


def _recurrence_bwd(residuals, d_states):
  w_h, xi, update, states, pre = residuals
  before = jnp.concatenate([jnp.zeros_like(states[:, :1]), states[:, :-1]], axis=1)

  def step(dh, inputs):
    a, xi_t, h, update_t, d_out = inputs
    _, vjp = jax.vjp(lambda a_, xi_, h_: _step(a_, xi_, h_, update_t), a, xi_t, h)
    da, dxi, dh_gates = vjp(dh + d_out)
    return dh_gates + da @ w_h.T, (da, dxi)

  _, (d_pre, d_xi) = jax.lax.scan(
      step, jnp.zeros_like(states[:, 0]),
      tuple(map(_time_major, (pre, xi, before, update, d_states))), reverse=True)
  d_pre, d_xi = _time_major(d_pre), _time_major(d_xi)
  d_w_h = jnp.einsum("swd,swe->de", before, d_pre)  # one matmul over every position
  return d_w_h, d_pre.sum(axis=(0, 1)), d_xi, None


recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def gru_states(cell_params: dict, x: jax.Array, update: jax.Array) -> jax.Array:
  """The states after each position [S, W, d] of flax's GRUCell (parameters `cell_params`)
  run over x [S, W, d_x] from h_0 = 0, carrying the state where update [S, W] is False.
  The cell's defaults are assumed (sigmoid gates, tanh candidate), as history.py builds it."""
  w_i = jnp.concatenate([cell_params[g]["kernel"] for g in INPUT_GATES], axis=1)
  b_i = jnp.concatenate([cell_params[g]["bias"] for g in INPUT_GATES])
  w_h = jnp.concatenate([cell_params[g]["kernel"] for g in STATE_GATES], axis=1)
  b_hn = cell_params["hn"]["bias"]
  b_h = jnp.concatenate([jnp.zeros(2 * b_hn.shape[0], b_hn.dtype), b_hn])
  return recurrence(w_h, b_h, x @ w_i + b_i, update)
