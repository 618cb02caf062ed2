r"""Converts HetRec 2011 Last.fm-2k (user x artist x tag assignments) into a hashjax dataset.

  python -m data_prep.hetrec_lastfm --raw=../shared/data/hetrec2011-lastfm-2k --out=DIR \
      [--split_scheme=temporal|user_disjoint] [--feature_dim=64] [--min_tag_count=1] [--strict]

HetRec stands in for image posts; the "image" is the artist being tagged. The mapping:

  post       = all tags one user gave one artist on one date (userID, artistID, day/month/year)
               in user_taggedartists.dat; hashtags = those tags, deduplicated, by tag string.
  timestamp  = the date as Unix seconds (UTC midnight; dates before 1970 are negative) plus the
               post's rank among the user's posts of that day, ordered by artistID. Nearly all
               dates are the 1st of a month, so this tie-break is arbitrary but reproducible and
               keeps each user's timestamps strictly increasing.
  post_id    = the post's row number (posts sorted by user, date, artist).
  user_id    = the HetRec userID; user_meta is empty (HetRec has no demographics).
  features   = a descriptor of the artist from user_artists.dat listening weights ONLY, never
               from tags (so test tags cannot leak into features): the log(1+weight) artist x user
               matrix projected on its top feature_dim/2 right singular vectors (uncentred PCA),
               split into positive and negative parts (non-negative, like ReLU CNN features) and
               L2-normalised. It uses every user's listening, test users' included: that is side
               information about the artist, not tag leakage, but say so when you report results.
  vocabulary = tag strings of tags.dat (latin-1) that occur in written posts; with
               min_tag_count > 1, tags used fewer times in total (all splits) are dropped.
  splits     = hashjax.data.splits.temporal_split per user (posts in time order) or
               hashjax.data.splits.user_disjoint_split over users indexed by sorted userID.

Accounting (metadata build_report, hashjax.data.format.BuildReport): one section per file, each
with read = written + sum(skipped) by reason, checked when the dataset is written.
  tags.dat (tag lines), artists.dat (artist lines), user_artists.dat (listening rows): written =
    lines kept. Skipped: blank_line; malformed_line (wrong field count; an id, weight or date
    field that is not ASCII digits within range; an empty tag; a carriage return inside the
    line); duplicate_id (a tagID or artist id an earlier line had: the first line wins, so a
    repeated id never renames a tag); duplicate_row (a (userID, artistID) pair an earlier
    listening row had: the first row's weight is kept, never summed).
  user_taggedartists.dat (assignment lines): written = assignments in written posts. Skipped, in
    the order tested: blank_line, malformed_line (also 31 February etc.), unknown_artist (not in
    artists.dat), artist_without_features (no listening data, or listening that projects to zero,
    e.g. an artist whose only listener listened to nothing else: such a user is an isolated axis
    outside the top ones), unknown_tag (not in tags.dat), duplicate_assignment (the same tag
    string twice in one post), rare_tag (min_tag_count).
  posts (the top level): read = posts formed by the assignments kept so far; written = posts
    stored; skipped: no_tags_left (every tag of the post was rare; its lines are rare_tag).
A line skipped while reading (malformed_line, duplicate_id, duplicate_row) is logged with its
file and line number (the first few per file) or, with --strict, raised as RawDataError; blank
lines and the later reasons are counted only. Lines end with LF or CRLF; a file
with CR-only line endings is refused (hashjax.data.text_tables has the rules shared by
converters). Implausible dates (before Last.fm's 2002 launch or after the May 2011 release) are
kept and counted in the provenance. A failed conversion leaves nothing at --out.
"""

import datetime
import hashlib
import itertools
import os
import time
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import scipy.sparse
from absl import app, flags

from hashjax.data import format as fmt, splits, text_tables
from hashjax.data.text_tables import RawDataError, check_fields, parse_int
from hashjax.data.writer import DatasetWriter

