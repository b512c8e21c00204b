"""The datasets as their official downloads lay them out: EPIC-KITCHENS-100 (download root with ``EPIC-KITCHENS/<P>/``
and the annotations repository beside it, frames as folders or un-extracted ``.tar``), Something-Something v2
(``labels/`` and ``20bn-something-something-v2/``) and Something-Else (``dataset_splits/`` and
``bounding_box_smthsmth*.json``); every segment's files checked before any decoding."""

from __future__ import annotations

import csv
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from conftest import _jpeg, tiny_rgb_frame, write_tiny_epic
from mmkd_hf.data import AudioConfig, DataFormatError, MultimodalCollator, RunSettings, load_dataset
from mmkd_hf.data.decoding import FrameStore

SMALL = dict(num_frames=4, crop_size=32, audio=AudioConfig(output_size=(32, 32)), stride=2)
ALL = ["rgb", "flow", "audio", "layout"]
#: the fps of the two tiny videos in EPIC_100_video_info.csv (EPIC-KITCHENS-100 mixes both)
VIDEO_FPS = {"P01_01": 59.94005994005994, "P02_01": 50.0}


def _set_fps(annotations: Path) -> None:
    path = annotations / "EPIC_100_video_info.csv"
    rows = list(csv.DictReader(open(path, newline="")))
    for row in rows:
        row["fps"] = repr(VIDEO_FPS[row["video_id"]])
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _tar_folder(folder: Path) -> Path:
    """Replace ``folder`` by ``folder.tar`` (members ``./frame_*.jpg`` or ``./u/...``, as the official tars)."""
    tar = folder.with_suffix(".tar")
    with tarfile.open(tar, "w") as tf:
        tf.add(folder, arcname=".")
    shutil.rmtree(folder)
    return tar


@pytest.fixture(scope="module")
def epic_layouts(tmp_path_factory) -> dict[str, Path]:
    """The same tiny EPIC data in three layouts:

    * ``download``: ``annotations/`` (the annotations repository) beside ``EPIC-KITCHENS/P01`` (frame folders)
      and ``EPIC-KITCHENS/P02`` (un-extracted ``rgb_frames/P02_01.tar`` and ``flow_frames/P02_01.tar``), each with
      ``videos/`` (audio) and ``hand-objects/<video>.pkl``;
    * ``flat``: the CSVs beside the participant folders (all frames as folders).
    """
    base = tmp_path_factory.mktemp("epic_layouts")
    flat = write_tiny_epic(base / "flat")
    _set_fps(flat)
    download = base / "download"
    (download / "annotations").mkdir(parents=True)
    for csv_file in flat.glob("EPIC_100_*.csv"):
        shutil.copy(csv_file, download / "annotations" / csv_file.name)
    for participant in ("P01", "P02"):
        shutil.copytree(flat / participant, download / "EPIC-KITCHENS" / participant)
    _tar_folder(download / "EPIC-KITCHENS" / "P02" / "rgb_frames" / "P02_01")
    _tar_folder(download / "EPIC-KITCHENS" / "P02" / "flow_frames" / "P02_01")
    return {"flat": flat, "download": download}


@pytest.fixture()
def download_copy(epic_layouts, tmp_path) -> Path:
    return shutil.copytree(epic_layouts["download"], tmp_path / "download")


