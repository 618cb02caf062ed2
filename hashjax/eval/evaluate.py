"""Evaluates scorers on a split: chunked top-k, then the papers' ranking metrics.

A *scorer* is anything with a `name`, the batch `fields` it reads and
`scores(batch, tag_start, tag_stop) -> [B, tag_stop - tag_start]` (baselines, oracles). A
trained two-tower model is evaluated through `TwoTowerScorer`, whose top-k runs on the jitted
two-tower path instead (queries against the tag table in chunks).
"""

from typing import Any, Iterable, Protocol, Sequence

import jax
import numpy as np

from hashjax.data import pipeline, tag_distribution
from hashjax.data.reader import PostDataset
from hashjax.eval import metrics, topk


class Scorer(Protocol):
  name: str
  fields: tuple[str, ...]  # batch fields `scores` reads (PostDataset.read), besides the truth

  def scores(self, batch: dict[str, Any], tag_start: int, tag_stop: int) -> np.ndarray:
    ...


class TwoTowerScorer:
  """A model with trained variables as a scorer: top-k runs on the jitted two-tower path.

  A model of layout "sequences" (it reads user histories) is evaluated on user sequences of
  `seq_len` targets after `context_len` context posts (pipeline.eval_sequence_batches).
  """

  def __init__(self, name: str, model, variables, *, seq_len: int = 0, context_len: int = 0):
    self.name, self.model, self.variables = name, model, variables
    self.fields = tuple(model.inputs)
    self.sequence = (seq_len, context_len) if model.layout == "sequences" else None
    if self.sequence and seq_len < 1:
      raise ValueError(f"{name}: a sequence model needs seq_len >= 1 to be evaluated")
    self._query = jax.jit(model.query)

  def queries(self, batch: dict[str, Any]) -> jax.Array:
    """[..., d] queries of the batch's posts (leading dims as in the batch)."""
    return self._query(self.variables, {k: batch[k] for k in self.fields})

  def tag_table(self) -> jax.Array:
    return self.model.tags(self.variables)

  def batches(self, dataset: PostDataset, split: str, batch_size: int):
    """The evaluation batches this model reads, in one process's order."""
    if self.sequence:
      seq_len, context_len = self.sequence
      return pipeline.eval_sequence_batches(
          dataset, split, batch_size=max(1, batch_size // (seq_len + context_len)),
          seq_len=seq_len, context_len=context_len, fields=self.fields, process_index=0,
          process_count=1)
    return pipeline.eval_batches(dataset, split, batch_size=batch_size, fields=self.fields,
                                 process_index=0, process_count=1)


def predict_top_k(scorer, dataset: PostDataset, split: str, *, k: int = 10,
                  batch_size: int = 1024, tag_chunk: int = 16384,
                  keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Top-k tag ids for every post of the split, with the padded ground truth beside them.

  Memory is bounded by batch_size x tag_chunk scores, whatever the split and vocabulary size.
  `keep` (tag_distribution.keep_probabilities) evaluates on the balanced version of the data;
  posts left without hashtags are skipped. Returns pred_ids [N, k], true_ids / true_mask
  [N, T] and rows [N] (the dataset rows, in evaluation order).
  """
  two_tower = isinstance(scorer, TwoTowerScorer)
  table = scorer.tag_table() if two_tower else None
  batches = (scorer.batches(dataset, split, batch_size) if two_tower else
             pipeline.eval_batches(dataset, split, batch_size=batch_size, fields=scorer.fields,
                                   process_index=0, process_count=1))
  out = {"pred_ids": [], "true_ids": [], "true_mask": [], "rows": []}
  for batch in batches:
    batch = tag_distribution.apply(batch, keep)
    valid = (batch["valid"] & batch["tag_mask"].any(axis=-1)).reshape(-1)
    if two_tower:
      queries = scorer.queries(batch)
      _, ids = topk.top_k_two_tower(queries.reshape(-1, queries.shape[-1]), table, k,
                                    tag_chunk=tag_chunk)
    else:
      score_fn = lambda p0, p1, t0, t1, b=batch: np.asarray(scorer.scores(b, t0, t1))[p0:p1]
      _, ids = topk.top_k_from_scores(score_fn, len(valid), dataset.num_tags, k,
                                      post_chunk=len(valid), tag_chunk=tag_chunk)
    num_slots = batch["tag_ids"].shape[-1]
    out["pred_ids"].append(ids[valid])
    out["true_ids"].append(batch["tag_ids"].reshape(-1, num_slots)[valid])
    out["true_mask"].append(batch["tag_mask"].reshape(-1, num_slots)[valid])
    out["rows"].append(batch["row"].reshape(-1)[valid])
  if not sum(len(p) for p in out["pred_ids"]):
    raise ValueError(f"split {split!r} of {dataset.directory} has no posts with hashtags")
  return {key: np.concatenate(parts) for key, parts in out.items()}


def evaluate_scorers(scorers: Iterable[Scorer], dataset: PostDataset, split: str = "test", *,
                     ks: Sequence[int] = (1, 5, 10), **kwargs) -> dict[str, dict[str, float]]:
  """{scorer name: {'P@1': ..., 'R@10': ..., ...}} for each scorer."""
  results = {}
  for scorer in scorers:
    out = predict_top_k(scorer, dataset, split, k=max(ks), **kwargs)
    results[scorer.name] = metrics.ranking_metrics(out["pred_ids"], out["true_ids"],
                                                   out["true_mask"], ks=ks)
  return results
