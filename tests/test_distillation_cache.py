"""Teacher-logit cache: sharded, resumable, split across processes, and read back by segment id."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_distillation_trainer import ListDataset, collate, make_items  # noqa: E402
from test_ensemble import tiny_stlt, tiny_swin  # noqa: E402

from mmkd_hf import MultimodalTeacherEnsemble  # noqa: E402
from mmkd_hf.distillation.cache import (  # noqa: E402
    CachedLogitsDataset,
    load_cached_logits,
    precompute_teacher_logits,
    with_cached_logits,
)


@pytest.fixture(scope="module")
def ensemble():
    return MultimodalTeacherEnsemble.from_teachers({"rgb": tiny_swin("rgb", seed=1), "layout": tiny_stlt(seed=2)})


class FakeAccelerator:
    def __init__(self, process_index: int, num_processes: int = 2):
        self.process_index, self.num_processes = process_index, num_processes
        self.is_main_process = process_index == 0

    def wait_for_everyone(self):
        pass


def test_precompute_matches_ensemble_and_resumes(tmp_path, ensemble):
    items = make_items(7, seed=5)
    dataset = ListDataset(items)
    out = precompute_teacher_logits(ensemble, dataset, tmp_path / "cache", batch_size=2, shard_size=3,
                                    collate_fn=collate, progress=False)
    shards = sorted(out.glob("shard-*.parquet"))
    assert [p.name for p in shards] == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    cache = load_cached_logits(out)
    assert list(cache) == [item["segment_id"] for item in items]
    expected = ensemble(**collate(items)).logits
    for row, item in enumerate(items):
        for head in ("verb", "noun"):
            assert torch.allclose(torch.from_numpy(cache[item["segment_id"]][head]), expected[head][row], atol=1e-5)

    # Resume: a lost shard is recomputed, finished ones are left alone.
    mtimes = {p.name: p.stat().st_mtime_ns for p in shards}
    shards[1].unlink()
    info = json.loads((out / "cache_info.json").read_text())
    (out / "cache_info.json").write_text(json.dumps({**info, "complete": False}))
    with pytest.raises(ValueError, match="incomplete"):
        load_cached_logits(out)
    precompute_teacher_logits(ensemble, dataset, out, batch_size=2, shard_size=3, collate_fn=collate, progress=False)
    assert shards[0].stat().st_mtime_ns == mtimes[shards[0].name]
    assert shards[2].stat().st_mtime_ns == mtimes[shards[2].name]
    assert load_cached_logits(out).keys() == cache.keys()

    with pytest.raises(ValueError, match="different cache"):
        precompute_teacher_logits(ensemble, dataset, out, batch_size=2, shard_size=4, collate_fn=collate)

    wrapped = with_cached_logits(dataset, out)
    item = wrapped[4]
    assert torch.allclose(item["teacher_logits"]["noun"], expected["noun"][4], atol=1e-5)
    assert collate([wrapped[0], wrapped[1]])["teacher_logits"]["verb"].shape == (2, 5)
    with pytest.raises(ValueError, match="no cached teacher logits"):
        CachedLogitsDataset(ListDataset(make_items(1, seed=99)), cache)[0]


def test_two_processes_split_shards(tmp_path, ensemble):
    dataset = ListDataset(make_items(5, seed=6))
    out = tmp_path / "cache"
    precompute_teacher_logits(ensemble, dataset, out, 2, 2, accelerator=FakeAccelerator(1), collate_fn=collate,
                              progress=False)
    assert [p.name for p in sorted(out.glob("shard-*"))] == ["shard-00001.parquet"]
    precompute_teacher_logits(ensemble, dataset, out, 2, 2, accelerator=FakeAccelerator(0), collate_fn=collate,
                              progress=False)
    assert len(list(out.glob("shard-*"))) == 3
    assert len(load_cached_logits(out)) == 5
