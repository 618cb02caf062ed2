r"""User retrieval (Durand et al. 2020, Sec. 4.3 and Table 5) from finished Durand runs.

  python -m hashjax.tools.user_retrieval --workdir=RUN [--workdir=RUN2 ...] [--history=20] \
      [--max_windows=0] [--split=test] [--dataset=DIR] --out=F.json [--markdown]

Histories. For each user of the split, the split's posts of the user in time order p_1, p_2, ...
(on a user-disjoint split: the whole history of a test user) are cut from the first post into
consecutive, non-overlapping windows of H = --history posts,

    window k = (p_{kH+1}, ..., p_{(k+1)H}),   k = 0 .. floor(n / H) - 1,

the paper's "the first 20 images, then the next 20" carried on as far as the history goes (its
33,648 representations of 6,139 users are ~5.5 per user, so every window that fits counts). A
user's last n mod H posts are not used. Only users with at least 2H posts (two windows, so a
query has a match) take part; --max_windows=K keeps each user's first K windows (K=2: the
first 2H posts in halves). Each post is in one window only.

Representations of a window W (its posts' hashtag sets H_t, word vectors psi):

    [C] used          u_y = 1[y in some H_t, t in W]                 R^Y
    [D] occurrences   u_y = #{t in W : y in H_t}                     R^Y
    [E] word sum      u   = sum_{t in W} sum_{y in H_t} psi(y) = [D] psi     R^w
    a run             u   = h_H, the run's GRU state after the window's posts from h_0 = 0
                      (Durand.final_state: the user tower as history="full", whatever the
                      run's history setting)

Diagnostic (--shared_by=K): [C] over the hashtags that at least K users of the split use
(a window without any of them is left out of that row), and the share of windows holding a
hashtag no other user of the split has: how much of [C]'s retrieval rests on personal tags.

[C], [D] and [E] are the model's pooled user towers (hashjax.models.history.pooled_history) after
the window's posts; [E] needs the dataset's word vectors (its row is left out without them).

Retrieval (hashjax.eval.metrics.user_retrieval): the representations are l2-normalised; every
window is a query against every other window (of every user), ranked by cosine similarity, and
rank(q) = 1 + #{windows of other users at least as similar as q's best window of its own user}.

    A@k = (1/Q) sum_q 1[rank(q) <= k],   MR = median_q rank(q)

Writes OUT (JSON: the settings, the windows' count and users, and per row its label, dim, A@1,
A@10, median rank and seconds) and prints the Table 5 markdown (--markdown) or the JSON.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

from absl import app, flags
import jax
import numpy as np

from hashjax.data import pipeline
from hashjax.data.reader import PostDataset
from hashjax.eval import metrics
from hashjax.models.durand import Durand
from hashjax.tools import figure_sections as sections
from hashjax.tools import runs as runs_lib

HEADING = "### User retrieval (Table 5)"
POOLED = {"used": "[C] used hashtags", "occurrences": "[D] hashtag occurrences",
          "word_sum": "[E] sum of word vectors"}
KS = (1, 10)


# ----------------------------------------------------------------------------------------------
# The windows.


def history_windows(dataset: PostDataset, history: int, *, split: str = "test",
                    max_windows: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The non-overlapping windows of `history` consecutive posts (module docstring).

  Returns (rows int64 [R, history]: each window's dataset rows in time order, users int
  [R]: the dense user index of each window), users in row order, a user's windows in time
  order. Users with fewer than 2 * history posts in the split are left out.
  """
  if history < 1:
    raise ValueError(f"history must be >= 1, got {history}")
  if max_windows == 1 or max_windows < 0:
    raise ValueError(f"max_windows must be 0 (all) or >= 2, got {max_windows}")
  rows = np.sort(dataset.split_rows(split))  # a user's rows are contiguous, in time order
  user_of = dataset.user_index_of_row[rows]
  users, starts, counts = np.unique(user_of, return_index=True, return_counts=True)
  windows, owners = [], []
  for user, start, count in zip(users.tolist(), starts.tolist(), counts.tolist()):
    k = count // history
    if k < 2:
      continue
    if max_windows:
      k = min(k, max_windows)
    windows.append(rows[start:start + k * history].reshape(k, history))
    owners.append(np.full(k, user))
  if not windows:
    raise ValueError(f"no user of split {split!r} has {2 * history} posts: no two histories "
                     f"of {history} posts to match")
  return np.concatenate(windows), np.concatenate(owners)


# ----------------------------------------------------------------------------------------------
# Representations.


def occurrence_counts(dataset: PostDataset, windows: np.ndarray) -> np.ndarray:
  """[D] float32 [R, Y]: counts[r, y] = the number of posts of window r labelled y."""
  truth = dataset.read(windows.reshape(-1), fields=())
  window_of = np.repeat(np.arange(len(windows)), windows.shape[1] * truth["tag_ids"].shape[1])
  mask = truth["tag_mask"].reshape(-1)
  counts = np.zeros((len(windows), dataset.num_tags), np.float32)
  np.add.at(counts, (window_of[mask], truth["tag_ids"].reshape(-1)[mask]), 1.0)
  return counts


