"""Text files read record by record, so that one bad line never costs the file's other rows.

`read_delimited` (CSV, tab-separated) and `read_jsonl` (JSON Lines) return a `TextTable`: the
records that could be read, as strings (JSONL: as parsed), each with its record number and
first physical line, and a `BadLine` for every line that could not be decoded as UTF-8 or
parsed (wrong number of fields, an unclosed quote, JSON that does not parse or is not an
object), with its line number and raw bytes (escaped: `\\xe9` for a byte that is not UTF-8).
The source readers (`ingestion/readers/`) and the contract's batch reader
(`ingestion/canonical.py`) both read text this way.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

RAW_CHARS = 200  # characters of a bad line kept (escaped)
FIELD_LIMIT = 2**31 - 1  # csv's default (131,072 characters) would make a long value unreadable


class TextFileError(ValueError):
    """The file cannot be read as a table at all (no header, header not UTF-8, ...)."""

    def __init__(self, reason: str, line: int | None = None, column: str | None = None):
        self.reason, self.line, self.column = reason, line, column
        super().__init__(reason)


@dataclass(frozen=True)
class BadLine:
    """A line that could not be read: the record number it would have had (0-based, the
    header not counted), its first physical line (1-based), why, and its bytes (escaped)."""

    record: int
    line: int
    reason: str
    raw: str


@dataclass
class TextTable:
    """The readable records of a text file, in file order, and its bad lines."""

    header: list[str]
    rows: list[list[object]] = field(default_factory=list)
    records: list[int] = field(default_factory=list)  # record number of each row (0-based)
    lines: list[int] = field(default_factory=list)  # first physical line of each row (1-based)
    bad: list[BadLine] = field(default_factory=list)


def escaped(raw: bytes) -> str:
    """A line's bytes as text: bytes that are not UTF-8 as `\\xNN`, at most RAW_CHARS."""
    return raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")[:RAW_CHARS]


def _utf8_error(raw: bytes) -> str | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not valid UTF-8 ({e.reason} at byte {e.start})"
    return None


def _csv_reader(lines: list[bytes], start: int, delimiter: str) -> Iterator[list[str]]:
    """A csv reader over `lines[start:]`; bytes that are not UTF-8 survive as surrogates."""
    text = (lines[i].decode("utf-8", "surrogateescape") for i in range(start, len(lines)))
    return csv.reader(text, delimiter=delimiter)


def _header(reader: Iterator[list[str]]) -> list[str]:
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        header = []
    if not header or not any(h.strip() for h in header):
        raise TextFileError("has no header line", line=1)
    try:
        "".join(header).encode("utf-8")
    except UnicodeEncodeError:
        raise TextFileError("header line is not UTF-8", line=1) from None
    header[0] = header[0].removeprefix("\ufeff")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise TextFileError("header names a column twice", line=1, column=dupes[0])
    return header


def read_delimited(path: Path, delimiter: str = ",", final_newline: bool = False) -> TextTable:
    """A delimited text file with a header line, read record by record (CSV quoting).

    A record that is not UTF-8 or has another number of fields than the header becomes a
    `BadLine`; a broken record spanning several lines (a quote never closed) costs only its
    first line: reading resumes on the next one. `final_newline`: a last line without a line
    break is a bad line too (a write cut short), as a landed batch must end with one.
    Raises TextFileError when there is no usable header.
    """
    previous = csv.field_size_limit(FIELD_LIMIT)  # a long value is the contract's business
    try:
        return _read_delimited(Path(path).read_bytes(), delimiter, final_newline)
    finally:
        csv.field_size_limit(previous)


def _read_delimited(data: bytes, delimiter: str, final_newline: bool) -> TextTable:
    lines = data.splitlines(keepends=True)
    reader = _csv_reader(lines, 0, delimiter)
    table = TextTable(_header(reader))
    width, offset, done, ordinal = len(table.header), 0, reader.line_num, 0
    while True:
        reason = None
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            rec, reason = None, f"cannot be split ({e})"
        start, end = offset + done + 1, offset + reader.line_num  # 1-based physical lines
        done = reader.line_num
        if rec == []:
            continue  # blank line
        if reason is None:
            reason = _utf8_error(b"".join(lines[start - 1 : end]))
        elif end > start:
            reason, end = f"{reason}; reading resumed on the next line", start
            offset, done, reader = start, 0, _csv_reader(lines, start, delimiter)
        if reason is None and len(rec) != width:
            reason = f"has {len(rec)} fields, the header has {width}"
            if end > start:  # most likely an unclosed quote: skip one line, not the rest
                reason, end = f"{reason} (a quote is not closed on this line)", start
                offset, done, reader = start, 0, _csv_reader(lines, start, delimiter)
        if reason is None and final_newline and end == len(lines) and not data.endswith(b"\n"):
            reason = "the file ends inside this line (no line break): it may be cut short"
        if reason is None:
            table.rows.append(rec)
            table.records.append(ordinal)
            table.lines.append(start)
        else:
            raw = b"".join(lines[start - 1 : end])
            table.bad.append(BadLine(ordinal, start, reason, escaped(raw)))
        ordinal += 1
    return table


def read_jsonl(path: Path, final_newline: bool = False) -> TextTable:
    """A JSON Lines file, one object per line; the header is every key in order of first use.

    A line that is not UTF-8, does not parse as JSON or is not an object becomes a `BadLine`.
    """
    data = Path(path).read_bytes()
    lines = data.splitlines(keepends=True)
    objects: list[dict] = []
    table = TextTable([])
    ordinal = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        reason = _utf8_error(raw)
        value = None
        if reason is None:
            try:
                value = json.loads(raw)
            except ValueError as e:
                reason = f"not valid JSON ({e})"
        if reason is None and not isinstance(value, dict):
            reason = f"not a JSON object (a {type(value).__name__})"
        if reason is None and final_newline and number == len(lines) and not data.endswith(b"\n"):
            reason = "the file ends inside this line (no line break): it may be cut short"
        if reason is None:
            objects.append(value)
            table.records.append(ordinal)
            table.lines.append(number)
        else:
            table.bad.append(BadLine(ordinal, number, reason, escaped(raw)))
        ordinal += 1
    header: dict[str, None] = {}
    for obj in objects:
        header.update(dict.fromkeys(obj))
    table.header = list(header)
    table.rows = [[obj.get(k) for k in table.header] for obj in objects]
    return table
