"""Durand et al. on the real HetRec Last.fm-2k data (skipped when ../shared/data lacks it): the
README's conversion with GloVe vectors and the split by user, then the hetrec_open sweep's
model=ours row for a few steps, evaluated over the seen, unseen and all hashtags."""

import os

import numpy as np
import pytest

from data_prep import hetrec_lastfm
from hashjax.data import tag_filters
from hashjax.tools import sweep
from tests.data_prep.test_hetrec_lastfm import REAL_RAW
from tests.dataset_fixtures import REPO_ROOT

TINY = ["train_steps=10", "eval_every=1000", "checkpoint_every=10", "log_every=10",
        "data.seq_len=20", "data.context_len=20"]


@pytest.mark.skipif(not os.path.isdir(REAL_RAW), reason=f"real HetRec data absent ({REAL_RAW})")
def test_the_hetrec_sweeps_history_model_trains_on_the_real_data_with_glove(tmp_path):
  converted, filtered = str(tmp_path / "hetrec"), str(tmp_path / "hetrec_glove_ud")
  hetrec_lastfm.convert(REAL_RAW, converted, log=None)
  tag_filters.filter_dataset(converted, filtered, tag_filters.FilterOptions(
      word_vectors="glove", split_scheme="user_disjoint_70_10_20"), log=None)
  module = sweep.load_config_module(os.path.join(REPO_ROOT, "experiments", "durand.py"))
  (rows,) = module.get_sweep("hetrec_open").values()
  result = sweep.run_one(module, "model=ours,vocab=open", 0, str(tmp_path / "runs" / "seed0"),
                         [f"data.dir={filtered}", *TINY])
  assert "model=ours,vocab=open" in rows
  assert result["model"] == "Ours (image+hashtag)" and result["dataset"] == filtered
  for column in module.sweep_columns("hetrec_open"):  # every column the table shows is measured
    assert 0 <= result["test"][column] <= 1
  # the tags of test users that no training post has are ranked, and some are found
  assert np.isfinite(result["test"]["unseen/R@10"])
  assert not any(name.startswith("Oracle") for name in result["results"])  # real data
