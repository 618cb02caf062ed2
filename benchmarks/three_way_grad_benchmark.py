r"""Speed of the factored 3-way product's gradient, hand-derived VJP vs JAX autodiff; and whether
the user-multiplicative model learns from the paper's initialisation.

  python -m benchmarks.three_way_grad_benchmark --out=/tmp/three_way.json

Part 1 (timing). At the paper's shape (n = 4096, m' = 24, d = 64, K = 100) and batches of 256
and 1024, times jitted value_and_grad of sum(three_way(x, u, alpha, beta, gamma) * cotangent):
  "train" differentiates wrt (u, alpha, beta, gamma), what training needs (x is data);
  "all" also wrt x.
Reported: median ms/step over repeats (after a warm-up call that compiles), the hand/autodiff
ratio, and GFLOP/s counting the matmuls only: 2BK(n + m + d) forward, and 2BK per input/output
pair in the backward (dH and d beta: 2d; d alpha and du: 2m; d gamma: n; dx: n if asked).

Part 2 (--init_study). A tiny planted problem (a random user-multiplicative teacher labels each
post with its top tag) trained with a hinge over all negatives (margin 0.1, a dense stand-in for
WARP), SGD momentum 0.9, lr 0.01, projection after every step, for several init_std.
"""

import functools
import json
import os
import re

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import matmul_peak, median_seconds
from hashjax.data.spec import DatasetSpec
from hashjax.models import denton, make_model


def define_flags() -> None:
  """The flags; defined when the script runs (not at import: other commands share flag names)."""
  flags.DEFINE_string("out", None, "Write the results as JSON here.")
  flags.DEFINE_integer("repeats", 30, "Timed calls per measurement (median reported).")
  flags.DEFINE_list("batches", ["256", "1024"], "Batch sizes to time.")
  flags.DEFINE_bool("init_study", True, "Also run the init_std learning study.")
  flags.DEFINE_integer("steps", 3000, "SGD steps per run of the init study.")


N, M, D, K = 4096, 24, 64, 100  # the paper's descriptor, user layer, embedding and factor sizes


def num_dots(jitted, *args) -> int:
  """Matmuls in the optimised HLO: shows whether XLA did the same work for both versions."""
  return len(re.findall(r" dot\(", jitted.lower(*args).compile().as_text()))


def grad_flops(b: int, with_x: bool) -> int:
  forward = 2 * b * K * (N + M + D)
  backward = 2 * b * K * (2 * D + 2 * M + N + (N if with_x else 0))
  return forward + backward


def time_grads(b: int, repeats: int) -> list[dict]:
  rng = np.random.default_rng(0)
  shapes = [(b, N), (b, M), (M, K), (D, K), (N, K)]
  args = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in shapes]
  cot = jnp.asarray(rng.standard_normal((b, D)), jnp.float32)
  rows = []
  for wrt, argnums in (("train", (1, 2, 3, 4)), ("all", (0, 1, 2, 3, 4))):
    steps = {impl: jax.jit(jax.value_and_grad(lambda *a, fn=fn: jnp.sum(fn(*a) * cot), argnums))
             for impl, fn in (("hand", denton.three_way), ("autodiff", denton.three_way_autodiff))}
    seconds = median_seconds({impl: functools.partial(step, *args)
                              for impl, step in steps.items()}, repeats)
    dots = {impl: num_dots(step, *args) for impl, step in steps.items()}
    flops = grad_flops(b, wrt == "all")
    rows.append({"batch": b, "wrt": wrt, "hand_ms": 1e3 * seconds["hand"],
                 "autodiff_ms": 1e3 * seconds["autodiff"],
                 "hand_over_autodiff": seconds["hand"] / seconds["autodiff"],
                 "hand_gflops": flops / seconds["hand"] / 1e9,
                 "autodiff_gflops": flops / seconds["autodiff"] / 1e9, "mflop": flops / 1e6,
                 "hlo_dots_hand": dots["hand"], "hlo_dots_autodiff": dots["autodiff"]})
  return rows


# ---------------------------------------------------------------------------------------------
# Init study.

# The planted posts carry no user_index (nothing here reads one), hence num_users=0.
STUDY_SPEC = DatasetSpec(feature_dim=64, user_meta_dim=10, num_tags=20, num_users=0)


def study_model(name: str, **kwargs):
  return make_model({"name": name, "kwargs": kwargs})


def planted_problem(seed: int, num_posts: int = 2048):
  """Posts (unit x, uniform meta) labelled by the top tag of a random multiplicative teacher."""
  rng = np.random.default_rng(seed)
  batch = {"features": jnp.asarray(rng.standard_normal((num_posts, 64)), jnp.float32),
           "user_meta": jnp.asarray(rng.uniform(size=(num_posts, 10)), jnp.float32)}
  teacher = study_model("multiplicative", d=16, K=8, user_hidden=0, init_std=1.0)
  t_vars = teacher.init(jax.random.key(seed), STUDY_SPEC)
  labels = jnp.argmax(teacher.query(t_vars, batch) @ teacher.tags(t_vars).T, axis=-1)
  return batch, labels


