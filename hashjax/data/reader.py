"""Random access to a dataset directory (see format.py): batches of posts by global row number.

Features stay memory-mapped (a paper-scale dataset is 8-16 GB); the small columns (ids, offsets,
hashtag ids) are loaded into memory. Every error is a DatasetError naming the file and the record.
The checks come in three tiers, by what they cost:
  - opening (`PostDataset(dir)`): every file readable with the shape and dtype the metadata
    implies; offsets that start at 0 and never decrease; a contiguous user index; split rows
    inside the dataset. What training would otherwise trip over (an IndexError, garbage rows) is
    caught here.
  - every batch (`read`): finite features and user metadata, non-empty hashtag lists of distinct
    in-vocabulary ids, caption tokens inside the caption vocabulary.
  - `validate()` (python -m data_prep.validate): every record through `read`, plus the scans
    over the whole dataset: row order, the split files (sorted, distinct, disjoint, agreeing
    with each row's split column and with the split scheme), finite word vectors, and every
    other .npy / .npz file in the directory readable.
"""

import os
import zipfile
from typing import Any, Iterator

import numpy as np

from hashjax.data import format as fmt
from hashjax.data import splits
from hashjax.data.spec import DatasetSpec

PAD_ID = -1  # value of padded hashtag / caption / history slots; always paired with a False mask

# What `read` can return per post. The in-memory columns cost nothing; features (memory-mapped,
# the bulk of every batch) and captions are read only when asked for.
POST_FIELDS = ("row", "post_id", "user_id", "user_index", "user_train_posts", "in_train",
               "timestamp",
               "features", "user_meta", "tag_ids", "tag_mask", "caption_ids", "caption_mask")
# Every pipeline reads these: the ground truth, and post_id for the balanced distribution's
# per-occurrence decision (tag_distribution.apply).
TRUTH_FIELDS = ("row", "post_id", "tag_ids", "tag_mask")

# What np.load raises on a damaged file: a zero-byte .npy is an EOFError, a cut .npz a
# BadZipFile, a cut or garbled .npy a ValueError.
_UNREADABLE = (ValueError, EOFError, OSError, zipfile.BadZipFile)
# The dtype kind of every shard column ("i": signed or unsigned integer, "f": float).
_COLUMN_KINDS = {"post_id": "i", "user_id": "i", "timestamp": "i", "split": "i",
                 "features": "f", "tag_offsets": "i", "tag_ids": "i", "user_meta": "f",
                 "caption_offsets": "i", "caption_ids": "i"}
