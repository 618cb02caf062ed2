"""NCSL-PPMI and NCSL-MS: built from the dataset, a fixed unit-norm tag table, cosine scores."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hashjax import models
from hashjax.data import multisense
from hashjax.data import tag_cooccurrence
from hashjax.data.spec import DatasetSpec
from hashjax.models import ncsl
from hashjax.training import objectives

SPEC = DatasetSpec(feature_dim=6, user_meta_dim=0, num_tags=5, num_users=2, max_tags_per_post=3)
# Row 4 is a hashtag without co-occurrence: the zero row.
TABLE = np.array([[3., 4., 0.], [0., 2., 0.], [1., -1., 1.], [-2., 0., 0.5], [0., 0., 0.]],
                 np.float32)


def _batch(seed=0, b=8):
  rng = np.random.default_rng(seed)
  tag_ids = np.array([[0, 1, -1], [2, -1, -1], [3, 4, 0], [4, -1, -1]] * (b // 4))
  return {"features": jnp.asarray(rng.standard_normal((b, 6)), jnp.float32),
          "tag_ids": jnp.asarray(tag_ids), "tag_mask": jnp.asarray(tag_ids >= 0)}


def _model(**kwargs):
  return ncsl.NCSL(embeddings=TABLE, **kwargs)


def test_make_model_builds_it_from_the_dataset_training_ppmi(tiny_dataset):
  config = {"name": "ncsl", "kwargs": {"dim": 8, "hidden": (16,)}}
  model = models.make_model(config, tiny_dataset.spec, tiny_dataset)
  expected = tag_cooccurrence.training_ppmi_embeddings(tiny_dataset, 8).embeddings
  np.testing.assert_array_equal(model.embeddings, expected)
  variables = model.init(jax.random.key(0), tiny_dataset.spec)
  np.testing.assert_array_equal(variables["params"]["tags"]["embedding"], expected)
  assert model.report_columns() == {"D": 8, "hidden": "16"} and model.label == "NCSL-PPMI"
  with pytest.raises(ValueError, match="built from the dataset's training posts"):
    models.make_model(config, tiny_dataset.spec)
  with pytest.raises(ValueError, match=r"D=200 must be in \[1, 150\)"):
    models.make_model({"name": "ncsl", "kwargs": {"dim": 200}}, tiny_dataset.spec, tiny_dataset)


# Small MSSG settings for the tiny dataset: one compilation, well under a second of training.
MSSG = {"senses": 2, "epochs": 2, "batch_size": 128}


def test_ncsl_ms_regresses_onto_the_mssg_global_vectors_end_to_end(tiny_dataset):
  # As an experiment writes it: a ConfigDict, the MSSG settings nested under "mssg".
  config = ml_collections.ConfigDict({"name": "ncsl", "kwargs": {
      "dim": 8, "hidden": (16,), "tag_embeddings": "mssg", "mssg": MSSG}})
  model = models.make_model(config, tiny_dataset.spec, tiny_dataset)
  expected = multisense.training_mssg_embeddings(tiny_dataset, 8, **MSSG)
  np.testing.assert_array_equal(model.embeddings, expected.global_vectors)
  # The hashtags without co-occurrence are the zero rows, as in the PPMI table.
  ppmi = tag_cooccurrence.training_ppmi_embeddings(tiny_dataset, 8)
  zero = ~model.embeddings.any(axis=1)
  assert zero.sum() == expected.num_zero_rows == ppmi.num_zero_rows
  np.testing.assert_array_equal(zero, ~ppmi.embeddings.any(axis=1))
  assert model.label == "NCSL-MS"  # its rows name the table it regresses onto
  variables = model.init(jax.random.key(0), tiny_dataset.spec)
  np.testing.assert_array_equal(variables["params"]["tags"]["embedding"], expected.global_vectors)
  # A few SGD steps on the ncsl loss over training posts: the loss falls, the table stays.
  batch = tiny_dataset.read(tiny_dataset.split_rows("train")[:64], fields=("features",))
  batch = {k: jnp.asarray(batch[k]) for k in ("features", "tag_ids", "tag_mask")}
  objective, tx = objectives.NegativeCosine(), optax.sgd(0.5)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(
        lambda p: objective(model, {"params": p}, batch, jax.random.key(1))[0])(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  params, opt_state = variables["params"], tx.init(variables["params"])
  losses = []
  for _ in range(20):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert losses[-1] < losses[0] - 0.05
  np.testing.assert_array_equal(params["tags"]["embedding"], expected.global_vectors)
  scores = model.query({"params": params}, batch) @ model.tags({"params": params}).T
  assert scores.shape == (64, tiny_dataset.num_tags) and bool(jnp.isfinite(scores).all())


def test_centered_rows_remove_the_mean_of_the_nonzero_rows():
  centered = ncsl.centered_rows(TABLE)
  mean = TABLE[:4].mean(axis=0)
  np.testing.assert_allclose(centered[:4], TABLE[:4] - mean, rtol=1e-6)
  np.testing.assert_array_equal(centered[4], 0.0)  # the hashtag without co-occurrence
  np.testing.assert_allclose(centered[:4].mean(axis=0), 0.0, atol=1e-6)
  assert centered.dtype == np.float32
  np.testing.assert_array_equal(ncsl.centered_rows(np.zeros((3, 2))), 0.0)


def test_from_dataset_can_center_either_table(tiny_dataset):
  ppmi = tag_cooccurrence.training_ppmi_embeddings(tiny_dataset, 8).embeddings
  mssg = multisense.training_mssg_embeddings(tiny_dataset, 8, **MSSG).global_vectors
  for kwargs, table in [({}, ppmi), ({"tag_embeddings": "mssg", "mssg": MSSG}, mssg)]:
    model = ncsl.NCSL.from_dataset(tiny_dataset, dim=8, center=True, hidden=(), **kwargs)
    np.testing.assert_array_equal(model.embeddings, ncsl.centered_rows(table))


def test_the_table_choice_is_checked(tiny_dataset):
  with pytest.raises(ValueError, match="tag_embeddings='word2vec': choose one of"):
    ncsl.NCSL.from_dataset(tiny_dataset, dim=8, tag_embeddings="word2vec")
  with pytest.raises(ValueError, match="configures tag_embeddings='mssg', not 'ppmi'"):
    ncsl.NCSL.from_dataset(tiny_dataset, dim=8, mssg={"senses": 2})


def test_parts_and_shapes():
  model = _model(hidden=(7, 4), batch_norm=True)
  variables = model.init(jax.random.key(0), SPEC)
  assert set(variables) == {"params", "batch_stats"}
  assert set(variables["params"]) == {"image", "tags"}
  assert set(variables["params"]["image"]) == {"Dense_0", "BatchNorm_0", "Dense_1", "BatchNorm_1",
                                               "out"}  # layers.MLP, as every image head
  assert variables["params"]["image"]["out"]["kernel"].shape == (4, 3)
  np.testing.assert_array_equal(variables["params"]["tags"]["embedding"], TABLE)
  assert model.query(variables, _batch()).shape == (8, 3)
  assert model.tags(variables).shape == (5, 3)
  with pytest.raises(ValueError, match="the tag table has 5 rows, the dataset 6"):
    model.init(jax.random.key(0), DatasetSpec(feature_dim=6, user_meta_dim=0, num_tags=6,
                                              num_users=2))


def test_the_score_is_the_cosine_of_the_head_output_and_the_embedding():
  model = _model(hidden=(4,))
  variables = model.init(jax.random.key(1), SPEC)
  batch = _batch()
  p = variables["params"]["image"]
  h = jax.nn.relu(batch["features"] @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
  f = np.asarray(h @ p["out"]["kernel"] + p["out"]["bias"], np.float64)  # no ReLU on the output
  assert (f < 0).any()
  norms = np.linalg.norm(TABLE, axis=1)
  cosine = f @ TABLE.T / np.linalg.norm(f, axis=1, keepdims=True) / np.maximum(norms, 1e-30)
  scores = model.query(variables, batch) @ model.tags(variables).T
  np.testing.assert_allclose(scores, cosine, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(model.query(variables, batch), axis=1), 1.0,
                             rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(model.tags(variables)[:4], axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(model.tags(variables)[4], 0.0)  # stays zero, not NaN


def test_a_linear_head_and_jit_agree_with_eager():
  model = _model(hidden=())
  variables = model.init(jax.random.key(2), SPEC)
  assert set(variables["params"]["image"]) == {"out"}
  batch = _batch()
  np.testing.assert_allclose(jax.jit(model.query)(variables, batch),
                             model.query(variables, batch), rtol=1e-6, atol=1e-7)
  assert model.report_columns() == {"D": 3, "hidden": "linear"}
  # Hyperparameters, not the table, are the model's identity (jit hashes bound methods).
  assert hash(model) == hash(ncsl.NCSL(embeddings=TABLE * 2, hidden=()))


def test_no_loss_moves_the_tag_table():
  model = _model(hidden=(4,), dropout_rate=0.2)
  variables = model.init(jax.random.key(3), SPEC)
  batch = _batch()
  for objective in (objectives.NegativeCosine(), objectives.Softmax()):
    def loss(params):
      return objective(model, {"params": params}, batch, jax.random.key(4))[0]
    grads = jax.grad(loss)(variables["params"])
    np.testing.assert_array_equal(grads["tags"]["embedding"], 0.0)
    assert float(jnp.abs(grads["image"]["out"]["kernel"]).sum()) > 0


def test_a_bad_hyperparameter_is_an_error():
  with pytest.raises(ValueError, match="hidden widths must be positive"):
    _model(hidden=(0,))
  with pytest.raises(ValueError, match="dropout_rate"):
    _model(dropout_rate=1.0)
  with pytest.raises(ValueError, match=r"\[num_tags, D\] table"):
    ncsl.NCSL(embeddings=np.zeros(5))
