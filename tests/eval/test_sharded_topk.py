"""Tests for hashjax.eval.sharded_topk on 8 simulated CPU devices (see conftest.py).

Every sharded result is compared with the unsharded ``top_k_two_tower`` on one
device (and a naive argsort): ids exactly, scores exactly on integer data.
"""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from hashjax.eval import sharded_topk as st
from hashjax.eval import topk
from tests.eval.test_topk import int_embeddings, naive_top_k


@pytest.fixture(scope="module", autouse=True)
def eight_devices():
  assert jax.device_count() == 8, "conftest.py should give the session 8 CPU devices"


def vocab_mesh_8():
  """The table over all 8 devices, queries replicated (a 1-D mesh)."""
  return Mesh(np.array(jax.devices()), ("model",))


MESHES = {
    "model8": vocab_mesh_8,
    "data2_model4": lambda: st.make_vocab_mesh(data=2, model=4),
}


def check_against_unsharded(q, t, k, mesh, **kwargs):
  s, i = st.sharded_top_k(q, t, k, mesh, **kwargs)
  ref_s, ref_i = topk.top_k_two_tower(q, t, k)
  assert s.shape == i.shape == (q.shape[0], k)
  assert s.dtype == np.float32 and i.dtype == np.int32
  assert i.min() >= 0 and i.max() < t.shape[0]  # no padded id
  np.testing.assert_array_equal(i, ref_i)
  np.testing.assert_array_equal(s, ref_s)
  return s, i


def test_make_vocab_mesh():
  mesh = st.make_vocab_mesh(data=2, model=4)
  assert mesh.axis_names == ("data", "model")
  assert dict(mesh.shape) == {"data": 2, "model": 4}
  assert len({dev.id for dev in mesh.devices.flat}) == 8
  assert dict(st.make_vocab_mesh(data=2).shape) == {"data": 2, "model": 4}
  assert dict(st.make_vocab_mesh().shape) == {"data": 1, "model": 8}
  with pytest.raises(ValueError, match="devices"):
    st.make_vocab_mesh(data=4, model=4)


# (N, K, d, k, tag_chunk, post_chunk)
SHAPES = [
    (7, 64, 3, 5, 16384, 128),   # K divisible by 8 and by 4
    (13, 37, 3, 10, 16384, 3),   # K not divisible; k > K/8; several post chunks
    (5, 20, 2, 7, 16384, 2),     # k > K/8 and > K/4
    (9, 9, 2, 9, 16384, 4),      # k = K: 8 shards of 2 rows, the last 3 all padding
    (1, 1, 2, 1, 16384, 1),      # one tag on 8 shards
    (11, 3001, 3, 10, 100, 4),   # several blocks per shard, balanced and padded
    (6, 5601, 2, 5, 8192, 8),    # shards wide enough for the two-stage block top-k
]


@pytest.mark.parametrize("mesh_name", MESHES)
@pytest.mark.parametrize("n,v,d,k,tag_chunk,post_chunk", SHAPES)
def test_matches_unsharded_with_ties(mesh_name, n, v, d, k, tag_chunk, post_chunk):
  rng = np.random.default_rng(n * 1000 + v)
  q, t = int_embeddings(rng, n, v, d)
  full = q @ t.T
  if full.size > 1:
    assert len(np.unique(full)) < full.size  # the data really has ties
  s, i = check_against_unsharded(q, t, k, MESHES[mesh_name](),
                                 tag_chunk=tag_chunk, post_chunk=post_chunk)
  ref_s, ref_i = naive_top_k(full, k)
  np.testing.assert_array_equal(i, ref_i)
  np.testing.assert_array_equal(s, ref_s)


def test_layouts_of_the_shapes():
  # The shapes above really exercise what their comments say.
  assert st.vocab_layout(37, 8, 10) == (5, 5, 5)       # k_local = R < k
  assert st.vocab_layout(9, 8, 9).rows_per_shard * 5 >= 9  # shards 5..7 hold no tag
  layout = st.vocab_layout(3001, 8, 10, 100)
  assert layout.rows_per_shard // layout.width > 1
  layout = st.vocab_layout(5601, 4, 5, 8192)
  assert topk._use_two_stage(layout.width, layout.k_local)