def _items(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def _assert_same_items(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x["segment_id"] == y["segment_id"] and x["labels"] == y["labels"]
        for key in ("pixel_values", "flow_values", "audio_values", "layout_boxes", "layout_mask"):
            assert torch.equal(x[key], y[key]), (x["segment_id"], key)


def test_download_root_explicit_annotations_and_flat_layout_give_the_same_items(epic_layouts, tmp_path):
    download, flat = epic_layouts["download"], epic_layouts["flat"]
    from_root = load_dataset("epic-kitchens-100", download, "validation", ALL, tmp_path / "c1", **SMALL)
    from_media = load_dataset("epic-kitchens-100", download / "EPIC-KITCHENS", "validation", ALL, tmp_path / "c2",
                              annotations_dir=download / "annotations", **SMALL)
    from_flat = load_dataset("epic-kitchens-100", flat, "validation", ALL, tmp_path / "c3", **SMALL)
    beside = load_dataset("epic-kitchens-100", download / "EPIC-KITCHENS", "validation", ["rgb"], tmp_path / "c4",
                          **SMALL)  # EPIC-KITCHENS/ given alone: the annotations beside it are found
    assert torch.equal(beside[1]["pixel_values"], from_flat[1]["pixel_values"])
    assert from_root[0]["pixel_values"].shape == (4, 3, 32, 32)
    items = _items(from_root)
    _assert_same_items(items, _items(from_media))
    _assert_same_items(items, _items(from_flat))
    meta = load_dataset("epic-kitchens-100", download, "validation", cache_dir=tmp_path / "c1", decode=False)
    assert meta["data_root"] == [str((download / "EPIC-KITCHENS").resolve())] * 2
    assert meta["fps"] == [VIDEO_FPS["P01_01"], VIDEO_FPS["P02_01"]]  # per-video fps, 59.94 and 50
    assert from_root.mmkd_source_report is None
    # train split too, with P02's frames read from the un-extracted tars
    train = load_dataset("epic-kitchens-100", download, "train", ["rgb", "flow"], tmp_path / "c1", train=False, **SMALL)
    reference = load_dataset("epic-kitchens-100", flat, "train", ["rgb", "flow"], tmp_path / "c3", train=False, **SMALL)
    assert train[2]["segment_id"] == "P02_01_0"
    assert torch.equal(train[2]["pixel_values"], reference[2]["pixel_values"])
    assert torch.equal(train[2]["flow_values"], reference[2]["flow_values"])


def test_annotations_repository_clone_beside_the_download(download_copy, tmp_path):
    (download_copy / "annotations").rename(download_copy / "epic-kitchens-100-annotations")
    ds = load_dataset("epic-kitchens-100", download_copy, "validation", ["rgb"], tmp_path / "cache", **SMALL)
    assert [ds[i]["segment_id"] for i in range(len(ds))] == ["P01_01_2", "P02_01_1"]


def test_dataloader_over_the_download_yields_a_batch(epic_layouts, tmp_path):
    ds = load_dataset("epic-kitchens-100", epic_layouts["download"], "train", ALL, tmp_path / "cache", **SMALL)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=MultimodalCollator(), num_workers=0)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (3, 4, 3, 32, 32) and batch["flow_values"].shape == (3, 4, 2, 32, 32)
    assert batch["audio_values"].shape == (3, 4, 1, 32, 32) and batch["layout_mask"].any()
    assert batch["segment_id"] == ["P01_01_0", "P01_01_1", "P02_01_0"]


def test_missing_files_raise_one_error_with_counts_before_any_decoding(download_copy, tmp_path, monkeypatch):
    media = download_copy / "EPIC-KITCHENS"
    (media / "P02" / "rgb_frames" / "P02_01.tar").unlink()
    (media / "P01" / "hand-objects" / "P01_01.pkl").unlink()
    for number in range(31, 41):  # P01_01 extracted up to frame 30: its segment 15..40 cannot be read
        (media / "P01" / "rgb_frames" / "P01_01" / f"frame_{number:010d}.jpg").unlink()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a frame before the files were checked")

    monkeypatch.setattr(FrameStore, "read", no_decoding)
    with pytest.raises(DataFormatError) as caught:
        load_dataset("epic-kitchens-100", download_copy, "train", ALL, tmp_path / "cache", **SMALL)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(media.resolve()))
    assert "split 'train': 3 of 3 segments lack their files" in message
    assert "rgb: 2 video(s), 2 segment(s)" in message
    assert "P01_01: frames end at 30" in message and "need up to 40" in message
    assert "P02_01: no frame folder, .tar or video" in message and "<P>/rgb_frames/<video>.tar" in message
    assert "layout: 1 video(s), 2 segment(s) (P01_01: no hand-objects .pkl), expected <P>/hand-objects/<video>.pkl" in message
    assert "flow:" not in message  # flow is complete
    assert "skip_bad_samples=True" in message
    # metadata only: nothing is checked
    assert load_dataset("epic-kitchens-100", download_copy, "train", cache_dir=tmp_path / "cache", decode=False).num_rows == 3


