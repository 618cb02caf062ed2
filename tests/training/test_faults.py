"""Fault test of the training command: SIGKILLed at random moments, restarted, bit-identical.

The real command (`python -m hashjax.main ...`) runs in subprocesses on 2 simulated CPU devices.
An uninterrupted reference run, then a second workdir whose run is killed with SIGKILL (the
whole process group) several times and restarted on the same workdir each time, then left to
finish. The resumed run must end exactly where the reference did: the final checkpoint's train
state, selected variables, schedule and data-iterator state; metrics.json and report.md; and
metrics.jsonl, line for line (timing fields aside).

When to kill: a point drawn uniformly (seeded) on the run's expected timeline, startup (imports,
data, init, compile, restore) + the remaining steps + the final test evaluation, measured on the
reference run. A point in startup is a wall-clock delay from the process start; a point in
training is anchored to the run's own progress (its log line of the step before it, then
the rest of the way at the reference's pace), so it lands mid-training however slow or
fast this machine is at the moment. checkpoint_every is small, so many kills land while a
checkpoint is being written. Each kill's phase is read from what the run left behind.

A persistent XLA compilation cache in the test's tmp dir keeps each restart at a few seconds;
the reference run fills it. A kill while a cache entry is written leaves a truncated file, which
jax reports and recompiles (it is never read as an executable).
"""

import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from hashjax.training.checkpoints import Checkpoints
from tests.dataset_fixtures import REPO_ROOT

STEPS = 80
LOG_EVERY = 5
EVAL_EVERY = 20
CHECKPOINT_EVERY = 5
KILLS = 4
SEED = int(os.environ.get("HASHJAX_FAULT_SEED", "0"))  # another seed: other kill moments
TIMEOUT_S = 240  # one run: ~15 s on 2 idle cores, 100 s seen with 3 other test runs
TIMING_FIELDS = {"steps_per_s", "examples_per_s", "eta_s"}
_STEP_LINE = re.compile(r"\] step (\d+): ")


def _command(workdir: str) -> list[str]:
  return [sys.executable, "-m", "hashjax.main",
          "--config=experiments/denton.py:preset=tiny,split=user_disjoint",
          f"--config.train_steps={STEPS}", "--config.batch_size=32",
          f"--config.log_every={LOG_EVERY}", f"--config.eval_every={EVAL_EVERY}",
          f"--config.checkpoint_every={CHECKPOINT_EVERY}", "--config.loss.max_trials=50",
          f"--workdir={workdir}"]


