r"""Training-step throughput of Veit et al.'s models: the user-specific tensor and MCLL.

  python -m benchmarks.veit_train_benchmark --out=/tmp/veit_train.json

Shape (Veit et al. CVPR'18, with this repository's MLP head in place of the fine-tuned
ResNet-50): n = 2048 image features (ResNet-50's pooled size), one hidden layer of F = 300 (batch
norm, dropout 0.2, as experiments/veit.py), batches of B = 256 posts, U = 5,000 users. Variants:

  tensor       the tensor model, D = 300, E = 50, Y = 10,000 hashtags, the triplet loss with all
               six in-batch negatives (intermediate and hard on the tag, image and user axes)
  tensor_vocabulary  the same with the tag axis's negatives from the whole vocabulary
               (tags_from=vocabulary, as the README's Table 2 trains it); its pieces are not
               timed
  mcll_10k     MCLL: model "mlp" (the same head, its F + 1 = 301-d query with the bias) and the
  mcll_100k    softmax over the whole vocabulary, at Y = 10,000 and Y = 100,000

Each is the real step: `hashjax.training.trainer.make_train_step` with the objective of the
config's loss (`hashjax.training.objectives.make_objective`), the optimizer of
`hashjax.training.optimizers.make_optimizer` (SGD, momentum 0.9) and the config of
`experiments/veit.py` (model=tensor / model=mcll), jitted with the state donated as in
`train_and_evaluate`.

Data: synthetic batches in memory, a pool of 10 distinct ones per vocabulary (no input pipeline
in the timing). Features relu(N(0, 1)) (non-negative, half zeros, like pooled ReLU activations);
1 + Poisson(1.7) hashtags per post (cap T = 8), drawn without replacement with Zipf
probabilities p(y) ~ 1 / (y + 1); users drawn with p(k) ~ 1 / (k + 1)^0.8, so that the active
ones post several times in a batch (the image and user axes then have excluded candidates).
Every user is seen in training (user_train_posts > 0).

Useful FLOPs of a step (matmuls and contractions only; x is data, so no gradient wrt x; a
backward counts both operands' gradients, dense):
  image head (both)        4 B n F                    x W_1 forward, x^T dZ for dW_1
  tensor
    axis contractions      forward  2BEDF + 2BEDF     W_r f_j and W_r^T h_i, every r
                           backward 4BEDF + 4BEDF     (dW and df; dW and dh)
    small contractions     forward  2BED + 2BEF + 2BED
                                    W^(k) f = u . (W_r f), W^(k)^T h = u . (W_r^T h),
                                    g = h . (W_r f)
                           backward 2 x the forward   (both operands of each)
    [B, B] score matrices  forward  2B^2 D + 2B^2 F + 2B^2 E   S_tag, S_img, S_user
                           backward 2 x the forward
    vocabulary tag scores  forward  2BDY, backward 2 x (tensor_vocabulary: S_tag is [B, Y])
  mcll
    logits                 forward  2B(F + 1)Y        queries [B, F + 1] x tag table^T [F + 1, Y]
                           backward 4B(F + 1)Y        (d queries, d table)
(`axis_sides` computes W^(k)^T h as (u (x) h) [B, E D] x W [E D, F]: the same 2BEDF, and the
small contraction with u is folded into it; the count is the model docstring's.)
At the default shape that is 13.82 GFLOP of axis contractions in a tensor step against 0.63 of
head, 0.07 of small contractions and 0.26 of [B, B] matrices; 4.62 (Y = 10,000) and 46.2
(Y = 100,000) GFLOP of logits in an MCLL step.

FLOP/s are reported as a fraction of this machine's fp32 matmul peak, measured in the same run
(the 2048^3 jitted matmul of benchmarks/common.py's matmul_peak), just before each variant.
Peak memory: XLA's memory_analysis() of the compiled step (arguments + outputs + temporaries -
the aliased, i.e. donated, bytes) and the process's peak RSS after the variant's timed steps
(resource.getrusage: a high-water mark, so it covers every variant run before it too, and their
pieces; variants run in the order given, `--variants=mcll_100k` alone gives its own).

Pieces (`--pieces`) time each part of a step alone (forward and backward, the backward against
random cotangents): the image head; for the tensor the axis contractions with the small ones
(`hashjax.models.tensor.axis_sides`), the three [B, B] matrices, the mining (candidates,
negatives and hinge, with the hinge's gradient wrt the scores), the whole loss's value_and_grad;
for MCLL the logits matmul and the loss; and the optimizer update.

Load from other jobs on the machine changes every number: os.getloadavg() is recorded before and
after, and each rate is the median of `--repeats` timed windows of `--timed_steps` steps.
"""

