"""What a run tells a person: progress in the log, scalars on disk, and the final report.

- `History` appends every logged scalar to workdir/metrics.jsonl (one JSON object per line;
  easy to plot, and written by process 0 only) and mirrors it in the absl log.
- `Throughput` turns step counts into steps/s, examples/s and an ETA.
- `write_run_report` puts the model's test metrics in a table in the paper's format next to the
  reference rows (frequency baselines, and on synthetic data the oracle), as report.md and
  metrics.json.
"""

import json
import math
import os
import time

from absl import logging
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


def check_finite(step: int, metrics: dict) -> None:
  """Fail fast (big_vision style): a NaN/inf loss or gradient never recovers."""
  bad = {k: float(v) for k, v in metrics.items() if not math.isfinite(float(v))}
  if bad:
    raise FloatingPointError(f"step {step}: non-finite training metrics {bad}; lower the "
                             "learning rate or check the input features")


class History:
  """Scalars per step, appended to workdir/metrics.jsonl and logged."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.path = os.path.join(workdir, "metrics.jsonl")
    if jax.process_index() == 0 and os.path.exists(self.path):
      # A resumed run rewrites what came after its checkpoint, so the file stays one history.
      with open(self.path) as f:
        kept = [line for line in f if json.loads(line)["step"] <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(kept)

  def log(self, step: int, scalars: dict) -> None:
    scalars = {k: float(v) for k, v in scalars.items()}
    logging.info("step %d: %s", step, ", ".join(f"{k}={_fmt(v)}" for k, v in scalars.items()))
    if jax.process_index() == 0:
      with open(self.path, "a") as f:
        f.write(json.dumps({"step": step, **scalars}) + "\n")


def _fmt(v: float) -> str:
  return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"


class Throughput:
  """steps/s, examples/s and ETA since the previous call."""

  def __init__(self, start_step: int, total_steps: int, batch_size: int):
    self.total, self.batch_size = total_steps, batch_size
    self.last_step, self.last_time = start_step, time.perf_counter()

  def update(self, step: int) -> dict:
    now = time.perf_counter()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.last_step, self.last_time = step, now
    return {"steps_per_s": rate, "examples_per_s": rate * self.batch_size,
            "eta_s": (self.total - step) / max(rate, 1e-9)}


def describe_dataset(dataset: PostDataset) -> str:
  meta = dataset.metadata
  return (f"`{dataset.directory}` ({meta['split_scheme']} split; {meta['counts']['train']} train"
          f" / {meta['counts']['test']} test posts; {meta['num_tags']} hashtags; feature dim "
          f"{meta['feature_dim']})")


def reference_results(dataset: PostDataset, split: str, keep, config) -> dict:
  """The frequency baselines and (synthetic data) the oracle on the same posts as the model."""
  return evaluate.evaluate_scorers(baselines.reference_scorers(dataset), dataset, split,
                                   ks=tuple(config.eval.ks), batch_size=config.eval.batch_size,
                                   keep=keep)


def write_run_report(workdir: str, config, dataset: PostDataset, name: str, test: dict,
                     keep, selected_step: int) -> dict:
  """report.md + metrics.json: Method, d, K, P@1, R@10, A@10 with the reference rows.

  selected_step: the training step whose parameters were tested (best validation score).
  """
  results = dict(reference_results(dataset, "test", keep, config))
  results[name] = test
  d = config.model.kwargs.get("d", "-")
  k = config.model.kwargs.get("K", "-")
  rows = {n: dict(r, d=(d if n == name else "-"), K=(k if n == name else "-"))
          for n, r in results.items()}
  table = evaluate.format_table(rows, columns=("d", "K", "P@1", "R@10", "A@10"))
  text = (f"# {name}, {config.data.dist} hashtag distribution, test split\n\n"
          f"Dataset {describe_dataset(dataset)}. Parameters of step {selected_step} of "
          f"{config.train_steps}, the best on validation {config.plateau_metric}. Oracle P@1 is "
          f"the ceiling; the model reaches {_share_of_oracle(results, name)} of it.\n\n"
          f"{table}\n")
  if jax.process_index() == 0:
    evaluate.write_json(os.path.join(workdir, "metrics.json"),
                        {"model": name, "test": test, "results": results,
                         "selected_step": selected_step,
                         "config": config.to_dict(), "dataset": dataset.directory})
    with open(os.path.join(workdir, "report.md"), "w") as f:
      f.write(text)
  print(text)
  return results


def _share_of_oracle(results: dict, name: str) -> str:
  oracle = results.get(baselines.Oracle.name)
  if not oracle:
    return "n/a (no oracle for this dataset)"
  return f"{100 * results[name]['P@1'] / oracle['P@1']:.0f}%"
