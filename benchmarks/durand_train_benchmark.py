r"""Training-step throughput of Durand et al.'s model: the history GRU, MUTAN, the word-vector
tag tower and the softmax averaged over users.

  python -m benchmarks.durand_train_benchmark --out=/tmp/durand_train.json

The step is the real one: `hashjax.training.trainer.make_train_step` with the objective of the
config's loss (`hashjax.training.objectives.make_objective`) and the optimizer of
`hashjax.training.optimizers.make_optimizer`, for the config of `experiments/durand.py`
(model=ours: fusion "product", fixed word vectors, Adam, softmax with average="users", eq. 9),
jitted with the state donated as in `train_and_evaluate` (benchmarks/common.py's
train_step_and_state). The executable timed is the one `step.lower(state, batch).compile()`
returns (the same program the jit call would run; compiled once, its cost analysis read off it).

Shape: d_u = 1024 (the paper's GRU width and the model's default; `--user_dim`); the other
widths d_i = d_t = d_v = d_c = d = phi_tag's hidden = 512, the model's defaults (`--dims`;
experiments/durand.py trains with 256, --dims=256 gives its shape); MUTAN rank R = 5;
n = 2048 image features (ResNet-50's pooled size), w = 300-d word vectors (GloVe's),
Y = 10,000 hashtags with the softmax over all of them (`--num_tags`), T = 16 tag slots
(config.max_tags). A batch holds `--posts_per_batch` = 1,600 posts as S = 1600 / L user
sequences of L posts (`--history_lengths` 10, 50, 200: 160 x 10, 32 x 50, 8 x 200; 8 x 200 is
experiments/durand.py's own batch, batch_size 8 sequences of seq_len 200, and is the headline
row). Each post is scored against the L' < L posts of its sequence before it.

The loss is experiments/durand.py's with vocabulary="all" in place of "seen": every synthetic
hashtag counts as seen (num_seen_tags = Y), so the two are the same softmax; "seen" needs the
dataset's spec in make_objective, which train_step_and_state does not pass. `--loss` (softmax
or sampled_softmax keep the experiment's average="users"; another replaces config.loss) and
`--loss_options` (key=value) change it.

Then the large vocabulary (`--large_num_tags` = 500,000, 0 skips it): the same model and batch
at L = `--large_history_length` = 200 with `--large_loss` = sampled_softmax
(hashjax.training.objectives; its defaults unless `--large_loss_options`: 1,024 log-uniform
samples shared by the batch, accidental hits removed; the tag tower runs on the P + S rows
needed only), run as a child process of its own so that its peak RSS (getrusage
RUSAGE_CHILDREN ru_maxrss) is its alone; reported with posts/s and XLA's memory_analysis.
`--vocab_shards=V` splits the state's hashtag axes over V devices as the trainer does
(hashjax.training.sharding): XLA's memory analysis is then per device. The per-device memory
at Y = 500k (8 simulated CPU devices; their times share one CPU and mean nothing):

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m benchmarks.durand_train_benchmark \
      --num_tags=500000 --history_lengths=200 --loss=sampled_softmax --vocab_shards=8 \
      --pieces=false --large_num_tags=0 --timed_steps=1 --repeats=1 --out=F.json

The full softmax at 500k is not run (its [P, Y] logits are 3.2 GB, the tag tower over Y
0.4 TFLOP a step). By hand:

  python -m benchmarks.durand_train_benchmark --num_tags=500000 --history_lengths=200 \
      --loss=sampled_softmax --loss_options=num_samples=4096 --large_num_tags=0 --out=F.json

Data: synthetic posts written through `hashjax.data.writer.DatasetWriter` to a temporary
directory and read back by `hashjax.data.pipeline.sequence_batches` with the trainer's fields
(`trainer.batch_fields`), so the batches are the trainer's [S, L, ...] layout (seq_mask,
target_mask, tag_ids / tag_mask [S, L, T], features [S, L, n]). `--pool` batches per history
length are read before the timing and held on the device (the input pipeline is not timed; it
has its own benchmark). Users have max(history_lengths) posts each, all in the training split,
so every sequence is full and every post is a target. Features relu(N(0, 1)); 1 + Poisson(1.7)
hashtags per post (cap T), distinct, Zipf p(y) ~ 1 / (y + 1); word vectors N(0, 1 / w).

Useful FLOPs of a step (matmuls only, analytic; P = S L posts, every position runs the GRU;
x and the word vectors are data, so no gradient wrt them; a backward is the weight gradient,
plus the input gradient where the input depends on parameters):
  post fusion      forward  P (2 n d_i + 2 w d_t)             W_im f_t, W_tag y_t
                   backward the same (weight gradients only)
  GRU              forward  P 2 (3 d_u) (d_i + d_u)           the 3 input and 3 recurrent
                   backward 2 x the forward                   denses of flax's GRUCell
  image head v     forward  P 2 n d_v, backward the same (dW only)
  MUTAN            forward  P 2 (d_v d_c + d_u d_c + 2 R d_c^2), backward 2 x
  phi_iu           forward  P 2 d_c d, backward 2 x
  tag tower        forward  Y 2 (w h + h d), backward 2 Y w h + 4 Y h d   (psi is fixed)
  logits           forward  2 P d Y, backward 4 P d Y
(sampled_softmax: the tag tower on the P + S rows it needs in place of Y, and S + 1 scores a
post in place of Y.)
XLA's cost analysis (`compiled.cost_analysis()["flops"]`, every op, not only matmuls) is
recorded too, but it counts a while loop's body once, not once per iteration (checked: a
jax.lax.scan of 10 and of 50 steps report the same flops), so it misses (L - 1) of the GRU's L
forward and L backward steps. Inside the loops are only the recurrent products (h W_h forward,
dA W_h^T backward; hashjax.models.gru takes the input projection and dW_h out of them), so
`xla_corrected` adds (L - 1) S 2 x 2 d_u (3 d_u) back analytically (the scan bodies'
elementwise ops stay counted once). The
fractions of peak use the analytic count (`fraction_of_peak`) and the corrected XLA count
(`fraction_of_peak_xla_corrected`); the two agree to within XLA's elementwise ops
(166.0 and 166.3 GFLOP a step at the default shape).

FLOP/s are reported as a fraction of this machine's fp32 matmul peak, measured in the same run
(the 2048^3 jitted matmul of benchmarks/common.py's matmul_peak), just before each history
length. Peak memory: XLA's memory_analysis() of the compiled step (arguments + outputs +
temporaries - donated bytes) and the process's peak RSS after the timed steps.

Pieces (`--pieces`, full softmax only) time each part of a step alone, forward and backward against random
cotangents, on the first batch, with their analytic FLOPs and fraction of peak: the history
(post fusion and GRU scan: `_History`), the GRU scan alone (`UserStates` on random post
vectors, gradient wrt them too), the rest of the query tower (image head, MUTAN, phi_iu, from
given user states), the tag tower over the vocabulary, the logits matmul alone, the softmax
(logits + cross-entropy), the whole loss's value_and_grad and the Adam update.

Load from other jobs on the machine changes every number: os.getloadavg() is recorded before
and after each history length, and each rate is the median of `--repeats` timed windows of
`--timed_steps` steps.
"""

