r"""Reference rows of every table: frequency baselines and the oracle on synthetic data.

  python -m hashjax.main --config=experiments/baselines.py --workdir=runs/baselines
  python -m hashjax.main --config=experiments/baselines.py:split=user_disjoint --workdir=runs/b2
  python -m hashjax.main --config=experiments/baselines.py --config.data.dir=/path/to/dataset \
      --workdir=runs/b3

With data.dir empty the synthetic dataset of data.preset/seed/split is built on first use in
$HASHJAX_DATA_DIR (default ~/hashjax_data) and reused afterwards.
"""

import ml_collections

from hashjax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = config_lib.parse_arg(arg, preset="default", seed=0, split="temporal")
  config = ml_collections.ConfigDict()
  config.job = "baselines"
  config.data = config_lib.data_config(args.preset, args.seed, args.split)
  config.eval = ml_collections.ConfigDict(dict(split="test", batch_size=1024, ks=(1, 5, 10)))
  return config