def _env(tmp_path) -> dict:
  env = dict(os.environ)
  env.update(
      HASHJAX_DATA_DIR=str(tmp_path / "data"), JAX_PLATFORMS="cpu",
      XLA_FLAGS="--xla_force_host_platform_device_count=2 "
                "--xla_cpu_collective_call_terminate_timeout_seconds=10",
      JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return env


class _Run:
  """One start of the command on a workdir, its output in files, its own process group."""

  def __init__(self, workdir: str, logs, name: str, env: dict):
    self.workdir, self.name = workdir, name
    self.stderr_path = str(logs / f"{name}.stderr")
    self.resume_step = _newest_committed_step(workdir)
    with open(logs / f"{name}.stdout", "w") as out, open(self.stderr_path, "w") as err:
      self.proc = subprocess.Popen(_command(workdir), cwd=REPO_ROOT, env=env, stdout=out,
                                   stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    self.start, self.end = time.monotonic(), None
    self.line_times: dict[int, float] = {}  # step -> seconds after start its line appeared
    self._read = 0  # bytes of stderr parsed
    self.checkpoints_before = _checkpoint_entries(workdir)

  def elapsed(self) -> float:
    if self.end is None and self.proc.poll() is not None:
      self.end = time.monotonic()
    return (self.end or time.monotonic()) - self.start

  def resumed_from(self) -> int:
    found = re.findall(r"resumed from step (\d+)", self.stderr(chars=10 ** 9))
    return int(found[-1]) if found else 0

  def poll_progress(self) -> None:
    """Notes when this run first logs each step (its "step N: ..." lines on stderr)."""
    with open(self.stderr_path, "rb") as f:
      f.seek(self._read)
      data = f.read()
    complete = data.rfind(b"\n") + 1  # whole lines only
    self._read += complete
    for step in map(int, _STEP_LINE.findall(data[:complete].decode(errors="replace"))):
      self.line_times.setdefault(step, self.elapsed())

  def wait_until(self, done, deadline_s: float) -> bool:
    """Polls until done(self) or the process exits; False if it exited first."""
    while self.proc.poll() is None:
      self.poll_progress()
      if done(self):
        return True
      if self.elapsed() > deadline_s:
        self.kill()
        pytest.fail(f"{self.name}: no exit after {deadline_s:.0f} s\n{self.stderr()}")
      time.sleep(0.01)
    self.poll_progress()
    return False

  def finish(self) -> None:
    """Waits for a clean exit; fails with the run's stderr otherwise."""
    self.wait_until(lambda _: False, TIMEOUT_S)
    if self.proc.returncode != 0:
      pytest.fail(f"{self.name} exited with {self.proc.returncode}: "
                  f"{' '.join(_command(self.workdir))}\n{self.stderr()}")

  def kill(self) -> None:
    """SIGKILL to the whole group; waits until no process of it is left."""
    try:
      os.killpg(self.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
    self.proc.wait(timeout=30)
    self.elapsed()
    for _ in range(500):
      if not _group_members(self.proc.pid):
        return
      time.sleep(0.01)
    pytest.fail(f"{self.name}: processes {_group_members(self.proc.pid)} of the killed group "
                "survived SIGKILL")

  def stderr(self, chars: int = 6000) -> str:
    with open(self.stderr_path, errors="replace") as f:
      text = "".join(line for line in f if "is illegal; using" not in line)
    return text[-chars:]


def _group_members(pgid: int) -> list[int]:
  """Live (non-zombie) processes of a process group, from /proc."""
  members = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat") as f:
        stat = f.read()
    except OSError:
      continue
    state, _, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
    if int(pgrp) == pgid and state != "Z":
      members.append(int(entry))
  return members


def _newest_committed_step(workdir: str) -> int:
  steps = [int(n) for n in _listdir(os.path.join(workdir, "checkpoints")) if n.isdigit()]
  return max(steps, default=0)


def _listdir(path: str) -> list[str]:
  return os.listdir(path) if os.path.isdir(path) else []


def _checkpoint_entries(workdir: str) -> dict[str, tuple[int, bool]]:
  """{entry of WORKDIR/checkpoints: (mtime, holds hashjax's manifest)}."""
  ckpt = os.path.join(workdir, "checkpoints")
  entries = {}
  for name in _listdir(ckpt):
    try:
      entries[name] = (os.stat(os.path.join(ckpt, name)).st_mtime_ns,
                       os.path.exists(os.path.join(ckpt, name, "hashjax_manifest.json")))
    except FileNotFoundError:
      pass
  return entries


def _phase(run: _Run) -> str:
  """Where the kill landed, from the killed run's log and the checkpoints it left.

  "checkpoint write": the run left an unfinished checkpoint: an orbax tmp dir, or (once
  checkpoints carry hashjax's manifest) a committed one still without its manifest.
  """
  if run.proc.returncode == 0:
    return "finished before the kill"
  after = _checkpoint_entries(run.workdir)
  manifests_in_use = any(has for _, has in after.values())
  writing = any(run.checkpoints_before.get(name) != entry and
                ("tmp" in name or (name.isdigit() and manifests_in_use and not entry[1]))
                for name, entry in after.items())
  log = run.stderr(chars=10 ** 9)
  if "testing the variables" in log:
    return "test evaluation"
  if writing:
    return "checkpoint write"
  if not _STEP_LINE.search(log):
    return "startup"
  return "training"


def _kill_at_random_moment(run: _Run, rng: random.Random, timeline: dict) -> tuple[str, str]:
  """Kills the run at a random point of its expected timeline; returns (when, phase)."""
  startup, per_step, tail = timeline["startup"], timeline["per_step"], timeline["tail"]
  remaining = STEPS - run.resume_step
  point = rng.uniform(0, startup + remaining * per_step + tail)
  first = run.resume_step + LOG_EVERY  # the first line this run writes
  if point < startup + LOG_EVERY * per_step:
    when = f"{point:.2f} s after start"
    run.wait_until(lambda r: r.elapsed() >= point, TIMEOUT_S)
  else:
    if point < startup + remaining * per_step:
      target = run.resume_step + (point - startup) / per_step
      anchor = max(first, int(target) // LOG_EVERY * LOG_EVERY)
      delay = (target - anchor) * per_step
      when = f"step {target:.1f} (line of step {anchor} + {delay:.2f} s)"
    else:
      anchor, delay = STEPS, point - startup - remaining * per_step
      when = f"{delay:.2f} s after the last step"
    if run.wait_until(lambda r: anchor in r.line_times, TIMEOUT_S):
      at = run.line_times[anchor] + delay
      run.wait_until(lambda r: r.elapsed() >= at, TIMEOUT_S)
  if run.proc.poll() is None:
    run.kill()
  elif run.proc.returncode != 0:
    pytest.fail(f"{run.name} crashed before its kill ({run.proc.returncode}): "
                f"{' '.join(_command(run.workdir))}\n{run.stderr()}")
  # A warm restart's startup, for the next draw: its first line less that line's steps.
  if first in run.line_times:
    timeline["startup"] = max(0.1, run.line_times[first] - LOG_EVERY * per_step)
  return when, _phase(run)


def _final_checkpoint(workdir: str) -> dict:
  checkpoints = Checkpoints(workdir)
  try:
    assert checkpoints.latest_step() == STEPS, workdir
    out = checkpoints.manager.restore(STEPS, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), selected=ocp.args.StandardRestore(),
        schedule=ocp.args.JsonRestore()))
    restored = {"state": out.state, "selected": out.selected, "schedule": dict(out.schedule)}
  finally:
    checkpoints.close()
  restored["data"] = {}
  for path in sorted(glob.glob(os.path.join(workdir, "checkpoints", str(STEPS), "data", "*"))):
    if path.endswith(".json"):
      with open(path) as f:
        restored["data"][os.path.basename(path)] = json.load(f)
  return restored


def _assert_trees_equal(a, b, where: str = "") -> None:
  if isinstance(a, dict):
    assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: {sorted(a)} vs {b}"
    for key in a:
      _assert_trees_equal(a[key], b[key], f"{where}/{key}")
  elif isinstance(a, (list, tuple)):
    assert isinstance(b, (list, tuple)) and len(a) == len(b), where
    for i, (x, y) in enumerate(zip(a, b)):
      _assert_trees_equal(x, y, f"{where}[{i}]")
  elif hasattr(a, "dtype") and hasattr(a, "shape"):
    x, y = np.asarray(a), np.asarray(b)
    assert x.dtype == y.dtype and x.shape == y.shape, f"{where}: {x.dtype}{x.shape} vs " \
                                                      f"{y.dtype}{y.shape}"
    np.testing.assert_array_equal(x, y, err_msg=where, strict=True)
  else:
    assert a == b, f"{where}: {a!r} vs {b!r}"


def _history(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
            for line in f]


def _keys(workdir: str) -> list[tuple[int, list[str]]]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [(line["step"], sorted(line)) for line in map(json.loads, f)]


def test_killed_at_random_moments_the_command_resumes_bit_identical(tmp_path):
  env, logs = _env(tmp_path), tmp_path / "logs"
  logs.mkdir()
  began = time.monotonic()
  reference = str(tmp_path / "reference")
  ref = _Run(reference, logs, "reference", env)  # also builds the dataset and fills the cache
  ref.finish()
  assert ref.line_times, ref.stderr()
  last = max(s for s in ref.line_times if s <= STEPS)
  per_step = (ref.line_times[last] - ref.line_times[LOG_EVERY]) / (last - LOG_EVERY)
  timeline = {"startup": ref.line_times[LOG_EVERY] - LOG_EVERY * per_step,
              "per_step": per_step, "tail": ref.elapsed() - ref.line_times[last]}

  workdir = str(tmp_path / "killed")
  rng = random.Random(SEED)
  kills, runs = [], []
  try:
    for i in range(KILLS):
      run = _Run(workdir, logs, f"killed{i}", env)
      runs.append(run)
      when, phase = _kill_at_random_moment(run, rng, timeline)
      if "resumed from" in run.stderr(chars=10 ** 9):
        resumed = f"resumed from step {run.resumed_from()}"
      else:
        resumed = (f"before resuming (newest checkpoint {run.resume_step})" if run.resume_step
                   else "fresh start")
      kills.append(f"kill {i}: {resumed}, killed at {when}: {phase}")
    final = _Run(workdir, logs, "final", env)
    runs.append(final)
    final.finish()
  finally:
    for run in runs:
      if run.proc.poll() is None:
        run.kill()
  summary = (f"reference {ref.elapsed():.1f} s (startup {ref.line_times[LOG_EVERY]:.1f} s, "
             f"{1 / per_step:.0f} steps/s), whole test {time.monotonic() - began:.1f} s\n"
             + "\n".join(kills) + f"\nfinal run from step {final.resumed_from()}: "
             f"{final.elapsed():.1f} s")
  print(summary)

  _assert_trees_equal(_final_checkpoint(reference), _final_checkpoint(workdir), "checkpoint")
  for name in ("metrics.json", "report.md"):
    with open(os.path.join(reference, name)) as a, open(os.path.join(workdir, name)) as b:
      assert a.read() == b.read(), f"{name} differs\n{summary}"
  assert _keys(workdir) == _keys(reference), summary
  assert _history(workdir) == _history(reference), summary
