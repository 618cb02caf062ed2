"""The reader's and the validator's checks: each kind of damage to a written dataset is a
DatasetError naming the file and the record (opening for what training would trip over, `read`
for every batch, `validate` for the whole-dataset scans), and data_prep.validate exits with it."""

import os
import subprocess
import sys

import numpy as np
import pytest

from hashjax.data import format as fmt
from hashjax.data.reader import PostDataset
from tests.dataset_fixtures import REPO_ROOT, write_random_dataset


@pytest.fixture(params=[False, True], ids=["no_captions", "captions"])
def directory(tmp_path, request):
  directory = str(tmp_path / "ds")
  write_random_dataset(directory, has_captions=request.param)
  return directory


@pytest.fixture
def captioned(tmp_path):
  directory = str(tmp_path / "cap")
  write_random_dataset(directory, has_captions=True)
  return directory


def _shard_file(directory, column, shard=0):
  return os.path.join(fmt.shard_dir(directory, shard), column + ".npy")


def _split_file(directory, name):
  return os.path.join(directory, fmt.SPLITS_DIR, name + ".npy")


def _edit(path, edit):
  """Loads an .npy, lets `edit` change it in place (or return a replacement), saves it back."""
  array = np.load(path)
  replaced = edit(array)
  np.save(path, array if replaced is None else replaced)


def _expect(error_of, path, record=None):
  """The DatasetError raised by `error_of()`: names `path` (and `record N` if given)."""
  with pytest.raises(fmt.DatasetError) as err:
    error_of()
  message = str(err.value)
  assert path in message, message
  if record is not None:
    assert f"record {record} (post_id " in message, message
  return message


def test_datasets_without_captions_validate(tmp_path):
  """Issue 12: `validate` read max_caption=1 on every dataset (KeyError 'caption_offsets')."""
  directory = str(tmp_path / "ds")
  write_random_dataset(directory, has_captions=False, user_meta_dim=0)
  ds = PostDataset(directory)
  assert ds.validate(chunk=7) == ds.num_posts
  assert "caption_ids" not in ds.read([0, 1], max_caption=1)
  with pytest.raises(fmt.DatasetError, match="has no captions"):
    ds.read([0], fields=("caption_ids",))


def test_duplicate_hashtags_in_a_post(directory):
  offsets = np.load(_shard_file(directory, "tag_offsets"))
  record = int(np.argmax(np.diff(offsets) >= 2))  # a post with two hashtags or more
  _edit(_shard_file(directory, "tag_ids"),
        lambda ids: ids.__setitem__(offsets[record] + 1, ids[offsets[record]]))
  ds = PostDataset(directory)
  ds.read([record + 1])  # the other posts still read
  path = fmt.shard_dir(directory, 0)
  message = _expect(lambda: ds.read([record + 1, record]), path, record)
  assert "appears twice in the post" in message
  _expect(ds.validate, path, record)


def _split_column(directory):
  """The split column of every row, over the shards."""
  meta = fmt.read_metadata(directory)
  return np.concatenate([np.load(_shard_file(directory, "split", i))
                         for i in range(len(meta["shards"]))])


def _leak_a_train_row_into_test(directory):
  train, test = np.load(_split_file(directory, "train")), np.load(_split_file(directory, "test"))
  leaked = np.sort(np.append(test[1:], train[0]))  # same count, sorted, distinct: only leakage
  np.save(_split_file(directory, "test"), leaked)
  return _split_file(directory, "test"), None, "is also in"


def _relabel_a_row_in_the_column(directory):
  train = np.load(_split_file(directory, "train"))
  _edit(_shard_file(directory, "split"),
        lambda s: s.__setitem__(train[0], fmt.SPLIT_CODES["test"]))
  return fmt.shard_dir(directory, 0), int(train[0]), "split.npy says test"


def _unsort_a_split_file(directory):
  _edit(_split_file(directory, "train"), lambda rows: rows[[1, 0, *range(2, len(rows))]])
  return _split_file(directory, "train"), None, "entry 1 (row"


def _duplicate_a_split_row(directory):
  _edit(_split_file(directory, "train"), lambda rows: rows.__setitem__(1, rows[0]))
  return _split_file(directory, "train"), None, "repeats the entry before"


