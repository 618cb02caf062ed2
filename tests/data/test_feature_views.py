"""Named feature views: written and checked in the metadata, built by the synthetic world's
second view, and read one at a time by the classifier (the others zero-padded)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashjax import models
from hashjax.data import format as fmt
from hashjax.data.reader import PostDataset
from hashjax.data.spec import DatasetSpec
from hashjax.data.synthetic import build
from hashjax.data.writer import DatasetWriter


def test_the_writer_refuses_views_that_do_not_tile_the_features(tmp_path):
  for views, match in [([("a", 3), ("b", 4)], "sum to 7, not the feature_dim 6"),
                       ([("a", 3), ("a", 3)], "distinct non-empty names"),
                       ([("a", 0), ("b", 6)], "integers >= 1"),
                       (["abc"], "name, width"), ]:
    with pytest.raises(fmt.DatasetError, match=match):
      DatasetWriter(str(tmp_path / "d"), feature_dim=6, num_tags=3, split_scheme="temporal",
                    feature_views=views)


def test_view_columns_by_name():
  spec = DatasetSpec(feature_dim=5, user_meta_dim=0, num_tags=2, num_users=1,
                     feature_views=(("object", 3), ("scene", 2)))
  np.testing.assert_array_equal(spec.view_columns(("scene",)), [0, 0, 0, 1, 1])
  np.testing.assert_array_equal(spec.view_columns(("object", "scene")), [1] * 5)
  with pytest.raises(ValueError, match=r"unknown feature views \['place'\]"):
    spec.view_columns(("place",))


@pytest.fixture(scope="module")
def two_views(tmp_path_factory):
  root = tmp_path_factory.mktemp("views")
  build.build_synthetic(str(root / "two"), preset="tiny", seed=1,
                        overrides={"second_view_dim": 8}, log=None)
  build.build_synthetic(str(root / "one"), preset="tiny", seed=1, log=None)
  return PostDataset(str(root / "two")), PostDataset(str(root / "one"))


def test_the_second_view_adds_columns_and_changes_nothing_else(two_views):
  two, one = two_views
  assert two.spec.feature_views == (("object", 32), ("scene", 8)) and one.spec.feature_views == ()
  assert two.feature_dim == 40
  a, b = two.read(np.arange(two.num_posts)), one.read(np.arange(one.num_posts))
  np.testing.assert_array_equal(a["features"][:, :32], b["features"])  # the first view as it was
  np.testing.assert_array_equal(a["tag_ids"], b["tag_ids"])
  second = a["features"][:, 32:]
  np.testing.assert_allclose(np.linalg.norm(second, axis=1), 1.0, rtol=1e-5)  # its own image
  assert (second >= 0).all()
  # The same concepts, seen anew: posts whose main concepts agree are closer in the second view
  # too, by a margin like the first view's (a different rendering, not a copy).
  latents = np.load(f"{two.directory}/{build.WORLD_DIR}/{build.LATENT_FILE}")
  main = latents["concept_ids"][:, 0]
  same = main[:, None] == main[None]
  gap = lambda f: (f @ f.T)[same].mean() - (f @ f.T)[~same].mean()
  first_gap, second_gap = gap(a["features"][:, :32]), gap(second)
  assert first_gap > 0 and 0.3 * first_gap < second_gap < 3 * first_gap
  assert np.abs(np.corrcoef(a["features"][:, :8].T, second.T)[:8, 8:]).max() < 0.9


def test_a_single_view_classifier_reads_only_its_columns(two_views):
  spec = two_views[0].spec
  model = models.make_model({"name": "mlp", "kwargs": {"hidden": (6,), "views": ("object",)}},
                            spec)
  assert model.kept_columns == ((0, 32),) and model.report_columns()["views"] == "object"
  variables = model.init(jax.random.key(0), spec)
  x = jnp.asarray(np.random.default_rng(0).random((4, 40)), jnp.float32)
  scene_changed = x.at[:, 32:].set(5.0)
  np.testing.assert_array_equal(model.query(variables, {"features": x}),
                                model.query(variables, {"features": scene_changed}))
  grad = jax.grad(lambda f: model.query(variables, {"features": f}).sum())(x)
  assert (grad[:, 32:] == 0).all() and (grad[:, :32] != 0).any()
  both = models.make_model({"name": "mlp", "kwargs": {"hidden": (6,)}}, spec)
  assert both.kept_columns == () and "views" not in both.report_columns()
