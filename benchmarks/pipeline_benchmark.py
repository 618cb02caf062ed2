"""Input-pipeline throughput: memory-mapped numpy shards vs ArrayRecord, batched vs per-record.

    python -m benchmarks.pipeline_benchmark --out=pipeline_benchmark.json [--dir=/tmp/bench]

Writes a random dataset with DatasetWriter (float32 and float16 features) and the same training
posts as one ArrayRecord file (one record per post, what TFDS's array_record format gives without
TensorFlow), then measures posts/s of each grain pipeline at one batch size. All numbers are
WARM-CACHE (the files were just written, or read in the warm-up, and fit in RAM); bytes/post on
disk are reported so the disk bandwidth a cold run needs is posts/s x bytes/post. Numpy write
times exclude generating the random posts; the ArrayRecord one includes reading them back.
"""

import argparse
import functools
import importlib.metadata
import json
import os
import platform
import shutil
import tempfile
import time

import grain
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from hashjax.data import format as fmt
from hashjax.data import pipeline
from hashjax.data.reader import PAD_ID, PostDataset
from hashjax.data.writer import DatasetWriter

HEADER = 4  # int64 words at the start of an ArrayRecord record: post_id, user_id, timestamp, n_tags


def parse_args():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--out", help="write the results as JSON here")
  p.add_argument("--dir", help="keep the datasets here (reused when already complete)")
  p.add_argument("--num_posts", type=int, default=40_000)
  p.add_argument("--feature_dim", type=int, default=4096)
  p.add_argument("--num_tags", type=int, default=10_000)
  p.add_argument("--user_meta_dim", type=int, default=10)
  p.add_argument("--posts_per_shard", type=int, default=50_000)
  p.add_argument("--batch_size", type=int, default=256)
  p.add_argument("--max_tags", type=int, default=16)
  p.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per variant")
  p.add_argument("--min_batches", type=int, default=20, help="minimum timed batches per variant")
  p.add_argument("--warmup", type=int, default=5, help="untimed batches first")
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args()


# -- data -------------------------------------------------------------------------------------

def random_users(args):
  """Yields one block of posts per user; the same posts for a given seed."""
  rng = np.random.default_rng(args.seed)
  # Heavy-tailed posts per user (lognormal, mean ~9, a few users with hundreds of posts).
  sizes = np.clip(np.ceil(rng.lognormal(1.5, 1.2, args.num_posts)), 1, 2000).astype(int)
  sizes = sizes[:np.searchsorted(np.cumsum(sizes), args.num_posts) + 1]
  sizes[-1] -= sizes.sum() - args.num_posts
  # Zipf-like hashtag popularity; 1 + Poisson(1.7) tags per post (mean 2.7), no repeats in a post.
  tag_cdf = np.cumsum(1.0 / np.arange(1, args.num_tags + 1))
  tag_cdf /= tag_cdf[-1]
  post_id = 0
  for user, n in enumerate(sizes):
    feats = np.maximum(rng.standard_normal((n, args.feature_dim), np.float32), 0)
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-6)
    counts = np.minimum(1 + rng.poisson(1.7, n), 30)
    draws = np.minimum(np.searchsorted(tag_cdf, rng.random((n, 40))), args.num_tags - 1)
    tags = [np.array(list(dict.fromkeys(d.tolist()))[:c], np.int32) for d, c in zip(draws, counts)]
    q = np.arange(n) / n  # temporal split: each user's first 80% by time train, 10% val, 10% test
    split = np.where(q < 0.8, 0, np.where(q < 0.9, 1, 2))
    yield dict(post_id=np.arange(post_id, post_id + n), user_id=np.full(n, user),
               timestamp=np.sort(rng.integers(0, 2**40, n)), split=split, features=feats,
               tags=tags, user_meta=rng.random((n, args.user_meta_dim), np.float32))
    post_id += n


