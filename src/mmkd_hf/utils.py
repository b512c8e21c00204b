"""Small helpers shared by every layer: atomic file and folder writes, output folders that are never written over
unless they are the package's own output, numeric checks of options, JSON conversion, figures.

Imports nothing of the package (the lowest layer).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = [
    "OUTPUT_MARKER",
    "ForeignFolderError",
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_directory",
    "check_number",
    "check_output_folder",
    "discard_directory",
    "output_directory",
    "save_figure",
    "to_jsonable",
]

#: Marker file a command writes into a folder it made, so that a later run of the same command recognises the
#: folder as its own earlier output (and may replace it) while refusing any other non-empty folder.
OUTPUT_MARKER = ".mmkd-hf-output.json"


def _unique_sibling(path: Path, make) -> Path:
    """``make(candidate)`` on a fresh hidden name beside ``path`` until one does not exist yet; returns it."""
    for _ in range(100):
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            make(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"could not create a temporary name beside {path}")


def _create_file(candidate: Path) -> None:
    # 0o666 filtered by the umask, like open(path, "w") (tempfile.mkstemp would make it 0o600)
    os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path`` in one step.

    A crash mid-write leaves the previous file (or nothing) at ``path``, never a half-written file. The file gets
    the permissions of a plainly created file (``0o666`` minus the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _unique_sibling(path, _create_file)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=str) + "\n")


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` (old one removed).

    The folder gets the permissions of ``mkdir`` (``0o777`` minus the umask), not the private ``0o700`` of
    ``tempfile.mkdtemp``: a saved model or run folder is readable like any other.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _unique_sibling(path, os.mkdir)
    try:
        yield tmp
        if path.exists():
            backup = path.with_name(f".{path.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(path, backup)
            os.replace(tmp, path)
            shutil.rmtree(backup)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def discard_directory(path: str | os.PathLike) -> None:
    """Remove the folder ``path``: first renamed to a hidden sibling in one step, then deleted, so an interruption
    never leaves a half-deleted folder under its name."""
    path = Path(path)
    if not path.exists():
        return
    trash = _unique_sibling(path, os.mkdir)  # a fresh empty name, replaced by the folder in one rename
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


class ForeignFolderError(FileExistsError):
    """An output folder is not empty and is not the command's own earlier output; nothing was written."""


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def check_output_folder(path: str | os.PathLike, command: str, *, own_files: tuple[str, ...] = ()) -> bool:
    """Check that ``command`` may write its output into ``path``; returns whether ``path`` holds an earlier output.

    Allowed: a missing or empty folder, or a folder the command wrote earlier, recognised by :data:`OUTPUT_MARKER`
    naming ``command`` or by one of ``own_files`` (a marker file the command always writes, e.g. ``.complete``).
    Anything else (a file, a folder with other content) raises :class:`ForeignFolderError` with a one-line message.
    """
    path = Path(path)
    if not path.exists() or _is_empty_dir(path):
        return False
    if not path.is_dir():
        raise ForeignFolderError(f"{command}: {path} is a file, not a folder; choose another output folder")
    marker = path / OUTPUT_MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")).get("command") == command:
                return True
        except (OSError, ValueError, AttributeError):
            pass
    if any((path / name).is_file() for name in own_files):
        return True
    raise ForeignFolderError(
        f"{command}: {path} is not empty and is not an earlier output of {command} (no {OUTPUT_MARKER}"
        + "".join(f" or {name}" for name in own_files)
        + "); nothing was written or deleted: choose an empty or new folder"
    )


@contextmanager
def output_directory(path: str | os.PathLike, command: str, *, own_files: tuple[str, ...] = ()) -> Iterator[Path]:
    """Write a command's output folder safely: :func:`check_output_folder` first, then a temporary sibling that
    receives :data:`OUTPUT_MARKER` and replaces ``path`` only when the block succeeds (:func:`atomic_directory`)."""
    check_output_folder(path, command, own_files=own_files)
    with atomic_directory(path) as tmp:
        yield tmp
        atomic_write_json(tmp / OUTPUT_MARKER, {"command": command})


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
    optional: bool = False,
) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number (an integer with ``integer``) within the bounds.

    The message names the option, the allowed range and the value, e.g.
    ``temperature: expected a finite value > 0, given nan``. ``optional`` lets ``None`` through.
    """
    if value is None and optional:
        return
    def bound(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_inclusive else '>'} {bound(low)}")
    if high is not None:
        parts.append(f"{'<=' if high_inclusive else '<'} {bound(high)}")
    kind = "an integer" if integer else "a finite value"
    expected = f"{kind} {' and '.join(parts)}".rstrip()
    if optional:
        expected += " (or unset)"
    bad = isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
    if not bad:
        number = float(value)
        bad = (
            not math.isfinite(number)
            or (integer and not number.is_integer())
            or (low is not None and (number < low or (number == low and not low_inclusive)))
            or (high is not None and (number > high or (number == high and not high_inclusive)))
        )
    if bad:
        raise ValueError(f"{name}: expected {expected}, given {value!r}")


def save_figure(figure: Any, path: str | os.PathLike, title: str | None = None, dpi: int = 100) -> Path:
    """Finish a matplotlib figure (optional suptitle, tight layout), write it as PNG atomically, close it."""
    import matplotlib.pyplot as plt

    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    plt.close(figure)
    return path


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy/torch scalars and arrays turned into Python numbers and lists, mappings into dicts with
    string keys, tuples into lists, paths into strings and NaN/inf into ``None`` (strict JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "detach") and hasattr(value, "tolist"):  # a torch tensor
        return to_jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
