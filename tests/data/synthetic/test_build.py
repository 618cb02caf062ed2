"""The synthetic dataset builder: splits, renumbered oracle, baseline order, reuse, main job."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from hashjax.data import format as fmt
from hashjax.data.reader import PostDataset
from hashjax.data.synthetic import build
from hashjax.data.synthetic.world import World
from hashjax.eval import baselines, evaluate, report
from tests.dataset_fixtures import REPO_ROOT


@pytest.fixture(scope="module")
def temporal(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("syn") / "temporal")
  build.build_synthetic(directory, preset="tiny", seed=1, split_scheme="temporal",
                                  posts_per_shard=500, log=None)
  return PostDataset(directory)


def test_temporal_split_puts_each_users_first_90_percent_in_train(temporal):
  split_of = np.empty(temporal.num_posts, np.int8)
  for name, code in fmt.SPLIT_CODES.items():
    split_of[temporal.split_rows(name)] = code
  for user in np.unique(temporal.user_ids):
    codes = split_of[temporal.user_rows(user)]
    assert (np.diff(codes) >= 0).all()  # train, then val, then test, in time order
    n = len(codes)
    assert (codes == 0).sum() == max(1, int(np.floor(0.9 * n)))
  assert temporal.metadata["provenance"]["preset"] == "tiny"
  assert len(temporal.metadata["shards"]) > 1
  assert temporal.validate() == temporal.num_posts  # including the temporal scheme check


def test_user_disjoint_split_gives_each_user_one_split(tmp_path):
  directory = str(tmp_path / "disjoint")
  build.build_synthetic(directory, preset="tiny", seed=1, split_scheme="user_disjoint",
                                  log=None)
  ds = PostDataset(directory)
  assert ds.validate() == ds.num_posts  # including the user_disjoint scheme check
  users = [set(ds.user_ids[ds.split_rows(s)].tolist()) for s in fmt.SPLITS]
  assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])
  num_users = len(np.unique(ds.user_ids))
  assert abs(len(users[2]) - 0.1 * num_users) <= 1


def test_saved_world_speaks_the_datasets_tag_ids(temporal):
  world, concept_ids, concept_weights = build.load_oracle(temporal.directory)
  assert world.tag_strings == temporal.vocab
  rows = np.arange(temporal.num_posts)
  batch = temporal.read(rows, fields=("user_id", "tag_ids", "tag_mask"))
  probs = world.true_tag_distribution(batch["user_id"], concept_ids[rows], concept_weights[rows])
  # Every written hashtag had positive probability under the (renumbered) true distribution.
  assert (np.take_along_axis(probs, np.maximum(batch["tag_ids"], 0), 1)[batch["tag_mask"]] > 0).all()
  # Regenerating a user from the saved world gives the stored posts, in dataset ids.
  user = int(temporal.user_ids[-1])
  posts = world.generate_user_posts(user)
  stored = temporal.read(temporal.user_rows(user))
  np.testing.assert_allclose(stored["features"], posts["features"], rtol=1e-6)
  for ids, mask, tags in zip(stored["tag_ids"], stored["tag_mask"], posts["tags"]):
    np.testing.assert_array_equal(ids[mask], tags)


def test_held_out_hashtags_never_reach_a_training_post_and_the_oracle_still_matches(tmp_path):
  share = 0.3
  directory = str(tmp_path / "open")
  meta = build.build_synthetic(directory, preset="tiny", seed=1, split_scheme="user_disjoint",
                               overrides={"held_out_tag_share": share}, log=None)
  ds = PostDataset(directory)
  assert ds.validate() == ds.num_posts
  held = set(np.asarray(ds.vocab)[ds.spec.num_seen_tags:])
  expected = {build.World.create(build.world_config("tiny"), 1).tag_strings[t]
              for t in build.held_out_tags(build.world_config("tiny", {"held_out_tag_share": share}),
                                           1)}
  assert expected <= held  # every drawn tag is unseen (a tag may also be unseen by chance)
  train = ds.read(ds.split_rows("train"), fields=("tag_ids", "tag_mask"))
  assert (train["tag_ids"][train["tag_mask"]] < ds.spec.num_seen_tags).all()
  test = ds.read(ds.split_rows("test"), fields=("tag_ids", "tag_mask"))
  assert (test["tag_ids"][test["tag_mask"]] >= ds.spec.num_seen_tags).mean() > 0.1
  report_ = meta["build_report"]
  assert report_["skipped"]["held_out"] > 0
  assert report_["read"] == report_["written"] + sum(report_["skipped"].values())
  # The oracle's latents are the written rows': every written hashtag is possible under them.
  world, concept_ids, concept_weights = build.load_oracle(directory)
  rows = np.arange(ds.num_posts)
  batch = ds.read(rows, fields=("user_id", "tag_ids", "tag_mask"))
  probs = world.true_tag_distribution(batch["user_id"], concept_ids[rows], concept_weights[rows])
  assert (np.take_along_axis(probs, batch["tag_ids"], 1)[batch["tag_mask"]] > 0).all()
  # The test posts are the closed world's, word for word.
  closed = str(tmp_path / "closed")
  build.build_synthetic(closed, preset="tiny", seed=1, split_scheme="user_disjoint", log=None)
  assert _test_hashtags(ds) == _test_hashtags(PostDataset(closed))


def _test_hashtags(dataset):
  """{post id: its hashtag strings} of the test split (tag ids differ between datasets)."""
  got = dataset.read(dataset.split_rows("test"), fields=("post_id", "tag_ids", "tag_mask"))
  vocab = np.asarray(dataset.vocab)
  return {int(p): sorted(vocab[t[m]]) for p, t, m in zip(got["post_id"], got["tag_ids"],
                                                           got["tag_mask"])}


def test_oracle_beats_user_frequency_beats_global(temporal):
  results = evaluate.evaluate_scorers(baselines.reference_scorers(temporal), temporal, "test")
  p1 = {name: row["P@1"] for name, row in results.items()}
  assert (p1["Global frequency"] < p1["User-specific frequency"]
          < p1["Oracle (true distribution)"])
  # The image and the user both carry signal the oracle uses.
  assert p1["Global frequency"] < p1["Oracle, image only"] < p1["Oracle (true distribution)"]
  assert p1["Oracle, user swapped"] < p1["Oracle (true distribution)"]
  # Metadata reveals part of the user: between knowing nobody and knowing the user.
  assert (p1["Oracle, user swapped"] < p1["Oracle, metadata only"]
          <= p1["Oracle (true distribution)"])


def test_ensure_synthetic_reuses_and_never_overwrites_other_data(tmp_path, temporal):
  meta_path = os.path.join(temporal.directory, fmt.METADATA_FILE)
  before = os.path.getmtime(meta_path)
  build.ensure_synthetic(temporal.directory, preset="tiny", seed=1,
                                   split_scheme="temporal", log=None)
  assert os.path.getmtime(meta_path) == before
  with pytest.raises(fmt.DatasetError, match="holds another dataset"):
    build.ensure_synthetic(temporal.directory, preset="tiny", seed=2,
                                     split_scheme="temporal", log=None)


def test_a_cache_built_before_a_world_field_existed_is_reused(tmp_path, temporal):
  # A new WorldConfig field comes with a default that changes nothing the generator writes.
  meta = fmt.read_metadata(temporal.directory)
  del meta["provenance"]["config"]["held_out_tag_share"]
  fmt.write_metadata(temporal.directory, meta)
  messages = []
  build.ensure_synthetic(temporal.directory, preset="tiny", seed=1, split_scheme="temporal",
                         log=messages.append)
  assert not messages
  meta["provenance"]["config"]["num_users"] += 1  # but a changed field is another dataset
  fmt.write_metadata(temporal.directory, meta)
  with pytest.raises(fmt.DatasetError, match="built with overrides"):
    build.ensure_synthetic(temporal.directory, preset="tiny", seed=1, split_scheme="temporal",
                           log=None)
  meta["provenance"]["config"]["num_users"] -= 1
  fmt.write_metadata(temporal.directory, meta)


def test_ensure_synthetic_rebuilds_a_stale_cache_but_not_an_overridden_build(tmp_path):
  directory = str(tmp_path / "cache")
  build.build_synthetic(directory, preset="tiny", seed=0, split_scheme="temporal",
                                  log=None)
  meta = fmt.read_metadata(directory)
  meta["provenance"]["generator_version"] = build.GENERATOR_VERSION - 1
  fmt.write_metadata(directory, meta)
  messages = []
  build.ensure_synthetic(directory, preset="tiny", seed=0, split_scheme="temporal",
                                   log=messages.append)
  assert "stale cache" in messages[0]
  rebuilt = fmt.read_metadata(directory)["provenance"]
  assert rebuilt["generator_version"] == build.GENERATOR_VERSION

  overridden = str(tmp_path / "overridden")
  build.build_synthetic(overridden, preset="tiny", seed=0, split_scheme="temporal",
                                  overrides={"group_metadata_strength": 0.5}, log=None)
  with pytest.raises(fmt.DatasetError, match="built with overrides"):
    build.ensure_synthetic(overridden, preset="tiny", seed=0, split_scheme="temporal",
                                     log=None)


def test_every_preset_is_a_valid_world_config():
  for preset in build.PRESETS:
    assert build.world_config(preset) == build.PRESETS[preset]


@pytest.mark.parametrize("overrides, message", [
    (dict(num_users=0), r"WorldConfig.num_users must be >= 1, got 0"),
    (dict(feature_dim=0), r"WorldConfig.feature_dim must be >= 1, got 0"),
    (dict(num_concepts=2), r"WorldConfig.num_concepts must be >= 3, got 2"),
    (dict(max_posts_per_user=-1), r"WorldConfig.max_posts_per_user must be >= 1, got -1"),
    (dict(num_social=0), r"WorldConfig.num_social must be >= 1"),
    (dict(num_users=2.5), r"WorldConfig.num_users must be an integer, got 2.5"),
    (dict(feature_noise=-1.0), r"WorldConfig.feature_noise must be finite and >= 0, got -1.0"),
    (dict(time_span_days=0.0), r"WorldConfig.time_span_days must be finite and > 0"),
    (dict(city_share=1.5), r"WorldConfig.city_share is a share and must be <= 1"),
    (dict(mean_extra_tags=float("nan")), r"WorldConfig.mean_extra_tags must be finite"),
    (dict(concept_count_probs=(0.5, 0.6, 0.1)), r"concept_count_probs must be 3 probabilities"),
    (dict(polysemy_by="city"), r"polysemy_by must be 'group' or 'country'"),
    (dict(num_tags=20), r"num_tags=20 is too small"),
    (dict(caption_vocab_size=30), r"caption_vocab_size=30 must exceed"),
    (dict(num_user=10), r"no field 'num_user'; the fields are num_users, feature_dim"),
])
def test_bad_world_overrides_name_the_field_and_write_nothing(tmp_path, overrides, message):
  with pytest.raises(ValueError, match=message):
    build.build_synthetic(str(tmp_path / "ds"), preset="tiny", overrides=overrides, log=None)
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(seed=-1), ValueError, r"seed must be an integer >= 0, got -1"),
    (dict(posts_per_shard=0), fmt.DatasetError, r"posts_per_shard must be an integer >= 1"),
])
def test_bad_build_arguments_write_nothing(tmp_path, kwargs, error, message):
  with pytest.raises(error, match=message):
    build.build_synthetic(str(tmp_path / "ds"), preset="tiny", log=None, **kwargs)
  assert os.listdir(tmp_path) == []


def _fail_at_user_3(monkeypatch):
  """Makes the generator raise part-way through a build (after some shards are on disk)."""
  generate = World.generate_user_posts

  def generate_or_fail(self, user_id):
    if user_id == 3:
      raise RuntimeError("generator failed at user 3")
    return generate(self, user_id)
  monkeypatch.setattr(World, "generate_user_posts", generate_or_fail)


def test_a_build_that_fails_midway_leaves_no_partial_output(tmp_path, monkeypatch):
  directory = str(tmp_path / "ds")
  _fail_at_user_3(monkeypatch)
  with pytest.raises(RuntimeError, match="user 3"):
    build.build_synthetic(directory, preset="tiny", posts_per_shard=5, log=None)
  assert os.listdir(tmp_path) == []  # neither DIR nor DIR.partial


def test_a_failed_rebuild_keeps_the_old_dataset(tmp_path, monkeypatch):
  directory = str(tmp_path / "ds")
  build.build_synthetic(directory, preset="tiny", seed=0, log=None)
  before = fmt.read_metadata(directory)
  _fail_at_user_3(monkeypatch)
  with pytest.raises(RuntimeError, match="user 3"):
    build.build_synthetic(directory, preset="tiny", seed=1, overwrite=True, log=None)
  assert fmt.read_metadata(directory) == before
  assert os.path.isfile(os.path.join(directory, build.WORLD_DIR, build.LATENT_FILE))
  assert os.listdir(tmp_path) == ["ds"]


def test_main_job_end_to_end(tmp_path):
  env = dict(os.environ, HASHJAX_DATA_DIR=str(tmp_path / "data"))
  workdir = tmp_path / "run"
  out = subprocess.run([sys.executable, "-m", "hashjax.main",
                        "--config=experiments/baselines.py:preset=tiny,seeds=2",
                        f"--workdir={workdir}"], env=env, capture_output=True, text=True,
                       cwd=REPO_ROOT, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "| Oracle (true distribution) |" in out.stdout
  with open(workdir / "metrics.json") as f:
    results = json.load(f)["results"]
  assert set(results) == {"Global frequency", "User-specific frequency", "Oracle, image only",
                          "Oracle, user swapped", "Oracle, metadata only",
                          "Oracle (true distribution)"}
  assert "| Method | P@1 | R@10 | A@10 |" in (workdir / "report.md").read_text()


def test_processes_building_one_cache_together_build_it_once(tmp_path):
  """The processes of one job (or a sweep's jobs) start together on a missing cache: before the
  build lock they all staged in DIR.partial and deleted each other's files."""
  directory, go = tmp_path / "cache", tmp_path / "go"
  script = ("import os, sys, time\n"
            "from hashjax.data.synthetic import build\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
            f"build.ensure_synthetic({str(directory)!r}, preset='tiny', seed=0, "
            "split_scheme='temporal')\n")
  procs = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
  time.sleep(1.0)  # every process imported and polling
  go.touch()
  outs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
  assert sum(out.count("building synthetic dataset") for out, _ in outs) == 1
  PostDataset(str(directory)).validate()
  assert not os.path.exists(str(directory) + ".partial")
