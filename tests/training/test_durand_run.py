"""Durand et al.'s model end to end: a tiny run of experiments/durand.py through the trainer."""

import json

import jax
import numpy as np
import pytest

from hashjax.eval import evaluate
from hashjax.training import trainer
from tests.dataset_fixtures import tiny_train_config


def _config(arg="", steps=40, **overrides):
  config = tiny_train_config("durand", ",".join(filter(None, ["d_u=16,dims=16", arg])),
                             steps=steps, **overrides)
  config.batch_size = 8  # user sequences
  config.data.seq_len = 60  # the tiny world's longest history
  return config


def test_tiny_durand_run_learns_and_scores_every_test_post(tmp_path, tiny_dataset):
  out = trainer.train_and_evaluate(_config(steps=60, learning_rate=0.01), str(tmp_path / "run"),
                                   tiny_dataset)
  # 60 steps on the tiny world's ~80 training users do not reach the frequency prior (its A@10
  # is 0.58), but well above a random ranking's ~0.17 (10 of 150 hashtags, ~2.7 per post).
  assert out["test"]["A@10"] > 0.3
  losses = [json.loads(l).get("loss") for l in open(tmp_path / "run" / "metrics.jsonl")]
  losses = [l for l in losses if l is not None]
  assert losses[-1] < losses[0] - 0.3  # from log(150) = 5.0
  scorer = evaluate.TwoTowerScorer("durand", out["model"], out["selected_variables"],
                                   seq_len=60)
  top = evaluate.predict_top_k(scorer, tiny_dataset, "test", k=1)
  assert sorted(top["rows"].tolist()) == tiny_dataset.split_rows("test").tolist()
  # The word vectors are data: frozen and unchanged by training.
  np.testing.assert_array_equal(out["variables"]["params"]["words"]["table"],
                                tiny_dataset.word_vectors)


@pytest.mark.parametrize("arg", ["model=ours", "model=occurrences", "model=fused"])
def test_one_device_and_eight_devices_give_the_same_parameters(tmp_path, tiny_dataset, arg):
  assert jax.device_count() == 8
  runs = [trainer.train_and_evaluate(_config(arg, steps=6, num_devices=devices),
                                     str(tmp_path / f"d{devices}"), tiny_dataset)["variables"]
          for devices in (1, 8)]
  for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-6)


def test_every_sweep_variant_is_a_valid_config():
  from experiments import durand  # pylint: disable=g-import-not-at-top
  from hashjax.training import run_config  # pylint: disable=g-import-not-at-top
  for name in durand.SWEEPS:
    for variants in durand.get_sweep(name).values():
      for variant in variants:
        config = durand.get_config(variant)
        if config.init_from.workdir:  # "@variant": resolved by the sweep
          config.init_from.workdir = "/elsewhere"
        run_config.validate(config)
    for column in durand.sweep_columns(name):
      assert column.split("/")[-1] in durand.TABLE_COLUMNS


def test_an_open_vocabulary_run_reports_seen_unseen_and_all(tmp_path):
  from hashjax.data.reader import PostDataset  # pylint: disable=g-import-not-at-top
  from hashjax.data.synthetic import build  # pylint: disable=g-import-not-at-top
  directory = str(tmp_path / "open")
  build.build_synthetic(directory, preset="tiny", seed=0, split_scheme="user_disjoint_70_10_20",
                        overrides={"held_out_tag_share": 0.3}, log=None)
  dataset = PostDataset(directory)
  config = _config("vocab=open", steps=20)
  config.data.dir = directory
  out = trainer.train_and_evaluate(config, str(tmp_path / "run"), dataset)
  for prefix in ("seen/", "unseen/", ""):
    assert 0 <= out["test"][prefix + "A@10"] <= 1
  reference = out["results"]
  oracle, frequency = reference["Oracle (true distribution)"], reference["Global frequency"]
  # Frequency knows nothing of unseen hashtags (all have training count 0); the oracle does.
  assert oracle["unseen/R@10"] > frequency["unseen/R@10"] + 0.2