TAGGED, TAGS, ARTISTS, LISTENING = ("user_taggedartists.dat", "tags.dat", "artists.dat",
                                    "user_artists.dat")
RAW_FILES = (TAGGED, TAGS, ARTISTS, LISTENING)
COLUMNS = {TAGGED: ("userID", "artistID", "tagID", "day", "month", "year"),
           TAGS: ("tagID", "tagValue"), ARTISTS: ("id", "name", "url", "pictureURL"),
           LISTENING: ("userID", "artistID", "weight")}
UNITS = {TAGGED: "assignment lines", TAGS: "tag lines", ARTISTS: "artist lines",
         LISTENING: "listening rows"}  # the BuildReport section of each file
PLAUSIBLE_DATES = (datetime.date(2002, 1, 1), datetime.date(2011, 5, 31))
_EPOCH = datetime.date(1970, 1, 1).toordinal()

__all__ = ["RawDataError", "convert", "read_tags", "read_artists", "read_listening",
           "read_assignments", "artist_features"]


def _table(path: str, name: str, report: fmt.BuildReport, strict: bool, log) -> text_tables.Table:
  return text_tables.Table(path, report.section(name, UNITS[name]), columns=COLUMNS[name],
                           encoding="latin-1" if name == TAGS else "utf-8", strict=strict, log=log)


def _id(text: str, what: str) -> int:
  return parse_int(text, what, minimum=0)


def _parse_tag(fields):
  check_fields(fields, 2)
  if not fields[1]:
    raise ValueError("empty tagValue")
  return _id(fields[0], "tagID"), fields[1]


def _parse_artist(fields):
  check_fields(fields, 4, at_least=True)  # only the id is used: a name with a tab loses nothing
  return _id(fields[0], "id")


def _parse_listening(fields):
  check_fields(fields, 3)
  return _id(fields[0], "userID"), _id(fields[1], "artistID"), _id(fields[2], "weight")


def _parse_assignment(fields):
  check_fields(fields, 6)
  user, artist, tag = (_id(x, what) for x, what in zip(fields[:3], COLUMNS[TAGGED]))
  # Bounded so that date() fails with ValueError (31/2, year 0), never with OverflowError.
  day, month, year = (parse_int(x, what, minimum=0, maximum=9999)
                      for x, what in zip(fields[3:], COLUMNS[TAGGED][3:]))
  return user, artist, tag, datetime.date(year, month, day)


def read_tags(path: str, report: fmt.BuildReport, *, strict: bool = False,
              log=None) -> dict[int, str]:
  """{tagID: tag string} of tags.dat (latin-1); a repeated tagID keeps its first line."""
  rows = _table(path, TAGS, report, strict, log).read(_parse_tag, key=lambda row: row[0])
  return dict(row for _, row in rows)


def read_artists(path: str, report: fmt.BuildReport, *, strict: bool = False,
                 log=None) -> set[int]:
  """The artist ids of artists.dat; a repeated id is skipped (duplicate_id)."""
  return {a for _, a in _table(path, ARTISTS, report, strict, log).read(_parse_artist,
                                                                          key=lambda a: a)}


def read_listening(path: str, report: fmt.BuildReport, *, strict: bool = False,
                   log=None) -> np.ndarray:
  """int64 [L, 3] (userID, artistID, weight) of user_artists.dat; a repeated (user, artist)
  pair keeps its first row (duplicate_row), so no weight is summed behind the report's back."""
  rows = _table(path, LISTENING, report, strict, log).read(
      _parse_listening, key=lambda row: row[:2], duplicate_reason="duplicate_row")
  return np.array([row for _, row in rows], np.int64).reshape(-1, 3)


def read_assignments(path: str, report: fmt.BuildReport, *, strict: bool = False,
                     log=None) -> list[tuple[int, tuple]]:
  """[(line number, (userID, artistID, tagID, date))] of user_taggedartists.dat."""
  return _table(path, TAGGED, report, strict, log).read(_parse_assignment)


