"""Bad input: each case is a clear error naming the file and the sample, or skipped and reported."""

import shutil
import wave

import numpy as np
import pytest
import torch

from mmkd_hf.data import AudioConfig, LayoutConfig, MultimodalCollator, build_metadata, load_dataset
from mmkd_hf.data.detections import Detections, write_video_detections
from mmkd_hf.data.errors import DataFormatError, SampleDecodeError

from conftest import write_tiny_epic

SMALL = dict(num_frames=4, crop_size=32, audio=AudioConfig(output_size=(32, 32)), stride=2)


@pytest.fixture()
def epic_copy(tiny_epic, tmp_path):
    return shutil.copytree(tiny_epic, tmp_path / "epic")


def _frame(root, video="P01_01", number=5):
    return root / video[:3] / "rgb_frames" / video / f"frame_{number:010d}.jpg"


def test_missing_frame_names_file_and_sample(epic_copy, data_cache):
    _frame(epic_copy, number=8).unlink()
    ds = load_dataset("epic-kitchens-100", epic_copy, "validation", ["rgb"], data_cache, num_frames=8, crop_size=32,
                      sampler="uniform")
    with pytest.raises(SampleDecodeError, match=r"P01_01_2.*frame_0000000008\.jpg.*not found"):
        ds[0]


def test_corrupt_jpeg(epic_copy, data_cache):
    path = _frame(epic_copy, number=8)
    path.write_bytes(path.read_bytes()[:40])  # truncated JPEG
    ds = load_dataset("epic-kitchens-100", epic_copy, "validation", ["rgb"], data_cache, num_frames=8, crop_size=32,
                      sampler="uniform")
    with pytest.raises(SampleDecodeError, match=r"P01_01_2.*frame_0000000008\.jpg.*(corrupt|JPEG)"):
        ds[0]
    _frame(epic_copy, number=9).write_bytes(b"not a jpeg at all")
    with pytest.raises(SampleDecodeError, match="P01_01_2"):
        ds[0]


def test_truncated_and_silent_audio(epic_copy, data_cache):
    wav = epic_copy / "P01" / "videos" / "P01_01.wav"
    wav.write_bytes(wav.read_bytes()[: 44 + 3000])  # header still declares the full length
    ds = load_dataset("epic-kitchens-100", epic_copy, "validation", ["audio"], data_cache, **SMALL)
    with pytest.raises(SampleDecodeError, match=r"P01_01_2.*P01_01\.wav.*truncated"):
        ds[0]
    with wave.open(str(wav), "wb") as wf:  # silent and much shorter than the video: zero-padded
        wf.setnchannels(1), wf.setsampwidth(2), wf.setframerate(8000)
        wf.writeframes(np.zeros(100, np.int16).tobytes())
    item = ds[0]
    assert item["audio_values"].shape == (4, 1, 32, 32) and item["audio_values"].max() <= -99.0


def test_segment_shorter_than_clip_repeats_last(tiny_epic, data_cache):
    ds = load_dataset("epic-kitchens-100", tiny_epic, "validation", ["rgb"], data_cache, num_frames=8, crop_size=32,
                      stride=2)
    item = ds[1]  # P02_01_1: frames 10..13 (4 frames) for an 8-frame clip with stride 2
    green = item["pixel_values"][:, 1].mean(dim=(1, 2)) * 255 / 5
    assert item["pixel_values"].shape[0] == 8
    assert green[-1] == pytest.approx(12, abs=0.6) and torch.allclose(green[2:], green[-1], atol=0.05)


def test_boxes_outside_frame_swapped_and_too_many(epic_copy, data_cache):
    messages = []
    for i in range(1, 41):
        m = Detections(video_id="P01_01", frame_number=i)
        h = m.hands.add(score=0.9, side=0, state=0)
        h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom = 0.9, 0.9, 0.4, 0.3  # x1 > x2, y1 > y2
        o = m.objects.add(score=0.95)
        # just outside the frame: clipped (beyond the 5 % tolerance a box is refused, see test_data_guards.py)
        o.bbox.left, o.bbox.top, o.bbox.right, o.bbox.bottom = -0.04, -0.02, 1.04, 1.03
        for k in range(20):  # more boxes than max_boxes
            extra = m.objects.add(score=0.6 + 0.001 * k)
            extra.bbox.left, extra.bbox.top, extra.bbox.right, extra.bbox.bottom = 0.1, 0.1, 0.2, 0.2
        messages.append(m)
    write_video_detections(epic_copy / "P01" / "hand-objects" / "P01_01.pkl", messages)
    ds = load_dataset("epic-kitchens-100", epic_copy, "validation", ["layout"], data_cache,
                      layout=LayoutConfig(max_boxes=5), **SMALL)
    item = ds[0]
    assert item["layout_mask"].shape == (4, 5) and item["layout_mask"].all()
    boxes = item["layout_boxes"]
    assert boxes.min() >= 0 and boxes.max() <= 1
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()
    assert (item["layout_scores"] >= 0.6 + 0.001 * 17 - 1e-6).all()  # the 5 highest scores kept
    assert (item["layout_categories"][:, :2] == torch.tensor([2, 1])).all()