@pytest.mark.parametrize("mesh_name", MESHES)
def test_float_data_and_jax_inputs(mesh_name):
  rng = np.random.default_rng(0)
  q = rng.normal(size=(37, 8)).astype(np.float32)
  t = rng.normal(size=(1001, 8)).astype(np.float32)
  s, i = st.sharded_top_k(jax.numpy.asarray(q), jax.numpy.asarray(t), 20,
                          MESHES[mesh_name](), tag_chunk=64, post_chunk=8)
  ref_s, ref_i = topk.top_k_two_tower(q, t, 20)
  np.testing.assert_array_equal(i, ref_i)
  np.testing.assert_allclose(s, ref_s, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mesh_name", MESHES)
def test_ties_across_shard_boundaries_go_to_the_smaller_id(mesh_name):
  # K = 20: 8 shards of 3 rows (boundaries 3, 6, ..., 18) or 4 of 5 (5, 10, 15).
  # Score 5 ties over ids 2-6 and 17-19, i.e. across boundaries 3, 5, 6 and 18;
  # id 4 (score 9) makes the shard of 3-5 rank first. Every other tag scores
  # -1, so the query -1 ties the remaining 11 tags at the top.
  t = np.full((20, 1), -1.0, np.float32)
  t[[2, 3, 5, 6, 17, 18, 19]] = 5.0
  t[4] = 9.0
  q = np.array([[1.0], [2.0], [-1.0]], np.float32)
  mesh = MESHES[mesh_name]()
  _, i = check_against_unsharded(q, t, 7, mesh)
  np.testing.assert_array_equal(i[0], [4, 2, 3, 5, 6, 17, 18])
  np.testing.assert_array_equal(i[1], i[0])
  np.testing.assert_array_equal(i[2], [0, 1, 7, 8, 9, 10, 11])
  _, i = check_against_unsharded(q, t, 20, mesh)
  np.testing.assert_array_equal(i[0], [4, 2, 3, 5, 6, 17, 18, 19, 0, 1, *range(7, 17)])


@pytest.mark.parametrize("mesh_name", MESHES)
def test_padded_rows_never_win(mesh_name):
  # Every real score is -2 and the zero padding would score 0 unmasked: with
  # K = 9 on 8 shards of 2 rows, 7 padded rows (shards 5-7 hold no tag at all).
  q = np.ones((3, 2), np.float32)
  t = -np.ones((9, 2), np.float32)
  s, i = check_against_unsharded(q, t, 9, MESHES[mesh_name]())
  np.testing.assert_array_equal(i, np.tile(np.arange(9), (3, 1)))
  np.testing.assert_array_equal(s, -2.0)


@pytest.mark.parametrize("mesh_name", MESHES)
def test_minus_inf_scores_do_not_lose_to_padding(mesh_name):
  # -inf is a legal score; padding (also -inf after masking) must still lose
  # every tie to it, on its own shard and in the merge.
  q = np.ones((2, 1), np.float32)
  t = np.array([[-np.inf], [-np.inf], [-np.inf], [1.0], [2.0]], np.float32)
  s, i = st.sharded_top_k(q, t, 5, MESHES[mesh_name]())
  np.testing.assert_array_equal(i, [[4, 3, 0, 1, 2]] * 2)
  np.testing.assert_array_equal(s[:, :2], [[2.0, 1.0]] * 2)
  assert np.all(np.isneginf(s[:, 2:]))


def test_table_is_sharded_over_the_vocabulary():
  mesh = vocab_mesh_8()
  num_tags, d, k = 8 * 4096, 4, 10
  t = np.random.default_rng(0).normal(size=(num_tags, d)).astype(np.float32)
  layout = st.vocab_layout(num_tags, 8, k, tag_chunk=512)
  assert layout.rows_per_shard == num_tags // 8
  table = st.shard_tag_table(t, mesh, "model", layout.rows_per_shard)
  shards = sorted(table.addressable_shards, key=lambda sh: sh.index[0].start)
  assert len({sh.device.id for sh in shards}) == 8
  for s, sh in enumerate(shards):
    assert sh.data.shape == (num_tags // 8, d)
    np.testing.assert_array_equal(np.asarray(sh.data), t[s * 4096:(s + 1) * 4096])

  fn = st.make_sharded_top_k_fn(mesh, "model", k, layout, num_tags)
  post = 32
  queries = jax.device_put(np.zeros((post, d), np.float32), NamedSharding(mesh, P()))
  compiled = fn.lower(queries, table).compile()
  (_, table_sharding), _ = compiled.input_shardings
  assert table_sharding.spec == P("model", None)
  # Per device: arguments are the queries plus one [K/8, d] shard, and the
  # scratch holds a post x 512 block, far below even post x K/8 scores.
  memory = compiled.memory_analysis()
  assert memory.argument_size_in_bytes == 4 * (post * d + num_tags // 8 * d)
  assert memory.temp_size_in_bytes < 4 * post * (num_tags // 8) // 4


def test_table_on_2d_mesh_is_split_over_model_replicated_over_data():
  mesh = st.make_vocab_mesh(data=2, model=4)
  t = np.arange(37 * 3, dtype=np.float32).reshape(37, 3)
  table = st.shard_tag_table(t, mesh, "model")  # 4 shards of 10 rows, 3 padded
  assert table.shape == (40, 3)
  assert len(table.addressable_shards) == 8
  for sh in table.addressable_shards:
    assert sh.data.shape == (10, 3)
    start = sh.index[0].start
    expected = np.pad(t, ((0, 3), (0, 0)))[start:start + 10]
    np.testing.assert_array_equal(np.asarray(sh.data), expected)


def test_queries_split_over_data():
  mesh = st.make_vocab_mesh(data=2, model=4)
  layout = st.vocab_layout(37, 4, 3)
  fn = st.make_sharded_top_k_fn(mesh, "model", 3, layout, 37)
  table = st.shard_tag_table(np.ones((37, 2), np.float32), mesh, "model",
                             layout.rows_per_shard)
  queries = jax.device_put(np.ones((6, 2), np.float32),
                           NamedSharding(mesh, P("data", None)))
  (q_sharding, _), _ = fn.lower(queries, table).compile().input_shardings
  assert q_sharding.spec == P(("data",), None) or q_sharding.spec == P("data", None)
  s, _ = fn(queries, table)
  assert {sh.data.shape for sh in s.addressable_shards} == {(3, 3)}


def test_empty_queries_and_errors():
  mesh = vocab_mesh_8()
  t = np.ones((5, 2), np.float32)
  s, i = st.sharded_top_k(np.zeros((0, 2), np.float32), t, 2, mesh)
  assert s.shape == i.shape == (0, 2)
  with pytest.raises(ValueError, match="axis"):
    st.sharded_top_k(np.ones((2, 2), np.float32), t, 2, mesh, axis="vocab")
  for k in (0, 6):
    with pytest.raises(ValueError):
      st.sharded_top_k(np.ones((2, 2), np.float32), t, k, mesh)
  with pytest.raises(ValueError, match="dim"):
    st.sharded_top_k(np.ones((2, 3), np.float32), t, 1, mesh)
