r"""Training-step throughput of the Denton et al. models at the paper's shape, WARP included.

  python -m benchmarks.denton_train_benchmark --out=/tmp/denton_train.json

Shape (Denton et al. KDD'15): n = 4096 image features, Y = 10,000 hashtags, d = 64, K = 100
(3-way), 10-d user metadata, batches of B = 256 posts with ~2.7 positives each padded to T = 16,
WARP with max_trials = 1000 and margin 0.1. For each model (bilinear, user_biased, multiplicative
with hand_vjp True and False) the real step is timed: `hashjax.training.trainer.make_train_step`
with the objective of the config's loss (`hashjax.training.objectives.make_objective`), the
optimizer of `hashjax.training.optimizers.make_optimizer` and the config of
`experiments/denton.py`, jitted with the state donated as in `train_and_evaluate`.

Data: a planted task generated in memory (no input pipeline in the timing; the pipeline has its
own benchmark). C = 500 concepts with Zipf popularity, each owning 20 hashtags; a post shows one
concept (30%: two), its features are relu(concept prototypes + noise), L2-normalised and
non-negative, its user's 10-d metadata encodes one of 8 style groups, and its 1 + Poisson(1.7)
hashtags (cap 16; mean 2.7) are drawn without replacement from its concepts' tags with
group-dependent preferences. Tag frequencies come out Zipf-like and the labels are learnable by
every model (the user models can also learn the style).

WARP's cost depends on the training phase: at init every negative violates the margin (one draw
per positive); as the model learns, violators get rare and the sampler draws more. So every model
is timed twice: at init and after `--train_steps` steps on fresh batches of the planted task. Each
timed window of `--timed_steps` real steps restarts from a copy of the phase's state, so the
measurement stays at that phase. The step's own diagnostics (mean_draws, violator_found) are
reported for the timed steps, with the held-out P@1 on the planted task to show the model learned.

FLOP/s are reported as a fraction of this machine's fp32 matmul peak, measured in the same run
(the 2048^3 jitted matmul of benchmarks/common.py's matmul_peak). Useful FLOPs of a step
(matmuls only; x is data, so no gradient wrt x):
  query tower forward + parameter backward:
    bilinear        2Bnd + 2Bnd                            (x P_T; x^T dQ)
    user_biased     + 2Bmd + 2Bmd                          (u Q_T; u^T dQ)
    multiplicative  forward  2B m h + 2BhK + 2BnK + 2BKd   (user layer, u alpha, x gamma, H beta^T)
                    backward 2BdK + 2BdK + 2BhK + 2BhK + 2BnK + 2B m h
                             (dH, d beta, d alpha, du, d gamma, dW of the user layer)
  WARP scores for sampling  2BdY
  gathered-row loss         12 P d   (P real positives: 2 dots forward, 4 backward, d each)
Pieces (`--pieces`, at init and after training) time each part alone to show where a step's time goes:
query-tower forward+backward, the [B, Y] score matmul, the WARP sampler on those scores, the
whole loss's value_and_grad, and the optimizer update + projection.

Load from other jobs on the machine changes every number: os.getloadavg() is recorded before and
after, and each rate is the median of `--repeats` timed windows.
"""

import functools
import json
import os
import statistics
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import denton as denton_experiment
from benchmarks.common import matmul_peak, median_seconds, train_step_and_state
from hashjax import models
from hashjax.data.spec import DatasetSpec
from hashjax.eval import topk
from hashjax.losses import warp


def define_flags() -> None:
  """The flags; defined when the script runs (not at import: other commands share flag names)."""
  flags.DEFINE_string("out", None, "Write the results as JSON here.")
  flags.DEFINE_list("models", ["bilinear", "user_biased", "multiplicative",
                               "multiplicative_autodiff"], "Models to time.")
  flags.DEFINE_integer("train_steps", 1000,
                       "Steps on the planted task before the 'trained' timing.")
  flags.DEFINE_integer("timed_steps", 20, "Steps per timed window.")
  flags.DEFINE_integer("repeats", 5, "Timed windows per measurement (median reported).")
  flags.DEFINE_bool("pieces", True, "Also time the pieces of the step (after training).")
  flags.DEFINE_integer("piece_repeats", 40, "Timed calls per piece (median).")
  flags.DEFINE_float("peak_seconds", 3.0, "Duration of the matmul peak timing.")
  flags.DEFINE_integer("batch_size", 256, "Posts per step (the config's is 256).")
  flags.DEFINE_integer("seed", 0, "Seed of the planted task and the models.")


