"""Evaluates scorers on a split: chunked top-k, then the papers' ranking metrics.

A *scorer* is anything with a `name`, the batch `fields` it reads and
`scores(batch, tag_start, tag_stop) -> [B, tag_stop - tag_start]` (baselines, oracles). A
trained two-tower model is evaluated through `TwoTowerScorer`, whose top-k runs on the jitted
two-tower path instead (queries against the tag table in chunks); a trained model that is not
two towers (its `scores(variables, batch, tag_ids)`) through `PairScorer`. `model_scorer`
chooses between them.

Many processes (jax.distributed): each process scores a contiguous slice of the split's rows
(pipeline.eval_batches' process slices), and `predict_top_k` gathers the slices back in process
order, so every process returns every row in the one-process order and computes the same
metrics as one process would, exactly. Every process must call it (the gather is collective).
A trained model's replicated variables are evaluated on a local copy, so the slices need not
have the same number of batches.

Vocabularies (Durand et al.'s open vocabulary, Tables 1-2): ids are ordered by training
frequency, so the hashtags seen in training are ids [0, S) (S = spec.seen_tags) and the unseen
ones [S, Y). Evaluating over a range R ranks only the tags of R and keeps only the true tags in
R; a post without one is not counted:

  all:    R = [0, Y)   metric keys "P@1", ...
  seen:   R = [0, S)   "seen/P@1", ...   (Table 1's open-vocabulary columns)
  unseen: R = [S, Y)   "unseen/P@1", ... (Table 2's zero-shot columns)
"""

from typing import Any, Iterable, Protocol, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np
import optax

from hashjax.data import pipeline, tag_distribution
from hashjax.data.reader import PostDataset
from hashjax.eval import bleu, metrics, sharded_topk, topk


class Scorer(Protocol):
  name: str
  fields: tuple[str, ...]  # batch fields `scores` reads (PostDataset.read), besides the truth

  def scores(self, batch: dict[str, Any], tag_start: int, tag_stop: int) -> np.ndarray:
    ...


