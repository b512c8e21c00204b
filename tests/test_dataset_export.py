"""``mmkd-hf export-dataset``: a folder that ``datasets.load_dataset`` reads with no code of ours, its card, the
refusals and one-line errors of :func:`mmkd_hf.data.load_exported`, and ``mmkd-hf push --dataset-dir`` against
the loopback Hub."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from helpers_hub import run_python
from hub_server import FakeHub
from mmkd_hf.data import ExportedDatasetError, build_metadata, load_exported
from mmkd_hf.hub.dataset_export import ExportError, export_dataset, main

SPLITS = ("train", "validation")


@pytest.fixture(scope="module")
def exported(mini_kitchens_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "mini-kitchens-hub"
    export_dataset("mini-kitchens", mini_kitchens_dir, out, splits=SPLITS, log=lambda *a: None)
    return out


def _front_matter(folder):
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_layout_and_card(exported, mini_kitchens_dir):
    assert sorted(p.name for p in (exported / "data").iterdir()) == [
        "train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"]
    meta = _front_matter(exported)
    assert meta["license"] == "cc-by-4.0"
    assert meta["configs"][0]["data_files"] == [{"split": s, "path": f"data/{s}-*.parquet"} for s in SPLITS]
    rows = {s: len(t) for s, t in build_metadata("mini-kitchens", data_dir=mini_kitchens_dir).items()}
    assert {s["name"]: s["num_examples"] for s in meta["dataset_info"]["splits"]} == {s: rows[s] for s in SPLITS}
    assert {f["name"] for f in meta["dataset_info"]["features"]} >= {"verb", "noun", "rgb", "audio", "boxes"}
    assert meta["mmkd_hf"]["generator"]["seed"] == 3
    assert meta["mmkd_hf"]["format_version"] == 2 and meta["mmkd_hf"]["audio_margin_seconds"] == 0.65
    assert meta["mmkd_hf"]["audio_format"] == "int16"  # mini-kitchens writes 16-bit PCM .wav: kept exactly
    assert sorted(meta["mmkd_hf"]["shards"]) == [f"data/{s}-00000-of-00001.parquet" for s in SPLITS]


def test_datasets_reads_it_without_the_package(exported, mini_kitchens_dir):
    metadata = build_metadata("mini-kitchens", data_dir=mini_kitchens_dir)["validation"]
    verbs, nouns = metadata.features["verb_class"], metadata.features["noun_class"]
    expected = {r["segment_id"]: (r["stop_frame"] - r["start_frame"] + 1, verbs.int2str(r["verb_class"]),
                                  nouns.int2str(r["noun_class"])) for r in metadata}
    code = f"""
import json, sys
import numpy as np
import datasets
ds = datasets.load_dataset({str(exported)!r}, split="validation")
names = {{k: ds.features[k].names for k in ("verb", "noun")}}
rows = {{}}
for row in ds:  # every column decodes with datasets' own dependencies (Pillow), no audio library
    frames = [np.asarray(image) for image in row["rgb"]]
    flow = [np.asarray(image) for image in row["flow_u"]]
    audio = row["audio"]
    samples = np.asarray(audio["array"], np.float32)
    covered = audio["start_seconds"] <= row["start_seconds"] and (
        audio["start_seconds"] + samples.size / audio["sampling_rate"] >= row["stop_seconds"] - 1e-6)
    rows[row["segment_id"]] = dict(frames=len(frames), shape=list(frames[0].shape), flow=len(flow),
                                   flow_shape=list(flow[0].shape), boxes=len(row["boxes"]),
                                   box_width=len(row["boxes"][0]["boxes"][0]) if row["boxes"][0]["boxes"] else 4,
                                   samples=int(samples.size), covered=bool(covered),
                                   verb=names["verb"][row["verb"]], noun=names["noun"][row["noun"]])
