r"""Reference rows of every table: frequency baselines and the oracle on synthetic data.

  python -m hashjax.main --config=experiments/baselines.py --workdir=runs/baselines
  python -m hashjax.main --config=experiments/baselines.py:split=user_disjoint,seeds=5 \
      --workdir=runs/b2
  python -m hashjax.main --config=experiments/baselines.py --config.data.dir=/path/to/dataset \
      --workdir=runs/b3
  python -m hashjax.main --config=experiments/baselines.py:split=user_disjoint,dist=balanced \
      --workdir=runs/b4

With data.dir empty, one synthetic dataset per seed (seeds=N: seeds 0..N-1) is built on first
use in $HASHJAX_DATA_DIR (default ~/hashjax_data) and reused afterwards; the table reports
mean ± std over seeds. With data.dir set, that one dataset is evaluated. dist=balanced thins the
test truth as Denton's balanced tables do (hashjax.data.tag_distribution); the oracle rows then
rank by p(y) keep(y).
"""

import ml_collections

from hashjax import config as config_lib
from hashjax.data import tag_distribution


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = config_lib.parse_arg(arg, preset="default", seeds=3, split="temporal", dist="natural")
  config = ml_collections.ConfigDict()
  config.job = "baselines"
  config.seeds = tuple(range(args.seeds))  # one synthetic world per seed; table = mean ± std
  if args.dist not in tag_distribution.DISTRIBUTIONS:
    raise ValueError(f"dist={args.dist!r}: choose one of {tag_distribution.DISTRIBUTIONS}")
  config.data = config_lib.data_config(args.preset, 0, args.split, args.dist)
  config.eval = config_lib.eval_config(split="test")
  return config