N, M, Y, T = 4096, 10, 10_000, 16   # features, user metadata, hashtags, tag slots
# The planted batches carry no user_index (no Denton model reads one), hence num_users=0.
SPEC = DatasetSpec(feature_dim=N, user_meta_dim=M, num_tags=Y, num_users=0)
CONCEPTS, GROUPS = 500, 8            # planted task: Y / CONCEPTS = 20 tags per concept
TAGS_PER_CONCEPT = Y // CONCEPTS
POOL = 20                            # distinct batches of a timed window (--timed_steps <= 20
                                     # sees each once)
EVAL_BATCHES = 4                     # held-out batches for the planted-task P@1

# name -> (experiments/denton.py model, extra model kwargs)
VARIANTS = {"bilinear": ("bilinear", {}), "user_biased": ("user_biased", {}),
            "multiplicative": ("multiplicative", {"hand_vjp": True}),
            "multiplicative_autodiff": ("multiplicative", {"hand_vjp": False})}


# ---------------------------------------------------------------------------------------------
# The planted task.


def make_world(seed: int) -> dict:
  """Concept prototypes, popularity and per-group tag preferences (see the module docstring)."""
  k_proto, k_mask, k_style = jax.random.split(jax.random.key(seed), 3)
  # Sparse non-negative prototypes (5% active dims), unit norm, like pooled CNN activations.
  proto = (jax.random.exponential(k_proto, (CONCEPTS, N))
           * jax.random.bernoulli(k_mask, 0.05, (CONCEPTS, N)))
  proto = proto / jnp.linalg.norm(proto, axis=-1, keepdims=True)
  concept_logp = -1.0 * jnp.log(jnp.arange(1, CONCEPTS + 1, dtype=jnp.float32))
  # Within a concept a Zipf head (tag 0 most common) reweighted by the user's style group.
  rank_logp = -1.0 * jnp.log(jnp.arange(1, TAGS_PER_CONCEPT + 1, dtype=jnp.float32))
  style = jax.random.normal(k_style, (GROUPS, CONCEPTS, TAGS_PER_CONCEPT))
  return {"proto": proto, "concept_logp": concept_logp,
          "tag_logp": rank_logp + 1.0 * style}


@functools.partial(jax.jit, static_argnames="batch_size")
def sample_batch(world: dict, key: jax.Array, batch_size: int) -> dict:
  """One batch of the planted task: features, user_meta, tag_ids, tag_mask (T slots)."""
  ks = jax.random.split(key, 8)
  b = batch_size
  c1 = jax.random.categorical(ks[0], world["concept_logp"], shape=(b,))
  c2 = jax.random.categorical(ks[1], world["concept_logp"], shape=(b,))
  two = jax.random.bernoulli(ks[2], 0.3, (b,)) & (c2 != c1)
  w1 = jnp.where(two, 0.65, 1.0)
  w2 = jnp.where(two, 0.35, 0.0)
  noise = jax.random.normal(ks[3], (b, N)) / jnp.sqrt(N)
  x = jax.nn.relu(w1[:, None] * world["proto"][c1] + w2[:, None] * world["proto"][c2]
                  + 1.0 * noise)
  x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  group = jax.random.randint(ks[4], (b,), 0, GROUPS)
  meta = jnp.concatenate([jax.nn.one_hot(group, GROUPS),
                          jax.random.uniform(ks[5], (b, M - GROUPS))], axis=-1)
  # Candidates: the 20 tags of each concept; Gumbel-top-T on log p = draws without replacement.
  logp = jnp.concatenate([jnp.log(w1)[:, None] + world["tag_logp"][group, c1],
                          jnp.where(two, jnp.log(jnp.maximum(w2, 1e-9)), -jnp.inf)[:, None]
                          + world["tag_logp"][group, c2]], axis=-1)
  ids = jnp.concatenate([c1[:, None] * TAGS_PER_CONCEPT + jnp.arange(TAGS_PER_CONCEPT),
                         c2[:, None] * TAGS_PER_CONCEPT + jnp.arange(TAGS_PER_CONCEPT)], axis=-1)
  _, order = jax.lax.top_k(logp + jax.random.gumbel(ks[6], logp.shape), T)
  count = jnp.minimum(1 + jax.random.poisson(ks[7], 1.7, (b,)), T)
  count = jnp.minimum(count, jnp.where(two, 2, 1) * TAGS_PER_CONCEPT)
  return {"features": x, "user_meta": meta,
          "tag_ids": jnp.take_along_axis(ids, order, axis=1).astype(jnp.int32),
          "tag_mask": jnp.arange(T)[None, :] < count[:, None]}


