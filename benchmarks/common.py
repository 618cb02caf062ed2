"""Timing helpers shared by the benchmarks: repeat until measurable, the machine's peak, memory."""

import resource
import statistics
import time

import jax
import jax.numpy as jnp

from hashjax.training import sharding
from hashjax.training.objectives import make_objective
from hashjax.training.optimizers import make_optimizer
from hashjax.training.trainer import TrainState, make_train_step


def timed(fn, min_seconds: float) -> float:
  """Seconds per call of fn(), after one warm-up call that also compiles.

  Results are waited for (jax dispatches asynchronously), so the time is the computation's.
  """
  jax.block_until_ready(fn())
  calls, start = 0, time.perf_counter()
  while time.perf_counter() - start < min_seconds or calls < 2:
    jax.block_until_ready(fn())
    calls += 1
  return (time.perf_counter() - start) / calls


def median_seconds(fns: dict, repeats: int) -> dict:
  """Median wall time of each fn() (waited for) over `repeats` calls, after a warm-up.

  Calls are interleaved (a, b, c, a, b, c, ...) so that load from other processes on a shared
  machine hits every variant alike.
  """
  for fn in fns.values():
    jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def matmul_peak(min_seconds: float = 2.0) -> float:
  """fp32 FLOP/s of a jitted 2048^3 matmul: the ceiling every 'fraction of peak' refers to."""
  a = jnp.ones((2048, 2048), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  return 2 * 2048 ** 3 / timed(lambda: f(a), min_seconds)


def train_step_and_state(config, model, spec, seed: int, vocab_shards: int = 1):
  """What every step benchmark times: (step, state, objective, tx) with the trainer's step for
  config's loss and optimizer, jitted with the state donated as train_and_evaluate does, and
  the initial TrainState of `model`. vocab_shards > 1: the state's hashtag axes split over
  that many devices, as the trainer splits them (hashjax.training.sharding)."""
  init_key, state_key = jax.random.split(jax.random.PRNGKey(seed))
  variables = model.init(init_key, spec)
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  objective, tx = make_objective(config.loss), make_optimizer(config, params)
  state = TrainState(jnp.zeros((), jnp.int32), params, model_state, tx.init(params), state_key)
  train_step = make_train_step(model, objective, tx, tuple(config.frozen))
  if vocab_shards == 1:
    return jax.jit(train_step, donate_argnums=0), state, objective, tx
  mesh = sharding.make_mesh(vocab_shards, vocab_shards)
  shardings = sharding.state_shardings(state, mesh, spec.num_tags)
  step = jax.jit(train_step, donate_argnums=0,
                 out_shardings=(shardings, sharding.replicated(mesh)))
  return step, jax.device_put(state, shardings), objective, tx


def timed_windows(step, state, pool, steps: int, repeats: int):
  """Median s/step over `repeats` windows of `steps` steps (the state carries on: the steps'
  cost does not depend on the training phase), the final state and the last step's metrics."""
  per_step = []
  for _ in range(repeats):
    begin = time.perf_counter()
    for i in range(steps):
      state, metrics = step(state, pool[i % len(pool)])
    jax.block_until_ready(state)
    per_step.append((time.perf_counter() - begin) / steps)
  return statistics.median(per_step), state, jax.device_get(metrics)


def memory_analysis(compiled) -> dict:
  """XLA's byte counts of a compiled executable, and the peak they imply."""
  m = compiled.memory_analysis()
  out = {k: int(getattr(m, f"{k}_size_in_bytes")) for k in ("argument", "output", "temp",
                                                             "alias", "generated_code")}
  out["peak"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
  return out


def peak_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