def _test_before_train_in_a_temporal_split(directory):
  """A user's train and test labels swapped, in the column and the files alike."""
  column = _split_column(directory)
  first = np.load(os.path.join(directory, fmt.USER_INDEX_FILE))["first_row"]
  row = next(r for r in range(1, len(column))
             if column[r] == fmt.SPLIT_CODES["test"] and r not in first)
  column[row - 1], column[row] = column[row], column[row - 1]
  _write_splits(directory, column)
  return fmt.shard_dir(directory, _shard_of(directory, row)), None, "a temporal split puts"


def _claim_user_disjoint(directory):
  """The random fixture gives a user train and test posts: not a user_disjoint split."""
  meta = fmt.read_metadata(directory)
  meta["split_scheme"] = "user_disjoint"
  fmt.write_metadata(directory, meta)
  return fmt.shard_dir(directory, 0), None, "a user_disjoint dataset puts all"


def _shard_of(directory, row):
  sizes = [s["num_posts"] for s in fmt.read_metadata(directory)["shards"]]
  return int(np.searchsorted(np.cumsum(sizes), row, side="right"))


def _write_splits(directory, column):
  """Rewrites the split column of every shard and the split files from `column`."""
  meta = fmt.read_metadata(directory)
  start = 0
  for i, shard in enumerate(meta["shards"]):
    np.save(_shard_file(directory, "split", i), column[start:start + shard["num_posts"]])
    start += shard["num_posts"]
  for name, code in fmt.SPLIT_CODES.items():
    np.save(_split_file(directory, name), np.flatnonzero(column == code).astype(np.int64))


@pytest.mark.parametrize("damage", [
    _leak_a_train_row_into_test, _relabel_a_row_in_the_column, _unsort_a_split_file,
    _duplicate_a_split_row, _test_before_train_in_a_temporal_split, _claim_user_disjoint])
def test_split_leakage_and_disorder(directory, damage):
  path, record, words = damage(directory)
  message = _expect(PostDataset(directory).validate, path, record)
  assert words in message, message


@pytest.mark.parametrize("row", [-1, "num_posts"])
def test_split_rows_out_of_range_fail_at_open(directory, row):
  num_posts = fmt.read_metadata(directory)["num_posts"]
  bad = num_posts if row == "num_posts" else row
  _edit(_split_file(directory, "test"), lambda rows: rows.__setitem__(2, bad))
  message = _expect(lambda: PostDataset(directory), _split_file(directory, "test"))
  assert f"entry 2 is row {bad}, outside the dataset's rows [0, {num_posts})" in message


def test_split_files_of_floats_fail_at_open(directory):
  _edit(_split_file(directory, "train"), lambda rows: rows.astype(np.float64))
  message = _expect(lambda: PostDataset(directory), _split_file(directory, "train"))
  assert "dtype float64, expected an integer type" in message


@pytest.mark.parametrize("token", [30, -2])
def test_caption_ids_outside_the_caption_vocabulary(captioned, token):
  offsets = np.load(_shard_file(captioned, "caption_offsets"))
  record = int(np.argmax(np.diff(offsets) > 0))  # a post with a caption
  _edit(_shard_file(captioned, "caption_ids"), lambda ids: ids.__setitem__(offsets[record], token))
  ds = PostDataset(captioned)
  path = fmt.shard_dir(captioned, 0)
  message = _expect(lambda: ds.read([record]), path, record)
  assert f"caption token id {token} outside the caption vocabulary [0, 30)" in message
  _expect(ds.validate, path, record)


def test_caption_vocab_file_must_match_the_metadata(captioned):
  path = os.path.join(captioned, fmt.CAPTION_VOCAB_FILE)
  fmt.write_lines(path, fmt.read_lines(path)[:-1])
  message = _expect(lambda: PostDataset(captioned), path)
  assert "29 tokens but metadata says caption_vocab_size=30" in message


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_user_metadata(directory, value):
  _edit(_shard_file(directory, "user_meta", 1), lambda m: m.__setitem__((4, 2), value))
  ds = PostDataset(directory)
  path = fmt.shard_dir(directory, 1)
  message = _expect(lambda: ds.read([0, ds.metadata["shards"][0]["num_posts"] + 4]), path, 4)
  assert "user metadata contains NaN or inf" in message
  _expect(ds.validate, path, 4)


