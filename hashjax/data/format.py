"""The on-disk dataset format shared by every converter, model and metric.

A dataset is a directory::

    DIR/
      metadata.json        schema version, dims, counts per split, provenance, build report
      vocab.txt            one hashtag per line; line i is tag id i; ids ordered by training frequency
      tag_counts.npy       int64 [V]: occurrences of each tag in the training split
      word_vectors.npy     optional float32 [V, w]: a word vector per hashtag (open vocabulary)
      caption_vocab.txt    optional: caption token strings, line i is token id i
      users.npz            optional: per-user attributes (age, gender, ...) for probing
      splits/{train,val,test}.npy   int64 global row numbers of each split: sorted, distinct,
                           disjoint, each row in the file its `split` column names
      user_index.npz       user_ids, first_row, num_rows (users are contiguous row ranges)
      posts/00000/         shard 0: one .npy file per column (see COLUMNS)
      posts/00001/ ...

Rows are globally sorted by (user_id, timestamp) and shards are consecutive row ranges. That one
ordering makes a user's history free: the posts of user u before row r are the rows
[first_row[u], r), already in time order (Durand et al. read it for every example).

Columns of a shard with n posts (ragged lists are stored CSR-style: offsets [n+1] + flat values):

    post_id [n] int64, user_id [n] int64, timestamp [n] int64, split [n] int8,
    features [n, D] float32 or float16, tag_offsets [n+1] int64, tag_ids [nnz] int32,
    user_meta [n, M] float32 (M may be 0), caption_offsets [n+1] int64, caption_ids [nnz] int32
    (the caption columns are present only when the dataset has captions).

Numpy shards (memory-mapped) were chosen over ArrayRecord by measured speed: see
benchmarks/pipeline_benchmark.py and the README.
"""

import dataclasses
import json
import os
from collections import Counter
from typing import Any

SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"
VOCAB_FILE = "vocab.txt"
TAG_COUNTS_FILE = "tag_counts.npy"
WORD_VECTORS_FILE = "word_vectors.npy"
CAPTION_VOCAB_FILE = "caption_vocab.txt"
USERS_FILE = "users.npz"
USER_INDEX_FILE = "user_index.npz"
SPLITS_DIR = "splits"
POSTS_DIR = "posts"

SPLITS = ("train", "val", "test")
SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}
SPLIT_SCHEMES = ("user_disjoint", "temporal")

BASE_COLUMNS = ("post_id", "user_id", "timestamp", "split", "features",
                "tag_offsets", "tag_ids", "user_meta")
CAPTION_COLUMNS = ("caption_offsets", "caption_ids")


class DatasetError(ValueError):
  """A dataset directory or one of its records is malformed; the message names where."""


class InvalidRecordError(DatasetError):
  """One input record cannot be stored; `reason` is a short key for build reports."""

  def __init__(self, reason: str, where: str, detail: str):
    super().__init__(f"{where}: {reason}: {detail}")
    self.reason = reason
    self.where = where


def shard_dir(directory: str, index: int) -> str:
  return os.path.join(directory, POSTS_DIR, f"{index:05d}")


def shard_columns(has_captions: bool) -> tuple[str, ...]:
  return BASE_COLUMNS + (CAPTION_COLUMNS if has_captions else ())


@dataclasses.dataclass
class BuildReport:
  """What a converter did with its input: nothing may be dropped without a count and a reason."""
  read: int = 0
  written: int = 0
  skipped: Counter = dataclasses.field(default_factory=Counter)

  def skip(self, reason: str) -> None:
    self.skipped[reason] += 1

  def as_dict(self) -> dict[str, Any]:
    return {"read": self.read, "written": self.written, "skipped": dict(self.skipped)}

  def summary(self) -> str:
    skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
    return (f"records read {self.read}, written {self.written}, "
            f"skipped {sum(self.skipped.values())} ({skipped})")


def read_metadata(directory: str) -> dict[str, Any]:
  """Loads and checks metadata.json; every failure names the file."""
  path = os.path.join(directory, METADATA_FILE)
  if not os.path.isdir(directory):
    raise DatasetError(f"{directory}: not a dataset directory (it does not exist)")
  if not os.path.exists(path):
    raise DatasetError(f"{path}: missing; {directory} is not a hashjax dataset")
  try:
    with open(path) as f:
      meta = json.load(f)
  except json.JSONDecodeError as e:
    raise DatasetError(f"{path}: not valid JSON ({e})") from e
  required = ("schema_version", "feature_dim", "feature_dtype", "user_meta_dim", "num_tags",
              "num_posts", "has_captions", "split_scheme", "counts", "shards")
  missing = [k for k in required if k not in meta]
  if missing:
    raise DatasetError(f"{path}: missing fields {missing}")
  if meta["schema_version"] != SCHEMA_VERSION:
    raise DatasetError(f"{path}: schema_version {meta['schema_version']} but this hashjax "
                       f"reads version {SCHEMA_VERSION}; rebuild the dataset")
  if sum(s["num_posts"] for s in meta["shards"]) != meta["num_posts"]:
    raise DatasetError(f"{path}: shard post counts do not add up to num_posts={meta['num_posts']}")
  return meta


def write_metadata(directory: str, meta: dict[str, Any]) -> None:
  tmp = os.path.join(directory, METADATA_FILE + ".tmp")
  with open(tmp, "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)
  os.replace(tmp, os.path.join(directory, METADATA_FILE))  # atomic: a dataset is complete or absent


def read_lines(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return f.read().split("\n")[:-1]


def write_lines(path: str, lines: list[str]) -> None:
  for i, line in enumerate(lines):
    if "\n" in line or "\r" in line:
      raise DatasetError(f"{path}: entry {i} ({line!r}) contains a line break")
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(line + "\n" for line in lines))
