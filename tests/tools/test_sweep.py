"""The sweep runner: runs variants x seeds, skips finished runs, assembles the paper's tables."""

import json
import os

import pytest

from hashjax.tools import sweep
from tests.dataset_fixtures import REPO_ROOT

CONFIG = os.path.join(REPO_ROOT, "experiments", "denton.py")
TINY = ["train_steps=20", "batch_size=32", "loss.max_trials=20", "eval_every=10",
        "checkpoint_every=10", "log_every=10"]


def test_denton_sweep_lists_every_row_of_tables_3_and_4():
  tables = sweep.load_config_module(CONFIG).get_sweep("tables")
  assert len(tables) == 2
  for rows in tables.values():
    assert len(rows) == 13  # 4 bilinear + 4 user-biased + 5 3-way, as in the paper


def test_veit_sweep_lists_table_2s_rows_and_its_figures_name_them():
  module = sweep.load_config_module(os.path.join(REPO_ROOT, "experiments", "veit.py"))
  (rows,) = module.get_sweep("table2").values()
  assert len(rows) == 11  # ImageNet, 3 image models, 3 MLPs, 3 tensors, the softmax diagnostic
  configs = {row: module.get_config(row) for row in rows}
  sources = {c.init_from.workdir for c in configs.values() if c.init_from.workdir}
  stage1 = {s.removeprefix(sweep.STAGE_PREFIX).replace(";", ",") for s in sources}
  assert stage1 == set(module.STAGE1.values()) and stage1 <= set(rows)
  for row, config in configs.items():
    source = config.init_from.workdir.removeprefix(sweep.STAGE_PREFIX).replace(";", ",")
    if source.startswith("model=ncsl"):  # a head loaded from NCSL has its linear layer to R^D
      assert config.model.kwargs.image_dim == module.get_config(source).model.kwargs.dim, row
  figures = module.get_figures("table2")["veit"]["veit"]
  assert set(figures["fig4"]) == set(rows)
  assert set(figures["fig5"]) <= set(rows) and set(figures["fig9"]) <= set(rows)
  (dims,) = module.get_sweep("user_dim").values()
  assert [module.get_config(v).model.kwargs.user_dim for v in dims] == list(module.USER_DIMS)
  assert module.get_figures("user_dim")["veit_fig7"]["veit"]["fig7"][0] in rows


def test_runs_are_reused_and_tables_are_assembled(tmp_path, monkeypatch):
  monkeypatch.setenv("HASHJAX_DATA_DIR", str(tmp_path / "data"))
  module = sweep.load_config_module(CONFIG)
  variants = ["model=bilinear,d=8,preset=tiny", "model=multiplicative,d=8,K=4,preset=tiny"]
  runs = {v: [sweep.run_one(module, v, seed, str(tmp_path / v / f"s{seed}"), TINY)
              for seed in range(2)] for v in variants}
  mtime = os.path.getmtime(tmp_path / variants[0] / "s0" / "metrics.json")
  again = sweep.run_one(module, variants[0], 0, str(tmp_path / variants[0] / "s0"), TINY)
  assert again == runs[variants[0]][0]  # finished runs are read back, not retrained
  assert os.path.getmtime(tmp_path / variants[0] / "s0" / "metrics.json") == mtime
  with pytest.raises(ValueError, match="fields learning_rate differ"):  # a stale run is no row
    sweep.run_one(module, variants[0], 0, str(tmp_path / variants[0] / "s0"),
                  TINY + ["learning_rate=0.5"])
  # A run saved before a config field existed is reused while the field keeps its default.
  path = tmp_path / variants[0] / "s0" / "metrics.json"
  saved = json.loads(path.read_text())
  del saved["config"]["eval"]["vocabularies"]
  path.write_text(json.dumps(saved))
  assert sweep.run_one(module, variants[0], 0, str(path.parent), TINY)["test"] == again["test"]

  rows = sweep.table_rows(runs)
  names = [name for name, _ in rows]
  assert names == ["Freq. baseline", "Oracle", "Bilinear", "3-way mult."]
  assert rows[3][1]["columns"] == {"d": 8, "K": 4} and rows[2][1]["columns"] == {"d": 8}
  assert len(rows[2][1]["P@1"]["values"]) == 2  # one value per seed

  readme = tmp_path / "README.md"
  readme.write_text("intro\n<!-- sweep:tables -->\nold\n<!-- /sweep:tables -->\noutro\n")
  sweep.write_into_markdown(str(readme), "tables", sweep.render({"T": rows}, seeds=2))
  text = readme.read_text()
  assert "old" not in text and "| 3-way mult. | 8 | 4 |" in text and text.endswith("outro\n")
  assert "±" in text
  with pytest.raises(ValueError, match="markers"):
    sweep.write_into_markdown(str(readme), "other", "x")
  readme.write_text(readme.read_text() * 2)  # two sweeps of one name would overwrite each other
  with pytest.raises(ValueError, match="more than once"):
    sweep.write_into_markdown(str(readme), "tables", "x")
  one_seed = sweep.render({"T": sweep.table_rows({v: runs[v][:1] for v in variants})}, seeds=1)
  assert "(1 seed)" in one_seed and "±" not in one_seed


def test_a_two_stage_variant_trains_its_first_stage_once_and_names_it(tmp_path, monkeypatch):
  monkeypatch.setenv("HASHJAX_DATA_DIR", str(tmp_path / "data"))
  module = sweep.load_config_module(os.path.join(REPO_ROOT, "experiments", "veit.py"))
  small = "preset=tiny,hidden=8,D=4,E=2"
  tiny = [item for item in TINY if not item.startswith("loss.")]
  second = f"model=tensor,{small},init=@model=mcll;{small.replace(',', ';')}"
  run = sweep.run_one(module, second, 0, str(tmp_path / "root" / "v" / "seed0"), tiny)
  first = tmp_path / "root" / f"model=mcll,{small}" / "seed0"
  assert (first / "metrics.json").exists()
  assert run["model"] == "Tensor (MCLL)"
  assert run["config"]["init_from"]["workdir"] == str(first)
  mtime = os.path.getmtime(first / "metrics.json")
  again = sweep.run_one(module, second, 0, str(tmp_path / "root" / "v" / "seed0"), tiny)
  assert again == run and os.path.getmtime(first / "metrics.json") == mtime
  # Veit's Table 2 format: both frequency baselines and its own metrics
  rows = sweep.table_rows({second: [run]}, module.REFERENCE_ROWS)
  assert [name for name, _ in rows][:2] == ["Global frequency", "User-specific frequency"]
  text = sweep.render({"Table 2": rows}, 1, module.TABLE_COLUMNS)
  assert "| Method | D | E | F | A@1 | A@10 |" in text and "| Tensor (MCLL) |" in text
