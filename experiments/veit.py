r"""Veit et al. CVPR'18: user-agnostic image models and the user-specific 3-way tensor.

  python -m hashjax.tools.sweep --config=experiments/veit.py --sweep=table2 --seeds=3 \
      --workdir=runs/veit_table2 --readme=README.md     (Table 2 and its figures; get_sweep)
  python -m hashjax.main --config=experiments/veit.py:model=mcll --workdir=runs/veit_mcll
  python -m hashjax.main --config=experiments/veit.py:model=tensor,init=runs/veit_mcll \
      --workdir=runs/veit_tensor_mcll
  python -m hashjax.main --config=experiments/veit.py:model=tensor --workdir=runs/veit_tensor
  python -m hashjax.main --config=experiments/veit.py:model=ncsl --workdir=runs/veit_ncsl
  python -m hashjax.main --config=experiments/veit.py:model=mlp,init=runs/veit_ncsl,image_dim=300 \
      --workdir=runs/veit_mlp_ncsl

Variants (after the colon):
- model: imagenet (a linear softmax classifier on the features, the paper's frozen-ImageNet
  baseline), mcll (stage 1: softmax over the vocabulary against one hashtag drawn per post,
  through the learned head), ncsl (stage 1: the head regressed onto fixed hashtag embeddings
  of size D by the negative cosine loss), tensor (stage 2: the tensor model with the
  triplet hinge over six in-batch negatives) or mlp (stage 2: the embeddings concatenated and
  scored by an MLP of `scorer` widths, same loss);
- init (tensor, mlp): the workdir of a stage-1 run to start from, or "@VARIANT" for that
  variant's run in a sweep (";" stands for "," inside it); empty: a random start;
- init_parts: what init loads, joined by +: image, or image+tags (from an MCLL run with D equal
  to the head's width, and bias=true);
- image_dim: F from a linear layer on top of the hidden ones (0: none); a head loaded from an
  ncsl run has that layer, so set image_dim to that run's D;
- shared (a learned W_0 added to every user's W^(k), starting at the identity) and bias
  (per-hashtag biases): with both, stage 2 starts exactly at an MCLL run's scores;
- hidden: the image head's widths, joined by +; the last is F unless image_dim is set;
- scorer (mlp): the scoring MLP's hidden widths, joined by +;
- tags_from (tensor, mlp): where the tag axis's negatives come from: batch (the paper's: the
  other posts' hashtags) or vocabulary (every hashtag);
- loss (tensor): triplet (the paper's) or softmax (stage 1's loss over the vocabulary, to tell
  the model's effect from the loss's);
- embeddings (ncsl): ppmi (NCSL-PPMI: PPMI-SVD rows) or mssg (NCSL-MS: the global vectors of
  a multi-sense skip-gram model);
- center (ncsl): subtract the table's mean row first (not in the paper);
- optimizer: adam replaces the variant's optimizer (with --config.learning_rate);
- lr: the learning rate, if not the variant's own;
- D (hashtag embedding size), E (user embedding size), preset, seed;
- split: temporal (the paper's per-user 90% split) or user_disjoint (its test users get the
  fallback 1/E user vector).
Any field can be overridden with --config.FIELD=VALUE.

The paper fine-tunes a ResNet-50; here the image model is a learned MLP head on the dataset's
precomputed image features; the sweeps' stage 2 departs from the paper's form too (README,
"Results: Veit et al.").
"""

import ml_collections

