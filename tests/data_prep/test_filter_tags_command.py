"""`python -m data_prep.filter_tags`: bad flags stop at parsing naming the flag and write nothing,
a run logs its counts, and Veit et al.'s options on the real HetRec conversion keep the
accounting."""

import os
import subprocess
import sys

import pytest

from data_prep import hetrec_lastfm
from hashjax.data import format as fmt
from hashjax.data import tag_filters
from hashjax.data.reader import PostDataset
from tests.data_prep.test_hetrec_lastfm import REAL_RAW
from tests.dataset_fixtures import REPO_ROOT, write_random_dataset

# Veit et al. Section 4.1, as flags.
PAPER_FLAGS = ["--drop_numeric", "--drop_most_frequent=10", "--vocab_size=100000",
               "--max_mean_tags_per_user=15", "--split_scheme=temporal"]


@pytest.fixture
def source(tmp_path):
  directory = str(tmp_path / "in")
  write_random_dataset(directory, has_captions=True)
  return directory


def _run(args):
  return subprocess.run([sys.executable, "-m", "data_prep.filter_tags", *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120)


def test_bad_flags_exit_nonzero_naming_the_flag_and_write_nothing(source, tmp_path):
  out = str(tmp_path / "out")
  missing = str(tmp_path / "missing")
  bad = [  # (flags, what the message must say)
      ([f"--dataset={source}", f"--out={out}", "--drop_most_frequent=-1"],
       ["--drop_most_frequent must be an integer >= 0, got -1"]),
      ([f"--dataset={source}", f"--out={out}", "--vocab_size=0"],
       ["--vocab_size must be an integer >= 1, got 0"]),
      ([f"--dataset={source}", f"--out={out}", "--max_mean_tags_per_user=0"],
       ["--max_mean_tags_per_user must be a finite number > 0"]),
      ([f"--dataset={source}", f"--out={out}", "--max_mean_tags_per_user=-15"],
       ["--max_mean_tags_per_user must be a finite number > 0"]),
      ([f"--dataset={source}", f"--out={out}", "--seed=-2"], ["--seed must be an integer >= 0"]),
      ([f"--dataset={source}", f"--out={out}", "--split_scheme=random"], ["--split_scheme"]),
      ([f"--dataset={missing}", f"--out={out}"], ["--dataset", "does not exist"]),
      ([f"--dataset={tmp_path}", f"--out={out}"], ["--dataset", "is not a hashjax dataset"]),
      ([f"--dataset={source}", f"--out={source}/", "--overwrite"],
       ["--out", "is the input --dataset"]),
      ([f"--out={out}"], ["--dataset"]),
  ]
  for args, messages in bad:
    result = _run(args)
    assert result.returncode != 0, args
    for message in messages:
      assert message in result.stderr, (args, message, result.stderr)
    assert "Traceback" not in result.stderr, (args, result.stderr)
    assert sorted(os.listdir(tmp_path)) == ["in"], args  # neither OUT nor OUT.partial
    assert PostDataset(source).num_posts > 0


def test_a_run_logs_its_counts_and_an_existing_output_is_a_one_line_error(source, tmp_path):
  out = str(tmp_path / "out")
  result = _run([f"--dataset={source}", f"--out={out}", "--drop_most_frequent=2",
                 "--vocab_size=10", "--max_mean_tags_per_user=3", "--split_scheme=user_disjoint",
                 "--seed=4"])
  assert result.returncode == 0, result.stderr
  meta = fmt.read_metadata(out)
  assert f"built {out} from {source}" in result.stdout
  report = fmt.BuildReport.from_dict(meta["build_report"])
  assert report.summary().split(";")[0] in result.stdout  # the posts
  for name, section in report.sections.items():  # (metadata.json sorts the sections)
    assert f"{name}: {section.summary()}" in result.stdout
  assert meta["provenance"]["filters"]["seed"] == 4 and meta["split_scheme"] == "user_disjoint"
  assert PostDataset(out).validate() == meta["num_posts"]
  again = _run([f"--dataset={source}", f"--out={out}"])
  assert again.returncode != 0
  assert "--out" in again.stderr and "--overwrite" in again.stderr
  assert "Traceback" not in again.stderr, again.stderr
  assert fmt.read_metadata(out) == meta  # untouched


def test_a_filter_that_leaves_nothing_is_a_one_line_error(source, tmp_path):
  result = _run([f"--dataset={source}", f"--out={tmp_path / 'out'}",
                 "--max_mean_tags_per_user=0.5"])
  assert result.returncode != 0
  assert "no post survives the filters" in result.stderr and "Traceback" not in result.stderr
  assert sorted(os.listdir(tmp_path)) == ["in"]


# Measured on HetRec 2011 Last.fm-2k (the README quotes these).
REAL_REPORT = {
    "unit": "posts", "read": 84_179, "written": 73_981,
    "skipped": {"spammer": 39, "no_tags_left": 10_159},
    "sections": {
        tag_filters.ASSIGNMENTS: {"unit": "assignments", "read": 184_838, "written": 140_880,
                                  "skipped": {"numeric": 1_370, "most_frequent": 41_732,
                                              "spammer": 856}},
        tag_filters.VOCABULARY: {"unit": "hashtags", "read": 9_664, "written": 9_576,
                                 "skipped": {"numeric": 78, "most_frequent": 10}},
        tag_filters.USERS: {"unit": "users", "read": 1_884, "written": 1_859,
                            "skipped": {"spammer": 13, "no_posts_left": 12}}}}


@pytest.mark.skipif(not os.path.isdir(REAL_RAW), reason=f"real HetRec data absent ({REAL_RAW})")
def test_real_hetrec_with_the_papers_options(tmp_path):
  converted, out = str(tmp_path / "hetrec"), str(tmp_path / "veit")
  hetrec_lastfm.convert(REAL_RAW, converted, log=None)
  result = _run([f"--dataset={converted}", f"--out={out}", *PAPER_FLAGS])
  assert result.returncode == 0, result.stderr
  assert "not carried" in result.stdout and "artist_ids.npy" in result.stdout
  meta = fmt.read_metadata(out)
  report = meta["build_report"]
  fmt.BuildReport.from_dict(report).check()  # read = written + sum(skipped), every section
  assert report == REAL_REPORT
  filters = meta["provenance"]["filters"]
  assert filters["most_frequent_dropped"][:3] == ["rock", "pop", "alternative"]
  assert filters["not_carried"] == ["artist_ids.npy"]
  assert meta["provenance"]["source"]["source"] == "HetRec 2011 Last.fm-2k"
  assert PostDataset(out).validate() == report["written"] == sum(meta["counts"].values())
