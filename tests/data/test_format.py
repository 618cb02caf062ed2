"""Round trip through DatasetWriter/PostDataset, user histories, and every kind of bad input."""

import json
import os

import numpy as np
import pytest

from hashjax.data import format as fmt
from hashjax.data.reader import PAD_ID, PostDataset
from hashjax.data.writer import DatasetWriter
from tests.dataset_fixtures import write_random_dataset


@pytest.fixture
def dataset_dir(tmp_path):
  directory = str(tmp_path / "ds")
  order, posts = write_random_dataset(directory, has_captions=True)
  return directory, order, posts


def _all_posts(posts):
  """Concatenates the written blocks into per-post records in row order."""
  records = []
  for block in posts:
    for i in range(len(block["post_id"])):
      records.append({k: (v[i] if v is not None else None) for k, v in block.items()})
  return records


def test_round_trip_preserves_every_field(dataset_dir):
  directory, order, posts = dataset_dir
  ds = PostDataset(directory)
  records = _all_posts(posts)
  assert ds.num_posts == len(records)
  new_id = np.argsort(order)
  rows = np.random.default_rng(1).permutation(ds.num_posts)
  batch = ds.read(rows, max_caption=8)
  for j, r in enumerate(rows):
    rec = records[r]
    assert batch["post_id"][j] == rec["post_id"]
    assert batch["user_id"][j] == rec["user_id"]
    assert batch["timestamp"][j] == rec["timestamp"]
    np.testing.assert_array_equal(batch["features"][j], rec["features"])
    np.testing.assert_array_equal(batch["user_meta"][j], rec["user_meta"])
    got = batch["tag_ids"][j][batch["tag_mask"][j]]
    np.testing.assert_array_equal(got, new_id[rec["tags"]])  # renumbered, order kept
    assert (batch["tag_ids"][j][~batch["tag_mask"][j]] == PAD_ID).all()
    np.testing.assert_array_equal(batch["caption_ids"][j][batch["caption_mask"][j]],
                                  rec["captions"][:8])
  assert batch["num_tags_cut"] == 0


def test_tags_are_numbered_by_training_frequency(dataset_dir):
  directory, order, posts = dataset_dir
  ds = PostDataset(directory)
  counts = np.zeros(ds.num_tags, np.int64)
  for rec in _all_posts(posts):
    if rec["split"] == fmt.SPLIT_CODES["train"]:
      counts[rec["tags"]] += 1
  np.testing.assert_array_equal(ds.tag_counts, counts[order])
  assert (np.diff(ds.tag_counts) <= 0).all()
  assert ds.vocab == [f"tag{i}" for i in order]
  np.testing.assert_array_equal(ds.word_vectors, np.eye(ds.num_tags, 4)[order])
  assert ds.metadata["train_tag_stats"]["occurrences"] == counts.sum()


def test_tags_without_training_posts_come_last_by_name_whatever_their_input_order(tmp_path):
  # Tags 0..3 only in test posts, given in an order that follows their test frequency: their
  # ids must not keep it (a frequency baseline ranks ties by id).
  names = ["delta", "alpha", "charlie", "bravo", "seen_a", "seen_b"]
  writer = DatasetWriter(str(tmp_path / "ds"), feature_dim=2, num_tags=6, user_meta_dim=0,
                         split_scheme="temporal")
  tags = [[4, 5], [5], [0, 1, 2, 3], [0, 1, 2], [0, 1], [0]]
  split = [fmt.SPLIT_CODES[s] for s in ("train", "train", "test", "test", "test", "test")]
  writer.add_block(post_id=np.arange(6), user_id=np.zeros(6, np.int64),
                   timestamp=np.arange(6), features=np.ones((6, 2), np.float32),
                   split=np.asarray(split), tags=[np.asarray(t, np.int32) for t in tags])
  order = writer.finalize(vocab=names)
  ds = PostDataset(str(tmp_path / "ds"))
  assert ds.vocab == ["seen_b", "seen_a", "alpha", "bravo", "charlie", "delta"]
  assert [names[i] for i in order] == ds.vocab
  assert ds.tag_counts.tolist() == [2, 1, 0, 0, 0, 0]


