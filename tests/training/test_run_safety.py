"""What a run promises under faults: config checks, refused resumes, no non-finite checkpoints,
fallback from damaged checkpoints, one job per workdir, a history that survives a kill."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax.training import checkpoints as checkpoints_lib
from hashjax.training import run_config, trainer
from hashjax.training.workdir_lock import WorkdirBusyError, WorkdirLock
from tests.dataset_fixtures import REPO_ROOT, tiny_train_config


@pytest.fixture
def dataset(tiny_dataset):
  return tiny_dataset


def _config(steps=20, **overrides):
  return tiny_train_config("denton", steps=steps, **overrides)


def _same_params(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_dataset):
  """An uninterrupted 30-step run, checkpointed every 10 steps."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  return trainer.train_and_evaluate(_config(steps=30), workdir, tiny_dataset)


# -- config checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("train_steps", 0), ("train_steps", -5), ("log_every", 0), ("eval_every", 0),
    ("checkpoint_every", 0), ("batch_size", 0), ("max_tags", 0), ("learning_rate", 0.0),
    ("learning_rate", float("nan")), ("plateau_metric", "P@3"), ("plateau_factor", 0.0),
    ("plateau_patience", -1), ("num_devices", -1)])
def test_a_config_that_cannot_run_is_refused_naming_the_field(field, value):
  config = _config()
  config[field] = value
  with pytest.raises(run_config.ConfigError, match=f"config.{field}"):
    run_config.validate(config)


def test_evaluation_vocabularies_are_checked_and_name_the_plateau_metrics():
  config = _config()
  config.eval.vocabularies = ("seen", "new")
  with pytest.raises(run_config.ConfigError, match="config.eval.vocabularies"):
    run_config.validate(config)
  config.eval.vocabularies = ("all", "unseen")
  config.plateau_metric = "seen/R@10"
  with pytest.raises(run_config.ConfigError, match="'seen/R@10' is not one of"):
    run_config.validate(config)
  config.plateau_metric = "unseen/R@10"
  run_config.validate(config)


def test_a_sweep_stage_reference_outside_the_sweep_is_refused():
  config = _config()
  config.init_from.workdir = "@model=mcll"
  with pytest.raises(run_config.ConfigError, match="init_from.workdir '@model=mcll' names a sweep"):
    run_config.validate(config)


def test_an_unknown_plateau_metric_fails_before_training(tmp_path, dataset):
  with pytest.raises(run_config.ConfigError, match="plateau_metric 'MAP'"):
    trainer.train_and_evaluate(_config(plateau_metric="MAP"), str(tmp_path), dataset)
  assert not os.path.exists(tmp_path / "checkpoints")


# -- resume -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, tiny_dataset):
  """The reference's config stopped after step 20 (checkpoints at 10 and 20), trained once."""
  workdir = str(tmp_path_factory.mktemp("interrupted") / "run")
  trainer.train_and_evaluate(_config(steps=20), workdir, tiny_dataset)
  return workdir


def _interrupted(tmp_path, interrupted_run) -> str:
  """A private copy of the interrupted run's workdir."""
  workdir = str(tmp_path / "run")
  shutil.copytree(interrupted_run, workdir)
  return workdir


@pytest.mark.parametrize("change,listed", [
    (dict(seed=1), "seed: 0 -> 1"), (dict(learning_rate=0.5), "learning_rate: 0.02 -> 0.5"),
    (dict(eval_every=5), "eval_every: 10 -> 5")])
def test_resuming_with_a_changed_config_is_refused_listing_the_fields(
    tmp_path, dataset, interrupted_run, change, listed):
  workdir = _interrupted(tmp_path, interrupted_run)
  before = open(os.path.join(workdir, "config.json")).read()
  with pytest.raises(run_config.ConfigError, match=listed):
    trainer.train_and_evaluate(_config(steps=30, **change), workdir, dataset)
  assert open(os.path.join(workdir, "config.json")).read() == before  # left as it was


