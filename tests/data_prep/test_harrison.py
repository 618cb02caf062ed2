"""data_prep.harrison: HARRISON's lists to a dataset, every line accounted for."""

import subprocess
import sys

import numpy as np
import pytest

from data_prep import harrison
from data_prep import image_features
from hashjax.data.reader import PostDataset
from tests.dataset_fixtures import REPO_ROOT

VOCAB = "sea 0\nbeach 1\nlove 2\nfood 3\nsun 4\n"
DATA = ["instagram_dataset/sea/image_1.jpg", "instagram_dataset/sea/image_2.jpg", "",
        "instagram_dataset/food/image_1.jpg", "instagram_dataset/food/image_2.jpg",
        "instagram_dataset/love/image_1.jpg", "instagram_dataset/love/image_2.jpg",
        "instagram_dataset/beach/image_1.jpg"]
TAGS = ["sea beach sun ", "sea sea love", "sea", "food yum", "", "selfie", "sun beach",
        "beach sea"]


@pytest.fixture
def raw(tmp_path):
  (tmp_path / "vocab_index.txt").write_text(VOCAB)
  (tmp_path / "data_list.txt").write_text("\n".join(DATA) + "\n")
  (tmp_path / "tag_list.txt").write_text("\n".join(TAGS) + "\n")
  rng = np.random.default_rng(0)
  np.save(tmp_path / "a.npy", rng.random((8, 3)).astype(np.float32))
  np.save(tmp_path / "b.npy", rng.random((8, 2)).astype(np.float32))
  return tmp_path


def _convert(raw, out, views, status, **kwargs):
  return harrison.convert(str(raw / "data_list.txt"), str(raw / "tag_list.txt"),
                          str(raw / "vocab_index.txt"), str(out), views, status, **kwargs)


def test_every_line_is_written_or_skipped_and_the_views_are_concatenated(raw, tmp_path):
  views, status = harrison.load_views([f"object={raw / 'a.npy'}", f"scene={raw / 'b.npy'}"], 8)
  meta = _convert(raw, tmp_path / "d", views, status)
  report = meta["build_report"]
  assert (report["read"], report["written"]) == (8, 5)
  assert report["skipped"] == {"blank_image_path": 1, "no_tags": 1, "no_tags_in_vocab": 1}
  # the tags of lines 0, 1, 3, 5, 6, 7: 3 + 3 (sea twice) + 2 (yum) + 1 (selfie) + 2 + 2
  assert report["sections"]["tag assignments"] == {
      "unit": "assignments", "read": 13, "written": 10,
      "skipped": {"duplicate": 1, "not_in_vocab": 2}}
  assert meta["feature_views"] == [["object", 3], ["scene", 2]]
  # kept: sea/ sea/ food/ love/ beach/; line 6 (love/) has no #love
  assert meta["provenance"]["collection_tag_share"] == pytest.approx(4 / 5)
  data = PostDataset(str(tmp_path / "d"))
  posts = data.read(np.arange(data.num_posts))
  np.testing.assert_array_equal(posts["post_id"], [0, 1, 3, 6, 7])
  a, b = np.load(raw / "a.npy"), np.load(raw / "b.npy")
  np.testing.assert_array_equal(posts["features"], np.hstack([a, b])[[0, 1, 3, 6, 7]])
  tags = [sorted(data.vocab[t] for t in ids[m]) for ids, m in zip(posts["tag_ids"],
                                                                   posts["tag_mask"])]
  assert tags == [["beach", "sea", "sun"], ["love", "sea"], ["food"], ["beach", "sun"],
                  ["beach", "sea"]]
  assert data.spec.feature_views == (("object", 3), ("scene", 2))
  again = _convert(raw, tmp_path / "d2", views, status, seed=0)
  other = _convert(raw, tmp_path / "d3", views, status, seed=1)
  assert again["counts"] == meta["counts"] and again["provenance"]["seed"] == 0
  assert other["provenance"]["seed"] == 1


def test_skipped_images_come_from_the_feature_extractor(raw, tmp_path):
  features = tmp_path / "f"
  features.mkdir()
  np.save(features / "features.npy", np.ones((8, 4), np.float32))
  np.save(features / "layout.npy", np.ones((8, 2), np.float32))
  status = np.full(8, image_features.WRITTEN, np.int8)
  status[[0, 7]] = image_features.reason_code("truncated"), image_features.reason_code("missing")
  np.save(features / "status.npy", status)
  views, status = harrison.feature_dir_views(str(features), 8)
  meta = _convert(raw, tmp_path / "d", views, status)
  assert meta["build_report"]["skipped"] == {"blank_image_path": 1, "image_truncated": 1,
                                             "image_missing": 1, "no_tags": 1,
                                             "no_tags_in_vocab": 1}
  assert meta["feature_views"] == [["object", 4], ["scene", 2]]
  np.save(features / "status.npy", np.zeros(8, np.int8))
  with pytest.raises(ValueError, match="8 images not done yet"):
    harrison.feature_dir_views(str(features), 8)


def test_bad_inputs_name_the_file_and_line(raw, tmp_path):
  (raw / "short.txt").write_text("sea\nbeach\n")
  with pytest.raises(ValueError, match="data_list.txt has 8 lines and .*short.txt 2: the lists "
                                       "are out of step"):
    harrison.read_lists(str(raw / "data_list.txt"), str(raw / "short.txt"))
  (raw / "v1.txt").write_text("sea 0\nbeach one\n")
  with pytest.raises(ValueError, match=r"v1.txt:2: expected 'tag index'"):
    harrison.read_vocab(str(raw / "v1.txt"))
  (raw / "v2.txt").write_text("sea 0\nbeach 2\n")
  with pytest.raises(ValueError, match="indices must be 0..1"):
    harrison.read_vocab(str(raw / "v2.txt"))
  bad = np.load(raw / "a.npy")
  bad[5, 1] = np.nan
  np.save(raw / "nan.npy", bad)
  with pytest.raises(ValueError, match=r"row 5 \(data_list line 6\) has NaN"):
    harrison.load_views([f"x={raw / 'nan.npy'}"], 8)
  with pytest.raises(ValueError, match=r"expected \[9, d\]"):
    harrison.load_views([f"x={raw / 'a.npy'}"], 9)


def test_the_command(raw, tmp_path):
  proc = subprocess.run([sys.executable, "-m", "data_prep.harrison", f"--raw={raw}",
                         f"--out={tmp_path / 'd'}", f"--view=object={raw / 'a.npy'}"],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "images read 8, written 5" in proc.stdout
  assert PostDataset(str(tmp_path / "d")).feature_dim == 3
