"""The HetRec Last.fm-2k converter: a hand-written raw directory with every quirk, and real data."""

import calendar
import os
import subprocess
import sys

import numpy as np
import pytest

from data_prep import hetrec_lastfm
from hashjax.eval import baselines, evaluate, report
from hashjax.data import format as fmt
from hashjax.data import splits
from hashjax.data.reader import PostDataset
from tests.dataset_fixtures import REPO_ROOT

REAL_RAW = os.path.join(REPO_ROOT, "..", "shared", "data", "hetrec2011-lastfm-2k")

# user_taggedartists.dat, line 2 onwards (line 1 is the header). Posts are (user, date, artist):
#   A = (2, 2009-04-01, 10): metal, rock français    B = (2, 2009-04-01, 20): metal (tie with A)
#   C = (2, 2008-05-01, 20): pop (earlier than A)     D = (3, 1956-01-01, 30): pop (implausible)
#   E = (3, 2010-02-09, 30): metal                    F = (5, 2009-06-05, 30): metal
#   G = (5, 2009-07-01, 20): indie (the only use of indie)
ASSIGNMENTS = [
    "2\t10\t1\t1\t4\t2009",   # 2: A
    "2\t10\t2\t1\t4\t2009",   # 3: A
    "2\t20\t1\t1\t4\t2009",   # 4: B
    "2\t20\t3\t1\t5\t2008",   # 5: C
    "3\t30\t3\t1\t1\t1956",   # 6: D
    "3\t99\t1\t1\t1\t2010",   # 7: unknown_artist
    "3\t30\t7\t1\t1\t2010",   # 8: unknown_tag
    "3\t20\tx\t1\t1\t2010",   # 9: malformed_line (not a number)
    "3\t30\t3\t1\t1\t1956",   # 10: duplicate_assignment (line 6 again)
    "5\t40\t1\t1\t1\t2010",   # 11: artist_without_features (no listening data)
    "3\t30\t1\t9\t2\t2010",   # 12: E
    "5\t10\t3\t31\t2\t2010",  # 13: malformed_line (31 February)
    "5\t30\t1\t5\t6\t2009",   # 14: F
    "5\t20\t4\t1\t7\t2009",   # 15: G
]
LISTENING = [(2, 10, 100), (2, 20, 50), (3, 20, 10), (3, 30, 1000), (5, 10, 7), (5, 30, 3)]


def _write(path, header, lines, *, encoding="utf-8", newline="\n"):
  with open(path, "w", encoding=encoding, newline="") as f:
    f.write("".join(line + newline for line in [header] + lines))


@pytest.fixture
def raw_dir(tmp_path):
  raw = tmp_path / "raw"
  raw.mkdir()
  _write(raw / "user_taggedartists.dat", "userID\tartistID\ttagID\tday\tmonth\tyear", ASSIGNMENTS,
         newline="\r\n")
  _write(raw / "tags.dat", "tagID\ttagValue", ["1\tmetal", "2\trock français", "3\tpop", "4\tindie"],
         encoding="latin-1", newline="\r\n")
  _write(raw / "artists.dat", "id\tname\turl\tpictureURL",
         [f"{a}\t{name}\thttp://a/{a}\thttp://p/{a}.jpg"
          for a, name in [(10, "Björk"), (20, "Metallica"), (30, "ABBA"), (40, "Nobody")]])
  _write(raw / "user_artists.dat", "userID\tartistID\tweight",
         ["\t".join(map(str, row)) for row in LISTENING])
  return str(raw)


def _utc(y, m, d):
  return calendar.timegm((y, m, d, 0, 0, 0))


def _posts(ds):
  """Every row as (post_id, user, timestamp, split name, tag strings as a sorted tuple)."""
  split_of = np.empty(ds.num_posts, object)
  for name in fmt.SPLITS:
    split_of[ds.split_rows(name)] = name
  batch = ds.read(np.arange(ds.num_posts))
  return [(int(batch["post_id"][r]), int(batch["user_id"][r]), int(batch["timestamp"][r]),
           split_of[r], tuple(sorted(ds.vocab[t] for t in batch["tag_ids"][r][batch["tag_mask"][r]])))
          for r in range(ds.num_posts)], batch