import json
import os
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import veit as veit_experiment
from benchmarks.common import (matmul_peak, median_seconds, memory_analysis, peak_rss_bytes,
                               timed_windows, train_step_and_state)
from hashjax import models
from hashjax.data.spec import DatasetSpec
from hashjax.losses import targets, triplet
from hashjax.models import tensor as tensor_lib


def define_flags() -> None:
  """The flags; defined when the script runs (not at import: other commands share flag names)."""
  flags.DEFINE_string("out", None, "Write the results as JSON here.")
  flags.DEFINE_list("variants", list(VARIANTS), "Variants to time, in this order.")
  flags.DEFINE_integer("timed_steps", 10, "Steps per timed window.")
  flags.DEFINE_integer("repeats", 5, "Timed windows per variant (median reported).")
  flags.DEFINE_bool("pieces", True, "Also time the pieces of each step.")
  flags.DEFINE_integer("piece_repeats", 10, "Timed calls per piece (median).")
  flags.DEFINE_float("peak_seconds", 3.0, "Duration of each matmul peak timing.")
  flags.DEFINE_integer("batch_size", 256, "Posts per step (the config's is 256).")
  flags.DEFINE_integer("num_users", 5000, "Users of the synthetic data.")
  flags.DEFINE_integer("seed", 0, "Seed of the data and the models.")


N, T = 2048, 8                  # image features, hashtag slots
POOL = 10                       # distinct batches per vocabulary
TAG_ZIPF, USER_ZIPF = 1.0, 0.8  # p ~ 1 / (rank + 1)^s

# name -> (experiments/veit.py model, its other options, hashtags)
VARIANTS = {"tensor": ("tensor", "", 10_000),
            "tensor_vocabulary": ("tensor", "tags_from=vocabulary", 10_000),
            "mcll_10k": ("mcll", "", 10_000), "mcll_100k": ("mcll", "", 100_000)}


# ---------------------------------------------------------------------------------------------
# Synthetic batches.


def make_pool(key, num_tags: int, num_users: int, batch_size: int) -> list[dict]:
  """POOL batches of the synthetic data (module docstring), as device arrays."""
  tag_logp = -TAG_ZIPF * jnp.log(jnp.arange(1, num_tags + 1, dtype=jnp.float32))
  user_logp = -USER_ZIPF * jnp.log(jnp.arange(1, num_users + 1, dtype=jnp.float32))

  @jax.jit
  def sample(key):
    ks = jax.random.split(key, 4)
    b = batch_size
    # Gumbel-top-T on log p: T draws without replacement; the first `count` are the post's.
    _, ids = jax.lax.top_k(tag_logp + jax.random.gumbel(ks[0], (b, num_tags)), T)
    count = jnp.minimum(1 + jax.random.poisson(ks[1], 1.7, (b,)), T)
    user = jax.random.categorical(ks[2], user_logp, shape=(b,)).astype(jnp.int32)
    return {"features": jax.nn.relu(jax.random.normal(ks[3], (b, N))),
            "user_index": user, "user_train_posts": jnp.full((b,), 10, jnp.int32),
            "tag_ids": ids.astype(jnp.int32), "tag_mask": jnp.arange(T)[None, :] < count[:, None]}

  return [jax.block_until_ready(sample(jax.random.fold_in(key, i))) for i in range(POOL)]


def pool_stats(pool: list[dict]) -> dict:
  users = [np.asarray(b["user_index"]) for b in pool]
  distinct = [len(np.unique(u)) for u in users]
  tags = np.concatenate([np.asarray(b["tag_ids"])[np.asarray(b["tag_mask"])] for b in pool])
  counts = np.bincount(tags)
  return {"tags_per_post": float(np.mean([np.asarray(b["tag_mask"]).sum(1).mean() for b in pool])),
          "distinct_users_per_batch": float(np.mean(distinct)),
          "posts_of_the_most_active_user_per_batch": float(np.mean(
              [np.bincount(u).max() for u in users])),
          "top_tag_share": float(counts.max() / counts.sum()),
          "distinct_tags_in_pool": int((counts > 0).sum())}


# ---------------------------------------------------------------------------------------------
# FLOP counts and timing helpers.


def useful_flops(model_name: str, model, b: int, y: int, vocabulary: bool = False) -> dict:
  """Useful FLOPs of one step by part (module docstring)."""
  f = model.hidden[-1]
  flops = {"image_head": 4 * b * N * f}
  if model_name == "tensor":
    d, e = model.tag_dim, model.user_dim
    flops["axis_contractions"] = 3 * (4 * b * e * d * f)
    flops["small_contractions"] = 3 * (4 * b * e * d + 2 * b * e * f)
    flops["bb_matrices"] = 3 * (2 * b * b * (d + f + e))
    if vocabulary:
      flops["vocabulary_tag_scores"] = 3 * (2 * b * d * y)
  else:
    flops["logits"] = 3 * (2 * b * (f + 1) * y)
  flops["total"] = sum(flops.values())
  return flops