def artist_features(listening: np.ndarray, feature_dim: int) -> tuple[np.ndarray, np.ndarray]:
  """(artist ids [A], float32 features [A, feature_dim]) from (user, artist, weight) rows.

  Uncentred PCA of the log(1+weight) artist x user matrix X, through the eigenvectors V of the
  user x user Gram matrix X^T X: exact and deterministic (no random ARPACK start), and cheap for
  HetRec's 1,892 users (<1 s; the cost grows as users^3). z = X V_k is each artist's listening projected
  on the top k = feature_dim/2 axes; [max(z,0), max(-z,0)] keeps all of it non-negative. Artists
  whose projection is (numerically) zero get NaN rows: the caller must treat them as featureless.
  """
  users, u_idx = np.unique(listening[:, 0], return_inverse=True)
  artists, a_idx = np.unique(listening[:, 1], return_inverse=True)
  x = scipy.sparse.csr_matrix((listening[:, 2].astype(np.float64), (a_idx, u_idx)),
                              shape=(len(artists), len(users)))  # repeated pairs are summed
  x.data = np.log1p(x.data)
  k = feature_dim // 2
  _, eigvecs = np.linalg.eigh((x.T @ x).toarray())
  v = eigvecs[:, ::-1][:, :k]  # may have fewer than k columns with few users: zero-padded
  z = np.zeros((len(artists), k))
  z[:, :v.shape[1]] = x @ v
  z *= np.where(z.sum(axis=0) < 0, -1.0, 1.0)  # eigenvector signs are arbitrary: fix them
  feats = np.concatenate([np.maximum(z, 0), np.maximum(-z, 0)], axis=1)
  norms = np.linalg.norm(feats, axis=1, keepdims=True)
  tiny = norms[:, 0] <= 1e-6 * norms.max(initial=0.0)
  feats = feats / np.where(tiny[:, None], 1.0, norms)
  feats[tiny] = np.nan
  return artists, feats.astype(np.float32)


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _group_posts(assignments, known_artists, feature_row, tag_names, lines: fmt.ReportSection):
  """{(user, date, artist): {tag string: first line}}, counting every assignment it drops."""
  posts: dict[tuple, dict[str, int]] = defaultdict(dict)
  for number, (user, artist, tag, date) in assignments:
    if artist not in known_artists:
      lines.drop("unknown_artist")
    elif artist not in feature_row:
      lines.drop("artist_without_features")
    elif tag not in tag_names:
      lines.drop("unknown_tag")
    elif tag_names[tag] in posts[(user, date, artist)]:
      lines.drop("duplicate_assignment")  # same tag (string) twice in one post
    else:
      posts[(user, date, artist)][tag_names[tag]] = number
  return {key: tags for key, tags in posts.items() if tags}


def _drop_rare_tags(posts, min_tag_count: int, lines: fmt.ReportSection,
                    report: fmt.BuildReport) -> dict:
  """The posts without tags used fewer than min_tag_count times; a post left empty is skipped."""
  total = Counter(t for tags in posts.values() for t in tags)
  kept = {}
  for key, tags in posts.items():
    left = {t: n for t, n in tags.items() if total[t] >= min_tag_count}
    lines.drop("rare_tag", len(tags) - len(left))
    if left:
      kept[key] = left
    else:
      report.skip("no_tags_left")  # a post, not a line: its lines are rare_tag above
  return kept


def _read_raw(paths: dict[str, str], strict: bool, log, report: fmt.BuildReport):
  """(tag names by id, known artist ids, listening [L, 3], assignments), counted in `report`."""
  kw = dict(strict=strict, log=log)
  return (read_tags(paths[TAGS], report, **kw), read_artists(paths[ARTISTS], report, **kw),
          read_listening(paths[LISTENING], report, **kw),
          read_assignments(paths[TAGGED], report, **kw))


