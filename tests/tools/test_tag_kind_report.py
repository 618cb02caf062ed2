"""Top-1 by tag kind: a hand-computed case, and an exact split of a real run's test P@1."""

import numpy as np
import pytest

from hashjax.data.synthetic import vocab
from hashjax.tools import tag_kind_report
from hashjax.training import trainer
from tests.dataset_fixtures import tiny_train_config


def test_top1_by_kind_hand_computed():
  kinds = np.array([0, 0, 4, 5])  # tags 0, 1: concept; 2: social; 3: generic
  pred = np.array([[0, 2], [2, 0], [3, 1], [1, 0]])
  true = np.array([[0, 1], [1, 0], [3, 0], [2, 0]])
  mask = np.array([[True, True], [True, False], [True, False], [True, False]])
  # Post 0: top-1 concept tag 0, a hit. Post 1: social 2, a miss. Post 2: generic 3, a hit.
  # Post 3: concept 1, a miss (tag 0 in its padded row is masked out).
  rows = tag_kind_report.top1_by_kind(pred, true, mask, kinds)
  assert rows["concept"] == {"share": 0.5, "P@1": 0.25}
  assert rows["social"] == {"share": 0.25, "P@1": 0.0}
  assert rows["generic"] == {"share": 0.25, "P@1": 0.25}
  assert set(rows) == set(vocab.KIND_NAMES)
  assert all(rows[k] == {"share": 0.0, "P@1": 0.0} for k in ("polysemous", "city", "tail"))


@pytest.mark.parametrize("dist", ["natural", "balanced"])
def test_kinds_split_the_tested_p_at_1_of_a_run(tmp_path, tiny_dataset, dist):
  config = tiny_train_config("denton", f"dist={dist}", steps=40)
  workdir = str(tmp_path / "run")
  out = trainer.train_and_evaluate(config, workdir, tiny_dataset)
  rows = tag_kind_report.report_run(workdir)
  assert sum(v["share"] for v in rows.values()) == pytest.approx(1.0)
  # Same parameters (the selected step, restored from the checkpoint), same posts: exact split.
  assert sum(v["P@1"] for v in rows.values()) == pytest.approx(out["test"]["P@1"], abs=1e-9)
  assert "| all | 100.0 |" in tag_kind_report.format_kind_table(rows)


def test_a_workdir_without_a_finished_run_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a finished run"):
    tag_kind_report.report_run(str(tmp_path))