def pooled_representations(dataset: PostDataset, windows: np.ndarray,
                           kinds: Sequence[str] = tuple(POOLED)) -> dict[str, np.ndarray]:
  """{kind: [R, ...]} for kinds among used [C] (1[count > 0]), occurrences [D] (the counts)
  and word_sum [E] (counts @ psi, float64; needs dataset.word_vectors)."""
  unknown = sorted(set(kinds) - set(POOLED))
  if unknown:
    raise ValueError(f"unknown pooled representations {unknown}; choose among {list(POOLED)}")
  counts = occurrence_counts(dataset, windows)
  out = {}
  for kind in kinds:
    if kind == "used":
      out[kind] = (counts > 0).astype(np.float32)
    elif kind == "occurrences":
      out[kind] = counts
    else:
      if dataset.word_vectors is None:
        raise ValueError(f"{dataset.directory} has no word vectors: no [E] representation")
      out[kind] = counts.astype(np.float64) @ np.asarray(dataset.word_vectors, np.float64)
  return out


def model_representations(model, variables, dataset: PostDataset, windows: np.ndarray, *,
                          batch_size: int = 64) -> np.ndarray:
  """float32 [R, d_u]: the GRU state h_H of a Durand model (user "gru") after each window's
  posts, from h_0 = 0 (Durand.final_state), in jitted batches of one shape."""
  if not isinstance(model, Durand):
    raise ValueError(f"{model.label} is not a Durand model: it has no history GRU")
  if model.user != "gru":
    raise ValueError(f"{model.label}'s user is {model.user!r}, not a GRU over the history (the "
                     "pooled [C] / [D] / [E] rows need no run)")
  final_state = jax.jit(model.final_state)
  batch_size = max(1, min(batch_size, len(windows)))
  targets = np.ones(windows.shape, bool)
  out = []
  for s in range(0, len(windows), batch_size):
    chunk = windows[s:s + batch_size]
    n = len(chunk)
    if n < batch_size:  # pad with the last window: one compiled shape
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
    batch = pipeline.read_sequences(dataset, chunk, targets[:len(chunk)], fields=("features",))
    batch = {k: batch[k] for k in ("features", "tag_ids", "tag_mask", "seq_mask")}
    out.append(np.asarray(final_state(variables, batch), np.float32)[:n])
  return np.concatenate(out)


# ----------------------------------------------------------------------------------------------
# The measurement.


def retrieval(label: str, representations: np.ndarray, users: np.ndarray) -> dict[str, Any]:
  """metrics.user_retrieval of one row, with its label and dimension (a zero representation,
  which has no cosine, is reported by row)."""
  representations = np.asarray(representations)
  zero = int((np.abs(representations).sum(axis=1) == 0).sum())
  if zero:
    raise ValueError(f"{label}: {zero} of {len(representations)} windows have a zero "
                     "representation, which has no cosine similarity")
  return {"label": label, "dim": int(representations.shape[1]),
          **metrics.user_retrieval(representations, users, KS)}


def _timed(label, compute, users) -> dict[str, Any]:
  start = time.perf_counter()
  row = retrieval(label, compute(), users)
  row["seconds"] = round(time.perf_counter() - start, 3)
  return row


def run_labels(loaded: Sequence[runs_lib.Run]) -> list[str]:
  """Each run's label (metrics.json's model), with its workdir's name where two agree."""
  labels = [r.metrics.get("model", r.model.label) for r in loaded]
  return [f"{l} ({os.path.basename(os.path.normpath(r.workdir))})" if labels.count(l) > 1 else l
          for l, r in zip(labels, loaded)]


def users_per_tag(used: np.ndarray, users: np.ndarray) -> np.ndarray:
  """int [Y]: how many distinct users have tag y in some window (used: bool [R, Y])."""
  _, dense = np.unique(users, return_inverse=True)
  per_user = np.zeros((dense.max() + 1, used.shape[1]), bool)
  np.logical_or.at(per_user, dense, used)
  return per_user.sum(axis=0)


def shared_tag_rows(used: np.ndarray, users: np.ndarray,
                    shared_by: Sequence[int]) -> tuple[float, list[dict[str, Any]]]:
  """The --shared_by diagnostic (module docstring) from [C] (used: bool [R, Y]): (the share of
  windows with a hashtag only their user has, one [C] row per K over the tags >= K users
  have)."""
  holders = users_per_tag(used, users)
  personal = float((used & (holders == 1)[None]).any(axis=1).mean())
  rows = []
  for k in shared_by:
    keep = holders >= k
    kept = used[:, keep].any(axis=1)
    label = f"[C] over the {int(keep.sum())} hashtags of >= {k} users ({int(kept.sum())} windows)"
    rows.append({**retrieval(label, used[kept][:, keep].astype(np.float32), users[kept]),
                 "kind": "shared_by", "shared_by": int(k)})
  return personal, rows


