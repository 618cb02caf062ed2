"""The figures command end to end on tiny runs: PNGs, report sections, the sweep's figures."""

import os
import types

from absl import flags
import matplotlib.image
import pytest

from experiments import denton as denton_config
from hashjax.tools import figure_sections, figures, sweep
from hashjax.training import trainer
from tests.dataset_fixtures import tiny_train_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VARIANTS = {"mult": "model=multiplicative,preset=tiny", "bil": "model=bilinear,preset=tiny",
            "mult_bal": "model=multiplicative,preset=tiny,dist=balanced"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_dataset):
  """Three tiny runs laid out as the sweep lays them out (ROOT/<variant>/seed0)."""
  root = tmp_path_factory.mktemp("figures")
  workdirs = {}
  for key, variant in VARIANTS.items():
    config = tiny_train_config("denton", variant.replace(",preset=tiny", ""), steps=20)
    workdirs[key] = str(root / variant / "seed0")
    trainer.train_and_evaluate(config, workdirs[key], tiny_dataset)
  return str(root), workdirs


def _assert_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_run_figures_write_pngs_and_one_replaceable_report_section(runs):
  _, workdirs = runs
  text = figures.run_figures(workdirs["mult"], balanced=workdirs["mult_bal"], neighbours=50)
  out = os.path.join(workdirs["mult"], "figures")
  for name in ("recall_at_10", "top10_kinds", "probing", "tsne_user_vectors"):
    _assert_png(os.path.join(out, f"{name}.png"))
  for heading in ("Recall at 10", "Examples (Table 5)", "Demographic probing (Table 6)",
                  "t-SNE of the user vectors (Figure 7)"):
    assert f"### {heading}" in text
  assert "3-way mult., balanced" in text  # the balanced run's column
  report = open(os.path.join(workdirs["mult"], "report.md")).read()
  assert report.count(figure_sections.SECTION) == 1 and "| Method |" in report  # the run's table kept
  # A rerun replaces the section (here without the balanced column), never appends another.
  figures.run_figures(workdirs["mult"], neighbours=50)
  report = open(os.path.join(workdirs["mult"], "report.md")).read()
  assert report.count(figure_sections.SECTION) == 1 and "| Method |" in report
  assert "3-way mult., balanced" not in report


def test_a_model_without_user_inputs_gets_no_probing_or_tsne(runs):
  _, workdirs = runs
  text = figures.run_figures(workdirs["bil"], out=os.path.join(workdirs["bil"], "elsewhere"))
  assert "### Examples (Table 5)" in text and "Table 6" not in text and "t-SNE" not in text
  assert os.path.exists(os.path.join(workdirs["bil"], "elsewhere", "figures.md"))
  _assert_png(os.path.join(workdirs["bil"], "elsewhere", "recall_at_10.png"))


def test_without_a_world_the_figures_skip_kinds_probing_and_the_oracle(runs, monkeypatch):
  root, workdirs = runs
  monkeypatch.setattr(figure_sections.oracles, "has_oracle", lambda dataset: False)  # as on real data
  text = figures.run_figures(workdirs["mult"], out=os.path.join(root, "no_world"))
  assert "### Examples (Table 5)" in text and "Table 6" not in text and "[c]" not in text
  text = figures.compare_runs([workdirs["bil"], workdirs["mult"]], os.path.join(root, "no_w"))
  assert "AP Oracle" not in text and "AP 3-way mult." in text
  _assert_png(os.path.join(root, "no_w", "pr_curves.png"))


def test_compare_runs_and_the_sweeps_figures(runs):
  root, workdirs = runs
  out = os.path.join(root, "compare")
  text = figures.compare_runs([workdirs["bil"], workdirs["mult"]], out)
  for name in ("pr_curves", "recall_at_10"):
    _assert_png(os.path.join(out, f"{name}.png"))
  assert open(os.path.join(out, "figures.md")).read().strip() == text.strip()
  assert "AP Oracle" in text and "largest gain of 3-way mult." in text
  with pytest.raises(ValueError, match="different data"):  # natural vs balanced test posts
    figures.compare_runs([workdirs["mult"], workdirs["mult_bal"]], out)

  module = types.SimpleNamespace(get_figures=lambda name: {
      "natural": {"compare": [VARIANTS["bil"], VARIANTS["mult"]]},
      "pair": {"workdir": VARIANTS["mult"], "balanced": VARIANTS["mult_bal"]}})
  written = sweep.make_figures(module, "tables", root)
  assert written == [os.path.join(root, "figures", name) for name in ("natural", "pair")]
  _assert_png(os.path.join(root, "figures", "natural", "pr_curves.png"))
  _assert_png(os.path.join(root, "figures", "pair", "probing.png"))
  assert "3-way mult., balanced" in open(os.path.join(root, "figures", "pair", "figures.md")).read()


def test_denton_figures_name_rows_of_its_tables():
  rows = {v for variants in denton_config.get_sweep("tables").values() for v in variants}
  sets = denton_config.get_figures("tables")
  named = [v for spec in sets.values() for vs in spec.values()
           for v in (vs if isinstance(vs, list) else [vs])]
  assert len(sets["natural"]["compare"]) == 3 and set(named) <= rows
  assert denton_config.get_figures("other") == {}


def test_write_section_replaces_only_its_own_section(tmp_path):
  path = str(tmp_path / "report.md")
  with open(path, "w") as f:
    f.write("# Run\n\ntable\n")
  figure_sections.write_section(path, f"{figure_sections.SECTION}\n\nold\n")
  with open(path, "a") as f:
    f.write("\n## Later\n\nkept\n")
  figure_sections.write_section(path, f"{figure_sections.SECTION}\n\nnew\n")
  text = open(path).read()
  assert text == f"# Run\n\ntable\n\n{figure_sections.SECTION}\n\nnew\n\n## Later\n\nkept\n"


def test_importing_the_command_defines_no_flags():
  assert "neighbours" not in flags.FLAGS and "compare" not in flags.FLAGS
