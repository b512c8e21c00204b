"""Helpers shared by the builders: locating files, reading CSV/JSON with clear errors, cache hashes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..errors import DataFormatError, SampleDecodeError

#: Key of the surplus fields of a CSV row longer than its header.
EXTRA_FIELDS = "__extra_fields__"

CARD_KEYS = ("pretty_name", "description", "citation", "homepage", "license", "license_name")


class LocalDataBuilderMixin:
    """For builders that read a local folder (``data_dir=``); ``DATA_DIR_HINT`` says what the folder holds."""

    DATA_DIR_HINT = ""

    def _data_dir(self) -> Path:
        if not self.config.data_dir:
            hint = f" ({self.DATA_DIR_HINT})" if self.DATA_DIR_HINT else ""
            raise ValueError(f"{type(self).__name__} needs data_dir={hint}")
        return Path(self.config.data_dir).expanduser().resolve()


def find_file(data_dir: Path, names: Sequence[str], subdirs: Sequence[str] = ("", "annotations")) -> Path | None:
    """First existing ``data_dir/<subdir>/<name>``, or None."""
    for sub in subdirs:
        for name in names:
            candidate = data_dir / sub / name if sub else data_dir / name
            if candidate.is_file():
                return candidate
    return None


def require_file(data_dir: Path, names: Sequence[str], what: str, subdirs: Sequence[str] = ("", "annotations")) -> Path:
    found = find_file(data_dir, names, subdirs)
    if found is None:
        tried = [str((data_dir / s / n) if s else (data_dir / n)) for s in subdirs for n in names]
        raise FileNotFoundError(f"{what} not found; looked for {tried}")
    return found


def read_csv_rows(path: Path, required: Iterable[str], allow_empty: bool = False
                  ) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) of a UTF-8 CSV, after checking the header has every ``required`` column.

    Every problem is one :class:`DataFormatError` naming the file, the line and, where there is one, the column:
    a file that is not UTF-8 (e.g. saved as latin-1), a header without rows (unless ``allow_empty``), a row with
    fewer fields than the header (a file cut mid-row, a last column left out) or more, a broken quote.
    """
    required = list(required)
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError(path, f"line {line}: not UTF-8 (byte {raw[exc.start:exc.start + 1]!r} at offset "
                                    f"{exc.start}); save the file as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=EXTRA_FIELDS, strict=True)
    try:
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(path, f"line 1: missing column(s) {missing}; expected at least {required}, "
                                        f"got header {header}")
        rows = 0
        for row in reader:
            line = reader.line_num
            absent = [c for c in header if row.get(c) is None]
            if absent:
                raise DataFormatError(path, f"line {line}, column {absent[0]!r}: the row has "
                                            f"{len(header) - len(absent)} of the header's {len(header)} fields (a "
                                            "row cut short or a column left out)")
            if row.get(EXTRA_FIELDS):
                raise DataFormatError(path, f"line {line}: the row has {len(header) + len(row[EXTRA_FIELDS])} fields, "
                                            f"the header {len(header)} (an unquoted comma?)")
            rows += 1
            yield line, row
    except csv.Error as exc:
        raise DataFormatError(path, f"line {reader.line_num}: not valid CSV ({exc})") from None
    if not rows and not allow_empty:
        raise DataFormatError(path, "line 2: no rows after the header (an empty or truncated file)")


def read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"invalid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8") from None


def parse_int(value: str, path: Path, column: str, sample_id: str | None, line: int | None = None) -> int:
    """``value`` as an integer written in decimal digits (``"1e20"``, ``"3.5"``, ``""`` are refused), or a
    :class:`DataFormatError` naming the file, the line (when given), the column and the sample."""
    where = f"line {line}, " if line is not None else ""
    text = str(value).strip() if value is not None else ""
    try:
        return int(text)
    except (TypeError, ValueError):
        raise DataFormatError(path, f"{where}column {column!r}: expected an integer, got {value!r}",
                              sample_id) from None


def parse_float(value: str, path: Path, column: str, sample_id: str | None, line: int | None = None) -> float:
    """``value`` as a finite float, or a :class:`DataFormatError` naming the file, line, column and sample."""
    where = f"line {line}, " if line is not None else ""
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        raise DataFormatError(path, f"{where}column {column!r}: expected a number, got {value!r}", sample_id) from None
    if not math.isfinite(number):
        raise DataFormatError(path, f"{where}column {column!r}: expected a finite number, got {value!r}", sample_id)
    return number


def files_fingerprint(paths: Iterable[Path | None], extra: str = "") -> str:
    """A short hash of files' names, sizes and mtimes (cache key: re-prepare when annotations change)."""
    h = hashlib.sha256(extra.encode())
    for p in sorted(str(p) for p in paths if p is not None):
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def verb_noun_labels(sample_id: str, verb: int, noun: int, num_verbs: int, num_nouns: int,
                     fields: tuple[str, str] = ("verb_class", "noun_class")) -> dict[str, int]:
    """EPIC-style labels ``{verb, noun, action = verb * num_nouns + noun}`` of one sample; ``{}`` when both are
    negative (unlabelled, e.g. the test split). A class id outside its range raises :class:`SampleDecodeError`
    naming the sample and ``fields`` (the columns the ids came from)."""
    if verb < 0 and noun < 0:
        return {}
    if not 0 <= verb < num_verbs:
        raise SampleDecodeError(sample_id, None, f"{fields[0]} {verb} outside the {num_verbs} verb classes")
    if not 0 <= noun < num_nouns:
        raise SampleDecodeError(sample_id, None, f"{fields[1]} {noun} outside the {num_nouns} noun classes")
    return {"verb": verb, "noun": noun, "action": verb * num_nouns + noun}
