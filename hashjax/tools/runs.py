"""A finished training run, loaded back from its workdir (for reports and figures after a run)."""

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from hashjax import models
from hashjax.data import tag_distribution
from hashjax.data.reader import PostDataset
from hashjax.eval import evaluate
from hashjax.training import checkpoints


@dataclasses.dataclass
class Run:
  """What a run was and the variables it tested (the best validation step)."""
  workdir: str
  config: ml_collections.ConfigDict
  metrics: dict[str, Any]  # metrics.json
  dataset: PostDataset
  model: Any
  variables: Any
  keep: np.ndarray | None  # the balanced distribution's keep probabilities (None: natural)

  def scorer(self):
    return evaluate.model_scorer(self.model.label, self.model, self.variables,
                                 seq_len=self.config.data.seq_len,
                                 context_len=self.config.data.context_len)


def load_run(workdir: str) -> Run:
  """Reads metrics.json, reopens the dataset the run read and restores the tested variables."""
  metrics_path = os.path.join(workdir, "metrics.json")
  if not os.path.exists(metrics_path):
    raise FileNotFoundError(f"{metrics_path} not found: {workdir} is not a finished run")
  with open(metrics_path) as f:
    metrics = json.load(f)
  config = ml_collections.ConfigDict(metrics["config"])
  dataset = PostDataset(metrics["dataset"])  # the directory the run read, wherever it was
  model = models.make_model(config.model, dataset.spec, dataset)
  target = model.init(jax.random.PRNGKey(0), dataset.spec)
  variables = checkpoints.load_selected(workdir, target)
  keep = tag_distribution.keep_probabilities(dataset.tag_counts, config.data.dist)
  return Run(workdir, config, metrics, dataset, model, variables, keep)