def _write_posts(writer: DatasetWriter, posts: dict, vocab: list[str], features: np.ndarray,
                 feature_row: dict[int, int], split_scheme: str, seed: int, source: str) -> Counter:
  """Adds the posts, a user per block, in (user, date, artist) order; returns implausible years.

  The count of posts per implausible year is returned because those posts are kept, not skipped.
  """
  vocab_id = {t: i for i, t in enumerate(vocab)}
  keys = sorted(posts)
  users = sorted({key[0] for key in keys})
  user_split = splits.user_disjoint_split(len(users), seed)  # user index = rank of id
  row, implausible = 0, Counter()
  for index, (user, group) in enumerate(itertools.groupby(keys, key=lambda key: key[0])):
    block = list(group)
    n = len(block)
    days = np.array([d.toordinal() - _EPOCH for _, d, _ in block], np.int64)
    rank = np.arange(n) - np.searchsorted(days, days)  # position within the day (by artistID)
    split = (splits.temporal_split(n) if split_scheme == "temporal"
             else np.full(n, user_split[index], np.int8))
    implausible.update(d.year for _, d, _ in block
                       if not PLAUSIBLE_DATES[0] <= d <= PLAUSIBLE_DATES[1])
    writer.add_block(
        post_id=np.arange(row, row + n), user_id=np.full(n, user), timestamp=days * 86400 + rank,
        split=split, features=features[[feature_row[a] for _, _, a in block]],
        tags=[np.array(sorted(vocab_id[t] for t in posts[k]), np.int32) for k in block],
        where=lambda i, b=block: (f"{source}:{min(posts[b[i]].values())} (user {b[i][0]}, "
                                  f"artist {b[i][2]}, {b[i][1]})"))
    row += n
  return implausible


def _provenance(raw_dir, paths, settings, statistics) -> dict[str, Any]:
  files = {name: {"bytes": os.path.getsize(p), "sha256": _sha256(p)} for name, p in paths.items()}
  mapping = {
      "post": "tags one user gave one artist on one date; image = the artist",
      "timestamp": "UTC midnight of the date in seconds + rank of the post in the user's day "
                   "(by artistID)",
      "post_id": "row number after sorting by (userID, date, artistID)",
      "features": f"uncentred PCA ({settings['feature_dim'] // 2} axes) of the log(1+weight) "
                  "artist x user listening matrix (all users; no tags), positive and negative "
                  "parts, L2-normalised",
      "vocabulary": "tags.dat strings (latin-1) occurring in written posts",
      "build_report": "posts at the top level; each raw file under sections, in its own unit"}
  return {"source": "HetRec 2011 Last.fm-2k", "raw_dir": os.path.abspath(raw_dir),
          "files": files, "converter": "data_prep.hetrec_lastfm", "mapping": mapping,
          "settings": settings, "statistics": statistics}