# ---------------------------------------------------------------------------------------------
# Pieces of the step.


def time_pieces(model_name, model, objective, tx, state, batch, repeats: int) -> dict:
  """ms of each part of the step alone (module docstring), on one batch."""
  params = state.params
  variables = state.variables()
  b = batch["features"].shape[0]
  rng = jax.random.PRNGKey(2)  # a raw key, as the step's fold_in(state.key, step)
  keys = iter(jax.random.split(jax.random.key(1), 16))
  cot = lambda shape: jax.random.normal(next(keys), shape)
  module = model.module()

  def head(image_params, x):
    out, _ = module.apply({**variables, "params": {**params, "image": image_params}}, x, True,
                          method=lambda m, x, t: m.image(x, t), rngs={"dropout": rng},
                          mutable=["batch_stats"])
    return out

  f_shape = jax.eval_shape(head, params["image"], batch["features"]).shape
  f_cot = cot(f_shape)
  head_grad = jax.jit(jax.grad(lambda p, x: jnp.vdot(head(p, x), f_cot)))

  def loss_fn(p):
    loss, _, _ = objective(model, {**variables, "params": p}, batch, rng)
    return loss

  loss_grad = jax.jit(jax.value_and_grad(loss_fn))
  _, grads = loss_grad(params)

  @jax.jit
  def update(grads, opt_state, p):
    updates, opt_state = tx.update(grads, opt_state, p)
    return model.project(optax.apply_updates(p, updates)), opt_state

  fns = {"image_head_fwd_bwd": lambda: head_grad(params["image"], batch["features"])}
  f = jax.nn.relu(cot(f_shape))
  if model_name == "tensor":
    w = params["tensor"]
    e, d, _ = w.shape
    u, h = cot((b, e)), cot((b, d))
    side_cots = (cot((b, d)), cot(f_shape), cot((b, e)))
    sides = jax.jit(jax.grad(
        lambda w, f, u, h: sum(jnp.vdot(s, c) for s, c in zip(
            tensor_lib.axis_sides(w, f, u, h), side_cots)), argnums=(0, 1, 2, 3)))
    bb_cots = [cot((b, b)) for _ in range(3)]
    q, i, g = (cot((b, d)), cot(f_shape), cot((b, e)))
    bb = jax.jit(jax.grad(
        lambda q, i, g, h, f, u: sum(jnp.vdot(s, c) for s, c in zip(
            (q @ h.T, i @ f.T, g @ u.T), bb_cots)), argnums=(0, 1, 2, 3, 4, 5)))
    label_key, negative_key = jax.random.split(rng)
    positive, has_positive = targets.uniform_positive(label_key, batch["tag_ids"],
                                                      batch["tag_mask"])
    scores = cot((3, b, b))

    @jax.jit
    def mining(scores):
      valid = triplet.valid_candidates(batch["tag_ids"], batch["tag_mask"], positive,
                                       has_positive, batch["user_index"])
      negatives = triplet.choose_negatives(negative_key, scores, valid)
      return jax.grad(lambda s: triplet.triplet_hinge(s, negatives, objective.margin)[0].sum()
                      )(scores)

    fns.update({"axis_contractions_fwd_bwd": lambda: sides(w, f, u, h),
                "bb_matrices_fwd_bwd": lambda: bb(q, i, g, h, f, u),
                "mining_fwd_bwd": lambda: mining(scores)})
  else:
    table = model.tags(variables)
    queries = cot((b, table.shape[1]))
    logits_cot = cot((b, table.shape[0]))
    logits = jax.jit(jax.grad(lambda q, t: jnp.vdot(q @ t.T, logits_cot), argnums=(0, 1)))
    fns["logits_fwd_bwd"] = lambda: logits(queries, table)
  fns.update({"loss_value_and_grad": lambda: loss_grad(params),
              "optimizer_update": lambda: update(grads, state.opt_state, params)})
  return {k: 1e3 * v for k, v in median_seconds(fns, repeats).items()}


# ---------------------------------------------------------------------------------------------


