"""EPIC-KITCHENS-100 builder and reader: synthetic EPIC-layout data and the real annotation CSVs."""

import csv
import pickle
import shutil
import tarfile

import numpy as np
import pytest
import torch

from mmkd_hf.data import AudioConfig, MultimodalCollator, build_metadata, load_dataset
from mmkd_hf.data.builders.epic_kitchens_100 import EpicKitchensReader
from mmkd_hf.data.detections import Detections, load_detection_list
from mmkd_hf.data.errors import DataFormatError, FileDecodeError

SMALL = dict(num_frames=4, crop_size=32, audio=AudioConfig(output_size=(32, 32)), stride=2)


def test_uint8_frames_are_the_float_frames_times_255(tiny_epic, data_cache):
    """frames_dtype="uint8" changes the transport only: same values, 0-255 bytes (batch buffers included)."""
    kwargs = dict(train=True, seed=3, **SMALL)
    floats = load_dataset("epic-kitchens-100", tiny_epic, "train", ["rgb", "flow"], data_cache, **kwargs)
    raw = load_dataset("epic-kitchens-100", tiny_epic, "train", ["rgb", "flow"], data_cache, frames_dtype="uint8",
                       **kwargs)
    torch.manual_seed(0)
    a = MultimodalCollator()(floats.__getitems__([0, 1, 2]))
    torch.manual_seed(0)
    b = MultimodalCollator()(raw.__getitems__([0, 1, 2]))
    for key in ("pixel_values", "flow_values"):
        assert a[key].dtype == torch.float32 and b[key].dtype == torch.uint8 and a[key].shape == b[key].shape
        assert torch.equal(b[key].float() / 255.0, a[key]), key
    with pytest.raises(ValueError, match="frames_dtype"):
        load_dataset("epic-kitchens-100", tiny_epic, "train", ["rgb"], data_cache, frames_dtype="float16", **SMALL)


def test_builder_reads_synthetic_layout(tiny_epic, data_cache):
    splits = build_metadata("epic-kitchens-100", tiny_epic, data_cache)
    assert set(splits) == {"train", "validation"}
    train = splits["train"]
    assert train.num_rows == 3 and train.features["verb_class"].names == ["take", "put", "open"]
    row = train[1]
    assert (row["segment_id"], row["start_frame"], row["stop_frame"], row["fps"]) == ("P01_01_1", 15, 40, 30.0)
    assert row["action_class"] == 1 * 4 + 2 and row["width"] == 64 and row["height"] == 48
    val = splits["validation"]
    assert val[1]["unseen_participant"] is True and val[0]["unseen_participant"] is False
    assert val[0]["tail_verb"] is True and val[1]["tail_noun"] is True


