"""top_tag_popularity against a direct computation from the full score matrix."""

import jax
import numpy as np

from hashjax.eval import evaluate
from hashjax.models.tensor import Tensor
from hashjax.tools import top_tag_popularity


def test_popularity_of_the_first_ranked_hashtags_by_hand(tiny_dataset):
  model = Tensor.from_spec(tiny_dataset.spec, hidden=(8,), tag_dim=4, user_dim=2)
  variables = model.init(jax.random.key(0), tiny_dataset.spec)
  scorer = evaluate.TwoTowerScorer("tensor", model, variables)
  got = top_tag_popularity.top1_popularity(scorer, tiny_dataset, batch_size=64)
  rows = tiny_dataset.split_rows("test")
  batch = tiny_dataset.read(rows, fields=list(model.inputs))
  first = (np.asarray(model.query(variables, batch)) @ np.asarray(model.tags(variables)).T
           ).argmax(-1)
  hits = [first[i] in batch["tag_ids"][i][batch["tag_mask"][i]] for i in range(len(rows))]
  assert got["A@1"] == np.mean(hits)
  assert got["median_rank"] == np.median(first)
  assert got["share_top100"] == np.mean(first < 100)
  assert got["true_median_rank"] == np.median(batch["tag_ids"][batch["tag_mask"]])
  assert got["distinct"] == len(set(first.tolist()))
