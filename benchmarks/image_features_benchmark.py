r"""Throughput of EfficientNet-Lite0 feature extraction on this CPU, the network and the command.

  python -m benchmarks.image_features_benchmark --out=/tmp/image_features_benchmark.json

1. The jitted forward pass at 224 x 224 for several batch sizes: images/s, and FLOP/s as a
   fraction of this machine's fp32 matmul peak (measured in the same run). The FLOPs per image
   are XLA's count of the compiled pass (cost_analysis); the convolutions' multiply-adds,
   counted from the architecture, are printed beside it as a check.
2. data_prep.image_features end to end (decode, crop, network, memory-mapped writes) over
   --images copies of scikit-image's sample photos: images/s, the rate a user sees.
"""

import json
import os
import shutil
import tempfile
import time

from absl import app, flags
import jax
import numpy as np

from benchmarks.common import matmul_peak, peak_rss_bytes, timed
from data_prep import image_features
from hashjax.models import efficientnet_lite as E


def define_flags() -> None:
  flags.DEFINE_string("out", None, "Write the results as JSON here.")
  flags.DEFINE_float("seconds", 3.0, "Minimum timed duration per measurement.")
  flags.DEFINE_list("batch_sizes", ["1", "8", "32"], "Forward-pass batch sizes.")
  flags.DEFINE_integer("images", 256, "Photos for the end-to-end command.")


def conv_macs(size: int = E.IMAGE_SIZE) -> int:
  """Multiply-adds of one image's convolutions and classifier (SAME padding: ceil(h / s))."""
  side = -(-size // 2)
  macs = side * side * 3 * 9 * E.STEM
  for expansion, kernel, stride, cin, cout in E.block_specs():
    hidden = cin * expansion
    if expansion != 1:
      macs += side * side * cin * hidden
    side = -(-side // stride)
    macs += side * side * hidden * kernel * kernel + side * side * hidden * cout
  return macs + side * side * 320 * E.HEAD + E.HEAD * E.NUM_CLASSES


def forward(peak: float, batch: int, variables, seconds: float) -> dict:
  apply = jax.jit(lambda v, x: E.EfficientNetLite0().apply(v, E.normalize(x)))
  pixels = np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
  compiled = apply.lower(variables, pixels).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost["flops"]) / batch
  s = timed(lambda: apply(variables, pixels), seconds)
  return {"batch": batch, "images_per_s": batch / s, "xla_gflop_per_image": flops / 1e9,
          "fraction_of_peak": flops * batch / s / peak}


def end_to_end(count: int, batch: int) -> dict:
  from skimage import data
  from PIL import Image
  source = tempfile.mkdtemp()
  photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
  for i in range(count):
    Image.fromarray(photos[i % len(photos)]).save(os.path.join(source, f"{i:05d}.jpg"),
                                                  quality=90)
  out = os.path.join(source, "features")
  extractor = E.FeatureExtractor(batch)
  extractor(np.zeros((1, 224, 224, 3), np.uint8))  # compile outside the timing
  start = time.perf_counter()
  report = image_features.extract(source, out, batch_size=batch, extractor=extractor)
  seconds = time.perf_counter() - start
  shutil.rmtree(source)
  assert report["report"]["written"] == count, report
  return {"images": count, "batch": batch, "seconds": seconds, "images_per_s": count / seconds}


def main(argv):
  del argv
  f = flags.FLAGS
  peak = matmul_peak(f.seconds)
  variables = E.pretrained_variables()
  macs = conv_macs()
  results = {"machine": {"nproc": os.cpu_count(), "jax": jax.__version__,
                         "matmul_peak_gflops": peak / 1e9},
             "architecture_gflop_per_image": 2 * macs / 1e9, "forward": []}
  print(f"fp32 matmul peak here: {peak / 1e9:.1f} GFLOP/s; Lite0 at 224: {macs / 1e6:.0f}M "
        f"multiply-adds ({2 * macs / 1e9:.3f} GFLOP) per image")
  print("| batch | images/s | XLA GFLOP / image | fraction of peak |")
  print("| ---: | ---: | ---: | ---: |")
  for batch in map(int, f.batch_sizes):
    row = forward(peak, batch, variables, f.seconds)
    results["forward"].append(row)
    print(f"| {batch} | {row['images_per_s']:.1f} | {row['xla_gflop_per_image']:.3f} | "
          f"{row['fraction_of_peak']:.2f} |")
  results["end_to_end"] = end_to_end(f.images, 8)
  results["peak_rss_mib"] = peak_rss_bytes() / 2 ** 20
  e = results["end_to_end"]
  print(f"data_prep.image_features on {e['images']} JPEGs: {e['images_per_s']:.1f} images/s "
        f"(batch {e['batch']}); peak RSS {results['peak_rss_mib']:.0f} MiB")
  if f.out:
    with open(f.out, "w") as fh:
      json.dump(results, fh, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
