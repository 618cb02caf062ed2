r"""Durand et al. CVPR'20: users represented by their posting history, an open vocabulary.

  python -m hashjax.main --config=experiments/durand.py --workdir=runs/durand
  python -m hashjax.main --config=experiments/durand.py:model=hashtag --workdir=runs/durand_tag
  python -m hashjax.main --config=experiments/durand.py:model=used --workdir=runs/durand_used

Variants (after the colon):
- model: ours (the history GRU over image+hashtag posts, the paper's model), hashtag (its
  hashtag branch only: fusion "tags"), agnostic ([B]: no user), used ([C]: a binary vector of
  the hashtags used before), occurrences ([D]: their counts), word_sum ([E]: the sum of their
  word vectors); tensor_mcll / mcll: Veit et al.'s Tensor (MCLL) and its stage 1 on the same
  data (experiments/veit.py's variants; the tensor gives users unseen in training the 1/E
  vector), tensor_mcll's init the mcll run ("@model=mcll" in a sweep);
- fusion (ours): product (the paper's), sum, concat, mutan, glu, tirg, tags, image (the image
  branch alone: a diagnostic, not the paper's);
- words: fixed (the dataset's word vectors, the paper's GloVe) or learned (a table started at
  random: the paper's "w/o GloVe");
- d_u: the GRU's width (the user representation; 256 here: the paper's 1024, the model's
  default, makes a step 4x as slow on this CPU; the fig3 sweep runs 32 .. 2048); dims:
  d_i = d_t = d_v = d_c = d (the other widths); rank: MUTAN's R;
- history: full (every earlier post updates the user) or train (only training posts: Table
  3's "fixed history", on the temporal split);
- meta, embedding (ours or agnostic): the user tower also reads the user's metadata (Denton's
  input) and / or a learned embedding of a user seen in training (Veit's), dropped per user
  sequence with probability embedding_drop in training (models/durand.py); model=fused is ours
  with both;
- vocabulary: seen (eq. 8: the softmax over the hashtags of the training split; an open
  vocabulary's unseen ones are never pushed down) or all;
- vocab: closed (every hashtag is trained) or open (evaluated over the seen hashtags, Table 1's
  open columns, the unseen ones and all, Table 2's; preset durand becomes durand_open, where a
  fifth of the hashtags never appear in a training post);
- preset, seed, split (user_disjoint_70_10_20: Durand's split by user; temporal: Table 3's
  transductive setting), lr, steps.
Any field can be overridden with --config.FIELD=VALUE.

Training as the paper (Section 4): Adam, eq. 9 (each user's posts averaged, then the users),
one hashtag per post drawn uniformly as the target. A batch holds S = batch_size users' post
sequences (the paper's batch is one user's consecutive posts); each sequence is a whole user
(seq_len >= the longest history), so every post is scored against all of the user's earlier
posts. The paper's ResNet-50 is the dataset's precomputed image features and a learned head;
its rate 5e-5 over 20 epochs is 1e-3 over ~17 epochs here (a far smaller model and dataset).
"""

import ml_collections

from hashjax import config as config_lib

USER_MODELS = {"ours": "gru", "hashtag": "gru", "agnostic": "none", "used": "used",
               "occurrences": "occurrences", "word_sum": "word_sum", "fused": "gru"}
VEIT_MODELS = {"mcll": "model=mcll", "tensor_mcll": "model=tensor"}
VOCABS = {"closed": ("all",), "open": ("seen", "unseen", "all")}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = config_lib.parse_arg(arg, model="ours", fusion="product", words="fixed", d_u=256,
                              dims=256, rank=5, vocabulary="seen", history="full", init="",
                              preset="durand", seed=0, split="user_disjoint_70_10_20",
                              lr=1e-3, steps=1500, meta=False, embedding=False,
                              embedding_drop=0.5, vocab="closed")
  if args.vocab not in VOCABS:
    raise ValueError(f"config argument vocab={args.vocab!r}: choose one of {sorted(VOCABS)}")
  if args.vocab == "open" and args.preset == "durand":
    args.preset = "durand_open"
  if args.model in VEIT_MODELS:
    config = _veit(args)
  elif args.model in USER_MODELS:
    config = _durand(args)
  else:
    raise ValueError(f"config argument model={args.model!r}: choose one of "
                     f"{sorted(USER_MODELS) + sorted(VEIT_MODELS)}")
  config.eval.vocabularies = VOCABS[args.vocab]
  if args.vocab == "open":  # the model is selected on the hashtags it could have learned
    config.plateau_metric = "seen/" + config.plateau_metric
  return config