def test_resuming_on_another_dataset_or_distribution_is_refused(tmp_path, dataset,
                                                                interrupted_run):
  workdir = _interrupted(tmp_path, interrupted_run)
  config = _config(steps=30)
  config.data.dist = "balanced"
  with pytest.raises(run_config.ConfigError, match="data.dist: 'natural' -> 'balanced'"):
    trainer.train_and_evaluate(config, workdir, dataset)
  metadata = dict(dataset.metadata, num_posts=dataset.metadata["num_posts"] + 1)
  record = run_config.run_record(_config(steps=20), dataset.metadata)
  with pytest.raises(run_config.ConfigError, match="another dataset"):
    run_config.check_resume(record, _config(steps=30), metadata, 20, workdir)


def test_a_field_added_after_a_run_was_saved_is_no_change_at_its_default():
  config = _config()
  saved = json.loads(config.to_json())
  del saved["eval"]["vocabularies"]  # a run saved before the field existed
  assert run_config.config_changes(saved, config) == {}
  config.eval.vocabularies = ("seen", "unseen", "all")  # not how the old code behaved
  assert run_config.config_changes(saved, config) == {
      "eval.vocabularies": ("<absent>", ["seen", "unseen", "all"])}
  config = _config()
  config.model.kwargs.brand_new = 1  # a field hashjax.config has no default for
  assert list(run_config.config_changes(json.loads(_config().to_json()), config)) == [
      "model.kwargs.brand_new"]


def test_train_steps_may_grow_but_not_shrink_below_the_checkpoint(tmp_path, dataset,
                                                                  interrupted_run, reference):
  workdir = _interrupted(tmp_path, interrupted_run)
  with pytest.raises(run_config.ConfigError, match="checkpoint is at step 20, beyond"):
    trainer.train_and_evaluate(_config(steps=15), workdir, dataset)
  # Longer, with other logging and checkpoint periods: allowed, and the same run.
  resumed = trainer.train_and_evaluate(_config(steps=30, log_every=3, checkpoint_every=7),
                                       workdir, dataset)
  _same_params(resumed["variables"], reference["variables"])


def test_train_steps_may_not_change_when_the_schedule_depends_on_it(tmp_path, dataset):
  config = _config(steps=20)
  config.schedule = {"name": "cosine"}
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(config, workdir, dataset)
  config = _config(steps=30)
  config.schedule = {"name": "cosine"}
  with pytest.raises(run_config.ConfigError, match="train_steps: 20 -> 30"):
    trainer.train_and_evaluate(config, workdir, dataset)


# -- non-finite states are never saved ----------------------------------------------------------

def test_a_non_finite_state_is_not_checkpointed_and_the_good_ones_stay(tmp_path, dataset,
                                                                       monkeypatch):
  """log_every > checkpoint_every: the metrics check never runs, the check before saving does."""
  original = trainer.make_train_step

  def poisoned(*args):
    step_fn = original(*args)

    def step(state, batch):
      new, metrics = step_fn(state, batch)
      nan = jnp.where(new.step > 12, jnp.nan, 0.0)  # the loss of the step itself stays finite
      return dataclasses.replace(new, params=jax.tree.map(lambda p: p + nan, new.params)), metrics
    return step

  monkeypatch.setattr(trainer, "make_train_step", poisoned)
  workdir = str(tmp_path / "run")
  config = _config(steps=40, log_every=100, eval_every=100, checkpoint_every=5)
  with pytest.raises(FloatingPointError, match="step 15: the train state holds NaN.*step 10"):
    trainer.train_and_evaluate(config, workdir, dataset)
  saved = checkpoints_lib.Checkpoints(workdir)
  try:
    assert saved.manager.all_steps() == [5, 10]
    selected = saved.restore_selected(10)
  finally:
    saved.close()
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(selected))


# -- damaged checkpoints ------------------------------------------------------------------------

