"""Builds a dataset directory from the synthetic world, user by user, in bounded memory.

Each user's posts are generated, assigned to splits and handed to the DatasetWriter, which
streams them into shards; only the small per-post latents (concept ids and weights, for the
oracle) are kept until the end. After the writer renumbers hashtags by training frequency, the
world is renumbered the same way and saved to DIR/world/, so the oracle scores in dataset ids.

Splits: user_disjoint or temporal (hashjax.data.splits). An open vocabulary
(WorldConfig.held_out_tag_share > 0): the held-out hashtags are drawn once per (world, seed)
and removed from the training posts as they are written; a training post left without one is
skipped (reason "held_out", with its latents, so the oracle's rows still match).
"""

import contextlib
import dataclasses
import fcntl
import json
import os
import time
from typing import Any

import numpy as np

from hashjax.data import format as fmt
from hashjax.data import splits
from hashjax.data.synthetic.world import PRESETS, World, WorldConfig
from hashjax.data.writer import DatasetWriter

GENERATOR = "hashjax.data.synthetic"  # recorded in provenance; unchanged by the package move
# Bump whenever a change to the generator or to a preset changes the data it produces or the
# stored world (which the oracle reads), so that cached datasets (ensure_synthetic) are rebuilt
# instead of silently reused. Version 3 keeps the tag tables per (style group, country) for
# `polysemy_by`; its default posts are byte-identical to version 2's.
GENERATOR_VERSION = 3
WORLD_DIR = "world"
LATENT_FILE = "post_latents.npz"


def build_synthetic(directory: str, *, preset: str = "default", seed: int = 0,
                    split_scheme: str = "temporal", feature_dtype: str = "float32",
                    overrides: dict[str, Any] | None = None, posts_per_shard: int = 50_000,
                    overwrite: bool = False, log=print) -> dict[str, Any]:
  """Generates the preset's world and writes it as a dataset; returns the metadata.

  Bad arguments (an unknown preset or override field, an impossible size, a negative seed) raise
  ValueError before anything is written; a build that fails later leaves nothing either.
  """
  config = world_config(preset, overrides)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0, got {seed!r}")  # numpy seeds are
  start = time.time()
  world = World.create(config, seed)
  user_split = splits.user_disjoint_split(  # read only by the user-disjoint schemes
      config.num_users, seed,
      split_scheme if splits.is_user_disjoint(split_scheme) else "user_disjoint")
  held_out = held_out_tags(config, seed)
  report = fmt.BuildReport()
  # The with-block stages everything, world/ included, in a sibling directory and moves it into
  # place only at a clean exit: a failed (re)build leaves no partial dataset behind.
  with DatasetWriter(directory, feature_dim=world.feature_dim, feature_views=world.feature_views,
                     num_tags=len(world.tag_strings), user_meta_dim=10,
                     split_scheme=split_scheme, feature_dtype=feature_dtype, has_captions=True,
                     caption_vocab_size=len(world.caption_vocab),
                     posts_per_shard=posts_per_shard, overwrite=overwrite) as writer:
    concept_ids, concept_weights = _write_users(writer, world, config, split_scheme, user_split,
                                                held_out, report, start, log)
    provenance = {"generator": GENERATOR, "generator_version": GENERATOR_VERSION,
                  "preset": preset, "seed": seed, "config": dataclasses.asdict(config)}
    order = writer.finalize(vocab=world.tag_strings, word_vectors=world.word_vectors,
                            caption_vocab=world.caption_vocab, users=world.users,
                            provenance=provenance, report=report)
    world.reorder_tags(order).save(os.path.join(writer.directory, WORLD_DIR))
    np.savez(os.path.join(writer.directory, WORLD_DIR, LATENT_FILE),
             concept_ids=concept_ids, concept_weights=concept_weights)
  if log:
    log(f"built {directory} in {time.time() - start:.1f}s: {report.summary()}")
  return fmt.read_metadata(directory)


def world_config(preset: str, overrides: dict[str, Any] | None = None) -> WorldConfig:
  """The preset's WorldConfig with `overrides` applied, validated (errors name the field)."""
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
  fields = [f.name for f in dataclasses.fields(WorldConfig)]
  unknown = sorted(set(overrides or {}) - set(fields))
  if unknown:
    raise ValueError(f"WorldConfig has no field {', '.join(map(repr, unknown))}; the fields are "
                     f"{', '.join(fields)}")
  return dataclasses.replace(PRESETS[preset], **(overrides or {})).validate()


