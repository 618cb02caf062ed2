"""Veit et al.'s filters (hashjax/data/tag_filters.py): each filter's counts on a hand-made
dataset, the accounting, what carries over, the provenance, the splits, and failures that write
nothing."""

import os

import numpy as np
import pytest

from hashjax.data import format as fmt
from hashjax.data import splits, tag_filters
from hashjax.data.reader import PostDataset
from hashjax.data.tag_filters import FilterOptions
from hashjax.data.writer import DatasetWriter
from tests.dataset_fixtures import write_random_dataset

TRAIN, VAL, TEST = (fmt.SPLIT_CODES[name] for name in fmt.SPLITS)
# The hand-made dataset: (user, [(split, hashtags)]) with each user's posts in time order.
# Training counts: a 6, 2010 6, b 4, c 3, #7 2, d 2, 1st 2, e 0, # 0 (input ids in that order:
# a ties with 2010 and comes first, as it is first in the vocabulary the writer was given).
# Hashtags per post: users 10 and 20 2.25, user 30 4.5, user 40 5/3.
POSTS = [
    (10, [(TRAIN, ["a", "2010", "b"]), (TRAIN, ["a", "b", "c"]), (TRAIN, ["a", "#7"]),
          (TEST, ["e"])]),
    (20, [(TRAIN, ["a", "2010"]), (TRAIN, ["2010", "c", "d"]), (VAL, ["a", "1st"]),
          (TEST, ["b", "#"])]),
    (30, [(TRAIN, ["a", "b", "c", "2010", "#7", "1st"]), (TRAIN, ["a", "b", "2010"])]),
    (40, [(TRAIN, ["2010"]), (TRAIN, ["d", "1st"]), (TEST, ["#7", "a"])]),
]
VOCAB = ["a", "2010", "b", "c", "#7", "d", "1st", "e", "#"]
# drop_numeric, the most frequent tag (a) and all but the next 3 (b, c, d), spammers above 4.
PAPERLIKE = FilterOptions(drop_numeric=True, drop_most_frequent=1, vocab_size=3,
                          max_mean_tags_per_user=4)


def _write_hand_dataset(directory, extras=True):
  """The POSTS dataset with captions, metadata, word vectors, users.npz and an extra file."""
  writer = DatasetWriter(directory, feature_dim=3, num_tags=len(VOCAB), user_meta_dim=2,
                         split_scheme="temporal", has_captions=True, caption_vocab_size=5,
                         posts_per_shard=4)
  post_id = 100
  for user, posts in POSTS:
    n = len(posts)
    ids = np.arange(post_id, post_id + n)
    writer.add_block(post_id=ids, user_id=np.full(n, user), timestamp=np.arange(n) * 10 + user,
                     split=[s for s, _ in posts], features=ids[:, None] + np.arange(3) / 4,
                     user_meta=np.stack([ids, -ids], axis=1),
                     tags=[np.array([VOCAB.index(t) for t in tags]) for _, tags in posts],
                     captions=[np.arange(i % 3) for i in ids])
    post_id += n
  writer.finalize(vocab=VOCAB, word_vectors=np.arange(len(VOCAB) * 2).reshape(-1, 2),
                  caption_vocab=[f"w{i}" for i in range(5)],
                  users={"age": np.arange(50), "city": np.arange(50) % 7},
                  provenance={"generator": "tests", "seed": 3})
  if extras:  # what a converter may add: per-row arrays, not part of the format
    np.save(os.path.join(directory, "artist_ids.npy"), np.arange(13))
    os.makedirs(os.path.join(directory, "extra"))
    np.save(os.path.join(directory, "extra", "more.npy"), np.arange(13))


@pytest.fixture
def hand(tmp_path):
  directory = str(tmp_path / "in")
  _write_hand_dataset(directory)
  return directory


def rows(directory):
  """Every row as (post_id, user_id, split code, sorted hashtag strings)."""
  ds = PostDataset(directory)
  batch = ds.read(np.arange(ds.num_posts))
  split_of = np.empty(ds.num_posts, np.int64)
  for code, name in enumerate(fmt.SPLITS):
    split_of[ds.split_rows(name)] = code
  return [(int(batch["post_id"][r]), int(batch["user_id"][r]), int(split_of[r]),
           sorted(ds.vocab[t] for t in batch["tag_ids"][r][batch["tag_mask"][r]]))
          for r in range(ds.num_posts)]