import ast
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from benchmarks.common import (matmul_peak, median_seconds, memory_analysis, peak_rss_bytes,
                               timed_windows, train_step_and_state)
from experiments import durand as durand_experiment
from hashjax import models
from hashjax.data import format as fmt
from hashjax.data import pipeline
from hashjax.data.reader import PostDataset
from hashjax.data.writer import DatasetWriter
from hashjax.training import objectives, trainer


def define_flags() -> None:
  """The flags; defined when the script runs (not at import: other commands share flag names)."""
  flags.DEFINE_string("out", None, "Write the results as JSON here.")
  flags.DEFINE_list("history_lengths", ["10", "50", "200"],
                    "Posts per user sequence (seq_len), one measurement each, in this order.")
  flags.DEFINE_integer("posts_per_batch", 1600,
                       "Posts per step: S = posts_per_batch / L sequences of L posts.")
  flags.DEFINE_integer("num_tags", 10_000, "Hashtag vocabulary Y.")
  flags.DEFINE_integer("user_dim", 1024, "d_u, the GRU's width (the paper's 1024).")
  flags.DEFINE_integer("dims", 512, "d_i = d_t = d_v = d_c = d and phi_tag's hidden width "
                       "(512: the model's defaults; experiments/durand.py's is 256).")
  flags.DEFINE_integer("feature_dim", 2048, "n, image features per post (ResNet-50's 2048).")
  flags.DEFINE_integer("word_dim", 300, "w, word-vector length (GloVe's 300).")
  flags.DEFINE_string("loss", "softmax", "config.loss.name (sampled_softmax: the 500k run).")
  flags.DEFINE_list("loss_options", [], "key=value options of config.loss (replace the "
                    "experiment's when --loss is not softmax).")
  flags.DEFINE_integer("timed_steps", 5, "Steps per timed window.")
  flags.DEFINE_integer("repeats", 3, "Timed windows per history length (median reported).")
  flags.DEFINE_integer("pool", 4, "Distinct batches per history length.")
  flags.DEFINE_bool("pieces", True, "Also time the pieces of each step.")
  flags.DEFINE_integer("piece_repeats", 5, "Timed calls per piece (median).")
  flags.DEFINE_float("peak_seconds", 3.0, "Duration of each matmul peak timing.")
  flags.DEFINE_integer("seed", 0, "Seed of the data and the models.")
  flags.DEFINE_integer("large_num_tags", 500_000, "Then this vocabulary with --large_loss, in a "
                       "process of its own (peak memory); 0: skip it.")
  flags.DEFINE_string("large_loss", "sampled_softmax", "The large vocabulary's loss.")
  flags.DEFINE_list("large_loss_options", [], "Its key=value options (the objective's defaults "
                    "otherwise).")
  flags.DEFINE_integer("large_history_length", 200, "Its posts per user sequence.")
  flags.DEFINE_integer("vocab_shards", 1, "Split every hashtag axis of the train state over this "
                       "many devices (hashjax.training.sharding; on CPU run with XLA_FLAGS="
                       "--xla_force_host_platform_device_count=V): XLA's memory is then per "
                       "device, and the times are of V simulated devices sharing the CPU.")


