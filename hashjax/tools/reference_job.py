"""The reference job: get the data, evaluate the baselines and the oracle, write the report.

With several seeds (config.seeds), each seed is its own synthetic world, and the table shows the
mean ± standard deviation over seeds: the spread any model's margin must beat. With
config.data.dist = "balanced" the truth is thinned as in Denton's balanced tables, and the
oracle rows rank by p(y) keep(y).
"""

import os
import time

import jax
import ml_collections

from hashjax.data import sources, tag_distribution
from hashjax.eval import report


def run(config, workdir: str) -> dict:
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  seeds = list(config.seeds) if not config.data.dir else [config.data.seed]
  per_seed, described = [], []
  for seed in seeds:
    data_config = ml_collections.ConfigDict(config.data.to_dict())
    data_config.seed = seed
    dataset = sources.resolve_dataset(data_config)
    keep = tag_distribution.keep_probabilities(dataset.tag_counts, config.data.dist)
    per_seed.append(report.reference_results(dataset, config.eval.split, keep, config))
    described.append(sources.describe_dataset(dataset))
  results = report.aggregate_seeds(per_seed) if len(seeds) > 1 else per_seed[0]
  table = report.format_table(results)
  header = (f"# Reference rankers, {config.data.dist} hashtag distribution, {config.eval.split} "
            "split, "
            + (f"mean ± std over seeds {seeds}" if len(seeds) > 1 else f"seed {seeds[0]}"))
  data_lines = "\n".join(f"- seed {s}: {d}" for s, d in zip(seeds, described))
  if jax.process_index() == 0:
    report.write_json(os.path.join(workdir, "metrics.json"),
                      {"datasets": described, "split": config.eval.split, "seeds": seeds,
                       "results": results, "per_seed": per_seed, "config": config.to_dict()})
    with open(os.path.join(workdir, "report.md"), "w") as f:
      f.write(f"{header}\n\n{data_lines}\n\n{table}\n")
  print(f"{header}\n{data_lines}\n{table}")
  print(f"done in {time.time() - start:.1f}s; wrote {workdir}/metrics.json and report.md")
  return results