_USER_INDEX_KEYS = ("user_ids", "first_row", "num_rows")


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
    self.caption_vocab_size = self._caption_vocab_size()
    self.tag_counts = self._load(fmt.TAG_COUNTS_FILE, (self.num_tags,), kind="i")
    self.word_vectors = (self._load(fmt.WORD_VECTORS_FILE, (self.num_tags, meta["word_vector_dim"]),
                                    kind="f")
                         if meta.get("word_vector_dim") else None)
    self._shards = [self._open_shard(i, s) for i, s in enumerate(meta["shards"])]
    self._shard_starts = np.cumsum([0] + [s["num_posts"] for s in meta["shards"]])
    self.num_posts = int(self._shard_starts[-1])
    self.max_caption_len = (int(max(np.diff(s["caption_offsets"]).max(initial=0)
                                    for s in self._shards)) if self.has_captions else 0)
    # Small columns, concatenated over shards, in memory: cheap random access for every batch.
    self.user_ids = np.concatenate([s["user_id"] for s in self._shards])
    self.timestamps = np.concatenate([s["timestamp"] for s in self._shards])
    index = self._read_user_index()
    self._user_rows = {u: (f, n) for u, f, n in zip(index["user_ids"].tolist(),
                                                    index["first_row"].tolist(),
                                                    index["num_rows"].tolist())}
    # The dense user index: users numbered 0..U-1 in row order (HetRec's ids are sparse).
    self.num_users = len(index["user_ids"])
    self.user_index_of_row = np.repeat(np.arange(self.num_users, dtype=np.int32),
                                       index["num_rows"])
    # first_row_of[r] = first row of r's user, so the history of r is rows [first_row_of[r], r).
    self.first_row_of = np.repeat(index["first_row"], index["num_rows"])
    self.splits = {name: self._read_split(name) for name in fmt.SPLITS}
    # How many training posts each post's user has: 0 marks a user no model has seen in
    # training (user-disjoint test users), who gets a model's fallback embedding.
    self.user_train_posts_of_row = np.bincount(
        self.user_index_of_row[self.splits["train"]], minlength=self.num_users
    ).astype(np.int32)[self.user_index_of_row]
    self.in_train_of_row = np.zeros(self.num_posts, bool)
    self.in_train_of_row[self.splits["train"]] = True

  @property
  def spec(self) -> DatasetSpec:
    """The sizes a model is built from (see spec.py)."""
    meta = self.metadata
    return DatasetSpec(feature_dim=self.feature_dim, user_meta_dim=self.user_meta_dim,
                       num_tags=self.num_tags, num_users=self.num_users,
                       word_vector_dim=meta.get("word_vector_dim") or 0,
                       caption_vocab_size=meta.get("caption_vocab_size") or 0,
                       max_tags_per_post=meta["max_tags_per_post"],
                       max_caption_len=self.max_caption_len,
                       num_seen_tags=int((self.tag_counts > 0).sum()),
                       feature_views=fmt.check_feature_views(
                           self.directory, meta.get("feature_views", ()), self.feature_dim))

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

  def _caption_vocab_size(self) -> int:
    """Caption ids are checked against this; caption_vocab.txt, when present, must agree."""
    size = self.metadata.get("caption_vocab_size") or 0
    if not self.has_captions:
      return size
    if size < 1:
      raise fmt.DatasetError(f"{os.path.join(self.directory, fmt.METADATA_FILE)}: has_captions "
                             f"but caption_vocab_size={size}")
    path = os.path.join(self.directory, fmt.CAPTION_VOCAB_FILE)
    if os.path.exists(path):
      tokens = len(fmt.read_lines(path))
      if tokens != size:
        raise fmt.DatasetError(f"{path}: {tokens} tokens but metadata says "
                               f"caption_vocab_size={size}")
    return size

  def _load(self, name: str, shape: tuple, mmap: bool = False, kind: str = "") -> np.ndarray:
    """One .npy file with the shape (and dtype kind, "i" or "f") the metadata implies."""
    path = os.path.join(self.directory, name)
    if not os.path.exists(path):
      raise fmt.DatasetError(f"{path}: missing")
    array = _load_npy(path, mmap)
    if array.shape != tuple(shape):
      raise fmt.DatasetError(f"{path}: shape {array.shape} but metadata implies {tuple(shape)}")
    if kind and not _has_kind(array, kind):
      raise fmt.DatasetError(f"{path}: dtype {array.dtype}, expected "
                             f"{'an integer' if kind == 'i' else 'a float'} type")
    return array

  def _read_user_index(self) -> dict[str, np.ndarray]:
    """user_index.npz, checked to be what `history` and `user_rows` rely on.

    Users are contiguous row ranges in row order: first_row starts at 0 and each user starts
    where the previous one ends, every user has a row, the ranges cover the dataset and no user
    appears twice.
    """
    path = os.path.join(self.directory, fmt.USER_INDEX_FILE)
    index = _load_npz(path, _USER_INDEX_KEYS)
    n = len(index["user_ids"])
    for key, array in index.items():
      if array.ndim != 1 or len(array) != n or not _has_kind(array, "i"):
        raise fmt.DatasetError(f"{path}: {key} is {array.dtype} {array.shape}; every array must "
                               f"be 1-D integers, one per user ({n} user_ids)")
    first, count, users = index["first_row"], index["num_rows"], index["user_ids"]
    if (count < 1).any():
      u = int(np.argmax(count < 1))
      raise fmt.DatasetError(f"{path}: user {u} (user_id {users[u]}) has num_rows {count[u]}")
    expected = np.concatenate([[0], np.cumsum(count)[:-1]])
    if (first != expected).any():
      u = int(np.argmax(first != expected))
      raise fmt.DatasetError(f"{path}: user {u} (user_id {users[u]}) starts at row {first[u]}, "
                             f"but the users before it end at row {expected[u]}")
    if int(count.sum()) != self.num_posts:
      raise fmt.DatasetError(f"{path}: covers {int(count.sum())} rows, dataset has "
                             f"{self.num_posts}")
    if len(np.unique(users)) != n:
      repeated = np.sort(users)[np.flatnonzero(np.diff(np.sort(users)) == 0)[0]]
      raise fmt.DatasetError(f"{path}: user_id {repeated} has two row ranges")
    return index

  def _read_split(self, name: str) -> np.ndarray:
    """A split file: integer rows inside the dataset (or every batch of it would fail)."""
    rel = os.path.join(fmt.SPLITS_DIR, name + ".npy")
    rows = self._load(rel, (self.metadata["counts"][name],), kind="i")
    outside = (rows < 0) | (rows >= self.num_posts)
    if outside.any():
      i = int(np.argmax(outside))
      raise fmt.DatasetError(f"{os.path.join(self.directory, rel)}: entry {i} is row {rows[i]}, "
                             f"outside the dataset's rows [0, {self.num_posts})")
    return rows.astype(np.int64, copy=False)

  def _open_shard(self, index: int, info: dict[str, int]) -> dict[str, np.ndarray]:
    n, nnz = info["num_posts"], info["num_tag_ids"]
    rel = os.path.relpath(fmt.shard_dir(self.directory, index), self.directory)
    shapes = {"post_id": (n,), "user_id": (n,), "timestamp": (n,), "split": (n,),
              "features": (n, self.feature_dim), "tag_offsets": (n + 1,), "tag_ids": (nnz,),
              "user_meta": (n, self.user_meta_dim)}
    shard = {name: self._load(os.path.join(rel, name + ".npy"), shape, mmap=(name == "features"),
                              kind=_COLUMN_KINDS[name])
             for name, shape in shapes.items()}
    shard["path"] = os.path.join(self.directory, rel)
    if shard["features"].dtype != np.dtype(self.metadata["feature_dtype"]):
      raise fmt.DatasetError(f"{os.path.join(self.directory, rel, 'features.npy')}: dtype "
                             f"{shard['features'].dtype}, metadata says "
                             f"{self.metadata['feature_dtype']}")
    _check_offsets(shard, "tag")
    if shard["tag_offsets"][-1] != nnz:
      raise fmt.DatasetError(f"{os.path.join(shard['path'], 'tag_offsets.npy')}: offsets "
                             f"end at {shard['tag_offsets'][-1]}, tag_ids has {nnz} entries")
    if self.has_captions:
      shard["caption_offsets"] = self._load(os.path.join(rel, "caption_offsets.npy"), (n + 1,),
                                            kind="i")
      _check_offsets(shard, "caption")  # before its last entry sizes caption_ids
      shard["caption_ids"] = self._load(os.path.join(rel, "caption_ids.npy"),
                                        (int(shard["caption_offsets"][-1]),), kind="i")
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
    in [0, num_users); user_train_posts int32 [B] the number of training posts of the post's
    user (0: a user unseen in training); in_train bool [B] whether the post is in the training
    split; features float32 [B, D]; user_meta [B, M]; tag_ids int32 [B, T] padded with PAD_ID and tag_mask bool [B, T] (T = max_tags, default the dataset's maximum, so
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
           "user_index": self.user_index_of_row[rows],
           "user_train_posts": self.user_train_posts_of_row[rows],
           "in_train": self.in_train_of_row[rows], "num_tags_cut": 0}
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
    if "user_meta" in out:
      meta = shard["user_meta"][local]
      bad = ~np.isfinite(meta).all(axis=1)
      if bad.any():  # a NaN here turns every model that reads metadata into NaN
        self._fail(shard, local[np.argmax(bad)], "user metadata contains NaN or inf")
      out["user_meta"][pos] = meta
    if "post_id" in out:
      out["post_id"][pos] = shard["post_id"][local]
    ids, mask, cut = _gather_ragged(shard["tag_offsets"], shard["tag_ids"], local, max_tags)
    lengths = np.diff(shard["tag_offsets"])[local]
    if (lengths == 0).any():
      self._fail(shard, local[np.argmax(lengths == 0)], "post has no hashtags")
    self._check_ids(shard, local, ids, mask, self.num_tags, "hashtag id", "the vocabulary")
    repeated = _first_repeated(ids, mask)
    if repeated:  # a repeated positive would count twice in every loss and metric
      i, tag = repeated
      self._fail(shard, local[i], f"hashtag id {tag} appears twice in the post "
                 f"({ids[i][mask[i]].tolist()})")
    out["tag_ids"][pos], out["tag_mask"][pos] = ids, mask
    out["num_tags_cut"] += cut
    if max_caption:
      ids, mask, _ = _gather_ragged(shard["caption_offsets"], shard["caption_ids"], local,
                                    max_caption)
      self._check_ids(shard, local, ids, mask, self.caption_vocab_size, "caption token id",
                      "the caption vocabulary")
      out["caption_ids"][pos], out["caption_mask"][pos] = ids, mask

  def _check_ids(self, shard, local, ids, mask, size: int, what: str, vocabulary: str) -> None:
    """Every unmasked id in [0, size): an embedding lookup would clip or wrap silently."""
    outside = mask & ((ids < 0) | (ids >= size))
    if outside.any():
      i = int(np.argmax(outside.any(axis=1)))
      self._fail(shard, local[i], f"{what} {ids[i][outside[i]][0]} outside {vocabulary} "
                 f"[0, {size})")

  def _fail(self, shard, local_row: int, message: str):
    raise fmt.DatasetError(f"{shard['path']}: record {int(local_row)} (post_id "
                           f"{int(shard['post_id'][local_row])}): {message}")

  def read_chunks(self, rows, *, chunk: int = 8192, fields=("row",)
                  ) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """(rows[i:i + chunk], read(those rows, fields)) for consecutive chunks of `rows`: a whole
    split or dataset in bounded memory (fields=("row",): just the hashtags, always read)."""
    rows = np.asarray(rows, np.int64)
    for start in range(0, len(rows), chunk):
      part = rows[start:start + chunk]
      yield part, self.read(part, fields=fields)

  def validate(self, chunk: int = 8192) -> int:
    """Reads every record once (all per-batch checks) and scans the whole dataset; returns N.

    A dataset that passes can be trained on without a data error; the first problem found
    raises DatasetError naming the file and record. See the module docstring for the list.
    """
    self._validate_row_order()
    self._validate_splits()
    self._validate_tag_counts()
    if self.word_vectors is not None:
      bad = ~np.isfinite(self.word_vectors).all(axis=1)
      if bad.any():
        t = int(np.argmax(bad))
        raise fmt.DatasetError(f"{os.path.join(self.directory, fmt.WORD_VECTORS_FILE)}: row {t} "
                               f"(hashtag {self.vocab[t]!r}) contains NaN or inf")
    self._validate_other_arrays()
    for _ in self.read_chunks(np.arange(self.num_posts), chunk=chunk, fields=None):
      pass
    return self.num_posts

  def _validate_row_order(self) -> None:
    """Each row lies in its user's range, and a user's rows are in time order."""
    same_user = self.user_ids[self.first_row_of] == self.user_ids
    if not same_user.all():
      raise fmt.DatasetError(f"{os.path.join(self.directory, fmt.USER_INDEX_FILE)}: row "
                             f"{int(np.argmin(same_user))} is not in its user's row range")
    earlier = (np.diff(self.timestamps) < 0) & (np.diff(self.first_row_of) == 0)
    if earlier.any():
      raise fmt.DatasetError(f"{self.directory}: row {int(np.argmax(earlier)) + 1} is earlier "
                             "than the same user's previous post")

  def _split_path(self, code: int) -> str:
    return os.path.join(self.directory, fmt.SPLITS_DIR, fmt.SPLITS[code] + ".npy")

  def _validate_splits(self) -> None:
    """No leakage: each row is in exactly one split file, the one its split column names.

    Split files hold sorted, distinct rows; no row is in two files; each row's split column
    agrees with the file it is in; and the scheme holds (user_disjoint: one split per user;
    temporal: a user's train, then val, then test posts, in time order).
    """
    split_of = np.full(self.num_posts, -1, np.int64)  # the split file each row is in
    for code, name in enumerate(fmt.SPLITS):
      rows, path = self.splits[name], self._split_path(code)
      step = np.diff(rows)
      if (step <= 0).any():
        i = int(np.argmax(step <= 0)) + 1
        problem = "repeats the entry before" if step[i - 1] == 0 else "is below the entry before"
        raise fmt.DatasetError(f"{path}: entry {i} (row {rows[i]}) {problem}; a split file "
                               "holds sorted, distinct rows")
      taken = split_of[rows] >= 0
      if taken.any():
        i = int(np.argmax(taken))
        raise fmt.DatasetError(f"{path}: entry {i} (row {rows[i]}) is also in "
                               f"{self._split_path(split_of[rows[i]])}: a row belongs to one "
                               "split (leakage between splits)")
      split_of[rows] = code
    column = np.concatenate([s["split"] for s in self._shards]).astype(np.int64)
    disagree = column != split_of
    if disagree.any():
      row = int(np.argmax(disagree))
      code = int(column[row])
      said = fmt.SPLITS[code] if 0 <= code < len(fmt.SPLITS) else f"the invalid code {code}"
      found = self._split_path(split_of[row]) if split_of[row] >= 0 else "no split file"
      self._fail_row(row, f"split.npy says {said}, but row {row} is in {found}")
    self._validate_split_scheme(column)

  def _validate_split_scheme(self, split_of: np.ndarray) -> None:
    """The split recorded in the metadata is the split the rows are in."""
    scheme = self.metadata["split_scheme"]
    same_user = np.diff(self.first_row_of) == 0  # row r + 1 has row r's user
    if splits.is_user_disjoint(scheme):
      bad = same_user & (np.diff(split_of) != 0)
      rule = "a user_disjoint dataset puts all of a user's posts in one split"
    elif scheme == "temporal":
      bad = same_user & (np.diff(split_of) < 0)
      rule = "a temporal split puts a user's train posts before val before test"
    else:
      raise fmt.DatasetError(f"{os.path.join(self.directory, fmt.METADATA_FILE)}: unknown "
                             f"split_scheme {scheme!r}; expected one of {fmt.SPLIT_SCHEMES}")
    if bad.any():
      row = int(np.argmax(bad)) + 1
      self._fail_row(row, f"split {fmt.SPLITS[split_of[row]]} after the same user's "
                     f"{fmt.SPLITS[split_of[row - 1]]} post (row {row - 1}): {rule}")

  def _validate_tag_counts(self) -> None:
    """max_tags_per_post bounds every post (reads pad to it, so ids beyond it go unchecked)."""
    limit = self.metadata["max_tags_per_post"]
    for shard in self._shards:
      lengths = np.diff(shard["tag_offsets"])
      if (lengths > limit).any():
        i = int(np.argmax(lengths > limit))
        self._fail(shard, i, f"{lengths[i]} hashtags, but metadata says max_tags_per_post="
                   f"{limit}")

  def _validate_other_arrays(self) -> None:
    """Every .npy / .npz outside the shards (users.npz, a converter's extras) is readable."""
    posts = os.path.join(self.directory, fmt.POSTS_DIR)
    for root, dirs, files in os.walk(self.directory):
      if root == posts:
        dirs.clear()  # the shards were loaded at open (features memory-mapped: shape checked)
        continue
      for name in sorted(files):
        path = os.path.join(root, name)
        if name.endswith(".npy"):
          _load_npy(path, mmap=True)  # header and size: a cut file does not map
        elif name.endswith(".npz"):
          _load_npz(path)

  def _fail_row(self, row: int, message: str):
    """_fail for a global row: names the row's shard and its record there."""
    s = int(np.searchsorted(self._shard_starts, row, side="right") - 1)
    self._fail(self._shards[s], row - int(self._shard_starts[s]), message)

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