def measure(workdirs: Sequence[str] = (), *, history: int = 20, split: str = "test",
            max_windows: int = 0, dataset: str | None = None,
            batch_size: int | None = None, shared_by: Sequence[int] = ()) -> dict[str, Any]:
  """The Table 5 rows: [C], [D], [E] (if the dataset has word vectors) and one per run, all on
  the same windows of the runs' dataset (or `dataset` without runs); then the --shared_by
  diagnostic rows, if any."""
  loaded = [runs_lib.load_run(w) for w in workdirs]
  directories = {os.path.realpath(r.dataset.directory) for r in loaded}
  if dataset is not None:
    directories.add(os.path.realpath(dataset))
  if len(directories) != 1:
    raise ValueError("give runs of one dataset (or --dataset without runs); got "
                     f"{sorted(directories) or 'none'}")
  data = loaded[0].dataset if loaded else PostDataset(dataset)
  windows, users = history_windows(data, history, split=split, max_windows=max_windows)
  kinds = [k for k in POOLED if k != "word_sum" or data.word_vectors is not None]
  rows = []
  for kind in kinds:
    rows.append(_timed(POOLED[kind], lambda k=kind: pooled_representations(data, windows,
                                                                          (k,))[k], users))
    rows[-1].update(kind=kind)
  for run, label in zip(loaded, run_labels(loaded)):
    size = batch_size or run.config.eval.batch_size
    rows.append(_timed(label, lambda r=run, b=size: model_representations(
        r.model, r.variables, data, windows, batch_size=b), users))
    rows[-1].update(kind="run", workdir=run.workdir)
  result = {"dataset": data.directory, "split": split, "history": history,
            "max_windows": max_windows, "num_windows": int(len(windows)),
            "num_users": int(len(np.unique(users))), "rows": rows}
  if shared_by:
    result["personal_tag_windows"], shared = shared_tag_rows(
        occurrence_counts(data, windows) > 0, users, shared_by)
    rows.extend(shared)
  return result


def markdown(result: dict[str, Any]) -> str:
  """The Table 5 section: A@1, A@10 (percent), the median rank and the dimension per row."""
  table = sections.md_table(
      ["User representation", "A@1", "A@10", "MR", "dim"],
      [[r["label"], sections.pct(r["A@1"]), sections.pct(r["A@10"]),
        f"{r['median_rank']:g}", r["dim"]] for r in result["rows"]])
  cap = f" (at most {result['max_windows']} per user)" if result["max_windows"] else ""
  text = [HEADING,
          f"Dataset `{result['dataset']}`, {result['split']} split: {result['num_windows']} "
          f"histories of {result['history']} consecutive posts{cap} from "
          f"{result['num_users']} users with at least {2 * result['history']} posts, "
          "non-overlapping (each post in one history). Each history is a query against all "
          "the others by cosine similarity; A@k is the share of queries with a history of "
          "the same user in the top k (percent) and MR the median rank of the best one "
          "(ties count against the query).",
          table]
  if "personal_tag_windows" in result:
    text.append(f"{sections.pct(result['personal_tag_windows'])}% of the histories hold a "
                "hashtag that no other user of the split has.")
  return "\n\n".join(text) + "\n"


def run(workdirs: Sequence[str], out: str, **kwargs) -> dict[str, Any]:
  """measure, then writes the JSON (with the markdown) to `out`; returns the result."""
  result = measure(workdirs, **kwargs)
  result["markdown"] = markdown(result)
  directory = os.path.dirname(os.path.abspath(out))
  os.makedirs(directory, exist_ok=True)
  with open(out, "w") as f:
    json.dump(result, f, indent=2)
  return result


def main(argv):
  del argv
  f = flags.FLAGS
  if not f.workdir and not f.dataset:
    raise app.UsageError("give --workdir (one or more runs) or --dataset (baselines only)")
  result = run(f.workdir or (), f.out, history=f.history, split=f.split,
               max_windows=f.max_windows, dataset=f.dataset, shared_by=f.shared_by or ())
  if f.markdown:
    print(result["markdown"], end="")
  else:
    print(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=2))


def define_flags() -> None:
  """The command's flags; defined when it runs (not at import: tools share flag names)."""
  flags.DEFINE_multi_string("workdir", None, "A finished run of experiments/durand.py with a "
                            "history GRU (model=ours, model=hashtag, ...); repeat for more rows.")
  flags.DEFINE_string("dataset", None, "The dataset directory, for the baseline rows without a "
                      "run (default: the runs' dataset).")
  flags.DEFINE_integer("history", 20, "Posts per history (the paper's 20).")
  flags.DEFINE_integer("max_windows", 0, "Histories kept per user, the first ones (0: every "
                       "non-overlapping one that fits; 2: the first 2 x history posts in halves).")
  flags.DEFINE_multi_integer("shared_by", None, "Diagnostic rows: [C] over the hashtags at "
                             "least K users of the split use; repeat for more K.")
  flags.DEFINE_string("split", "test", "The split whose users and posts are retrieved.")
  flags.DEFINE_string("out", None, "The JSON file written.", required=True)
  flags.DEFINE_bool("markdown", False, "Print the Table 5 markdown (default: the JSON).")


if __name__ == "__main__":
  define_flags()
  app.run(main)
