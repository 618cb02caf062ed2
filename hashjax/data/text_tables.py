"""Reading raw text tables (one record a line) for converters, with every line accounted for.

A converter reads each raw file through a `Table`: it checks the header, yields the data lines
with their line numbers, and counts every line in a BuildReport section (read, written = lines
passed on, skipped by reason), so that read = written + sum(skipped) holds for every file.

  table = Table(path, report.section("tags.dat", "tag lines"), columns=("tagID", "tagValue"),
                strict=strict, log=print)
  rows = table.read(parse_tag, key=lambda row: row[0])   # [(line number, parse(fields))]

Rules, the same for every converter:
  - Lines end with LF or CRLF. A file whose line breaks are mostly bare CRs (old Mac endings)
    raises RawDataError naming the file, instead of reading as one huge line. A carriage return
    inside a line makes the line malformed. Only "\\n" ends a line (never "\\x85" or U+2028, which
    can be data), so encodings must be ASCII-compatible (UTF-8, latin-1).
  - Bytes the encoding cannot decode become U+FFFD (errors="replace"): a number holding one is a
    malformed line; a name holding one loses nothing else.
  - An empty line (blank_line) is counted and never fatal. A line `parse` rejects with
    ValueError is malformed_line; with `key`, a line whose key an earlier line already had is
    skipped as `duplicate_reason` (the first line wins). Skipped lines are logged (the first
    few per file) with file:line, or with strict=True raise RawDataError at the first one.
  - Lines shown in messages are cut to 120 characters.
  - Integers are parsed by `parse_int`: ASCII `-?[0-9]+` within int64 (`int()` would take
    "5_3", "+5", " 5" and "５", and make numbers numpy cannot hold).
"""

import os
import re
from typing import Any, Callable, Hashable, Iterator, Sequence

from hashjax.data import format as fmt

INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
MAX_SHOWN = 120  # characters of a line quoted in a message
MAX_LOGGED = 5  # skipped lines logged per file; all of them are counted
_INTEGER = re.compile(r"-?[0-9]+")  # [0-9] is ASCII only, unlike \d


class RawDataError(ValueError):
  """A raw input file cannot be read as documented; the message names the file (and line)."""


def shown(text: str, limit: int = MAX_SHOWN) -> str:
  """repr(text), cut to `limit` characters with '...' after."""
  return repr(text[:limit]) + ("..." if len(text) > limit else "")


def parse_int(text: str, what: str = "value", *, minimum: int = INT64_MIN,
              maximum: int = INT64_MAX) -> int:
  """The integer spelled `text` in ASCII (`-?[0-9]+`) in [minimum, maximum], else ValueError.

  The bounds default to int64; pass minimum=0 for ids and counts.
  """
  if not _INTEGER.fullmatch(text):
    raise ValueError(f"{what} {shown(text, 40)} is not an integer (ASCII digits, optional '-')")
  # A length test first: int() of a 5,000-digit string is slow, and refused past 4,300 digits.
  value = int(text) if len(text.lstrip("-").lstrip("0")) <= 40 else None
  if value is None or not minimum <= value <= maximum:
    raise ValueError(f"{what} {shown(text, 40)} is outside [{minimum}, {maximum}]")
  return value


def line_breaks(path: str, chunk: int = 1 << 20) -> tuple[int, int]:
  """(LF count, bare CR count) of a file, read as bytes in chunks."""
  lf = cr = crlf = 0
  previous = b""
  with open(path, "rb") as f:
    while block := f.read(chunk):
      lf += block.count(b"\n")
      cr += block.count(b"\r")
      crlf += block.count(b"\r\n") + (previous == b"\r" and block[:1] == b"\n")
      previous = block[-1:]
  return lf, cr - crlf


