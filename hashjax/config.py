"""Shared config pieces and the parser for big_vision-style config arguments.

`--config=experiments/x.py:preset=tiny,seed=3` passes "preset=tiny,seed=3" to get_config, which
calls parse_arg(arg, **defaults) to get typed values (the type of each default is kept).
`train_config()` holds what every training experiment shares; a paper's config changes what
it needs.
"""

import ml_collections

_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def parse_value(value: str, like):
  """`value` cast to the type of `like`; bools take only true/false/yes/no/1/0."""
  kind = type(like)
  if kind is bool:
    if value.lower() in _TRUE:
      return True
    if value.lower() in _FALSE:
      return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")
  if kind in (tuple, list):
    return kind(parse_value(v, like[0]) if like else v for v in filter(None, value.split("+")))
  return kind(value)


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses "k1=v1,k2=v2" over `defaults`, casting each value to its default's type."""
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in defaults:
      raise ValueError(f"config argument {item!r}: expected key=value with key in "
                       f"{sorted(defaults)}")
    try:
      values[key] = parse_value(value, defaults[key])
    except ValueError as e:
      raise ValueError(f"config argument {item!r}: {e}") from e
  return ml_collections.ConfigDict(values)


def data_config(preset: str, seed: int, split: str,
                dist: str = "natural") -> ml_collections.ConfigDict:
  """Where the data comes from: a dataset directory, or a synthetic recipe when dir is empty.

  dist: "natural" or "balanced" hashtag distribution (hashjax.data.tag_distribution).
  seq_len, context_len: the user sequences a history model reads (pipeline.sequence_batches).
  """
  return ml_collections.ConfigDict(dict(dir="", preset=preset, seed=seed, split_scheme=split,
                                        dist=dist, seq_len=0, context_len=0))


def eval_config(**fields) -> ml_collections.ConfigDict:
  """How runs are evaluated: posts per batch, the k of P@k / R@k / A@k, and the hashtag ranges
  (hashjax.eval.evaluate: all, seen, unseen)."""
  return ml_collections.ConfigDict(dict(batch_size=1024, ks=(1, 5, 10), vocabularies=("all",),
                                        **fields))


def train_config() -> ml_collections.ConfigDict:
  """What every training run has; experiments set model, loss, data and what they change."""
  config = ml_collections.ConfigDict()
  config.job = "train"
  config.seed = 0
  config.batch_size = 256
  config.train_steps = 4000
  config.max_tags = 16  # hashtag slots per post in a training batch
  config.learning_rate = 0.02
  config.optimizer = ml_collections.ConfigDict(dict(name="sgd", momentum=0.9))
  config.schedule = ml_collections.ConfigDict(dict(name="constant"))
  config.frozen = ()  # parts of the model kept at their initial (or init_from) values
  config.init_from = ml_collections.ConfigDict(dict(workdir="", parts=()))
  # The plateau rule (training/optimizers.py); patience 0 turns it off.
  config.plateau_metric = "P@1"
  config.plateau_patience = 2
  config.plateau_factor = 0.1
  config.plateau_start_step = 1000
  config.plateau_min_delta = 1e-3
  config.num_devices = 0  # 0 = every local device
  # > 1: hashtag tables split over a "model" mesh axis of this size (training/sharding.py)
  config.vocab_shards = 1
  config.log_every = 100
  config.eval_every = 250
  config.checkpoint_every = 1000
  config.eval = eval_config()
  return config
