"""The training loop: end to end, 1 vs 8 devices, kill-and-resume, and the balanced distribution."""

import json
import os

import jax
import numpy as np
import pytest

from hashjax.data import tag_distribution
from hashjax.training import trainer
from tests.dataset_fixtures import tiny_train_config


@pytest.fixture
def dataset(tiny_dataset):
  return tiny_dataset


def _config(steps=30, **overrides):
  return tiny_train_config("denton", steps=steps, **overrides)


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
  config = _config(steps=10, learning_rate=1e30)  # a NaN rate is refused by run_config
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


def _read_tensorboard_scalars(directory):
  """{tag: [(step, value)]} from tensorboardX event files (TFRecord framing of Event protos)."""
  import struct  # pylint: disable=g-import-not-at-top
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  scalars = {}
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), "rb") as f:
      data = f.read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars


def test_flax_model_with_softmax_trains_checkpoints_resumes_and_evaluates(tmp_path, dataset):
  """An MLP classifier (batch norm + dropout: state and randomness) through the same trainer."""
  def config(steps):
    return tiny_train_config("classifier", "loss=softmax,hidden=32", steps=steps,
                             learning_rate=0.05)
  full = trainer.train_and_evaluate(config(30), str(tmp_path / "full"), dataset)
  assert set(full["variables"]) == {"params", "batch_stats"}
  assert set(full["variables"]["params"]) == {"image", "tags"}  # parts
  workdir = str(tmp_path / "resumed")
  trainer.train_and_evaluate(config(20), workdir, dataset)
  resumed = trainer.train_and_evaluate(config(30), workdir, dataset)
  _params_close(full["variables"], resumed["variables"], rtol=1e-6, atol=1e-7)
  with open(os.path.join(workdir, "metrics.json")) as f:
    results = json.load(f)
  assert results["columns"] == {"hidden": "32"} and results["model"] == "MLP classifier"
  assert results["test"]["P@1"] > results["results"]["Global frequency"]["P@1"]
  assert "| MLP classifier | 32 |" in open(os.path.join(workdir, "report.md")).read()
  # TensorBoard scalars beside metrics.jsonl, one history after the resume.
  scalars = _read_tensorboard_scalars(os.path.join(workdir, "tensorboard"))
  logged = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [s for s, _ in scalars["loss"]][-1] == 30
  assert "val/P_1" in scalars  # TensorBoard's tag charset: tensorboardX writes val/P@1 so
  assert scalars["loss"][-1][1] == pytest.approx([l["loss"] for l in logged if "loss" in l][-1])


@pytest.mark.parametrize("name", ["user_embedding", "history_mean"])
def test_a_model_reads_the_inputs_it_declares_in_training_and_evaluation(tmp_path, dataset,
                                                                         monkeypatch, name):
  """A learned user embedding (user_index) and a sequence model (user histories)."""
  from hashjax import models  # pylint: disable=g-import-not-at-top
  from tests import toy_models  # pylint: disable=g-import-not-at-top
  cls = {"user_embedding": toy_models.UserEmbedding, "history_mean": toy_models.HistoryMean}[name]
  monkeypatch.setitem(models.MODELS, name, cls)
  config = _config(steps=20)
  config.model = {"name": name, "kwargs": {"d": 8}}
  if name == "history_mean":
    config.data.seq_len, config.data.context_len, config.batch_size = 4, 2, 8
  out = trainer.train_and_evaluate(config, str(tmp_path / name), dataset)
  assert np.isfinite(out["test"]["P@1"]) and out["test"]["P@1"] > 0
  # The evaluation saw every test post once (sequence models: as targets of user sequences).
  scorer = out["model"], out["selected_variables"]
  from hashjax.eval import evaluate  # pylint: disable=g-import-not-at-top
  top = evaluate.predict_top_k(evaluate.TwoTowerScorer("m", *scorer, seq_len=4, context_len=2),
                               dataset, "test", k=1)
  assert sorted(top["rows"].tolist()) == dataset.split_rows("test").tolist()


def test_init_from_and_frozen_parts_keep_the_loaded_part(tmp_path, dataset):
  first = trainer.train_and_evaluate(_config(steps=20), str(tmp_path / "stage1"), dataset)
  config = _config(steps=20, frozen=("image",))
  config.init_from = {"workdir": str(tmp_path / "stage1"), "parts": ("image", "user")}
  second = trainer.train_and_evaluate(config, str(tmp_path / "stage2"), dataset)
  loaded = first["selected_variables"]["params"]
  trained = second["variables"]["params"]
  _params_close(trained["image"], loaded["image"], rtol=0, atol=0)  # loaded, then frozen
  assert not np.allclose(trained["user"]["alpha"], loaded["user"]["alpha"])  # loaded, trained
  assert not np.allclose(trained["tags"]["V"], loaded["tags"]["V"])  # fresh, trained


def test_plateau_lowers_the_rate_of_adam_with_a_schedule_and_frozen_parts(tmp_path, dataset):
  config = _config(steps=40, plateau_patience=1, plateau_min_delta=10.0, plateau_start_step=20,
                   frozen=("tags",), learning_rate=0.01)
  config.optimizer = {"name": "adam"}
  config.schedule = {"name": "cosine", "alpha": 0.5}
  workdir = str(tmp_path / "adam")
  out = trainer.train_and_evaluate(config, workdir, dataset)
  lrs = {l["step"]: l["learning_rate"] for l in
         map(json.loads, open(os.path.join(workdir, "metrics.jsonl"))) if "learning_rate" in l}
  cosine = lambda t: 0.5 + 0.5 * 0.5 * (1 + np.cos(np.pi * t / 40))
  assert lrs[15] == pytest.approx(0.01 * cosine(15), rel=1e-5)
  assert lrs[25] == pytest.approx(0.01 * 0.1 * cosine(25), rel=1e-5)  # lowered at step 20
  assert lrs[35] == pytest.approx(0.01 * 0.01 * cosine(35), rel=1e-5)  # and at step 30
  initial = trainer.models.make_model(config.model, dataset.spec).init(
      trainer.jax.random.split(trainer.jax.random.PRNGKey(config.seed))[0], dataset.spec)
  _params_close(out["variables"]["params"]["tags"], initial["params"]["tags"], rtol=0, atol=0)