def _rewrite_csv(root, old, new):
    path = root / "EPIC_100_validation.csv"
    path.write_text(path.read_text().replace(old, new))


def test_label_outside_class_list(tmp_path, data_cache):
    root = write_tiny_epic(tmp_path / "labels", with_modalities=False)
    _rewrite_csv(root, "open,2,cup,0", "open,7,cup,0")
    with pytest.raises(DataFormatError, match=r"EPIC_100_validation\.csv.*P01_01_2.*verb_class 7 outside"):
        build_metadata("epic-kitchens-100", root, data_cache)


def test_csv_missing_column(tmp_path, data_cache):
    root = write_tiny_epic(tmp_path / "columns", with_modalities=False)
    path = root / "EPIC_100_validation.csv"
    path.write_text(path.read_text().replace("stop_frame", "end_frame", 1))
    with pytest.raises(DataFormatError, match=r"EPIC_100_validation\.csv.*missing column.*stop_frame"):
        build_metadata("epic-kitchens-100", root, data_cache)


def test_unknown_video_in_video_info(tmp_path, data_cache):
    root = write_tiny_epic(tmp_path / "videos", with_modalities=False)
    _rewrite_csv(root, "P02_01_1,P02,P02_01", "P02_01_1,P02,P02_99")
    with pytest.raises(DataFormatError, match=r"video_info.*P02_01_1.*P02_99"):
        build_metadata("epic-kitchens-100", root, data_cache)


def test_skip_bad_samples_replaces_and_reports(epic_copy, data_cache, tmp_path):
    for frame in (epic_copy / "P01" / "rgb_frames" / "P01_01").iterdir():  # every P01 segment fails to decode
        frame.write_bytes(b"not a jpeg")
    log = tmp_path / "skipped.jsonl"
    ds = load_dataset("epic-kitchens-100", epic_copy, "train", ["rgb"], data_cache, skip_bad_samples=True,
                      skip_log_path=log, **SMALL)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=MultimodalCollator(), num_workers=0)
    batch = next(iter(loader))
    assert batch["segment_id"] == ["P02_01_0", "P02_01_0", "P02_01_0"]  # replaced by the next good row
    report = ds.mmkd_transform.skip_report()
    assert report["count"] >= 2 and {e["sample_id"] for e in report["samples"]} >= {"P01_01_0", "P01_01_1"}
    assert "rgb_frames" in report["samples"][0]["path"] and log.read_text().count("\n") == report["count"]
    strict = load_dataset("epic-kitchens-100", epic_copy, "train", ["rgb"], data_cache, **SMALL)
    with pytest.raises(SampleDecodeError, match="P01_01_0"):
        strict[0]


def test_missing_files_fail_at_load_or_are_dropped(epic_copy, data_cache):
    """Missing files are found before any decoding: one error naming the videos, or (skip) the segments dropped."""
    shutil.rmtree(epic_copy / "P01" / "rgb_frames")
    with pytest.raises(DataFormatError, match=r"2 of 3 segments.*rgb: 1 video\(s\), 2 segment\(s\) \(P01_01: no frame"):
        load_dataset("epic-kitchens-100", epic_copy, "train", ["rgb"], data_cache, **SMALL)
    ds = load_dataset("epic-kitchens-100", epic_copy, "train", ["rgb"], data_cache, skip_bad_samples=True, **SMALL)
    assert len(ds) == 1 and ds[0]["segment_id"] == "P02_01_0"
    assert ds.mmkd_source_report.count == 2 and ds.mmkd_source_report.segment_ids == ["P01_01_0", "P01_01_1"]
    assert load_dataset("epic-kitchens-100", epic_copy, "train", ["flow"], data_cache, **SMALL).mmkd_source_report is None


def test_dataloader_workers(tiny_epic, data_cache):
    ds = load_dataset("epic-kitchens-100", tiny_epic, "train", ["rgb", "flow"], data_cache, **SMALL)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=MultimodalCollator(), num_workers=2)
    batches = list(loader)
    assert [b["pixel_values"].shape[0] for b in batches] == [2, 1]
    assert sorted(sum((b["segment_id"] for b in batches), [])) == ["P01_01_0", "P01_01_1", "P02_01_0"]
