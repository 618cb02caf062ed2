"""Durand et al.'s model: the one-scan user states against step-by-step recomputation, masking,
the streaming update, the fusions and MUTAN, the pooled user vectors, open-vocabulary scoring."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax.data.spec import DatasetSpec
from hashjax.models import history
from hashjax.models.durand import Durand
from hashjax.training import objectives

Y, W_DIM, N, T = 12, 5, 7, 3
SPEC = DatasetSpec(feature_dim=N, user_meta_dim=0, num_tags=Y, num_users=4,
                   word_vector_dim=W_DIM, max_tags_per_post=T)
WORDS = np.random.default_rng(0).normal(size=(Y, W_DIM)).astype(np.float32)


def _model(**kwargs):
  sizes = dict(post_dim=6, user_dim=8, image_dim=5, fused_dim=4, joint_dim=3, tag_hidden=6,
               mutan_rank=2)
  return Durand(words=WORDS, **{**sizes, **kwargs})


def _sequences(s=3, w=6, seed=1, lengths=None):
  rng = np.random.default_rng(seed)
  lengths = lengths or [w] * s
  seq_mask = np.arange(w)[None] < np.asarray(lengths)[:, None]
  tag_mask = (rng.random((s, w, T)) < 0.6) & seq_mask[..., None]
  tag_mask[..., 0] |= seq_mask  # every real post has a hashtag
  return {"features": rng.normal(size=(s, w, N)).astype(np.float32),
          "tag_ids": rng.integers(0, Y, (s, w, T)).astype(np.int32),
          "tag_mask": tag_mask, "seq_mask": seq_mask}


def _init(model):
  return model.init(jax.random.key(0), SPEC)


def test_every_prefix_state_equals_the_streamed_state():
  model = _model()
  variables = _init(model)
  batch = _sequences()
  queries = np.asarray(model.query(variables, batch))
  state = jnp.zeros((3, 8))
  for t in range(batch["seq_mask"].shape[1]):
    # The query at t is the image of t under the state after posts 0..t-1, streamed one by one.
    expected = model.query_from_state(variables, state, batch["features"][:, t])
    np.testing.assert_allclose(queries[:, t], expected, rtol=1e-5, atol=1e-6)
    post = {k: batch[k][:, t] for k in ("features", "tag_ids", "tag_mask")}
    state = model.next_state(variables, state, post)
  np.testing.assert_allclose(model.final_state(variables, batch), state, rtol=1e-5, atol=1e-6)


def test_the_scan_equals_flax_gru_cell_applied_step_by_step():
  cell = nn.GRUCell(4)
  x = jax.random.normal(jax.random.key(1), (2, 5, 3))
  update = jnp.ones((2, 5), bool)
  states = history.UserStates(4)
  variables = states.init(jax.random.key(2), x, update)
  before, after = states.apply(variables, x, update)
  h = jnp.zeros((2, 4))
  for t in range(5):
    np.testing.assert_allclose(before[:, t], h, atol=1e-6)
    h, _ = cell.apply({"params": variables["params"]["cell"]["cell"]}, h, x[:, t])
    np.testing.assert_allclose(after[:, t], h, rtol=1e-5, atol=1e-6)


def test_padding_and_masked_posts_change_nothing():
  model = _model()
  variables = _init(model)
  batch = _sequences(lengths=[6, 4, 2])
  queries = np.asarray(model.query(variables, batch))
  noisy = {k: v.copy() for k, v in batch.items()}
  pad = ~batch["seq_mask"]
  noisy["features"][pad] = 100.0  # whatever sits in padded slots
  noisy["tag_ids"][pad] = Y - 1
  noisy["tag_mask"][pad] = True
  noisy_queries = np.asarray(model.query(variables, noisy))
  np.testing.assert_allclose(noisy_queries[batch["seq_mask"]], queries[batch["seq_mask"]],
                             rtol=1e-6, atol=1e-6)
  assert not np.abs(noisy_queries[pad]).any()  # padding scores nothing
  # A short sequence scores its posts as the same posts alone would.
  alone = {k: v[1:2, :4] for k, v in batch.items()}
  np.testing.assert_allclose(model.query(variables, alone)[0], queries[1, :4], rtol=1e-5,
                             atol=1e-6)


def test_a_posts_hashtags_reach_only_later_queries():
  model = _model()
  variables = _init(model)
  batch = _sequences()
  changed = {k: v.copy() for k, v in batch.items()}
  changed["tag_ids"][:, 2] = (changed["tag_ids"][:, 2] + 5) % Y
  a, b = model.query(variables, batch), model.query(variables, changed)
  np.testing.assert_allclose(a[:, :3], b[:, :3], rtol=1e-6, atol=1e-6)  # its own query too
  assert np.abs(np.asarray(a[:, 3:]) - np.asarray(b[:, 3:])).max() > 1e-4


def test_a_user_without_history_is_scored_as_from_the_zero_state():
  model = _model()
  variables = _init(model)
  batch = _sequences()
  zero = model.query_from_state(variables, jnp.zeros((3, 8)), batch["features"][:, 0])
  np.testing.assert_allclose(model.query(variables, batch)[:, 0], zero, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fusion", history.FUSIONS)
def test_each_fusion_trains_a_model_of_the_right_shapes(fusion):
  model = _model(fusion=fusion)
  variables = _init(model)
  batch = _sequences()
  assert model.query(variables, batch).shape == (3, 6, 3)
  assert model.tags(variables).shape == (Y, 3)
  fused = history.PostFusion(fusion, 6, 2)
  out, _ = fused.init_with_output(jax.random.key(0), jnp.ones((2, 4, N)), jnp.ones((2, 4, W_DIM)))
  assert out.shape == (2, 4, 12 if fusion == "concat" else 6)


def test_mutan_is_the_sum_of_rank_one_products():
  mutan = history.Mutan(features=3, rank=2, hidden=4)
  v, u = jax.random.normal(jax.random.key(0), (5, 6)), jax.random.normal(jax.random.key(1), (5, 2))
  variables = mutan.init(jax.random.key(2), v, u)
  p = variables["params"]
  tv = np.tanh(v @ p["project_v"]["kernel"] + p["project_v"]["bias"])
  tu = np.tanh(u @ p["project_u"]["kernel"] + p["project_u"]["bias"])
  pv = (tv @ p["factors_v"]["kernel"]).reshape(5, 2, 3)
  qu = (tu @ p["factors_u"]["kernel"]).reshape(5, 2, 3)
  expected = sum(pv[:, r] * qu[:, r] for r in range(2)) + p["bias"]
  np.testing.assert_allclose(mutan.apply(variables, v, u), expected, rtol=1e-5, atol=1e-6)


def test_pooled_user_vectors_count_the_earlier_posts():
  batch = _sequences(s=2, w=4, lengths=[4, 3])
  update = jnp.asarray(batch["seq_mask"])
  used = history.pooled_history("used", batch, update, num_tags=Y)
  counts = history.pooled_history("occurrences", batch, update, num_tags=Y)
  sums = history.pooled_history("word_sum", batch, update, num_tags=Y, words=jnp.asarray(WORDS))
  for s in range(2):
    for t in range(4):
      expected_counts, expected_sum = np.zeros(Y), np.zeros(W_DIM)
      for e in range(t):
        for y, m in zip(batch["tag_ids"][s, e], batch["tag_mask"][s, e]):
          if m:
            expected_counts[y] += 1
            expected_sum += WORDS[y]
      np.testing.assert_allclose(counts[s, t], expected_counts)
      np.testing.assert_allclose(used[s, t], expected_counts > 0)
      np.testing.assert_allclose(sums[s, t], expected_sum, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("user", ["used", "occurrences", "word_sum", "none"])
def test_baseline_user_representations_build_and_score(user):
  model = _model(user=user)
  variables = _init(model)
  queries = model.query(variables, _sequences())
  assert queries.shape == (3, 6, 3) and np.isfinite(queries).all()
  assert "history" not in variables["params"]
  if user == "none":  # no user: the query of a post depends on its image only
    batch = _sequences()
    other = {**batch, "features": batch["features"][:, ::-1]}
    np.testing.assert_allclose(model.query(variables, other)[:, ::-1][batch["seq_mask"]],
                               queries[batch["seq_mask"]], rtol=1e-5, atol=1e-6)


def _grad_of_words(model):
  variables = _init(model)
  batch = _sequences()

  def loss(params):
    q = model.query({**variables, "params": params}, batch)
    return (q.reshape(-1, 3) @ model.tags({**variables, "params": params}).T).sum()

  return jax.grad(loss)(variables["params"])["words"]["table"]


def test_fixed_word_vectors_get_no_gradient_and_learned_ones_do():
  assert not np.abs(_grad_of_words(_model())).any()
  assert np.abs(_grad_of_words(_model(word_vectors="learned"))).max() > 0
  variables = _init(_model())
  np.testing.assert_array_equal(variables["params"]["words"]["table"], WORDS)


def test_a_new_hashtag_is_scored_from_its_word_vector():
  model = _model()
  variables = _init(model)
  table = model.tags(variables)
  np.testing.assert_allclose(model.embed_words(variables, WORDS[[4, 7]]), np.asarray(table)[[4, 7]],
                             rtol=1e-5, atol=1e-6)
  new = model.embed_words(variables, WORDS[[4]] + WORDS[[7]])  # e.g. "#black" + "#white"
  assert new.shape == (1, 3) and np.isfinite(new).all()


def test_bad_hyperparameters_are_refused():
  with pytest.raises(ValueError, match="fusion"):
    _model(fusion="outer")
  with pytest.raises(ValueError, match="user representation"):
    _model(user="metadata")
  with pytest.raises(ValueError, match="word vectors"):
    Durand(words=None)


def test_a_fixed_history_is_updated_by_training_posts_only():
  model = _model(history="train")
  variables = _init(model)
  batch = _sequences()
  in_train = np.zeros((3, 6), bool)
  in_train[:, :3] = True  # a temporal split: the first three posts train
  queries = np.asarray(model.query(variables, {**batch, "in_train": in_train}))
  full = _model()
  frozen = full.final_state(variables, {**batch, "seq_mask": batch["seq_mask"] & in_train})
  for t in range(3, 6):  # after training, the user stays where training left them
    np.testing.assert_allclose(
        queries[:, t], full.query_from_state(variables, frozen, batch["features"][:, t]),
        rtol=1e-5, atol=1e-6)


# -- the fused user tower (history + metadata + embedding) -------------------------------------

META_SPEC = DatasetSpec(feature_dim=N, user_meta_dim=2, num_tags=Y, num_users=4,
                        word_vector_dim=W_DIM, max_tags_per_post=T)


def _known(batch, users, train_posts, seed=3):
  s, w = batch["seq_mask"].shape
  meta = np.random.default_rng(seed).normal(size=(s, 1, 2)).astype(np.float32)
  return dict(batch, user_meta=np.repeat(meta, w, axis=1),
              user_index=np.repeat(np.asarray(users, np.int32)[:, None], w, axis=1),
              user_train_posts=np.repeat(np.asarray(train_posts, np.int32)[:, None], w, axis=1))


def _fused(**kwargs):
  return _model(user_meta=True, user_embedding=True, num_users=4, **kwargs)


def test_an_unseen_user_gets_no_embedding_and_a_seen_one_does():
  model = _fused()
  variables = model.init(jax.random.key(0), META_SPEC)
  batch = _sequences()
  user = lambda b: np.asarray(model.apply_eval(variables, "user_before", b))
  unseen = [user(_known(batch, users, [0, 0, 0])) for users in ([0, 1, 2], [3, 3, 3])]
  np.testing.assert_array_equal(unseen[0], unseen[1])  # the user id of a new user is ignored
  seen = user(_known(batch, [0, 1, 2], [5, 5, 5]))
  assert np.abs(seen - unseen[0]).sum(-1).min() > 0  # every position of a seen user moves
  # The metadata reaches even the first post, where the history is still h_0 = 0.
  other_meta = user(_known(batch, [0, 1, 2], [0, 0, 0], seed=4))
  assert np.abs(other_meta[:, 0] - unseen[0][:, 0]).sum(-1).min() > 0
  np.testing.assert_array_equal(unseen[0][:, 0], user(dict(
      _known(batch, [0, 1, 2], [0, 0, 0]), features=batch["features"] * 0 + 9))[:, 0])


def test_the_embedding_is_dropped_per_user_sequence_at_the_configured_rate():
  model = _fused(embedding_drop=0.3)
  variables = model.init(jax.random.key(0), META_SPEC)
  s = 400
  batch = _known(_sequences(s=s, w=3), np.arange(s) % 4, np.full(s, 7))
  with_embedding = np.asarray(model.apply_eval(variables, "user_before", batch))
  without = np.asarray(model.apply_eval(variables, "user_before",
                                        dict(batch, user_train_posts=np.zeros_like(
                                            batch["user_train_posts"]))))
  trained, _ = model.apply_train(variables, "user_before", batch, jax.random.key(5))
  trained = np.asarray(trained)
  kept = np.all(np.isclose(trained, with_embedding, atol=1e-6), axis=(1, 2))
  dropped = np.all(np.isclose(trained, without, atol=1e-6), axis=(1, 2))
  assert (kept ^ dropped).all()  # each whole sequence either keeps or drops it
  assert abs(dropped.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / s)


def test_the_fused_tower_declares_its_inputs_and_refuses_a_pooled_base():
  model = _fused()
  assert {"user_meta", "user_index", "user_train_posts"} <= set(model.inputs)
  assert model.label == "User tower: history + metadata + embedding"
  assert _model(user="none", user_embedding=True, num_users=4).label == "User tower: embedding"
  with pytest.raises(ValueError, match="not a pooled 'used' vector"):
    _model(user="used", user_meta=True)
  with pytest.raises(ValueError, match="user_embedding needs num_users"):
    _model(user_embedding=True)


def test_the_user_agnostic_model_learns_its_image_head_from_the_start():
  # With u = 0, MUTAN's user side tanh(B u + b) is 0 at init, so the image head got no
  # gradient at all; [B]'s learned u_0 gives it one, and its first-post queries see the image.
  model = _model(user="none")
  variables = _init(model)
  batch = dict(_sequences(), target_mask=np.ones((3, 6), bool))
  loss = lambda params: objectives.Softmax(average="users")(
      model, {**variables, "params": params}, batch, jax.random.key(2))[0]
  grads = jax.grad(loss)(variables["params"])
  assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["image"])) > 1e-3
  queries = np.asarray(model.query(variables, batch))
  assert np.abs(queries[:, 0] - queries[:1, 0]).max() > 1e-4
