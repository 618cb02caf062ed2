r"""Runs a list of config variants over several seeds and assembles the paper's tables.

  python -m hashjax.tools.sweep --config=experiments/denton.py --sweep=tables --seeds=3 \
      --workdir=runs/denton_tables --readme=README.md

The config module's `get_sweep(name)` returns {table title: [variant args, ...]}. Every
(variant, seed) trains in its own workdir, WORKDIR/<variant>/seed<i>; a finished run (one with a
metrics.json) is skipped, so the sweep can be killed and rerun and it continues. A finished run
of a different config (the experiment file changed since) is an error, never a stale table row.
Tables have one row per variant (mean ± std over seeds) plus the frequency baseline and the
oracle, as in Denton et al. Tables 3-4; they go to WORKDIR/tables.md and, with --readme, between
the <!-- sweep:NAME --> markers of that file. A config module may set its own REFERENCE_ROWS
({row name: the run results' name}) and TABLE_COLUMNS (the metrics shown), for a paper whose
tables differ (Veit et al.'s Table 2: both frequency baselines, A@1 and A@10), and
`sweep_columns(name)` for sweeps whose columns differ (Durand et al.'s Table 2: the metrics over
the unseen hashtags, "unseen/A@1", beside those over all of them).
"""

import importlib.util
import json
import os
import re
import time

from absl import app, flags, logging

from hashjax import config as config_lib
from hashjax.eval import oracles, report
from hashjax.training import run_config, trainer

STAGE_PREFIX = "@"  # init_from.workdir="@VARIANT": that variant's run of the same seed
REFERENCE_ROWS = {"Freq. baseline": "Global frequency",
                  "Oracle": oracles.Oracle.name}


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("config", None, "Experiment config file.", required=True)
  flags.DEFINE_string("sweep", "tables", "Which get_sweep(name) list to run.")
  flags.DEFINE_integer("seeds", 3, "Seeds per variant (each is its own synthetic world).")
  flags.DEFINE_string("workdir", None, "Root of all runs.", required=True)
  flags.DEFINE_string("readme", None, "Also write the tables into this markdown file.")
  flags.DEFINE_multi_string("set", [], "FIELD=VALUE applied to every run's config.")