def held_out_tags(config: WorldConfig, seed: int) -> np.ndarray:
  """The world tag ids removed from training posts: floor(share * Y) of them, uniformly."""
  count = int(config.held_out_tag_share * config.num_tags)
  rng = np.random.default_rng([seed, 0x4E57])  # its own stream: the world's draws are untouched
  return np.sort(rng.choice(config.num_tags, count, replace=False)) if count else np.zeros(0, int)


def _hold_out(posts, split, held_out, report):
  """Removes the held-out tags from the training posts; returns the rows still written."""
  if not len(held_out):
    return np.ones(len(split), bool)
  train = split == fmt.SPLIT_CODES["train"]
  posts["tags"] = [t[~np.isin(t, held_out)] if is_train else t
                   for t, is_train in zip(posts["tags"], train)]
  keep = np.array([len(t) > 0 for t in posts["tags"]], bool)
  report.skip("held_out", int((~keep).sum()))
  return keep


def _write_users(writer, world, config, split_scheme, user_split, held_out, report, start, log):
  """Generates every user's posts into the writer; returns the per-row latents for the oracle."""
  concept_ids, concept_weights = [], []
  next_post_id = 0
  for user in range(config.num_users):
    posts = world.generate_user_posts(user)
    n = len(posts["timestamp"])
    split = (splits.temporal_split(n) if split_scheme == "temporal"
             else np.full(n, user_split[user], np.int8))
    report.read += n
    keep = _hold_out(posts, split, held_out, report)
    ids = np.arange(next_post_id, next_post_id + n)[keep]  # post ids name the generated posts
    writer.add_block(post_id=ids, user_id=np.full(len(ids), user),
                     timestamp=posts["timestamp"][keep], split=split[keep],
                     features=posts["features"][keep],
                     tags=[t for t, k in zip(posts["tags"], keep) if k],
                     captions=[c for c, k in zip(posts["captions"], keep) if k],
                     user_meta=world.user_meta(np.full(len(ids), user)),
                     where=lambda i, u=user: f"synthetic user {u} post {i}")
    concept_ids.append(posts["concept_ids"][keep])
    concept_weights.append(posts["concept_weights"][keep])
    next_post_id += n
    if log and (user + 1) % max(1, config.num_users // 10) == 0:
      log(f"  generated {user + 1}/{config.num_users} users, {next_post_id} posts "
          f"({time.time() - start:.0f}s)")
  return np.concatenate(concept_ids), np.concatenate(concept_weights)


def _stored_config(stored: dict) -> dict:
  """A cached dataset's WorldConfig, a field added since it was built taken at its default
  (a new field's default changes nothing the generator writes)."""
  defaults = json.loads(json.dumps(dataclasses.asdict(WorldConfig())))
  return {**{k: v for k, v in defaults.items() if k not in stored}, **stored}


def load_world(directory: str) -> World:
  """The world of a built dataset, renumbered to the dataset's tag ids."""
  world_dir = os.path.join(directory, WORLD_DIR)
  if not os.path.isdir(world_dir):
    raise fmt.DatasetError(f"{world_dir}: missing; only synthetic datasets have a world")
  return World.load(world_dir)


def load_oracle(directory: str) -> tuple[World, np.ndarray, np.ndarray]:
  """The renumbered world and the per-row latents (concept ids, weights) of a built dataset."""
  world = load_world(directory)
  latents = np.load(os.path.join(directory, WORLD_DIR, LATENT_FILE))
  return world, latents["concept_ids"], latents["concept_weights"]


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

  Safe to call from many processes at once (the processes of one multi-process job, jobs of a
  sweep started together): the check and the build hold an exclusive lock on DIR.lock, so one
  process builds while the others wait and then find the finished dataset.
  """
  with _build_lock(directory, log):
    return _ensure_synthetic_locked(directory, preset=preset, seed=seed,
                                    split_scheme=split_scheme, log=log)


@contextlib.contextmanager
def _build_lock(directory: str, log):
  """An fcntl.flock on the sibling DIR.lock (DIR itself appears only when a build ends)."""
  target = os.path.normpath(directory)
  os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
  fd = os.open(target + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      if log:
        log(f"waiting for another process building {target} (lock {target}.lock)")
      fcntl.flock(fd, fcntl.LOCK_EX)  # the kernel drops it if that process dies
    yield
  finally:
    os.close(fd)  # closing releases the lock


def _ensure_synthetic_locked(directory: str, *, preset: str, seed: int, split_scheme: str,
                             log) -> str:
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
      if _stored_config(prov["config"]) != json.loads(json.dumps(dataclasses.asdict(
          PRESETS[preset]))):
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