def _filter(hand, tmp_path, options, **kw):
  out = str(tmp_path / "out")
  meta = tag_filters.filter_dataset(hand, out, options, log=None, **kw)
  assert PostDataset(out).validate() == meta["num_posts"]
  fmt.BuildReport.from_dict(meta["build_report"]).check()  # read = written + sum(skipped)
  return out, meta


def test_is_numeric():
  for tag in ["2010", "#7", "0", "٢٠١٠", "#007"]:
    assert tag_filters.is_numeric(tag), tag
  for tag in ["1st", "#", "", "##7", "1.5", "-1", "12 34", "²", "80s", "#tbt"]:
    assert not tag_filters.is_numeric(tag), tag


def test_the_input_is_what_the_comments_say(hand):
  ds = PostDataset(hand)
  assert ds.vocab == VOCAB[:7] + ["#", "e"]  # the tags no training post has: by name
  np.testing.assert_array_equal(ds.tag_counts, [6, 6, 4, 3, 2, 2, 2, 0, 0])


def test_all_filters_counted_by_reason(hand, tmp_path):
  out, meta = _filter(hand, tmp_path, PAPERLIKE)
  # H = {b, c, d}; user 30 is the spammer (4.5 > 4); posts left with nothing of H are dropped.
  assert rows(out) == [(100, 10, TRAIN, ["b"]), (101, 10, TRAIN, ["b", "c"]),
                         (105, 20, TRAIN, ["c", "d"]), (107, 20, TEST, ["b"]),
                         (111, 40, TRAIN, ["d"])]
  assert meta["build_report"] == {
      "unit": "posts", "read": 13, "written": 5,
      "skipped": {"spammer": 2, "no_tags_left": 6},  # no_tags_left: 102 103 104 106 110 112
      "sections": {
          # 2010 x6 + #7 x3; a x8; 1st x3 + e + #; b, c, c of the spammer's posts.
          tag_filters.ASSIGNMENTS: {"unit": "assignments", "read": 32, "written": 7, "skipped": {
              "numeric": 9, "most_frequent": 8, "beyond_vocab_size": 5, "spammer": 3}},
          tag_filters.VOCABULARY: {"unit": "hashtags", "read": 9, "written": 3, "skipped": {
              "numeric": 2, "most_frequent": 1, "beyond_vocab_size": 3}},
          tag_filters.USERS: {"unit": "users", "read": 4, "written": 3,
                              "skipped": {"spammer": 1}}}}
  ds = PostDataset(out)
  assert ds.vocab == ["b", "c", "d"]  # training counts 2, 2, 2: ties keep the input order
  np.testing.assert_array_equal(ds.tag_counts, [2, 2, 2])
  assert meta["split_scheme"] == "temporal"


@pytest.mark.parametrize("options, skipped, posts_skipped, vocab", [
    # 2010 (6) and #7 (3) go; only post 110 ([2010]) is left empty.
    (FilterOptions(drop_numeric=True), {"numeric": 9}, {"no_tags_left": 1},
     ["a", "b", "c", "d", "1st", "e", "#"]),
    # a and 2010, the two most frequent (a tie, broken by id): posts 104 and 110 left empty.
    (FilterOptions(drop_most_frequent=2), {"most_frequent": 14}, {"no_tags_left": 2},
     ["b", "c", "#7", "d", "1st", "e", "#"]),
    # Numeric first, then the top 2 of the rest: a (8) and b (5); 100 102 104 109 110 112 empty.
    (FilterOptions(drop_numeric=True, drop_most_frequent=2),
     {"numeric": 9, "most_frequent": 13}, {"no_tags_left": 6}, ["c", "d", "1st", "e", "#"]),
    # Only a and 2010 stay: the other 18 go, and 103 [e], 107 [b #], 111 [d 1st] are emptied.
    (FilterOptions(vocab_size=2), {"beyond_vocab_size": 18}, {"no_tags_left": 3}, ["a", "2010"]),
    # Spammers only: user 30's 2 posts and their 9 hashtags; the vocabulary is untouched.
    (FilterOptions(max_mean_tags_per_user=4), {"spammer": 9}, {"spammer": 2}, VOCAB),
    # "Exceeds": a mean equal to the threshold is kept.
    (FilterOptions(max_mean_tags_per_user=4.5), {}, {}, VOCAB),
    # Above 2, users 10 and 20 (2.25) are spammers too; user 40 (5/3) is not.
    (FilterOptions(max_mean_tags_per_user=2), {"spammer": 27}, {"spammer": 10}, VOCAB),
])
def test_each_filter_alone(hand, tmp_path, options, skipped, posts_skipped, vocab):
  out, meta = _filter(hand, tmp_path, options)
  report = meta["build_report"]
  assert report["sections"][tag_filters.ASSIGNMENTS]["skipped"] == skipped
  assert report["sections"][tag_filters.ASSIGNMENTS]["read"] == 32
  assert report["skipped"] == posts_skipped
  assert report["written"] == 13 - sum(posts_skipped.values())
  assert sorted(PostDataset(out).vocab) == sorted(vocab)
  assert report["sections"][tag_filters.VOCABULARY]["written"] == len(vocab)


