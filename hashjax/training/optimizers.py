"""Optimizers from the config: the update rule, the schedule, frozen parts and the plateau rule.

    config.learning_rate = 0.02                      the base rate
    config.optimizer = dict(name="sgd", momentum=0.9)   or "adam" (b1, b2, eps, weight_decay:
                                                     torch's Adam decay, added to the gradient),
                                                     "adamw" (b1, b2, eps, weight_decay)
    config.schedule = dict(name="constant")          or "cosine" (warmup_steps, alpha: decay to
                                                     alpha x base over train_steps), "step"
                                                     (every N steps, or at boundaries, x factor)
    config.frozen = ("image",)                       parts (top-level params) left unchanged
    config.plateau_patience = 2 (0: off)             lower the rate when validation stalls

The rate at step t is  base x plateau x schedule(t): `plateau` is the product of the factors
the plateau rule applied so far. The base x plateau part is an optax injected hyperparameter
(`set_learning_rate` changes it between steps, wherever it sits in the optimizer state, also
under multi_transform); schedule(t) multiplies the final update, and is left out when constant,
so the constant-rate SGD of Denton et al. is exactly optax.sgd.
"""

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS = {
    "sgd": lambda lr, o: optax.sgd(lr, momentum=o.get("momentum") or None,
                                   nesterov=o.get("nesterov", False)),
    # weight_decay as torch.optim.Adam's: wd * w joins the gradient before the moments (L2),
    # where adamw's decay bypasses them
    "adam": lambda lr, o: optax.chain(
        optax.add_decayed_weights(o.get("weight_decay", 0.0)),
        optax.adam(lr, b1=o.get("b1", 0.9), b2=o.get("b2", 0.999), eps=o.get("eps", 1e-8))
    ) if o.get("weight_decay") else optax.adam(lr, b1=o.get("b1", 0.9), b2=o.get("b2", 0.999),
                                               eps=o.get("eps", 1e-8)),
    "adamw": lambda lr, o: optax.adamw(lr, b1=o.get("b1", 0.9), b2=o.get("b2", 0.999),
                                       eps=o.get("eps", 1e-8),
                                       weight_decay=o.get("weight_decay", 1e-4)),
}
_OPTIONS = {"sgd": {"momentum", "nesterov"}, "adam": {"b1", "b2", "eps", "weight_decay"},
            "adamw": {"b1", "b2", "eps", "weight_decay"}}
SCHEDULES = ("constant", "cosine", "step")


def schedule_multiplier(config):
  """step -> the schedule's factor on the base rate (1 at step 0 for every schedule)."""
  s = dict(config.schedule)
  name = s.pop("name", "constant")
  if name == "constant":
    _no_options(name, s, set())
    return lambda step: 1.0
  if name == "cosine":
    _no_options(name, s, {"warmup_steps", "alpha"})
    warmup = s.get("warmup_steps", 0)
    cosine = optax.cosine_decay_schedule(1.0, max(config.train_steps - warmup, 1),
                                         alpha=s.get("alpha", 0.0))
    if not warmup:
      return cosine
    return optax.join_schedules([optax.linear_schedule(0.0, 1.0, warmup), cosine], [warmup])
  if name == "step":
    _no_options(name, s, {"every", "boundaries", "factor"})
    every, boundaries = s.get("every", 0), tuple(s.get("boundaries", ()))
    if bool(every) == bool(boundaries):
      raise ValueError("schedule 'step' needs exactly one of every=N or boundaries=(...)")
    if every:
      boundaries = tuple(range(every, config.train_steps + 1, every))
    return optax.piecewise_constant_schedule(1.0, {b: s.get("factor", 0.1) for b in boundaries})
  raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")


def _no_options(name: str, given: dict, allowed: set) -> None:
  unknown = sorted(set(given) - allowed)
  if unknown:
    raise ValueError(f"{name}: unknown options {unknown}; it takes {sorted(allowed) or 'none'}")


def make_optimizer(config, params) -> optax.GradientTransformation:
  """The optimizer config.optimizer / schedule / frozen describe, for these params."""
  options = dict(config.optimizer)
  name = options.pop("name")
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
  _no_options(name, options, _OPTIONS[name])
  tx = optax.inject_hyperparams(lambda learning_rate: OPTIMIZERS[name](learning_rate, options))(
      learning_rate=config.learning_rate)
  if dict(config.schedule).get("name", "constant") != "constant":
    tx = optax.chain(tx, optax.scale_by_schedule(schedule_multiplier(config)))
  frozen = tuple(config.get("frozen", ()))
  if not frozen:
    return tx
  unknown = sorted(set(frozen) - set(params))
  if unknown:
    raise ValueError(f"frozen parts {unknown} are not parts of this model (it has "
                     f"{sorted(params)})")
  labels = {part: "frozen" if part in frozen else "trained" for part in params}
  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)


def set_learning_rate(opt_state, learning_rate: float):
  """The optimizer state with its injected base x plateau rate set to `learning_rate`."""
  current = optax.tree_utils.tree_get(opt_state, "learning_rate")
  value = jax.device_put(np.asarray(learning_rate, np.float32), current.sharding)  # host value:
  # a jax.Array put on a multi-process sharding is broken in jax 0.10.2
  return optax.tree_utils.tree_set(opt_state, learning_rate=value)


def lower_on_plateau(schedule: dict, value: float, step: int, config) -> dict:
  """Denton et al. divided the learning rate by 10 by hand when validation stopped improving.

  Here: after `plateau_patience` evaluations in a row that do not beat the best by
  `plateau_min_delta` (patience 0 turns the rule off). Evaluations before
  `plateau_start_step` never count as stalls: a model still leaving its initial plateau (the
  3-way product starts near a saddle) is not converged, and nobody lowering the rate by hand
  would lower it then.
  """
  schedule = dict(schedule)
  if value > schedule["best"] + config.plateau_min_delta:
    schedule.update(best=value, bad_evals=0)
  elif config.plateau_patience and step >= config.plateau_start_step:
    schedule["bad_evals"] += 1
    if schedule["bad_evals"] >= config.plateau_patience:
      schedule.update(learning_rate=schedule["learning_rate"] * config.plateau_factor, bad_evals=0)
      logging.info("validation plateau: learning rate -> %g", schedule["learning_rate"])
  return schedule