def test_splits_metadata_and_report(dataset_dir):
  directory, _, posts = dataset_dir
  ds = PostDataset(directory)
  records = _all_posts(posts)
  test_rows = [i for i, r in enumerate(records) if r["split"] == fmt.SPLIT_CODES["test"]]
  np.testing.assert_array_equal(ds.split_rows("test"), test_rows)
  assert ds.metadata["counts"]["test"] == len(test_rows)
  assert ds.metadata["counts"]["val"] == 0
  assert ds.metadata["build_report"]["written"] == len(records)
  assert len(ds.metadata["shards"]) == -(-len(records) // 16)
  with pytest.raises(KeyError, match="unknown split"):
    ds.split_rows("dev")


def test_history_is_the_users_earlier_posts_in_time_order(dataset_dir):
  directory, _, _ = dataset_dir
  ds = PostDataset(directory)
  rows = np.arange(ds.num_posts)
  hist, mask = ds.history(rows, max_len=3)
  for r in rows:
    earlier = [q for q in range(ds.num_posts)
               if ds.user_ids[q] == ds.user_ids[r] and ds.timestamps[q] < ds.timestamps[r]]
    np.testing.assert_array_equal(hist[r][mask[r]], earlier[-3:])
    assert (hist[r][~mask[r]] == PAD_ID).all()
  user = ds.user_ids[5]
  np.testing.assert_array_equal(ds.user_rows(user), np.flatnonzero(ds.user_ids == user))


def test_user_train_posts_counts_the_training_posts_of_each_posts_user(tmp_path):
  directory = str(tmp_path / "d")
  write_random_dataset(directory, split_scheme="user_disjoint")
  ds = PostDataset(directory)
  got = ds.read(np.arange(ds.num_posts), fields=["user_train_posts"])["user_train_posts"]
  train = set(ds.split_rows("train").tolist())
  for r in range(ds.num_posts):
    same_user = np.flatnonzero(ds.user_ids == ds.user_ids[r])
    assert got[r] == sum(int(q) in train for q in same_user)
  assert (got == 0).any() and (got > 0).any()  # test users are unseen, the others are not


def test_float16_features_read_as_float32(tmp_path):
  directory = str(tmp_path / "half")
  _, posts = write_random_dataset(directory, feature_dtype="float16")
  ds = PostDataset(directory)
  batch = ds.read([0])
  assert batch["features"].dtype == np.float32
  np.testing.assert_allclose(batch["features"][0], posts[0]["features"][0], atol=1e-3)


def test_max_tags_cut_is_counted(dataset_dir):
  ds = PostDataset(dataset_dir[0])
  full = ds.read(np.arange(ds.num_posts))
  cut = ds.read(np.arange(ds.num_posts), max_tags=1)
  assert cut["num_tags_cut"] == full["tag_mask"].sum() - ds.num_posts


# -- bad input: the builder --------------------------------------------------------------------

def _writer(tmp_path, **kw):
  return DatasetWriter(str(tmp_path / "bad"), feature_dim=4, num_tags=5, split_scheme="temporal",
                       **kw)


def _post(**overrides):
  post = dict(post_id=[1], user_id=[1], timestamp=[10], split=[0], features=np.ones((1, 4)),
              tags=[np.array([0, 1])], where=lambda i: f"raw.tsv:line {i + 7}")
  post.update(overrides)
  return post


@pytest.mark.parametrize("overrides, reason", [
    (dict(features=np.ones((1, 3))), "wrong_feature_dim"),
    (dict(features=np.array([[1.0, np.nan, 0.0, 0.0]])), "nonfinite_features"),
    (dict(features=np.array([[1.0, np.inf, 0.0, 0.0]])), "nonfinite_features"),
    (dict(tags=[np.array([], np.int32)]), "empty_hashtags"),
    (dict(tags=[np.array([0, 5])]), "tag_out_of_vocab"),
    (dict(tags=[np.array([-1])]), "tag_out_of_vocab"),
    (dict(tags=[np.array([2, 2])]), "duplicate_hashtag"),
    (dict(split=[7]), "bad_split"),
])
def test_writer_rejects_bad_records_naming_them(tmp_path, overrides, reason):
  writer = _writer(tmp_path)
  with pytest.raises(fmt.InvalidRecordError, match="raw.tsv:line 7") as err:
    writer.add_block(**_post(**overrides))
  assert err.value.reason == reason


def test_writer_rejects_unsorted_posts(tmp_path):
  writer = _writer(tmp_path)
  writer.add_block(**_post(user_id=[1], timestamp=[10]))
  with pytest.raises(fmt.InvalidRecordError, match="earlier than"):
    writer.add_block(**_post(user_id=[1], timestamp=[5]))
  writer.add_block(**_post(user_id=[2], timestamp=[1]))
  with pytest.raises(fmt.InvalidRecordError, match="appears again"):
    writer.add_block(**_post(user_id=[1], timestamp=[20]))


def test_writer_refuses_to_overwrite_and_to_finalize_empty(tmp_path):
  writer = _writer(tmp_path)
  with pytest.raises(fmt.DatasetError, match="no posts"):
    writer.finalize(vocab=list("abcde"))
  with pytest.raises(FileExistsError):
    os.makedirs(tmp_path / "bad" / "x", exist_ok=True)
    _writer(tmp_path)


@pytest.mark.parametrize("kwargs, name", [
    (dict(posts_per_shard=0), "posts_per_shard"),
    (dict(posts_per_shard=-3), "posts_per_shard"),
    (dict(feature_dim=0), "feature_dim"),
    (dict(num_tags=0), "num_tags"),
    (dict(user_meta_dim=-1), "user_meta_dim"),
    (dict(has_captions=True, caption_vocab_size=0), "caption_vocab_size"),
])
def test_writer_rejects_impossible_sizes_before_touching_the_disk(tmp_path, kwargs, name):
  args = dict(feature_dim=4, num_tags=5, split_scheme="temporal")
  args.update(kwargs)
  with pytest.raises(fmt.DatasetError, match=rf"bad: {name} must be an integer >= \d"):
    DatasetWriter(str(tmp_path / "bad"), **args)
  assert os.listdir(tmp_path) == []


# -- no partial output: the writer's with-block ------------------------------------------------

def _one_post_writer(directory, **kw):
  writer = DatasetWriter(directory, feature_dim=4, num_tags=5, split_scheme="temporal", **kw)
  return writer


def test_with_block_stages_and_moves_the_dataset_into_place_at_exit(tmp_path):
  out = str(tmp_path / "ds")
  with _one_post_writer(out + "/") as writer:  # a trailing slash still stages beside DIR
    assert writer.directory == out + ".partial"
    writer.add_block(**_post())
    writer.finalize(vocab=list("abcde"))
    np.save(os.path.join(writer.directory, "extra.npy"), np.arange(3))
    assert not os.path.exists(out)  # nothing at DIR until the block exits cleanly
  assert writer.directory == out
  assert sorted(os.listdir(tmp_path)) == ["ds"]
  assert PostDataset(out).num_posts == 1
  np.testing.assert_array_equal(np.load(os.path.join(out, "extra.npy")), np.arange(3))


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_with_block_leaves_no_directory(tmp_path, error):
  out = str(tmp_path / "ds")
  with pytest.raises(error):
    with _one_post_writer(out) as writer:
      writer.add_block(**_post())
      writer.finalize(vocab=list("abcde"))
      raise error("killed after finalize, before the extra files")
  assert os.listdir(tmp_path) == []


def test_a_failed_rebuild_with_overwrite_keeps_the_old_dataset(tmp_path):
  out = str(tmp_path / "ds")
  write_random_dataset(out)
  before = fmt.read_metadata(out)
  with pytest.raises(fmt.InvalidRecordError):
    with _one_post_writer(out, overwrite=True) as writer:
      writer.add_block(**_post())
      writer.add_block(**_post(tags=[np.array([9])]))  # out of vocabulary: the build fails
  assert fmt.read_metadata(out) == before
  assert PostDataset(out).validate() == before["num_posts"]
  assert sorted(os.listdir(tmp_path)) == ["ds"]
  with _one_post_writer(out, overwrite=True) as writer:  # a rebuild that succeeds replaces it
    writer.add_block(**_post())
    writer.finalize(vocab=list("abcde"))
  assert PostDataset(out).num_posts == 1 and sorted(os.listdir(tmp_path)) == ["ds"]


def test_a_with_block_without_finalize_writes_nothing(tmp_path):
  out = str(tmp_path / "ds")
  with pytest.raises(fmt.DatasetError, match="without finalize"):
    with _one_post_writer(out) as writer:
      writer.add_block(**_post())
  assert os.listdir(tmp_path) == []


def test_a_stale_partial_directory_is_removed_by_the_next_build(tmp_path):
  out = str(tmp_path / "ds")
  os.makedirs(os.path.join(out + ".partial", "posts", "00007"))  # a killed build's leftovers
  writer = _one_post_writer(out)  # without `with`: finalize moves the dataset into place
  assert not os.path.exists(os.path.join(out + ".partial", "posts", "00007"))
  writer.add_block(**_post())
  writer.finalize(vocab=list("abcde"))
  assert writer.directory == out
  assert sorted(os.listdir(tmp_path)) == ["ds"]
  assert os.listdir(os.path.join(out, "posts")) == ["00000"]


# -- bad input: the reader ---------------------------------------------------------------------

def test_missing_directory_and_metadata(tmp_path):
  with pytest.raises(fmt.DatasetError, match="does not exist"):
    PostDataset(str(tmp_path / "nope"))
  os.makedirs(tmp_path / "empty")
  with pytest.raises(fmt.DatasetError, match="metadata.json: missing"):
    PostDataset(str(tmp_path / "empty"))


def _edit_metadata(directory, **changes):
  path = os.path.join(directory, fmt.METADATA_FILE)
  with open(path) as f:
    meta = json.load(f)
  meta.update(changes)
  with open(path, "w") as f:
    json.dump(meta, f)


@pytest.mark.parametrize("changes, message", [
    (dict(schema_version=99), "schema_version 99"),
    (dict(feature_dim=9), r"features.npy: shape \(\d+, 8\) but metadata implies \(\d+, 9\)"),
    (dict(num_tags=21), "20 hashtags but metadata says num_tags=21"),
    (dict(num_posts=3), "do not add up"),
])
def test_mismatched_metadata_names_the_file(dataset_dir, changes, message):
  directory = dataset_dir[0]
  _edit_metadata(directory, **changes)
  with pytest.raises(fmt.DatasetError, match=message):
    PostDataset(directory)


def test_truncated_shard_names_the_file(dataset_dir):
  directory = dataset_dir[0]
  path = os.path.join(fmt.shard_dir(directory, 1), "features.npy")
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) - 10)
  with pytest.raises(fmt.DatasetError, match=r"00001/features.npy: truncated"):
    PostDataset(directory)


