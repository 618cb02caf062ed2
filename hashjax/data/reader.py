"""Random access to a dataset directory (see format.py): batches of posts by global row number.

Features stay memory-mapped (a paper-scale dataset is 8-16 GB); the small columns (ids, offsets,
hashtag ids) are loaded into memory. Every batch read is checked (finite features, non-empty
in-vocabulary hashtags), and an error names the shard file and the record.
"""

import os
from typing import Any

import numpy as np

from hashjax.data import format as fmt
from hashjax.data.spec import DatasetSpec

PAD_ID = -1  # value of padded hashtag / caption / history slots; always paired with a False mask

# What `read` can return per post. The in-memory columns cost nothing; features (memory-mapped,
# the bulk of every batch) and captions are read only when asked for.
POST_FIELDS = ("row", "post_id", "user_id", "user_index", "timestamp", "features", "user_meta",
               "tag_ids", "tag_mask", "caption_ids", "caption_mask")
# Every pipeline reads these: the ground truth, and post_id for the balanced distribution's
# per-occurrence decision (tag_distribution.apply).
TRUTH_FIELDS = ("row", "post_id", "tag_ids", "tag_mask")


class PostDataset:
  """A read-only view of a dataset directory. Thread-safe for reads (grain uses threads)."""

  def __init__(self, directory: str):
    self.directory = directory
    self.metadata = fmt.read_metadata(directory)
    meta = self.metadata
    self.feature_dim = meta["feature_dim"]
    self.num_tags = meta["num_tags"]
    self.user_meta_dim = meta["user_meta_dim"]
    self.has_captions = meta["has_captions"]
    self.vocab = self._read_vocab()
    self.tag_counts = self._load(fmt.TAG_COUNTS_FILE, (self.num_tags,))
    self.word_vectors = (self._load(fmt.WORD_VECTORS_FILE, (self.num_tags, meta["word_vector_dim"]))
                         if meta.get("word_vector_dim") else None)
    self._shards = [self._open_shard(i, s) for i, s in enumerate(meta["shards"])]
    self._shard_starts = np.cumsum([0] + [s["num_posts"] for s in meta["shards"]])
    self.num_posts = int(self._shard_starts[-1])
    self.max_caption_len = (int(max(np.diff(s["caption_offsets"]).max(initial=0)
                                    for s in self._shards)) if self.has_captions else 0)
    # Small columns, concatenated over shards, in memory: cheap random access for every batch.
    self.user_ids = np.concatenate([s["user_id"] for s in self._shards])
    self.timestamps = np.concatenate([s["timestamp"] for s in self._shards])
    index = np.load(os.path.join(directory, fmt.USER_INDEX_FILE))
    self._user_rows = {u: (f, n) for u, f, n in zip(index["user_ids"].tolist(),
                                                    index["first_row"].tolist(),
                                                    index["num_rows"].tolist())}
    # The dense user index: users numbered 0..U-1 in row order (HetRec's ids are sparse).
    self.num_users = len(index["user_ids"])
    self.user_index_of_row = np.repeat(np.arange(self.num_users, dtype=np.int32),
                                       index["num_rows"])
    self.splits = {name: self._load(os.path.join(fmt.SPLITS_DIR, name + ".npy"),
                                    (meta["counts"][name],)) for name in fmt.SPLITS}
    row_first = index["first_row"]
    # first_row_of[r] = first row of r's user, so the history of r is rows [first_row_of[r], r).
    self.first_row_of = np.repeat(row_first, index["num_rows"])
    if len(self.first_row_of) != self.num_posts:
      raise fmt.DatasetError(f"{os.path.join(directory, fmt.USER_INDEX_FILE)}: covers "
                             f"{len(self.first_row_of)} rows, dataset has {self.num_posts}")

  @property
  def spec(self) -> DatasetSpec:
    """The sizes a model is built from (see spec.py)."""
    meta = self.metadata
    return DatasetSpec(feature_dim=self.feature_dim, user_meta_dim=self.user_meta_dim,
                       num_tags=self.num_tags, num_users=self.num_users,
                       word_vector_dim=meta.get("word_vector_dim") or 0,
                       caption_vocab_size=meta.get("caption_vocab_size") or 0,
                       max_tags_per_post=meta["max_tags_per_post"],
                       max_caption_len=self.max_caption_len)

  # -- opening --------------------------------------------------------------------------------

  def _read_vocab(self) -> list[str]:
    path = os.path.join(self.directory, fmt.VOCAB_FILE)
    if not os.path.exists(path):
      raise fmt.DatasetError(f"{path}: missing")
    vocab = fmt.read_lines(path)
    if len(vocab) != self.num_tags:
      raise fmt.DatasetError(f"{path}: {len(vocab)} hashtags but metadata says "
                             f"num_tags={self.num_tags}")
    return vocab

  def _load(self, name: str, shape: tuple, mmap: bool = False) -> np.ndarray:
    path = os.path.join(self.directory, name)
    if not os.path.exists(path):
      raise fmt.DatasetError(f"{path}: missing")
    try:
      array = np.load(path, mmap_mode="r" if mmap else None)
    except ValueError as e:  # numpy's message for a file cut short
      raise fmt.DatasetError(f"{path}: truncated or corrupt ({e})") from e
    if array.shape != tuple(shape):
      raise fmt.DatasetError(f"{path}: shape {array.shape} but metadata implies {tuple(shape)}")
    return array

  def _open_shard(self, index: int, info: dict[str, int]) -> dict[str, np.ndarray]:
    n, nnz = info["num_posts"], info["num_tag_ids"]
    rel = os.path.relpath(fmt.shard_dir(self.directory, index), self.directory)
    shapes = {"post_id": (n,), "user_id": (n,), "timestamp": (n,), "split": (n,),
              "features": (n, self.feature_dim), "tag_offsets": (n + 1,), "tag_ids": (nnz,),
              "user_meta": (n, self.user_meta_dim)}
    shard = {name: self._load(os.path.join(rel, name + ".npy"), shape, mmap=(name == "features"))
             for name, shape in shapes.items()}
    if shard["features"].dtype != np.dtype(self.metadata["feature_dtype"]):
      raise fmt.DatasetError(f"{os.path.join(self.directory, rel, 'features.npy')}: dtype "
                             f"{shard['features'].dtype}, metadata says "
                             f"{self.metadata['feature_dtype']}")
    if shard["tag_offsets"][-1] != nnz:
      raise fmt.DatasetError(f"{os.path.join(self.directory, rel, 'tag_offsets.npy')}: offsets "
                             f"end at {shard['tag_offsets'][-1]}, tag_ids has {nnz} entries")
    if self.has_captions:
      shard["caption_offsets"] = self._load(os.path.join(rel, "caption_offsets.npy"), (n + 1,))
      shard["caption_ids"] = self._load(os.path.join(rel, "caption_ids.npy"),
                                        (int(shard["caption_offsets"][-1]),))
    shard["path"] = os.path.join(self.directory, rel)
    return shard

  # -- reading --------------------------------------------------------------------------------

  def __len__(self) -> int:
    return self.num_posts

  def split_rows(self, split: str) -> np.ndarray:
    if split not in self.splits:
      raise KeyError(f"unknown split {split!r}; this dataset has {list(self.splits)}")
    return self.splits[split]

  def read(self, rows, *, fields=None, max_tags: int | None = None,
           max_caption: int | None = None) -> dict[str, Any]:
    """Reads posts by global row number into a padded batch (rows keep their given order).

    fields: which of POST_FIELDS to return (default: all, captions if the dataset has them);
    row, tag_ids and tag_mask always come back (the hashtags of every record are checked).
    row / post_id / user_id / timestamp are [B]; user_index int32 [B] is the dense user number
    in [0, num_users); features float32 [B, D]; user_meta [B, M]; tag_ids int32 [B, T] padded
    with PAD_ID and tag_mask bool [B, T] (T = max_tags, default the dataset's maximum, so
    nothing is cut unless asked); caption_ids / caption_mask [B, L] (L = max_caption, default
    the longest caption). `num_tags_cut` counts hashtags dropped by a small max_tags.
    """
    if fields is None:
      fields = [f for f in POST_FIELDS if self.has_captions or not f.startswith("caption")]
    fields = set(fields)
    unknown = fields - set(POST_FIELDS)
    if unknown:
      raise KeyError(f"unknown batch fields {sorted(unknown)}; a post has {POST_FIELDS}")
    captions = bool(fields & {"caption_ids", "caption_mask"})
    if captions and not self.has_captions:
      raise fmt.DatasetError(f"{self.directory}: the dataset has no captions")
    rows = np.asarray(rows, np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= self.num_posts):
      raise IndexError(f"rows outside [0, {self.num_posts})")
    max_tags = max_tags or self.metadata["max_tags_per_post"]
    max_caption = (max_caption or self.max_caption_len) if captions else 0
    b = len(rows)
    out = {"row": rows, "user_id": self.user_ids[rows], "timestamp": self.timestamps[rows],
           "user_index": self.user_index_of_row[rows], "num_tags_cut": 0}
    for name, shape, dtype in (("post_id", (b,), np.int64), ("features", (b, self.feature_dim),
                                np.float32), ("user_meta", (b, self.user_meta_dim), np.float32)):
      if name in fields:
        out[name] = np.empty(shape, dtype)
    # Tags are always read: every record's hashtags are checked, whatever is returned.
    out["tag_ids"] = np.full((b, max_tags), PAD_ID, np.int32)
    out["tag_mask"] = np.zeros((b, max_tags), bool)
    if captions:
      out["caption_ids"] = np.full((b, max_caption), PAD_ID, np.int32)
      out["caption_mask"] = np.zeros((b, max_caption), bool)
    shard_of = np.searchsorted(self._shard_starts, rows, side="right") - 1
    for s in np.unique(shard_of):
      pos = np.flatnonzero(shard_of == s)
      local = rows[pos] - self._shard_starts[s]
      order = np.argsort(local)  # sorted reads are kinder to the page cache
      pos, local = pos[order], local[order]
      self._read_shard(self._shards[s], local, pos, out, max_tags, max_caption)
    always = ("row", "tag_ids", "tag_mask", "num_tags_cut")
    return {k: v for k, v in out.items() if k in fields or k in always}

  def _read_shard(self, shard, local, pos, out, max_tags, max_caption) -> None:
    if "features" in out:
      feats = shard["features"][local]
      bad = ~np.isfinite(feats).all(axis=1)
      if bad.any():
        self._fail(shard, local[np.argmax(bad)], "image features contain NaN or inf")
      out["features"][pos] = feats
    for name in ("user_meta", "post_id"):
      if name in out:
        out[name][pos] = shard[name][local]
    ids, mask, cut = _gather_ragged(shard["tag_offsets"], shard["tag_ids"], local, max_tags)
    lengths = np.diff(shard["tag_offsets"])[local]
    if (lengths == 0).any():
      self._fail(shard, local[np.argmax(lengths == 0)], "post has no hashtags")
    out_of_vocab = mask & ((ids < 0) | (ids >= self.num_tags))
    if out_of_vocab.any():
      i = np.argmax(out_of_vocab.any(axis=1))
      self._fail(shard, local[i], f"hashtag id {ids[i][out_of_vocab[i]][0]} outside the "
                 f"vocabulary [0, {self.num_tags})")
    out["tag_ids"][pos], out["tag_mask"][pos] = ids, mask
    out["num_tags_cut"] += cut
    if max_caption:
      ids, mask, _ = _gather_ragged(shard["caption_offsets"], shard["caption_ids"], local,
                                    max_caption)
      out["caption_ids"][pos], out["caption_mask"][pos] = ids, mask

  def _fail(self, shard, local_row: int, message: str):
    raise fmt.DatasetError(f"{shard['path']}: record {int(local_row)} (post_id "
                           f"{int(shard['post_id'][local_row])}): {message}")

  def validate(self, chunk: int = 8192) -> int:
    """Reads every record once (all per-batch checks) and checks the row order; returns N.

    A dataset that passes can be trained on without a data error; the first problem found
    raises DatasetError naming the file and record.
    """
    same_user = self.user_ids[self.first_row_of] == self.user_ids
    if not same_user.all():
      raise fmt.DatasetError(f"{os.path.join(self.directory, fmt.USER_INDEX_FILE)}: row "
                             f"{int(np.argmin(same_user))} is not in its user's row range")
    earlier = (np.diff(self.timestamps) < 0) & (np.diff(self.first_row_of) == 0)
    if earlier.any():
      raise fmt.DatasetError(f"{self.directory}: row {int(np.argmax(earlier)) + 1} is earlier "
                             "than the same user's previous post")
    for start in range(0, self.num_posts, chunk):
      self.read(np.arange(start, min(start + chunk, self.num_posts)))
    return self.num_posts

  def history(self, rows, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The (at most max_len) most recent earlier posts of each row's user, oldest first.

    Returns history rows int64 [B, max_len] (PAD_ID where there is none, padding at the end)
    and a mask. Rows are global, so they can be passed to `read`.
    """
    rows = np.asarray(rows, np.int64)
    start = np.maximum(self.first_row_of[rows], rows - max_len)
    length = rows - start
    offsets = np.arange(max_len)
    mask = offsets[None, :] < length[:, None]
    hist = np.where(mask, start[:, None] + offsets[None, :], PAD_ID)
    return hist, mask

  def user_rows(self, user_id: int) -> np.ndarray:
    """All rows of one user, in time order."""
    first, count = self._user_rows[int(user_id)]
    return np.arange(first, first + count)


def _gather_ragged(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray,
                   width: int) -> tuple[np.ndarray, np.ndarray, int]:
  """Pads the ragged lists of `rows` to [B, width] (vectorised); also counts what was cut."""
  start, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
  cols = np.arange(width)
  mask = cols[None, :] < lengths[:, None]
  index = np.where(mask, start[:, None] + cols[None, :], 0)
  ids = np.where(mask, values[index] if len(values) else PAD_ID, PAD_ID).astype(np.int32)
  return ids, mask, int(np.maximum(lengths - width, 0).sum())