def test_no_filter_copies_the_dataset(tmp_path):
  """With every filter off the output is the input: rows, ids, splits, vocabulary, captions."""
  source = str(tmp_path / "in")
  write_random_dataset(source, has_captions=True)
  out = str(tmp_path / "out")
  meta = tag_filters.filter_dataset(source, out, log=None)
  a, b = PostDataset(source), PostDataset(out)
  assert b.vocab == a.vocab and meta["split_scheme"] == a.metadata["split_scheme"]
  np.testing.assert_array_equal(b.tag_counts, a.tag_counts)
  np.testing.assert_array_equal(b.word_vectors, a.word_vectors)
  for name in fmt.SPLITS:
    np.testing.assert_array_equal(b.split_rows(name), a.split_rows(name))
  rows = np.arange(a.num_posts)
  got = b.read(rows)
  for key, value in a.read(rows).items():
    np.testing.assert_array_equal(got[key], value, err_msg=key)
  assert meta["build_report"]["skipped"] == {}


def _reference(ds, options):
  """The filters written out post by post, as the module docstring states them."""
  ranking = sorted(range(ds.num_tags), key=lambda t: (-ds.tag_counts[t], t))
  reason = {}
  for t in ranking:
    if options.drop_numeric and tag_filters.is_numeric(ds.vocab[t]):
      reason[t] = "numeric"
  left = [t for t in ranking if t not in reason]
  for i, t in enumerate(left):
    if i < options.drop_most_frequent:
      reason[t] = "most_frequent"
    elif options.vocab_size is not None and i >= options.drop_most_frequent + options.vocab_size:
      reason[t] = "beyond_vocab_size"
  batch = ds.read(np.arange(ds.num_posts))
  tags = [batch["tag_ids"][r][batch["tag_mask"][r]].tolist() for r in range(ds.num_posts)]
  by_user = {}
  for r, user in enumerate(ds.user_ids.tolist()):
    by_user.setdefault(user, []).append(len(tags[r]))
  spammers = {u for u, lengths in by_user.items() if options.max_mean_tags_per_user is not None
              and sum(lengths) / len(lengths) > options.max_mean_tags_per_user}
  kept, assignments = [], {}
  for r, user in enumerate(ds.user_ids.tolist()):
    left = [t for t in tags[r] if t not in reason]
    for t in tags[r]:
      why = reason.get(t, "spammer" if user in spammers else "written")
      assignments[why] = assignments.get(why, 0) + 1
    if user not in spammers and left:
      kept.append((int(batch["post_id"][r]), sorted(ds.vocab[t] for t in left)))
  return kept, assignments


@pytest.mark.parametrize("seed", range(4))
def test_random_datasets_match_a_post_by_post_reference(tmp_path, seed):
  source = str(tmp_path / "in")
  write_random_dataset(source, num_users=30, num_tags=25, seed=seed)
  rng = np.random.default_rng(seed)
  options = FilterOptions(drop_most_frequent=int(rng.integers(0, 4)),
                          vocab_size=int(rng.integers(1, 20)),
                          max_mean_tags_per_user=float(rng.uniform(1.5, 3.5)))
  out = str(tmp_path / "out")
  meta = tag_filters.filter_dataset(source, out, options, log=None)
  kept, assignments = _reference(PostDataset(source), options)
  assert [(p, tags) for p, _, _, tags in rows(out)] == kept
  section = meta["build_report"]["sections"][tag_filters.ASSIGNMENTS]
  assert section["written"] == assignments.pop("written")
  assert section["skipped"] == assignments
  fmt.BuildReport.from_dict(meta["build_report"]).check()