def write_numpy(directory, args, feature_dtype):
  """Writes the dataset unless a matching one is there; returns the seconds spent in the writer
  (DatasetWriter: checks + np.save + finalize), not counting the random generation."""
  if os.path.exists(os.path.join(directory, fmt.METADATA_FILE)):
    meta = fmt.read_metadata(directory)
    if (meta["num_posts"], meta["feature_dim"], meta["shards"][0]["num_posts"]) == (
        args.num_posts, args.feature_dim, min(args.num_posts, args.posts_per_shard)):
      return None
  start, generating = time.perf_counter(), 0.0
  writer = DatasetWriter(directory, feature_dim=args.feature_dim, num_tags=args.num_tags,
                         user_meta_dim=args.user_meta_dim, split_scheme="temporal",
                         feature_dtype=feature_dtype, posts_per_shard=args.posts_per_shard,
                         overwrite=True)
  users = random_users(args)
  while True:
    t = time.perf_counter()
    block = next(users, None)
    generating += time.perf_counter() - t
    if block is None:
      break
    writer.add_block(**block)
  writer.finalize(vocab=[f"tag{i}" for i in range(args.num_tags)],
                  provenance={"generator": "benchmarks/pipeline_benchmark.py"})
  return time.perf_counter() - start - generating


def encode(post_id, user_id, timestamp, features, user_meta, tags) -> bytes:
  """One post as one record: 4 int64 header words, then raw float32/int32 bytes (zero-copy to
  decode with np.frombuffer; pickle or msgpack of the same arrays only add overhead)."""
  head = np.array([post_id, user_id, timestamp, len(tags)], np.int64)
  return b"".join([head.tobytes(), features.tobytes(), user_meta.tobytes(),
                   tags.astype(np.int32).tobytes()])


def write_array_record(path, ds: PostDataset):
  """The training posts of `ds`, shuffled by grain at read time, one record per post."""
  if os.path.exists(path):
    return None
  start = time.perf_counter()
  # group_size:1 gives O(1) random access; uncompressed because float features don't compress.
  writer = ArrayRecordWriter(path + ".tmp", "group_size:1,uncompressed")
  rows = ds.split_rows("train")
  for chunk in np.array_split(rows, max(1, len(rows) // 1024)):
    b = ds.read(chunk)  # all hashtags (max_tags defaults to the dataset maximum)
    for i in range(len(chunk)):
      writer.write(encode(b["post_id"][i], b["user_id"][i], b["timestamp"][i], b["features"][i],
                          b["user_meta"][i], b["tag_ids"][i][b["tag_mask"][i]]))
  writer.close()
  os.replace(path + ".tmp", path)
  return time.perf_counter() - start


class Decode:
  """grain map: one ArrayRecord record -> one padded post (same keys as PostDataset.read)."""

  def __init__(self, feature_dim, user_meta_dim, max_tags):
    self.d, self.m, self.t = feature_dim, user_meta_dim, max_tags

  def __call__(self, record: bytes):
    post_id, user_id, timestamp, n = np.frombuffer(record, np.int64, HEADER)
    offset = 8 * HEADER
    feats = np.frombuffer(record, np.float32, self.d, offset)
    meta = np.frombuffer(record, np.float32, self.m, offset + 4 * self.d)
    tags = np.frombuffer(record, np.int32, n, offset + 4 * (self.d + self.m))
    ids = np.full(self.t, PAD_ID, np.int32)
    ids[:min(n, self.t)] = tags[:self.t]
    return {"post_id": post_id, "user_id": user_id, "timestamp": timestamp, "features": feats,
            "user_meta": meta, "tag_ids": ids, "tag_mask": ids != PAD_ID}


def array_record_batches(path, decode, *, batch_size, seed, num_threads, batched):
  """Textbook TFDS-style pipeline: shuffle record indices, read + decode each, batch. With
  `batched`, batch the indices first and read a batch with one ArrayRecordDataSource.__getitems__
  (array_record reads the records in C++, in parallel), like train_batches does for numpy."""
  source = grain.sources.ArrayRecordDataSource([path])
  if batched:
    ds = grain.MapDataset.range(len(source)).shuffle(seed=seed).repeat(None)
    ds = ds.batch(batch_size, drop_remainder=True, batch_fn=list).map(
        lambda idx: _stack([decode(r) for r in source.__getitems__(idx)]))
  else:
    ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat(None).map(decode)
    ds = ds.batch(batch_size, drop_remainder=True)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads))


def _stack(posts):  # what grain's default batch_fn does
  return {k: np.stack([p[k] for p in posts]) for k in posts[0]}


# -- measuring ---------------------------------------------------------------------------------

def posts_per_second(iterable, args):
  """Posts/s after `warmup` batches, over >= args.seconds and >= args.min_batches batches."""
  it = iter(iterable)
  for _ in range(args.warmup):
    next(it)
  start, batches = time.perf_counter(), 0
  while time.perf_counter() - start < args.seconds or batches < args.min_batches:
    batch = next(it)
    batches += 1
  assert batch["features"].shape == (args.batch_size, args.feature_dim), batch["features"].shape
  return batches * args.batch_size / (time.perf_counter() - start)