# ---------------------------------------------------------------------------------------------
# FLOP counts and timing helpers.


def useful_flops(name: str, model, b: int, positives: float) -> dict:
  """Useful matmul FLOPs of one step (see the module docstring), by part."""
  d = model.d
  if name == "bilinear":
    tower = 4 * b * N * d
  elif name == "user_biased":
    tower = 4 * b * N * d + 4 * b * (model.user_hidden or M) * d
    if model.user_hidden:
      tower += 4 * b * M * model.user_hidden
  else:
    h, k = model.user_hidden or M, model.K
    fwd = 2 * b * h * k + 2 * b * N * k + 2 * b * k * d
    bwd = 4 * b * d * k + 4 * b * h * k + 2 * b * N * k
    if model.user_hidden:
      fwd += 2 * b * M * h
      bwd += 2 * b * M * h
    tower = fwd + bwd
  scores = 2 * b * d * Y
  loss = 12 * positives * d
  return {"tower": tower, "scores": scores, "loss": loss, "total": tower + scores + loss}


def timed_steps(step, start, pool, steps: int, repeats: int):
  """Times `repeats` windows of `steps` steps, each from a fresh copy of the state `start`.

  Restarting every window from the same state keeps the measurement at one training phase (the
  step donates its input, so each window gets its own copy). Returns (median s/step, metrics
  averaged over every timed step).
  """
  per_step, metrics = [], []
  for _ in range(repeats):
    state = jax.block_until_ready(jax.tree.map(jnp.copy, start))
    begin = time.perf_counter()
    window = []
    for i in range(steps):
      state, m = step(state, pool[i % len(pool)])
      window.append(m)
    jax.block_until_ready(state)
    per_step.append((time.perf_counter() - begin) / steps)
    metrics.extend(jax.device_get(window))
  mean = {k: float(np.mean([m[k] for m in metrics])) for k in ("mean_draws", "violator_found",
                                                                "loss")}
  return statistics.median(per_step), mean


def planted_p_at_1(model, variables, eval_pool) -> float:
  """Share of held-out posts whose top-scored tag is one of their tags."""
  hits, total = 0, 0
  for batch in eval_pool:
    q = model.query(variables, batch)
    _, ids = topk.top_k_two_tower(np.asarray(q), np.asarray(model.tags(variables)), 1)
    mask = np.asarray(batch["tag_mask"])
    hit = (np.asarray(batch["tag_ids"]) == np.asarray(ids)[:, :1]) & mask
    hits += int(hit.any(axis=1).sum())
    total += mask.shape[0]
  return hits / total


# ---------------------------------------------------------------------------------------------
# Pieces of the step.


