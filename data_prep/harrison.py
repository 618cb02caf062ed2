r"""Converts the HARRISON benchmark (Park et al. 2016) into a hashjax dataset.

  python -m data_prep.harrison --raw=DIR --out=OUT (--images=IMAGE_DIR | --features=FEAT_DIR |
      --view=NAME=FILE.npy ...) [--seed=0] [--split_scheme=user_disjoint]

The released lists, in DIR (or given one by one with --data_list, --tag_list, --vocab):
  data_list.txt     line i: the path of image i, e.g. instagram_dataset/sea/image_12.jpg (its
                    folder is the hashtag the photo was collected under)
  tag_list.txt      line i: the hashtags of image i, space separated (may end in a space)
  vocab_index.txt   997 lines "tag index"

Image features, one of:
  --images=IMAGE_DIR   photos under IMAGE_DIR at the data_list paths: data_prep.image_features
                       runs first (resumable, in OUT.features/), then as --features
  --features=FEAT_DIR  a data_prep.image_features output for this data_list: the views
                       "object" (EfficientNet-Lite0's pooled 1280-d features, ImageNet) and
                       "scene" (its 448-d stage-5 layout; Park et al. used a Places-trained
                       VGG, which no offline package has); images it skipped are skipped here
  --view=NAME=FILE     a float array [N, d] aligned with data_list, repeated per view (any
                       features a user computed); rows with NaN or inf stop with an error

The dataset's features are the views concatenated, recorded as metadata feature_views, so a
model can read one and zero-pad the others (Table 1's single-view rows). HARRISON has no users:
each image is its own user (user_id = its line number), so the seeded user-disjoint split is a
random split of the images (recorded in the metadata: scheme and seed). Timestamps are line
numbers.

Accounting (metadata build_report): posts (images) read = lines; skipped by reason:
blank_image_path, image_<reason> (the feature extractor's: missing, empty, not_an_image,
truncated, unreadable), no_tags (a blank tag line), no_tags_in_vocab (every tag outside the
vocabulary). The "tag assignments" section counts the tags of the lines that have an image:
written, or skipped as not_in_vocab or duplicate (a tag twice on one line). A line count that
differs between data_list and tag_list is an error (the lists are out of step); so is a
malformed vocabulary line. The share of images whose tags contain their folder's hashtag is
reported (collection_tag_share): a low one means the lists are out of step.
"""

from __future__ import annotations

import os

from absl import app, flags
import numpy as np

from data_prep import image_features
from hashjax.data import format as fmt
from hashjax.data import images as images_lib
from hashjax.data import splits
from hashjax.data.writer import DatasetWriter

GENERATOR = "data_prep.harrison"


def read_vocab(path: str) -> list[str]:
  """The tags by index; ValueError naming the line for a malformed or inconsistent one."""
  tags: dict[int, str] = {}
  for number, line in enumerate(fmt.read_lines(path), 1):
    if not line.strip():
      continue
    fields = line.split()
    if len(fields) != 2 or not fields[1].isdigit():
      raise ValueError(f"{path}:{number}: expected 'tag index', got {line!r}")
    tag, index = fields[0], int(fields[1])
    if index in tags or tag in tags.values():
      raise ValueError(f"{path}:{number}: tag {tag!r} or index {index} appears twice")
    tags[index] = tag
  if sorted(tags) != list(range(len(tags))):
    raise ValueError(f"{path}: indices must be 0..{len(tags) - 1}, got {min(tags)}.."
                     f"{max(tags)} for {len(tags)} tags")
  return [tags[i] for i in range(len(tags))]


def read_lists(data_list: str, tag_list: str) -> tuple[list[str], list[list[str]]]:
  """(image paths, tag strings per image); ValueError if the files' line counts differ."""
  paths = [p.strip() for p in fmt.read_lines(data_list)]
  tags = [line.split() for line in fmt.read_lines(tag_list)]
  if len(paths) != len(tags):
    raise ValueError(f"{data_list} has {len(paths)} lines and {tag_list} {len(tags)}: the lists "
                     "are out of step (line i of each describes image i)")
  return paths, tags


