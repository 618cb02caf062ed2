"""Builds a dataset directory from the synthetic world, user by user, in bounded memory.

Each user's posts are generated, assigned to splits and handed to the DatasetWriter, which
streams them into shards; only the small per-post latents (concept ids and weights, for the
oracle) are kept until the end. After the writer renumbers hashtags by training frequency, the
world is renumbered the same way and saved to DIR/world/, so the oracle scores in dataset ids.

Splits:
  user_disjoint: users are shuffled (seeded) and divided 80/10/10 into train/val/test users
    (Denton et al.; Durand et al.).
  temporal: each user's posts in time order; the first 90% (at least one post) train, the rest
    split in half between val and test, later posts to test (Veit et al.).
"""

import dataclasses
import json
import os
import time
from typing import Any

import numpy as np

from hashjax.data import format as fmt
from hashjax.data.synthetic import PRESETS, World
from hashjax.data.writer import DatasetWriter

GENERATOR = "hashjax.data.synthetic"
# Bump whenever a change to the generator or to a preset changes the data it produces or the
# stored world (which the oracle reads), so that cached datasets (ensure_synthetic) are rebuilt
# instead of silently reused. Version 3 keeps the tag tables per (style group, country) for
# `polysemy_by`; its default posts are byte-identical to version 2's.
GENERATOR_VERSION = 3
WORLD_DIR = "world"
LATENT_FILE = "post_latents.npz"
USER_DISJOINT_FRACTIONS = (0.8, 0.1, 0.1)
TEMPORAL_TRAIN_FRACTION = 0.9


def temporal_split(num_posts: int) -> np.ndarray:
  """Split codes for one user's posts in time order."""
  n_train = max(1, int(np.floor(TEMPORAL_TRAIN_FRACTION * num_posts)))
  n_val = (num_posts - n_train) // 2
  codes = np.full(num_posts, fmt.SPLIT_CODES["test"], np.int8)
  codes[:n_train] = fmt.SPLIT_CODES["train"]
  codes[n_train:n_train + n_val] = fmt.SPLIT_CODES["val"]
  return codes


def user_disjoint_split(num_users: int, seed: int) -> np.ndarray:
  """A split code per user: a seeded 80/10/10 partition of the users."""
  order = np.random.default_rng([seed, 0x5917]).permutation(num_users)
  bounds = np.round(np.cumsum(USER_DISJOINT_FRACTIONS) * num_users).astype(int)
  codes = np.empty(num_users, np.int8)
  for code, (lo, hi) in enumerate(zip(np.r_[0, bounds[:-1]], bounds)):
    codes[order[lo:hi]] = code
  return codes


