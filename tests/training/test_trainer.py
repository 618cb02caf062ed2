"""The training loop: end to end, 1 vs 8 devices, kill-and-resume, and the balanced distribution."""

import json
import os

import jax
import numpy as np
import pytest

from experiments import denton as denton_config
from hashjax.data import tag_distribution
from hashjax.data.reader import PostDataset
from hashjax.data.synthetic import build
from hashjax.training import trainer


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("train") / "tiny")
  build.build_synthetic(directory, preset="tiny", seed=0, split_scheme="user_disjoint",
                                  log=None)
  return PostDataset(directory)


def _config(steps=30, **overrides):
  config = denton_config.get_config("preset=tiny")
  config.batch_size = 32
  config.train_steps = steps
  config.log_every = 5
  config.eval_every = 10
  config.checkpoint_every = 10
  config.loss.max_trials = 50
  for key, value in overrides.items():
    config[key] = value
  return config


def _params_close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def test_end_to_end_learns_and_writes_the_report(tmp_path, dataset):
  workdir = str(tmp_path / "run")
  # Patience 5: the tiny world's validation split is a handful of users, too noisy for patience 1.
  out = trainer.train_and_evaluate(_config(steps=200, batch_size=64, learning_rate=0.05,
                                         plateau_patience=5), workdir, dataset)
  with open(os.path.join(workdir, "metrics.json")) as f:
    results = json.load(f)["results"]
  assert out["test"]["P@1"] > results["Global frequency"]["P@1"]  # it learned something
  assert results["Oracle (true distribution)"]["P@1"] > out["test"]["P@1"]
  report = open(os.path.join(workdir, "report.md")).read()
  assert "| Method | d | K | P@1 | R@10 | A@10 |" in report and "| 3-way mult. | 64 | 100 |" in report
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert {"loss", "examples_per_s", "eta_s", "learning_rate"} <= set(lines[0])
  # The test split is scored with the parameters of the first best validation P@1.
  val = [(l["val/P@1"], -l["step"]) for l in lines if "val/P@1" in l]
  assert len(val) == 20 and out["selected_step"] == -max(val)[1]
  assert f"Parameters of step {out['selected_step']} of 200" in report


@pytest.mark.parametrize("model", ["bilinear", "multiplicative"])
def test_one_device_and_eight_devices_give_the_same_parameters(tmp_path, dataset, model):
  assert jax.device_count() == 8
  runs = []
  for devices in (1, 8):
    config = _config(steps=12, num_devices=devices)
    config.model.name = model
    if model == "bilinear":
      config.model.kwargs = {"d": 16, "init_std": 0.001}
    runs.append(trainer.train_and_evaluate(config, str(tmp_path / f"{model}{devices}"),
                                         dataset)["variables"])
  _params_close(runs[0], runs[1], rtol=2e-4, atol=1e-6)


def test_killed_and_resumed_run_ends_with_the_same_parameters(tmp_path, dataset):
  full = trainer.train_and_evaluate(_config(steps=30), str(tmp_path / "full"), dataset)
  workdir = str(tmp_path / "resumed")
  trainer.train_and_evaluate(_config(steps=20), workdir, dataset)  # "killed" after step 20
  resumed = trainer.train_and_evaluate(_config(steps=30), workdir, dataset)
  _params_close(full["variables"], resumed["variables"], rtol=1e-6, atol=1e-7)
  # The validation-selected parameters survive the restart too.
  assert resumed["selected_step"] == full["selected_step"]
  _params_close(full["selected_variables"], resumed["selected_variables"], rtol=1e-6, atol=1e-7)
  # One history, as if never interrupted: the same logged steps and keys as the full run.
  history = lambda d: [(l["step"], sorted(l)) for l in
                       map(json.loads, open(os.path.join(d, "metrics.jsonl")))]
  assert history(workdir) == history(str(tmp_path / "full"))


def test_learning_rate_drops_on_a_validation_plateau(tmp_path, dataset):
  config = _config(steps=40, plateau_patience=1, plateau_min_delta=10.0,  # never "improves"
                   plateau_start_step=20)
  workdir = str(tmp_path / "plateau")
  trainer.train_and_evaluate(config, workdir, dataset)
  lrs = [l["learning_rate"] for l in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))
         if "learning_rate" in l]
  lr = config.learning_rate
  # Step 10 is before plateau_start_step; the evaluations at 20 and 30 each lower the rate; the
  # one at 40 comes after the last log line.
  assert lrs[0] == pytest.approx(lr) and lrs[-1] == pytest.approx(lr * 0.1 ** 2)


def test_nan_fails_fast(tmp_path, dataset):
  config = _config(steps=10, learning_rate=float("nan"))
  with pytest.raises(FloatingPointError, match="step 5: non-finite"):
    trainer.train_and_evaluate(config, str(tmp_path / "nan"), dataset)


def test_balanced_distribution_downsamples_the_head(dataset):
  keep = tag_distribution.keep_probabilities(dataset.tag_counts, "balanced")
  c = tag_distribution.num_downsampled(dataset.num_tags)
  np.testing.assert_allclose(keep[:c] * dataset.tag_counts[:c], dataset.tag_counts[c])
  assert (keep[c:] == 1).all()
  batch = dataset.read(dataset.split_rows("train"), fields=("post_id", "tag_ids", "tag_mask"))
  balanced = tag_distribution.apply(batch, keep)
  kept = np.bincount(batch["tag_ids"][balanced["tag_mask"]], minlength=dataset.num_tags)
  # Expected counts after downsampling: every head tag near count[c] (binomial noise).
  expected = dataset.tag_counts[c]
  assert np.all(np.abs(kept[:c] - expected) < 5 * np.sqrt(expected) + 2)
  np.testing.assert_array_equal(kept[c:], dataset.tag_counts[c:])
  again = tag_distribution.apply(batch, keep)  # deterministic: one fixed balanced dataset
  np.testing.assert_array_equal(again["tag_mask"], balanced["tag_mask"])
  assert tag_distribution.keep_probabilities(dataset.tag_counts, "natural") is None
