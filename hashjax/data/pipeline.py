"""grain input pipelines over a PostDataset.

Training: a seeded global shuffle of the split's rows (a new permutation every epoch), global
batches of row numbers of which each process reads its block (process i the i-th batch_size
rows, so hosts see disjoint examples and the global batch of a step holds the same examples in
the same order whatever the process count: losses that draw by batch position, like WARP's
negatives, train the same parameters on one process or many), and one vectorised
`PostDataset.read` per batch. Reading a
whole batch at once (one sorted fancy-index per shard) is what makes the pipeline fast: per-record
reads pay Python overhead per post (see benchmarks/pipeline_benchmark.py for both numbers).

User sequences (`sequence_batches`): a model that reads a user's posting history (Durand et
al.) asks for batches of S sequences, each a run of one user's consecutive posts in time order,
[S, W, ...] per field. Every post of the split is a *target* of exactly one sequence per epoch;
a sequence may start with up to `context_len` of the user's earlier posts as context (read, not
trained on). A model that scans a sequence sees the history of each target as the positions
before it, so each post is read once per epoch instead of once per later post of its user.

The iterator is a grain DatasetIterator, so `get_state()`/`set_state()` (and orbax's grain
checkpoint handler) make a resumed run continue with exactly the examples it would have seen.
"""

import dataclasses
import functools
from typing import Any, Iterator

import grain
import jax
import numpy as np

from hashjax.data.reader import TRUTH_FIELDS, PostDataset


@dataclasses.dataclass(frozen=True)
class BatchReader:
  """grain map transform: a batch of split positions -> a padded batch of posts."""
  dataset: PostDataset
  rows: np.ndarray
  fields: tuple[str, ...] | None = None
  max_tags: int | None = None
  max_caption: int | None = None

  def __call__(self, positions: np.ndarray) -> dict[str, Any]:
    return self.dataset.read(self.rows[positions], fields=self.fields, max_tags=self.max_tags,
                             max_caption=self.max_caption)


def _fields(fields) -> tuple[str, ...] | None:
  """The requested fields plus the ground truth every pipeline carries (None: everything)."""
  return None if fields is None else tuple(dict.fromkeys((*TRUTH_FIELDS, *fields)))


def _process(process_index, process_count) -> tuple[int, int]:
  return (jax.process_index() if process_index is None else process_index,
          jax.process_count() if process_count is None else process_count)


def _batched_iter(items: int, read, *, batch_size: int, seed: int, num_epochs, shuffle: bool,
                  process_index: int, process_count: int, num_threads: int,
                  prefetch: int) -> grain.IterDataset:
  """Seeded global shuffle of range(items), global batches, this process's block of each read."""
  positions = grain.MapDataset.range(items)
  if shuffle:
    positions = positions.shuffle(seed=seed)
  positions = positions.repeat(num_epochs)  # grain reseeds the shuffle every epoch
  batches = positions.batch(batch_size * process_count, drop_remainder=True, batch_fn=np.asarray)
  start = process_index * batch_size
  return batches.map(lambda b: read(b[start:start + batch_size])).to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                                             prefetch_buffer_size=prefetch))


def train_batches(dataset: PostDataset, split: str = "train", *, batch_size: int, seed: int,
                  fields=None, max_tags: int | None = None, max_caption: int | None = None,
                  num_epochs: int | None = None, shuffle: bool = True,
                  process_index: int | None = None, process_count: int | None = None,
                  num_threads: int = 2, prefetch: int = 4) -> grain.IterDataset:
  """Batches of `batch_size` posts for this process (the per-host batch), endlessly by default.

  batch_size is per process: with P processes the global batch is P * batch_size. Incomplete
  final batches are dropped (every batch has one shape, so the train step compiles once).
  fields: the batch fields to read (PostDataset.read) besides the ground truth; None: all.
  """
  process_index, process_count = _process(process_index, process_count)
  rows = dataset.split_rows(split)
  if len(rows) < batch_size * process_count:
    raise ValueError(f"split {split!r} has {len(rows)} posts, fewer than one global batch "
                     f"({batch_size} x {process_count} processes)")
  return _batched_iter(len(rows), BatchReader(dataset, rows, _fields(fields), max_tags,
                                              max_caption),
                       batch_size=batch_size, seed=seed, num_epochs=num_epochs, shuffle=shuffle,
                       process_index=process_index, process_count=process_count,
                       num_threads=num_threads, prefetch=prefetch)