def _load_npy(path: str, mmap: bool = False) -> np.ndarray:
  """np.load, with any damage (empty, cut short, garbled) a DatasetError naming the file."""
  try:
    return np.load(path, mmap_mode="r" if mmap else None)
  except _UNREADABLE as e:
    raise fmt.DatasetError(f"{path}: truncated or corrupt ({type(e).__name__}: {e})") from e


def _load_npz(path: str, keys=None) -> dict[str, np.ndarray]:
  """Every array of an .npz (or `keys`, which must all be there), read now.

  Reading each member is what checks it: a zip's damage (a cut file, a bad CRC) shows only
  then, and a lazily read NpzFile would raise it later, from wherever the array is first used.
  """
  if not os.path.exists(path):
    raise fmt.DatasetError(f"{path}: missing")
  try:
    with np.load(path) as z:
      arrays = {k: z[k] for k in z.files if keys is None or k in keys}
  except _UNREADABLE as e:
    raise fmt.DatasetError(f"{path}: truncated or corrupt ({type(e).__name__}: {e})") from e
  absent = [k for k in keys or () if k not in arrays]
  if absent:
    raise fmt.DatasetError(f"{path}: missing arrays {absent}")
  return arrays


def _has_kind(array: np.ndarray, kind: str) -> bool:
  """kind "i": any integer dtype; "f": any float dtype."""
  return array.dtype.kind in ("iu" if kind == "i" else "f")


