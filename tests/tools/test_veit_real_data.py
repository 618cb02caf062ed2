"""Veit et al. on the real HetRec Last.fm-2k data (skipped when ../shared/data lacks it): the
README's conversion, the paper's filters, then the hetrec sweep's MCLL and Tensor (MCLL) rows for
a few steps each."""

import os

import numpy as np
import pytest

from data_prep import hetrec_lastfm
from hashjax.data import tag_filters
from hashjax.tools import sweep
from tests.data_prep.test_hetrec_lastfm import REAL_RAW
from tests.dataset_fixtures import REPO_ROOT

TINY = ["train_steps=10", "eval_every=1000", "checkpoint_every=10", "log_every=10",
        "batch_size=64"]


@pytest.mark.skipif(not os.path.isdir(REAL_RAW), reason=f"real HetRec data absent ({REAL_RAW})")
def test_the_hetrec_sweeps_two_stage_rows_train_on_the_filtered_real_data(tmp_path):
  converted, filtered = str(tmp_path / "hetrec"), str(tmp_path / "hetrec_veit")
  hetrec_lastfm.convert(REAL_RAW, converted, log=None)
  tag_filters.filter_dataset(converted, filtered, tag_filters.FilterOptions(
      drop_numeric=True, drop_most_frequent=10, vocab_size=100_000, max_mean_tags_per_user=15,
      split_scheme="temporal"), log=None)
  module = sweep.load_config_module(os.path.join(REPO_ROOT, "experiments", "veit.py"))
  (rows,) = module.get_sweep("hetrec").values()
  tensor = next(r for r in rows if r.startswith("model=tensor,init=@model=mcll,"))
  result = sweep.run_one(module, tensor, 0, str(tmp_path / "runs" / "tensor" / "seed0"),
                         [f"data.dir={filtered}", *TINY])
  assert result["model"] == "Tensor (MCLL)" and result["dataset"] == filtered
  assert np.isfinite(result["test"]["A@1"]) and 0 < result["test"]["A@10"] <= 1
  assert {"Global frequency", "User-specific frequency"} <= set(result["results"])
  assert not any(name.startswith("Oracle") for name in result["results"])  # real data
