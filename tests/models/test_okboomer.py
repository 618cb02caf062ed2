"""#okboomer's generator: targets, the masked caption encoder, teacher forcing, decoding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax.data.spec import DatasetSpec
from hashjax.eval.evaluate import GeneratorScorer
from hashjax.models import okboomer
from hashjax.models.okboomer import HashtagGenerator

SPEC = DatasetSpec(feature_dim=6, user_meta_dim=0, num_tags=7, num_users=1,
                   caption_vocab_size=11, max_caption_len=5, max_tags_per_post=4)


def _model(**kwargs):
  kwargs = {"image_dim": 4, "embed_dim": 3, "hidden": 5, "max_len": 4, **kwargs}
  return HashtagGenerator.from_spec(SPEC, **kwargs)


def _batch(n=3, seed=0):
  rng = np.random.default_rng(seed)
  mask = np.zeros((n, 5), bool)
  for i, length in enumerate(rng.integers(0, 6, n)):
    mask[i, :length] = True
  tag_mask = np.zeros((n, 4), bool)
  for i, length in enumerate(rng.integers(1, 5, n)):
    tag_mask[i, :length] = True
  return {"features": jnp.asarray(rng.random((n, 6)), jnp.float32),
          "caption_ids": jnp.asarray(rng.integers(0, 11, (n, 5)), jnp.int32),
          "caption_mask": jnp.asarray(mask),
          "tag_ids": jnp.asarray(np.where(tag_mask, rng.integers(0, 7, (n, 4)), -1), jnp.int32),
          "tag_mask": jnp.asarray(tag_mask)}


def test_targets_are_the_hashtags_in_order_then_end():
  model = _model(max_len=3)
  batch = {"tag_ids": jnp.array([[1, 2, -1, -1], [3, 4, 5, 6], [-1, -1, -1, -1]]),
           "tag_mask": jnp.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)}
  tokens, mask = model.targets(batch)
  end = model.end
  np.testing.assert_array_equal(tokens[:2], [[1, 2, end, 0], [3, 4, 5, end]])  # 3 kept, END
  np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]])


def test_the_encoder_state_is_the_lstm_over_the_valid_tokens_only():
  model = _model()
  variables = model.init(jax.random.key(0), SPEC)
  batch = _batch(4, seed=3)
  batch["caption_mask"] = jnp.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1],
                                     [1, 0, 0, 0, 0]], bool)
  (c, h), _ = model.module().apply(variables, batch, False, method=okboomer._Generator.encode)
  p = variables["params"]["caption"]
  cell = okboomer._lstm(5, "lstm")
  for i in range(4):
    state = (jnp.zeros((1, 5)), jnp.zeros((1, 5)))
    for t in np.flatnonzero(batch["caption_mask"][i]):
      x = p["embed"]["embedding"][batch["caption_ids"][i, t]][None]
      state, _ = cell.apply({"params": p["encoder"]["lstm"]}, state, x)
    np.testing.assert_allclose(c[i], state[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h[i], state[1][0], rtol=1e-5, atol=1e-6)
  assert (c[1] == 0).all() and (h[1] == 0).all()  # an empty caption: the zero state


def test_teacher_forcing_feeds_the_truth_or_the_previous_argmax_per_step():
  model = _model()
  variables = model.init(jax.random.key(1), SPEC)
  batch = _batch(3, seed=1)
  tokens, _ = model.targets(batch)
  inputs = jnp.concatenate([jnp.full_like(tokens[:, :1], model.start), tokens[:, :-1]], 1)
  use_truth = jnp.array([True, False, True, False, False])
  logits = model.module().apply(variables, batch, inputs, use_truth)
  # by hand: one DecoderStep at a time, choosing each input as the rule says
  state, z = model.module().apply(variables, batch, False, method=okboomer._Generator.encode)
  step = okboomer.DecoderStep(7, 3, 5)
  params = {"params": variables["params"]["decoder"]["step"]}
  previous = jnp.full((3,), model.start)
  for t in range(5):
    token = inputs[:, t] if use_truth[t] else previous
    state, want = step.apply(params, state, token, z)
    np.testing.assert_allclose(logits[:, t], want, rtol=1e-5, atol=1e-6)
    previous = jnp.argmax(want, -1)
  # training draws one Bernoulli(ratio) per step: ratio 1 is full teacher forcing
  forced = _model(teacher_forcing=1.0)
  train_logits, _, _, updates = forced.train_logits(variables, batch, jax.random.key(2))
  assert set(updates) == {"batch_stats"}
  want = forced.module().apply(variables, batch, inputs, jnp.ones(5, bool), train=True,
                               mutable=["batch_stats"])[0]
  np.testing.assert_allclose(train_logits, want, rtol=1e-6)


def _log_prob(model, variables, batch, tokens):
  """log p of each generated sequence (its tokens up to and with END) under the model: one
  teacher-forced pass over all of them."""
  tokens = np.asarray(tokens)
  valid = tokens >= 0
  targets = np.where(valid, tokens, 0)
  width = model.max_len + 1
  inputs = np.concatenate([np.full((len(tokens), 1), model.start), targets], 1)[:, :width]
  inputs = np.pad(inputs, ((0, 0), (0, width - inputs.shape[1])))
  logits = model.module().apply(variables, batch, jnp.asarray(inputs), jnp.ones(width, bool))
  lp = np.asarray(jax.nn.log_softmax(logits))[:, :tokens.shape[1]]
  picked = np.take_along_axis(lp, targets[..., None], axis=-1)[..., 0]
  return np.where(valid, picked, 0.0).sum(axis=1)


def test_beam_search_scores_at_least_greedy_and_differs_from_it_somewhere():
  model = _model(max_len=4)
  variables = model.init(jax.random.key(4), SPEC)
  batch = _batch(24, seed=5)
  generate = jax.jit(model.generate, static_argnums=2)
  greedy = np.asarray(generate(variables, batch, 1))
  beam = np.asarray(generate(variables, batch, 4))
  g, b = _log_prob(model, variables, batch, greedy), _log_prob(model, variables, batch, beam)
  assert (b >= g - 1e-4).all()
  differ = (beam != greedy).any(axis=1)
  assert differ.any() and (b[differ] > g[differ]).all()


def test_the_generated_set_is_the_ranked_list():
  model = _model()
  scorer = GeneratorScorer.__new__(GeneratorScorer)
  scorer.model = model
  end = model.end
  tokens = np.array([[3, 3, 1, end], [end, -1, -1, -1], [6, 2, 5, 4]])
  np.testing.assert_array_equal(scorer.ranked(tokens, 0, 7, 3), [[3, 1, -1], [-1, -1, -1],
                                                                [6, 2, 5]])
  np.testing.assert_array_equal(scorer.ranked(tokens, 2, 6, 3), [[3, -1, -1], [-1, -1, -1],
                                                                [2, 5, 4]])


def test_bad_settings():
  with pytest.raises(ValueError, match="teacher_forcing is a probability"):
    _model(teacher_forcing=1.5)
  with pytest.raises(ValueError, match="reads captions"):
    HashtagGenerator.from_spec(DatasetSpec(feature_dim=2, user_meta_dim=0, num_tags=3,
                                           num_users=1))
