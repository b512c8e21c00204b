"""Small helpers shared by every layer: atomic file and folder writes, JSON conversion, figures.

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

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_json", "atomic_directory", "save_figure", "to_jsonable"]


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
