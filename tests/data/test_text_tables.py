"""The raw text-table reader shared by converters, and the BuildReport accounting it feeds."""

import json
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hashjax.data import format as fmt
from hashjax.data.text_tables import (INT64_MAX, INT64_MIN, RawDataError, Table, check_fields,
                                      line_breaks, parse_int, shown)


def _file(tmp_path, text: str, name="t.txt", encoding="utf-8") -> str:
  path = os.path.join(tmp_path, name)
  with open(path, "w", encoding=encoding, newline="") as f:
    f.write(text)
  return path


def _pair(fields):
  check_fields(fields, 2)
  return parse_int(fields[0], "id", minimum=0), fields[1]


# -- integers -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [("0", 0), ("42", 42), ("-7", -7), ("007", 7),
                                        (str(INT64_MAX), INT64_MAX), (str(INT64_MIN), INT64_MIN),
                                        ("0" * 60 + "5", 5)])
def test_parse_int_accepts_ascii_integers_in_int64(text, value):
  assert parse_int(text) == value


@pytest.mark.parametrize("text", ["", "-", "5_3", "+5", " 5", "5 ", "\t5", "５", "٣", "²", "1e3",
                                  "0x10", "5.0", "--5", "5-"])
def test_parse_int_refuses_what_int_would_take_or_misread(text):
  with pytest.raises(ValueError, match="is not an integer"):
    parse_int(text)


@pytest.mark.parametrize("text", [str(INT64_MAX + 1), str(INT64_MIN - 1), "9" * 5000])
def test_parse_int_refuses_numbers_beyond_int64(text):
  with pytest.raises(ValueError, match="is outside") as e:
    parse_int(text)
  assert len(str(e.value)) < 200  # a 5,000-digit number is not quoted whole


def test_parse_int_bounds():
  assert parse_int("0", minimum=0) == 0
  with pytest.raises(ValueError, match=r"'-1' is outside \[0, "):
    parse_int("-1", "id", minimum=0)
  with pytest.raises(ValueError, match=r"outside \[0, 12\]"):
    parse_int("13", "month", minimum=0, maximum=12)


def test_shown_cuts_long_text():
  assert shown("abc") == "'abc'"
  assert shown("x" * 500) == repr("x" * 120) + "..."


# -- lines ----------------------------------------------------------------------------------

def test_line_breaks_counts_crlf_across_chunk_boundaries(tmp_path):
  path = _file(tmp_path, "a\r\nb\rc\n" * 50 + "d\r")
  for chunk in (1, 2, 3, 7, 1 << 20):
    assert line_breaks(path, chunk) == (100, 51)


def test_table_reads_lf_and_crlf_with_header_bom_and_line_numbers(tmp_path):
  path = _file(tmp_path, "\ufeffid\tname\r\n1\tone\r\n2\ttwo\n3\tthree")
  section = fmt.ReportSection("lines")
  rows = Table(path, section, columns=("id", "name")).read(_pair)
  assert rows == [(2, (1, "one")), (3, (2, "two")), (4, (3, "three"))]
  assert (section.read, section.written, section.skipped) == (3, 3, Counter())


def test_only_line_feeds_end_lines(tmp_path):
  # str.splitlines would also cut at \x85 (a latin-1 character), \x0b, \x1c and U+2028.
  path = _file(tmp_path, "id\tname\n1\ta\x85b\x0bc\x1cd\u2028e\n", encoding="utf-8")
  assert Table(path, fmt.ReportSection("lines"), columns=("id", "name")).read(_pair) == [
      (2, (1, "a\x85b\x0bc\x1cd\u2028e"))]


def test_wrong_or_missing_header_names_the_file(tmp_path):
  with pytest.raises(RawDataError, match=r"t\.txt:1: header 'id\\tnom\\n', expected 'id\\tname'"):
    Table(_file(tmp_path, "id\tnom\n1\ta\n"), fmt.ReportSection("lines"),
          columns=("id", "name")).read(_pair)
  with pytest.raises(RawDataError, match=r"t\.txt:1: header '', expected"):
    Table(_file(tmp_path, ""), fmt.ReportSection("lines"), columns=("id", "name")).read(_pair)
  with pytest.raises(RawDataError, match=r"header 'id\\tname" + "x" * 113 + r"'\.\.\., expected"):
    Table(_file(tmp_path, "id\tname" + "x" * 10_000 + "\n"), fmt.ReportSection("lines"),
          columns=("id", "name")).read(_pair)


