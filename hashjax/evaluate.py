"""Evaluates scorers on a split: chunked top-k, then the papers' ranking metrics, then a table."""

import json
from typing import Any, Iterable, Sequence

import numpy as np

from hashjax import metrics, topk
from hashjax.baselines import Scorer
from hashjax.data import pipeline
from hashjax.data.reader import PostDataset

TABLE_COLUMNS = ("P@1", "R@10", "A@10")


def predict_top_k(scorer: Scorer, dataset: PostDataset, split: str, *, k: int = 10,
                  batch_size: int = 1024, tag_chunk: int = 16384) -> dict[str, np.ndarray]:
  """Top-k tag ids for every post of the split, with the padded ground truth beside them.

  Memory is bounded by batch_size x tag_chunk scores, whatever the split and vocabulary size.
  """
  pred, true_ids, true_mask = [], [], []
  for batch in pipeline.eval_batches(dataset, split, batch_size=batch_size, process_index=0,
                                     process_count=1):
    valid = batch["valid"]
    score_fn = lambda p0, p1, t0, t1, b=batch: np.asarray(scorer.scores(b, t0, t1))[p0:p1]
    _, ids = topk.top_k_from_scores(score_fn, len(valid), dataset.num_tags, k,
                                    post_chunk=len(valid), tag_chunk=tag_chunk)
    pred.append(ids[valid])
    true_ids.append(batch["tag_ids"][valid])
    true_mask.append(batch["tag_mask"][valid])
  if not pred:
    raise ValueError(f"split {split!r} of {dataset.directory} has no posts")
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


def format_table(results: dict[str, dict[str, float]],
                 columns: Sequence[str] = TABLE_COLUMNS) -> str:
  """A markdown table in the papers' format (percentages, two decimals)."""
  lines = ["| Method | " + " | ".join(columns) + " |",
           "| --- | " + " | ".join("---:" for _ in columns) + " |"]
  for name, row in results.items():
    lines.append(f"| {name} | " + " | ".join(f"{100 * row[c]:.2f}" for c in columns) + " |")
  return "\n".join(lines)


def write_json(path: str, payload: dict[str, Any]) -> None:
  with open(path, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
