"""Something-Something v2 and Something-Else builders (real Something-Else frames and boxes)."""

import json
import os

import numpy as np
import pytest
import torch

from mmkd_hf.data import MultimodalCollator, build_metadata, load_dataset
from mmkd_hf.data.builders.something_else import fix_box

KNOWN = {"57082": "Dropping [something] into [something]", "13201": "Pretending to sprinkle air onto [something]"}


@pytest.fixture(scope="module")
def something_else_dir(shared_data, tmp_path_factory):
    real = shared_data / "something-else"
    root = tmp_path_factory.mktemp("something_else")
    os.symlink(real / "frames", root / "frames")
    os.symlink(real / "bounding_box_annotations.json", root / "bounding_box_annotations.json")
    os.symlink(real / "compositional_labels.json", root / "labels.json")
    ids = list(json.load(open(real / "bounding_box_annotations.json")))
    (root / "validation.json").write_text(json.dumps([{"id": k, "template": t, "placeholders": []} for k, t in KNOWN.items()]))
    (root / "test.json").write_text(json.dumps([{"id": i} for i in ids]))
    return root


def test_fix_box():
    out = fix_box(np.array([[50, 10, 20, 5], [-5, -5, 500, 300], [10, 10, 10, 10]]), height=240, width=320)
    assert out[0].tolist() == [20, 5, 50, 10]
    assert out[1].tolist() == [0, 0, 319, 239]
    assert out[2].tolist() == [10, 10, 11, 11]


def test_real_something_else_layout_and_rgb(something_else_dir, data_cache):
    splits = build_metadata("something-else", something_else_dir, data_cache)
    assert splits["test"].num_rows == 9 and splits["validation"].num_rows == 2
    labels = json.load(open(something_else_dir / "labels.json"))
    val = splits["validation"]
    assert val[0]["action"] == labels["Dropping something into something"]
    row = splits["test"].filter(lambda r: r["video_id"] == "151201")[0]
    assert row["annotated_frames"] == 23 and len(row["box_frame"]) > 0  # 23 annotated frames, 34 on disk
    ds = load_dataset("something-else", something_else_dir, "test", ["rgb", "layout"], data_cache,
                      num_frames=16, crop_size=64)
    batch = MultimodalCollator()([ds[i] for i in range(len(ds))])
    assert batch["pixel_values"].shape == (9, 16, 3, 64, 64)
    mask = batch["layout_mask"]
    assert batch["layout_boxes"].shape == (9, 16, 14, 4) and mask.sum() > 100
    boxes = batch["layout_boxes"][mask]
    assert boxes.min() >= 0 and boxes.max() <= 1 and (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert set(batch["layout_categories"][mask].unique().tolist()) == {1, 2}
    assert (batch["layout_scores"][mask] == 1.0).all() and (batch["layout_scores"][~mask] == 0).all()
    assert "labels" not in batch  # test split: ids only
    # frames past the annotated range (151201: frames 24..34) have no boxes
    i = batch["segment_id"].index("151201")
    assert not mask[i, -1].any() and mask[i, 0].any()


def test_boxes_normalised_by_frame_size_without_crop(something_else_dir, data_cache):
    from mmkd_hf.data import AugmentationConfig, LayoutConfig
    from mmkd_hf.data.sampling import uniform_segment_indices

    ds = load_dataset("something-else", something_else_dir, "validation", ["layout"], data_cache, num_frames=4,
                      layout=LayoutConfig(follow_crop=False), augmentation=AugmentationConfig(crop_size=64))
    item = ds[0]  # 57082: frames of 427 x 240
    length = len(list((something_else_dir / "frames" / "57082").glob("*.jpg")))
    number = int(uniform_segment_indices(length, 4, train=False)[0, 0]) + 1
    ann = json.load(open(something_else_dir / "bounding_box_annotations.json"))["57082"]
    frame = next(f for f in ann if f["name"] == f"57082/{number:04d}.jpg")
    expected = sorted(fix_box(np.array([[l["box2d"][c] for c in ("x1", "y1", "x2", "y2")] for l in frame["labels"]]),
                              240, 427)[:, 0] / 427)
    n = len(expected)
    assert item["layout_mask"][0].sum() == n
    assert sorted(item["layout_boxes"][0, :n, 0].tolist()) == pytest.approx(expected, abs=1e-5)


def test_ssv2_builder_with_frame_folders(shared_data, tmp_path, data_cache):
    real = shared_data / "something-else"
    os.symlink(real / "frames", tmp_path / "frames")
    labels = json.load(open(real / "compositional_labels.json"))
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps({k: str(v) for k, v in labels.items()}))
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps(
        [{"id": k, "label": "x", "template": t, "placeholders": ["a"]} for k, t in KNOWN.items()]))
    ds = load_dataset("something-something-v2", tmp_path, "validation", ["rgb"], data_cache, num_frames=8,
                      crop_size=48, num_clips=2, num_crops=3)
    assert ds.features["action"].num_classes == 174
    item = ds[1]
    assert item["segment_id"] == "13201" and item["pixel_values"].shape == (6, 8, 3, 48, 48)
    assert item["labels"]["action"] == labels["Pretending to sprinkle air onto something"]
    # left and right crops differ
    assert not torch.allclose(item["pixel_values"][0], item["pixel_values"][2])


def test_ssv2_webm_video(tmp_path, data_cache):
    av = pytest.importorskip("av")
    (tmp_path / "videos").mkdir()
    try:
        with av.open(str(tmp_path / "videos" / "5.webm"), "w") as container:
            stream = container.add_stream("libvpx-vp9", rate=12)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for i in range(10):
                img = np.full((48, 64, 3), i * 20, np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except Exception as exc:  # encoder not built in
        pytest.skip(f"cannot write webm here: {exc}")
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps({"Holding something": "0", "Moving something": "1"}))
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps([{"id": "5", "template": "Moving [something]"}]))
    ds = load_dataset("something-something-v2", tmp_path, "train", ["rgb"], data_cache, num_frames=4, crop_size=32)
    item = ds[0]
    assert item["pixel_values"].shape == (4, 3, 32, 32) and item["labels"] == {"action": 1}
