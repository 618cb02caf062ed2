"""Training across processes (jax.distributed; gloo collectives on CPU) through the real command.

Two local processes with one CPU device each must end where one process with two devices ends
(the same global batch over the same two devices): the same parameters, training history and
test metrics (metrics.json), also when both processes are killed after a checkpoint and the job
is started again, and when each process has two devices that split the tag tables
(vocab_shards=2). Plus the flag checks of hashjax.training.distributed.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from hashjax.training import distributed
from tests.dataset_fixtures import REPO_ROOT

STEPS = 20
PHASE_TIMEOUT = 240  # seconds per launch: generous for a shared 2-core machine
TIMING_KEYS = ("steps_per_s", "examples_per_s", "eta_s")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class _Launcher:
  """Starts `python -m hashjax.main` processes in their own process groups; kills what is left."""

  def __init__(self, tmp_path, data_dir):
    self.tmp_path, self.data_dir, self.procs = tmp_path, data_dir, []

  def start(self, workdir, *, processes: int, devices: int, tag: str, vocab_shards: int = 1):
    """One job: `processes` processes with `devices` CPU devices each; returns their Popens."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", HASHJAX_DATA_DIR=str(self.tmp_path / "data"),
               # One persistent compilation cache for every launch: the later ones start fast.
               JAX_COMPILATION_CACHE_DIR=str(self.tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
                         "--xla_cpu_collective_call_terminate_timeout_seconds=10")
    command = [sys.executable, "-m", "hashjax.main",
               "--config=experiments/denton.py:preset=tiny,split=user_disjoint",
               f"--config.data.dir={self.data_dir}", f"--config.train_steps={STEPS}",
               "--config.batch_size=32", "--config.log_every=5", "--config.eval_every=10",
               "--config.checkpoint_every=5", "--config.loss.max_trials=50",
               f"--config.vocab_shards={vocab_shards}", f"--workdir={workdir}"]
    if processes > 1:
      port = _free_port()
      command.append(f"--coordinator_address=127.0.0.1:{port}")
      command.append(f"--num_processes={processes}")
    job = []
    for i in range(processes):
      log = open(self.tmp_path / f"{tag}.{i}.log", "w")
      extra = [f"--process_id={i}"] if processes > 1 else []
      job.append(subprocess.Popen(command + extra, cwd=REPO_ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True))
      job[-1].log_path = log.name
      log.close()
    self.procs += job
    return job

  def wait(self, job, timeout=PHASE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for p in job:
      try:
        p.wait(timeout=max(deadline - time.monotonic(), 0.1))
      except subprocess.TimeoutExpired:
        self.kill(job)
        pytest.fail(f"timed out after {timeout}s:\n{_tails(job)}")
    if any(p.returncode for p in job):
      pytest.fail(f"a process failed:\n{_tails(job)}")

  def kill(self, job) -> None:
    for p in job:
      if p.poll() is None:
        try:
          os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
          pass
      p.wait(timeout=30)

  def close(self) -> None:
    self.kill(self.procs)


def _tails(job) -> str:
  return "\n".join(f"--- {p.log_path} (rc {p.returncode}) ---\n" + open(p.log_path).read()[-3000:]
                   for p in job)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_dataset):
  """Launches the reference job (one process, two devices) and a two-process job together."""
  tmp_path = tmp_path_factory.mktemp("multiprocess")
  launcher = _Launcher(tmp_path, tiny_dataset.directory)
  try:
    one = launcher.start(tmp_path / "one", processes=1, devices=2, tag="one")
    two = launcher.start(tmp_path / "two", processes=2, devices=1, tag="two")
    # The same two data rows, each a "model" pair of devices holding half of every tag table.
    sharded = launcher.start(tmp_path / "sharded", processes=2, devices=2, tag="sharded",
                             vocab_shards=2)
    for job in (one, two, sharded):
      launcher.wait(job)
    yield launcher, tmp_path
  finally:
    launcher.close()


def _restore(workdir, item: str, step: int = STEPS):
  """A checkpointed pytree as numpy arrays, whatever devices wrote it."""
  path = os.path.join(workdir, "checkpoints", str(step), item)
  checkpointer = ocp.StandardCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  return checkpointer.restore(path, jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree))


def _history(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in f]


def _assert_same_run(workdir, reference, **config_changes):
  for item in ("state", "selected"):
    a, b = _restore(reference, item), _restore(workdir, item)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree.leaves_with_path(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-7,
                                 err_msg=f"{item}{jax.tree_util.keystr(path)}")
  assert _history(workdir) == _history(reference)  # loss, gradient norm, validation: every step
  with open(os.path.join(reference, "metrics.json")) as f, \
       open(os.path.join(workdir, "metrics.json")) as g:
    expected = json.load(f)
    expected["config"].update(config_changes)
    assert json.load(g) == expected  # test metrics, reference rows, selected step, config


