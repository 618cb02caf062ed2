r"""hashjax's entry point: flags in, one job out (flax/examples style).

  python -m hashjax.main --config=experiments/baselines.py --workdir=runs/baselines

Many processes or hosts (the same command on each; hashjax/training/distributed.py):

  python -m hashjax.main --config=... --workdir=W --coordinator_address=HOST0:1234 \
      --num_processes=2 --process_id=0   # and --process_id=1 on the other one

Inside an srun step, an Open MPI job or on a Cloud TPU VM the three values are detected.
The config file's docstring lists its variants. Logic lives in importable modules; this file only
parses flags, joins the multi-host runtime when there is one, and dispatches.
"""

import sys

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from hashjax.data import format as data_format
from hashjax.tools import reference_job
from hashjax.training import checkpoints, distributed, run_config, trainer, workdir_lock


class _QuietOrbax(logging.logging.Filter):
  """orbax logs every checkpoint step at INFO; keep its warnings, drop the chatter."""

  def filter(self, record) -> bool:
    return "/orbax/" not in record.pathname or record.levelno >= logging.logging.WARNING


JOBS = {"baselines": reference_job.run, "train": trainer.train_and_evaluate}

# What a user can fix from the message alone: shown as one line, without a traceback.
USER_ERRORS = (run_config.ConfigError, workdir_lock.WorkdirBusyError, checkpoints.CheckpointError,
               data_format.DatasetError)
_TRACEBACK = "Traceback (most recent call last):"


def _exit_with(message: str) -> None:
  sys.stderr.write(f"FATAL {message}\n")
  sys.exit(1)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with every config mistake reported in one line.

  ml_collections lets an unknown `--config.a.b=1` escape as a bare AttributeError/KeyError
  (three chained tracebacks), and pastes a whole traceback into the message when get_config
  refuses its `:arg`; both become the argument and the reason.
  """
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    key = str(e).strip("\"'")
    given = [a for a in argv[1:] if a.startswith("--config.")
             and key in a.partition("=")[0][len("--config."):].split(".")]
    _exit_with(f"Flags parsing error: {given[0] if given else '--config.' + key}: the config "
               f"has no field {key!r} (see the config file for its fields)")
  except flags.Error as e:
    message = str(e)
    if _TRACEBACK in message:  # keep the flag and the exception line, drop the frames
      head, _, trace = message.partition(_TRACEBACK)
      reason = [line.strip() for line in trace.splitlines() if line.strip()][-1]
      message = f"{head.replace('Error whilst parsing config file:', '').strip()} {reason}"
    _exit_with(f"Flags parsing error: {message}\nPass --helpshort or --helpfull to see help on "
               "flags.")


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("workdir", None, "Where results and checkpoints go.", required=True)
  config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
  flags.mark_flags_as_required(["config"])
  flags.DEFINE_enum("distributed", "auto", list(distributed.MODES),
                    "Join jax.distributed: auto = when the three flags below are given or a "
                    "SLURM step, Open MPI job or Cloud TPU VM is detected; on = always; off = "
                    "never (one process).")
  flags.DEFINE_string("coordinator_address", None,
                      "HOST:PORT of process 0, the same on every process (jax.distributed).")
  flags.DEFINE_integer("num_processes", None, "Number of processes in the job.")
  flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  request = distributed.Request(f.distributed, f.coordinator_address, f.num_processes,
                                f.process_id)
  try:
    how = distributed.initialize(request)  # before anything touches a JAX backend
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  logging.get_absl_handler().addFilter(_QuietOrbax())
  config = f.config
  logging.info("hashjax: %s; process %d/%d, %d local of %d devices", how, jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  try:
    JOBS[config.job](config, f.workdir)
  except USER_ERRORS as e:
    _exit_with(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=parse_flags)
