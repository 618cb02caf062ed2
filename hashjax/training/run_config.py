"""What defines a training run: the config is checked before a run starts and when it resumes.

`validate` rejects a config that would loop, divide by zero or fail late (a period of 0, an
unknown plateau metric that would only fail at the first evaluation), with a message naming
the field.

A resumed run continues the run its checkpoints belong to, so `check_resume` compares the
config saved with the checkpoint with the new one and refuses any change to what defines the
run (model, loss, data, seed, optimizer, schedule, evaluation periods, ...). Only these may
change, because none of them changes a parameter or a reported number:

  log_every, checkpoint_every   how often the run writes what it already computes
  eval.batch_size               posts per evaluation batch (top-k is per post)
  num_devices, vocab_shards     how the same global batch and the hashtag tables are spread
                                (float sums may round differently, the math is the same)
  train_steps                   upward, to train longer, when the schedule does not depend on
                                it (constant, or "step" with explicit boundaries); never below
                                the checkpoint's step

The dataset is identified by a fingerprint of its metadata (counts, shards, provenance), so a
run cannot resume on a different dataset that happens to sit at the same path.
"""

import hashlib
import json
import math
from typing import Any

from hashjax import config as config_lib
from hashjax.eval import evaluate

SAFE_TO_CHANGE = ("log_every", "checkpoint_every", "eval.batch_size", "num_devices",
                  "vocab_shards")
_POSITIVE = ("batch_size", "train_steps", "max_tags", "log_every", "eval_every",
             "checkpoint_every", "eval.batch_size", "vocab_shards")


class ConfigError(ValueError):
  """A config that cannot run, or that may not resume the run in its workdir."""


def validate(config) -> None:
  """Raises ConfigError naming the first field that cannot work."""
  flat = flatten(config.to_dict())
  for key in _POSITIVE:
    value = flat.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(f"config.{key} must be a positive integer, got {value!r}")
  if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
    raise ConfigError(f"config.learning_rate must be finite and > 0, got {config.learning_rate}")
  ks = tuple(config.eval.ks)
  if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
    raise ConfigError(f"config.eval.ks must be positive integers, got {ks}")
  vocabularies = tuple(config.eval.vocabularies)
  unknown = sorted(set(vocabularies) - set(evaluate.VOCABULARIES))
  if not vocabularies or unknown:
    raise ConfigError(f"config.eval.vocabularies must be some of {evaluate.VOCABULARIES}, got "
                      f"{vocabularies}")
  metrics = [f"{evaluate.metric_prefix(v)}{name}@{k}" for v in vocabularies for k in ks
             for name in ("P", "R", "A")]
  if config.plateau_metric not in metrics:
    raise ConfigError(f"config.plateau_metric {config.plateau_metric!r} is not one of the "
                      f"validation metrics {metrics} (from config.eval.ks and vocabularies)")
  if config.plateau_patience < 0:
    raise ConfigError(f"config.plateau_patience must be >= 0, got {config.plateau_patience}")
  if not 0 < config.plateau_factor <= 1:
    raise ConfigError(f"config.plateau_factor must be in (0, 1], got {config.plateau_factor}")
  if config.num_devices < 0:
    raise ConfigError(f"config.num_devices must be >= 0 (0 = all), got {config.num_devices}")
  if config.init_from.workdir.startswith("@"):
    raise ConfigError(f"config.init_from.workdir {config.init_from.workdir!r} names a sweep "
                      "variant, which only python -m hashjax.tools.sweep resolves; give the "
                      "workdir of the run to start from")


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  """{"a.b": value} for nested dicts; values JSON-normalised (tuples become lists)."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) and value:
      out.update(flatten(value, name + "."))
    else:
      out[name] = json.loads(json.dumps(value))
  return out


def dataset_fingerprint(metadata: dict) -> str:
  """sha256 of a dataset's metadata (sizes, shards, provenance, build report)."""
  return hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()


def run_record(config, metadata: dict) -> dict:
  """What is saved with every checkpoint to identify the run."""
  return {"config": json.loads(config.to_json()), "dataset": dataset_fingerprint(metadata)}


def config_changes(saved: dict, config) -> dict[str, tuple[Any, Any]]:
  """{dotted field: (saved value, config's value)} where a saved run's config (a dict) and
  `config` differ. A field the project added after the run was saved, absent from it and at
  the value hashjax.config gives it by default, is no change: the default is how the code
  behaved before the field existed (the convention for adding one)."""
  old, new = flatten(saved), flatten(json.loads(config.to_json()))
  defaults = flatten(json.loads(config_lib.train_config().to_json()))
  missing = "<absent>"
  return {k: (old.get(k, missing), new.get(k, missing)) for k in sorted({*old, *new})
          if old.get(k, missing) != new.get(k, missing)
          and not (k not in old and k in defaults and new[k] == defaults[k])}


def check_resume(saved: dict, config, metadata: dict, step: int, where: str) -> None:
  """Raises ConfigError unless `config` may resume the run saved at `step` (see module doc)."""
  if saved["dataset"] != dataset_fingerprint(metadata):
    raise ConfigError(f"{where}: checkpoint {step} was trained on another dataset (its "
                      "metadata differs from the one this config reads); use a new workdir")
  changed = config_changes(saved["config"], config)
  steps = changed.pop("train_steps", None)
  refused = {k: v for k, v in changed.items() if k not in SAFE_TO_CHANGE}
  if steps is not None and _schedule_uses_train_steps(config):
    refused["train_steps"] = steps
  if refused:
    lines = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
    raise ConfigError(
        f"{where}: the checkpoint at step {step} belongs to a run with another config "
        f"({lines}). Resuming may change only {', '.join(SAFE_TO_CHANGE)} and train_steps "
        "(upward, with a schedule that does not depend on it). Use a new workdir, or the "
        "original config.")
  if config.train_steps < step:
    raise ConfigError(f"{where}: the checkpoint is at step {step}, beyond "
                      f"config.train_steps={config.train_steps}; the run is already past it")


def _schedule_uses_train_steps(config) -> bool:
  schedule = dict(config.schedule)
  name = schedule.get("name", "constant")
  return name == "cosine" or (name == "step" and bool(schedule.get("every")))