def _durand(args) -> ml_collections.ConfigDict:
  config = config_lib.train_config()
  fusion = "tags" if args.model == "hashtag" else args.fusion
  config.model = ml_collections.ConfigDict({"name": "durand", "kwargs": {
      "user": USER_MODELS[args.model], "fusion": fusion, "word_vectors": args.words,
      "user_dim": args.d_u, "post_dim": args.dims, "image_dim": args.dims,
      "fused_dim": args.dims, "joint_dim": args.dims, "tag_hidden": args.dims,
      "mutan_rank": args.rank, "history": args.history}})
  fused = args.model == "fused"
  if fused or args.meta:
    config.model.kwargs.user_meta = True
  if fused or args.embedding:
    config.model.kwargs.user_embedding = True
    config.model.kwargs.embedding_drop = args.embedding_drop
  config.loss = ml_collections.ConfigDict({"name": "softmax", "vocabulary": args.vocabulary,
                                           "average": "users"})
  if args.words == "fixed":
    config.frozen = ("words",)  # psi is data: no update moves it (stop_gradient in the model)
  config.optimizer = ml_collections.ConfigDict({"name": "adam"})
  config.learning_rate = args.lr
  config.train_steps = args.steps
  config.batch_size = 8  # user sequences per step (of up to data.seq_len posts each)
  config.data = config_lib.data_config(args.preset, args.seed, args.split)
  # A window of 200 posts holds the whole history of a user of the durand preset (at most 200
  # posts), so a test post sees every earlier post of its user; context_len reaches back over
  # the training posts of a temporal split (Table 3's "full history").
  config.data.seq_len = 200
  config.data.context_len = 200 if args.split == "temporal" else 0
  config.seed = args.seed
  config.eval.ks = (1, 10)
  config.eval_every = 250
  config.plateau_metric = "R@10"
  config.plateau_start_step = 500
  return config


def _veit(args) -> ml_collections.ConfigDict:
  """Veit et al.'s rows on this data: experiments/veit.py's variants, same preset and split."""
  from experiments import veit  # pylint: disable=import-outside-toplevel
  options = [VEIT_MODELS[args.model], f"preset={args.preset}", f"seed={args.seed}",
             f"split={args.split}"]
  if args.model == "tensor_mcll":  # stage 2 as Veit's Table 2 trains it (experiments/veit.py)
    options += [veit.STAGE2_TENSOR["MCLL"], "tags_from=vocabulary", f"init={args.init}"]
  return veit.get_config(",".join(options))


# Table 1's reference rows ([A] frequency) and the paper's metrics.
REFERENCE_ROWS = {"[A] frequency": "Global frequency",
                  "Oracle, image only": "Oracle, image only",
                  "Oracle (true distribution)": "Oracle (true distribution)"}
TABLE_COLUMNS = ("A@1", "A@10", "P@10", "R@1", "R@10")
# [C] and [D] need a fixed vocabulary (the paper leaves them out); the tensor's stage 1 is its
# own MCLL run on the open dataset.
OPEN_VARIANTS = ["model=agnostic", "model=word_sum",
                 "model=tensor_mcll,init=@model=mcll;vocab=open", "model=hashtag",
                 "model=ours,words=learned", "model=ours"]