def load_config_module(path: str):
  spec = importlib.util.spec_from_file_location("sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def apply_override(config, item: str) -> None:
  """FIELD=VALUE (dotted FIELD), typed like the field's current value (config.parse_value)."""
  field, sep, value = item.partition("=")
  if not sep:
    raise ValueError(f"--set={item!r}: expected FIELD=VALUE")
  *parents, leaf = field.split(".")
  node = config
  try:
    for p in parents:
      node = node[p]
    current = node[leaf]
  except (KeyError, AttributeError) as e:
    raise ValueError(f"--set={item!r}: the config has no field {field!r}") from e
  node[leaf] = config_lib.parse_value(value, current)


def run_dir(root: str, variant: str, seed: int) -> str:
  """Where the sweep keeps (variant, seed): root/<variant, made path-safe>/seed<i>."""
  return os.path.join(root, _slug(variant), f"seed{seed}")


def _slug(variant: str) -> str:
  return re.sub(r"[^A-Za-z0-9=,._-]", "_", variant) or "default"


def run_one(module, variant: str, seed: int, workdir: str, overrides) -> dict:
  """Trains one (variant, seed) unless its workdir already holds a finished run.

  Two-stage variants: a config whose init_from.workdir is "@VARIANT" (";" for "," inside it)
  starts from that variant's run of the same seed, a sibling of `workdir`, trained first if
  it is not finished yet.
  """
  result_path = os.path.join(workdir, "metrics.json")
  config = module.get_config(f"{variant},seed={seed}" if variant else f"seed={seed}")
  for item in overrides:
    apply_override(config, item)
  if config.init_from.workdir.startswith(STAGE_PREFIX):
    stage = config.init_from.workdir[len(STAGE_PREFIX):].replace(";", ",")
    stage_dir = os.path.join(os.path.dirname(os.path.dirname(workdir)), _slug(stage),
                             os.path.basename(workdir))
    run_one(module, stage, seed, stage_dir, overrides)
    config.init_from.workdir = stage_dir
  if os.path.exists(result_path):
    with open(result_path) as f:
      result = json.load(f)
    changed = run_config.config_changes(result["config"], config)
    if changed:
      raise ValueError(f"{workdir} holds a run of another config (fields {', '.join(changed)} "
                       "differ); use a new --workdir, or delete that run to redo it")
    return result
  start = time.time()
  trainer.train_and_evaluate(config, workdir)
  logging.info("%s seed %d done in %.0fs", variant, seed, time.time() - start)
  with open(result_path) as f:
    return json.load(f)


def table_rows(runs_by_variant: dict[str, list[dict]],
               reference_rows: dict[str, str] = REFERENCE_ROWS) -> list[tuple[str, dict]]:
  """The reference rows (from the first variant's runs), then one row per variant, each the
  mean ± std over seeds. Rows are named by model, as in the paper; the model's descriptive
  columns (Denton's d and K) tell them apart."""
  rows = []
  first = next(iter(runs_by_variant.values()))
  for label, name in reference_rows.items():
    if name in first[0]["results"]:
      rows.append((label, report.aggregate_seeds([{label: r["results"][name]}
                                                  for r in first])[label]))
  for runs in runs_by_variant.values():
    stats = report.aggregate_seeds([{"m": r["test"]} for r in runs])["m"]
    rows.append((runs[0]["model"], {"columns": runs[0]["columns"], **stats}))
  return rows


def render(tables: dict[str, list], seeds: int, columns=report.TABLE_COLUMNS) -> str:
  parts = []
  for title, rows in tables.items():
    over = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"
    parts.append(f"**{title}** ({over})\n\n" +
                 report.format_table(rows, columns))
  return "\n\n".join(parts) + "\n"


def write_into_markdown(path: str, name: str, text: str) -> None:
  """Replaces what stands between <!-- sweep:NAME --> and <!-- /sweep:NAME --> in `path`."""
  with open(path) as f:
    content = f.read()
  begin, end = f"<!-- sweep:{name} -->", f"<!-- /sweep:{name} -->"
  if begin not in content or end not in content:
    raise ValueError(f"{path} has no {begin} ... {end} markers")
  if content.count(begin) > 1:  # two papers' sweeps of one name would overwrite each other
    raise ValueError(f"{path} has {begin} more than once")
  pattern = re.escape(begin) + ".*?" + re.escape(end)
  content = re.sub(pattern, lambda _: f"{begin}\n{text}{end}", content, flags=re.S)
  with open(path, "w") as f:
    f.write(content)


def main(argv):
  del argv
  f = flags.FLAGS
  module = load_config_module(f.config)
  sweep = module.get_sweep(f.sweep)
  tables = {}
  for title, variants in sweep.items():
    runs = {}
    for variant in variants:
      runs[variant] = [run_one(module, variant, seed, run_dir(f.workdir, variant, seed), f.set)
                       for seed in range(f.seeds)]
    tables[title] = table_rows(runs, getattr(module, "REFERENCE_ROWS", REFERENCE_ROWS))
  columns = (module.sweep_columns(f.sweep) if hasattr(module, "sweep_columns") else
             getattr(module, "TABLE_COLUMNS", report.TABLE_COLUMNS))
  text = render(tables, f.seeds, columns)
  with open(os.path.join(f.workdir, "tables.md"), "w") as out:
    out.write(text)
  if f.readme:
    write_into_markdown(f.readme, f.sweep, text)
  print(text)
  if hasattr(module, "get_figures"):
    print("figures:", ", ".join(make_figures(module, f.sweep, f.workdir, seeds=f.seeds)))


def make_figures(module, name: str, root: str, seed: int = 0,
                 seeds: int | None = None) -> list[str]:
  """After the tables: the figures the config's get_figures(name) lists, into
  root/figures/<set>/; returns the directories written.

  A set's spec is one of (variants as in get_sweep):
    {"compare": [variant, ...]} and / or {"workdir": variant, "balanced": variant}
        Denton's figures (hashjax.tools.figures) from the runs of `seed`;
    {"veit": {"fig4": [...], "fig5": [agnostic, specific], "fig7": [...], "fig9": [...],
              and optionally "user_buckets", "tag_buckets", "min_positives"}}
        Veit's figures (hashjax.tools.veit_figures): Figs. 5, 9 and 10 from the runs of `seed`,
        Figs. 4 and 7 from seeds 0..seeds-1 of each variant (mean ± std; seeds None: every
        finished seed<i> run of the variant);
    {"durand": {"fig3": [...], "history": [...], and optionally "history_buckets"}}
        Durand's figures (hashjax.tools.durand_figures): Fig. 3 from the seeds of each variant
        as Veit's Figs. 4 and 7, the history breakdown from the runs of `seed`.
  """
  written = []
  for figure_set, spec in module.get_figures(name).items():
    out = os.path.join(root, "figures", figure_set)
    if spec.get("compare") or spec.get("workdir"):
      from hashjax.tools import figures  # matplotlib, scikit-learn once the tables are done
      if spec.get("compare"):
        figures.compare_runs([run_dir(root, v, seed) for v in spec["compare"]], out)
      if spec.get("workdir"):
        balanced = spec.get("balanced")
        figures.run_figures(run_dir(root, spec["workdir"], seed), out=out,
                            balanced=run_dir(root, balanced, seed) if balanced else None)
    if spec.get("veit"):
      _veit_figures(root, dict(spec["veit"]), out, seed, seeds)
    if spec.get("durand"):
      _durand_figures(root, dict(spec["durand"]), out, seed, seeds)
    written.append(out)
  return written


def _seed_groups(root: str, variants, seeds: int | None) -> list:
  """Each variant's runs as a group of seeds: seeds 0..seeds-1, or (seeds None) its variant
  directory, whose finished seed<i> runs the figure tools read."""
  if seeds:
    return [[run_dir(root, v, s) for s in range(seeds)] for v in variants]
  return [os.path.dirname(run_dir(root, v, 0)) for v in variants]


def _veit_figures(root: str, spec: dict, out: str, seed: int, seeds: int | None) -> None:
  from hashjax.tools import veit_figures  # matplotlib once the tables are done
  veit_figures.veit_figures(
      out, fig4=_seed_groups(root, spec.pop("fig4", []), seeds),
      fig7=_seed_groups(root, spec.pop("fig7", []), seeds),
      fig5=[run_dir(root, v, seed) for v in spec.pop("fig5", [])],
      fig9=[run_dir(root, v, seed) for v in spec.pop("fig9", [])], **spec)


def _durand_figures(root: str, spec: dict, out: str, seed: int, seeds: int | None) -> None:
  from hashjax.tools import durand_figures  # matplotlib once the tables are done
  durand_figures.durand_figures(
      out, fig3=_seed_groups(root, spec.pop("fig3", []), seeds),
      history=[run_dir(root, v, seed) for v in spec.pop("history", [])], **spec)


if __name__ == "__main__":
  define_flags()
  app.run(main)