def test_pipeline_all_modalities(tiny_epic, data_cache):
    ds = load_dataset("epic-kitchens-100", tiny_epic, "train", ["rgb", "flow", "audio", "layout"], data_cache, **SMALL)
    batch = MultimodalCollator()([ds[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 4, 3, 32, 32)
    assert 0.0 <= batch["pixel_values"].min() and batch["pixel_values"].max() <= 1.0
    assert batch["flow_values"].shape == (3, 4, 2, 32, 32)
    assert batch["flow_values"][:, :, 1].mean() == pytest.approx(128 / 255, abs=0.02)  # v = no motion
    assert batch["audio_values"].shape == (3, 4, 1, 32, 32) and batch["audio_values"].max() > -40
    mask = batch["layout_mask"]
    assert batch["layout_boxes"].shape == (3, 4, 14, 4) and mask.any()
    assert batch["layout_categories"][mask].unique().tolist() in ([1, 2], [2], [1])  # weak object filtered
    assert (batch["layout_categories"][mask] != 0).all() and (batch["layout_categories"][~mask] == 0).all()
    hands = batch["layout_categories"] == 2
    assert (batch["layout_sides"][hands] == 2).all() and (batch["layout_states"][hands] == 4).all()
    boxes = batch["layout_boxes"][mask]
    assert boxes.min() >= 0 and boxes.max() <= 1 and (boxes[:, 2] > boxes[:, 0]).all()
    assert batch["labels"]["action"].tolist() == [1, 6, 11]


def test_sampled_frames_lie_in_segment(tiny_epic, data_cache):
    ds = load_dataset("epic-kitchens-100", tiny_epic, "validation", ["rgb"], data_cache, num_frames=4,
                      crop_size=32, sampler="uniform")
    item = ds[0]  # P01_01_2: frames 5..12; the green channel encodes 5 * frame number
    green = item["pixel_values"][:, 1].mean(dim=(1, 2)) * 255 / 5
    assert green.min() >= 4.5 and green.max() <= 12.5 and torch.all(green[1:] >= green[:-1] - 0.5)


def test_multiview_eval_shapes(tiny_epic, data_cache):
    ds = load_dataset("epic-kitchens-100", tiny_epic, "validation", ["rgb", "flow", "audio", "layout"], data_cache,
                      num_clips=2, num_crops=3, **SMALL)
    item = ds[0]
    assert item["pixel_values"].shape == (6, 4, 3, 32, 32) and item["flow_values"].shape == (6, 4, 2, 32, 32)
    assert item["audio_values"].shape == (6, 4, 1, 32, 32) and item["layout_mask"].shape == (6, 4, 14)
    assert torch.equal(item["audio_values"][0], item["audio_values"][2])  # audio repeated over crops


def test_alternative_layouts_tar_and_rearranged(tiny_epic, tmp_path, data_cache):
    root = tmp_path / "alt"
    shutil.copytree(tiny_epic, root, ignore=shutil.ignore_patterns("rgb_frames", "flow_frames"))
    # P01: un-extracted tars; P02: rgb_frames/<P>/<video>/ re-arrangement
    (root / "P01" / "rgb_frames").mkdir()
    with tarfile.open(root / "P01" / "rgb_frames" / "P01_01.tar", "w") as tf:
        tf.add(tiny_epic / "P01" / "rgb_frames" / "P01_01", arcname=".")
    (root / "P01" / "flow_frames").mkdir()
    with tarfile.open(root / "P01" / "flow_frames" / "P01_01.tar", "w") as tf:
        tf.add(tiny_epic / "P01" / "flow_frames" / "P01_01", arcname=".")
    shutil.copytree(tiny_epic / "P02" / "rgb_frames" / "P02_01", root / "rgb_frames" / "P02" / "P02_01")
    shutil.copytree(tiny_epic / "P02" / "flow_frames" / "P02_01", root / "flow_frames" / "P02" / "P02_01")
    ref = load_dataset("epic-kitchens-100", tiny_epic, "validation", ["rgb", "flow"], data_cache, **SMALL)
    alt = load_dataset("epic-kitchens-100", root, "validation", ["rgb", "flow"], data_cache, **SMALL)
    for i in range(2):
        assert torch.allclose(ref[i]["pixel_values"], alt[i]["pixel_values"])
        assert torch.allclose(ref[i]["flow_values"], alt[i]["flow_values"])


def test_detections_unpickler_rejects_code(tmp_path):
    good = tmp_path / "good.pkl"
    m = Detections(video_id="v", frame_number=1)
    good.write_bytes(pickle.dumps([m.SerializeToString()]))
    assert Detections.FromString(load_detection_list(good)[0]).video_id == "v"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps([np.zeros(2)]))  # needs a global (numpy) -> refused
    with pytest.raises(FileDecodeError, match="not allowed|list of bytes"):
        load_detection_list(evil)
    wrong = tmp_path / "dict.pkl"
    wrong.write_bytes(pickle.dumps({"a": b"x"}))
    with pytest.raises(FileDecodeError, match="list of bytes"):
        load_detection_list(wrong)


# --------------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def real_epic(shared_data, data_cache):
    root = shared_data / "epic-kitchens-100-annotations"
    return root, build_metadata("epic-kitchens-100", root, data_cache)


def test_real_validation_csv(real_epic):
    root, splits = real_epic
    assert list(splits) == ["validation"]  # no train CSV in the sample, no test CSV
    val = splits["validation"]
    assert val.num_rows == 9668
    with open(root / "EPIC_100_validation.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    info = {r["video_id"]: r for r in csv.DictReader(open(root / "EPIC_100_video_info.csv", newline=""))}
    verbs = [r["key"] for r in csv.DictReader(open(root / "EPIC_100_verb_classes.csv", newline=""))]
    nouns = [r["key"] for r in csv.DictReader(open(root / "EPIC_100_noun_classes.csv", newline=""))]
    assert val.features["verb_class"].names == verbs and len(nouns) == 300
    for i in (0, 4321, len(rows) - 1):
        expected, got = rows[i], val[i]
        assert got["segment_id"] == expected["narration_id"] and got["video_id"] == expected["video_id"]
        assert got["start_frame"] == int(expected["start_frame"]) and got["stop_frame"] == int(expected["stop_frame"])
        assert got["verb_class"] == int(expected["verb_class"]) and got["noun_class"] == int(expected["noun_class"])
        assert got["verb"] == expected["verb"] and got["noun"] == expected["noun"]
        assert got["fps"] == pytest.approx(float(info[expected["video_id"]]["fps"]))
    first = val[0]
    assert (first["segment_id"], first["start_frame"], first["stop_frame"]) == ("P01_11_0", 1, 113)
    assert first["narration"] == "take plate" and first["noun_class"] == 2 and first["action_class"] == 2
    # per-video fps: not one value
    p18 = val.filter(lambda r: r["video_id"] == "P18_09")
    assert p18[0]["fps"] == pytest.approx(90.0) and p18[0]["unseen_participant"]
    # ...but the CSV numbers frames at 60 per second for every video
    assert p18[0]["frame_rate"] == pytest.approx(60.0, rel=2e-3)
    assert sum(val["unseen_participant"]) == sum(r["participant_id"] in ("P18", "P32") for r in rows)


def test_real_csv_without_frames_fails_at_load_with_counts(real_epic, data_cache):
    """The real validation CSV (9,668 segments, 138 videos) over a folder without frames: one error before any
    decoding, with the counts and the expected paths, in well under a second per thousand segments."""
    import time

    root, _ = real_epic
    start = time.perf_counter()
    with pytest.raises(DataFormatError) as caught:
        load_dataset("epic-kitchens-100", root, "validation", ["rgb", "layout"], data_cache, num_frames=4, crop_size=32)
    elapsed = time.perf_counter() - start
    message = str(caught.value)
    assert "\n" not in message and "9668 of 9668 segments" in message
    assert "rgb: 138 video(s), 9668 segment(s) (P01_11, P01_12, P01_13 and 135 more" in message
    assert "layout: 138 video(s)" in message and "<P>/rgb_frames/<video>.tar" in message
    assert "skip_bad_samples=True" in message and elapsed < 30
    # the metadata alone needs no files
    meta = load_dataset("epic-kitchens-100", root, "validation", cache_dir=data_cache, decode=False)
    assert meta.num_rows == 9668
    reader = EpicKitchensReader.from_features(meta.features)
    assert reader.num_verbs == 97 and reader.num_nouns == 300