def test_two_processes_train_like_one_process_with_two_devices(runs):
  _, tmp_path = runs
  _assert_same_run(tmp_path / "two", tmp_path / "one")
  log = open(tmp_path / "two.1.log").read()
  assert "process 1/2, 1 local of 2 devices" in log
  # Only process 0 prints the report and writes files (metrics.json compared above).
  assert "| Method |" in open(tmp_path / "two.0.log").read() and "| Method |" not in log


def test_two_processes_with_sharded_tag_tables_train_like_one_process(runs):
  _, tmp_path = runs
  _assert_same_run(tmp_path / "sharded", tmp_path / "one", vocab_shards=2)
  for i in range(2):  # the tag tables really were split (not silently replicated)
    log = open(tmp_path / f"sharded.{i}.log").read()
    assert f"process {i}/2, 2 local of 4 devices" in log
    assert re.search(r"vocab_shards 2: [1-9]\d* train-state arrays split over 'model'", log)


def test_two_processes_killed_after_a_checkpoint_resume_like_one_process(runs):
  launcher, tmp_path = runs
  workdir = tmp_path / "killed"
  job = launcher.start(workdir, processes=2, devices=1, tag="killed")
  first = workdir / "checkpoints" / "5"
  deadline = time.monotonic() + PHASE_TIMEOUT
  while not first.is_dir() and time.monotonic() < deadline and all(p.poll() is None for p in job):
    time.sleep(0.02)
  launcher.kill(job)  # SIGKILL both, as a preempted job would be
  assert first.is_dir(), f"no checkpoint before the kill:\n{_tails(job)}"
  assert [p.returncode for p in job] == [-signal.SIGKILL] * 2, (
      f"the job ended before it could be killed:\n{_tails(job)}")
  assert not (workdir / "metrics.json").exists()

  resumed = launcher.start(workdir, processes=2, devices=1, tag="resumed")
  launcher.wait(resumed)
  logs = [open(p.log_path).read() for p in resumed]
  assert all("resumed from step" in log for log in logs)
  _assert_same_run(workdir, tmp_path / "one")


# -- flags (no processes launched) -----------------------------------------------------------


@pytest.mark.parametrize("request_, message", [
    (distributed.Request(num_processes=0), "--num_processes must be >= 1, got 0"),
    (distributed.Request(process_id=-1), "--process_id must be >= 0"),
    (distributed.Request(num_processes=2, process_id=2), "--process_id must be < --num_processes"),
    (distributed.Request(coordinator_address="localhost"), "--coordinator_address must be HOST"),
    (distributed.Request(coordinator_address="h:0"), "port '0' is not a number in 1..65535"),
    (distributed.Request(coordinator_address="h:http"), "--coordinator_address"),
    (distributed.Request(coordinator_address="::1:80"), "IPv6 host goes in brackets"),
    (distributed.Request(mode="off", num_processes=2), "--distributed=off contradicts"),
    (distributed.Request(mode="maybe"), "--distributed must be one of auto, on, off"),
])
def test_bad_flags_are_refused_naming_the_flag(request_, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    distributed.plan(request_, environ={})


SLURM = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2",
         "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}


def test_initialize_arguments_explicit_detected_or_none():
  explicit = distributed.Request(coordinator_address="[::1]:1234", num_processes=2, process_id=1)
  assert distributed.plan(explicit, environ={})[0] == {
      "coordinator_address": "[::1]:1234", "num_processes": 2, "process_id": 1}
  assert distributed.plan(distributed.Request(), environ={})[0] is None  # one process
  # Inside an srun step (all five variables JAX reads) initialize() detects the rest itself.
  assert distributed.detect_cluster(SLURM) == "slurm"
  assert distributed.plan(distributed.Request(), environ=SLURM)[0] == {}
  # An sbatch script outside srun has SLURM_JOB_ID only: one process, as JAX would not detect.
  assert distributed.plan(distributed.Request(), environ={"SLURM_JOB_ID": "7"})[0] is None
  assert distributed.detect_cluster({distributed.OMPI_VAR: "1.0;tcp://10.0.0.1:1"}) == "ompi"
  assert distributed.plan(distributed.Request(mode="off"), environ=SLURM)[0] is None
  assert distributed.plan(distributed.Request(mode="on"), environ={})[0] == {}
  # Part of the values: the cluster fills in the rest, and without one it is an error.
  partial = distributed.Request(coordinator_address="n1:1234")
  assert distributed.plan(partial, environ=SLURM)[0] == {"coordinator_address": "n1:1234"}
  with pytest.raises(ValueError, match="without --num_processes, --process_id"):
    distributed.plan(partial, environ={})
