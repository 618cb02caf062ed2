r"""Tambwekar & Dharur 2020, #okboomer: hashtags generated from the image and the caption.

  python -m hashjax.main --config=experiments/okboomer.py --workdir=runs/okboomer
  python -m hashjax.main --config=experiments/okboomer.py:beam=3 --workdir=runs/okboomer_beam

The encoder-decoder of hashjax/models/okboomer.py: image features -> linear -> batch norm
(momentum 0.01); the caption's tokens -> embeddings -> an LSTM whose final state starts the
decoder; an LSTM decoder over hashtag tokens with the image vector beside the previous
hashtag's embedding at every step; up to 20 hashtags and END. Teacher forcing at 0.5 (one draw
per step for the batch), Xavier initialisation, Adam with torch's weight decay 1e-4, the rate
cosine-annealed from 2e-3, batch 16, loss the token cross-entropy ("sequence"). It is
evaluated like every model (P@k / R@k / A@k of the generated set, hashjax.eval.evaluate's
GeneratorScorer) and by BLEU (hashjax.eval.bleu).

Variants: beam (1: greedy decoding), hidden, embed (the word-embedding size; 300 as the
paper's GloVe), image_dim, teacher_forcing, steps, preset, seed, split.
"""

import ml_collections

from hashjax import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = config_lib.parse_arg(arg, beam=1, hidden=512, embed=300, image_dim=256,
                              teacher_forcing=0.5, steps=3000, preset="default", seed=0,
                              split="user_disjoint")
  config = config_lib.train_config()
  config.model = ml_collections.ConfigDict({"name": "okboomer", "kwargs": {
      "hidden": args.hidden, "embed_dim": args.embed, "image_dim": args.image_dim,
      "max_len": 20, "teacher_forcing": args.teacher_forcing, "beam": args.beam}})
  config.loss = ml_collections.ConfigDict({"name": "sequence"})
  config.data = config_lib.data_config(args.preset, args.seed, args.split)
  config.seed = args.seed
  config.max_tags = 20  # the decoder's hashtag slots: the paper's cap of 20
  config.batch_size = 16
  config.learning_rate = 2e-3
  config.optimizer = ml_collections.ConfigDict({"name": "adam", "weight_decay": 1e-4})
  config.schedule = ml_collections.ConfigDict({"name": "cosine"})
  config.train_steps = args.steps
  config.plateau_patience = 0  # the cosine schedule sets the rate
  config.eval_every = max(args.steps // 10, 100)
  config.checkpoint_every = max(args.steps // 5, 200)
  config.eval.batch_size = 256  # generation is sequential: smaller batches, same results
  return config
