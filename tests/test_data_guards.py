"""Numbers checked where they enter the data: CSV cells, box corners and detection scores, segments past the end of
their video. Each bad input is a one-line error naming the file, line and column (or the sample), or a refused box
that never reaches the layout teacher."""

from __future__ import annotations

import json
import logging
import math
import shutil
import wave

import numpy as np
import pytest
import torch

from mmkd_hf.data import AudioConfig, LayoutConfig, build_metadata, load_dataset
from mmkd_hf.data.builders.common import parse_int, read_csv_rows
from mmkd_hf.data.detections import (
    Detections,
    DetectionThresholds,
    check_boxes,
    frame_layout,
    refused_box_count,
    write_video_detections,
)
from mmkd_hf.data.errors import DataFormatError, SampleDecodeError

from conftest import _jpeg, write_tiny_epic

SMALL = dict(num_frames=4, crop_size=32, audio=AudioConfig(output_size=(32, 32)), stride=2)


@pytest.fixture()
def epic_copy(tiny_epic, tmp_path):
    return shutil.copytree(tiny_epic, tmp_path / "epic")


def _one_line_error(call, match: str) -> str:
    with pytest.raises(DataFormatError, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------------------------------- CSV files
def _csv_case(tmp_path, name: str) -> tuple:
    root = write_tiny_epic(tmp_path / name, with_modalities=False)
    return root, root / "EPIC_100_validation.csv"


def test_last_row_without_its_last_column(tmp_path, data_cache):
    root, path = _csv_case(tmp_path, "short")
    text = path.read_text()
    lines = text.rstrip("\n").split("\n")
    lines[-1] = lines[-1].rsplit(",", 1)[0]  # all_noun_classes left out
    path.write_text("\n".join(lines) + "\n")
    message = _one_line_error(lambda: build_metadata("epic-kitchens-100", root, data_cache),
                              r"EPIC_100_validation\.csv.*line 3, column 'all_noun_classes'")
    assert "14 of the header's 15 fields" in message


def test_header_only_csv(tmp_path, data_cache):
    root, path = _csv_case(tmp_path, "header")
    path.write_text(path.read_text().split("\n", 1)[0] + "\n")
    _one_line_error(lambda: build_metadata("epic-kitchens-100", root, data_cache),
                    r"EPIC_100_validation\.csv: line 2: no rows after the header")


def test_latin1_csv(tmp_path, data_cache):
    root, path = _csv_case(tmp_path, "latin1")
    path.write_bytes(path.read_text().replace("open cup", "open café").encode("latin-1"))
    _one_line_error(lambda: build_metadata("epic-kitchens-100", root, data_cache),
                    r"EPIC_100_validation\.csv: line 2: not UTF-8 \(byte b'\\xe9'.*save the file as UTF-8")


def test_frame_number_written_as_a_float(tmp_path, data_cache):
    root, path = _csv_case(tmp_path, "float")
    path.write_text(path.read_text().replace(",5,12,", ",1e20,12,"))
    message = _one_line_error(lambda: build_metadata("epic-kitchens-100", root, data_cache),
                              r"EPIC_100_validation\.csv \(sample 'P01_01_2'\): line 2, column 'start_frame': "
                              r"expected an integer, got '1e20'")
    assert "P01_01_2" in message


def test_csv_cut_mid_row(tmp_path, data_cache):
    root, path = _csv_case(tmp_path, "cut")
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 25])  # the last row cut after 24 characters
    _one_line_error(lambda: build_metadata("epic-kitchens-100", root, data_cache),
                    r"EPIC_100_validation\.csv: line 3, column '\w+': the row has \d+ of the header's 15 fields")
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('id,key\n0,"take\n')  # a quote opened and never closed: the file ends inside it
    with pytest.raises(DataFormatError, match=r"quoted\.csv: line \d+(, column 'key'|: not valid CSV)"):
        list(read_csv_rows(quoted, ["id", "key"]))


