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
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("out", None, "Dataset directory to write.", required=True)
  flags.DEFINE_enum("preset", "default", ["tiny", "default", "paper"], "World size.")
  flags.DEFINE_integer("seed", 0, "Generator seed (the dataset is a function of it).")
  flags.DEFINE_enum("split_scheme", "temporal", list(fmt.SPLIT_SCHEMES),
                    "user_disjoint (Denton, Durand) or temporal per user (Veit).")
  flags.DEFINE_enum("feature_dtype", "float32", ["float32", "float16"],
                    "On-disk dtype of image features (always read as float32).")
  flags.DEFINE_integer("posts_per_shard", 50_000, "Posts per shard.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing directory.")
  flags.DEFINE_multi_string("set", [], "WorldConfig overrides FIELD=VALUE, e.g. "
                            "--set=num_users=500 (recorded in the provenance).")


def parse_overrides(items: list[str], preset: str) -> dict:
  """FIELD=VALUE strings -> WorldConfig overrides, typed like the preset's values."""
  parsed = config_lib.parse_arg(",".join(items), **dataclasses.asdict(world.PRESETS[preset]))
  return {name: parsed[name] for name in (item.partition("=")[0] for item in items)}


def main(argv):
  del argv
  f = flags.FLAGS
  build.build_synthetic(f.out, preset=f.preset, seed=f.seed, split_scheme=f.split_scheme,
                        feature_dtype=f.feature_dtype, posts_per_shard=f.posts_per_shard,
                        overwrite=f.overwrite, overrides=parse_overrides(f.set, f.preset))


if __name__ == "__main__":
  define_flags()
  app.run(main)