def hinge_all_negatives(scores, labels, margin=0.1):
  """mean_b mean_{y != y_b} |margin - s_{b, y_b} + s_{b, y}|_+ (WARP's hinge, every negative)."""
  pos = jnp.take_along_axis(scores, labels[:, None], axis=-1)
  viol = jax.nn.relu(margin - pos + scores)
  mask = 1.0 - jax.nn.one_hot(labels, scores.shape[-1])
  return jnp.sum(viol * mask) / jnp.sum(mask)


def train(model, batch, labels, steps: int, batch_size: int = 64, seed: int = 0) -> dict:
  """SGD(0.01, momentum 0.9) with projection; loss and train P@1 at a few checkpoints."""
  opt = optax.sgd(0.01, momentum=0.9)
  params = model.init(jax.random.key(seed + 1), STUDY_SPEC)["params"]
  num = labels.shape[0]

  def scores_of(p, b):
    variables = {"params": p}
    return model.query(variables, b) @ model.tags(variables).T

  def loss_fn(p, idx):
    b = jax.tree.map(lambda a: a[idx], batch)
    return hinge_all_negatives(scores_of(p, b), labels[idx])

  def step(carry, key):
    p, s = carry
    idx = jax.random.randint(key, (batch_size,), 0, num)
    grads = jax.grad(loss_fn)(p, idx)
    updates, s = opt.update(grads, s, p)
    return (model.project(optax.apply_updates(p, updates)), s), None

  @jax.jit
  def evaluate(p):
    scores = scores_of(p, batch)
    p_at_1 = jnp.mean(jnp.argmax(scores, -1) == labels)
    return hinge_all_negatives(scores, labels), p_at_1, jnp.mean(jnp.abs(scores))

  run = jax.jit(lambda c, keys: jax.lax.scan(step, c, keys)[0])
  carry, keys = (params, opt.init(params)), jax.random.split(jax.random.key(seed), steps)
  history = []
  checkpoints = sorted({0, steps // 10, steps // 3, steps})
  for start, stop in zip(checkpoints, checkpoints[1:] + [None]):
    loss, p1, mean_abs = evaluate(carry[0])
    history.append({"step": start, "loss": float(loss), "p_at_1": float(p1),
                    "mean_abs_score": float(mean_abs)})
    if stop is not None:
      carry = run(carry, keys[start:stop])
  return {"history": history}


def init_study(steps: int) -> list[dict]:
  batch, labels = planted_problem(0)
  chance = float(jnp.max(jnp.bincount(labels, length=20)) / labels.shape[0])
  print(f"\ninit study: {labels.shape[0]} posts, 20 tags, most frequent tag = {chance:.1%} "
        f"of posts; SGD lr 0.01 momentum 0.9, {steps} steps of 64")
  print("| model | init_std | step | hinge loss | train P@1 | mean abs score |")
  print("| --- | ---: | ---: | ---: | ---: | ---: |")
  results = []
  # The paper's d = 64, K = 100 and 24-unit user layer; the teacher is smaller (d = 16, K = 8).
  runs = [(name, dict(d=D), std) for name in ("bilinear", "user_biased") for std in (0.001, 0.1)]
  runs += [("multiplicative", dict(d=D, K=K), std) for std in (0.001, 0.01, 0.1, 0.3)]
  for name, kwargs, std in runs:
    out = train(study_model(name, init_std=std, **kwargs), batch, labels, steps)
    results.append({"model": name, "init_std": std, **out})
    for h in out["history"]:
      print(f"| {name} | {std} | {h['step']} | {h['loss']:.4f} | {h['p_at_1']:.3f} "
            f"| {h['mean_abs_score']:.2e} |")
  return results


def main(argv):
  del argv
  f = flags.FLAGS
  peak = matmul_peak()
  results = {"machine": {"nproc": os.cpu_count(), "jax": jax.__version__,
                         "matmul_peak_gflops": peak / 1e9},
             "shape": {"n": N, "m": M, "d": D, "K": K}, "grad": []}
  print(f"fp32 matmul peak here: {peak / 1e9:.1f} GFLOP/s; n={N} m'={M} d={D} K={K}")
  print("| batch | grad wrt | MFLOP | hand ms | autodiff ms | hand / autodiff "
        "| hand GFLOP/s | autodiff GFLOP/s | HLO dots hand / autodiff |")
  print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for b in map(int, f.batches):
    for r in time_grads(b, f.repeats):
      results["grad"].append(r)
      print(f"| {b} | {r['wrt']} | {r['mflop']:.0f} | {r['hand_ms']:.2f} | {r['autodiff_ms']:.2f} "
            f"| {r['hand_over_autodiff']:.2f} | {r['hand_gflops']:.1f} "
            f"| {r['autodiff_gflops']:.1f} | {r['hlo_dots_hand']} / {r['hlo_dots_autodiff']} |")
  if f.init_study:
    results["init_study"] = init_study(f.steps)
  if f.out:
    with open(f.out, "w") as fh:
      json.dump(results, fh, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