def load_views(args_views: list[str], num_images: int) -> tuple[list[tuple[str, np.ndarray]],
                                                                  np.ndarray]:
  """[(name, [N, d] float32)] from --view=NAME=FILE, and the status (all written)."""
  views = []
  for spec in args_views:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
      raise ValueError(f"--view expects NAME=FILE.npy, got {spec!r}")
    values = np.load(path, mmap_mode="r")
    if values.ndim != 2 or len(values) != num_images:
      raise ValueError(f"{path}: expected [{num_images}, d] features (one row per data_list "
                       f"line), got shape {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
      raise ValueError(f"{path}: row {bad[0]} (data_list line {bad[0] + 1}) has NaN or inf "
                       f"({len(bad)} such rows)")
    views.append((name, np.asarray(values, np.float32)))
  return views, np.full(num_images, image_features.WRITTEN, np.int8)


def feature_dir_views(directory: str, num_images: int):
  """The object and scene views and the status of a data_prep.image_features output."""
  status = np.load(os.path.join(directory, "status.npy"))
  if len(status) != num_images:
    raise ValueError(f"{directory}: features of {len(status)} images, data_list has "
                     f"{num_images}")
  if (status == image_features.PENDING).any():
    raise ValueError(f"{directory}: {(status == 0).sum()} images not done yet: rerun "
                     "data_prep.image_features to finish it")
  views = [(name, np.load(os.path.join(directory, f"{file}.npy"), mmap_mode="r"))
           for name, file in (("object", "features"), ("scene", "layout"))]
  return views, status


def convert(data_list: str, tag_list: str, vocab_file: str, out: str, views, status, *,
            seed: int = 0, split_scheme: str = "user_disjoint",
            provenance: dict | None = None) -> dict:
  """Writes the dataset (module docstring); returns its metadata."""
  vocab = read_vocab(vocab_file)
  index = {t: i for i, t in enumerate(vocab)}
  paths, tag_lines = read_lists(data_list, tag_list)
  report = fmt.BuildReport()
  assignments = report.section("tag assignments", "assignments")
  report.read = len(paths)
  user_split = splits.user_disjoint_split(len(paths), seed, split_scheme)
  kept_rows, kept_tags, collected = [], [], 0
  for row, (path, tags) in enumerate(zip(paths, tag_lines)):
    if not path:
      report.skip("blank_image_path")
      continue
    if status[row] != image_features.WRITTEN:
      report.skip("image_" + images_lib.REASONS[int(status[row]) - 2])
      continue
    if not tags:
      report.skip("no_tags")
      continue
    ids, seen = [], set()
    for tag in tags:
      assignments.read += 1
      if tag not in index:
        assignments.skip("not_in_vocab")
      elif tag in seen:
        assignments.skip("duplicate")
      else:
        seen.add(tag)
        ids.append(index[tag])
        assignments.written += 1
    if not ids:
      report.skip("no_tags_in_vocab")
      continue
    collected += os.path.basename(os.path.dirname(path)) in seen
    kept_rows.append(row)
    kept_tags.append(np.asarray(ids, np.int32))
  dims = [(name, int(v.shape[1])) for name, v in views]
  rows = np.asarray(kept_rows, np.int64)
  features = np.concatenate([np.asarray(v[rows], np.float32) for _, v in views], axis=1)
  provenance = {"generator": GENERATOR, "seed": seed,
                "files": {"data_list": data_list, "tag_list": tag_list, "vocab": vocab_file},
                "collection_tag_share": collected / max(len(rows), 1), **(provenance or {})}
  with DatasetWriter(out, feature_dim=sum(d for _, d in dims), num_tags=len(vocab),
                     split_scheme=split_scheme, feature_views=dims) as writer:
    writer.add_block(post_id=rows, user_id=rows, timestamp=rows, features=features,
                     split=user_split[rows], user_meta=np.zeros((len(rows), 0), np.float32),
                     tags=kept_tags, where=lambda i: f"{data_list}:{rows[i] + 1}")
    writer.finalize(vocab=vocab, provenance=provenance, report=report)
  return fmt.read_metadata(out)


def main(argv):
  del argv
  f = flags.FLAGS
  given = lambda name, default: getattr(f, name) or os.path.join(f.raw or "", default)
  data_list, tag_list = given("data_list", "data_list.txt"), given("tag_list", "tag_list.txt")
  vocab = given("vocab", "vocab_index.txt")
  sources = sum(bool(x) for x in (f.images, f.features, f.view))
  if sources != 1:
    raise app.UsageError("give exactly one of --images, --features or --view")
  paths, _ = read_lists(data_list, tag_list)
  provenance = {}
  if f.view:
    views, status = load_views(f.view, len(paths))
  else:
    directory = f.features
    if f.images:
      directory = os.path.normpath(f.out) + ".features"
      image_features.extract(f.images, directory, data_list, batch_size=f.batch_size)
      provenance["images"] = f.images
    views, status = feature_dir_views(directory, len(paths))
    provenance["features"] = directory
  meta = convert(data_list, tag_list, vocab, f.out, views, status, seed=f.seed,
                 split_scheme=f.split_scheme, provenance=provenance)
  built = meta["build_report"]
  print(f"wrote {f.out}: images read {built['read']}, written {built['written']} "
        f"{meta['counts']}, skipped {built['skipped']}; tags {built['sections']}; views "
        f"{meta['feature_views']}; collection tag share "
        f"{meta['provenance']['collection_tag_share']:.3f}")


def define_flags() -> None:
  flags.DEFINE_string("raw", None, "The directory of data_list.txt, tag_list.txt and "
                      "vocab_index.txt.")
  flags.DEFINE_string("data_list", None, "data_list.txt (default: in --raw).")
  flags.DEFINE_string("tag_list", None, "tag_list.txt (default: in --raw).")
  flags.DEFINE_string("vocab", None, "vocab_index.txt (default: in --raw).")
  flags.DEFINE_string("out", None, "The dataset directory written.", required=True)
  flags.DEFINE_string("images", None, "Photos at the data_list paths under this directory.")
  flags.DEFINE_string("features", None, "A data_prep.image_features output for data_list.")
  flags.DEFINE_multi_string("view", None, "NAME=FILE.npy: a feature view aligned with "
                            "data_list (repeat for more views).")
  flags.DEFINE_integer("batch_size", 8, "With --images: images per forward pass.")
  flags.DEFINE_integer("seed", 0, "The random split's seed.")
  flags.DEFINE_enum("split_scheme", "user_disjoint", ["user_disjoint", "user_disjoint_70_10_20"],
                    "The random split (one user per image): 80/10/10 or 70/10/20.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