def time_pieces(model, objective, tx, state, pool, repeats: int) -> dict:
  """ms of each part of the step alone, at the given state, on the pool's first batch."""
  batch = pool[0]
  params = state.params
  table = params["tags"]["V"]
  tower_params = {k: v for k, v in params.items() if k != "tags"}  # every part but the tag table
  cot = jax.random.normal(jax.random.key(1), (batch["features"].shape[0], model.d))
  key = jax.random.PRNGKey(2)  # a raw key, as the step's fold_in(state.key, step)

  @jax.jit
  def tower(tp, batch):
    return jax.grad(lambda tp: jnp.sum(
        model.query({"params": {**tp, "tags": params["tags"]}}, batch) * cot))(tp)

  score = jax.jit(lambda q, v: q @ v.T)
  sampler = jax.jit(functools.partial(warp.warp_sample, margin=objective.margin,
                                      max_trials=objective.max_trials))

  def loss_fn(p, batch, key):
    # The step's objective (WARP, summed over positives, averaged over posts); no model state.
    loss, _, _ = objective(model, {"params": p}, batch, key)
    return loss

  loss_grad = jax.jit(jax.value_and_grad(loss_fn))

  @jax.jit
  def update(grads, opt_state, p):
    updates, opt_state = tx.update(grads, opt_state, p)
    return model.project(optax.apply_updates(p, updates)), opt_state

  q = jax.jit(model.query)(state.variables(), batch)
  scores = score(q, table)
  _, grads = loss_grad(params, batch, key)
  ids, mask = batch["tag_ids"], batch["tag_mask"]
  out = median_seconds({
      "tower_fwd_bwd": lambda: jax.block_until_ready(tower(tower_params, batch)),
      "score_matmul": lambda: score(q, table).block_until_ready(),
      "warp_sampler": lambda: jax.block_until_ready(sampler(key, scores, ids, mask)),
      "loss_value_and_grad": lambda: jax.block_until_ready(loss_grad(params, batch, key)),
      "optimizer_update_project": lambda: jax.block_until_ready(
          update(grads, state.opt_state, params)),
  }, repeats)
  return {k: 1e3 * v for k, v in out.items()}


# ---------------------------------------------------------------------------------------------