@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_nonfinite_word_vectors(directory, value):
  path = os.path.join(directory, fmt.WORD_VECTORS_FILE)
  _edit(path, lambda v: v.__setitem__((3, 1), value))
  vocab = fmt.read_lines(os.path.join(directory, fmt.VOCAB_FILE))
  message = _expect(PostDataset(directory).validate, path)
  assert f"row 3 (hashtag {vocab[3]!r}) contains NaN or inf" in message


def _empty(path):
  open(path, "wb").close()


def _cut(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize("name, damage, error", [
    ("posts/00000/tag_ids.npy", _empty, "EOFError"),
    ("posts/00001/tag_offsets.npy", _cut, "ValueError"),
    ("user_index.npz", _cut, "BadZipFile"),
    ("user_index.npz", _empty, "EOFError"),
    ("tag_counts.npy", _empty, "EOFError"),
    ("splits/test.npy", _cut, "ValueError"),
])
def test_unreadable_arrays_fail_at_open_naming_the_file(directory, name, damage, error):
  path = os.path.join(directory, name)
  damage(path)
  message = _expect(lambda: PostDataset(directory), path)
  assert f"truncated or corrupt ({error}" in message


@pytest.mark.parametrize("name, damage", [("users.npz", _cut), ("extra/artist_ids.npy", _empty)])
def test_validate_reads_every_other_array_file(directory, name, damage):
  """Files the reader does not open at all (users.npz, a converter's extras) are checked too."""
  path = os.path.join(directory, name)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(path, age=np.arange(50)) if name.endswith(".npz") else np.save(path, np.arange(50))
  PostDataset(directory).validate()
  damage(path)
  message = _expect(PostDataset(directory).validate, path)
  assert "truncated or corrupt" in message


@pytest.mark.parametrize("key, edit, words", [
    ("num_rows", lambda a: a.__setitem__(1, a[1] + 1), "starts at row"),
    ("num_rows", lambda a: a.__setitem__(0, 0), "has num_rows 0"),
    ("first_row", lambda a: a.__setitem__(2, a[2] - 1), "but the users before it end"),
    ("user_ids", lambda a: a.__setitem__(3, a[2]), "has two row ranges"),
])
def test_user_index_must_be_contiguous_row_ranges(directory, key, edit, words):
  path = os.path.join(directory, fmt.USER_INDEX_FILE)
  with np.load(path) as z:
    index = {k: z[k] for k in z.files}
  edit(index[key])
  np.savez(path, **index)
  message = _expect(lambda: PostDataset(directory), path)
  assert words in message, message


def test_decreasing_tag_offsets_fail_at_open(directory):
  path = _shard_file(directory, "tag_offsets")
  _edit(path, lambda o: o.__setitem__(3, o[2] - 1))
  message = _expect(lambda: PostDataset(directory), path, 2)
  assert "offsets decrease" in message


def test_posts_longer_than_max_tags_per_post(directory):
  meta = fmt.read_metadata(directory)
  meta["max_tags_per_post"] -= 1
  fmt.write_metadata(directory, meta)
  message = _expect(PostDataset(directory).validate, os.path.join(directory, "posts"))
  assert f"hashtags, but metadata says max_tags_per_post={meta['max_tags_per_post']}" in message


def test_the_command_exits_with_the_message_and_no_traceback(tmp_path):
  directory = str(tmp_path / "ds")
  write_random_dataset(directory, has_captions=False)

  def run():
    return subprocess.run([sys.executable, "-m", "data_prep.validate", f"--dataset={directory}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
  ok = run()
  assert ok.returncode == 0 and "posts OK" in ok.stdout, ok.stderr
  _empty(_shard_file(directory, "tag_ids"))
  bad = run()
  assert bad.returncode == 1
  assert f"invalid dataset: {_shard_file(directory, 'tag_ids')}: truncated" in bad.stderr
  assert "Traceback" not in bad.stderr, bad.stderr


@pytest.mark.parametrize("split_scheme", ["temporal", "user_disjoint"])
def test_the_test_fixture_writes_valid_datasets_in_both_split_schemes(tmp_path, split_scheme):
  write_random_dataset(str(tmp_path / "d"), split_scheme=split_scheme)
  assert PostDataset(str(tmp_path / "d")).validate() > 0