T = 16          # hashtag slots per post (config.max_tags)
TAG_ZIPF = 1.0  # p(y) ~ 1 / (y + 1)^s
MEAN_EXTRA_TAGS = 1.7


# ---------------------------------------------------------------------------------------------
# Synthetic data, written as a dataset and read back through the sequence pipeline.


def write_dataset(directory: str, *, num_users: int, posts_per_user: int, num_tags: int,
                  feature_dim: int, word_dim: int, seed: int) -> PostDataset:
  """num_users users of posts_per_user posts each, every post in the training split."""
  rng = np.random.default_rng(seed)
  cdf = np.cumsum(1.0 / np.arange(1, num_tags + 1) ** TAG_ZIPF)
  writer = DatasetWriter(directory, feature_dim=feature_dim, num_tags=num_tags,
                         user_meta_dim=0, split_scheme="user_disjoint",
                         posts_per_shard=max(posts_per_user, 1024))
  for user in range(num_users):
    n = posts_per_user
    # Draws without replacement = draws with replacement, repeats skipped: 3T Zipf draws per
    # post, the first `count` distinct ones kept (fewer only if 3T draws hold fewer distinct).
    draws = np.searchsorted(cdf, rng.random((n, 3 * T)) * cdf[-1], side="right")
    draws = np.minimum(draws, num_tags - 1)
    count = np.minimum(1 + rng.poisson(MEAN_EXTRA_TAGS, n), T)
    tags = []
    for row, c in zip(draws, count):
      _, first = np.unique(row, return_index=True)
      tags.append(row[np.sort(first)][:c].astype(np.int32))
    writer.add_block(post_id=user * n + np.arange(n), user_id=np.full(n, user),
                     timestamp=np.arange(n), split=np.full(n, fmt.SPLIT_CODES["train"]),
                     features=np.maximum(rng.standard_normal((n, feature_dim), np.float32), 0),
                     tags=tags)
  words = (rng.standard_normal((num_tags, word_dim), np.float32) / np.sqrt(word_dim))
  writer.finalize(vocab=[f"tag{i}" for i in range(num_tags)], word_vectors=words,
                  provenance={"generator": "benchmarks.durand_train_benchmark"})
  return PostDataset(directory)


