r"""Writes a synthetic dataset directory (a world with planted structure and a known oracle).

  python -m data_prep.synthetic --out=/tmp/hashjax_data/default --preset=default --seed=0 \
      --split_scheme=temporal

Presets (hashjax/data/synthetic.py): tiny (tests), default (the main job), paper (n=4096,
10k hashtags, >= 1M posts; streamed to disk, use --feature_dtype=float16 to halve its size).
"""

import dataclasses

from absl import app, flags

from hashjax import config as config_lib
from hashjax.data import build_synthetic, format as fmt, synthetic

_OUT = flags.DEFINE_string("out", None, "Dataset directory to write.", required=True)
_PRESET = flags.DEFINE_enum("preset", "default", ["tiny", "default", "paper"], "World size.")
_SEED = flags.DEFINE_integer("seed", 0, "Generator seed (the dataset is a function of it).")
_SPLIT = flags.DEFINE_enum("split_scheme", "temporal", list(fmt.SPLIT_SCHEMES),
                           "user_disjoint (Denton, Durand) or temporal per user (Veit).")
_DTYPE = flags.DEFINE_enum("feature_dtype", "float32", ["float32", "float16"],
                           "On-disk dtype of image features (always read as float32).")
_SHARD = flags.DEFINE_integer("posts_per_shard", 50_000, "Posts per shard.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing directory.")
_SET = flags.DEFINE_multi_string("set", [], "WorldConfig overrides FIELD=VALUE, e.g. "
                                 "--set=num_users=500 (recorded in the provenance).")


def parse_overrides(items: list[str], preset: str) -> dict:
  """FIELD=VALUE strings -> WorldConfig overrides, typed like the preset's values."""
  parsed = config_lib.parse_arg(",".join(items), **dataclasses.asdict(synthetic.PRESETS[preset]))
  return {name: parsed[name] for name in (item.partition("=")[0] for item in items)}


def main(argv):
  del argv
  build_synthetic.build_synthetic(_OUT.value, preset=_PRESET.value, seed=_SEED.value,
                                  split_scheme=_SPLIT.value, feature_dtype=_DTYPE.value,
                                  posts_per_shard=_SHARD.value, overwrite=_OVERWRITE.value,
                                  overrides=parse_overrides(_SET.value, _PRESET.value))


if __name__ == "__main__":
  app.run(main)