def test_rows_carry_their_features_metadata_captions_and_word_vectors(hand, tmp_path):
  out, _ = _filter(hand, tmp_path, PAPERLIKE)
  a, b = PostDataset(hand), PostDataset(out)
  rows_out = np.arange(b.num_posts)
  got = b.read(rows_out)
  rows_in = np.searchsorted(a.read(np.arange(a.num_posts))["post_id"], got["post_id"])
  want = a.read(rows_in)
  for key in ("post_id", "user_id", "timestamp", "features", "user_meta"):
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  for i in rows_out:  # padded to each dataset's longest caption: compare the token lists
    np.testing.assert_array_equal(got["caption_ids"][i][got["caption_mask"][i]],
                                  want["caption_ids"][i][want["caption_mask"][i]])
  np.testing.assert_array_equal(b.word_vectors, a.word_vectors[[a.vocab.index(t) for t in b.vocab]])
  assert fmt.read_lines(os.path.join(out, fmt.CAPTION_VOCAB_FILE)) == [f"w{i}" for i in range(5)]
  with np.load(os.path.join(out, fmt.USERS_FILE)) as users:
    np.testing.assert_array_equal(users["age"], np.arange(50))  # by user id: copied whole
  assert not os.path.exists(os.path.join(out, "artist_ids.npy"))
  assert not os.path.exists(os.path.join(out, "extra"))


def test_provenance_records_the_options_and_the_input(hand, tmp_path):
  _, meta = _filter(hand, tmp_path, FilterOptions(  # numpy numbers are recorded as numbers
      drop_numeric=True, drop_most_frequent=np.int64(1), vocab_size=3, max_mean_tags_per_user=4,
      split_scheme="user_disjoint", seed=5))
  prov = meta["provenance"]
  assert prov["converter"] == "data_prep.filter_tags"
  assert prov["source"] == {"generator": "tests", "seed": 3}  # nested, not merged
  filters = prov["filters"]
  assert {k: filters[k] for k in ("input", "drop_numeric", "drop_most_frequent", "vocab_size",
                                  "max_mean_tags_per_user", "split_scheme", "seed")} == {
      "input": os.path.abspath(hand), "drop_numeric": True, "drop_most_frequent": 1,
      "vocab_size": 3, "max_mean_tags_per_user": 4, "split_scheme": "user_disjoint", "seed": 5}
  assert filters["most_frequent_dropped"] == ["a"] and filters["spammer_users"] == 1
  assert filters["not_carried"] == ["artist_ids.npy", "extra/"]
  assert filters["input_split_scheme"] == "temporal"
  assert filters["input_build_report"] == PostDataset(hand).metadata["build_report"]
  assert filters["oracle"] == "none: the input had none"
  # Filtering a filtered dataset nests the first record under source.
  out2 = str(tmp_path / "again")
  meta2 = tag_filters.filter_dataset(str(tmp_path / "out"), out2, FilterOptions(vocab_size=2),
                                     log=None)
  assert meta2["provenance"]["source"] == prov


def test_the_log_names_what_is_not_carried(hand, tmp_path):
  logged = []
  tag_filters.filter_dataset(hand, str(tmp_path / "out"), PAPERLIKE, log=logged.append)
  assert any("not carried" in m and "artist_ids.npy, extra/" in m for m in logged), logged
  assert "posts read 13, written 5, skipped 8" in logged[-1]


def test_a_synthetic_input_loses_its_oracle_and_says_so(tiny_dataset, tmp_path):
  logged = []
  out = str(tmp_path / "out")
  meta = tag_filters.filter_dataset(tiny_dataset.directory, out,
                                    FilterOptions(drop_most_frequent=5, vocab_size=50),
                                    log=logged.append)
  assert any("world/" in m and "has no oracle" in m for m in logged), logged
  assert not os.path.exists(os.path.join(out, "world"))
  assert meta["provenance"]["filters"]["oracle"].startswith("none: the input's world/")
  assert meta["provenance"]["source"]["generator"] == "hashjax.data.synthetic"
  assert "generator" not in meta["provenance"]  # never taken for the generator's own output
  assert meta["has_captions"] and meta["num_tags"] == 50
  assert PostDataset(out).validate() == meta["num_posts"]