def test_extra_fields_and_parse_int(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,key\n0,take,surplus\n")
    with pytest.raises(DataFormatError, match=r"x\.csv: line 2: the row has 3 fields, the header 2"):
        list(read_csv_rows(path, ["id"]))
    for bad in ("1e20", "3.5", "", " ", "nan", None):
        with pytest.raises(DataFormatError, match=r"line 7, column 'n'"):
            parse_int(bad, path, "n", "s", 7)
    assert parse_int(" 12 ", path, "n", "s", 7) == 12
    empty = tmp_path / "empty.csv"
    empty.write_text("verb\n")
    assert list(read_csv_rows(empty, ["verb"], allow_empty=True)) == []


# ------------------------------------------------------------------------------------------ boxes and scores
def _message(frame: int, boxes: list[tuple[float, float, float, float, float]], video: str = "P01_01"):
    message = Detections(video_id=video, frame_number=frame)
    for left, top, right, bottom, score in boxes:
        obj = message.objects.add(score=score)
        obj.bbox.left, obj.bbox.top, obj.bbox.right, obj.bbox.bottom = left, top, right, bottom
    return message


def test_check_boxes_clips_within_the_tolerance_and_refuses_beyond(caplog):
    before = refused_box_count()
    boxes = np.array([[0.1, 0.1, 0.5, 0.5],        # fine
                      [-0.04, 0.0, 1.03, 0.9],     # just outside: clipped
                      [-0.5, 0.0, 0.5, 0.5],       # far outside: refused
                      [math.nan, 0.1, 0.2, 0.3],   # NaN corner: refused
                      [0.1, 0.1, math.inf, 0.3],   # infinite corner: refused
                      [0.1, 0.1, 0.2, 0.3]])       # infinite score: refused
    scores = np.array([0.9, 0.9, 0.9, 0.9, 0.9, math.inf])
    with caplog.at_level(logging.WARNING):
        clipped, keep = check_boxes(boxes, scores, where="video V frame 7")
    assert keep.tolist() == [True, True, False, False, False, False]
    assert np.isfinite(clipped).all() and clipped.min() >= 0 and clipped.max() <= 1
    assert clipped[1].tolist() == pytest.approx([0.0, 0.0, 1.0, 0.9])
    assert refused_box_count() - before == 4
    assert "video V frame 7: 4 box(es) refused" in caplog.text and "NaN or infinite" in caplog.text


def test_epic_detections_with_nan_or_infinite_numbers_never_reach_the_layout(epic_copy, data_cache, caplog):
    thresholds = DetectionThresholds(hand=0.5, object=0.5)
    message = _message(3, [(0.1, 0.1, 0.4, 0.4, 0.9), (math.nan, 0.1, 0.4, 0.4, 0.9), (0.1, 0.1, 0.4, 0.4, math.nan),
                           (0.1, 0.1, 0.4, 0.4, math.inf), (0.1, -2.0, 0.4, 0.4, 0.9), (0.0, 0.0, 1.02, 1.0, 0.9)])
    with caplog.at_level(logging.WARNING):
        layout = frame_layout(message.SerializeToString(), thresholds, "x.pkl", frame_number=3)
    assert len(layout["boxes"]) == 2 and np.isfinite(layout["boxes"]).all() and np.isfinite(layout["scores"]).all()
    assert layout["boxes"][1].tolist() == pytest.approx([0.0, 0.0, 1.0, 1.0])
    assert "x.pkl (video P01_01, frame 3): 4 box(es) refused" in caplog.text
    # through the dataset, with and without boxes following the crop
    frames = [_message(i, [(math.nan, math.nan, math.inf, 0.5, 0.9), (0.2, 0.2, 0.6, 0.6, math.inf),
                           (0.2, 0.2, 0.6, 0.6, 0.9)]) for i in range(1, 41)]
    write_video_detections(epic_copy / "P01" / "hand-objects" / "P01_01.pkl", frames)
    for follow_crop in (True, False):
        ds = load_dataset("epic-kitchens-100", epic_copy, "validation", ["layout"], data_cache,
                          layout=LayoutConfig(follow_crop=follow_crop), **SMALL)
        item = ds[0]
        assert item["segment_id"] == "P01_01_2"
        for key in ("layout_boxes", "layout_scores"):
            assert torch.isfinite(item[key]).all(), (key, follow_crop)
        assert item["layout_mask"].sum(-1).tolist() == [1, 1, 1, 1]  # only the good box, in every frame
        assert ds.mmkd_transform.skip_report()["refused_boxes"] >= 8


@pytest.fixture()
def something_else_folder(tmp_path):
    """Something-Else layout: 4 frames of 40x60 for one video, boxes in pixels with "nan" and far-out corners."""
    root = tmp_path / "something_else"
    (root / "frames" / "100").mkdir(parents=True)
    for number in range(1, 5):
        (root / "frames" / "100" / f"{number:04d}.jpg").write_bytes(_jpeg(np.full((40, 60, 3), 90, np.uint8)))
    (root / "labels.json").write_text(json.dumps({"Dropping something into something": "0"}))
    (root / "validation.json").write_text(json.dumps([{"id": "100", "template": "Dropping [something] into "
                                                       "[something]", "placeholders": []}]))
    box = lambda x1, y1, x2, y2, category="cup": {"box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},  # noqa: E731
                                                 "category": category, "standard_category": "0000"}
    frames = [{"name": f"100/{n:04d}.jpg", "labels": [box(5, 5, 30, 20), box("nan", 5, 30, 20),
                                                      box(5, 5, "inf", 20), box(5, 5, 200, 20), box(-2, 0, 61, 40)]}
              for n in range(1, 5)]
    (root / "bounding_box_annotations.json").write_text(json.dumps({"100": frames}))
    return root


def test_something_else_nan_boxes_are_refused(something_else_folder, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("something-else", something_else_folder, "validation", ["layout"], tmp_path / "cache",
                          num_frames=4, crop_size=32, layout=LayoutConfig(follow_crop=False))
        item = ds[0]
    assert torch.isfinite(item["layout_boxes"]).all()
    assert item["layout_mask"].sum(-1).tolist() == [2, 2, 2, 2]  # the good box and the one clipped into the frame
    boxes = item["layout_boxes"][item["layout_mask"]]
    assert boxes.min() >= 0 and boxes.max() <= 1
    assert "video 100 frame 1: 3 box(es) refused" in caplog.text


# ------------------------------------------------------------------------------- segments past the end of a video
def test_segment_wholly_past_the_end_of_its_video(epic_copy, data_cache, tmp_path):
    """A segment after the end of its video (video_info duration) is an error naming it (skipped and logged with
    --skip_bad_samples), never silence and empty boxes."""
    path = epic_copy / "EPIC_100_validation.csv"
    path.write_text(path.read_text().replace("P01_01_2,P01,P01_01,00:00:00.17,00:00:00.13,00:00:00.40,5,12,",
                                             "P01_01_2,P01,P01_01,00:00:03.00,00:00:03.00,00:00:03.33,90,100,"))
    assert ",90,100," in path.read_text()
    for modality, file in (("audio", r"P01_01\.wav"), ("layout", r"P01_01\.pkl")):
        ds = load_dataset("epic-kitchens-100", epic_copy, "validation", [modality], data_cache, **SMALL)
        with pytest.raises(SampleDecodeError, match=rf"'P01_01_2'.*{file}.*frames 90\.\.100.*wholly past the end of "
                                                    r"video P01_01 \(1\.33 s\)"):
            ds[0]
        log = tmp_path / f"{modality}.jsonl"
        skipping = load_dataset("epic-kitchens-100", epic_copy, "validation", [modality], data_cache,
                                skip_bad_samples=True, skip_log_path=log, **SMALL)
        assert skipping[0]["segment_id"] == "P02_01_1"  # replaced by the next good segment, and logged
        assert json.loads(log.read_text().splitlines()[0])["sample_id"] == "P01_01_2"


def test_recording_or_detections_shorter_than_the_video_are_said(epic_copy, data_cache, caplog):
    """Inside the video but past the end of a short recording or detections file: silence / no boxes, with a
    warning naming the segment."""
    with wave.open(str(epic_copy / "P01" / "videos" / "P01_01.wav"), "wb") as wf:
        wf.setnchannels(1), wf.setsampwidth(2), wf.setframerate(8000)
        wf.writeframes(np.zeros(100, np.int16).tobytes())
    one_frame = [_message(1, [(0.1, 0.1, 0.4, 0.4, 0.9)])]
    write_video_detections(epic_copy / "P01" / "hand-objects" / "P01_01.pkl", one_frame)
    with caplog.at_level(logging.WARNING):
        audio = load_dataset("epic-kitchens-100", epic_copy, "validation", ["audio"], data_cache, **SMALL)[0]
        layout = load_dataset("epic-kitchens-100", epic_copy, "validation", ["layout"], data_cache, **SMALL)[0]
    assert audio["audio_values"].max() <= -99.0 and not layout["layout_mask"].any()
    assert "segment P01_01_2 (0.13-0.40 s) lies wholly past the end of the audio" in caplog.text
    assert "segment P01_01_2 (frames 5..12) lies wholly past the end of the detections" in caplog.text


def test_verb_noun_labels_name_the_sample_and_column_of_an_out_of_range_class():
    from mmkd_hf.data.builders.common import verb_noun_labels
    from mmkd_hf.data.errors import SampleDecodeError

    assert verb_noun_labels("P01_01_0", 2, 3, 8, 10) == {"verb": 2, "noun": 3, "action": 23}
    assert verb_noun_labels("P01_01_0", -1, -1, 8, 10) == {}  # unlabelled (test split)
    with pytest.raises(SampleDecodeError, match="P01_01_0.*verb_class 8 outside the 8 verb classes"):
        verb_noun_labels("P01_01_0", 8, 0, 8, 10)
    with pytest.raises(SampleDecodeError, match="noun 12 outside the 10 noun classes"):
        verb_noun_labels("P01_01_0", 0, 12, 8, 10, fields=("verb", "noun"))
