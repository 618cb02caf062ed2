"""Test setup: 8 simulated CPU devices (set before jax is imported) and parsed absl flags."""

import os

os.environ["XLA_FLAGS"] = " ".join([
    os.environ.get("XLA_FLAGS", ""),
    "--xla_force_host_platform_device_count=8",
    # A multi-device CPU loop that never waits can deadlock in XLA's collectives: fail fast.
    "--xla_cpu_collective_call_terminate_timeout_seconds=10",
]).strip()

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
  """The tiny synthetic world, user-disjoint split (seed 0), built once per test session."""
  from hashjax.data.reader import PostDataset  # after XLA_FLAGS: these import jax
  from hashjax.data.synthetic import build
  directory = str(tmp_path_factory.mktemp("tiny") / "user_disjoint")
  build.build_synthetic(directory, preset="tiny", seed=0, split_scheme="user_disjoint", log=None)
  return PostDataset(directory)
