"""Optimizers from the config: the same updates as optax's, schedules, frozen parts, plateau."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hashjax import config as config_lib
from hashjax.training import optimizers

PARAMS = {"image": {"w": jnp.array([1.0, -2.0, 3.0])}, "tags": {"v": jnp.array([[0.5, 0.5]])}}
GRADS = {"image": {"w": jnp.array([0.3, -0.1, 0.2])}, "tags": {"v": jnp.array([[1.0, -1.0]])}}


def _config(**fields):
  config = config_lib.train_config()
  config.train_steps = 100
  for key, value in fields.items():
    config[key] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
  return config


def _updates(tx, steps=3):
  state, params, out = tx.init(PARAMS), PARAMS, []
  for _ in range(steps):
    updates, state = tx.update(GRADS, state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return out, state


@pytest.mark.parametrize("name,options,reference", [
    ("sgd", {"momentum": 0.9}, optax.sgd(0.1, momentum=0.9)),
    ("sgd", {"momentum": 0.0, "nesterov": False}, optax.sgd(0.1)),
    ("adam", {"b1": 0.8}, optax.adam(0.1, b1=0.8)),
    ("adamw", {"weight_decay": 0.01}, optax.adamw(0.1, weight_decay=0.01)),
])
def test_each_optimizer_is_optaxs(name, options, reference):
  tx = optimizers.make_optimizer(_config(learning_rate=0.1,
                                         optimizer=dict(name=name, **options)), PARAMS)
  for ours, theirs in zip(_updates(tx)[0], _updates(reference)[0]):
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
      np.testing.assert_allclose(a, b, rtol=1e-6)


def test_schedules_multiply_the_base_rate():
  cosine = optimizers.schedule_multiplier(_config(schedule=dict(name="cosine", alpha=0.2)))
  assert float(cosine(0)) == 1.0 and float(cosine(100)) == pytest.approx(0.2)
  assert float(cosine(50)) == pytest.approx(0.2 + 0.8 * 0.5)
  warm = optimizers.schedule_multiplier(_config(schedule=dict(name="cosine", warmup_steps=10)))
  assert float(warm(5)) == pytest.approx(0.5) and float(warm(10)) == pytest.approx(1.0)
  step = optimizers.schedule_multiplier(_config(schedule=dict(name="step", every=30)))
  assert [float(step(t)) for t in (29, 30, 59, 60, 90)] == pytest.approx(
      [1, 0.1, 0.1, 0.01, 0.001])
  at = optimizers.schedule_multiplier(_config(schedule=dict(name="step", boundaries=(10, 70),
                                                            factor=0.5)))
  assert [float(at(t)) for t in (9, 10, 70)] == pytest.approx([1, 0.5, 0.25])
  # The schedule scales the optimizer's updates: SGD without momentum at step t moves by
  # lr x multiplier(t) x grad.
  tx = optimizers.make_optimizer(_config(learning_rate=0.1, optimizer=dict(name="sgd"),
                                         schedule=dict(name="step", every=1, factor=0.5)), PARAMS)
  updates, _ = _updates(tx, steps=3)
  for t, u in enumerate(updates):
    np.testing.assert_allclose(u["image"]["w"], -0.1 * 0.5 ** t * GRADS["image"]["w"], rtol=1e-6)


def test_bad_optimizer_or_schedule_configs_say_what_is_allowed():
  with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
    optimizers.make_optimizer(_config(optimizer=dict(name="lamb")), PARAMS)
  with pytest.raises(ValueError, match=r"adam: unknown options \['momentum'\]"):
    optimizers.make_optimizer(_config(optimizer=dict(name="adam", momentum=0.9)), PARAMS)
  with pytest.raises(ValueError, match="unknown schedule 'linear'"):
    optimizers.schedule_multiplier(_config(schedule=dict(name="linear")))
  with pytest.raises(ValueError, match="exactly one of every=N or boundaries"):
    optimizers.schedule_multiplier(_config(schedule=dict(name="step")))
  with pytest.raises(ValueError, match=r"frozen parts \['user'\] are not parts"):
    optimizers.make_optimizer(_config(frozen=("user",)), PARAMS)


def test_frozen_parts_do_not_move_and_the_plateau_rule_still_sets_the_rate():
  config = _config(learning_rate=0.1, optimizer=dict(name="adam"), frozen=("tags",),
                   schedule=dict(name="cosine"))
  tx = optimizers.make_optimizer(config, PARAMS)
  updates, state = _updates(tx)
  for u in updates:
    np.testing.assert_array_equal(u["tags"]["v"], 0.0)
    assert np.abs(u["image"]["w"]).min() > 0
  assert float(optax.tree_utils.tree_get(state, "learning_rate")) == pytest.approx(0.1)
  lowered = optimizers.set_learning_rate(state, 0.01)  # inside multi_transform's inner state
  assert float(optax.tree_utils.tree_get(lowered, "learning_rate")) == pytest.approx(0.01)
  # Adam's step at the lowered rate is a tenth of the step at the old rate.
  a, _ = tx.update(GRADS, state, PARAMS)
  b, _ = tx.update(GRADS, lowered, PARAMS)
  np.testing.assert_allclose(b["image"]["w"], 0.1 * a["image"]["w"], rtol=1e-5)


def test_plateau_rule_counts_stalls_after_the_start_step_only():
  config = _config(plateau_patience=2, plateau_start_step=100, plateau_factor=0.1,
                   plateau_min_delta=0.01)
  schedule = {"learning_rate": 1.0, "best": -1.0, "bad_evals": 0}
  for step, value in ((50, 0.3), (60, 0.3), (70, 0.3), (100, 0.305), (110, 0.2)):
    schedule = optimizers.lower_on_plateau(schedule, value, step, config)
  assert schedule["learning_rate"] == pytest.approx(0.1) and schedule["best"] == 0.3
  config.plateau_patience = 0  # off
  off = optimizers.lower_on_plateau({"learning_rate": 1.0, "best": 0.5, "bad_evals": 5}, 0.1,
                                    1000, config)
  assert off["learning_rate"] == 1.0


def test_adam_weight_decay_is_torchs_l2_added_to_the_gradient():
  """torch.optim.Adam(weight_decay=wd), written out: g <- g + wd w, then Adam's moments. With
  wd = 1 the decay flips the gradient's sign here, so plain Adam would step the other way."""
  lr, wd, b1, b2, eps = 0.1, 1.0, 0.9, 0.999, 1e-8
  params = {"image": {"w": jnp.array([1.0, -2.0, 3.0])}}
  grads = {"image": {"w": jnp.array([-0.3, 0.1, -0.2])}}
  tx = optimizers.make_optimizer(_config(learning_rate=lr, optimizer=dict(
      name="adam", weight_decay=wd)), params)
  state, current = tx.init(params), params
  w, m, v = np.array([1.0, -2.0, 3.0]), 0.0, 0.0
  for t in range(1, 4):
    updates, state = tx.update(grads, state, current)
    current = optax.apply_updates(current, updates)
    g = np.array([-0.3, 0.1, -0.2]) + wd * w
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    step = -lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(updates["image"]["w"], step, rtol=1e-4)
    w = w + step
  assert (np.sign(step) == [-1, 1, -1]).all()  # against the decay, not the raw gradient