def test_split_options(hand, tmp_path):
  options = dict(drop_numeric=True, drop_most_frequent=1, vocab_size=3, max_mean_tags_per_user=4)
  kept_users = [10, 10, 20, 20, 40]  # see test_all_filters_counted_by_reason
  for scheme, expected in [
      ("keep", [TRAIN, TRAIN, TRAIN, TEST, TRAIN]),
      # 2 posts: 1 train (at least one; floor(0.9 * 2) = 1), 0 val, 1 test; 1 post: train.
      ("temporal", [TRAIN, TEST, TRAIN, TEST, TRAIN]),
      ("user_disjoint", list(np.repeat(splits.user_disjoint_split(3, 7), [2, 2, 1])))]:
    out = str(tmp_path / scheme)
    meta = tag_filters.filter_dataset(hand, out, FilterOptions(**options, split_scheme=scheme,
                                                               seed=7), log=None)
    posts = rows(out)
    assert [p[1] for p in posts] == kept_users
    assert [p[2] for p in posts] == expected, scheme
    assert meta["split_scheme"] == ("temporal" if scheme == "keep" else scheme)
    assert PostDataset(out).validate() == 5


def test_user_disjoint_input_kept(tmp_path):
  source = str(tmp_path / "in")
  write_random_dataset(source, split_scheme="user_disjoint")
  meta = tag_filters.filter_dataset(source, str(tmp_path / "out"), FilterOptions(vocab_size=5),
                                    log=None)
  assert meta["split_scheme"] == "user_disjoint"
  PostDataset(str(tmp_path / "out")).validate()


@pytest.mark.parametrize("options, option", [
    (FilterOptions(drop_most_frequent=-1), "drop_most_frequent"),
    (FilterOptions(vocab_size=0), "vocab_size"),
    (FilterOptions(max_mean_tags_per_user=0), "max_mean_tags_per_user"),
    (FilterOptions(max_mean_tags_per_user=-3.0), "max_mean_tags_per_user"),
    (FilterOptions(max_mean_tags_per_user=float("nan")), "max_mean_tags_per_user"),
    (FilterOptions(split_scheme="random"), "split_scheme"),
    (FilterOptions(seed=-1), "seed"),
    (FilterOptions(drop_numeric="yes"), "drop_numeric"),
])
def test_bad_options_name_the_option_and_write_nothing(hand, tmp_path, options, option):
  with pytest.raises(tag_filters.OptionError, match=f"^{option} must be") as err:
    tag_filters.filter_dataset(hand, str(tmp_path / "out"), options, log=None)
  assert err.value.option == option
  assert sorted(os.listdir(tmp_path)) == ["in"]


def test_failures_leave_no_output(hand, tmp_path):
  with pytest.raises(fmt.DatasetError, match="does not exist"):
    tag_filters.filter_dataset(str(tmp_path / "missing"), str(tmp_path / "out"), log=None)
  with pytest.raises(tag_filters.OptionError, match="^out .* is the input"):
    tag_filters.filter_dataset(hand, hand + "/", log=None, overwrite=True)
  # Above 1 hashtag per post every user is a spammer: no post is left.
  with pytest.raises(fmt.DatasetError, match="no post survives the filters"):
    tag_filters.filter_dataset(hand, str(tmp_path / "out"),
                               FilterOptions(max_mean_tags_per_user=1), log=None)
  with pytest.raises(fmt.DatasetError, match="no hashtag survives the filters"):
    tag_filters.filter_dataset(hand, str(tmp_path / "out"),
                               FilterOptions(drop_most_frequent=len(VOCAB)), log=None)
  assert sorted(os.listdir(tmp_path)) == ["in"]
  # A failure while writing (here: a bad record) removes the staging directory too.
  features = os.path.join(fmt.shard_dir(hand, 1), "features.npy")
  np.save(features, np.full_like(np.load(features), np.nan))
  with pytest.raises(fmt.DatasetError, match="NaN"):
    tag_filters.filter_dataset(hand, str(tmp_path / "out"), log=None)
  assert sorted(os.listdir(tmp_path)) == ["in"]


def test_an_existing_output_is_kept_without_overwrite(hand, tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  (out / "keep.txt").write_text("someone else's data")
  with pytest.raises(FileExistsError):
    tag_filters.filter_dataset(hand, str(out), log=None)
  assert os.listdir(out) == ["keep.txt"]
  tag_filters.filter_dataset(hand, str(out), PAPERLIKE, overwrite=True, log=None)
  assert PostDataset(str(out)).num_posts == 5