def sweep_columns(name: str) -> tuple[str, ...]:
  """Table 1's open-vocabulary half is over the seen hashtags; Table 2 the unseen, then all."""
  if name == "table1_open":
    return tuple(f"seen/{c}" for c in TABLE_COLUMNS)
  if name == "table2_open":
    return tuple(f"unseen/{c}" for c in TABLE_COLUMNS) + TABLE_COLUMNS
  if name == "hetrec_open":  # Tables 1 and 2 in one: the seen hashtags, the unseen ones, all
    return ("seen/A@1", "seen/A@10", "seen/R@10", "unseen/A@10", "unseen/R@10", "A@1", "A@10",
            "R@10")
  return TABLE_COLUMNS


def get_sweep(name: str) -> dict[str, list[str]]:
  """Variant lists for `python -m hashjax.tools.sweep --config=experiments/durand.py`."""
  if name == "table1":
    return {"Table 1: user representations (fixed vocabulary)": [
        "model=agnostic", "model=used", "model=occurrences", "model=word_sum",
        "model=mcll", "model=tensor_mcll,init=@model=mcll", "model=hashtag",
        "model=ours,words=learned", "model=ours"]}
  if name == "table4":
    # "tags" is model=hashtag and "product" model=ours: the same strings as Table 1's, so a
    # sweep into the same --workdir trains them once.
    return {"Table 4: the image-hashtag fusion": [
        "model=hashtag", *(f"model=ours,fusion={f}" for f in ("sum", "concat", "mutan", "glu",
                                                              "tirg")), "model=ours"]}
  if name == "table3":
    temporal = "split=temporal"
    return {"Table 3: the transductive setting (temporal split, the same users)": [
        f"model=mcll,{temporal}", f"model=tensor_mcll,init=@model=mcll;{temporal},{temporal}",
        f"model=ours,history=train,{temporal}", f"model=ours,{temporal}"]}
  if name in ("table1_open", "table2_open"):  # the same runs: sweep both into one --workdir
    title = ("Table 1: user representations (open vocabulary, the seen hashtags)"
             if name == "table1_open" else
             "Table 2: the hashtags unseen in training, and all hashtags")
    return {title: [f"{v},vocab=open" for v in OPEN_VARIANTS]}
  if name == "hetrec_open":  # real data, given by --set=data.dir=DIR (README): the hashtags
    # of test users that no training post has are the unseen ones
    return {"Tables 1 and 2 on HetRec Last.fm-2k (GloVe vectors, split by user)": [
        "model=used,vocab=open", "model=occurrences,vocab=open",
        *(f"{v},vocab=open" for v in OPEN_VARIANTS)]}
  if name == "fig3":
    return {"Figure 3: the user representation size d_u": [
        "model=ours" if d == 256 else f"model=ours,d_u={d}" for d in USER_DIMS]}
  if name == "fused":
    rows = HISTORY_ROWS
    return {"Beyond the paper: one user tower from history, metadata and embedding "
            "(new users)": rows,
            "The same on the temporal split (the same users)": [
                f"{row},split=temporal" for row in rows]}
  raise ValueError(f"unknown sweep {name!r}; experiments/durand.py has: {', '.join(SWEEPS)}")


SWEEPS = ("table1", "table1_open", "table2_open", "table3", "table4", "fig3", "fused",
          "hetrec_open")
USER_DIMS = (32, 64, 128, 256, 512, 1024, 2048)  # Fig. 3's d_u (256: Table 1's model=ours run)
# The history breakdown's runs: history alone first (the difference is against it).
HISTORY_ROWS = ["model=ours", "model=agnostic,meta=true", "model=agnostic,embedding=true",
                "model=ours,meta=true", "model=fused"]


def get_figures(name: str) -> dict:
  """What the sweep draws after its tables (hashjax.tools.durand_figures), into
  WORKDIR/figures/<set>/: Fig. 3 after fig3; A@1 by the user's earlier posts after fused, on
  each split."""
  if name == "fig3":
    (rows,) = get_sweep("fig3").values()
    return {"durand_fig3": {"durand": {"fig3": rows}}}
  if name == "fused":
    return {"durand_history": {"durand": {"history": HISTORY_ROWS}},
            "durand_history_temporal": {"durand": {"history": [
                f"{row},split=temporal" for row in HISTORY_ROWS]}}}
  return {}
