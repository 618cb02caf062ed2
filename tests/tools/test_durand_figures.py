"""Durand's figures from tiny runs: Fig. 3's summary against the runs' metrics and its timing,
the history breakdown against a per-post count and hit computed here, the sweep's figure sets,
and the errors."""

import json
import os
import types

import numpy as np
import pytest

from experiments import durand as durand_config
from hashjax.eval import evaluate
from hashjax.tools import durand_figures as tool
from hashjax.tools import figure_sections as sections
from hashjax.tools import runs as runs_lib
from hashjax.tools import sweep
from hashjax.tools import user_retrieval
from hashjax.training import trainer
from tests.dataset_fixtures import tiny_train_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_dataset):
  """A sweep-like root: model=ours at d_u 8 (2 seeds) and 16, and the user-agnostic model."""
  root = str(tmp_path_factory.mktemp("durand_figures"))
  workdirs = {}
  for variant, arg, seeds in [("model=ours,d_u=8", "d_u=8,dims=16", 2),
                              ("model=ours,d_u=16", "d_u=16,dims=16", 1),
                              ("model=agnostic", "model=agnostic,dims=16", 1)]:
    for seed in range(seeds):
      config = tiny_train_config("durand", arg, steps=10)
      config.batch_size, config.data.seq_len, config.seed = 8, 60, seed
      workdir = sweep.run_dir(root, variant, seed)
      trainer.train_and_evaluate(config, workdir, tiny_dataset)
      workdirs[(variant, seed)] = workdir
  return root, workdirs


def _test(workdir):
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)["test"]


def test_fig3_reads_each_variants_seeds_and_times_the_test_windows(runs, tiny_dataset):
  root, workdirs = runs
  groups = [os.path.join(root, "model=ours,d_u=16"), os.path.join(root, "model=ours,d_u=8")]
  summary = tool.user_dim_summary(groups, window=4)
  assert [s["d_u"] for s in summary] == [8, 16]  # sorted by d_u
  small = summary[0]
  assert small["R@10"] == [_test(workdirs[("model=ours,d_u=8", s)])["R@10"] for s in (0, 1)]
  windows, _ = user_retrieval.history_windows(tiny_dataset, 4)
  assert small["windows"] == len(windows) and small["ms"] > 0
  out = str(runs[0] + "/figures")
  text = tool.durand_figures(out, fig3=groups, window=4)
  assert os.path.exists(os.path.join(out, "recall_by_user_dim.png"))
  r10 = [_test(workdirs[("model=ours,d_u=8", s)])["R@10"] for s in (0, 1)]
  assert f"| 8 | 2 | {sections.pct(np.mean(r10))} ± {sections.pct(np.std(r10))} |" in text
  with pytest.raises(ValueError, match="the same d_u"):
    tool.user_dim_summary([groups[0], workdirs[("model=ours,d_u=16", 0)]], window=4)
  with pytest.raises(ValueError, match="not a GRU"):  # the agnostic model has no history
    tool.user_dim_summary([os.path.join(root, "model=agnostic")], window=4)


def test_history_breakdown_is_the_hit_rate_per_count_of_earlier_posts(runs, tiny_dataset):
  _, workdirs = runs
  pair = [workdirs[("model=agnostic", 0)], workdirs[("model=ours,d_u=16", 0)]]
  result = sections.bucket_accuracy([sections.Context(w) for w in pair], tool.earlier_posts)
  for label, workdir in zip(result["labels"], pair):
    run = runs_lib.load_run(workdir)
    top = evaluate.predict_top_k(run.scorer(), tiny_dataset, "test", k=1,
                                 batch_size=run.config.eval.batch_size)
    rows = top["rows"]
    # earlier posts counted here from the user ids and timestamps, not from first_row_of
    users, times = tiny_dataset.user_ids, tiny_dataset.timestamps
    earlier = np.array([np.sum((users == users[r]) & (times < times[r])) for r in rows])
    hit = np.array([top["pred_ids"][i, 0] in top["true_ids"][i][top["true_mask"][i]]
                    for i in range(len(rows))])
    assert result["overall"][label] == pytest.approx(_test(workdir)["A@1"], abs=1e-12)
    names = [_log2_name(n) for n in earlier]
    for b, name in enumerate(result["buckets"]):
      chosen = np.array([n == name for n in names])
      assert result["posts"][b] == chosen.sum()
      if chosen.any():
        assert result["accuracy"][label][b] == pytest.approx(hit[chosen].mean(), abs=1e-12)
      else:
        assert np.isnan(result["accuracy"][label][b])
  assert sum(result["posts"]) == len(rows)
  # a user's posts fall in several buckets here; "all" counts each user once
  assert result["all_users"] == len(np.unique(tiny_dataset.user_ids[rows]))
  assert sum(result["users"]) > result["all_users"]


def _log2_name(n: int) -> str:
  """The log2 scheme's bucket of n, named as breakdowns.bucket_labels names it."""
  if n == 0:
    return "0"
  low = 2 ** (int(n).bit_length() - 1)
  return str(low) if low == 1 else f"{low}-{2 * low - 1}"


def test_the_sweep_draws_the_history_breakdown_and_the_errors(runs):
  root, workdirs = runs
  module = types.SimpleNamespace(get_figures=lambda name: {"history": {"durand": {
      "history": ["model=agnostic", "model=ours,d_u=8"], "history_buckets": "quantile:3"}}})
  (out,) = sweep.make_figures(module, "fused", root)
  assert out == os.path.join(root, "figures", "history")
  assert os.path.exists(os.path.join(out, "accuracy_by_history.png"))
  text = open(os.path.join(out, "figures.md")).read()
  assert "| user's earlier posts | test posts | users |" in text
  assert "(quantile:3 buckets)" in text
  with pytest.raises(ValueError, match="at least two"):
    tool.durand_figures(out, history=[workdirs[("model=ours,d_u=8", 0)]])
  with pytest.raises(ValueError, match="no figure"):
    tool.durand_figures(out)


def test_the_config_asks_for_figures_of_its_own_sweeps():
  new_users, temporal = durand_config.get_sweep("fused").values()
  figures = durand_config.get_figures("fused")
  assert figures["durand_history"]["durand"]["history"] == new_users
  assert figures["durand_history_temporal"]["durand"]["history"] == temporal
  (fig3,) = durand_config.get_sweep("fig3").values()
  assert durand_config.get_figures("fig3")["durand_fig3"]["durand"]["fig3"] == fig3
  assert "model=ours" in fig3  # d_u 256 is Table 1's run
  assert durand_config.get_figures("table1") == {}
