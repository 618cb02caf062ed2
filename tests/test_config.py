"""Config argument parsing and the experiment configs."""

import pytest

from experiments import baselines as baselines_config
from hashjax import config as config_lib


def test_parse_arg_casts_to_the_defaults_types():
  args = config_lib.parse_arg("seeds=5,split=user_disjoint,fast=yes", seeds=3, split="temporal",
                              fast=False, lr=0.1)
  assert args.seeds == 5 and args.split == "user_disjoint" and args.fast is True
  assert args.lr == 0.1


@pytest.mark.parametrize("arg", ["nokey=1", "seeds", "seeds=x", "fast=ture", "fast="])
def test_parse_arg_rejects_bad_arguments(arg):
  with pytest.raises(ValueError, match="config argument"):
    config_lib.parse_arg(arg, seeds=3, fast=False)


@pytest.mark.parametrize("text,value", [("true", True), ("False", False), ("1", True),
                                        ("no", False)])
def test_booleans_take_only_boolean_words(text, value):
  assert config_lib.parse_value(text, True) is value
  with pytest.raises(ValueError, match="not a boolean"):
    config_lib.parse_value("maybe", False)


def test_tuples_are_joined_by_plus():
  assert config_lib.parse_arg("hidden=4096+4096", hidden=(512,)).hidden == (4096, 4096)


def test_baselines_config_variants():
  config = baselines_config.get_config("preset=tiny,seeds=2,split=user_disjoint")
  assert config.seeds == (0, 1) and config.data.preset == "tiny"
  assert config.data.split_scheme == "user_disjoint" and config.data.dir == ""


def test_denton_config_variants():
  from experiments import denton as denton_config
  config = denton_config.get_config("model=multiplicative,dist=balanced,d=32,K=50,seed=2")
  assert config.model.name == "multiplicative" and dict(config.model.kwargs) == {
      "d": 32, "init_std": 0.1, "K": 50}
  assert config.data.dist == "balanced" and config.seed == 2 and config.data.seed == 2
  # user_hidden reaches the user-biased model only, and only when asked for.
  assert "user_hidden" not in denton_config.get_config("model=user_biased").model.kwargs
  assert denton_config.get_config("model=user_biased,user_hidden=24").model.kwargs.user_hidden == 24
  assert "user_hidden" not in denton_config.get_config("user_hidden=24").model.kwargs


def test_classifier_config_variants():
  from experiments import classifier as classifier_config
  config = classifier_config.get_config("loss=softmax,hidden=64+32,batch_norm=false")
  assert config.model.name == "mlp" and config.loss.name == "softmax"
  assert dict(config.model.kwargs) == {"hidden": (64, 32), "dropout_rate": 0.2,
                                       "batch_norm": False}