def read_pool(dataset, model, objective, config, count: int) -> list[dict]:
  """`count` batches of the trainer's pipeline and fields (train_and_evaluate's
  _train_iterator for layout "sequences"), on the device."""
  fields = trainer.batch_fields(model, objective)
  batches = iter(pipeline.sequence_batches(
      dataset, batch_size=config.batch_size, seed=config.seed, seq_len=config.data.seq_len,
      context_len=config.data.context_len, fields=fields, max_tags=config.max_tags,
      num_threads=1, prefetch=1))
  pool = []
  for _ in range(count):
    batch = next(batches)  # natural hashtag distribution: tag_distribution.apply is a no-op
    pool.append(jax.block_until_ready({k: jax.device_put(batch[k]) for k in fields}))
  return pool


# ---------------------------------------------------------------------------------------------
# FLOP counts.


def gru_flops_forward(model, positions: int) -> int:
  return positions * 2 * 3 * model.user_dim * (model.post_dim + model.user_dim)


def useful_flops(model, feature_dim: int, posts: int, objective) -> dict | None:
  """Useful matmul FLOPs of one step by part, forward + backward (module docstring); None for
  a loss other than softmax and sampled_softmax."""
  n, (y, w) = feature_dim, model.words.shape
  di, du, dv, dc, d = (model.post_dim, model.user_dim, model.image_dim, model.fused_dim,
                       model.joint_dim)
  h, r, p = model.tag_hidden, model.mutan_rank, posts
  if isinstance(objective, objectives.Softmax):
    rows, scored = y, y  # the tower runs on every hashtag; "seen" slices its output
    if objective.vocabulary == "seen":
      scored = objective.num_seen_tags or y
  elif getattr(objective, "name", "") == "sampled_softmax":
    rows, scored = p + objective.num_samples, objective.num_samples + 1  # y and the S samples
  else:
    return None
  mutan = 2 * (dv * dc + du * dc + 2 * r * dc * dc)
  flops = {"post_fusion": 2 * p * (2 * n * di + 2 * w * di),
           "gru": 3 * gru_flops_forward(model, p),
           "image_head": 2 * p * 2 * n * dv,
           "mutan": 3 * p * mutan,
           "joint": 3 * p * 2 * dc * d,
           "tag_tower": rows * 2 * (w * h + h * d) + 2 * rows * w * h + 4 * rows * h * d,
           "logits": 3 * 2 * p * d * scored}
  flops["total"] = sum(flops.values())
  return flops


def xla_flops(compiled) -> float | None:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


# ---------------------------------------------------------------------------------------------
# Pieces of the step.


