r"""Seed-by-seed comparison of two rows of a sweep: does B beat A on every seed, and by how much?

  python -m hashjax.tools.paired --workdir=runs/veit_table2 \
      --pair="model=mcll|model=tensor,init=@model=mcll,..." [--pair=...] [--metrics=A@1,A@10]

A sweep trains every variant on the same seeds, and seed i is also the synthetic world's seed,
so runs of one seed share their data: the difference B - A per seed removes the variation
between worlds that the table's std includes. Printed per pair and metric: A and B per seed,
the differences, their mean ± std, and on how many seeds B is above A. A row's runs are the
sweep's ROOT/<variant>/seed<i> directories (hashjax.tools.sweep.run_dir).
"""

import json
import os

from absl import app, flags
import numpy as np

from hashjax.tools import sweep


def define_flags() -> None:
  flags.DEFINE_string("workdir", None, "The sweep's root directory.", required=True)
  flags.DEFINE_multi_string("pair", None, "A|B: two variants of the sweep (B is compared to A).",
                            required=True)
  flags.DEFINE_list("metrics", ["A@1", "A@10"], "Test metrics to compare.")


def seed_metrics(root: str, variant: str) -> dict[int, dict]:
  """{seed: test metrics} of the variant's finished runs in the sweep root."""
  out = {}
  directory = os.path.dirname(sweep.run_dir(root, variant, 0))
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{directory}: no runs of variant {variant!r} in {root}")
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name, "metrics.json")
    if name.startswith("seed") and name[4:].isdigit() and os.path.exists(path):
      with open(path) as f:
        run = json.load(f)
      out[int(name[4:])] = {"label": run["model"], **run["test"]}
  return out


def compare(root: str, variant_a: str, variant_b: str, metrics=("A@1", "A@10")) -> dict:
  """{metric: {"a", "b", "difference": [per common seed], "mean", "std", "wins"}} and the rows'
  labels and seeds; raises if the two rows share no finished seed."""
  a, b = seed_metrics(root, variant_a), seed_metrics(root, variant_b)
  seeds = sorted(set(a) & set(b))
  if not seeds:
    raise ValueError(f"{variant_a!r} and {variant_b!r} have no finished seed in common in {root}")
  out = {"seeds": seeds, "labels": (a[seeds[0]]["label"], b[seeds[0]]["label"])}
  for metric in metrics:
    va = np.array([a[s][metric] for s in seeds])
    vb = np.array([b[s][metric] for s in seeds])
    d = vb - va
    out[metric] = {"a": va, "b": vb, "difference": d, "mean": float(d.mean()),
                   "std": float(d.std()), "wins": int((d > 0).sum())}
  return out


def describe(result: dict, metrics) -> str:
  label_a, label_b = result["labels"]
  lines = [f"{label_b} vs {label_a}, seeds {result['seeds']}:"]
  for metric in metrics:
    r = result[metric]
    per_seed = ", ".join(f"{100 * x:.2f} -> {100 * y:.2f}" for x, y in zip(r["a"], r["b"]))
    lines.append(f"  {metric}: {per_seed}; difference {100 * r['mean']:+.2f} ± "
                 f"{100 * r['std']:.2f}, higher on {r['wins']} of {len(result['seeds'])} seeds")
  return "\n".join(lines)


def main(argv):
  del argv
  f = flags.FLAGS
  for pair in f.pair:
    variant_a, sep, variant_b = pair.partition("|")
    if not sep:
      raise app.UsageError(f"--pair={pair!r}: expected VARIANT_A|VARIANT_B")
    print(describe(compare(f.workdir, variant_a, variant_b, f.metrics), f.metrics))


if __name__ == "__main__":
  define_flags()
  app.run(main)