def test_tiny_raw_directory_converts_exactly(raw_dir, tmp_path):
  logged = []
  out = str(tmp_path / "ds")
  meta = hetrec_lastfm.convert(raw_dir, out, feature_dim=4, log=logged.append)
  ds = PostDataset(out)
  posts, batch = _posts(ds)
  assert posts == [
      (0, 2, _utc(2008, 5, 1), "train", ("pop",)),                   # C
      (1, 2, _utc(2009, 4, 1), "train", ("metal", "rock français")),  # A
      (2, 2, _utc(2009, 4, 1) + 1, "test", ("metal",)),              # B: tie broken by artist
      (3, 3, _utc(1956, 1, 1), "train", ("pop",)),                   # D: kept, negative time
      (4, 3, _utc(2010, 2, 9), "test", ("metal",)),                  # E
      (5, 5, _utc(2009, 6, 5), "train", ("metal",)),                 # F
      (6, 5, _utc(2009, 7, 1), "test", ("indie",)),                  # G
  ]
  # Ids by training frequency; ties keep tags.dat order.
  assert ds.vocab == ["metal", "pop", "rock français", "indie"]
  np.testing.assert_array_equal(ds.tag_counts, [2, 2, 1, 0])
  assert meta["build_report"] == {
      "unit": "posts", "read": 7, "written": 7, "skipped": {},
      "sections": {
          "tags.dat": {"unit": "tag lines", "read": 4, "written": 4, "skipped": {}},
          "artists.dat": {"unit": "artist lines", "read": 4, "written": 4, "skipped": {}},
          "user_artists.dat": {"unit": "listening rows", "read": 6, "written": 6, "skipped": {}},
          "user_taggedartists.dat": {
              "unit": "assignment lines", "read": 14, "written": 8, "skipped": {
                  "malformed_line": 2, "unknown_artist": 1, "unknown_tag": 1,
                  "duplicate_assignment": 1, "artist_without_features": 1}}}}
  fmt.BuildReport.from_dict(meta["build_report"]).check()
  stats = meta["provenance"]["statistics"]
  assert stats["implausible_dates"]["posts_per_year"] == {"1956": 1}
  assert meta["user_meta_dim"] == 0 and meta["feature_dim"] == 4
  assert set(meta["provenance"]["files"]) == set(hetrec_lastfm.RAW_FILES)
  # Bad lines are named by file and line number.
  assert any("user_taggedartists.dat:9: malformed line" in m for m in logged)
  assert any("user_taggedartists.dat:13: malformed line" in m and "day is out of range" in m
             for m in logged)
  np.testing.assert_array_equal(np.load(os.path.join(out, "artist_ids.npy")),
                                [20, 10, 20, 30, 30, 30, 20])


def test_features_are_the_listening_pca_nonnegative_and_unit_norm(raw_dir, tmp_path):
  out = str(tmp_path / "ds")
  hetrec_lastfm.convert(raw_dir, out, feature_dim=4, log=None)
  feats = PostDataset(out).read(np.arange(7))["features"]
  artist_of_row = np.load(os.path.join(out, "artist_ids.npy"))
  assert (feats >= 0).all()
  np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-6)
  # Reference: SVD of the dense log(1+w) artist x user matrix; |U_k S_k| up to normalisation.
  artists, users = [10, 20, 30], [2, 3, 5]
  x = np.zeros((3, 3))
  for u, a, w in LISTENING:
    x[artists.index(a), users.index(u)] = np.log1p(w)
  u_, s, _ = np.linalg.svd(x)
  ref = np.abs(u_[:, :2] * s[:2])
  ref /= np.linalg.norm(ref, axis=1, keepdims=True)
  for row, artist in enumerate(artist_of_row):
    np.testing.assert_allclose(feats[row, :2] + feats[row, 2:], ref[artists.index(artist)],
                               atol=1e-5)


def test_rare_tags_and_user_disjoint_split(raw_dir, tmp_path):
  out = str(tmp_path / "ds")
  meta = hetrec_lastfm.convert(raw_dir, out, feature_dim=4, min_tag_count=2,
                               split_scheme="user_disjoint", seed=3, log=None)
  ds = PostDataset(out)
  posts, _ = _posts(ds)
  # rock français (once) leaves A with metal only; indie (once) empties G, which is dropped.
  assert [p[4] for p in posts] == [("pop",), ("metal",), ("metal",), ("pop",), ("metal",),
                                   ("metal",)]
  # Lines and posts are counted apart: two rare_tag lines, one of which left G without tags.
  report = meta["build_report"]
  assert report["sections"]["user_taggedartists.dat"]["skipped"]["rare_tag"] == 2
  assert report["sections"]["user_taggedartists.dat"]["written"] == 6
  assert (report["read"], report["written"], report["skipped"]) == (7, 6, {"no_tags_left": 1})
  fmt.BuildReport.from_dict(report).check()
  assert ds.vocab == ["metal", "pop"]
  codes = splits.user_disjoint_split(3, 3)  # users 2, 3, 5 are indices 0, 1, 2
  expected = {2: fmt.SPLITS[codes[0]], 3: fmt.SPLITS[codes[1]], 5: fmt.SPLITS[codes[2]]}
  assert [p[3] for p in posts] == [expected[p[1]] for p in posts]