def time_pieces(model, objective, tx, state, batch, flops: dict, peak: float,
                repeats: int) -> dict:
  """ms, GFLOP and fraction of peak of each part of the step alone (module docstring), for the
  full softmax. Every jitted piece takes the parameters and the batch as arguments (closed-over
  arrays would be compile-time constants, which XLA folds: the tag-vector sums of a constant
  batch would be precomputed)."""
  module = model.module()
  params, model_state = state.params, state.model_state
  rng = jax.random.PRNGKey(2)  # a raw key, as the step's fold_in(state.key, step)
  keys = iter(jax.random.split(jax.random.key(1), 16))
  cot = lambda shape: jax.random.normal(next(keys), shape)
  s, length = batch["seq_mask"].shape
  p = s * length
  with_part = lambda ps, part, value: {**model_state, "params": {**ps, part: value}}

  def history_states(ps, hp, b):
    return module.apply(with_part(ps, "history", hp), b,
                        method=lambda m, b: m.history(m.words(), b, b["seq_mask"]))[1]

  states_cot = cot((s, length, model.user_dim))
  history_grad = jax.jit(jax.grad(
      lambda hp, ps, b, c: jnp.vdot(history_states(ps, hp, b), c)))
  posts = jax.nn.selu(cot((s, length, model.post_dim)))
  gru_grad = jax.jit(jax.grad(lambda hp, ps, x, u, c: jnp.vdot(module.apply(
      with_part(ps, "history", hp), x, u, method=lambda m, x, u: m.history.gru(x, u))[1], c),
      argnums=(0, 2)))
  users = cot((s, length, model.user_dim))
  query_cot = cot((s, length, model.joint_dim))
  rest_parts = ("image", "fusion", "joint")
  rest_grad = jax.jit(jax.grad(lambda rp, ps, f, u, c: jnp.vdot(module.apply(
      {**model_state, "params": {**ps, **rp}}, f, u, True,
      method=lambda m, f, u, t: m._score_query(f, u, t)), c), argnums=(0, 3)))
  rest_params = {k: params[k] for k in rest_parts}
  table_shape = jax.eval_shape(lambda: model.tags(state.variables())).shape
  table_cot = cot(table_shape)
  tags_grad = jax.jit(jax.grad(lambda tp, ps, c: jnp.vdot(
      module.apply(with_part(ps, "tags", tp), method=lambda m: m.tag_table()), c)))

  def loss_fn(params_, b, key):
    loss, _, _ = objective(model, {**model_state, "params": params_}, b, key)
    return loss

  loss_grad = jax.jit(jax.value_and_grad(loss_fn))
  _, grads = loss_grad(params, batch, rng)

  @jax.jit
  def update_fn(grads, opt_state, params_):
    updates, opt_state = tx.update(grads, opt_state, params_)
    return model.project(optax.apply_updates(params_, updates)), opt_state

  fns = {"history_fwd_bwd": lambda: history_grad(params["history"], params, batch, states_cot),
         "gru_scan_fwd_bwd": lambda: gru_grad(params["history"], params, posts,
                                              batch["seq_mask"], states_cot),
         "query_rest_fwd_bwd": lambda: rest_grad(rest_params, params, batch["features"], users,
                                                 query_cot),
         "tag_tower_fwd_bwd": lambda: tags_grad(params["tags"], params, table_cot)}
  piece_flops = {"history_fwd_bwd": flops["post_fusion"] + flops["gru"],
                 "gru_scan_fwd_bwd": flops["gru"],
                 "query_rest_fwd_bwd": (flops["image_head"] + flops["mutan"] + flops["joint"]),
                 "tag_tower_fwd_bwd": flops["tag_tower"]}
  queries, table = cot((p, table_shape[1])), cot(table_shape)
  logits_cot = cot((p, table_shape[0]))
  labels = jax.random.randint(next(keys), (p,), 0, table_shape[0])
  logits_grad = jax.jit(jax.grad(lambda q, t, c: jnp.vdot(q @ t.T, c), argnums=(0, 1)))
  softmax_grad = jax.jit(jax.grad(lambda q, t, y: optax.softmax_cross_entropy_with_integer_labels(
      q @ t.T, y).mean(), argnums=(0, 1)))
  fns["logits_matmul_fwd_bwd"] = lambda: logits_grad(queries, table, logits_cot)
  fns["softmax_fwd_bwd"] = lambda: softmax_grad(queries, table, labels)
  piece_flops["logits_matmul_fwd_bwd"] = piece_flops["softmax_fwd_bwd"] = flops["logits"]
  fns["loss_value_and_grad"] = lambda: loss_grad(params, batch, rng)
  fns["adam_update"] = lambda: update_fn(grads, state.opt_state, params)
  piece_flops["loss_value_and_grad"] = flops["total"]
  ms = {k: 1e3 * v for k, v in median_seconds(fns, repeats).items()}
  out = {}
  for name, value in ms.items():
    out[name] = {"ms": value}
    if name in piece_flops:
      out[name].update(gflop=piece_flops[name] / 1e9,
                       fraction_of_peak=piece_flops[name] / (value / 1e3) / peak)
  return out