def disk_bytes(path):
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def versions():
  def version(name):
    try:
      return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      return None
  return {n: version(n) for n in ("jax", "grain", "array_record", "numpy", "tensorflow-datasets")}


def main():
  args = parse_args()
  root = args.dir or tempfile.mkdtemp(prefix="hashjax_bench_")
  os.makedirs(root, exist_ok=True)
  try:
    run(args, root)
  finally:
    if not args.dir:
      shutil.rmtree(root)


def run(args, root):
  f32_dir, f16_dir = os.path.join(root, "float32"), os.path.join(root, "float16")
  ar_path = os.path.join(root, "train.array_record")
  write_s = {"numpy_float32": write_numpy(f32_dir, args, "float32"),
             "numpy_float16": write_numpy(f16_dir, args, "float16")}
  if write_s["numpy_float32"] is not None and os.path.exists(ar_path):
    os.remove(ar_path)  # stale: holds the posts of an earlier dataset
  f32, f16 = PostDataset(f32_dir), PostDataset(f16_dir)
  write_s["array_record"] = write_array_record(ar_path, f32)
  n_train = len(f32.split_rows("train"))
  sizes = {"numpy_float32": disk_bytes(f32_dir), "numpy_float16": disk_bytes(f16_dir),
           "array_record": disk_bytes(ar_path)}
  per_post = {k: v / (args.num_posts if k.startswith("numpy") else n_train)
              for k, v in sizes.items()}

  common = dict(batch_size=args.batch_size, seed=args.seed)
  decode = Decode(args.feature_dim, args.user_meta_dim, args.max_tags)
  numpy_batches = functools.partial(pipeline.train_batches, max_tags=args.max_tags, **common)
  records = functools.partial(array_record_batches, ar_path, decode, num_threads=2, **common)
  variants = {  # name -> (on-disk format, pipeline factory)
      "train_batches threads=0": ("numpy_float32", lambda: numpy_batches(f32, num_threads=0)),
      "train_batches threads=2": ("numpy_float32", lambda: numpy_batches(f32, num_threads=2)),
      "per_record_batches threads=2": ("numpy_float32", lambda: pipeline.per_record_batches(
          f32, max_tags=args.max_tags, num_threads=2, **common)),
      "array_record per-record threads=2": ("array_record", lambda: records(batched=False)),
      "array_record batched threads=2": ("array_record", lambda: records(batched=True)),
      "train_batches float16 threads=2": ("numpy_float16", lambda: numpy_batches(f16,
                                                                                 num_threads=2)),
  }
  results, load_before = {}, os.getloadavg()  # other processes on the machine skew the numbers
  for name, (disk_format, make) in variants.items():
    rate = posts_per_second(make(), args)
    results[name] = {"posts_per_s": rate, "format": disk_format,
                     "disk_bytes_per_post": per_post[disk_format],
                     "disk_MB_per_s_if_cold": rate * per_post[disk_format] / 1e6}
    print(f"  {name:36s} {rate:10,.0f} posts/s", flush=True)

  print(f"\n{args.num_posts:,} posts ({n_train:,} train), {args.feature_dim}-d features, batch "
        f"{args.batch_size}, max_tags {args.max_tags}; WARM page cache; {os.cpu_count()} CPUs, "
        f"1-min load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
  print(f"{'variant':36s} {'posts/s':>10s} {'bytes/post':>11s} {'cold MB/s needed':>17s}")
  for name, r in results.items():
    print(f"{name:36s} {r['posts_per_s']:10,.0f} {r['disk_bytes_per_post']:11,.0f} "
          f"{r['disk_MB_per_s_if_cold']:17,.0f}")
  for k in sizes:
    took = "reused" if write_s[k] is None else f"written in {write_s[k]:.1f} s"
    print(f"{k}: {sizes[k] / 1e6:,.1f} MB on disk, {took}")

  report = {"results": results, "disk_bytes": sizes, "disk_bytes_per_post": per_post,
            "write_seconds": write_s, "cache": "warm (files in the OS page cache)",
            "config": vars(args), "num_train_posts": n_train, "dataset_dir": root,
            "machine": {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
                        "load_average_before": load_before, "load_average_after": os.getloadavg(),
                        "platform": platform.platform(), "python": platform.python_version(),
                        "versions": versions()}}
  if args.out:
    with open(args.out, "w") as f:
      json.dump(report, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
