"""Writes a dataset directory (see format.py) from blocks of posts, checking every record.

Converters feed posts in (user_id, timestamp) order, in blocks (typically one user at a time).
Every record is validated; a bad one raises InvalidRecordError naming the record, so a converter
can either stop or count it as skipped in its BuildReport. On `finalize`, hashtag ids are
renumbered by training frequency (id 0 = most frequent), the split and user indices are written,
and metadata.json is written last.

No partial output. The writer builds into a sibling staging directory, `DIR.partial`, and moves
it to DIR only when the build is complete, so DIR is always either absent, the previous dataset
or the new, complete one. Used as a context manager, the move happens when the with-block exits
cleanly, so a converter can write extra files after `finalize`::

    with DatasetWriter(out, feature_dim=..., num_tags=..., split_scheme=...) as writer:
      writer.add_block(...)
      writer.finalize(vocab=...)
      np.save(os.path.join(writer.directory, "extra.npy"), ...)  # inside the block: staging

`writer.directory` is where files go: the staging directory until the dataset is moved into
place, DIR after. If the block raises (any exception, KeyboardInterrupt included) the staging
directory is deleted and DIR is left as it was: with overwrite=True the old dataset is replaced
only at the final move, so a failed rebuild keeps it. Without `with`, `finalize` moves the
dataset into place itself (a build that dies before it leaves only DIR.partial, which the next
build of DIR deletes).
"""

import os
import shutil
from typing import Any, Callable, Sequence

import numpy as np

from hashjax.data import format as fmt