def test_skip_mode_drops_the_segments_and_counts_them(download_copy, tmp_path, caplog):
    shutil.rmtree(download_copy / "EPIC-KITCHENS" / "P01" / "flow_frames")
    with caplog.at_level("WARNING", logger="mmkd_hf.data.registry"):
        ds = load_dataset("epic-kitchens-100", download_copy, "train", ["rgb", "flow"], tmp_path / "cache",
                          skip_bad_samples=True, **SMALL)
    assert len(ds) == 1 and ds[0]["segment_id"] == "P02_01_0"
    report = ds.mmkd_source_report
    assert report.count == 2 and report.total == 3 and report.segment_ids == ["P01_01_0", "P01_01_1"]
    assert report.per_modality() == {"flow": {"videos": 1, "segments": 2}}
    assert "dropped 2 of 3 train segments" in caplog.text
    # nothing left to read: still one error
    shutil.rmtree(download_copy / "EPIC-KITCHENS" / "P02" / "flow_frames")
    with pytest.raises(DataFormatError, match="every segment lacks its files"):
        load_dataset("epic-kitchens-100", download_copy, "train", ["flow"], tmp_path / "cache", skip_bad_samples=True,
                     **SMALL)


def test_annotations_without_class_lists_is_one_line(download_copy, tmp_path):
    for name in ("EPIC_100_verb_classes.csv", "EPIC_100_noun_classes.csv"):
        (download_copy / "annotations" / name).unlink()
    with pytest.raises(DataFormatError) as caught:
        load_dataset("epic-kitchens-100", download_copy, "train", ["rgb"], tmp_path / "cache", decode=False)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(download_copy / "annotations"))
    assert "['EPIC_100_verb_classes.csv', 'EPIC_100_noun_classes.csv']" in message
    assert "github.com/epic-kitchens/epic-kitchens-100-annotations" in message


def test_download_without_annotations_or_a_folder_of_neither_layout(download_copy, tmp_path):
    shutil.rmtree(download_copy / "annotations")
    with pytest.raises(DataFormatError, match=r"participant folders found but no EPIC_100_\*\.csv.*annotations_dir"):
        load_dataset("epic-kitchens-100", download_copy, "train", cache_dir=tmp_path / "cache", decode=False)
    with pytest.raises(DataFormatError, match="annotations folder not found"):
        load_dataset("epic-kitchens-100", download_copy, "train", cache_dir=tmp_path / "cache", decode=False,
                     annotations_dir=tmp_path / "nowhere")
    other = tmp_path / "photos"
    (other / "holiday").mkdir(parents=True)
    with pytest.raises(DataFormatError) as caught:
        load_dataset("epic-kitchens-100", other, "train", cache_dir=tmp_path / "cache", decode=False)
    message = str(caught.value)
    assert "\n" not in message and "not an EPIC-KITCHENS-100 folder" in message
    assert "EPIC-KITCHENS/<P>/rgb_frames" in message and str(other / "annotations") in message


def test_run_settings_carry_the_annotations_folder(epic_layouts, tmp_path):
    download = epic_layouts["download"]
    settings = RunSettings(dataset="epic-kitchens-100", data_dir=str(download / "EPIC-KITCHENS"),
                           load_kwargs={"num_frames": 4, "crop_size": 32, "annotations_dir": str(download / "annotations")})
    settings.save(tmp_path)
    loaded = RunSettings.from_run_dir(tmp_path)
    assert loaded == settings
    assert len(loaded.load_dataset("validation", modalities=("rgb",))) == 2


def test_train_py_option_reaches_the_run_settings(epic_layouts):
    from mmkd_hf.pipeline.arguments import parse_config
    from mmkd_hf.pipeline.data_adapter import dataset_load_kwargs

    download = epic_layouts["download"]
    config = parse_config(["--dataset", "epic-kitchens-100", "--data_dir", str(download / "EPIC-KITCHENS"),
                           "--annotations_dir", str(download / "annotations")])
    assert dataset_load_kwargs(config)["annotations_dir"] == str(download / "annotations")
    assert "annotations_dir" not in config.identity()  # where the files are does not change what a run computes
    assert "annotations_dir" not in dataset_load_kwargs(parse_config(["--dataset", "epic-kitchens-100",
                                                                      "--data_dir", str(download)]))


def test_evaluate_takes_the_annotations_folder_from_the_run(tmp_path):
    import argparse

    from mmkd_hf.evaluation.cli import apply_run_settings, build_parser

    RunSettings(dataset="epic-kitchens-100", data_dir="/data/EPIC-KITCHENS",
                load_kwargs={"annotations_dir": "/data/annotations"}).save(tmp_path)
    (tmp_path / "student").mkdir()
    parser = build_parser()
    args = apply_run_settings(parser.parse_args(["--model", str(tmp_path / "student")]), parser)
    assert (args.data_dir, args.annotations_dir) == ("/data/EPIC-KITCHENS", "/data/annotations")
    args = apply_run_settings(parser.parse_args(["--model", str(tmp_path / "student"), "--annotations-dir", "/a"]), parser)
    assert isinstance(args, argparse.Namespace) and args.annotations_dir == "/a"


