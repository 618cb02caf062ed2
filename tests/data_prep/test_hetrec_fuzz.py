"""Fuzzing the HetRec converter: raw files mixing valid lines and garbage.

Whatever the files hold, a parser either raises the documented RawDataError or returns what it
kept with every line accounted for (read = written + skipped, by reason), and convert() either
writes a dataset whose build_report balances in every section or raises RawDataError /
DatasetError leaving nothing at --out.
"""

import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from data_prep import hetrec_lastfm as hl
from hashjax.data import format as fmt
from hashjax.data.reader import PostDataset

_SETTINGS = dict(deadline=None, database=None,  # no example database left in the repository
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                        HealthCheck.data_too_large])

# Pieces of garbage: what int() would take, what numpy cannot hold, line-break look-alikes.
JUNK = ["", " ", "\t", "\r", "\r\n", "５", "٣", "²", "5_3", "+5", " 5", "-1", "0x1f", "1e3", "5.0",
        str(2**63), str(-2**63 - 1), str(2**31), "9" * 25, "0", "007", "\x85", "\u2028", "\ufeff",
        "\x00", "é", "ß", "metal", "userID", "tagID", "\udcff"]
TAG_NAMES = ["metal", "pop", "rock français", "indie", " spaced ", "Ünïcødé"]


@st.composite
def _line(draw, fields: st.SearchStrategy, valid: int) -> str:
  """A valid line (odds `valid` to 6), or a valid line with one field replaced, removed, added
  or extended by junk, or junk alone, or any text."""
  kind = draw(st.sampled_from(["valid"] * valid + ["replace", "remove", "add", "extend", "junk",
                                                   "text"]))
  if kind == "junk":
    return "".join(draw(st.lists(st.sampled_from(JUNK), max_size=5)))
  if kind == "text":
    return draw(st.text(max_size=10))
  fields = list(draw(fields))
  i, junk = draw(st.integers(0, len(fields) - 1)), draw(st.sampled_from(JUNK))
  if kind == "replace":
    fields[i] = junk
  elif kind == "remove":
    del fields[i]
  elif kind == "add":
    fields.insert(i, junk)
  elif kind == "extend":
    fields[i] += junk
  return "\t".join(fields)


_num = lambda lo, hi: st.integers(lo, hi).map(str)
# Few ids, so that files share them (posts need a known artist with listening and a known tag)
# and repeat them (duplicates).
FIELDS = {
    hl.TAGS: st.tuples(_num(0, 5), st.sampled_from(TAG_NAMES)),
    hl.ARTISTS: st.tuples(_num(0, 5), st.sampled_from(["ABBA", "Björk", "a\tb", ""]),
                          st.just("http://a"), st.just("http://p.jpg")),
    hl.LISTENING: st.tuples(_num(0, 3), _num(0, 5), _num(1, 3000)),
    hl.TAGGED: st.tuples(_num(0, 3), _num(0, 5), _num(0, 6), _num(1, 28), _num(1, 12),
                         _num(1950, 2012)),
}


@st.composite
def raw_file(draw, name: str, max_lines: int = 30, clean: int = 1, min_lines: int = 0) -> bytes:
  """A raw file: the right header, LF or CRLF, or not; blank lines and junk lines among valid ones.

  `clean` weighs the odds towards a well-formed file (a convert() needs all four to get far).
  """
  good = "\t".join(hl.COLUMNS[name])
  header = draw(st.sampled_from([good] * 6 * clean + ["\ufeff" + good, "wrong\theader", ""]))
  lines = draw(st.lists(_line(FIELDS[name], 4 * clean), min_size=min_lines, max_size=max_lines))
  newline = draw(st.sampled_from(["\n", "\r\n"] * 2 * clean + ["\r"]))
  text = newline.join([header] + lines) + draw(st.sampled_from([newline, ""]))
  encoding = "latin-1" if name == hl.TAGS else "utf-8"
  return text.encode(encoding, "replace" if encoding == "latin-1" else "surrogatepass")


def _write(path: str, data: bytes) -> str:
  with open(path, "wb") as f:
    f.write(data)
  return path


def _check_message(e: Exception, path: str) -> None:
  assert len(str(e)) < 700 + len(path), str(e)  # lines are cut to 120 characters


READERS = {hl.TAGS: hl.read_tags, hl.ARTISTS: hl.read_artists, hl.LISTENING: hl.read_listening,
           hl.TAGGED: hl.read_assignments}


@pytest.mark.parametrize("name", list(READERS))
@settings(max_examples=60, **_SETTINGS)
@given(data=st.data(), strict=st.booleans())
def test_fuzz_parser_raises_only_raw_data_error_and_accounts_for_every_line(tmp_path, name, data,
                                                                           strict):
  path = _write(os.path.join(tmp_path, name), data.draw(raw_file(name)))
  report = fmt.BuildReport()
  try:
    kept = READERS[name](path, report, strict=strict, log=lambda message: None)
  except hl.RawDataError as e:
    _check_message(e, path)
    return
  section = report.sections[name]
  assert section.unit == hl.UNITS[name]
  assert section.problem() is None, section
  assert section.written == len(kept)
  if strict:
    assert set(section.skipped) <= {"blank_line"}
  if name == hl.TAGS:
    assert all(0 <= k < 2**63 and v and "\r" not in v for k, v in kept.items())
  elif name == hl.ARTISTS:
    assert all(0 <= a < 2**63 for a in kept)
  elif name == hl.LISTENING:
    assert kept.dtype == np.int64 and kept.shape == (len(kept), 3) and (kept >= 0).all()
    assert len({(u, a) for u, a, _ in kept.tolist()}) == len(kept)  # never two weights summed
  else:
    lines = [n for n, _ in kept]
    assert lines == sorted(set(lines)) and all(n >= 2 for n in lines)
    assert all(1 <= date.year <= 9999 for _, (_, _, _, date) in kept)


@settings(max_examples=30, **_SETTINGS)
@given(files=st.fixed_dictionaries({name: raw_file(name, 25, clean=8, min_lines=4)
                                    for name in hl.RAW_FILES}),
       strict=st.booleans(), min_tag_count=st.sampled_from([1, 1, 2]),
       split_scheme=st.sampled_from(["temporal", "user_disjoint"]))
def test_fuzz_convert_balances_its_report_or_fails_leaving_nothing(tmp_path, files, strict,
                                                                   min_tag_count, split_scheme):
  example = tempfile.mkdtemp(dir=tmp_path)  # tmp_path is shared by the examples
  raw = os.path.join(example, "raw")
  os.makedirs(raw)
  for name, data in files.items():
    _write(os.path.join(raw, name), data)
  out = os.path.join(example, "ds")
  try:
    meta = hl.convert(raw, out, feature_dim=4, min_tag_count=min_tag_count,
                      split_scheme=split_scheme, strict=strict, log=None)
  except (hl.RawDataError, fmt.DatasetError) as e:
    event(f"failed: {type(e).__name__}{': no post' if 'no post' in str(e) else ''}")
    _check_message(e, raw)
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")
    return
  event("converted")
  report = fmt.BuildReport.from_dict(meta["build_report"])
  report.check()
  assert set(report.sections) == set(hl.RAW_FILES)
  assert report.written == meta["num_posts"] == PostDataset(out).num_posts > 0
  ds = PostDataset(out)
  stored_tags = ds.read(np.arange(ds.num_posts))["tag_mask"].sum()
  assert report.sections[hl.TAGGED].written == stored_tags  # an assignment line = a stored tag
  assert not os.path.exists(out + ".partial")