def _ragged(lists: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """CSR form of a list of int arrays: (lengths [n], flat values [sum lengths])."""
  lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
  flat = (np.concatenate([np.asarray(x, np.int64) for x in lists]) if len(lists)
          else np.zeros(0, np.int64))
  return lengths, flat


PARTIAL_SUFFIX = ".partial"  # the staging directory of a build in progress: DIR.partial
REPLACED_SUFFIX = ".replaced"  # the old dataset, for the instant between the two renames


def _check_count(directory: str, name: str, value, minimum: int, why: str = "") -> None:
  """Sizes must be integers >= minimum: posts_per_shard=0 would write empty shards forever."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise fmt.DatasetError(f"{directory}: {name} must be an integer >= {minimum}{why}, "
                           f"got {value!r}")


def _occupied(path: str) -> bool:
  """True if writing a dataset at `path` would replace something (an empty directory is free)."""
  if os.path.isdir(path) and not os.path.islink(path):
    return bool(os.listdir(path))
  return os.path.lexists(path)


def _remove(path: str) -> None:
  """Deletes a file or directory tree if it exists."""
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path)
  elif os.path.lexists(path):
    os.remove(path)


class DatasetWriter:
  """Streams posts into shards of `posts_per_shard` rows with bounded memory.

  A context manager: see the module docstring for where files go and when DIR appears.
  """

  def __init__(self, directory: str, *, feature_dim: int, num_tags: int, split_scheme: str,
               user_meta_dim: int = 0, feature_dtype: str = "float32", has_captions: bool = False,
               caption_vocab_size: int = 0, posts_per_shard: int = 50_000, overwrite: bool = False,
               feature_views=()):
    # Normalised so that "out/" stages in "out.partial", not in "out/.partial".
    target = os.path.normpath(directory)
    self._check_arguments(target, feature_dim=feature_dim, num_tags=num_tags,
                          split_scheme=split_scheme, user_meta_dim=user_meta_dim,
                          feature_dtype=feature_dtype, has_captions=has_captions,
                          caption_vocab_size=caption_vocab_size, posts_per_shard=posts_per_shard)
    self.feature_views = fmt.check_feature_views(target, feature_views, feature_dim)
    if _occupied(target) and not overwrite:
      raise FileExistsError(f"{target} exists and is not empty (pass overwrite=True)")
    self.target, self.overwrite = target, overwrite
    staging = target + PARTIAL_SUFFIX
    # Left by a build that was killed (no with-block cleanup ran): never part of a dataset.
    _remove(staging)
    _remove(target + REPLACED_SUFFIX)
    os.makedirs(os.path.join(staging, fmt.POSTS_DIR))
    self.directory = staging  # where files go until the dataset is moved into place
    self._in_with_block = False
    self._finalized = False
    self.feature_dim, self.num_tags, self.user_meta_dim = feature_dim, num_tags, user_meta_dim
    self.split_scheme, self.feature_dtype = split_scheme, feature_dtype
    self.has_captions, self.caption_vocab_size = has_captions, caption_vocab_size
    self.posts_per_shard = posts_per_shard
    self._buffer: list[dict[str, Any]] = []
    self._buffered = 0
    self._shards: list[dict[str, int]] = []
    self._train_tag_counts = np.zeros(num_tags, np.int64)
    self._split_counts = np.zeros(len(fmt.SPLITS), np.int64)
    self._max_tags = 0
    self._last_key: tuple[int, int] | None = None
    self._finished_users: set[int] = set()

  @staticmethod
  def _check_arguments(directory, *, feature_dim, num_tags, split_scheme, user_meta_dim,
                       feature_dtype, has_captions, caption_vocab_size, posts_per_shard) -> None:
    """Rejects impossible shapes before anything touches the disk."""
    if split_scheme not in fmt.SPLIT_SCHEMES:
      raise ValueError(f"split_scheme must be one of {fmt.SPLIT_SCHEMES}, got {split_scheme!r}")
    if feature_dtype not in ("float32", "float16"):
      raise ValueError(f"feature_dtype must be float32 or float16, got {feature_dtype!r}")
    _check_count(directory, "posts_per_shard", posts_per_shard, 1)
    _check_count(directory, "feature_dim", feature_dim, 1)
    _check_count(directory, "num_tags", num_tags, 1)
    _check_count(directory, "user_meta_dim", user_meta_dim, 0)
    if has_captions:  # every caption token must index the caption vocabulary
      _check_count(directory, "caption_vocab_size", caption_vocab_size, 1,
                   " when has_captions")

  # -- the with-block: staging, then one move into place ---------------------------------------

  def __enter__(self) -> "DatasetWriter":
    self._in_with_block = True
    return self

  def __exit__(self, exc_type, exc, traceback) -> None:
    self._in_with_block = False
    if exc_type is not None:
      self.abort()
      return  # the exception propagates
    if not self._finalized:
      self.abort()
      raise fmt.DatasetError(f"{self.target}: the with-block ended without finalize(); "
                             "nothing was written")
    self._commit()

  def abort(self) -> None:
    """Deletes the staging directory; DIR (absent or the previous dataset) is left as it was."""
    if self.directory != self.target:
      _remove(self.directory)

  def _commit(self) -> None:
    """Moves the staged dataset to DIR, replacing the old one only now (overwrite=True)."""
    staging, target = self.directory, self.target
    if _occupied(target):
      if not self.overwrite:  # appeared while we were building: never clobber it
        self.abort()
        raise FileExistsError(f"{target} exists and is not empty (pass overwrite=True)")
      # Two renames: DIR is missing only between them (an instant, not the whole build).
      os.rename(target, target + REPLACED_SUFFIX)
      os.rename(staging, target)
      _remove(target + REPLACED_SUFFIX)
    else:
      os.replace(staging, target)  # rename(2) may replace an empty directory
    self.directory = target

  # -- adding posts ---------------------------------------------------------------------------

  def add_block(self, *, post_id, user_id, timestamp, split, features, tags: Sequence[np.ndarray],
                user_meta=None, captions: Sequence[np.ndarray] | None = None,
                where: Callable[[int], str] = lambda i: f"record {i}") -> None:
    """Validates and buffers n posts; `where(i)` names record i in error messages.

    Raises InvalidRecordError (with a `reason` key) for the first bad record; the whole block is
    then rejected, so converters that skip bad records add one post per block.
    """
    n = len(post_id)
    block = {
        "post_id": np.asarray(post_id, np.int64).reshape(n),
        "user_id": np.asarray(user_id, np.int64).reshape(n),
        "timestamp": np.asarray(timestamp, np.int64).reshape(n),
        "split": np.asarray(split, np.int8).reshape(n),
        "features": np.asarray(features, np.float32),
        "user_meta": (np.zeros((n, 0), np.float32) if user_meta is None
                      else np.asarray(user_meta, np.float32)),
    }
    tag_lengths, tag_flat = _ragged(tags)
    self._check_block(block, tags, tag_lengths, tag_flat, captions, where)
    block["tag_lengths"], block["tag_ids"] = tag_lengths, tag_flat.astype(np.int32)
    if self.has_captions:
      block["caption_lengths"], caption_flat = _ragged(captions)
      block["caption_ids"] = caption_flat.astype(np.int32)

    post_of_tag = np.repeat(np.arange(n), tag_lengths)
    self._train_tag_counts += np.bincount(
        tag_flat[block["split"][post_of_tag] == fmt.SPLIT_CODES["train"]], minlength=self.num_tags)
    self._split_counts += np.bincount(block["split"], minlength=len(fmt.SPLITS))
    self._max_tags = max(self._max_tags, int(tag_lengths.max(initial=0)))
    self._buffer.append(block)
    self._buffered += n
    while self._buffered >= self.posts_per_shard:
      self._flush(self.posts_per_shard)

  def _check_block(self, block, tags, tag_lengths, tag_flat, captions, where) -> None:
    n = len(block["post_id"])
    if len(tags) != n:
      raise ValueError(f"{len(tags)} tag lists for {n} posts")

    def fail(i: int, reason: str, detail: str):
      raise fmt.InvalidRecordError(reason, where(int(i)), detail)

    feats = block["features"]
    if feats.ndim != 2 or feats.shape != (n, self.feature_dim):
      fail(0, "wrong_feature_dim", f"features of shape {feats.shape[1:]} but the dataset has "
           f"feature_dim={self.feature_dim}")
    if block["user_meta"].shape != (n, self.user_meta_dim):
      fail(0, "wrong_user_meta_dim", f"user_meta of shape {block['user_meta'].shape[1:]} but "
           f"user_meta_dim={self.user_meta_dim}")
    bad = ~np.isfinite(feats).all(axis=1)
    if bad.any():
      fail(np.argmax(bad), "nonfinite_features", "image features contain NaN or inf")
    if self.feature_dtype == "float16":
      big = np.abs(feats).max(axis=1, initial=0.0) > np.finfo(np.float16).max
      if big.any():  # would become inf on disk and only fail later, in the reader
        fail(np.argmax(big), "float16_overflow", "feature values exceed float16's range (65504)")
    if (tag_lengths == 0).any():
      fail(np.argmax(tag_lengths == 0), "empty_hashtags", "a post needs at least one hashtag")
    out = (tag_flat < 0) | (tag_flat >= self.num_tags)
    if out.any():
      i = np.repeat(np.arange(n), tag_lengths)[np.argmax(out)]
      fail(i, "tag_out_of_vocab", f"hashtag id {tag_flat[np.argmax(out)]} is outside the "
           f"vocabulary [0, {self.num_tags})")
    for i, t in enumerate(tags):
      if len(np.unique(t)) != len(t):
        fail(i, "duplicate_hashtag", f"hashtag ids {list(t)} repeat")
    if not np.isin(block["split"], list(fmt.SPLIT_CODES.values())).all():
      fail(0, "bad_split", f"split codes must be in {fmt.SPLIT_CODES}")
    if self.has_captions:
      if captions is None or len(captions) != n:
        fail(0, "missing_caption", "the dataset has captions; every post needs a token list")
      _, cap_flat = _ragged(captions)
      if ((cap_flat < 0) | (cap_flat >= self.caption_vocab_size)).any():
        fail(0, "caption_out_of_vocab", f"caption token ids outside [0, {self.caption_vocab_size})")
    self._check_order(block, fail)

  def _check_order(self, block, fail) -> None:
    """Rows must come in (user_id, timestamp) order with each user's posts contiguous."""
    users, times = block["user_id"], block["timestamp"]
    for i in range(len(users)):
      key = (int(users[i]), int(times[i]))
      if self._last_key is not None and key[0] != self._last_key[0]:
        self._finished_users.add(self._last_key[0])
        if key[0] in self._finished_users:
          fail(i, "unsorted", f"user {key[0]} appears again after other users' posts; posts "
               "must be grouped by user")
      elif self._last_key is not None and key[1] < self._last_key[1]:
        fail(i, "unsorted", f"timestamp {key[1]} is earlier than the user's previous post")
      self._last_key = key

  # -- writing shards -------------------------------------------------------------------------

  def _flush(self, count: int) -> None:
    """Writes the first `count` buffered posts as the next shard."""
    blocks, self._buffer = self._buffer, []
    cols = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    head = {k: v[:count] for k, v in cols.items() if not k.endswith("_ids")}
    rest = {k: v[count:] for k, v in cols.items() if not k.endswith("_ids")}
    for ragged in ("tag", "caption"):
      if f"{ragged}_ids" in cols:
        cut = int(cols[f"{ragged}_lengths"][:count].sum())
        head[f"{ragged}_ids"] = cols[f"{ragged}_ids"][:cut]
        rest[f"{ragged}_ids"] = cols[f"{ragged}_ids"][cut:]
    self._write_shard(head)
    self._buffered = len(rest["post_id"])
    if self._buffered:
      self._buffer = [rest]

  def _write_shard(self, cols: dict[str, np.ndarray]) -> None:
    path = fmt.shard_dir(self.directory, len(self._shards))
    os.makedirs(path)
    cols = dict(cols)
    cols["features"] = cols["features"].astype(self.feature_dtype)
    for ragged in ("tag", "caption"):
      if f"{ragged}_lengths" in cols:
        lengths = cols.pop(f"{ragged}_lengths")
        cols[f"{ragged}_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    for name in fmt.shard_columns(self.has_captions):
      np.save(os.path.join(path, name + ".npy"), cols[name])
    self._shards.append({"num_posts": int(len(cols["post_id"])),
                         "num_tag_ids": int(len(cols["tag_ids"]))})

  # -- finishing ------------------------------------------------------------------------------

  def finalize(self, *, vocab: Sequence[str], word_vectors: np.ndarray | None = None,
               caption_vocab: Sequence[str] | None = None, users: dict | None = None,
               provenance: dict | None = None, report: fmt.BuildReport | None = None) -> np.ndarray:
    """Renumbers tags by training frequency, writes indices and metadata; returns the order.

    The returned `order` maps new id -> old id (order[0] is the most frequent training tag), so a
    converter can permute anything else it keeps per tag. Ties keep the old order (stable sort),
    except among the tags no training post has: they come last, ordered by name. Their old
    order may be another split's frequency order (a converter re-splitting a dataset), which
    would tell the held-out posts' frequencies through the ids (a frequency baseline ranks its
    ties by id).
    Outside a with-block the dataset is moved into place here; inside one, when the block exits.
    """
    if len(vocab) != self.num_tags:
      raise ValueError(f"vocab has {len(vocab)} entries, writer was told num_tags={self.num_tags}")
    if self._buffered:
      self._flush(self._buffered)
    if not self._shards:
      raise fmt.DatasetError(f"{self.target}: no posts were written")
    counts = self._train_tag_counts
    seen, unseen = np.flatnonzero(counts > 0), np.flatnonzero(counts == 0)
    order = np.concatenate([seen[np.argsort(-counts[seen], kind="stable")],
                            unseen[np.argsort(np.asarray(vocab, dtype=object)[unseen],
                                              kind="stable")]])
    new_id = np.empty_like(order)
    new_id[order] = np.arange(len(order))
    user_ids, splits = [], []
    for i in range(len(self._shards)):
      tag_path = os.path.join(fmt.shard_dir(self.directory, i), "tag_ids.npy")
      np.save(tag_path, new_id[np.load(tag_path)].astype(np.int32))
      user_ids.append(np.load(os.path.join(fmt.shard_dir(self.directory, i), "user_id.npy")))
      splits.append(np.load(os.path.join(fmt.shard_dir(self.directory, i), "split.npy")))
    self._write_indices(np.concatenate(user_ids), np.concatenate(splits))

    d = self.directory
    fmt.write_lines(os.path.join(d, fmt.VOCAB_FILE), [vocab[j] for j in order])
    np.save(os.path.join(d, fmt.TAG_COUNTS_FILE), self._train_tag_counts[order])
    if word_vectors is not None:
      np.save(os.path.join(d, fmt.WORD_VECTORS_FILE), np.asarray(word_vectors, np.float32)[order])
    if caption_vocab is not None:
      fmt.write_lines(os.path.join(d, fmt.CAPTION_VOCAB_FILE), list(caption_vocab))
    if users is not None:
      np.savez(os.path.join(d, fmt.USERS_FILE), **users)
    report = report or fmt.BuildReport()
    report.record_written(int(self._split_counts.sum()))  # and checks the accounting
    fmt.write_metadata(d, self._metadata(word_vectors, provenance, report))
    self._finalized = True
    if not self._in_with_block:
      self._commit()
    return order

  def _write_indices(self, user_ids: np.ndarray, splits: np.ndarray) -> None:
    os.makedirs(os.path.join(self.directory, fmt.SPLITS_DIR))
    for name, code in fmt.SPLIT_CODES.items():
      np.save(os.path.join(self.directory, fmt.SPLITS_DIR, name + ".npy"),
              np.flatnonzero(splits == code).astype(np.int64))
    starts = np.flatnonzero(np.diff(user_ids, prepend=user_ids[0] - 1))
    np.savez(os.path.join(self.directory, fmt.USER_INDEX_FILE), user_ids=user_ids[starts],
             first_row=starts, num_rows=np.diff(np.append(starts, len(user_ids))))

  def _metadata(self, word_vectors, provenance, report) -> dict[str, Any]:
    counts = self._train_tag_counts
    total = int(counts.sum())
    return {
        "schema_version": fmt.SCHEMA_VERSION,
        "feature_dim": self.feature_dim,
        "feature_dtype": self.feature_dtype,
        **({"feature_views": [list(v) for v in self.feature_views]} if self.feature_views
           else {}),
        "user_meta_dim": self.user_meta_dim,
        "num_tags": self.num_tags,
        "word_vector_dim": None if word_vectors is None else int(np.shape(word_vectors)[1]),
        "has_captions": self.has_captions,
        "caption_vocab_size": self.caption_vocab_size,
        "split_scheme": self.split_scheme,
        "num_posts": int(self._split_counts.sum()),
        "counts": {name: int(self._split_counts[c]) for name, c in fmt.SPLIT_CODES.items()},
        "max_tags_per_post": self._max_tags,
        "train_tag_stats": {
            "occurrences": total,
            "tags_seen": int((counts > 0).sum()),
            "top10_share": float(np.sort(counts)[::-1][:10].sum() / max(total, 1)),
        },
        "shards": self._shards,
        "provenance": provenance or {},
        "build_report": report.as_dict(),
    }
