r"""Park et al. 2016, HARRISON's baseline: two fully connected layers on two image views.

  python -m hashjax.main --config=experiments/harrison.py --workdir=runs/harrison
  python -m hashjax.main --config=experiments/harrison.py:views=object --workdir=runs/h_object
  python -m hashjax.tools.sweep --config=experiments/harrison.py --sweep=harrison_table1 --seeds=3 \
      --workdir=runs/harrison --readme=README.md
  # the released HARRISON lists and photos (data_prep.harrison, README):
  python -m hashjax.main --config=experiments/harrison.py:schedule=paper \
      --config.data.dir=runs/data/harrison --workdir=runs/harrison_real

The classifier (hashjax/models/mlp.py): x -> relu(BN(FC 4096)) -> relu(BN(FC 4096)) = the
query, the output layer is the tag table, trained with sigmoid cross-entropy summed over the
vocabulary (SGD, momentum 0.9, rate 0.1 divided by 10 at fixed steps, batch 100). The batch
norm is ours: without it the same recipe stayed at global frequency for 1,000 steps on the
synthetic world's unit-norm features (val P@1 7.6; with it 20.2 at step 750). x is the dataset's
feature views concatenated: Park et al.'s VGG-Object and VGG-Scene fc7 features; here
EfficientNet-Lite0's pooled features and its stage-5 layout on real photos (data_prep.harrison),
or the `two_views` synthetic world's two renderings of each image. A single-view row reads one
view and zero-pads the other (Table 1).

Variants: views in {object+scene, object, scene}; schedule in {short (1,500 steps, the rate
/10 at 1,000 and 1,300: on the synthetic world validation P@1 goes 24.6 -> 29.3 over the first
decay and then stays, 29.2 at 1,500), paper
(100,000 iterations, /10 every 30,000)}; hidden (widths joined by +); batch_norm (false: the
paper's plain layers); preset, seed, split.
"""

import ml_collections

from hashjax import config as config_lib

VIEW_LABELS = {("object", "scene"): "Object + Scene", ("object",): "Object (scene zero-padded)",
               ("scene",): "Scene (object zero-padded)"}
SCHEDULES = {"short": (1500, (1000, 1300)), "paper": (100_000, (30_000, 60_000, 90_000))}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = config_lib.parse_arg(arg, views=("object", "scene"), schedule="short",
                              hidden=(4096, 4096), batch_norm=True, preset="two_views", seed=0,
                              split="user_disjoint")
  views = tuple(args.views)
  if views not in VIEW_LABELS:
    raise ValueError(f"config argument views={'+'.join(views)}: choose "
                     f"{', '.join('+'.join(v) for v in VIEW_LABELS)}")
  if args.schedule not in SCHEDULES:
    raise ValueError(f"config argument schedule={args.schedule!r}: choose short or paper")
  config = config_lib.train_config()
  config.model = ml_collections.ConfigDict({"name": "mlp", "kwargs": {
      "hidden": tuple(args.hidden), "dropout_rate": 0.0, "batch_norm": args.batch_norm,
      "views": views}})
  config.label = VIEW_LABELS[views]
  config.loss = ml_collections.ConfigDict({"name": "sigmoid"})
  config.data = config_lib.data_config(args.preset, args.seed, args.split)
  config.seed = args.seed
  config.batch_size = 100
  config.learning_rate = 0.1
  steps, boundaries = SCHEDULES[args.schedule]
  config.train_steps = steps
  config.schedule = ml_collections.ConfigDict({"name": "step", "boundaries": boundaries,
                                               "factor": 0.1})
  config.plateau_patience = 0  # the fixed steps are the schedule
  config.eval_every = max(steps // 12, 250)
  config.checkpoint_every = max(steps // 6, 500)
  return config


# Table 1's reference rows and metrics: global frequency, and on synthetic data the oracle that
# sees only the image (the ceiling of a model without the user, as these are).
REFERENCE_ROWS = {"Global frequency": "Global frequency",
                  "Oracle, image only": "Oracle, image only"}
TABLE_COLUMNS = ("P@1", "R@5", "A@5")


def get_sweep(name: str) -> dict[str, list[str]]:
  """harrison_table1: the two views together and each alone (the other zero-padded). The
  name is the README marker's, and Durand's Table 1 already has "table1"."""
  if name == "harrison_table1":
    return {"Table 1: HARRISON's baseline, object and scene views": [
        "views=object+scene", "views=object", "views=scene"]}
  raise ValueError(f"unknown sweep {name!r}; experiments/harrison.py has: harrison_table1")
