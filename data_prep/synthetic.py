r"""Writes a synthetic dataset directory (a world with planted structure and a known oracle).

  python -m data_prep.synthetic --out=/tmp/hashjax_data/default --preset=default --seed=0 \
      --split_scheme=temporal

Presets (hashjax/data/synthetic/world.py): tiny (tests), default (the main job), paper (n=4096,
10k hashtags, >= 1M posts; streamed to disk, use --feature_dtype=float16 to halve its size).
"""

import dataclasses

from absl import app, flags

from hashjax import config as config_lib
from hashjax.data import format as fmt
from hashjax.data.synthetic import build, world


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names).

  Bad values stop at flag parsing, before anything is written, with a message naming the flag:
  bounds on the integers, and a validator that applies --set to the preset and checks it.
  """
  flags.DEFINE_string("out", None, "Dataset directory to write.", required=True)
  flags.DEFINE_enum("preset", "default", ["tiny", "default", "paper"], "World size.")
  flags.DEFINE_integer("seed", 0, "Generator seed (the dataset is a function of it).",
                       lower_bound=0)
  flags.DEFINE_enum("split_scheme", "temporal", list(fmt.SPLIT_SCHEMES),
                    "user_disjoint (Denton, Durand) or temporal per user (Veit).")
  flags.DEFINE_enum("feature_dtype", "float32", ["float32", "float16"],
                    "On-disk dtype of image features (always read as float32).")
  # At least 1: with 0 the writer would flush empty shards forever.
  flags.DEFINE_integer("posts_per_shard", 50_000, "Posts per shard.", lower_bound=1)
  flags.DEFINE_bool("overwrite", False, "Replace an existing directory.")
  flags.DEFINE_multi_string("set", [], "WorldConfig overrides FIELD=VALUE, e.g. "
                            "--set=num_users=500 (recorded in the provenance).")
  flags.register_multi_flags_validator(["set", "preset"], _check_overrides)


def _check_overrides(values: dict) -> bool:
  """Flag validator: --set must name WorldConfig fields with values the generator accepts."""
  try:
    build.world_config(values["preset"], parse_overrides(values["set"], values["preset"]))
  except ValueError as e:
    raise flags.ValidationError(f"--set: {e}") from e
  return True


_KINDS = {int: "an integer", float: "a number", str: "a string",
          tuple: "a list joined with + (e.g. 0.5+0.3+0.2)"}


def parse_overrides(items: list[str], preset: str) -> dict:
  """FIELD=VALUE strings -> WorldConfig overrides, typed like the preset's values.

  Each item is parsed alone (a value may hold a comma); errors name the item and the field.
  """
  defaults = dataclasses.asdict(world.PRESETS[preset])
  overrides = {}
  for item in items:
    name, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"{item!r} is not FIELD=VALUE")
    if name not in defaults:
      raise ValueError(f"WorldConfig has no field {name!r} ({item!r}); the fields are "
                       f"{', '.join(defaults)}")
    try:
      overrides[name] = config_lib.parse_value(value, defaults[name])
    except ValueError as e:
      kind = _KINDS.get(type(defaults[name]), type(defaults[name]).__name__)
      raise ValueError(f"{item!r}: {name} must be {kind} ({e})") from e
  return overrides


def main(argv):
  del argv
  f = flags.FLAGS
  try:
    build.build_synthetic(f.out, preset=f.preset, seed=f.seed, split_scheme=f.split_scheme,
                          feature_dtype=f.feature_dtype, posts_per_shard=f.posts_per_shard,
                          overwrite=f.overwrite, overrides=parse_overrides(f.set, f.preset))
  except FileExistsError as e:  # a user error, not a bug: one line, no traceback
    raise SystemExit(f"--out: {e}; pass --overwrite to replace it") from e


if __name__ == "__main__":
  define_flags()
  app.run(main)
