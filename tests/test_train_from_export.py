"""Training from an exported dataset (``mmkd-hf export-dataset``): ``mmkd_hf.data.load_dataset`` on the exported
folder, on its Hub copy (loopback Hub) and streamed gives the items of the source folder, ``train.py`` on it gives the
source folder's results, and bad input is one line naming the folder or repo, the split and the shard."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import datasets
import pytest
import torch

from mmkd_hf import pipeline
from mmkd_hf.data import ExportedDatasetError, load_dataset
from mmkd_hf.hub.dataset_export import export_dataset
from mmkd_hf.pipeline import main

MODALITIES = ("rgb", "flow", "audio", "layout")
TINY = ["--preset", "test", "--mini_kitchens_scale", "tiny", "--teacher_batch_size", "4", "--student_batch_size", "4",
        "--eval_batch_size", "8", "--report_to", "none", "--write_model_cards", "false", "--max_steps", "2"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny mini-kitchens generation as train.py's prepare stage makes it (seed 0, tiny scale)."""
    from mmkd_hf.synthetic import ensure_mini_kitchens

    root = tmp_path_factory.mktemp("mini") / "mini-kitchens-tiny"
    ensure_mini_kitchens(root, seed=0, **pipeline.MINI_KITCHENS_SCALES["tiny"])
    return root


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "mini-kitchens-hub"
    export_dataset("mini-kitchens", source, out, splits=("train", "validation"), log=lambda *a: None)
    return out


def assert_same_item(want: dict, got: dict, where: str) -> None:
    assert want.keys() == got.keys(), where
    for key, value in want.items():
        other = got[key]
        if isinstance(value, torch.Tensor):
            assert value.dtype == other.dtype and torch.equal(value, other), f"{where}: {key}"
        elif isinstance(value, dict):
            assert value.keys() == other.keys(), f"{where}: {key}"
            for name, part in value.items():
                same = torch.equal(part, other[name]) if isinstance(part, torch.Tensor) else part == other[name]
                assert same, f"{where}: {key}.{name}"
        else:
            assert value == other, f"{where}: {key}"


@pytest.mark.parametrize("split, train, views, dtype", [
    ("train", True, (1, 1), "uint8"),         # augmented: crop, flip, colour jitter, random frames
    ("validation", False, (2, 3), "float32"),  # evaluation views: 2 clips x 3 crops
])
def test_items_equal_those_of_the_source_folder(source, exported, split, train, views, dtype):
    kwargs = dict(split=split, modalities=MODALITIES, train=train, num_frames=4, crop_size=32, seed=7,
                  frames_dtype=dtype, num_clips=views[0], num_crops=views[1])
    local = load_dataset("mini-kitchens", data_dir=str(source), **kwargs)
    remote = load_dataset("mini-kitchens", data_dir=str(exported), **kwargs)
    assert len(local) == len(remote) > 0
    assert remote.features["verb"].names == local.features["verb_class"].names
    assert "action" not in remote.features  # not a head: the heads are verb and noun, as from the folder
    def draw(dataset, index):  # as the pipeline's EpochSeededDataset draws item ``index``
        torch.manual_seed(1000 + index)
        dataset.mmkd_transform.reset_draw_counter()
        return dataset[index]

    for index in range(len(local)):
        assert_same_item(draw(local, index), draw(remote, index), f"{split}[{index}]")
    first = local[0]
    assert first["pixel_values"].dtype == getattr(torch, dtype)
    if views != (1, 1):
        assert first["pixel_values"].shape[0] == views[0] * views[1]


def test_streaming_gives_the_same_items(source, exported):
    kwargs = dict(split="validation", modalities=MODALITIES, train=False, num_frames=4, crop_size=32, seed=7)
    local = load_dataset("mini-kitchens", data_dir=str(source), **kwargs)
    streamed = load_dataset("mini-kitchens", data_dir=str(exported), streaming=True, **kwargs)
    assert isinstance(streamed, datasets.IterableDataset)
    got = list(streamed)
    assert len(got) == len(local)
    for index, item in enumerate(got):
        assert_same_item(local[index], item, f"validation[{index}] streamed")
    with pytest.raises(ValueError, match="streaming=True reads datasets written by `mmkd-hf export-dataset`"):
        load_dataset("mini-kitchens", data_dir=str(source), streaming=True, **kwargs)


def test_train_py_on_the_export_gives_the_results_of_the_folder(source, exported, tmp_path):
    common = TINY + ["--output_dir", str(tmp_path), "--max_eval_samples", "8", "--parallel_units", "1"]
    assert main(common + ["--data_dir", str(source), "--run_name", "folder"]) == 0
    assert main(common + ["--hub_dataset", str(exported), "--run_name", "export"]) == 0
    results = {name: json.loads((tmp_path / name / "results.json").read_text()) for name in ("folder", "export")}
    assert results["export"]["run"]["config_hash"] == results["folder"]["run"]["config_hash"]

    def metrics(payload):  # the paths of the run's files and the measured latencies differ, nothing else
        models = json.loads(json.dumps(payload["models"]))
        for unit in models.values():
            for key in ("model", "files", "latency_ms_per_video", "latency_ms_per_view"):
                unit.pop(key, None)
        return models

    assert list(results["export"]["models"]) == list(results["folder"]["models"])
    assert metrics(results["export"]) == metrics(results["folder"])
    assert "epic" in results["export"]["models"]["student"]  # the tail / unseen flags travel with the export
    settings = json.loads((tmp_path / "export" / "run_settings.json").read_text())
    assert settings["data_dir"] == str(exported)
    # --data_dir <exported folder> is recognised by its card, and the run is identified by the export's content
    from mmkd_hf.pipeline.run_folder import data_fingerprint

    from mmkd_hf.pipeline.data_adapter import data_source

    assert data_source(pipeline.parse_config(TINY + ["--data_dir", str(exported)])) == str(exported)
    assert data_fingerprint("mini-kitchens", exported) == json.loads(
        (tmp_path / "export" / "config.json").read_text())["data_fingerprint"]
    moved = tmp_path / "moved"
    shutil.copytree(exported, moved)
    assert data_fingerprint("mini-kitchens", moved) == data_fingerprint("mini-kitchens", exported)