def eval_batches(dataset: PostDataset, split: str, *, batch_size: int, fields=None,
                 max_tags: int | None = None, max_caption: int | None = None,
                 process_index: int | None = None,
                 process_count: int | None = None) -> Iterator[dict[str, Any]]:
  """Every post of the split exactly once, in row order, in fixed-shape batches.

  The last batch is padded by repeating its final row; `valid` [B] marks real posts, so metrics
  can ignore the padding while the jitted model sees one shape. Each process gets a contiguous
  slice of the split.
  """
  process_index, process_count = _process(process_index, process_count)
  rows = np.array_split(dataset.split_rows(split), process_count)[process_index]
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    valid = np.arange(batch_size) < len(chunk)
    padded = np.concatenate([chunk, np.full(batch_size - len(chunk), chunk[-1])])
    batch = dataset.read(padded, fields=_fields(fields), max_tags=max_tags,
                         max_caption=max_caption)
    batch["valid"] = valid
    yield batch


# -- user sequences -------------------------------------------------------------------------


def user_sequences(dataset: PostDataset, split: str, *, seq_len: int,
                   context_len: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The sequences of a split: (window rows int64 [N, W], targets bool [N, W]), W = ctx + len.

  The split's rows of each user, in time order, are cut into runs whose rows span at most
  seq_len consecutive rows of that user; each run is a window of consecutive rows of the user
  (so a window holds every post between its first and last, whatever their split), preceded by
  up to context_len earlier posts of the user. targets marks the run's rows, the posts to train
  on or to score; context rows are never targets. Windows are left-aligned: padding (row -1)
  is at the end.
  """
  if seq_len < 1 or context_len < 0:
    raise ValueError(f"seq_len must be >= 1 and context_len >= 0, got {seq_len}, {context_len}")
  rows = np.sort(dataset.split_rows(split))
  first = dataset.first_row_of[rows]
  width = context_len + seq_len
  runs, run = [], []
  # A run starts at a user's first row of this split, or seq_len rows after the previous run's
  # start: one pass over the split in time order.
  for r, f in zip(rows.tolist(), first.tolist()):
    if run and (f != run_first or r - run[0] >= seq_len):
      runs.append((run, run_first))
      run = []
    if not run:
      run_first = f
    run.append(r)
  if run:
    runs.append((run, run_first))
  windows = np.full((len(runs), width), -1, np.int64)
  targets = np.zeros((len(runs), width), bool)
  for i, (run, first_row) in enumerate(runs):
    window = np.arange(max(first_row, run[0] - context_len), run[-1] + 1)
    windows[i, :len(window)] = window
    targets[i, :len(window)] = np.isin(window, run)
  return windows, targets


SEQUENCE_FIELDS = ("seq_mask", "target_mask")


@dataclasses.dataclass(frozen=True)
class SequenceReader:
  """grain map transform: a batch of sequence indices -> fields shaped [S, W, ...]."""
  dataset: PostDataset
  windows: np.ndarray
  targets: np.ndarray
  fields: tuple[str, ...] | None = None
  max_tags: int | None = None
  max_caption: int | None = None

  def __call__(self, positions: np.ndarray) -> dict[str, Any]:
    return read_sequences(self.dataset, self.windows[positions], self.targets[positions],
                          fields=self.fields, max_tags=self.max_tags,
                          max_caption=self.max_caption)


def read_sequences(dataset: PostDataset, windows: np.ndarray, targets: np.ndarray, *,
                   fields=None, max_tags=None, max_caption=None) -> dict[str, Any]:
  """Reads [S, W] window rows in one batched read; adds seq_mask (a post) and target_mask."""
  seq_mask = windows >= 0
  # Padding slots read the window's first row (any valid row would do): masked out below.
  flat = np.where(seq_mask, windows, windows[:, :1]).reshape(-1)
  if fields is not None:
    fields = [f for f in fields if f not in SEQUENCE_FIELDS]  # made here, not read
  batch = dataset.read(flat, fields=fields, max_tags=max_tags, max_caption=max_caption)
  out = {k: (v.reshape(windows.shape + v.shape[1:]) if isinstance(v, np.ndarray) else v)
         for k, v in batch.items()}
  out["tag_mask"] = out["tag_mask"] & seq_mask[..., None]
  if "caption_mask" in out:
    out["caption_mask"] = out["caption_mask"] & seq_mask[..., None]
  out["row"] = np.where(seq_mask, out["row"], -1)
  out["seq_mask"], out["target_mask"] = seq_mask, targets & seq_mask
  return out


def sequence_batches(dataset: PostDataset, split: str = "train", *, batch_size: int, seed: int,
                     seq_len: int, context_len: int = 0, fields=None, max_tags=None,
                     max_caption=None, num_epochs: int | None = None, shuffle: bool = True,
                     process_index: int | None = None, process_count: int | None = None,
                     num_threads: int = 2, prefetch: int = 4) -> grain.IterDataset:
  """Batches of `batch_size` user sequences (see `user_sequences`) for this process.

  Like train_batches, but each batch element is a sequence: every field is [S, W, ...], with
  seq_mask [S, W] (a real post) and target_mask [S, W] (a post of `split`, to train on).
  """
  process_index, process_count = _process(process_index, process_count)
  windows, targets = user_sequences(dataset, split, seq_len=seq_len, context_len=context_len)
  if len(windows) < batch_size * process_count:
    raise ValueError(f"split {split!r} has {len(windows)} user sequences, fewer than one global "
                     f"batch ({batch_size} x {process_count} processes)")
  reader = SequenceReader(dataset, windows, targets, _fields(fields), max_tags, max_caption)
  return _batched_iter(len(windows), reader, batch_size=batch_size, seed=seed,
                       num_epochs=num_epochs, shuffle=shuffle, process_index=process_index,
                       process_count=process_count, num_threads=num_threads, prefetch=prefetch)


def eval_sequence_batches(dataset: PostDataset, split: str, *, batch_size: int, seq_len: int,
                          context_len: int = 0, fields=None, max_tags=None, max_caption=None,
                          process_index: int | None = None,
                          process_count: int | None = None) -> Iterator[dict[str, Any]]:
  """Every post of the split once as a target, in sequences; padded sequences have no targets.

  `valid` [S, W] = target_mask: the positions metrics count.
  """
  process_index, process_count = _process(process_index, process_count)
  windows, targets = user_sequences(dataset, split, seq_len=seq_len, context_len=context_len)
  windows = np.array_split(windows, process_count)[process_index]
  targets = np.array_split(targets, process_count)[process_index]
  for start in range(0, len(windows), batch_size):
    w, t = windows[start:start + batch_size], targets[start:start + batch_size]
    pad = batch_size - len(w)
    w = np.concatenate([w, np.repeat(w[-1:], pad, axis=0)])
    t = np.concatenate([t, np.zeros((pad,) + t.shape[1:], bool)])
    batch = read_sequences(dataset, w, t, fields=_fields(fields), max_tags=max_tags,
                           max_caption=max_caption)
    batch["valid"] = batch["target_mask"]
    yield batch


def per_record_batches(dataset: PostDataset, split: str = "train", *, batch_size: int,
                       seed: int, max_tags: int | None = None,
                       num_threads: int = 2) -> grain.IterDataset:
  """The textbook grain pipeline (one read per post, then batch): kept for the benchmark."""
  rows = dataset.split_rows(split)
  ds = grain.MapDataset.range(len(rows)).shuffle(seed=seed).repeat(None)
  read_one = functools.partial(_read_one, dataset, rows, max_tags)
  ds = ds.map(read_one).batch(batch_size, drop_remainder=True)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads))


def _read_one(dataset: PostDataset, rows: np.ndarray, max_tags: int | None, position: int):
  batch = dataset.read(rows[position:position + 1], max_tags=max_tags)  # every field
  return {k: v[0] for k, v in batch.items() if isinstance(v, np.ndarray)}
