"""The reference job: get the data, evaluate the baselines and the oracle, write the report."""

import os
import time

import jax

from hashjax import baselines, evaluate
from hashjax.data import build_synthetic
from hashjax.data.reader import PostDataset


def resolve_dataset(data_config) -> PostDataset:
  """Opens data.dir, or builds/reuses the synthetic dataset the config describes."""
  directory = data_config.dir or build_synthetic.default_data_dir(
      data_config.preset, data_config.seed, data_config.split_scheme)
  if not data_config.dir:
    build_synthetic.ensure_synthetic(directory, preset=data_config.preset, seed=data_config.seed,
                                     split_scheme=data_config.split_scheme)
  return PostDataset(directory)


def run(config, workdir: str) -> dict:
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  dataset = resolve_dataset(config.data)
  results = evaluate.evaluate_scorers(baselines.reference_scorers(dataset), dataset,
                                      config.eval.split, ks=tuple(config.eval.ks),
                                      batch_size=config.eval.batch_size)
  table = evaluate.format_table(results)
  meta = dataset.metadata
  summary = (f"Dataset: `{dataset.directory}` ({meta['split_scheme']} split; "
             f"{meta['counts']['train']} train / {meta['counts']['test']} test posts; "
             f"{meta['num_tags']} hashtags; feature dim {meta['feature_dim']}).")
  if jax.process_index() == 0:
    evaluate.write_json(os.path.join(workdir, "metrics.json"),
                        {"dataset": dataset.directory, "split": config.eval.split,
                         "results": results, "config": config.to_dict()})
    with open(os.path.join(workdir, "report.md"), "w") as f:
      f.write(f"# Reference rankers on the {config.eval.split} split\n\n{summary}\n\n{table}\n")
  print(summary)
  print(table)
  print(f"done in {time.time() - start:.1f}s; wrote {workdir}/metrics.json and report.md")
  return results
