"""Evaluates scorers on a split: chunked top-k, then the papers' ranking metrics, then a table."""

import json
from typing import Any, Iterable, Sequence

import jax
import numpy as np

from hashjax import metrics, topk
from hashjax.baselines import Scorer
from hashjax.data import pipeline, tag_distribution
from hashjax.data.reader import PostDataset

TABLE_COLUMNS = ("P@1", "R@10", "A@10")


class TwoTowerScorer:
  """A model with trained params as a scorer: top-k runs on the jitted two-tower path."""

  def __init__(self, name: str, model, params):
    self.name, self.model, self.params = name, model, params
    self._query = jax.jit(model.query)

  def queries(self, batch: dict[str, Any]) -> jax.Array:
    return self._query(self.params, {k: batch[k] for k in ("features", "user_meta")})

  def tag_table(self) -> jax.Array:
    return self.model.tags(self.params)

  def scores(self, batch, tag_start, tag_stop):
    return np.asarray(self.queries(batch) @ self.tag_table()[tag_start:tag_stop].T)


def predict_top_k(scorer: Scorer, dataset: PostDataset, split: str, *, k: int = 10,
                  batch_size: int = 1024, tag_chunk: int = 16384,
                  keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Top-k tag ids for every post of the split, with the padded ground truth beside them.

  Memory is bounded by batch_size x tag_chunk scores, whatever the split and vocabulary size.
  `keep` (tag_distribution.keep_probabilities) evaluates on the balanced version of the data;
  posts left without hashtags are skipped.
  """
  pred, true_ids, true_mask = [], [], []
  table = scorer.tag_table() if isinstance(scorer, TwoTowerScorer) else None
  for batch in pipeline.eval_batches(dataset, split, batch_size=batch_size, process_index=0,
                                     process_count=1):
    batch = tag_distribution.apply(batch, keep)
    valid = batch["valid"] & batch["tag_mask"].any(axis=1)
    if table is not None:
      _, ids = topk.top_k_two_tower(scorer.queries(batch), table, k, tag_chunk=tag_chunk)
    else:
      score_fn = lambda p0, p1, t0, t1, b=batch: np.asarray(scorer.scores(b, t0, t1))[p0:p1]
      _, ids = topk.top_k_from_scores(score_fn, len(valid), dataset.num_tags, k,
                                      post_chunk=len(valid), tag_chunk=tag_chunk)
    pred.append(ids[valid])
    true_ids.append(batch["tag_ids"][valid])
    true_mask.append(batch["tag_mask"][valid])
  if not pred or not sum(len(p) for p in pred):
    raise ValueError(f"split {split!r} of {dataset.directory} has no posts with hashtags")
  return {"pred_ids": np.concatenate(pred), "true_ids": np.concatenate(true_ids),
          "true_mask": np.concatenate(true_mask)}


def evaluate_scorers(scorers: Iterable[Scorer], dataset: PostDataset, split: str = "test", *,
                     ks: Sequence[int] = (1, 5, 10), **kwargs) -> dict[str, dict[str, float]]:
  """{scorer name: {'P@1': ..., 'R@10': ..., ...}} for each scorer."""
  results = {}
  for scorer in scorers:
    out = predict_top_k(scorer, dataset, split, k=max(ks), **kwargs)
    results[scorer.name] = metrics.ranking_metrics(out["pred_ids"], out["true_ids"],
                                                   out["true_mask"], ks=ks)
  return results


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


def format_table(results: dict[str, dict[str, Any]] | Sequence[tuple[str, dict[str, Any]]],
                 columns: Sequence[str] = TABLE_COLUMNS) -> str:
  """A markdown table in the papers' format: metrics in percent (mean ± std over seeds if given)."""
  def cell(value) -> str:
    if isinstance(value, dict):
      return f"{100 * value['mean']:.2f} ± {100 * value['std']:.2f}"
    if isinstance(value, float):
      return f"{100 * value:.2f}"
    return str(value)  # descriptive columns (d, K)

  lines = ["| Method | " + " | ".join(columns) + " |",
           "| --- | " + " | ".join("---:" for _ in columns) + " |"]
  rows = results.items() if isinstance(results, dict) else results  # a list allows repeats
  for name, row in rows:
    lines.append(f"| {name} | " + " | ".join(cell(row[c]) for c in columns) + " |")
  return "\n".join(lines)


def write_json(path: str, payload: dict[str, Any]) -> None:
  with open(path, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
