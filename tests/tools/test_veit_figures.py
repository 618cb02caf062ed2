"""Veit et al.'s figures end to end on tiny runs: PNGs, tables, the sweep's hook, and the numbers
against metrics computed directly from each model's full score matrix."""

import json
import os
import shutil
import subprocess
import sys
import types

import matplotlib.image
import numpy as np
import pytest

from hashjax.tools import figure_sections, runs as runs_lib, sweep, veit_figures
from hashjax.training import trainer
from tests.dataset_fixtures import REPO_ROOT, tiny_train_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNGS = ("accuracy_at_1", "accuracy_by_user_posts", "accuracy_by_user_dim",
        "retrieval_precision", "retrieval_precision_by_frequency")
# Sweep variant names (the directories) and the tiny configs trained into them.
VARIANTS = {"model=imagenet": "model=imagenet",
            "model=mcll": "model=mcll,hidden=16",
            "model=tensor,init=@model=mcll": "model=tensor,init={mcll},hidden=16,D=8,E=2"}
MIN_POSITIVES = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Tiny runs on a temporal split (its test users have training posts), laid out as the sweep
  lays them out (ROOT/<variant>/seed0). Figs. 4 and 7 read only metrics.json, so two more runs
  are copies of one with other numbers: a second MCLL seed (A@1 + 0.1) and the tensor at E=4
  (A@10 + 0.05)."""
  from hashjax.data.reader import PostDataset
  from hashjax.data.synthetic import build
  data = str(tmp_path_factory.mktemp("tiny_temporal") / "data")
  build.build_synthetic(data, preset="tiny", seed=0, split_scheme="temporal", log=None)
  dataset = PostDataset(data)
  root = str(tmp_path_factory.mktemp("veit_figures"))
  mcll = sweep.run_dir(root, "model=mcll", 0)
  workdirs = {}
  for variant, arg in VARIANTS.items():
    workdirs[variant] = sweep.run_dir(root, variant, 0)
    trainer.train_and_evaluate(tiny_train_config("veit", arg.format(mcll=mcll), steps=10),
                               workdirs[variant], dataset)
  _copy_metrics(mcll, sweep.run_dir(root, "model=mcll", 1), lambda r: r["test"].update(
      {"A@1": r["test"]["A@1"] + 0.1}))
  workdirs["E=4"] = sweep.run_dir(root, "model=tensor,init=@model=mcll,E=4", 0)
  _copy_metrics(workdirs["model=tensor,init=@model=mcll"], workdirs["E=4"], lambda r: (
      r["config"]["model"]["kwargs"].update(user_dim=4),
      r["test"].update({"A@10": r["test"]["A@10"] + 0.05})))
  return root, workdirs, dataset


def _copy_metrics(source, target, change):
  with open(os.path.join(source, "metrics.json")) as f:
    result = json.load(f)
  change(result)
  os.makedirs(target)
  with open(os.path.join(target, "metrics.json"), "w") as f:
    json.dump(result, f)


def _assert_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def _direct_scores(workdir, dataset):
  """Every test post's scores of every hashtag from the model itself, with the truth."""
  run = runs_lib.load_run(workdir)
  rows = dataset.split_rows("test")
  batch = dataset.read(rows, fields=list(run.model.inputs))
  scores = (np.asarray(run.model.query(run.variables, batch), np.float64)
            @ np.asarray(run.model.tags(run.variables), np.float64).T)
  return scores, batch, rows


def _log2_bucket(n):
  return "0" if n == 0 else next(f"{2 ** b}" if b == 0 else f"{2 ** b}-{2 ** (b + 1) - 1}"
                                 for b in range(64) if n < 2 ** (b + 1))