# ---------------------------------------------------------------------------------------------


def parse_options(items) -> dict:
  options = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      raise app.UsageError(f"--loss_options: expected key=value, got {item!r}")
    try:
      options[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      options[key] = value
  return options


SOFTMAX_FAMILY = ("softmax", "sampled_softmax")  # the experiment's options apply to both


def make_config(length: int, sequences: int):
  f = flags.FLAGS
  config = durand_experiment.get_config(f"model=ours,d_u={f.user_dim},dims={f.dims},"
                                        f"seed={f.seed}")
  config.batch_size = sequences
  config.data.seq_len, config.data.context_len = length, 0
  options = parse_options(f.loss_options)
  if f.loss in SOFTMAX_FAMILY:
    config.loss.name = f.loss
    config.loss.vocabulary = "all"  # = "seen" here: every hashtag is seen (module docstring)
    config.loss.update(options)
  else:
    config.loss = ml_collections.ConfigDict({"name": f.loss, **options})
  return config


def run_length(length: int, dataset) -> dict:
  f = flags.FLAGS
  if f.posts_per_batch % length:
    raise app.UsageError(f"--posts_per_batch={f.posts_per_batch} is not a multiple of the "
                         f"history length {length}")
  sequences = f.posts_per_batch // length
  config = make_config(length, sequences)
  model = models.make_model(config.model, dataset.spec, dataset)
  step, state, objective, tx = train_step_and_state(config, model, dataset.spec, f.seed + 1,
                                                    f.vocab_shards)
  pool = read_pool(dataset, model, objective, config, f.pool)
  posts = int(sum(int(b["seq_mask"].sum()) for b in pool) / len(pool))
  targets = int(sum(int(b["target_mask"].sum()) for b in pool) / len(pool))
  flops = useful_flops(model, dataset.feature_dim, sequences * length, objective)

  compile_start = time.perf_counter()
  compiled = step.lower(state, pool[0]).compile()
  compile_s = time.perf_counter() - compile_start
  memory = memory_analysis(compiled)
  raw_xla = xla_flops(compiled)
  # The scan bodies are counted once: add the other L - 1 recurrent products of the forward
  # and of the backward scan.
  recurrent = 2 * sequences * (length - 1) * 2 * model.user_dim * 3 * model.user_dim
  corrected = None if raw_xla is None else raw_xla + recurrent
  state, _ = compiled(state, pool[0])  # one step before the timing
  jax.block_until_ready(state)

  load = os.getloadavg()
  peak = matmul_peak(f.peak_seconds)
  sec, state, metrics = timed_windows(compiled, state, pool, f.timed_steps, f.repeats)
  total = flops["total"] if flops else corrected
  out = {"history_length": length, "sequences_per_batch": sequences,
         "posts_per_batch": posts, "targets_per_batch": targets,
         "config": "experiments/durand.py:model=ours,d_u=%d,dims=%d" % (f.user_dim, f.dims),
         "model": config.model.to_dict(), "loss": config.loss.to_dict(),
         "optimizer": config.optimizer.to_dict(), "learning_rate": config.learning_rate,
         "num_tags": dataset.num_tags, "vocab_shards": f.vocab_shards,
         "compile_s": compile_s, "load_at_start": load,
         "matmul_peak_gflops": peak / 1e9,
         "useful_gflop_per_step": flops and {k: v / 1e9 for k, v in flops.items()},
         "xla_cost_analysis_gflop": None if raw_xla is None else raw_xla / 1e9,
         "xla_corrected_gflop": None if corrected is None else corrected / 1e9,
         "ms_per_step": 1e3 * sec, "posts_per_s": posts / sec,
         "gflops": total / sec / 1e9, "fraction_of_peak": total / sec / peak,
         "fraction_of_peak_xla_corrected": (None if corrected is None
                                            else corrected / sec / peak),
         "xla_memory_bytes": memory, "peak_rss_bytes_after_step": peak_rss_bytes(),
         "load_at_end": os.getloadavg(),
         "last_step_metrics": {k: float(v) for k, v in jax.device_get(metrics).items()}}
  print(f"  L={length:4d} S={sequences:4d}: {out['ms_per_step']:8.1f} ms/step "
        f"{out['posts_per_s']:8,.0f} posts/s {total / 1e9:7.2f} GFLOP/step "
        f"(XLA corrected {(corrected or 0) / 1e9:7.2f}) {out['gflops']:6.1f} GFLOP/s "
        f"= {out['fraction_of_peak']:.3f} of {peak / 1e9:.1f}; XLA peak "
        f"{memory['peak'] / 2**20:,.0f} MiB, RSS {out['peak_rss_bytes_after_step'] / 2**20:,.0f}"
        f" MiB (load {load[0]:.2f}); compile {compile_s:.1f} s", flush=True)
  if f.pieces and isinstance(objective, objectives.Softmax):
    pieces = time_pieces(model, objective, tx, state, pool[0], flops, peak, f.piece_repeats)
    pieces["full_step"] = {"ms": out["ms_per_step"]}
    out["pieces"] = pieces
    print("    pieces (ms, fraction of peak): " + ", ".join(
        f"{k} {v['ms']:.1f}" + (f" ({v['fraction_of_peak']:.2f})" if "fraction_of_peak" in v
                                else "") for k, v in pieces.items()), flush=True)
  return out


def run_large_vocabulary() -> dict:
  """The --large_num_tags case (a sampled softmax) in a child process of its own, so that its
  peak RSS (RUSAGE_CHILDREN's ru_maxrss: the child is the only one waited for) is its own."""
  f = flags.FLAGS
  if f.large_loss not in objectives.OBJECTIVES:
    reason = (f"loss {f.large_loss!r} is not in hashjax.training.objectives (has "
              f"{sorted(objectives.OBJECTIVES)})")
    print(f"\nlarge-vocabulary case skipped: {reason}", flush=True)
    return {"skipped": reason}
  with tempfile.TemporaryDirectory(prefix="durand_bench_large_") as tmp:
    out = os.path.join(tmp, "large.json")
    cmd = [sys.executable, "-m", "benchmarks.durand_train_benchmark",
           f"--num_tags={f.large_num_tags}", f"--history_lengths={f.large_history_length}",
           f"--loss={f.large_loss}", f"--loss_options={','.join(f.large_loss_options)}",
           "--pieces=false", "--large_num_tags=0", f"--out={out}"]
    for name in ("posts_per_batch", "user_dim", "dims", "feature_dim", "word_dim",
                 "timed_steps", "repeats", "pool", "peak_seconds", "seed"):
      cmd.append(f"--{name}={getattr(f, name)}")
    print(f"\nlarge-vocabulary case, in a child process: {' '.join(cmd[1:])}", flush=True)
    done = subprocess.run(cmd, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          check=False)
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    if done.returncode:
      return {"failed": f"exit code {done.returncode}", "command": cmd[1:]}
    with open(out) as fh:
      child = json.load(fh)
  return {"command": cmd[1:], "peak_rss_bytes_of_the_process": child_rss, **child}


def main(argv):
  del argv
  f = flags.FLAGS
  lengths = [int(x) for x in f.history_lengths]
  if f.loss not in objectives.OBJECTIVES:
    raise app.UsageError(f"loss {f.loss!r} is not in hashjax.training.objectives (has: "
                         f"{sorted(objectives.OBJECTIVES)})")
  posts_per_user = max(lengths)
  num_users = -(-f.pool * f.posts_per_batch // posts_per_user)
  load_before = os.getloadavg()
  print(f"load average before: {load_before}", flush=True)
  results = {"machine": {"nproc": os.cpu_count(), "jax": jax.__version__,
                         "devices": [str(d) for d in jax.devices()]},
             "shape": {"n": f.feature_dim, "w": f.word_dim, "d_u": f.user_dim,
                       "d_i=d_t=d_v=d_c=d=tag_hidden": f.dims, "mutan_rank": 5,
                       "Y": f.num_tags, "T": T, "posts_per_batch": f.posts_per_batch,
                       "users": num_users, "posts_per_user": posts_per_user,
                       "tag_zipf": TAG_ZIPF, "tags_per_post": f"1 + Poisson({MEAN_EXTRA_TAGS})"},
             "load_before": load_before, "runs": []}
  with tempfile.TemporaryDirectory(prefix="durand_bench_") as tmp:
    start = time.perf_counter()
    dataset = write_dataset(os.path.join(tmp, "data"), num_users=num_users,
                            posts_per_user=posts_per_user, num_tags=f.num_tags,
                            feature_dim=f.feature_dim, word_dim=f.word_dim, seed=f.seed)
    print(f"wrote {dataset.num_posts:,} posts in {time.perf_counter() - start:.1f} s",
          flush=True)
    for length in lengths:
      results["runs"].append(run_length(length, dataset))
  results["load_after"] = os.getloadavg()

  runs = results["runs"]
  if len(runs) > 1:
    base = runs[0]["posts_per_s"]
    results["posts_per_s_relative_to_first_length"] = {
        str(r["history_length"]): r["posts_per_s"] / base for r in runs}
  print(f"\nY={f.num_tags:,}, d_u={f.user_dim}, dims={f.dims}, {f.posts_per_batch} posts/step, "
        f"loss {f.loss}, vocab_shards {f.vocab_shards}; load {load_before} -> "
        f"{results['load_after']}")
  print("| L | S | posts/s | ms/step | GFLOP/step | GFLOP/s | matmul peak GFLOP/s "
        "| fraction of peak | XLA peak memory (MiB) | peak RSS (MiB) |")
  print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for r in runs:
    gflop = r["gflops"] * r["ms_per_step"] / 1e3
    print(f"| {r['history_length']} | {r['sequences_per_batch']} | {r['posts_per_s']:,.0f} "
          f"| {r['ms_per_step']:.1f} | {gflop:.2f} | {r['gflops']:.1f} "
          f"| {r['matmul_peak_gflops']:.1f} | {r['fraction_of_peak']:.3f} "
          f"| {r['xla_memory_bytes']['peak'] / 2**20:,.0f} "
          f"| {r['peak_rss_bytes_after_step'] / 2**20:,.0f} |")
  if any("pieces" in r for r in runs):
    print("\nms per piece, each timed alone (fraction of peak in brackets)")
    for r in (r for r in runs if "pieces" in r):
      print(f"| L={r['history_length']} | " + " | ".join(
          f"{k} {v['ms']:.1f}" + (f" ({v['fraction_of_peak']:.2f})" if "fraction_of_peak" in v
                                  else "") for k, v in r["pieces"].items()) + " |")
  if f.large_num_tags:
    results["large_vocabulary"] = large = run_large_vocabulary()
    for r in large.get("runs", []):
      print(f"\nY={f.large_num_tags:,}, loss {f.large_loss} {f.large_loss_options}: "
            f"{r['posts_per_s']:,.0f} posts/s, {r['ms_per_step']:.1f} ms/step, fraction of peak "
            f"{r['fraction_of_peak']:.3f}; XLA peak {r['xla_memory_bytes']['peak'] / 2**20:,.0f}"
            f" MiB, the process's peak RSS {large['peak_rss_bytes_of_the_process'] / 2**20:,.0f}"
            " MiB")
  if f.out:
    with open(f.out, "w") as fh:
      json.dump(results, fh, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