# ------------------------------------------------------------------------------- Something-Something v2 / Else
def _frames(folder: Path, count: int = 6) -> None:
    folder.mkdir(parents=True)
    for number in range(1, count + 1):
        (folder / f"{number:04d}.jpg").write_bytes(_jpeg(tiny_rgb_frame(number, (24, 32))))


def test_ssv2_labels_folder(tmp_path):
    """The download's ``labels/`` folder (short names), or the label files given as ``annotations_dir``."""
    root = tmp_path / "ssv2"
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "labels.json").write_text(json.dumps({"Holding something": "0", "Moving something up": "1"}))
    (root / "labels" / "train.json").write_text(json.dumps([
        {"id": "7", "label": "moving a cup up", "template": "Moving [something] up", "placeholders": ["a cup"]},
        {"id": "8", "label": "holding a pen", "template": "Holding [something]", "placeholders": ["a pen"]}]))
    (root / "labels" / "validation.json").write_text(json.dumps([{"id": "8", "template": "Holding [something]"}]))
    _frames(root / "frames" / "7")
    _frames(root / "8")
    ds = load_dataset("something-something-v2", root, "train", ["rgb"], tmp_path / "c1", num_frames=4, crop_size=16)
    assert [ds[i]["labels"]["action"] for i in range(2)] == [1, 0]
    # labels given explicitly
    elsewhere = shutil.move(str(root / "labels"), str(tmp_path / "ssv2-labels"))
    ds = load_dataset("something-something-v2", root, "train", ["rgb"], tmp_path / "c2", num_frames=4, crop_size=16,
                      annotations_dir=elsewhere)
    assert len(ds) == 2
    # a video with neither frames nor .webm: one error at load
    shutil.rmtree(root / "8")
    with pytest.raises(DataFormatError, match=r"1 of 2 segments.*rgb: 1 video\(s\), 1 segment\(s\) \(8: no frame folder"):
        load_dataset("something-something-v2", root, "train", ["rgb"], tmp_path / "c2", num_frames=4, crop_size=16,
                     annotations_dir=elsewhere)


def test_something_else_splits_and_smthsmth_box_files(tmp_path):
    root = tmp_path / "something_else"
    splits = root / "dataset_splits" / "compositional"
    splits.mkdir(parents=True)
    (splits / "labels.json").write_text(json.dumps({"Holding something": 0, "Moving something up": 1}))
    (splits / "train.json").write_text(json.dumps([{"id": "7", "template": "Moving [something] up", "placeholders": ["a"]}]))
    (splits / "validation.json").write_text(json.dumps([{"id": "8", "template": "Holding [something]", "placeholders": ["b"]}]))
    boxes = {vid: [{"name": f"{vid}/{n:04d}.jpg", "labels": [
        {"box2d": {"x1": 2, "y1": 3, "x2": 20, "y2": 18}, "category": "hand", "standard_category": "hand"}]}
        for n in range(1, 7)] for vid in ("7", "8")}
    annotations = tmp_path / "boxes"
    annotations.mkdir()
    (annotations / "bounding_box_smthsmth_part1.json").write_text(json.dumps({"7": boxes["7"]}))
    (annotations / "bounding_box_smthsmth_part2.json").write_text(json.dumps({"8": boxes["8"]}))
    _frames(root / "frames" / "7")
    _frames(root / "frames" / "8")
    ds = load_dataset("something-else", root, "validation", ["rgb", "layout"], tmp_path / "cache", num_frames=4,
                      crop_size=16, annotations_dir=annotations)
    item = ds[0]
    assert item["labels"]["action"] == 0 and item["layout_mask"].any()
    shutil.rmtree(root / "frames" / "7")
    with pytest.raises(DataFormatError, match=r"rgb: 1 video.*layout: 1 video"):
        load_dataset("something-else", root, "train", ["rgb", "layout"], tmp_path / "cache", num_frames=4,
                     crop_size=16, annotations_dir=annotations)
