"""The grain pipelines: shapes, determinism, epochs, per-process slices, resume, eval coverage."""

import itertools

import numpy as np
import pytest

from hashjax.data import pipeline
from hashjax.data.reader import PostDataset
from tests.dataset_fixtures import write_random_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("pipe") / "ds")
  write_random_dataset(directory, num_users=30, has_captions=True)
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