def convert(raw_dir: str, out_dir: str, *, split_scheme: str = "temporal", feature_dim: int = 64,
            min_tag_count: int = 1, seed: int = 0, strict: bool = False, overwrite: bool = False,
            posts_per_shard: int = 50_000, log=print) -> dict[str, Any]:
  """Writes the dataset directory and returns its metadata (see the module docstring)."""
  if feature_dim < 2 or feature_dim % 2:
    raise ValueError(f"feature_dim must be even and >= 2 (positive and negative parts of "
                     f"feature_dim/2 components), got {feature_dim}")
  if split_scheme not in fmt.SPLIT_SCHEMES:
    raise ValueError(f"split_scheme must be one of {fmt.SPLIT_SCHEMES}, got {split_scheme!r}")
  start = time.time()
  paths = {name: os.path.join(raw_dir, name) for name in RAW_FILES}
  for path in paths.values():
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path}: missing; --raw must be the hetrec2011-lastfm-2k directory")
  report = fmt.BuildReport()
  tag_names, artists, listening, assignments = _read_raw(paths, strict, log, report)
  feature_ids, features = artist_features(listening, feature_dim)
  feature_row = {int(a): i for i, a in enumerate(feature_ids) if np.isfinite(features[i]).all()}
  lines = report.sections[TAGGED]
  posts = _group_posts(assignments, artists, feature_row, tag_names, lines)
  report.read = len(posts)
  posts = _drop_rare_tags(posts, min_tag_count, lines, report)
  if not posts:
    raise fmt.DatasetError(f"{raw_dir}: no post survived conversion ({report.summary()})")
  if lines.written != sum(len(tags) for tags in posts.values()):  # a converter bug
    raise RuntimeError(f"assignment accounting is off: {report.as_dict()}")

  # Vocabulary in tags.dat order (the writer renumbers by training frequency; ties keep it).
  first_id = {}
  for tag_id, name in sorted(tag_names.items()):
    first_id.setdefault(name, tag_id)
  vocab = sorted({t for tags in posts.values() for t in tags}, key=first_id.__getitem__)
  dates = [d for _, d, _ in posts]
  settings = {"split_scheme": split_scheme, "feature_dim": feature_dim, "seed": seed,
              "min_tag_count": min_tag_count, "strict": strict}
  # Staged in out_dir.partial and moved to out_dir only when the block completes: a conversion
  # that fails (or is interrupted) leaves nothing at out_dir (and an old dataset in place).
  with DatasetWriter(out_dir, feature_dim=feature_dim, num_tags=len(vocab),
                     split_scheme=split_scheme, posts_per_shard=posts_per_shard,
                     overwrite=overwrite) as writer:
    implausible = _write_posts(writer, posts, vocab, features, feature_row, split_scheme, seed,
                               paths[TAGGED])
    statistics = {
        "artists_with_features": len(feature_row),
        "date_range": [str(min(dates)), str(max(dates))],
        "implausible_dates": {
            "rule": f"outside [{PLAUSIBLE_DATES[0]}, {PLAUSIBLE_DATES[1]}]; kept",
            "posts": sum(implausible.values()),
            "posts_per_year": {str(y): c for y, c in sorted(implausible.items())}}}
    writer.finalize(vocab=vocab, provenance=_provenance(raw_dir, paths, settings, statistics),
                    report=report)  # checks the report's accounting
    # The artist ("image") of each row, in row order: posts of one artist show the same picture.
    np.save(os.path.join(writer.directory, "artist_ids.npy"),
            np.array([a for _, _, a in sorted(posts)]))
  if log:
    log(f"built {out_dir} in {time.time() - start:.1f}s: {report.summary()}; "
        f"{len({u for u, _, _ in posts})} users, {len(vocab)} tags, "
        f"{lines.written / len(posts):.3f} tags per post")
  return fmt.read_metadata(out_dir)


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_string("raw", None, "The hetrec2011-lastfm-2k directory.", required=True)
  flags.DEFINE_string("out", None, "Dataset directory to write.", required=True)
  flags.DEFINE_enum("split_scheme", "temporal", list(fmt.SPLIT_SCHEMES),
                    "temporal per user (Veit) or user_disjoint (Denton, Durand).")
  flags.DEFINE_integer("feature_dim", 64, "Artist feature dimension (even).")
  flags.DEFINE_integer("min_tag_count", 1, "Drop tags used fewer times in total (all splits).")
  flags.DEFINE_integer("seed", 0, "Seed of the user-disjoint split.")
  flags.DEFINE_bool("strict", False, "Stop at the first malformed or duplicate line instead of "
                    "counting it.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing directory.")


def main(argv):
  del argv
  f = flags.FLAGS
  convert(f.raw, f.out, split_scheme=f.split_scheme, feature_dim=f.feature_dim,
          min_tag_count=f.min_tag_count, seed=f.seed, strict=f.strict, overwrite=f.overwrite)


if __name__ == "__main__":
  define_flags()
  app.run(main)
