"""`python -m data_prep.synthetic` refuses bad flags up front: a one-line message naming the flag,
a non-zero exit, no traceback, and nothing written (posts_per_shard=0 used to fill the disk)."""

import os
import subprocess
import sys

from tests.dataset_fixtures import REPO_ROOT

# (flags, what the message must say): each must fail at flag parsing, before any generation.
BAD_FLAGS = [
    (["--posts_per_shard=0"], ["--posts_per_shard=0"]),
    (["--posts_per_shard=-5"], ["--posts_per_shard=-5"]),
    (["--seed=-1"], ["--seed=-1"]),
    (["--set=num_users=abc"], ["--set", "'num_users=abc'", "num_users must be an integer"]),
    (["--set=feature_dim=0"], ["--set", "WorldConfig.feature_dim must be >= 1, got 0"]),
    (["--set=num_users=-3"], ["--set", "WorldConfig.num_users must be >= 1, got -3"]),
    (["--set=num_user=10"], ["--set", "no field 'num_user'", "num_users, feature_dim"]),
]


def _run(out, args):
  return subprocess.run([sys.executable, "-m", "data_prep.synthetic", f"--out={out}",
                         "--preset=tiny", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=60)


def test_bad_flags_exit_nonzero_naming_the_flag_and_write_nothing(tmp_path):
  out = tmp_path / "ds"
  for args, messages in BAD_FLAGS:
    result = _run(out, args)
    assert result.returncode != 0, args
    for message in messages:
      assert message in result.stderr, (args, message, result.stderr)
    assert "Traceback" not in result.stderr, (args, result.stderr)
    assert os.listdir(tmp_path) == [], args  # neither DIR nor DIR.partial


def test_an_existing_directory_is_a_one_line_error_not_a_traceback(tmp_path):
  out = tmp_path / "ds"
  out.mkdir()
  (out / "keep.txt").write_text("someone else's data")
  result = _run(out, [])
  assert result.returncode != 0
  assert "--out" in result.stderr and "--overwrite" in result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  assert sorted(os.listdir(tmp_path)) == ["ds"] and os.listdir(out) == ["keep.txt"]
