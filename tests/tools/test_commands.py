"""Every command module imports beside every other one (no flag defined at import), and the
sweep's --set overrides parse like config arguments."""

import subprocess
import sys

import pytest

from experiments import denton as denton_config
from hashjax.tools import sweep
from tests.dataset_fixtures import REPO_ROOT

COMMANDS = ["hashjax.main", "hashjax.tools.sweep", "hashjax.tools.evaluate_baselines",
            "hashjax.tools.tag_kind_report", "hashjax.tools.top_tag_popularity",
            "hashjax.tools.veit_figures", "hashjax.tools.conditional_retrieval",
            "hashjax.tools.paired", "hashjax.tools.user_retrieval", "hashjax.tools.durand_figures",
            "data_prep.synthetic", "data_prep.validate",
            "data_prep.hetrec_lastfm", "data_prep.filter_tags",
            "benchmarks.denton_train_benchmark", "benchmarks.durand_train_benchmark",
            "benchmarks.lightfm_comparison",
            "benchmarks.three_way_grad_benchmark", "benchmarks.topk_benchmark",
            "benchmarks.veit_train_benchmark", "benchmarks.warp_benchmark"]


def test_command_modules_import_together_and_define_no_flags_at_import():
  script = ("import importlib, sys\n"
            "from absl import flags\n"
            "before = set(flags.FLAGS)\n"
            f"for name in {COMMANDS!r}:\n"
            "  importlib.import_module(name)\n"
            "ours = {'workdir', 'config', 'out', 'dataset', 'seed', 'set', 'raw', 'preset'}\n"
            "print(sorted((set(flags.FLAGS) - before) & ours))\n")
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "[]"


def test_a_command_still_defines_its_flags_when_run():
  out = subprocess.run([sys.executable, "-m", "hashjax.tools.evaluate_baselines", "--help"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert "--dataset" in out.stdout and "--split" in out.stdout  # absl exits 1 after --help


@pytest.mark.parametrize("item,field,value", [
    ("loss.max_trials=20", ("loss", "max_trials"), 20),
    ("learning_rate=0.5", ("learning_rate",), 0.5),
    ("init_from.parts=image+user", ("init_from", "parts"), ("image", "user")),
])
def test_sweep_overrides_are_typed_like_the_field(item, field, value):
  config = denton_config.get_config()
  sweep.apply_override(config, item)
  node = config
  for key in field:
    node = node[key]
  assert node == value


def test_sweep_override_false_is_false_and_bad_values_are_errors():
  config = denton_config.get_config()
  config.model.kwargs.hand_vjp = True
  sweep.apply_override(config, "model.kwargs.hand_vjp=False")
  assert config.model.kwargs.hand_vjp is False
  with pytest.raises(ValueError, match="not a boolean"):
    sweep.apply_override(config, "model.kwargs.hand_vjp=ture")
  with pytest.raises(ValueError, match="has no field 'lr'"):
    sweep.apply_override(config, "lr=0.1")


@pytest.mark.parametrize("args,message", [
    (["--config=experiments/denton.py", "--config.model.kwargs.fooo=1"],
     "--config.model.kwargs.fooo=1: the config has no field 'fooo'"),
    (["--config=experiments/baselines.py:fooo=1"],
     "baselines.py:fooo=1: ValueError: config argument 'fooo=1'"),
    (["--config=experiments/denton.py", "--config.eval_every=0"],
     "ConfigError: config.eval_every must be a positive integer, got 0"),
])
def test_main_reports_a_config_mistake_in_one_line_without_a_traceback(tmp_path, args, message):
  out = subprocess.run([sys.executable, "-m", "hashjax.main", f"--workdir={tmp_path}", *args],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 1
  assert "Traceback" not in out.stderr, out.stderr[-3000:]
  fatal = [line for line in out.stderr.splitlines() if line.startswith("FATAL")]
  assert len(fatal) == 1 and message in fatal[0], out.stderr[-3000:]
