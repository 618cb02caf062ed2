"""Tables in the papers' format, and the report a training run leaves in its workdir.

`write_run_report` puts a model's test metrics next to the reference rows (frequency
baselines, and on synthetic data the oracle) as report.md and metrics.json. Descriptive columns
(Denton's d and K, a classifier's hidden sizes) come from the model (`report_columns`).
With several processes every one evaluates its slice (the reference rows too) and only
process 0 writes and prints.
"""

import json
import os
from typing import Any, Sequence

import jax
import numpy as np

from hashjax.data import sources
from hashjax.data.reader import PostDataset
from hashjax.eval import baselines, evaluate, oracles

TABLE_COLUMNS = ("P@1", "R@10", "A@10")


def reference_results(dataset: PostDataset, split: str, keep, config) -> dict:
  """The frequency baselines and (synthetic data) the oracle on the same posts as the model.

  keep: None (natural distribution) or the balanced keep probabilities, which thin the truth
  and make the oracle rows rank by p(y) keep(y).
  """
  return evaluate.evaluate_scorers(baselines.reference_scorers(dataset, keep), dataset, split,
                                   ks=tuple(config.eval.ks),
                                   vocabularies=tuple(config.eval.vocabularies),
                                   batch_size=config.eval.batch_size, keep=keep)


def aggregate_seeds(per_seed: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
  """{name: {metric: {'mean', 'std', 'values'}}} over runs with different seeds (std: ddof=0)."""
  out = {}
  for name in per_seed[0]:
    out[name] = {}
    for metric in per_seed[0][name]:
      values = [float(run[name][metric]) for run in per_seed]
      out[name][metric] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                           "values": values}
  return out


def column_union(rows) -> tuple[str, ...]:
  """The descriptive columns of a table's rows, in order of first appearance."""
  return tuple(dict.fromkeys(c for _, row in rows for c in row.get("columns", {})))


def format_table(results: dict[str, dict[str, Any]] | Sequence[tuple[str, dict[str, Any]]],
                 columns: Sequence[str] = TABLE_COLUMNS) -> str:
  """A markdown table in the papers' format: metrics in percent (mean ± std over seeds if given).

  A row's descriptive values (d, K, ...) are in row["columns"]; a row without one shows "-".
  """
  rows = list(results.items() if isinstance(results, dict) else results)  # a list allows repeats
  descriptive = column_union(rows)

  def cell(value) -> str:
    if isinstance(value, dict) and len(value.get("values", ())) != 1:
      return f"{100 * value['mean']:.2f} ± {100 * value['std']:.2f}"
    if isinstance(value, dict):  # one seed has no spread to show
      return f"{100 * value['mean']:.2f}"
    return f"{100 * value:.2f}"

  header = (*descriptive, *columns)
  lines = ["| Method | " + " | ".join(header) + " |",
           "| --- | " + " | ".join("---:" for _ in header) + " |"]
  for name, row in rows:
    values = [str(row.get("columns", {}).get(c, "-")) for c in descriptive]
    values += [cell(row[c]) for c in columns]
    lines.append(f"| {name} | " + " | ".join(values) + " |")
  return "\n".join(lines)


def write_json(path: str, payload: dict[str, Any]) -> None:
  with open(path, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)


def write_run_report(workdir: str, config, dataset: PostDataset, name: str, test: dict,
                     keep, selected_step: int, columns: dict[str, Any]) -> dict:
  """report.md + metrics.json: Method, the model's columns, P@1, R@10, A@10, reference rows.

  selected_step: the training step whose parameters were tested (best validation score).
  columns: the model's descriptive values (model.report_columns()).
  """
  results = dict(reference_results(dataset, "test", keep, config))
  results[name] = test
  rows = [(n, dict(r, columns=columns) if n == name else r) for n, r in results.items()]
  table = format_table(rows)
  text = (f"# {name}, {config.data.dist} hashtag distribution, test split\n\n"
          f"Dataset {sources.describe_dataset(dataset)}. Parameters of step {selected_step} of "
          f"{config.train_steps}, the best on validation {config.plateau_metric}. "
          f"{_oracle_sentence(results, name, config.data.dist)}\n\n{table}\n")
  if jax.process_index() == 0:  # every process has the same results (evaluate gathers them)
    write_json(os.path.join(workdir, "metrics.json"),
               {"model": name, "columns": columns, "test": test, "results": results,
                "selected_step": selected_step, "config": config.to_dict(),
                "dataset": dataset.directory})
    with open(os.path.join(workdir, "report.md"), "w") as f:
      f.write(text)
    print(text)
  return results


def _oracle_sentence(results: dict, name: str, dist: str) -> str:
  oracle = results.get(oracles.Oracle.name)
  if not oracle:
    return "No oracle for this dataset (not synthetic)."
  ranked = ("the true distribution p(y): its P@1 is the ceiling" if dist == "natural" else
            "p(y) keep(y), the true distribution thinned as the balanced test set is: its P@1 "
            "is the ceiling to within about 0.2 (hashjax.eval.oracles)")
  share = 100 * results[name]["P@1"] / oracle["P@1"]
  text = f"The oracle ranks by {ranked}, and the model reaches {share:.0f}% of it"
  metadata = results.get(oracles.OracleMetadataOnly.name)
  if metadata:
    text += (f" ({100 * results[name]['P@1'] / metadata['P@1']:.0f}% of the metadata-only "
             "oracle's, the ceiling of a model that sees the user only through metadata)")
  return text + "."