def test_strict_mode_stops_at_the_first_bad_line(raw_dir, tmp_path):
  with pytest.raises(hetrec_lastfm.RawDataError, match=r"user_taggedartists\.dat:9: malformed"):
    hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=4, strict=True, log=None)
  with pytest.raises(ValueError, match="feature_dim must be even"):
    hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=5, log=None)
  os.remove(os.path.join(raw_dir, "tags.dat"))
  with pytest.raises(FileNotFoundError, match="tags.dat: missing"):
    hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=4, log=None)


def test_command_line(raw_dir, tmp_path):
  out = str(tmp_path / "cli")
  result = subprocess.run(
      [sys.executable, "-m", "data_prep.hetrec_lastfm", f"--raw={raw_dir}", f"--out={out}",
       "--feature_dim=4", "--split_scheme=temporal"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert "posts read 7, written 7, skipped 0 (none); tags.dat: tag lines read 4," in result.stdout
  assert "user_taggedartists.dat: assignment lines read 14, written 8, skipped 6 (" in result.stdout
  assert PostDataset(out).num_posts == 7


@pytest.mark.skipif(not os.path.isdir(REAL_RAW), reason=f"real HetRec data absent ({REAL_RAW})")
def test_real_data_counts_and_user_frequency_beats_global(tmp_path):
  out = str(tmp_path / "hetrec")
  meta = hetrec_lastfm.convert(REAL_RAW, out, log=None)
  build_report = meta["build_report"]
  fmt.BuildReport.from_dict(build_report).check()  # read = written + skipped, every section
  sections = build_report["sections"]
  # The official numbers of tag assignments, tags, artists and user-artist pairs, all clean.
  assert [sections[name]["read"] for name in hetrec_lastfm.RAW_FILES] == [
      186_479, 11_946, 17_632, 92_834]
  for name in (hetrec_lastfm.TAGS, hetrec_lastfm.ARTISTS, hetrec_lastfm.LISTENING):
    assert sections[name]["skipped"] == {}, name
  assert not {"malformed_line", "blank_line"} & set(sections[hetrec_lastfm.TAGGED]["skipped"])
  ds = PostDataset(out)
  assert ds.num_posts == build_report["written"] == sum(meta["counts"].values())
  assert 1_800 <= len(np.unique(ds.user_ids)) <= 1_892
  assert (np.diff(ds.timestamps)[np.diff(ds.user_ids) == 0] > 0).all()
  results = evaluate.evaluate_scorers([baselines.GlobalFrequency(ds), baselines.UserFrequency(ds)],
                                      ds, "test")
  glob, user = results["Global frequency"], results["User-specific frequency"]
  for metric in report.TABLE_COLUMNS:
    assert user[metric] > glob[metric], (metric, results)


# -- issue 12: parsing defects, each counted by reason (or raised with --strict), never silent --

def _append(raw_dir, name, lines, *, encoding="utf-8"):
  with open(os.path.join(raw_dir, name), "a", encoding=encoding, newline="") as f:
    f.write("".join(line + "\n" for line in lines))


def _sections(meta):
  fmt.BuildReport.from_dict(meta["build_report"]).check()
  return meta["build_report"]["sections"]


def test_a_repeated_tag_or_artist_id_keeps_its_first_line_and_is_counted(raw_dir, tmp_path):
  # tagID 1 again as "jazz": before, the later line renamed metal to jazz without a word.
  _append(raw_dir, "tags.dat", ["1\tjazz"], encoding="latin-1")
  _append(raw_dir, "artists.dat", ["30\tABBA again\thttp://a/30\thttp://p/30.jpg"])
  logged = []
  meta = hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=4, log=logged.append)
  sections = _sections(meta)
  assert sections["tags.dat"] == {"unit": "tag lines", "read": 5, "written": 4,
                                  "skipped": {"duplicate_id": 1}}
  assert sections["artists.dat"]["skipped"] == {"duplicate_id": 1}
  assert "jazz" not in PostDataset(str(tmp_path / "ds")).vocab
  assert "metal" in PostDataset(str(tmp_path / "ds")).vocab
  assert any("tags.dat:6: duplicate id: 1 already on line 2" in m for m in logged)
  with pytest.raises(hetrec_lastfm.RawDataError, match=r"tags\.dat:6: duplicate id"):
    hetrec_lastfm.convert(raw_dir, str(tmp_path / "strict"), feature_dim=4, strict=True, log=None)


def test_a_repeated_listening_pair_keeps_the_first_weight_instead_of_summing(raw_dir, tmp_path):
  reference = hetrec_lastfm.convert(raw_dir, str(tmp_path / "ref"), feature_dim=4, log=None)
  _append(raw_dir, "user_artists.dat", ["2\t10\t100000"])  # summed before: another feature
  meta = hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=4, log=None)
  assert _sections(meta)["user_artists.dat"] == {"unit": "listening rows", "read": 7,
                                                 "written": 6, "skipped": {"duplicate_row": 1}}
  rows = np.arange(reference["num_posts"])
  np.testing.assert_array_equal(PostDataset(str(tmp_path / "ds")).read(rows)["features"],
                                PostDataset(str(tmp_path / "ref")).read(rows)["features"])


