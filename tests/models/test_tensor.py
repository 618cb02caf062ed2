"""The tensor model: its query is h^T W^(k) f by hand, unseen users get 1/E, and two-stage
training (an MCLL image head, then the tensor with the triplet loss) runs end to end."""

import json
import os

import jax
import numpy as np
import pytest

from hashjax.data.spec import DatasetSpec
from hashjax.models import make_model
from hashjax.models.mlp import MLPClassifier
from hashjax.models.tensor import Tensor
from hashjax.training import trainer
from tests.dataset_fixtures import tiny_train_config

SPEC = DatasetSpec(feature_dim=5, user_meta_dim=0, num_tags=6, num_users=4, max_tags_per_post=2)


def _setup(seed=0):
  model = Tensor(num_users=4, num_tags=6, hidden=(3,), tag_dim=2, user_dim=3)
  variables = model.init(jax.random.key(seed), SPEC)
  rng = np.random.default_rng(seed)
  batch = {"features": rng.normal(size=(5, 5)).astype(np.float32),
           "user_index": np.array([0, 1, 2, 3, 1], np.int32),
           "user_train_posts": np.array([4, 2, 0, 1, 2], np.int32)}
  return model, variables, batch


def test_scores_are_the_bilinear_form_of_the_users_weight_matrix():
  model, variables, batch = _setup()
  params = variables["params"]
  f = np.asarray(model.module().apply(variables, batch["features"], False,
                                      method=lambda m, x, t: m.image(x, t)))
  W, table = np.asarray(params["tensor"]), np.asarray(params["tags"]["embedding"])
  users = np.asarray(params["user"]["embedding"])
  scores = np.asarray(model.query(variables, batch) @ model.tags(variables).T)
  for b in range(5):
    u = users[batch["user_index"][b]] if batch["user_train_posts"][b] else np.full(3, 1 / 3)
    W_k = np.tensordot(u, W, axes=1)  # sum_r u_r W_r, [D, F]
    np.testing.assert_allclose(scores[b], table @ W_k @ f[b], rtol=1e-5, atol=1e-6)


def test_a_user_unseen_in_training_gets_the_mean_weight_matrix_whatever_its_index():
  model, variables, batch = _setup()
  unseen = {**batch, "user_train_posts": np.zeros(5, np.int32)}
  moved = {**unseen, "user_index": np.array([3, 2, 1, 0, 0], np.int32)}
  np.testing.assert_array_equal(model.query(variables, unseen), model.query(variables, moved))
  seen = np.asarray(model.query(variables, batch))
  assert not np.allclose(seen[0], np.asarray(model.query(variables, unseen))[0])


def test_with_a_shared_slice_and_tag_biases_it_starts_where_the_mcll_classifier_ends():
  """Stage 2 from MCLL's image head and tag table: W_0 = I and W = 0 give MCLL's scores."""
  classifier = MLPClassifier(num_tags=6, feature_dim=5, hidden=(3,))
  stage1 = classifier.init(jax.random.key(1), SPEC)
  model = Tensor(num_users=4, num_tags=6, hidden=(3,), tag_dim=3, user_dim=3, shared_slice=True,
                 tag_bias=True)
  variables = model.init(jax.random.key(0), SPEC)
  params = {**variables["params"], "image": stage1["params"]["image"],
            "tags": stage1["params"]["tags"],
            "tensor": np.zeros_like(variables["params"]["tensor"])}
  batch = _setup()[2]
  np.testing.assert_allclose(
      model.query({"params": params}, batch) @ model.tags({"params": params}).T,
      classifier.query(stage1, batch) @ classifier.tags(stage1).T, rtol=1e-5, atol=1e-6)


def test_built_from_the_config_with_the_datasets_sizes():
  model = make_model({"name": "tensor", "kwargs": {"tag_dim": 8, "user_dim": 4}}, SPEC)
  assert (model.num_users, model.num_tags, model.tag_dim, model.user_dim) == (4, 6, 8, 4)
  assert model.report_columns() == {"D": 8, "E": 4, "F": 300}
  with pytest.raises(ValueError, match="user_dim"):
    Tensor(num_users=4, num_tags=6, user_dim=0)


def test_two_stages_mcll_then_tensor_train_end_to_end(tmp_path, tiny_dataset):
  """tiny_dataset is user-disjoint: its test users are unseen, so the fallback is exercised."""
  stage1 = str(tmp_path / "mcll")
  trainer.train_and_evaluate(tiny_train_config("veit", "model=mcll,hidden=16,D=8,E=4",
                                               steps=20), stage1, tiny_dataset)
  config = tiny_train_config("veit", f"model=tensor,init={stage1},hidden=16,D=8,E=4", steps=20)
  config.plateau_patience = 0
  out = trainer.train_and_evaluate(config, str(tmp_path / "tensor"), tiny_dataset)
  with open(os.path.join(stage1, "metrics.json")) as f:
    assert json.load(f)["config"]["model"]["name"] == "mlp"
  assert np.isfinite(out["test"]["P@1"]) and out["test"]["A@10"] > 0
  history = [json.loads(line) for line in open(tmp_path / "tensor" / "metrics.jsonl")]
  assert any("violated_hard_user" in h for h in history)
  assert "| Tensor (MCLL) |" in open(tmp_path / "tensor" / "report.md").read()