def _corrupt(directory, column, edit):
  path = os.path.join(fmt.shard_dir(directory, 0), column + ".npy")
  array = np.load(path)
  edit(array)
  np.save(path, array)


def test_reader_rejects_nonfinite_features_naming_the_record(dataset_dir):
  directory = dataset_dir[0]
  _corrupt(directory, "features", lambda a: a.__setitem__((3, 1), np.nan))
  ds = PostDataset(directory)
  ds.read([0, 1, 2])  # other records still read
  with pytest.raises(fmt.DatasetError, match=r"00000: record 3 \(post_id \d+\): .*NaN"):
    ds.read([0, 3])


def test_reader_rejects_out_of_vocab_and_empty_hashtags(dataset_dir):
  directory = dataset_dir[0]
  _corrupt(directory, "tag_ids", lambda a: a.__setitem__(0, 20))
  with pytest.raises(fmt.DatasetError, match=r"record 0 .*hashtag id 20 outside"):
    PostDataset(directory).read([0])
  _corrupt(directory, "tag_offsets", lambda a: a.__setitem__(1, 0))
  with pytest.raises(fmt.DatasetError, match=r"record 0 .*no hashtags"):
    PostDataset(directory).read([0])


def test_float16_overflow_is_caught_at_build_time(tmp_path):
  writer = _writer(tmp_path, feature_dtype="float16")
  with pytest.raises(fmt.InvalidRecordError, match="float16") as err:
    writer.add_block(**_post(features=np.array([[1.0, 7e4, 0.0, 0.0]])))
  assert err.value.reason == "float16_overflow"


def test_validate_scans_every_record(dataset_dir):
  directory = dataset_dir[0]
  assert PostDataset(directory).validate(chunk=5) == PostDataset(directory).num_posts
  last = len(PostDataset(directory).metadata["shards"]) - 1
  path = os.path.join(fmt.shard_dir(directory, last), "features.npy")
  array = np.load(path)
  array[-1, 0] = np.inf
  np.save(path, array)
  with pytest.raises(fmt.DatasetError, match=rf"{last:05d}: record {len(array) - 1} .*inf"):
    PostDataset(directory).validate(chunk=5)


def test_validate_catches_rows_out_of_time_order(dataset_dir):
  directory = dataset_dir[0]
  ds = PostDataset(directory)
  row = int(np.argmax(np.diff(ds.first_row_of) == 0)) + 1  # the second post of some user
  assert ds.first_row_of[row] == ds.first_row_of[row - 1]
  path = os.path.join(fmt.shard_dir(directory, 0), "timestamp.npy")
  times = np.load(path)
  assert row < len(times)
  times[row] = times[row - 1] - 1
  np.save(path, times)
  with pytest.raises(fmt.DatasetError, match=f"row {row} is earlier"):
    PostDataset(directory).validate()
