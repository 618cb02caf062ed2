"""Vocabulary-sharded training: hashtag tables split over a "model" mesh axis (8 CPU devices).

A run whose tag tables (and their optimizer moments) are split over "model" must end where
the one-device run ends, for a learned [Y, d] table (Denton), a bag-of-hashtags user layer
[Y, d_u] and a learned word table under the full and the sampled softmax (Durand), and its
evaluation, which ranks the table on its shards, must give the same metrics; a run resumed
with another number of shards must end there too.
"""

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from hashjax.eval import sharded_topk
from hashjax.training import sharding, trainer
from tests.dataset_fixtures import tiny_train_config

TINY_TAGS = 150  # the tiny world's vocabulary: 2 and 3 divide it, 4 does not


def _close(a, b, **tol):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def test_hashtag_spec_splits_the_first_axis_of_the_vocabulary_size():
  assert sharding.hashtag_spec((150, 16), 150, 2) == P("model")
  assert sharding.hashtag_spec((16, 150), 150, 2) == P(None, "model")
  assert sharding.hashtag_spec((150,), 150, 3) == P("model")
  assert sharding.hashtag_spec((16, 16), 150, 2) == P()
  assert sharding.hashtag_spec((), 150, 2) == P()
  assert sharding.hashtag_spec((150, 16), 150, 1) == P()  # one shard: replicated
  with pytest.raises(ValueError, match="vocab_shards=4 must divide the vocabulary of 150"):
    sharding.hashtag_spec((150, 16), 150, 4)


def test_make_mesh():
  assert dict(sharding.make_mesh(0, 2).shape) == {"data": 4, "model": 2}
  assert dict(sharding.make_mesh(6, 3).shape) == {"data": 2, "model": 3}
  assert dict(sharding.make_mesh(0).shape) == {"data": 8, "model": 1}
  with pytest.raises(ValueError, match="vocab_shards=3 must divide the 8 devices"):
    sharding.make_mesh(0, 3)


def _denton(steps=12, **overrides):
  return tiny_train_config("denton", steps=steps, **overrides)


def _denton_every_range(**overrides):
  # The tiny world's test users have 15 hashtags no training post has: the seen and unseen
  # ranges are ranked on their own shards ([0, 135) and [135, 150), ids shifted back).
  config = _denton(**overrides)
  config.eval.vocabularies = ("all", "seen", "unseen")
  return config


def _durand(arg, steps=6, **overrides):
  config = tiny_train_config("durand", f"d_u=16,dims=16,{arg}", steps=steps, **overrides)
  config.batch_size = 8
  config.data.seq_len = 60
  return config


def _sampled(config):
  config.loss = ml_collections.ConfigDict({"name": "sampled_softmax", "num_samples": 32,
                                           "vocabulary": "seen", "average": "users"})
  return config


CASES = {
    "denton_tag_table": lambda **kw: _denton_every_range(**kw),
    "durand_occurrences": lambda **kw: _durand("model=occurrences", **kw),
    "durand_learned_words": lambda **kw: _durand("model=ours,words=learned", **kw),
    "durand_learned_words_sampled": lambda **kw: _sampled(
        _durand("model=ours,words=learned", **kw)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sharded_vocabulary_ends_where_one_device_ends(tmp_path, tiny_dataset, case,
                                                       monkeypatch):
  assert jax.device_count() == 8 and tiny_dataset.spec.num_tags == TINY_TAGS
  one = trainer.train_and_evaluate(CASES[case](num_devices=1), str(tmp_path / "one"),
                                   tiny_dataset)
  ranked = []  # evaluation ranks the split table on its shards
  rank = sharded_topk.ShardedTopK.__call__
  monkeypatch.setattr(sharded_topk.ShardedTopK, "__call__",
                      lambda self, q: ranked.append(self.mesh.shape["model"]) or rank(self, q))
  split = trainer.train_and_evaluate(CASES[case](vocab_shards=2), str(tmp_path / "split"),
                                     tiny_dataset)
  assert ranked and set(ranked) == {2}
  _close(one["variables"], split["variables"], rtol=2e-4, atol=1e-6)
  assert one["test"] == pytest.approx(split["test"], abs=1e-6)
  # The hashtag arrays really are split: each device holds half of the rows.
  sharded = [x for x in jax.tree.leaves(split["variables"]) if TINY_TAGS in x.shape]
  assert sharded
  for x in sharded:
    axis = x.shape.index(TINY_TAGS)
    assert x.sharding.spec[axis] == "model"
    assert {s.data.shape[axis] for s in x.addressable_shards} == {TINY_TAGS // 2}


def test_a_run_resumes_with_another_number_of_vocabulary_shards(tmp_path, tiny_dataset):
  full = trainer.train_and_evaluate(_denton(steps=20, num_devices=1), str(tmp_path / "full"),
                                    tiny_dataset)
  workdir = str(tmp_path / "resumed")
  trainer.train_and_evaluate(_denton(steps=10, vocab_shards=2), workdir, tiny_dataset)
  resumed = trainer.train_and_evaluate(_denton(steps=20, num_devices=6, vocab_shards=3),
                                       workdir, tiny_dataset)
  _close(full["variables"], resumed["variables"], rtol=2e-4, atol=1e-6)
  assert resumed["selected_step"] == full["selected_step"]
