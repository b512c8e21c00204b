"""Helpers shared by the builders: locating files, reading CSV/JSON with clear errors, cache hashes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..errors import DataFormatError

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


def read_csv_rows(path: Path, required: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) of a CSV, after checking the header has every ``required`` column."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(path, f"missing column(s) {missing}; expected at least {list(required)}, "
                                        f"got header {header}")
        for line, row in enumerate(reader, start=2):
            yield line, row


def read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"invalid JSON ({exc})") from None


def parse_int(value: str, path: Path, column: str, sample_id: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise DataFormatError(path, f"column {column!r}: expected an integer, got {value!r}", sample_id) from None


def files_fingerprint(paths: Iterable[Path | None], extra: str = "") -> str:
    """A short hash of files' names, sizes and mtimes (cache key: re-prepare when annotations change)."""
    h = hashlib.sha256(extra.encode())
    for p in sorted(str(p) for p in paths if p is not None):
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