def _damage(workdir: str, step: int, how: str) -> None:
  step_dir = os.path.join(workdir, "checkpoints", str(step))
  files = sorted(os.path.join(root, n) for root, _, names in os.walk(step_dir) for n in names
                 if "state" in root and n != checkpoints_lib.MANIFEST)
  target = max(files, key=os.path.getsize)  # the parameter data
  if how == "flip":
    with open(target, "r+b") as f:
      f.seek(os.path.getsize(target) // 2)
      byte = f.read(1)
      f.seek(-1, os.SEEK_CUR)
      f.write(bytes([byte[0] ^ 0xFF]))
  elif how == "truncate":
    with open(target, "r+b") as f:
      f.truncate(os.path.getsize(target) // 2)
  else:
    os.remove(target)


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(
    tmp_path, dataset, interrupted_run, reference, how, caplog):
  workdir = _interrupted(tmp_path, interrupted_run)  # checkpoints at 10 and 20
  _damage(workdir, 20, how)
  resumed = trainer.train_and_evaluate(_config(steps=30), workdir, dataset)
  assert "checkpoint 20 is damaged" in caplog.text
  assert os.path.isdir(os.path.join(workdir, checkpoints_lib.DAMAGED_DIR, "20"))
  _same_params(resumed["variables"], reference["variables"])  # replayed 11-30 exactly
  assert resumed["test"] == reference["test"]


def test_no_intact_checkpoint_is_a_clear_error_naming_the_directory(tmp_path, dataset,
                                                                    interrupted_run):
  workdir = _interrupted(tmp_path, interrupted_run)
  _damage(workdir, 10, "flip")
  _damage(workdir, 20, "truncate")
  with pytest.raises(checkpoints_lib.CheckpointError,
                     match=f"{workdir}/checkpoints: no intact checkpoint.*10:.*checksum"):
    trainer.train_and_evaluate(_config(steps=30), workdir, dataset)


# -- another process count ---------------------------------------------------------------------

def _as_if_written_by_two_processes(workdir: str, step: int, second_state=None) -> None:
  """Rewrites the checkpoint's grain state as two processes save it, and its manifest."""
  step_dir = os.path.join(workdir, "checkpoints", str(step))
  data = os.path.join(step_dir, "data")
  with open(os.path.join(data, "process_0-of-1.json")) as f:
    state = json.load(f)
  os.remove(os.path.join(data, "process_0-of-1.json"))
  for i, s in enumerate([state, second_state or state]):
    with open(os.path.join(data, f"process_{i}-of-2.json"), "w") as f:
      json.dump(s, f)
  checkpoints_lib._write_manifest(step_dir)


def test_a_run_written_by_two_processes_resumes_in_one(tmp_path, dataset, interrupted_run,
                                                      reference):
  workdir = _interrupted(tmp_path, interrupted_run)
  _as_if_written_by_two_processes(workdir, 20)
  resumed = trainer.train_and_evaluate(_config(steps=30), workdir, dataset)
  _same_params(resumed["variables"], reference["variables"])  # the data went on from batch 20
  assert resumed["test"] == reference["test"]


def test_iterator_states_that_differ_between_processes_are_refused(tmp_path, dataset,
                                                                   interrupted_run):
  workdir = _interrupted(tmp_path, interrupted_run)
  _as_if_written_by_two_processes(workdir, 20, second_state={"next_index": 3})
  with pytest.raises(checkpoints_lib.CheckpointError,
                     match="written by 2 processes whose data positions differ"):
    trainer.train_and_evaluate(_config(steps=30), workdir, dataset)


# -- one job per workdir ------------------------------------------------------------------------

def test_a_second_job_on_a_workdir_is_refused_naming_the_holder(tmp_path, dataset):
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with WorkdirLock(workdir):
    with pytest.raises(WorkdirBusyError, match=f"pid {os.getpid()}"):
      trainer.train_and_evaluate(_config(steps=5), workdir, dataset)
  trainer.train_and_evaluate(_config(steps=5), workdir, dataset)  # released: runs


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, caplog):
  workdir = str(tmp_path)
  script = ("import sys, time; from hashjax.training.workdir_lock import WorkdirLock; "
            f"WorkdirLock({workdir!r}).acquire(); print('locked', flush=True); time.sleep(60)")
  holder = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(WorkdirBusyError, match=f"pid {holder.pid}"):
      WorkdirLock(workdir).acquire()
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with WorkdirLock(workdir):
    assert f"stale lock of pid {holder.pid}" in caplog.text


# -- history ------------------------------------------------------------------------------------

def test_a_half_written_last_history_line_does_not_block_the_resume(tmp_path, dataset,
                                                                    interrupted_run, reference):
  workdir = _interrupted(tmp_path, interrupted_run)
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write('{"step": 21, "loss": 0.')  # killed mid-write
  resumed = trainer.train_and_evaluate(_config(steps=30), workdir, dataset)
  _same_params(resumed["variables"], reference["variables"])
  steps = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert steps == sorted(steps) and steps[-1] == 30
