r"""hashjax's entry point: flags in, one job out (flax/examples style).

  python -m hashjax.main --config=experiments/baselines.py --workdir=runs/baselines

The config file's docstring lists its variants. Logic lives in importable modules; this file only
parses flags, joins the multi-host runtime when there is one, and dispatches.
"""

import os

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from hashjax.tools import reference_job
from hashjax.training import trainer


class _QuietOrbax(logging.logging.Filter):
  """orbax logs every checkpoint step at INFO; keep its warnings, drop the chatter."""

  def filter(self, record) -> bool:
    return "/orbax/" not in record.pathname or record.levelno >= logging.logging.WARNING


JOBS = {"baselines": reference_job.run, "train": trainer.train_and_evaluate}


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("workdir", None, "Where results and checkpoints go.", required=True)
  config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
  flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if "JAX_COORDINATOR_ADDRESS" in os.environ or "SLURM_JOB_ID" in os.environ:
    jax.distributed.initialize()  # the multi-host runtime; a no-op setup on one machine
  logging.get_absl_handler().addFilter(_QuietOrbax())
  config = flags.FLAGS.config
  logging.info("hashjax: process %d/%d, %d local devices", jax.process_index(),
               jax.process_count(), jax.local_device_count())
  JOBS[config.job](config, flags.FLAGS.workdir)


if __name__ == "__main__":
  define_flags()
  app.run(main)