class Table:
  """One tab-separated (or `sep`-separated) text file with an optional header line.

  section: the BuildReport section its lines are counted in (read, written, skipped).
  columns: the expected header fields (a BOM before the first is ignored), or None: no header.
  sep: the field separator; None passes the whole line to `parse` as a single field.
  """

  def __init__(self, path: str, section: fmt.ReportSection, *,
               columns: Sequence[str] | None = None, sep: str | None = "\t",
               encoding: str = "utf-8", strict: bool = False, log: Callable | None = None,
               max_logged: int = MAX_LOGGED):
    self.path, self.section, self.sep, self.encoding = path, section, sep, encoding
    self.columns = None if columns is None else tuple(columns)
    self.strict, self.log, self.max_logged = strict, log, max_logged
    self.logged = 0

  @property
  def name(self) -> str:
    return os.path.basename(self.path)

  def where(self, number: int) -> str:
    return f"{self.path}:{number}"

  def skip(self, number: int, reason: str, detail: str, line: str | None = None, *,
           fatal: bool = True) -> None:
    """Counts line `number` as skipped for `reason`; logs it, or raises if strict and fatal."""
    self.section.skip(reason)
    message = f"{self.where(number)}: {reason.replace('_', ' ')}: {detail}"
    if line is not None:
      message += f"; line {shown(line)}"
    if self.strict and fatal:
      raise RawDataError(f"{message} (without strict such lines are skipped and counted)")
    if self.log and self.logged < self.max_logged:
      self.logged += 1
      self.log(f"skipping {message}")

  def lines(self) -> Iterator[tuple[int, str]]:
    """(line number, text without its line break) for every data line, counted as read.

    Empty lines are counted read and skipped (blank_line); lines with a carriage return inside
    are skipped as malformed_line. The caller counts what it does with the rest (as `read` does);
    the counts are complete once the iteration is.
    """
    lf, bare_cr = line_breaks(self.path)
    if bare_cr and bare_cr >= lf:
      raise RawDataError(f"{self.path}: {bare_cr} bare carriage returns and {lf} line feeds: "
                         "CR-only (old Mac) line endings; convert the file to LF or CRLF")
    # newline="\n": lines end at "\n" only, returned untranslated (a CRLF keeps its "\r").
    with open(self.path, encoding=self.encoding, errors="replace", newline="\n") as f:
      number = 0
      if self.columns is not None:
        number = 1
        header = f.readline()
        text = header.removesuffix("\n").removesuffix("\r").removeprefix("\ufeff")
        if tuple(self._split(text)) != self.columns:
          raise RawDataError(f"{self.path}:1: header {shown(header)}, expected "
                             f"{shown((self.sep or '').join(self.columns))}")
      for number, line in enumerate(f, start=number + 1):
        line = line.removesuffix("\n").removesuffix("\r")
        self.section.read += 1
        if not line:
          self.skip(number, "blank_line", "empty line", fatal=False)
        elif "\r" in line:
          self.skip(number, "malformed_line", "carriage return inside the line (mixed line "
                    "endings?)", line)
        else:
          yield number, line

  def rows(self) -> Iterator[tuple[int, list[str], str]]:
    """(line number, fields, line) for every data line (see `lines`)."""
    for number, line in self.lines():
      yield number, self._split(line), line

  def _split(self, line: str) -> list[str]:
    return [line] if self.sep is None else line.split(self.sep)

  def read(self, parse: Callable[[list[str]], Any], *, key: Callable[[Any], Hashable] | None = None,
           duplicate_reason: str = "duplicate_id") -> list[tuple[int, Any]]:
    """[(line number, parse(fields))] of the lines kept, all of them counted in the section.

    A line `parse` rejects (ValueError) is skipped as malformed_line. With `key`, a line whose
    key(value) an earlier kept line had is skipped as `duplicate_reason`: the first line wins.
    Kept lines are counted written; a caller that drops one later calls section.drop(reason).
    """
    rows, first = [], {}
    for number, fields, line in self.rows():
      try:
        value = parse(fields)
      except ValueError as e:
        self.skip(number, "malformed_line", str(e), line)
        continue
      if key is not None:
        k = key(value)
        if k in first:
          self.skip(number, duplicate_reason, f"{k!r} already on line {first[k]}", line)
          continue
        first[k] = number
      rows.append((number, value))
      self.section.written += 1
    return rows


def check_fields(fields: Sequence[str], count: int, *, at_least: bool = False) -> None:
  """ValueError unless there are `count` fields (or at least `count`)."""
  if len(fields) < count or (len(fields) > count and not at_least):
    raise ValueError(f"{len(fields)} fields, expected {'at least ' if at_least else ''}{count}")
