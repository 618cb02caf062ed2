r"""Throughput of chunked top-k over the vocabulary (evaluation, serving, retrieval).

  python -m benchmarks.topk_benchmark --out=/tmp/topk_benchmark.json

For each shape, scores = queries [N, d] @ tags [V, d]^T are never materialised whole; reported:
posts/s, the matmul's FLOP/s as a fraction of this machine's fp32 matmul peak (measured in the
same run with a large jitted matmul), and the numpy path used by non-two-tower scorers.
"""

import json
import os

from absl import app, flags
import jax
import numpy as np

from benchmarks.common import matmul_peak, timed
from hashjax.eval import topk


def define_flags() -> None:
  """The flags; defined when the script runs (not at import: other commands share flag names)."""
  flags.DEFINE_string("out", None, "Write the results as JSON here.")
  flags.DEFINE_float("seconds", 3.0, "Minimum timed duration per measurement.")


# (num_posts, num_tags, dim, k): the paper-scale test set, and Durand's open vocabulary size.
SHAPES = [(20_000, 10_000, 64, 10), (100_000, 10_000, 64, 10), (2_000, 500_000, 64, 10)]


def main(argv):
  del argv
  f = flags.FLAGS
  rng = np.random.default_rng(0)
  peak = matmul_peak(f.seconds)
  results = {"machine": {"nproc": os.cpu_count(), "jax": jax.__version__,
                         "matmul_peak_gflops": peak / 1e9}, "two_tower": [], "numpy": []}
  print(f"fp32 matmul peak here: {peak / 1e9:.1f} GFLOP/s")
  print("| path | N posts | V tags | d | k | posts/s | GFLOP/s | fraction of peak |")
  print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for n, v, d, k in SHAPES:
    queries = rng.standard_normal((n, d), dtype=np.float32)
    table = rng.standard_normal((v, d), dtype=np.float32)
    seconds = timed(lambda: topk.top_k_two_tower(queries, table, k), f.seconds)
    flops = 2 * n * v * d / seconds
    row = {"N": n, "V": v, "d": d, "k": k, "posts_per_s": n / seconds, "gflops": flops / 1e9,
           "fraction_of_peak": flops / peak}
    results["two_tower"].append(row)
    print(f"| jax two-tower | {n} | {v} | {d} | {k} | {n / seconds:,.0f} | {flops / 1e9:.1f} "
          f"| {flops / peak:.2f} |")
  # The numpy path (frequency baselines, oracle): scores come from an arbitrary function.
  n, v, d, k = 5_000, 10_000, 64, 10
  queries = rng.standard_normal((n, d), dtype=np.float32)
  table = rng.standard_normal((v, d), dtype=np.float32)
  score_fn = lambda p0, p1, t0, t1: queries[p0:p1] @ table[t0:t1].T
  seconds = timed(lambda: topk.top_k_from_scores(score_fn, n, v, k), f.seconds)
  results["numpy"].append({"N": n, "V": v, "d": d, "k": k, "posts_per_s": n / seconds})
  print(f"| numpy score_fn | {n} | {v} | {d} | {k} | {n / seconds:,.0f} | | |")
  if f.out:
    with open(f.out, "w") as fh:
      json.dump(results, fh, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