def test_figures_write_pngs_and_tables(runs):
  root, workdirs, _ = runs
  out = os.path.join(root, "out")
  mcll_variant = os.path.dirname(workdirs["model=mcll"])  # both seeds
  text = veit_figures.veit_figures(
      out, fig4=[workdirs["model=imagenet"], mcll_variant],
      fig5=[workdirs["model=mcll"], workdirs["model=tensor,init=@model=mcll"]],
      fig7=[workdirs["E=4"], workdirs["model=tensor,init=@model=mcll"]],
      fig9=[workdirs["model=imagenet"], workdirs["model=mcll"]], min_positives=MIN_POSITIVES)
  for name in PNGS:
    _assert_png(os.path.join(out, f"{name}.png"))
  assert open(os.path.join(out, "figures.md")).read() == text
  for heading in ("Figure 4", "Figure 5", "Figure 7", "Figure 9", "Figure 10"):
    assert f"({heading})\n" in text

  # Fig. 4: mean ± std over the two MCLL seeds, as the sweep's tables aggregate them.
  a1 = [json.load(open(os.path.join(mcll_variant, s, "metrics.json")))["test"]["A@1"]
        for s in ("seed0", "seed1")]
  assert (f"| MCLL | 2 | {figure_sections.pct(np.mean(a1))} ± "
          f"{figure_sections.pct(np.std(a1))} |") in text
  # Fig. 7: sorted by E, read from the configs.
  a10 = json.load(open(os.path.join(workdirs["E=4"], "metrics.json")))["test"]["A@10"]
  assert text.index("| Tensor (MCLL) | 2 | 1 |") < text.index(
      f"| Tensor (MCLL) | 4 | 1 | {figure_sections.pct(a10)} |")


def test_user_bucket_accuracy_agrees_with_the_full_score_matrix(runs):
  _, workdirs, dataset = runs
  pair = [workdirs["model=mcll"], workdirs["model=tensor,init=@model=mcll"]]
  result = veit_figures.user_bucket_accuracy([figure_sections.Context(w) for w in pair])
  assert result["labels"] == ["MCLL", "Tensor (MCLL)"]
  for label, workdir in zip(result["labels"], pair):
    scores, batch, rows = _direct_scores(workdir, dataset)
    first = scores.argmax(axis=1)  # ties to the lower id, as the top-k
    hit = np.array([first[i] in batch["tag_ids"][i][batch["tag_mask"][i]]
                    for i in range(len(rows))])
    with open(os.path.join(workdir, "metrics.json")) as f:
      assert result["overall"][label] == pytest.approx(json.load(f)["test"]["A@1"], abs=1e-12)
    assert result["overall"][label] == pytest.approx(hit.mean(), abs=1e-12)
    buckets = np.array([_log2_bucket(n) for n in dataset.user_train_posts_of_row[rows]])
    for b, name in enumerate(result["buckets"]):
      chosen = buckets == name
      assert result["posts"][b] == chosen.sum()
      assert result["users"][b] == len(np.unique(dataset.user_ids[rows][chosen]))
      if chosen.any():
        assert result["accuracy"][label][b] == pytest.approx(hit[chosen].mean(), abs=1e-12)
      else:
        assert np.isnan(result["accuracy"][label][b])
    assert set(buckets) <= set(result["buckets"])
  assert result["posts"].sum() == len(dataset.split_rows("test"))


def test_retrieval_precision_agrees_with_the_full_score_matrix(runs):
  _, workdirs, dataset = runs
  pair = [workdirs["model=imagenet"], workdirs["model=mcll"]]
  result = veit_figures.retrieval_precision([figure_sections.Context(w) for w in pair],
                                            min_positives=MIN_POSITIVES, scheme="quantile:3")
  for label, workdir in zip(result["labels"], pair):
    scores, batch, rows = _direct_scores(workdir, dataset)
    labelled = np.zeros((len(rows), dataset.num_tags), bool)
    for i in range(len(rows)):
      labelled[i, batch["tag_ids"][i][batch["tag_mask"][i]]] = True
    queries = np.flatnonzero(labelled.sum(axis=0) >= MIN_POSITIVES)
    np.testing.assert_array_equal(result["query_tags"], queries)
    direct = np.array([labelled[np.argsort(-scores[:, t], kind="stable")[:10], t].mean()
                       for t in queries])
    np.testing.assert_allclose(result["per_tag"][label], direct)
    assert result["mean"][label] == pytest.approx(direct.mean(), abs=1e-12)
    # Fig. 10: the mean over each bucket of ranks (ids + 1), edges from the queries' ranks.
    edges = result["edges"]
    for b in range(len(edges) - 1):
      inside = (queries + 1 >= edges[b]) & (queries + 1 < edges[b + 1])
      assert result["bucket_tags"][b] == inside.sum()
      assert result["by_bucket"][label][b] == pytest.approx(direct[inside].mean(), abs=1e-12)
  assert len(result["buckets"]) <= 3 and result["bucket_tags"].sum() == len(result["query_tags"])