def run_variant(name: str, pools: dict) -> dict:
  f = flags.FLAGS
  model_name, options, num_tags = VARIANTS[name]
  variant_arg = ",".join(p for p in (f"model={model_name}", options) if p)
  spec = DatasetSpec(feature_dim=N, user_meta_dim=0, num_tags=num_tags, num_users=f.num_users,
                     max_tags_per_post=T)
  if num_tags not in pools:
    pools[num_tags] = make_pool(jax.random.key(f.seed + num_tags), num_tags, f.num_users,
                                f.batch_size)
  pool = pools[num_tags]
  config = veit_experiment.get_config(variant_arg)
  config.batch_size = f.batch_size
  model = models.make_model(config.model, spec)
  step, state, objective, tx = train_step_and_state(config, model, spec, f.seed + 1)
  flops = useful_flops(model_name, model, f.batch_size, num_tags,
                       vocabulary=config.loss.get("tag_candidates") == "vocabulary")

  compile_start = time.perf_counter()
  memory = memory_analysis(step.lower(state, pool[0]).compile())
  state, _ = step(state, pool[0])  # compiles (the call's own cache) and runs once
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - compile_start

  load = os.getloadavg()
  peak = matmul_peak(f.peak_seconds)
  sec, state, metrics = timed_windows(step, state, pool, f.timed_steps, f.repeats)
  out = {"variant": name, "config": f"experiments/veit.py:{variant_arg}",
         "model": config.model.to_dict(), "loss": config.loss.to_dict(),
         "optimizer": config.optimizer.to_dict(), "learning_rate": config.learning_rate,
         "num_tags": num_tags, "data": pool_stats(pool), "compile_s": compile_s,
         "load_at_start": load, "matmul_peak_gflops": peak / 1e9,
         "useful_gflop_per_step": {k: v / 1e9 for k, v in flops.items()},
         "ms_per_step": 1e3 * sec, "posts_per_s": f.batch_size / sec,
         "gflops": flops["total"] / sec / 1e9, "fraction_of_peak": flops["total"] / sec / peak,
         "xla_memory_bytes": memory, "peak_rss_bytes_after_step": peak_rss_bytes(),
         "last_step_metrics": {k: float(v) for k, v in metrics.items()}}
  rss = out["peak_rss_bytes_after_step"]
  print(f"  {name:10s} {out['ms_per_step']:8.1f} ms/step {out['posts_per_s']:8,.0f} posts/s "
        f"{flops['total'] / 1e9:6.2f} GFLOP/step {out['gflops']:6.1f} GFLOP/s "
        f"= {out['fraction_of_peak']:.3f} of {peak / 1e9:.1f}; XLA peak "
        f"{memory['peak'] / 2**20:,.0f} MiB, RSS {rss / 2**20:,.0f} MiB (load {load[0]:.2f})",
        flush=True)
  if f.pieces and not options:  # the pieces are those of the variants' own form
    pieces = time_pieces(model_name, model, objective, tx, state, pool[0], f.piece_repeats)
    pieces["full_step"] = out["ms_per_step"]
    out["pieces_ms"] = pieces
    print("    pieces (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in pieces.items()), flush=True)
    out["peak_rss_bytes_after_pieces"] = peak_rss_bytes()
  return out


def main(argv):
  del argv
  f = flags.FLAGS
  unknown = sorted(set(f.variants) - set(VARIANTS))
  if unknown:
    raise app.UsageError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
  load_before = os.getloadavg()
  print(f"load average before: {load_before}", flush=True)
  results = {"machine": {"nproc": os.cpu_count(), "jax": jax.__version__},
             "shape": {"n": N, "F": 300, "D": 300, "E": 50, "B": f.batch_size, "T": T,
                       "num_users": f.num_users, "tag_zipf": TAG_ZIPF, "user_zipf": USER_ZIPF},
             "load_before": load_before, "variants": []}
  pools = {}
  for name in f.variants:
    results["variants"].append(run_variant(name, pools))
  results["load_after"] = os.getloadavg()

  print(f"\nB={f.batch_size}; load {load_before} -> {results['load_after']}")
  print("| variant | hashtags | posts/s | ms/step | GFLOP/step | GFLOP/s | matmul peak GFLOP/s "
        "| fraction of peak | XLA peak memory (MiB) | peak RSS (MiB) |")
  print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for r in results["variants"]:
    print(f"| {r['variant']} | {r['num_tags']:,} | {r['posts_per_s']:,.0f} "
          f"| {r['ms_per_step']:.1f} | {r['useful_gflop_per_step']['total']:.2f} "
          f"| {r['gflops']:.1f} | {r['matmul_peak_gflops']:.1f} | {r['fraction_of_peak']:.3f} "
          f"| {r['xla_memory_bytes']['peak'] / 2**20:,.0f} "
          f"| {r['peak_rss_bytes_after_step'] / 2**20:,.0f} |")
  if f.pieces:
    print("\nms per piece, each timed alone (full_step: the timed step above)")
    for r in (r for r in results["variants"] if "pieces_ms" in r):
      print(f"| {r['variant']} | " + " | ".join(f"{k} {v:.1f}"
                                                 for k, v in r["pieces_ms"].items()) + " |")
  if f.out:
    with open(f.out, "w") as fh:
      json.dump(results, fh, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
