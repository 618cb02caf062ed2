"""Seed-by-seed comparison of two sweep rows, on hand-made runs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hashjax.tools import paired, sweep
from tests.dataset_fixtures import REPO_ROOT


def _write(root, variant, seed, label, a1, a10):
  directory = sweep.run_dir(str(root), variant, seed)
  os.makedirs(directory)
  with open(os.path.join(directory, "metrics.json"), "w") as f:
    json.dump({"model": label, "test": {"A@1": a1, "A@10": a10}}, f)


def test_differences_are_taken_seed_by_seed_over_the_common_seeds(tmp_path):
  for seed, (a, b) in enumerate([(0.20, 0.25), (0.30, 0.28), (0.10, 0.16)]):
    _write(tmp_path, "model=a", seed, "A", a, 0.5)
    _write(tmp_path, "model=b,x=@y", seed, "B", b, 0.6)
  _write(tmp_path, "model=a", 3, "A", 0.9, 0.9)  # no seed 3 of B: not compared
  r = paired.compare(str(tmp_path), "model=a", "model=b,x=@y")
  assert r["seeds"] == [0, 1, 2] and r["labels"] == ("A", "B")
  np.testing.assert_allclose(r["A@1"]["difference"], [0.05, -0.02, 0.06])
  np.testing.assert_allclose(r["A@1"]["mean"], 0.03)
  np.testing.assert_allclose(r["A@1"]["std"], np.std([0.05, -0.02, 0.06]))
  assert r["A@1"]["wins"] == 2 and r["A@10"]["wins"] == 3
  text = paired.describe(r, ("A@1",))
  assert "B vs A, seeds [0, 1, 2]" in text and "+3.00 ± " in text and "2 of 3 seeds" in text
  with pytest.raises(FileNotFoundError, match="no runs of variant"):
    paired.compare(str(tmp_path), "model=a", "model=c")


def test_the_command_prints_each_pair(tmp_path):
  _write(tmp_path, "model=a", 0, "A", 0.2, 0.5)
  _write(tmp_path, "model=b", 0, "B", 0.3, 0.4)
  out = subprocess.run([sys.executable, "-m", "hashjax.tools.paired", f"--workdir={tmp_path}",
                        "--pair=model=a|model=b"], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "A@1: 20.00 -> 30.00; difference +10.00 ± 0.00, higher on 1 of 1 seeds" in out.stdout
  assert "A@10: 50.00 -> 40.00; difference -10.00" in out.stdout
