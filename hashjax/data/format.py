"""The on-disk dataset format shared by every converter, model and metric.

A dataset is a directory::

    DIR/
      metadata.json        schema version, dims, counts per split, provenance, build report;
                           optional feature_views [[name, width], ...]: the feature vector is
                           those named column blocks in order (e.g. object and scene CNN
                           features), widths summing to feature_dim
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

import numpy as np

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
SPLIT_SCHEMES = ("user_disjoint", "temporal", "user_disjoint_70_10_20")

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
class ReportSection:
  """The counts of one kind of record, in `unit`s: read = written + sum(skipped) when done.

  `written` is what was passed on (posts stored; for an input file, lines kept). A record dropped
  after it was passed on moves from written to skipped (`drop`), so the identity never breaks.
  """
  unit: str
  read: int = 0
  written: int = 0
  skipped: Counter = dataclasses.field(default_factory=Counter)

  def skip(self, reason: str, count: int = 1) -> None:
    """`count` records read and not passed on, for `reason`."""
    if count:  # (+= 0 on a Counter would list a reason with no records)
      self.skipped[reason] += count

  def drop(self, reason: str, count: int = 1) -> None:
    """`count` records already counted as written are dropped after all, for `reason`."""
    self.written -= count
    self.skip(reason, count)

  def problem(self) -> str | None:
    """Why the counts are inconsistent, or None."""
    counts = [self.read, self.written, *self.skipped.values()]
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
      return f"counts must be integers >= 0: {self.as_dict()}"
    if self.read != self.written + sum(self.skipped.values()):
      return (f"read {self.read} != written {self.written} + skipped "
              f"{sum(self.skipped.values())} {dict(self.skipped)}")
    return None

  def as_dict(self) -> dict[str, Any]:
    return {"unit": self.unit, "read": self.read, "written": self.written,
            "skipped": dict(self.skipped)}

  def summary(self) -> str:
    skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
    return (f"{self.unit} read {self.read}, written {self.written}, "
            f"skipped {sum(self.skipped.values())} ({skipped})")


@dataclasses.dataclass
class BuildReport(ReportSection):
  """What a converter did with its input: nothing may be dropped without a count and a reason.

  The report itself counts posts: read = posts the converter formed, written = posts the
  DatasetWriter stored (set at finalize), skipped = posts dropped, by reason. `sections` count the
  records of each input (one per file or record kind, e.g. "user_taggedartists.dat" in
  "assignment lines"): read = records read, written = records passed on, skipped by reason. Every
  section and the posts satisfy read = written + sum(skipped); `check` (run by the writer's
  finalize, before metadata.json is written) raises RuntimeError, a converter bug, if one does
  not. metadata.json holds `as_dict()`: the posts' unit/read/written/skipped at the top level,
  the inputs under "sections".
  """
  unit: str = "posts"
  sections: dict[str, ReportSection] = dataclasses.field(default_factory=dict)

  def section(self, name: str, unit: str) -> ReportSection:
    """The section of input `name` counted in `unit`s, created empty the first time."""
    section = self.sections.setdefault(name, ReportSection(unit))
    if section.unit != unit:
      raise ValueError(f"report section {name!r} counts {section.unit}, not {unit}")
    return section

  def record_written(self, posts: int) -> None:
    """The writer's count of stored posts (at finalize); then `check`.

    A report that counted nothing (the writer's own, when the caller passes none) has read what
    was written: it vouches for no input.
    """
    if not (self.read or self.skipped or self.sections):
      self.read = posts
    self.written = posts
    self.check()

  def check(self) -> None:
    problems = [f"posts: {p}" for p in [self.problem()] if p]
    problems += [f"{name} ({s.unit}): {p}" for name, s in self.sections.items()
                 if (p := s.problem())]
    if problems:
      raise RuntimeError("build report accounting is off (a converter bug): " + "; ".join(problems))

  def as_dict(self) -> dict[str, Any]:
    return {**super().as_dict(),
            "sections": {name: s.as_dict() for name, s in self.sections.items()}}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "BuildReport":
    """The report of a metadata.json `build_report` (`check` it to verify a stored dataset)."""
    section = lambda s: dict(read=s["read"], written=s["written"], skipped=Counter(s["skipped"]))
    return cls(unit=d.get("unit", "posts"), **section(d),
               sections={name: ReportSection(s["unit"], **section(s))
                         for name, s in d.get("sections", {}).items()})

  def summary(self) -> str:
    return "; ".join([super().summary()] + [f"{name}: {s.summary()}"
                                            for name, s in self.sections.items()])


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


def check_feature_views(where: str, views, feature_dim: int) -> tuple[tuple[str, int], ...]:
  """((name, width), ...) of a dataset's feature_views; DatasetError unless the names are
  distinct and non-empty and the widths positive integers summing to feature_dim."""
  try:
    views = tuple((str(name), width) for name, width in views)
  except (TypeError, ValueError) as e:
    raise DatasetError(f"{where}: feature_views must be [name, width] pairs, got {views!r}") from e
  names = [n for n, _ in views]
  if any(not n for n in names) or len(set(names)) != len(names):
    raise DatasetError(f"{where}: feature_views need distinct non-empty names, got {names}")
  widths = [w for _, w in views]
  if any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in widths):
    raise DatasetError(f"{where}: feature_views widths must be integers >= 1, got {widths}")
  if views and sum(widths) != feature_dim:
    raise DatasetError(f"{where}: feature_views widths {widths} sum to {sum(widths)}, not the "
                       f"feature_dim {feature_dim}")
  return tuple((n, int(w)) for n, w in views)


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
