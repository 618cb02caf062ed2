"""Shared config pieces and the parser for big_vision-style config arguments.

`--config=experiments/x.py:preset=tiny,seed=3` passes "preset=tiny,seed=3" to get_config, which
calls parse_arg(arg, **defaults) to get typed values (the type of each default is kept).
"""

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses "k1=v1,k2=v2" over `defaults`, casting each value to its default's type."""
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in defaults:
      raise ValueError(f"config argument {item!r}: expected key=value with key in "
                       f"{sorted(defaults)}")
    kind = type(defaults[key])
    if kind is bool:
      values[key] = value.lower() in ("1", "true", "yes")
    else:
      values[key] = kind(value)
  return ml_collections.ConfigDict(values)


def data_config(preset: str, seed: int, split: str,
                dist: str = "natural") -> ml_collections.ConfigDict:
  """Where the data comes from: a dataset directory, or a synthetic recipe when dir is empty.

  dist: "natural" or "balanced" hashtag distribution (hashjax.data.tag_distribution).
  """
  return ml_collections.ConfigDict(dict(dir="", preset=preset, seed=seed, split_scheme=split,
                                        dist=dist))
