"""The grain pipelines: shapes, determinism, epochs, per-process slices, resume, eval coverage."""

import itertools

import numpy as np
import pytest

from hashjax.data import pipeline
from hashjax.data.reader import PostDataset
from tests.dataset_fixtures import write_random_dataset


WRITTEN = {}  # dataset directory -> the blocks written into it


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("pipe") / "ds")
  WRITTEN[directory] = write_random_dataset(directory, num_users=30, has_captions=True)[1]
  return PostDataset(directory)


def _rows(batches):
  return [b["row"].tolist() for b in batches]


def test_batch_shapes_and_padding(ds):
  it = iter(pipeline.train_batches(ds, batch_size=8, seed=0, max_tags=6, max_caption=5))
  batch = next(it)
  assert batch["features"].shape == (8, ds.feature_dim)
  assert batch["features"].dtype == np.float32
  assert batch["tag_ids"].shape == batch["tag_mask"].shape == (8, 6)
  assert batch["caption_ids"].shape == (8, 5)
  assert batch["user_meta"].shape == (8, ds.user_meta_dim)
  assert batch["tag_mask"].any(axis=1).all()  # every post has a hashtag
  train = set(ds.split_rows("train").tolist())
  assert set(batch["row"].tolist()) <= train


def test_same_seed_same_batches_and_epochs_reshuffle(ds):
  n = len(ds.split_rows("train"))
  per_epoch = n // 4
  first = _rows(itertools.islice(pipeline.train_batches(ds, batch_size=4, seed=3), 2 * per_epoch))
  again = _rows(itertools.islice(pipeline.train_batches(ds, batch_size=4, seed=3), 2 * per_epoch))
  other = _rows(itertools.islice(pipeline.train_batches(ds, batch_size=4, seed=4), per_epoch))
  assert first == again
  assert first[:per_epoch] != other
  epoch0 = sum(first[:n // 4], [])
  assert len(set(epoch0)) == len(epoch0)  # no repeats within an epoch
  # Epoch 2 starts at flat position n (batches can straddle the epoch boundary).
  flat = sum(first, [])
  assert sorted(flat[:n]) == sorted(ds.split_rows("train").tolist())
  assert flat[n:2 * n - 4] != flat[:n - 4]  # reshuffled, not repeated


def test_processes_get_disjoint_slices_of_one_global_order(ds):
  n = len(ds.split_rows("train"))
  steps = n // 8  # one epoch of global batches of 8 over 2 processes
  slices = [sum(_rows(itertools.islice(
      pipeline.train_batches(ds, batch_size=4, seed=1, num_epochs=1, process_index=p,
                             process_count=2), steps)), []) for p in range(2)]
  assert not set(slices[0]) & set(slices[1])
  assert len(slices[0]) == len(slices[1]) == 4 * steps


def test_resume_from_saved_state_continues_identically(ds):
  it = iter(pipeline.train_batches(ds, batch_size=4, seed=7))
  for _ in range(5):
    next(it)
  state = it.get_state()
  expected = _rows(itertools.islice(it, 6))
  resumed = iter(pipeline.train_batches(ds, batch_size=4, seed=7))
  resumed.set_state(state)
  assert _rows(itertools.islice(resumed, 6)) == expected


def test_too_small_split_is_an_error(ds):
  with pytest.raises(ValueError, match="fewer than one global batch"):
    pipeline.train_batches(ds, "test", batch_size=10_000, seed=0)


def test_eval_batches_cover_every_post_once(ds):
  test_rows = ds.split_rows("test")
  seen = []
  for p in range(3):
    for batch in pipeline.eval_batches(ds, "test", batch_size=4, process_index=p,
                                       process_count=3):
      assert batch["features"].shape[0] == 4
      seen += batch["row"][batch["valid"]].tolist()
  assert sorted(seen) == test_rows.tolist()


def test_per_record_pipeline_reads_the_same_posts(ds):
  batch = next(iter(pipeline.per_record_batches(ds, batch_size=4, seed=0, max_tags=6)))
  direct = ds.read(batch["row"], max_tags=6)
  np.testing.assert_array_equal(batch["features"], direct["features"])
  np.testing.assert_array_equal(batch["tag_ids"], direct["tag_ids"])


def test_reads_only_the_fields_asked_for(ds):
  batch = next(iter(pipeline.train_batches(ds, batch_size=8, seed=0, fields=("user_index",))))
  assert set(batch) == {"row", "post_id", "tag_ids", "tag_mask", "user_index", "num_tags_cut"}
  batch = next(iter(pipeline.eval_batches(ds, "test", batch_size=4, fields=("features",))))
  assert "features" in batch and "user_meta" not in batch and "caption_ids" not in batch
  # Captions, when asked for, come padded to the longest caption of the dataset.
  batch = next(iter(pipeline.train_batches(ds, batch_size=8, seed=0,
                                           fields=("caption_ids", "caption_mask"))))
  assert batch["caption_ids"].shape == (8, ds.max_caption_len) == (8, ds.spec.max_caption_len)
  lengths = [len(c) for block in WRITTEN[ds.directory] for c in block["captions"]]
  assert ds.max_caption_len == max(lengths) > 0


def test_user_index_is_dense_in_user_order(ds):
  batch = ds.read(np.arange(ds.num_posts), fields=("user_id", "user_index"))
  users = np.unique(batch["user_id"])  # sparse ids (0, 10, 20, ...), rows sorted by user
  assert ds.num_users == len(users) == ds.spec.num_users
  np.testing.assert_array_equal(batch["user_index"], np.searchsorted(users, batch["user_id"]))


@pytest.mark.parametrize("seq_len,context_len", [(3, 0), (2, 2), (50, 0)])
def test_user_sequences_hold_each_target_once_with_its_history_before_it(ds, seq_len,
                                                                          context_len):
  for split in ("train", "test"):
    windows, targets = pipeline.user_sequences(ds, split, seq_len=seq_len,
                                               context_len=context_len)
    assert windows.shape[1] == seq_len + context_len
    target_rows = windows[targets]
    assert sorted(target_rows.tolist()) == sorted(ds.split_rows(split).tolist())  # once each
    for window, is_target in zip(windows, targets):
      rows = window[window >= 0]
      assert (window[len(rows):] == -1).all()  # left-aligned
      assert len(set(ds.user_ids[rows].tolist())) == 1  # one user
      np.testing.assert_array_equal(rows, np.arange(rows[0], rows[0] + len(rows)))  # in time
      for position in np.flatnonzero(is_target):
        # What precedes a target in its window is the end of PostDataset.history: the context
        # plus the earlier targets, never a later post, nothing skipped.
        before = window[:position]
        history, mask = ds.history([window[position]], max_len=len(before) or 1)
        np.testing.assert_array_equal(before, history[0][mask[0]][-len(before):]
                                      if len(before) else before)
        # At least context_len earlier posts (or all there are) come before every target.
        _, full_mask = ds.history([window[position]], max_len=10_000)
        assert len(before) >= min(full_mask.sum(), context_len)


def test_sequence_batches_read_the_windows_and_resume(ds):
  it = iter(pipeline.sequence_batches(ds, batch_size=3, seed=2, seq_len=3, context_len=1,
                                      fields=("features",)))
  batch = next(it)
  assert batch["features"].shape == (3, 4, ds.feature_dim)
  assert batch["tag_ids"].shape[:2] == batch["seq_mask"].shape == (3, 4)
  for s in range(3):
    rows = batch["row"][s][batch["seq_mask"][s]]
    direct = ds.read(rows, fields=("features",))
    np.testing.assert_array_equal(batch["features"][s][batch["seq_mask"][s]], direct["features"])
    assert not batch["tag_mask"][s][~batch["seq_mask"][s]].any()  # padding has no hashtags
  state = it.get_state()
  expected = [b["row"].tolist() for b in itertools.islice(it, 4)]
  resumed = iter(pipeline.sequence_batches(ds, batch_size=3, seed=2, seq_len=3, context_len=1,
                                           fields=("features",)))
  resumed.set_state(state)
  assert [b["row"].tolist() for b in itertools.islice(resumed, 4)] == expected


def test_eval_sequence_batches_cover_every_post_once(ds):
  seen = []
  for batch in pipeline.eval_sequence_batches(ds, "test", batch_size=4, seq_len=2,
                                              context_len=3, fields=("features",)):
    assert batch["valid"].shape == (4, 5)
    seen += batch["row"][batch["valid"]].tolist()
  assert sorted(seen) == ds.split_rows("test").tolist()