class TwoTowerScorer:
  """A model with trained variables as a scorer: top-k runs on the jitted two-tower path.

  A model of layout "sequences" (it reads user histories) is evaluated on user sequences of
  `seq_len` targets after `context_len` context posts (pipeline.eval_sequence_batches).

  `vocab_mesh` (one process only): a mesh whose "model" axis splits the tag table, as the
  trainer's vocab_shards does; the top-k then runs on the devices' shards of the table
  (sharded_topk.ShardedTopK: each device ranks its rows, the shards' lists are merged).
  """

  def __init__(self, name: str, model, variables, *, seq_len: int = 0, context_len: int = 0,
               vocab_mesh=None):
    if vocab_mesh is not None and jax.process_count() > 1:
      raise ValueError(f"{name}: a vocabulary-sharded evaluation runs in one process; with "
                       "several, evaluate replicated variables")
    self.name, self.model, self.variables = name, model, local_copy(variables)
    self.vocab_mesh = vocab_mesh
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

  def batches(self, dataset: PostDataset, split: str, batch_size: int,
              process_index: int = 0, process_count: int = 1):
    """The evaluation batches this model reads: the given process's slice of the split."""
    if self.sequence:
      seq_len, context_len = self.sequence
      return pipeline.eval_sequence_batches(
          dataset, split, batch_size=max(1, batch_size // (seq_len + context_len)),
          seq_len=seq_len, context_len=context_len, fields=self.fields,
          process_index=process_index, process_count=process_count)
    return pipeline.eval_batches(dataset, split, batch_size=batch_size, fields=self.fields,
                                 process_index=process_index, process_count=process_count)


class PairScorer:
  """A trained model scored hashtag by hashtag (model.scores), as a generic scorer.

  The vocabulary range of a call is scored in jitted blocks of `tag_block` hashtags (the last
  one padded), so compiled shapes do not depend on the range and memory is bounded by the
  model's work for batch x tag_block pairs.
  """

  def __init__(self, name: str, model, variables, *, tag_block: int = 128):
    self.name, self.model, self.variables = name, model, local_copy(variables)
    self.fields = tuple(model.inputs)
    self.tag_block = tag_block
    self._scores = jax.jit(model.scores)

  def scores(self, batch: dict[str, Any], tag_start: int, tag_stop: int) -> np.ndarray:
    inputs = {k: batch[k] for k in self.fields}
    blocks = []
    for start in range(tag_start, tag_stop, self.tag_block):
      ids = np.minimum(np.arange(start, start + self.tag_block), tag_stop - 1)
      blocks.append(np.asarray(self._scores(self.variables, inputs, ids))[:, :tag_stop - start])
    return np.concatenate(blocks, axis=1)


class GeneratorScorer:
  """A model that writes its hashtags (#okboomer): its ranked list is what it generates.

  For each post the generated tokens up to END, repeats dropped in order, are the top-k (fewer
  than k: the rest are empty slots, -1, that never hit); over a vocabulary range only the
  generated tags in it count. The raw sequences are kept for BLEU (hashjax.eval.bleu).
  """

  def __init__(self, name: str, model, variables):
    self.name, self.model, self.variables = name, model, local_copy(variables)
    self.fields = tuple(model.inputs)
    self._generate = jax.jit(model.generate)

  def generate(self, batch: dict[str, Any]) -> np.ndarray:
    """int [B, max_len]: the generated tokens (hashtag ids, END once, then -1)."""
    return np.asarray(self._generate(self.variables, {k: batch[k] for k in self.fields}))

  def ranked(self, tokens: np.ndarray, tag_start: int, tag_stop: int, k: int) -> np.ndarray:
    """[B, k] the generated hashtags in [tag_start, tag_stop), in order, -1 padded."""
    out = np.full((len(tokens), k), -1, np.int64)
    for i, sequence in enumerate(bleu.generated_sequences(tokens, self.model.end)):
      inside = list(dict.fromkeys(t for t in sequence if tag_start <= t < tag_stop))[:k]
      out[i, :len(inside)] = inside
    return out


def model_scorer(name: str, model, variables, *, seq_len: int = 0, context_len: int = 0,
                 vocab_mesh=None):
  """The scorer of a trained model: TwoTowerScorer if it has a tag table, GeneratorScorer if
  it writes its hashtags, else PairScorer."""
  if hasattr(model, "generate"):
    return GeneratorScorer(name, model, variables)
  if hasattr(model, "tags"):
    return TwoTowerScorer(name, model, variables, seq_len=seq_len, context_len=context_len,
                          vocab_mesh=vocab_mesh)
  if model.layout != "posts":
    raise ValueError(f"{name}: a model without a tag table is evaluated on posts, not sequences")
  return PairScorer(name, model, variables)


def local_copy(variables):
  """Variables replicated over several processes' devices -> this process's copy.

  A jitted function of arrays that span other processes is a collective program every process
  must run in step; evaluation runs a different number of batches per process, so it uses the
  local copy. Arrays of this process only (one process, any number of devices) are unchanged.
  """
  def local(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return x
    if not x.is_fully_replicated:
      raise ValueError(f"evaluation needs replicated variables; got one sharded as {x.sharding}")
    return x.addressable_data(0)
  return jax.tree.map(local, variables)


VOCABULARIES = ("all", "seen", "unseen")


def vocabulary_range(spec, vocabulary: str) -> tuple[int, int]:
  """The tag ids [start, stop) of a vocabulary (see the module docstring)."""
  ranges = {"all": (0, spec.num_tags), "seen": (0, spec.seen_tags),
            "unseen": (spec.seen_tags, spec.num_tags)}
  if vocabulary not in ranges:
    raise ValueError(f"unknown vocabulary {vocabulary!r}; choose from {VOCABULARIES}")
  start, stop = ranges[vocabulary]
  if start == stop:
    raise ValueError(f"the dataset has no {vocabulary} hashtags (all {spec.num_tags} are "
                     "used in its training split)")
  return start, stop


def metric_prefix(vocabulary: str) -> str:
  return "" if vocabulary == "all" else f"{vocabulary}/"


def predict_top_k(scorer, dataset: PostDataset, split: str, *, k: int = 10,
                  batch_size: int = 1024, tag_chunk: int = 16384,
                  keep: np.ndarray | None = None,
                  tag_range: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
  """Top-k tag ids for every post of the split, with the padded ground truth beside them.

  Memory is bounded by batch_size x tag_chunk scores, whatever the split and vocabulary size.
  `keep` (tag_distribution.keep_probabilities) evaluates on the balanced version of the data;
  `tag_range` = (start, stop) ranks only those ids and keeps only the true tags among them
  (vocabulary_range); posts left without hashtags are skipped. Returns pred_ids [N, k],
  true_ids / true_mask [N, T] and rows [N] (the dataset rows, in evaluation order), the same on
  every process: with several processes each scores its slice of the split and the slices are
  gathered.
  """
  tag_range = tag_range or (0, dataset.num_tags)
  return predict_top_k_ranges(scorer, dataset, split, [tag_range], k=k, batch_size=batch_size,
                              tag_chunk=tag_chunk, keep=keep)[tag_range]


def predict_top_k_ranges(scorer, dataset: PostDataset, split: str, tag_ranges, *, k: int = 10,
                         batch_size: int = 1024, tag_chunk: int = 16384,
                         keep: np.ndarray | None = None) -> dict[tuple[int, int], dict]:
  """predict_top_k for several tag ranges in one pass: {range: its outputs}. Each batch is
  read and its queries computed once (a history model's scan), then ranked in every range."""
  index, count = jax.process_index(), jax.process_count()
  two_tower = isinstance(scorer, TwoTowerScorer)
  table = scorer.tag_table() if two_tower else None
  batches = (scorer.batches(dataset, split, batch_size, index, count) if two_tower else
             pipeline.eval_batches(dataset, split, batch_size=batch_size, fields=scorer.fields,
                                   process_index=index, process_count=count))
  sharded = {}  # tag range -> its table split over the vocabulary mesh, once per evaluation
  if two_tower and scorer.vocab_mesh is not None:
    host_table = np.asarray(table)
    sharded = {(start, stop): sharded_topk.ShardedTopK(host_table[start:stop], k,
                                                       scorer.vocab_mesh, tag_chunk=tag_chunk)
               for start, stop in tag_ranges}
  outs = {r: {"pred_ids": [], "true_ids": [], "true_mask": [], "rows": []} for r in tag_ranges}
  generator = isinstance(scorer, GeneratorScorer)
  for batch in batches:
    batch = tag_distribution.apply(batch, keep)
    num_slots = batch["tag_ids"].shape[-1]
    if two_tower:
      queries = scorer.queries(batch)
      queries = queries.reshape(-1, queries.shape[-1])
    if generator:
      tokens = scorer.generate(batch)
    for (start, stop), out in outs.items():
      # The truth is restricted, not the batch: a history model reads its earlier posts' tags.
      tag_ids = batch["tag_ids"]
      true_mask = batch["tag_mask"] & (tag_ids >= start) & (tag_ids < stop)
      valid = (batch["valid"] & true_mask.any(axis=-1)).reshape(-1)
      if generator:  # absolute ids, -1 for an empty slot
        ids = scorer.ranked(tokens, start, stop, k)
        out.setdefault("generated", []).append(tokens[valid])
      elif sharded:
        ids = sharded[start, stop](queries)[1] + start
      elif two_tower:
        ids = topk.top_k_two_tower(queries, table[start:stop], k, tag_chunk=tag_chunk)[1] + start
      else:
        score_fn = lambda p0, p1, t0, t1, b=batch, s=start: np.asarray(
            scorer.scores(b, s + t0, s + t1))[p0:p1]
        ids = topk.top_k_from_scores(score_fn, len(valid), stop - start, k,
                                     post_chunk=len(valid), tag_chunk=tag_chunk)[1] + start
      out["pred_ids"].append(ids[valid])
      out["true_ids"].append(tag_ids.reshape(-1, num_slots)[valid])
      out["true_mask"].append(true_mask.reshape(-1, num_slots)[valid])
      out["rows"].append(batch["row"].reshape(-1)[valid])
  results = {}
  for tag_range, out in outs.items():
    out = {key: np.concatenate(parts) if parts else None for key, parts in out.items()}
    if count > 1:
      out = _gather_processes(out)
    if out["pred_ids"] is None or not len(out["pred_ids"]):
      raise ValueError(f"split {split!r} of {dataset.directory} has no posts with hashtags in "
                       f"tag ids {tag_range}")
    results[tag_range] = out
  return results


def _gather_processes(out: dict) -> dict:
  """Every process's rows, concatenated in process order (the one-process order).

  Two collectives: the slices' shapes, then the slices packed in one int32 array padded to the
  longest. A process with no rows (a split smaller than the process count) sends none.
  """
  shape = ((0, 0, 0) if out["pred_ids"] is None else
           (len(out["pred_ids"]), out["pred_ids"].shape[1], out["true_ids"].shape[1]))
  shapes = multihost_utils.process_allgather(np.asarray(shape, np.int32))
  widths = {(int(k), int(t)) for n, k, t in shapes if n}
  if len(widths) > 1:
    raise ValueError(f"processes disagree on the top-k / ground-truth widths: {sorted(widths)}")
  if not widths:
    return {key: None for key in out}
  k, t = widths.pop()
  longest = int(shapes[:, 0].max())
  packed = np.zeros((longest, k + 2 * t + 1), np.int32)
  if shape[0]:
    packed[:shape[0]] = np.concatenate(
        [out["pred_ids"], out["true_ids"], out["true_mask"], out["rows"][:, None]],
        axis=1).astype(np.int32)
  gathered = multihost_utils.process_allgather(packed)  # [processes, longest, columns]
  rows = np.concatenate([part[:n] for part, n in zip(gathered, shapes[:, 0])])
  dtypes = {key: (value.dtype if value is not None else np.int64 if key == "rows" else np.int32)
            for key, value in out.items()}
  return {"pred_ids": rows[:, :k].astype(dtypes["pred_ids"]),
          "true_ids": rows[:, k:k + t].astype(dtypes["true_ids"]),
          "true_mask": rows[:, k + t:k + 2 * t].astype(bool),
          "rows": rows[:, -1].astype(dtypes["rows"])}


def evaluate_scorers(scorers: Iterable[Scorer], dataset: PostDataset, split: str = "test", *,
                     ks: Sequence[int] = (1, 5, 10), vocabularies: Sequence[str] = ("all",),
                     **kwargs) -> dict[str, dict[str, float]]:
  """{scorer name: {'P@1': ..., 'R@10': ..., 'unseen/P@1', ...}} for each scorer, over each
  vocabulary (module docstring)."""
  ranges = {v: vocabulary_range(dataset.spec, v) for v in vocabularies}
  results = {}
  for scorer in scorers:
    results[scorer.name] = {}
    outs = predict_top_k_ranges(scorer, dataset, split, list(ranges.values()), k=max(ks),
                                **kwargs)
    for vocabulary, tag_range in ranges.items():
      out = outs[tag_range]
      ranking = metrics.ranking_metrics(out["pred_ids"], out["true_ids"], out["true_mask"],
                                        ks=ks)
      results[scorer.name].update({metric_prefix(vocabulary) + key: value
                                   for key, value in ranking.items()})
      if out.get("generated") is not None and vocabulary == "all":  # a generator: its BLEU
        references = [ids[mask].tolist() for ids, mask in zip(out["true_ids"],
                                                                out["true_mask"])]
        candidates = bleu.generated_sequences(out["generated"], scorer.model.end)
        results[scorer.name].update(bleu.bleu_metrics(candidates, references))
    if isinstance(scorer, GeneratorScorer):
      results[scorer.name]["loss"] = generator_loss(scorer, dataset, split,
                                                    kwargs.get("batch_size", 1024))
  return results


def generator_loss(scorer: GeneratorScorer, dataset: PostDataset, split: str,
                   batch_size: int) -> float:
  """A generator's token cross-entropy on the split, fully teacher-forced and in inference
  mode: sum over posts and target tokens of -log p(y_t | y_<t, post) / the number of tokens
  (the validation loss of #okboomer's Table 1). With several processes each sums its slice."""
  model = scorer.model
  logits_fn = jax.jit(model.eval_logits)
  total, count = 0.0, 0
  for batch in pipeline.eval_batches(dataset, split, batch_size=batch_size,
                                     fields=scorer.fields, process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    inputs = {k: batch[k] for k in (*scorer.fields, "tag_ids", "tag_mask")}
    logits, tokens, mask = logits_fn(scorer.variables, inputs)
    mask = np.asarray(mask) & np.asarray(batch["valid"])[:, None]
    ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, tokens))
    total, count = total + float((ce * mask).sum()), count + int(mask.sum())
  if jax.process_count() > 1:
    total, count = np.asarray(multihost_utils.process_allgather(
        np.array([total, count]))).sum(axis=0)
  return float(total / max(count, 1))
