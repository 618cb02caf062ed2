"""grain input pipelines over a PostDataset.

Training: a seeded global shuffle of the split's rows (a new permutation every epoch), this
process's slice of it (`process_index::process_count`, so hosts see disjoint examples of the same
global order), batches of row numbers, and one vectorised `PostDataset.read` per batch. Reading a
whole batch at once (one sorted fancy-index per shard) is what makes the pipeline fast: per-record
reads pay Python overhead per post (see benchmarks/pipeline_benchmark.py for both numbers).

The iterator is a grain DatasetIterator, so `get_state()`/`set_state()` (and orbax's grain
checkpoint handler) make a resumed run continue with exactly the examples it would have seen.
"""

import dataclasses
import functools
from typing import Any, Iterator

import grain
import jax
import numpy as np

from hashjax.data.reader import PostDataset


@dataclasses.dataclass(frozen=True)
class BatchReader:
  """grain map transform: a batch of split positions -> a padded batch of posts."""
  dataset: PostDataset
  rows: np.ndarray
  max_tags: int | None = None
  max_caption: int = 0

  def __call__(self, positions: np.ndarray) -> dict[str, Any]:
    return self.dataset.read(self.rows[positions], max_tags=self.max_tags,
                             max_caption=self.max_caption)


def train_batches(dataset: PostDataset, split: str = "train", *, batch_size: int, seed: int,
                  max_tags: int | None = None, max_caption: int = 0,
                  num_epochs: int | None = None, shuffle: bool = True,
                  process_index: int | None = None, process_count: int | None = None,
                  num_threads: int = 2, prefetch: int = 4) -> grain.IterDataset:
  """Batches of `batch_size` posts for this process (the per-host batch), endlessly by default.

  batch_size is per process: with P processes the global batch is P * batch_size. Incomplete
  final batches are dropped (every batch has one shape, so the train step compiles once).
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  rows = dataset.split_rows(split)
  if len(rows) < batch_size * process_count:
    raise ValueError(f"split {split!r} has {len(rows)} posts, fewer than one global batch "
                     f"({batch_size} x {process_count} processes)")
  positions = grain.MapDataset.range(len(rows))
  if shuffle:
    positions = positions.shuffle(seed=seed)
  positions = positions.repeat(num_epochs)  # grain reseeds the shuffle every epoch
  positions = positions[process_index::process_count]
  batches = positions.batch(batch_size, drop_remainder=True, batch_fn=np.asarray)
  batches = batches.map(BatchReader(dataset, rows, max_tags, max_caption))
  return batches.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                                   prefetch_buffer_size=prefetch))


def eval_batches(dataset: PostDataset, split: str, *, batch_size: int,
                 max_tags: int | None = None, max_caption: int = 0,
                 process_index: int | None = None,
                 process_count: int | None = None) -> Iterator[dict[str, Any]]:
  """Every post of the split exactly once, in row order, in fixed-shape batches.

  The last batch is padded by repeating its final row; `valid` [B] marks real posts, so metrics
  can ignore the padding while the jitted model sees one shape. Each process gets a contiguous
  slice of the split.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  rows = np.array_split(dataset.split_rows(split), process_count)[process_index]
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    valid = np.arange(batch_size) < len(chunk)
    padded = np.concatenate([chunk, np.full(batch_size - len(chunk), chunk[-1])])
    batch = dataset.read(padded, max_tags=max_tags, max_caption=max_caption)
    batch["valid"] = valid
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
  batch = dataset.read(rows[position:position + 1], max_tags=max_tags)
  return {k: v[0] for k, v in batch.items() if isinstance(v, np.ndarray)}