@pytest.mark.parametrize("text", ["id\tname\r1\ta\r2\tb\r", "id\tname\r", "id\tname\n1\ta\r2\tb\r"])
def test_cr_only_line_endings_are_refused(tmp_path, text):
  with pytest.raises(RawDataError, match=r"t\.txt: \d+ bare carriage returns and \d+ line feeds: "
                     "CR-only"):
    Table(_file(tmp_path, text), fmt.ReportSection("lines"), columns=("id", "name")).read(_pair)


def test_skipped_lines_are_counted_by_reason_and_logged_with_file_and_line(tmp_path):
  text = ("id\tname\n1\tone\n\nx\tbad\n1\tagain\n2\ttwo\r\n3\tcr\rinside\n4\t" + "y" * 500 +
          "\t!\n5\tfive\n")
  logged = []
  section = fmt.ReportSection("lines")
  rows = Table(_file(tmp_path, text), section, columns=("id", "name"), log=logged.append,
               max_logged=4).read(_pair, key=lambda row: row[0])
  assert [n for n, _ in rows] == [2, 6, 9]
  assert section.read == 8 and section.written == 3
  assert section.skipped == {"blank_line": 1, "malformed_line": 3, "duplicate_id": 1}
  path = os.path.join(tmp_path, "t.txt")
  assert logged[:4] == [
      f"skipping {path}:3: blank line: empty line",
      f"skipping {path}:4: malformed line: id 'x' is not an integer (ASCII digits, optional '-')"
      "; line 'x\\tbad'",
      f"skipping {path}:5: duplicate id: 1 already on line 2; line '1\\tagain'",
      f"skipping {path}:7: malformed line: carriage return inside the line (mixed line endings?)"
      "; line '3\\tcr\\rinside'"]
  assert len(logged) == 4  # max_logged; all of them are counted


def test_strict_raises_at_the_first_skipped_line_but_not_at_blank_ones(tmp_path):
  path = _file(tmp_path, "id\tname\n1\tone\n\n1\tagain\n")
  with pytest.raises(RawDataError, match=r"t\.txt:4: duplicate id: 1 already on line 2; line "
                     r"'1\\tagain' \(without strict"):
    Table(path, fmt.ReportSection("lines"), columns=("id", "name"), strict=True).read(
        _pair, key=lambda row: row[0])


def test_no_header_and_whole_lines(tmp_path):
  # HARRISON-style files: data_list.txt (a path a line), tag_list.txt (space-separated tags).
  path = _file(tmp_path, "a/b.jpg\n\nc d.jpg\n")
  section = fmt.ReportSection("image lines")
  assert Table(path, section, sep=None).read(lambda f: f[0]) == [(1, "a/b.jpg"), (3, "c d.jpg")]
  assert section.as_dict() == {"unit": "image lines", "read": 3, "written": 2,
                               "skipped": {"blank_line": 1}}
  section = fmt.ReportSection("tag lines")
  rows = Table(_file(tmp_path, "sun sea\nsky\n", "tags.txt"), section, sep=" ").read(list)
  assert rows == [(1, ["sun", "sea"]), (2, ["sky"])]


def test_check_fields():
  check_fields(["a", "b"], 2)
  check_fields(["a", "b", "c"], 2, at_least=True)
  with pytest.raises(ValueError, match="3 fields, expected 2"):
    check_fields(["a", "b", "c"], 2)
  with pytest.raises(ValueError, match="1 fields, expected at least 2"):
    check_fields(["a"], 2, at_least=True)


# -- BuildReport ----------------------------------------------------------------------------