def run_model(name: str, world, pool, eval_pool, positives: float, peak: float) -> dict:
  f = flags.FLAGS
  model_name, extra = VARIANTS[name]
  config = denton_experiment.get_config(f"model={model_name}")
  config.batch_size = f.batch_size
  kwargs = dict(config.model.kwargs, **extra)
  model = models.make_model({"name": model_name, "kwargs": kwargs}, SPEC)
  step, state, objective, tx = train_step_and_state(config, model, SPEC, f.seed + 1)
  flops = useful_flops(model_name, model, f.batch_size, positives)
  b = f.batch_size

  compile_start = time.perf_counter()
  jax.block_until_ready(step(jax.tree.map(jnp.copy, state), pool[0]))  # compiles
  compile_s = time.perf_counter() - compile_start

  def phase(state, label):
    sec, metrics = timed_steps(step, state, pool, f.timed_steps, f.repeats)
    rate = {"phase": label, "step": int(state.step), "ms_per_step": 1e3 * sec,
            "steps_per_s": 1 / sec, "posts_per_s": b / sec, "positives_per_s": positives / sec,
            "gflops": flops["total"] / sec / 1e9, "fraction_of_peak": flops["total"] / sec / peak,
            **metrics, "planted_p_at_1": planted_p_at_1(model, state.variables(), eval_pool)}
    print(f"  {name:24s} {label:8s} step {rate['step']:5d}: {rate['ms_per_step']:7.2f} ms/step "
          f"{rate['positives_per_s']:9,.0f} pos/s  draws {metrics['mean_draws']:6.1f} "
          f"found {metrics['violator_found']:.2f}  P@1 {rate['planted_p_at_1']:.3f}", flush=True)
    return rate

  at_init = phase(state, "init")
  pieces = {}
  if f.pieces:
    pieces["init"] = time_pieces(model, objective, tx, state, pool, f.piece_repeats)
  train_start = time.perf_counter()
  key = jax.random.key(f.seed + 1000)
  log = []
  for i in range(f.train_steps):
    state, m = step(state, sample_batch(world, jax.random.fold_in(key, i), f.batch_size))
    if (i + 1) % max(1, f.train_steps // 4) == 0:
      m = jax.device_get(m)
      log.append({"step": int(state.step), **{k: float(v) for k, v in m.items()}})
  jax.block_until_ready(state)
  train_s = time.perf_counter() - train_start
  trained = phase(state, "trained")
  out = {"model": name, "config_model": model_name, "model_kwargs": kwargs,
         "learning_rate": config.learning_rate, "momentum": config.optimizer.momentum,
         "optimizer": config.optimizer.to_dict(), "loss": config.loss.to_dict(),
         "compile_s": compile_s, "useful_mflop_per_step": {k: v / 1e6 for k, v in flops.items()},
         "init": at_init, "trained": trained, "training": {"steps": f.train_steps,
                                                         "seconds": train_s, "log": log}}
  if f.pieces:
    pieces["trained"] = time_pieces(model, objective, tx, state, pool, f.piece_repeats)
    for label, ph in (("init", at_init), ("trained", trained)):
      pieces[label]["full_step"] = ph["ms_per_step"]
      print(f"    pieces at {label} (ms): "
            + ", ".join(f"{k} {v:.2f}" for k, v in pieces[label].items()), flush=True)
    out["pieces_ms"] = pieces
  return out


def main(argv):
  del argv
  f = flags.FLAGS
  load_before = os.getloadavg()
  print(f"load average before: {load_before}")
  peak = matmul_peak(f.peak_seconds)
  print(f"fp32 matmul peak here: {peak / 1e9:.1f} GFLOP/s")
  world = make_world(f.seed)
  key = jax.random.key(f.seed)
  pool = [sample_batch(world, jax.random.fold_in(key, 10_000 + i), f.batch_size)
          for i in range(POOL)]
  eval_pool = [sample_batch(world, jax.random.fold_in(key, 20_000 + i), f.batch_size)
               for i in range(EVAL_BATCHES)]
  positives = float(np.mean([np.asarray(b["tag_mask"]).sum() for b in pool]))
  counts = np.bincount(np.concatenate([np.asarray(b["tag_ids"])[np.asarray(b["tag_mask"])]
                                       for b in pool]), minlength=Y)
  print(f"planted task: {positives / f.batch_size:.2f} positives per post, "
        f"{(counts > 0).sum()} distinct tags in {POOL} batches, top tag share "
        f"{counts.max() / counts.sum():.3f}")
  results = {"machine": {"nproc": os.cpu_count(), "jax": jax.__version__,
                         "matmul_peak_gflops": peak / 1e9},
             "shape": {"n": N, "Y": Y, "d": 64, "K": 100, "user_meta": M, "B": f.batch_size,
                       "T": T, "max_trials": 1000, "margin": 0.1,
                       "positives_per_batch": positives},
             "load_before": load_before, "models": []}
  for name in f.models:
    results["models"].append(run_model(name, world, pool, eval_pool, positives, peak))
  results["load_after"] = os.getloadavg()

  print(f"\nfp32 matmul peak {peak / 1e9:.1f} GFLOP/s; B={f.batch_size}, "
        f"{positives / f.batch_size:.2f} positives/post; load {load_before} -> "
        f"{results['load_after']}")
  print("| model | phase | ms/step | posts/s | positives/s | mean draws | violator found "
        "| GFLOP/s | fraction of peak | planted P@1 |")
  print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for r in results["models"]:
    for ph in (r["init"], r["trained"]):
      print(f"| {r['model']} | {ph['phase']} (step {ph['step']}) | {ph['ms_per_step']:.1f} "
            f"| {ph['posts_per_s']:,.0f} | {ph['positives_per_s']:,.0f} | {ph['mean_draws']:.1f} "
            f"| {ph['violator_found']:.2f} | {ph['gflops']:.1f} | {ph['fraction_of_peak']:.3f} "
            f"| {ph['planted_p_at_1']:.3f} |")
  if f.pieces:
    names = list(results["models"][0]["pieces_ms"]["init"])
    print("\nms per piece, each timed alone (full_step: from the table above)")
    print("| model | phase | " + " | ".join(names) + " |")
    print("| --- | --- |" + " ---: |" * len(names))
    for r in results["models"]:
      for label, piece in r["pieces_ms"].items():
        print(f"| {r['model']} | {label} | " + " | ".join(f"{piece[n]:.2f}" for n in names) + " |")
  if f.out:
    with open(f.out, "w") as fh:
      json.dump(results, fh, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