from hashjax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = config_lib.parse_arg(arg, model="tensor", init="", init_parts=("image",),
                              hidden=(300,), image_dim=0, D=300, E=50, shared=False, bias=False,
                              scorer=(300,), tags_from="batch", loss="triplet",
                              embeddings="ppmi", center=False, optimizer="", lr=0.0,
                              preset="default", seed=0, split="temporal")
  config = config_lib.train_config()
  head = {"hidden": tuple(args.hidden), "dropout_rate": 0.2, "batch_norm": True}
  user_specific = {**head, "image_dim": args.image_dim, "tag_dim": args.D, "user_dim": args.E}
  if args.model == "imagenet":  # logistic regression (softmax) on the frozen features
    config.model = ml_collections.ConfigDict({"name": "mlp", "kwargs": {"hidden": ()}})
    config.loss = ml_collections.ConfigDict({"name": "softmax"})
    config.label = "ImageNet"
    # A convex problem, but slow under SGD on these features (at 0.1 it was still at the
    # global-frequency level after 1500 steps): Adam, run to the default 4000 steps.
    config.optimizer = ml_collections.ConfigDict({"name": "adam"})
    config.learning_rate = 0.01
  elif args.model == "mcll":
    config.model = ml_collections.ConfigDict({"name": "mlp", "kwargs": head})
    config.loss = ml_collections.ConfigDict({"name": "softmax"})
    config.label = "MCLL"
    config.learning_rate = 0.1  # as experiments/classifier.py: SGD, momentum 0.9
  elif args.model == "ncsl":
    # The head ends in a linear layer onto R^D, the fixed hashtag rows' space; they never move.
    if args.embeddings not in ("ppmi", "mssg"):
      raise ValueError(f"config argument embeddings={args.embeddings!r}: choose ppmi or mssg")
    config.model = ml_collections.ConfigDict({"name": "ncsl", "kwargs": {
        **head, "dim": args.D, "tag_embeddings": args.embeddings}})
    if args.center:  # the table's mean row subtracted (not in the paper; README, finding 4)
      config.model.kwargs.center = True
    config.loss = ml_collections.ConfigDict({"name": "ncsl"})
    if args.embeddings == "mssg":  # MSSG's global vectors, as the paper uses them
      config.model.kwargs.mssg = {"senses": 3, "epochs": 20}
    config.frozen = ("tags",)
    config.label = "NCSL-PPMI" if args.embeddings == "ppmi" else "NCSL-MS"
    config.learning_rate = 0.1
  elif args.model in ("tensor", "mlp"):
    if args.model == "tensor":
      config.model = ml_collections.ConfigDict({"name": "tensor", "kwargs": {
          **user_specific, "shared_slice": args.shared, "tag_bias": args.bias}})
    else:
      config.model = ml_collections.ConfigDict({"name": "concat_mlp", "kwargs": {
          **user_specific, "scorer_hidden": tuple(args.scorer)}})
    # The paper's ranking loss: margin 1, three intermediate and three hard negatives.
    config.loss = ml_collections.ConfigDict({"name": "triplet", "margin": 1.0,
                                             "negatives": "both",
                                             "tag_candidates": args.tags_from})
    if args.loss == "softmax":  # the tensor under stage 1's loss (README: the diagnostic)
      config.loss = ml_collections.ConfigDict({"name": "softmax"})
      config.label = "Tensor, softmax"
    elif args.loss != "triplet":
      raise ValueError(f"config argument loss={args.loss!r}: choose triplet or softmax")
    config.learning_rate = 0.05
    config.train_steps = 600  # from a trained stage 1, validation peaks by then (README)
    if args.init:  # the second stage: the image head of a trained user-agnostic model
      config.init_from = ml_collections.ConfigDict({"workdir": args.init,
                                                    "parts": tuple(args.init_parts)})
  else:
    raise ValueError(f"config argument model={args.model!r}: choose imagenet, mcll, ncsl, "
                     "tensor or mlp")
  if args.model in ("mcll", "ncsl"):
    config.train_steps = 1500
  if args.lr:  # the variant's learning rate replaced (Table 2's rows from NCSL-MS heads)
    config.learning_rate = args.lr
  if args.optimizer == "adam":  # any variant under ImageNet's optimizer (README, Table 2)
    config.optimizer = ml_collections.ConfigDict({"name": "adam"})
  elif args.optimizer:
    raise ValueError(f"config argument optimizer={args.optimizer!r}: only adam overrides the "
                     "variant's own")
  config.data = config_lib.data_config(args.preset, args.seed, args.split)
  config.seed = args.seed
  config.plateau_start_step = 1000
  return config


# Table 2's reference rows and metrics (hashjax.tools.sweep): both frequency baselines, and on
# synthetic data the oracle that sees only the image (the ceiling of a user-agnostic model) and
# the one that knows the true distribution (the ceiling of every model).
REFERENCE_ROWS = {name: name for name in ("Global frequency", "User-specific frequency",
                                          "Oracle, image only", "Oracle (true distribution)")}
TABLE_COLUMNS = ("A@1", "A@10")


# The user-agnostic image models (stage 1) and, for each of the three the paper builds on, how
# stage 2 starts from it: the image head always; the tensor also takes the stage-1 tag rows with
# the shared slice W_0 = I (and MCLL's biases), so it starts at the stage-1 ranking. Stage 2
# takes its tag-axis negatives from the whole vocabulary (README: in-batch ones drift to rare
# hashtags), and the MLP's scorer is 64 wide (its [B, vocabulary, H] activations dominate a step).
STAGE1 = {"MCLL": "model=mcll", "NCSL-PPMI": "model=ncsl",
          "NCSL-MS": "model=ncsl,embeddings=mssg"}