def test_bad_input_is_one_line_naming_folder_split_and_shard(source, exported, tmp_path, capsys):
    kwargs = dict(modalities=("rgb",), num_frames=4, crop_size=32)
    with pytest.raises(ExportedDatasetError, match=r"has no split 'test' \(available: train, validation\)") as info:
        load_dataset("mini-kitchens", data_dir=str(exported), split="test", **kwargs)
    assert str(exported) in str(info.value)
    with pytest.raises(ExportedDatasetError, match="holds an export of 'mini-kitchens', not 'epic-kitchens-100'"):
        load_dataset("epic-kitchens-100", data_dir=str(exported), split="validation", **kwargs)
    # a corrupt shard, met by the pipeline's loader: named with its split
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    shard = broken / "data" / "train-00000-of-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(ExportedDatasetError) as info:
        load_dataset("mini-kitchens", data_dir=str(broken), split="validation", **kwargs)
    message = str(info.value)
    assert str(broken) in message and shard.name in message and "'train'" in message and "\n" not in message
    # audio windows wider than the exported margin: refused, with the margin to export with
    narrow = tmp_path / "narrow"
    export_dataset("mini-kitchens", source, narrow, splits=["validation"], audio_margin=0.1, log=lambda *a: None)
    audio = load_dataset("mini-kitchens", data_dir=str(narrow), split="validation", modalities=("audio",),
                         num_frames=4, crop_size=32)
    with pytest.raises(ExportedDatasetError, match=r"export again with --audio-margin 0\.61"):
        audio[0]
    # train.py: a folder that is no export, and a folder holding other features, are one line each
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "README.md").write_text("# notes\n")
    capsys.readouterr()

    def train_error(*options) -> str:
        assert main(TINY + ["--output_dir", str(tmp_path / "runs"), *options]) == 1
        (line,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        return line

    line = train_error("--hub_dataset", str(plain))
    assert line.startswith("train.py: error: ") and str(plain) in line
    assert "not a dataset written by mmkd-hf export-dataset" in line
    both = train_error("--hub_dataset", str(exported), "--data_dir", str(source))
    assert "either --hub_dataset or --data_dir" in both
    other = tmp_path / "other"
    shutil.copytree(exported, other)
    card = (other / "README.md").read_text()
    (other / "README.md").write_text(card.replace("name: segment_id", "name: clip_id"))
    with pytest.raises(ExportedDatasetError, match=r"missing column\(s\) segment_id") as info:
        load_dataset("mini-kitchens", data_dir=str(other), split="validation", **kwargs)
    assert str(other) in str(info.value) and "'validation'" in str(info.value)


def test_hub_copy_by_repo_id_gives_the_same_items(source, exported, tmp_path, monkeypatch):
    """Pushed to the loopback Hub, the export is read by repo id (prepared and streamed) in a fresh process: the
    same items as the source folder, the same fingerprint as the folder; a missing repo is one line naming it."""
    import huggingface_hub.constants

    from hub_server import FakeHub
    from mmkd_hf.hub.push import push_exported_dataset

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the fake serves plain LFS
    with FakeHub(tokens={"hf_alice": "alice"}) as hub:
        pushed = push_exported_dataset(exported, "alice", token="hf_alice", endpoint=hub.url, log=lambda *a: None)
        code = f"""
import torch
from mmkd_hf.data import ExportedDatasetError, load_dataset
from mmkd_hf.pipeline.run_folder import data_fingerprint
repo = "hf://datasets/{pushed.repo_id}"
assert data_fingerprint("mini-kitchens", repo) == data_fingerprint("mini-kitchens", {str(exported)!r})
kw = dict(split="validation", modalities=("rgb", "flow", "audio", "layout"), train=False, num_frames=4, crop_size=32)
local = load_dataset("mini-kitchens", data_dir={str(source)!r}, **kw)
for streaming in (False, True):
    remote = load_dataset("mini-kitchens", data_dir=repo, streaming=streaming, **kw)
    items = list(remote) if streaming else [remote[i] for i in range(len(remote))]
    assert len(items) == len(local), streaming
    for i, item in enumerate(items):
        want = local[i]
        assert want.keys() == item.keys()
        for key, value in want.items():
            same = torch.equal(value, item[key]) if isinstance(value, torch.Tensor) else value == item[key]
            assert same, (streaming, i, key)
try:
    load_dataset("mini-kitchens", data_dir="hf://datasets/alice/missing", **kw)
except ExportedDatasetError as error:
    print("ERROR", error)
"""
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "hf_alice",
               "HF_HOME": str(tmp_path / "hf-home"), "OMP_NUM_THREADS": "1"}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("ERROR")]
    assert "hf://datasets/alice/missing" in line and "RepositoryNotFound" in line