def _check_offsets(shard: dict[str, Any], ragged: str) -> None:
  """CSR offsets start at 0 and never decrease (a decrease would read as a negative length)."""
  offsets = shard[f"{ragged}_offsets"]
  path = os.path.join(shard["path"], f"{ragged}_offsets.npy")
  if offsets[0] != 0:
    raise fmt.DatasetError(f"{path}: offsets start at {offsets[0]}, not 0")
  step = np.diff(offsets)
  if (step < 0).any():
    i = int(np.argmax(step < 0))
    raise fmt.DatasetError(f"{path}: record {i} (post_id {int(shard['post_id'][i])}): offsets "
                           f"decrease from {offsets[i]} to {offsets[i + 1]}")


def _first_repeated(ids: np.ndarray, mask: np.ndarray) -> tuple[int, int] | None:
  """(batch row, id) of the first row holding an id twice, or None; valid ids must be >= 0."""
  ordered = np.sort(np.where(mask, ids, PAD_ID), axis=1)  # padding (-1) sorts first
  same = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != PAD_ID)
  if not same.any():
    return None
  i = int(np.argmax(same.any(axis=1)))
  return i, int(ordered[i, 1:][same[i]][0])


def _gather_ragged(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray,
                   width: int) -> tuple[np.ndarray, np.ndarray, int]:
  """Pads the ragged lists of `rows` to [B, width] (vectorised); also counts what was cut."""
  start, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
  cols = np.arange(width)
  mask = cols[None, :] < lengths[:, None]
  index = np.where(mask, start[:, None] + cols[None, :], 0)
  ids = np.where(mask, values[index] if len(values) else PAD_ID, PAD_ID).astype(np.int32)
  return ids, mask, int(np.maximum(lengths - width, 0).sum())