def test_numbers_beyond_int64_are_malformed_lines_not_overflow_errors(raw_dir, tmp_path):
  huge = str(2**63)  # int() took it; numpy raised OverflowError naming no file
  _append(raw_dir, "user_taggedartists.dat", [f"{huge}\t10\t1\t1\t1\t2010", "2\t10\t1\t1\t1\t"
                                              f"{2**40}"])  # a year date() overflowed on
  _append(raw_dir, "user_artists.dat", [f"2\t30\t{huge}"])
  logged = []
  meta = hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=4, log=logged.append)
  sections = _sections(meta)
  assert sections["user_taggedartists.dat"]["skipped"]["malformed_line"] == 4
  assert sections["user_artists.dat"]["skipped"] == {"malformed_line": 1}
  assert any("user_taggedartists.dat:16: malformed line: userID '9223372036854775808' is "
             "outside [0, 9223372036854775807]" in m for m in logged)
  assert any("user_artists.dat:8: malformed line: weight" in m for m in logged)
  out = tmp_path / "strict"  # user_artists.dat is read before user_taggedartists.dat
  with pytest.raises(hetrec_lastfm.RawDataError, match=r"user_artists\.dat:8: malformed line: "
                     r"weight '9223372036854775808' is outside"):
    hetrec_lastfm.convert(raw_dir, str(out), feature_dim=4, strict=True, log=None)
  assert not os.path.exists(out) and not os.path.exists(f"{out}.partial")


@pytest.mark.parametrize("number", ["5_3", "+5", " 5", "5 ", "５", "٣", "0x5", "-2", ""])
def test_ids_are_ascii_digits_only(raw_dir, tmp_path, number):
  # int() accepted the first five (and "-2" is no id); each is now a malformed line.
  _append(raw_dir, "user_taggedartists.dat", [f"{number}\t10\t1\t1\t1\t2010"])
  latin1 = number.isascii()  # tags.dat is latin-1: it cannot hold the other digits
  if latin1:
    _append(raw_dir, "tags.dat", [f"{number}\tjazz"], encoding="latin-1")
  meta = hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=4, log=None)
  sections = _sections(meta)
  assert sections["user_taggedartists.dat"]["skipped"]["malformed_line"] == 3
  assert sections["tags.dat"]["skipped"] == ({"malformed_line": 1} if latin1 else {})
  assert "jazz" not in PostDataset(str(tmp_path / "ds")).vocab


def test_cr_only_line_endings_are_refused_naming_the_file(raw_dir, tmp_path):
  _write(os.path.join(raw_dir, "tags.dat"), "tagID\ttagValue",
         [f"{i}\ttag number {i}" for i in range(1, 2000)], encoding="latin-1", newline="\r")
  with pytest.raises(hetrec_lastfm.RawDataError) as e:
    hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=4, log=None)
  message = str(e.value)
  assert "tags.dat" in message and "CR-only" in message
  assert len(message) < 400  # before: the whole file, as one "header"
  # A header with LF and the rest with CR is the same defect.
  with open(os.path.join(raw_dir, "tags.dat"), "w", encoding="latin-1", newline="") as f:
    f.write("tagID\ttagValue\n1\tmetal\r2\trock\r3\tpop\r4\tindie\r")
  with pytest.raises(hetrec_lastfm.RawDataError, match=r"tags\.dat: 4 bare carriage returns"):
    hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=4, log=None)
  assert not os.path.exists(tmp_path / "ds")


