"""experiments/okboomer.py end to end on the tiny world: the generator trains through the one
trainer, its loss falls, and it is evaluated by the ranking metrics and BLEU."""

import json

import numpy as np

from hashjax.training import trainer
from tests.dataset_fixtures import tiny_train_config


def test_a_tiny_generator_run_trains_and_reports_ranking_metrics_and_bleu(tmp_path):
  config = tiny_train_config("okboomer", "hidden=32,embed=16,image_dim=16", steps=60)
  config.learning_rate = 1e-2
  config.eval_every = 30  # each evaluation generates for every validation post
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(config, workdir)
  result = json.loads(open(f"{workdir}/metrics.json").read())
  test = result["test"]
  for metric in ("P@1", "R@5", "A@10", "BLEU-1", "BLEU-4"):
    assert 0.0 <= test[metric] <= 1.0, metric
  assert test["P@1"] > 0.0 and test["BLEU-1"] > 0.0
  assert test["loss"] > 0  # the teacher-forced token cross-entropy on the test posts
  logged = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
  losses = [r["loss"] for r in logged if "loss" in r]
  assert losses[-1] < losses[0]
  assert all(0 <= r["bleu1"] <= 1 for r in logged if "loss" in r)  # training BLEU-1
  assert all(r["val/loss"] > 0 and 0 <= r["val/BLEU-1"] <= 1 for r in logged
             if "val/loss" in r)
  assert result["model"].startswith("#okboomer")
