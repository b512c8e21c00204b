"""The lowest layer: atomic writes keep normal permissions, JSON conversion."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from mmkd_hf.utils import atomic_directory, atomic_path, atomic_write_json, to_jsonable


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_directory_gets_the_permissions_of_mkdir(tmp_path, umask_022):
    reference = tmp_path / "made-by-mkdir"
    reference.mkdir()
    with atomic_directory(tmp_path / "saved") as folder:
        (folder / "weights.bin").write_bytes(b"x")
    assert _mode(tmp_path / "saved") == _mode(reference) == 0o755
    # replacing an existing folder: the new one has the same permissions and nothing temporary is left
    with atomic_directory(tmp_path / "saved") as folder:
        (folder / "weights.bin").write_bytes(b"y")
    assert _mode(tmp_path / "saved") == 0o755
    assert (tmp_path / "saved" / "weights.bin").read_bytes() == b"y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made-by-mkdir", "saved"]


def test_atomic_files_get_the_permissions_of_open(tmp_path, umask_022):
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    atomic_write_json(tmp_path / "config.json", {"a": 1})
    with atomic_path(tmp_path / "blob.bin") as tmp:
        tmp.write_bytes(b"x")
    assert _mode(tmp_path / "config.json") == _mode(tmp_path / "blob.bin") == _mode(reference) == 0o644


def test_failed_atomic_directory_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "saved") as folder:
            (folder / "partial").write_text("x")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_to_jsonable_converts_arrays_scalars_and_non_finite_numbers():
    value = {
        1: np.float32(0.5),
        "array": np.arange(3),
        "tensor": torch.tensor([[1.0, float("nan")]]),
        "tuple": (np.int64(2), math.inf),
        "path": Path("a/b"),
    }
    converted = to_jsonable(value)
    assert converted == {"1": 0.5, "array": [0, 1, 2], "tensor": [[1.0, None]], "tuple": [2, None], "path": "a/b"}
    json.dumps(converted, allow_nan=False)