def test_messages_show_at_most_120_characters_of_a_line(raw_dir, tmp_path):
  _append(raw_dir, "user_taggedartists.dat", ["2\t10\t" + "9" * 10_000])
  _append(raw_dir, "artists.dat", ["x" * 10_000 + "\tname\turl\tpicture"])
  logged = []
  hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=4, log=logged.append)
  long = [m for m in logged if ":16: " in m or "artists.dat:6: " in m]
  assert len(long) == 2 and all(len(m) < 400 and "..." in m for m in long), long
  with open(os.path.join(raw_dir, "tags.dat"), "w", encoding="latin-1", newline="") as f:
    f.write("tagID\ttagValue" + "x" * 10_000 + "\n1\tmetal\n")
  with pytest.raises(hetrec_lastfm.RawDataError, match=r"tags\.dat:1: header") as e:
    hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds2"), feature_dim=4, log=None)
  assert len(str(e.value)) < 400


def test_bad_lines_of_every_file_are_in_the_build_report(raw_dir, tmp_path):
  # Before, these were counted in a Counter outside build_report (or not at all).
  _append(raw_dir, "tags.dat", ["9\t", "x\tjazz", "10\ta\tb", ""], encoding="latin-1")
  _append(raw_dir, "artists.dat", ["50\tonly a name", "y\tname\turl\tpic"])
  _append(raw_dir, "user_artists.dat", ["2\t10", "2\t30\t-1", "2\t40\t5\t6"])
  meta = hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=4, log=None)
  sections = _sections(meta)
  assert sections["tags.dat"] == {"unit": "tag lines", "read": 8, "written": 4,
                                  "skipped": {"malformed_line": 3, "blank_line": 1}}
  assert sections["artists.dat"]["skipped"] == {"malformed_line": 2}
  assert sections["user_artists.dat"]["skipped"] == {"malformed_line": 3}
  assert "malformed_lines_per_file" not in meta["provenance"]["statistics"]


def test_build_report_balances_lines_and_posts_separately(raw_dir, tmp_path):
  # Before: read counted lines, written posts, and no_tags_left posts among line skips.
  meta = hetrec_lastfm.convert(raw_dir, str(tmp_path / "ds"), feature_dim=4, min_tag_count=2,
                               log=None)
  report = fmt.BuildReport.from_dict(meta["build_report"])
  report.check()
  for section in [report, *report.sections.values()]:
    assert section.read == section.written + sum(section.skipped.values())
  assert report.unit == "posts" and report.written == meta["num_posts"]
  lines = report.sections["user_taggedartists.dat"]
  assert lines.written == PostDataset(str(tmp_path / "ds")).read(
      np.arange(meta["num_posts"]))["tag_mask"].sum()


def test_a_failed_conversion_leaves_no_output(raw_dir, tmp_path, monkeypatch):
  out = tmp_path / "ds"

  def fail(*args, **kwargs):
    raise OSError("disk full")

  # After the shards are written, before metadata: before the fix, out held a half dataset.
  monkeypatch.setattr(hetrec_lastfm, "_provenance", fail)
  with pytest.raises(OSError, match="disk full"):
    hetrec_lastfm.convert(raw_dir, str(out), feature_dim=4, log=None)
  assert not os.path.exists(out) and not os.path.exists(f"{out}.partial")
  monkeypatch.undo()
  # artist_ids.npy is part of the dataset: written inside the block, so a failure there too.
  real_save = np.save
  monkeypatch.setattr(np, "save", lambda path, *a, **k: fail() if str(path).endswith(
      "artist_ids.npy") else real_save(path, *a, **k))
  with pytest.raises(OSError, match="disk full"):
    hetrec_lastfm.convert(raw_dir, str(out), feature_dim=4, log=None)
  assert not os.path.exists(out) and not os.path.exists(f"{out}.partial")
  monkeypatch.undo()
  hetrec_lastfm.convert(raw_dir, str(out), feature_dim=4, log=None)
  assert os.path.exists(out / "artist_ids.npy") and not os.path.exists(f"{out}.partial")