# Tensor (NCSL-MS) and MLP (NCSL-PPMI) reach a NaN loss by step 100 at the stage-2 rate 0.05
# (seeds 0 and 1): NCSL's heads are trained through a cosine, so nothing bounds their outputs,
# and with their tag rows stage 2 starts at scores 3x (PPMI) and 9x (MS) MCLL's. Those two rows
# train at a 10x smaller rate (README, finding 6).
STAGE2_TENSOR = {"MCLL": "init_parts=image+tags,shared=true,bias=true",
                 "NCSL-PPMI": "image_dim=300,init_parts=image+tags,shared=true",
                 "NCSL-MS": "image_dim=300,init_parts=image+tags,shared=true,lr=0.005"}
STAGE2_MLP = {"MCLL": "scorer=64", "NCSL-PPMI": "image_dim=300,scorer=64,lr=0.005",
              "NCSL-MS": "image_dim=300,scorer=64"}


def stage2(model: str, stage1: str, options: str, extra: str = "tags_from=vocabulary") -> str:
  """The variant of a stage-2 model started from the stage-1 row `stage1` of the same seed."""
  init = STAGE1[stage1].replace(",", ";")
  return ",".join(p for p in (f"model={model}", f"init=@{init}", options, extra) if p)


def get_sweep(name: str) -> dict[str, list[str]]:
  """Variant lists for `python -m hashjax.tools.sweep`.

    python -m hashjax.tools.sweep --config=experiments/veit.py --sweep=table2 --seeds=3 \
        --workdir=runs/veit_table2 --readme=README.md
    python -m hashjax.tools.sweep --config=experiments/veit.py --sweep=user_dim --seeds=1 \
        --workdir=runs/veit_table2

  table2: Table 2's learned rows (a stage-2 row trains its stage-1 variant of the same seed
  first, or reuses it), and the tensor under stage 1's softmax loss (the README's diagnostic);
  user_dim: Tensor (MCLL) for several user-embedding sizes E (Fig. 7), in the same root so
  that stage 1 is reused; hetrec: Table 2's rows that apply to a real dataset, given by
  --set=data.dir=DIR (README, "Veit et al. on HetRec").
  """
  if name == "table2":
    return {"Table 2: user-agnostic and user-specific models": [
        "model=imagenet", *STAGE1.values(),
        *(stage2("mlp", s, STAGE2_MLP[s]) for s in STAGE2_MLP),
        *(stage2("tensor", s, STAGE2_TENSOR[s]) for s in STAGE2_TENSOR),
        stage2("tensor", "MCLL", STAGE2_TENSOR["MCLL"], "loss=softmax")]}
  if name == "hetrec":  # the rows that apply to real data: no oracle; the MLP's [B, V, H]
    # activations at V = 9,576 hashtags make it ~6x as slow as on the synthetic data, so it is
    # left out (README)
    (rows,) = get_sweep("table2").values()
    return {"Table 2 on HetRec Last.fm-2k (Veit et al.'s filters, temporal split)": [
        row for row in rows if "model=mlp" not in row]}
  if name == "user_dim":
    return {"Figure 7: Tensor (MCLL) against the user-embedding size E": [
        stage2("tensor", "MCLL", f"{STAGE2_TENSOR['MCLL']},E={e}") for e in USER_DIMS]}
  raise ValueError(f"unknown sweep {name!r}; experiments/veit.py has: table2, user_dim, hetrec")


USER_DIMS = (2, 8, 32, 128, 200)


def get_figures(name: str) -> dict:
  """The figures the sweep draws after its tables (hashjax.tools.veit_figures), into
  WORKDIR/figures/<set>/: Figs. 4, 5, 9 and 10 after table2 and hetrec, Fig. 7 after
  user_dim."""
  rows = [v for variants in get_sweep(name).values() for v in variants]
  if name in ("table2", "hetrec"):
    return {"veit": {"veit": {
        "fig4": rows,
        "fig5": [STAGE1["MCLL"], stage2("tensor", "MCLL", STAGE2_TENSOR["MCLL"])],
        "fig9": ["model=imagenet", *STAGE1.values()]}}}
  # Fig. 7 with the paper's E = 50 from the table2 run of the same root
  return {"veit_fig7": {"veit": {"fig7": [stage2("tensor", "MCLL", STAGE2_TENSOR["MCLL"]),
                                          *rows]}}}