assert not any(name.startswith("mmkd_hf") for name in sys.modules), "mmkd_hf was imported"
print(json.dumps(rows))
"""
    result = run_python(code, {"HF_DATASETS_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(rows) == set(expected)
    for segment_id, (num_frames, verb, noun) in expected.items():
        row = rows[segment_id]
        assert row["frames"] == num_frames and row["boxes"] == num_frames
        assert row["shape"] == [32, 32, 3] and row["flow_shape"] == [32, 32] and row["flow"] >= 1
        assert row["box_width"] == 4 and row["samples"] > 0 and row["covered"]
        assert (row["verb"], row["noun"]) == (verb, noun)


def test_load_exported_reads_and_checks(exported):
    ds = load_exported(exported, "validation")
    assert ds.features["verb"].names[:2] == ["take", "put"]
    assert len(ds[0]["rgb"]) == ds[0]["stop_frame"] - ds[0]["start_frame"] + 1


def test_missing_split_names_folder_and_split(exported):
    with pytest.raises(ExportedDatasetError, match=r"has no split 'test' \(available: train, validation\)") as info:
        load_exported(exported, "test")
    assert str(exported) in str(info.value) and "\n" not in str(info.value)


def test_corrupt_shard_is_named(exported, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    shard = broken / "data" / "validation-00000-of-00001.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportedDatasetError) as info:
        load_exported(broken, "validation")
    message = str(info.value)
    assert str(broken) in message and "'validation'" in message and shard.name in message and "\n" not in message


def test_folder_without_the_features_is_refused(tmp_path):
    import datasets

    folder = tmp_path / "other"
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"text": ["a", "b"]}).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(ExportedDatasetError, match=r"missing column\(s\) segment_id") as info:
        load_exported(folder, "train")
    assert str(folder) in str(info.value)


def test_foreign_folder_and_unknown_split_are_refused(mini_kitchens_dir, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code = main(["--dataset", "mini-kitchens", "--data-dir", str(mini_kitchens_dir), "--out", str(foreign)])
    assert code == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and str(foreign) in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(ExportError, match="has no split 'dev'"):
        export_dataset("mini-kitchens", mini_kitchens_dir, tmp_path / "new", splits=["dev"])
    assert not (tmp_path / "new").exists()


def test_push_dataset_dir_one_commit_then_none(exported, monkeypatch):
    import huggingface_hub.constants

    from mmkd_hf.hub.push import push_exported_dataset

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the fake serves plain LFS
    with FakeHub(tokens={"hf_alice": "alice"}) as hub:
        first = push_exported_dataset(exported, "alice", token="hf_alice", endpoint=hub.url, log=lambda *a: None)
        assert first.repo_id == "alice/mmkd-mini-kitchens" and first.changed
        assert sorted(hub.file_paths(first.repo_id, repo_type="dataset")) == sorted(
            [".gitattributes", "README.md", "data/train-00000-of-00001.parquet",
             "data/validation-00000-of-00001.parquet"])
        commits = hub.commit_count(first.repo_id, repo_type="dataset")
        second = push_exported_dataset(exported, "alice", token="hf_alice", endpoint=hub.url, log=lambda *a: None)
        assert not second.changed and second.commit == first.commit
        assert hub.commit_count(first.repo_id, repo_type="dataset") == commits


def test_epic_kitchens_export_stays_local(mini_kitchens_dir, tmp_path):
    """The mini-kitchens folder is in the EPIC-KITCHENS-100 layout, so it stands in for the real dataset here."""
    from mmkd_hf.hub.push import PushError, push_exported_dataset

    out = tmp_path / "epic"
    export_dataset("epic-kitchens-100", mini_kitchens_dir, out, splits=["validation"], log=lambda *a: None)
    meta = _front_matter(out)
    assert meta["license"] == "cc-by-nc-4.0" and meta["mmkd_hf"]["dataset"] == "epic-kitchens-100"
    text = (out / "README.md").read_text(encoding="utf-8")
    assert "may not be re-distributed" in text and "private repo" in text
    with pytest.raises(PushError, match="may not be re-hosted publicly"):
        push_exported_dataset(out, "alice", token="hf_alice", endpoint="http://127.0.0.1:9", log=lambda *a: None)


def test_missing_audio_is_null_and_marked_like_the_folder(tiny_epic, tmp_path):
    """A video without its audio file: its segments export with ``audio`` null, and a multimodal load of the export
    keeps them marked absent, exactly as the folder's load does (EPIC-KITCHENS-100 lacks audio here and there)."""
    import torch

    from mmkd_hf.data import load_dataset

    folder = tmp_path / "epic"
    shutil.copytree(tiny_epic, folder)
    (folder / "P02" / "videos" / "P02_01.wav").unlink()
    out = tmp_path / "export"
    export_dataset("epic-kitchens-100", folder, out, splits=["validation"], audio_format="float32",
                   log=lambda *a: None)
    rows = load_exported(out, "validation")
    assert {r["segment_id"]: r["audio"] is None for r in rows} == {"P01_01_2": False, "P02_01_1": True}
    kwargs = dict(split="validation", modalities=("rgb", "audio"), num_frames=4, crop_size=32, seed=1)
    local, remote = load_dataset("epic-kitchens-100", data_dir=str(folder), **kwargs), load_dataset(
        "epic-kitchens-100", data_dir=str(out), **kwargs)
    for index in range(len(local)):
        want, got = local[index], remote[index]
        assert want["modality_present"] == got["modality_present"]
        assert torch.equal(want["audio_values"], got["audio_values"])
        assert torch.equal(want["pixel_values"], got["pixel_values"])
    assert [local[i]["modality_present"]["audio"] for i in range(len(local))] == [True, False]
