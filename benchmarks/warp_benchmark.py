r"""Speed of the WARP loss (value and gradient) for a two-tower model.

  python -m benchmarks.warp_benchmark --out=/tmp/warp_benchmark.json

Denton-like shape: B = 256 posts, T = 16 tag slots (2.7 positives per post on
average), Y = 10,000 tags, d = 64, max_trials = 1000. How many draws a positive
needs depends on how well the model already ranks it, so three score regimes are
timed: "init" (tiny random weights: every tag violates the margin), and "mid" /
"late" (queries planted close to their positives' rows: violators get rare and
some positives exhaust max_trials, the costly case for the sampler). For each,
drawing all max_trials at once is compared with blocks that stop when every
positive of the batch is done and with the work queue of ``warp_sample`` at
several (chunk_size, buffer_size); and the gathered-rows gradient of
``warp_loss_two_tower`` with a naive one through the dense [B, Y] score matrix.
"""

import json
import os

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import timed
from hashjax.losses import warp as losses


def define_flags() -> None:
  """The flags; defined when the script runs (not at import: other commands share flag names)."""
  flags.DEFINE_string("out", None, "Write the results as JSON here.")
  flags.DEFINE_float("seconds", 2.0, "Minimum timed duration per measurement.")


B, T, Y, D, MAX_TRIALS = 256, 16, 10_000, 64, 1000
# Planted query strength alpha -> (mean draws of found positives, share not found)
# here: 0 -> (1, 0%), 0.2 -> (~26, ~6%), 2 -> (~220, ~78%).
REGIMES = {"init": 0.0, "mid": 0.2, "late": 2.0}
# (chunk_size, buffer_size): draws per positive per loop step, positives in flight.
# (MAX_TRIALS, B * T): everything at once; (32, B * T): blocks of 32 draws for every
# positive, stopping when the whole batch is done; the rest: the work queue.
VARIANTS = [(MAX_TRIALS, B * T), (32, B * T), (32, 256), (128, 256), (256, 256), (512, 128)]
DEFAULT = (256, 256)


def make_batch(rng, alpha: float):
  """Positives (2.7 per post on average) and queries planted alpha-close to them."""
  table = rng.standard_normal((Y, D), dtype=np.float32) / np.sqrt(D)
  counts = np.clip(rng.poisson(1.7, size=B) + 1, 1, T)
  pos_ids = np.zeros((B, T), np.int32)
  pos_mask = np.arange(T)[None, :] < counts[:, None]
  for b in range(B):
    pos_ids[b, :counts[b]] = rng.choice(Y, size=counts[b], replace=False)
  planted = (table[pos_ids] * pos_mask[..., None]).sum(1) / np.sqrt(counts)[:, None]
  noise = 1e-3 * rng.standard_normal((B, D), dtype=np.float32)
  return jnp.asarray(alpha * planted + noise), jnp.asarray(table), jnp.asarray(pos_ids), \
      jnp.asarray(pos_mask)


def step_fn(chunk_size, buffer_size, dense: bool):
  """Jitted value_and_grad of the mean per-positive WARP loss."""
  def loss(queries, table, key, pos_ids, pos_mask):
    if dense:
      # Reference: the same sample, but the gradient flows through every score.
      scores = queries @ table.T
      sample = losses.warp_sample(key, scores, pos_ids, pos_mask, max_trials=MAX_TRIALS,
                                  chunk_size=chunk_size, buffer_size=buffer_size)
      pos = jnp.take_along_axis(scores, pos_ids, axis=1)
      neg = jnp.take_along_axis(scores, jnp.maximum(sample.neg_ids, 0), axis=1)
      per = losses.warp_loss(pos, neg, sample, pos_mask)
    else:
      per, sample = losses.warp_loss_two_tower(key, queries, table, pos_ids, pos_mask,
                                               max_trials=MAX_TRIALS, chunk_size=chunk_size,
                                               buffer_size=buffer_size)
    return per.sum() / pos_mask.sum(), sample
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))


def main(argv):
  del argv
  f = flags.FLAGS
  rng = np.random.default_rng(0)
  key = jax.random.key(0)
  results = {"machine": {"nproc": os.cpu_count(), "jax": jax.__version__},
             "shape": {"B": B, "T": T, "Y": Y, "d": D, "max_trials": MAX_TRIALS}, "rows": []}
  print("| regime | mean N (found) | not found | sampler | gradient | ms/step |")
  print("| --- | ---: | ---: | --- | --- | ---: |")
  for regime, alpha in REGIMES.items():
    queries, table, pos_ids, pos_mask = make_batch(rng, alpha)
    variants = [(c, r, False) for c, r in VARIANTS] + [DEFAULT + (True,)]
    for chunk, buffer, dense in variants:
      fn = step_fn(chunk, buffer, dense)
      (_, sample), _ = fn(queries, table, key, pos_ids, pos_mask)
      found = np.asarray(sample.found)
      active = np.asarray(pos_mask)
      mean_n = float(np.asarray(sample.num_draws)[found].mean())
      not_found = float((active & ~found).sum() / active.sum())
      seconds = timed(lambda: jax.block_until_ready(fn(queries, table, key, pos_ids, pos_mask)),
                      f.seconds)
      name = "all at once" if chunk >= MAX_TRIALS else f"{chunk} draws x {buffer} positives"
      grad = "dense [B, Y]" if dense else "gathered rows"
      results["rows"].append({"regime": regime, "chunk_size": chunk, "buffer_size": buffer,
                              "dense_grad": dense,
                              "mean_draws": mean_n, "not_found": not_found,
                              "ms_per_step": 1e3 * seconds})
      print(f"| {regime} | {mean_n:.1f} | {not_found:.1%} | {name} | {grad} "
            f"| {1e3 * seconds:.1f} |", flush=True)
  if f.out:
    with open(f.out, "w") as fh:
      json.dump(results, fh, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