def test_build_report_sections_balance_and_check_names_the_broken_one():
  report = fmt.BuildReport()
  lines = report.section("in.txt", "lines")
  lines.read, lines.written = 5, 4
  lines.skip("malformed_line")
  lines.drop("unknown_tag")  # passed on, then dropped: written 3, skipped 2
  assert report.section("in.txt", "lines") is lines
  with pytest.raises(ValueError, match="counts lines, not rows"):
    report.section("in.txt", "rows")
  report.read = 3
  report.skip("no_tags_left")
  report.record_written(2)  # what the writer does at finalize: and it checks
  assert report.as_dict() == {
      "unit": "posts", "read": 3, "written": 2, "skipped": {"no_tags_left": 1},
      "sections": {"in.txt": {"unit": "lines", "read": 5, "written": 3,
                              "skipped": {"malformed_line": 1, "unknown_tag": 1}}}}
  assert report.summary() == ("posts read 3, written 2, skipped 1 (no_tags_left=1); in.txt: "
                              "lines read 5, written 3, skipped 2 (malformed_line=1, "
                              "unknown_tag=1)")
  again = fmt.BuildReport.from_dict(json.loads(json.dumps(report.as_dict())))
  assert again == report
  lines.read += 1
  with pytest.raises(RuntimeError, match=r"in\.txt \(lines\): read 6 != written 3 \+ skipped 2"):
    report.check()
  lines.read -= 1
  with pytest.raises(RuntimeError, match=r"posts: read 3 != written 3 \+ skipped 1"):
    report.record_written(3)  # the writer stored a post the converter did not count


def test_build_report_of_a_builder_without_sections_and_of_the_writer():
  # hashjax.data.synthetic.build: read += posts generated; the writer sets written.
  report = fmt.BuildReport()
  report.read += 10
  report.record_written(10)
  assert report.as_dict() == {"unit": "posts", "read": 10, "written": 10, "skipped": {},
                              "sections": {}}
  assert report.summary() == "posts read 10, written 10, skipped 0 (none)"
  # The writer's own report (no report passed to finalize) vouches for nothing but the posts.
  fresh = fmt.BuildReport()
  fresh.record_written(7)
  assert (fresh.read, fresh.written) == (7, 7)
  short = fmt.BuildReport(read=9)
  with pytest.raises(RuntimeError, match="read 9 != written 7"):
    short.record_written(7)
  negative = fmt.BuildReport(read=1, written=2)
  negative.skip("x", -1)
  with pytest.raises(RuntimeError, match="counts must be integers >= 0"):
    negative.check()


# -- fuzz: any file, the documented error or balanced counts ----------------------------------

_JUNK = st.sampled_from(["", "\t", "\r", "\r\n", "\n", " ", "５", "٣", "_", "+", "-", "\x85",
                         "\u2028", "\ufeff", "\x00", str(2**63), str(-2**63 - 1), "9" * 30, "0",
                         "1", "12", "id", "name", "é", "\udcff"])
_LINE = st.one_of(
    st.tuples(st.integers(-5, 30), st.text(max_size=8)).map(lambda t: f"{t[0]}\t{t[1]}"),
    st.lists(_JUNK, max_size=6).map("".join),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12))
_FILE = st.tuples(st.sampled_from(["id\tname", "\ufeffid\tname", "id\tnom", ""]),
                  st.lists(_LINE, max_size=25),
                  st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())


_FUZZ = settings(max_examples=60, deadline=None, database=None,  # no example files in the repo
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@_FUZZ
@given(spec=_FILE, strict=st.booleans(), header=st.booleans(), sep=st.sampled_from(["\t", None]))
def test_fuzz_table_raises_only_raw_data_error_and_always_balances(tmp_path, spec, strict, header,
                                                                    sep):
  head, lines, newline, final_newline = spec
  text = newline.join([head] + lines) + (newline if final_newline else "")
  path = os.path.join(tmp_path, "fuzz.txt")
  with open(path, "wb") as f:
    f.write(text.encode("utf-8", "surrogatepass"))  # invalid UTF-8 too
  section = fmt.ReportSection("lines")
  table = Table(path, section, columns=("id", "name") if header else None, sep=sep,
                strict=strict, log=lambda m: None)
  parse = _pair if sep else (lambda f: parse_int(f[0].split("\t")[0], minimum=0))
  try:
    rows = table.read(parse, key=lambda v: v if isinstance(v, int) else v[0])
  except RawDataError as e:
    assert len(str(e)) < 600 + len(path)  # no whole file in a message
    return
  assert section.problem() is None, section
  assert section.written == len(rows)
  assert len({n for n, _ in rows}) == len(rows)  # line numbers, increasing
  assert [n for n, _ in rows] == sorted(n for n, _ in rows)
  if strict:  # nothing but blank lines may be skipped quietly
    assert set(section.skipped) <= {"blank_line"}
