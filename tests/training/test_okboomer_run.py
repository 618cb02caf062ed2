"""experiments/okboomer.py end to end on the tiny world: the generator trains through the one
trainer, its loss falls, and it is evaluated by the ranking metrics and BLEU."""

import json

import numpy as np

from hashjax.training import trainer
from tests.dataset_fixtures import tiny_train_config


def test_a_tiny_generator_run_trains_and_reports_ranking_metrics_and_bleu(tmp_path):
  config = tiny_train_config("okboomer", "hidden=32,embed=16,image_dim=16", steps=60)
  config.learning_rate = 1e-2
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(config, workdir)
  result = json.loads(open(f"{workdir}/metrics.json").read())
  test = result["test"]
  for metric in ("P@1", "R@5", "A@10", "BLEU-1", "BLEU-4"):
    assert 0.0 <= test[metric] <= 1.0, metric
  assert test["P@1"] > 0.0 and test["BLEU-1"] > 0.0
  losses = [json.loads(line).get("loss") for line in open(f"{workdir}/metrics.jsonl")]
  losses = [l for l in losses if l is not None]
  assert losses[-1] < losses[0]
  assert result["model"].startswith("#okboomer")