def build_synthetic(directory: str, *, preset: str = "default", seed: int = 0,
                    split_scheme: str = "temporal", feature_dtype: str = "float32",
                    overrides: dict[str, Any] | None = None, posts_per_shard: int = 50_000,
                    overwrite: bool = False, log=print) -> dict[str, Any]:
  """Generates the preset's world and writes it as a dataset; returns the metadata."""
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
  config = dataclasses.replace(PRESETS[preset], **(overrides or {}))
  start = time.time()
  world = World.create(config, seed)
  writer = DatasetWriter(directory, feature_dim=config.feature_dim, num_tags=len(world.tag_strings),
                         user_meta_dim=10, split_scheme=split_scheme, feature_dtype=feature_dtype,
                         has_captions=True, caption_vocab_size=len(world.caption_vocab),
                         posts_per_shard=posts_per_shard, overwrite=overwrite)
  user_split = user_disjoint_split(config.num_users, seed)
  report = fmt.BuildReport()
  concept_ids, concept_weights = [], []
  next_post_id = 0
  for user in range(config.num_users):
    posts = world.generate_user_posts(user)
    n = len(posts["timestamp"])
    split = (temporal_split(n) if split_scheme == "temporal"
             else np.full(n, user_split[user], np.int8))
    report.read += n
    writer.add_block(post_id=np.arange(next_post_id, next_post_id + n), user_id=np.full(n, user),
                     timestamp=posts["timestamp"], split=split, features=posts["features"],
                     tags=posts["tags"], captions=posts["captions"],
                     user_meta=world.user_meta(np.full(n, user)),
                     where=lambda i, u=user: f"synthetic user {u} post {i}")
    concept_ids.append(posts["concept_ids"])
    concept_weights.append(posts["concept_weights"])
    next_post_id += n
    if log and (user + 1) % max(1, config.num_users // 10) == 0:
      log(f"  generated {user + 1}/{config.num_users} users, {next_post_id} posts "
          f"({time.time() - start:.0f}s)")
  provenance = {"generator": GENERATOR, "generator_version": GENERATOR_VERSION, "preset": preset,
                "seed": seed, "config": dataclasses.asdict(config)}
  order = writer.finalize(vocab=world.tag_strings, word_vectors=world.word_vectors,
                          caption_vocab=world.caption_vocab, users=world.users,
                          provenance=provenance, report=report)
  world.reorder_tags(order).save(os.path.join(directory, WORLD_DIR))
  np.savez(os.path.join(directory, WORLD_DIR, LATENT_FILE),
           concept_ids=np.concatenate(concept_ids), concept_weights=np.concatenate(concept_weights))
  if log:
    log(f"built {directory} in {time.time() - start:.1f}s: {report.summary()}")
  return fmt.read_metadata(directory)


def load_oracle(directory: str) -> tuple[World, np.ndarray, np.ndarray]:
  """The renumbered world and the per-row latents (concept ids, weights) of a built dataset."""
  world_dir = os.path.join(directory, WORLD_DIR)
  if not os.path.isdir(world_dir):
    raise fmt.DatasetError(f"{world_dir}: missing; only synthetic datasets have an oracle")
  latents = np.load(os.path.join(world_dir, LATENT_FILE))
  return World.load(world_dir), latents["concept_ids"], latents["concept_weights"]


def default_data_dir(preset: str, seed: int, split_scheme: str) -> str:
  """Where the main job keeps generated data: $HASHJAX_DATA_DIR or ~/hashjax_data."""
  root = os.environ.get("HASHJAX_DATA_DIR", os.path.join(os.path.expanduser("~"), "hashjax_data"))
  return os.path.join(root, f"synthetic-{preset}-{split_scheme}-seed{seed}")


def ensure_synthetic(directory: str, *, preset: str, seed: int, split_scheme: str,
                     log=print) -> str:
  """Builds the dataset unless a complete one with the same recipe is already there.

  The recipe is (preset, seed, split) and the generator version: a cache left by an older
  generator is rebuilt, with a log line saying why; a directory that holds any other dataset
  (another recipe, or the preset built with overrides) is never touched.
  """
  recipe = {"preset": preset, "seed": seed, "split_scheme": split_scheme}
  try:
    meta = fmt.read_metadata(directory)
    prov = meta["provenance"]
    found = {"preset": prov.get("preset"), "seed": prov.get("seed"),
             "split_scheme": meta["split_scheme"]}
    if found != recipe or prov.get("generator") != GENERATOR:
      raise fmt.DatasetError(f"{directory} holds another dataset ({found})")
    version = prov.get("generator_version")
    if version == GENERATOR_VERSION:
      if prov["config"] != json.loads(json.dumps(dataclasses.asdict(PRESETS[preset]))):
        raise fmt.DatasetError(f"{directory} holds another dataset (preset {preset!r} built "
                               "with overrides)")
      return directory
    reason = f"stale cache: generator version {version}, this code writes {GENERATOR_VERSION}"
  except fmt.DatasetError as e:
    if os.path.exists(os.path.join(directory, fmt.METADATA_FILE)):
      raise  # a different, complete dataset: never overwrite it silently
    reason = str(e)
  if log:
    log(f"building synthetic dataset ({preset}, seed {seed}, {split_scheme}) in {directory}"
        f" [{reason}]")
  build_synthetic(directory, preset=preset, seed=seed, split_scheme=split_scheme, overwrite=True,
                  log=log)
  return directory