def test_the_sweeps_veit_figures_resolve_variants_and_seeds(runs):
  root, _, _ = runs
  spec = {"fig4": ["model=imagenet", "model=mcll"],
          "fig5": ["model=mcll", "model=tensor,init=@model=mcll"],
          "fig7": ["model=tensor,init=@model=mcll", "model=tensor,init=@model=mcll,E=4"],
          "fig9": ["model=imagenet", "model=mcll"], "min_positives": MIN_POSITIVES}
  module = types.SimpleNamespace(get_figures=lambda name: {"veit": {"veit": spec}})
  written = sweep.make_figures(module, "table2", root)
  assert written == [os.path.join(root, "figures", "veit")]
  for name in PNGS:
    _assert_png(os.path.join(written[0], f"{name}.png"))
  text = open(os.path.join(written[0], "figures.md")).read()
  assert "| MCLL | 2 |" in text  # every finished seed of the variant
  # With seeds=1 only seed 0 counts.
  sweep.make_figures(module, "table2", root, seeds=1)
  assert "| MCLL | 1 |" in open(os.path.join(written[0], "figures.md")).read()


def test_mistakes_are_errors(runs):
  root, workdirs, _ = runs
  out = os.path.join(root, "errors")
  with pytest.raises(ValueError, match="no model.kwargs.user_dim"):
    veit_figures.veit_figures(out, fig7=[workdirs["model=mcll"]])
  with pytest.raises(ValueError, match="compares two runs"):
    veit_figures.veit_figures(out, fig5=[workdirs["model=mcll"]])
  with pytest.raises(FileNotFoundError, match="neither a finished run"):
    veit_figures.veit_figures(out, fig4=[os.path.join(root, "nothing")])
  with pytest.raises(ValueError, match="no hashtag labels 100000 test posts"):
    veit_figures.veit_figures(out, fig9=[workdirs["model=mcll"]], min_positives=100000)
  other = os.path.join(root, "other_data")
  shutil.copytree(workdirs["model=imagenet"], other)
  with open(os.path.join(other, "metrics.json")) as f:
    result = json.load(f)
  result["config"]["data"]["dist"] = "balanced"
  with open(os.path.join(other, "metrics.json"), "w") as f:
    json.dump(result, f)
  with pytest.raises(ValueError, match="different data"):
    veit_figures.veit_figures(out, fig9=[workdirs["model=mcll"], other])


def test_the_command_writes_figures_md(runs):
  root, workdirs, _ = runs
  out = os.path.join(root, "command")
  mcll = os.path.dirname(workdirs["model=mcll"])
  command = [sys.executable, "-m", "hashjax.tools.veit_figures", f"--out={out}",
             f"--fig4={workdirs['model=imagenet']}", f"--fig4={mcll}",
             f"--fig7={workdirs['model=tensor,init=@model=mcll']}"]
  done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  text = open(os.path.join(out, "figures.md")).read()
  assert "(Figure 4)" in text and "(Figure 7)" in text and "Figure 5" not in text
  assert "| ImageNet | 1 |" in text and "| MCLL | 2 |" in text  # paths with commas
  _assert_png(os.path.join(out, "accuracy_at_1.png"))
  done = subprocess.run(command[:4], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode != 0 and "give --fig4" in done.stderr
