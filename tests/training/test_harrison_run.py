"""experiments/harrison.py end to end on a tiny two-view world: the views read, the paper's
metrics, the schedule."""

import json

import numpy as np
import pytest

from experiments import harrison
from hashjax.data.reader import PostDataset
from hashjax.data.synthetic import build
from hashjax.models import make_model
from hashjax.training import trainer
from tests.dataset_fixtures import tiny_train_config


@pytest.fixture(scope="module")
def two_view_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("harrison") / "data")
  build.build_synthetic(directory, preset="tiny", seed=0, split_scheme="user_disjoint",
                        overrides={"second_view_dim": 8}, log=None)
  return directory


def test_the_config_is_the_papers_baseline():
  config = harrison.get_config()
  assert config.model.kwargs.hidden == (4096, 4096) and config.loss.name == "sigmoid"
  assert (config.batch_size, config.learning_rate, config.label) == (100, 0.1, "Object + Scene")
  paper = harrison.get_config("schedule=paper,views=scene")
  assert paper.train_steps == 100_000 and tuple(paper.schedule.boundaries) == (30_000, 60_000,
                                                                               90_000)
  assert paper.model.kwargs.views == ("scene",)
  with pytest.raises(ValueError, match="views=place"):
    harrison.get_config("views=place")
  variants = next(iter(harrison.get_sweep("harrison_table1").values()))
  assert [harrison.get_config(v).label for v in variants] == list(harrison.VIEW_LABELS.values())


def test_a_single_view_run_reads_its_view_and_reports_the_papers_metrics(two_view_dir,
                                                                         tmp_path):
  config = tiny_train_config("harrison", "views=object,hidden=16+16", steps=20)
  config.data.dir = two_view_dir
  config.schedule.boundaries = (10, 15)
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(config, workdir)
  result = json.loads(open(f"{workdir}/metrics.json").read())
  assert result["model"] == "Object (scene zero-padded)"
  assert result["columns"]["views"] == "object"
  for metric in harrison.TABLE_COLUMNS:
    assert 0 <= result["test"][metric] <= 1
  spec = PostDataset(two_view_dir).spec
  model = make_model(config.model, spec)
  assert model.kept_columns == ((0, 32),)
  assert set(harrison.REFERENCE_ROWS.values()) <= set(result["results"])
