"""Shared test fixtures: the real data folder (../shared/data), a tiny synthetic EPIC-layout dataset and a tiny
mini-kitchens generation."""

from __future__ import annotations

import csv
import io
import wave
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (the scripts put src/ and benchmarks/ on sys.path themselves)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the repository, or skip the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not available")
    return SHARED_DATA


TINY_VERBS = ["take", "put", "open"]
TINY_NOUNS = ["cup", "plate", "knife", "door"]
TINY_VIDEOS = {  # video id -> (participant, number of RGB frames, fps, (H, W))
    "P01_01": ("P01", 40, 30.0, (48, 64)),
    "P02_01": ("P02", 24, 25.0, (48, 64)),
}
TINY_SEGMENTS = {  # split -> rows (narration_id, video, start, stop, verb, noun)
    "train": [("P01_01_0", "P01_01", 1, 20, 0, 1), ("P01_01_1", "P01_01", 15, 40, 1, 2), ("P02_01_0", "P02_01", 3, 24, 2, 3)],
    "validation": [("P01_01_2", "P01_01", 5, 12, 2, 0), ("P02_01_1", "P02_01", 10, 13, 0, 3)],
}


def _jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def tiny_rgb_frame(number: int, size: tuple[int, int]) -> np.ndarray:
    """Frame ``number``: left half dark, right half bright, green channel encodes the frame number."""
    h, w = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 30
    img[:, w // 2:, 0] = 220
    img[:, :, 1] = min(255, number * 5)
    img[:, :, 2] = 100
    return img


def write_tiny_epic(root: Path, with_modalities: bool = True) -> Path:
    """Write a tiny dataset in the EPIC-KITCHENS-100 layout (CSVs at the root, participant folders)."""
    from mmkd_hf.data.detections import Detections, write_video_detections

    root.mkdir(parents=True, exist_ok=True)

    def write_csv(name: str, header: list[str], rows: list[list]) -> None:
        with open(root / name, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)

    write_csv("EPIC_100_verb_classes.csv", ["id", "key", "instances", "category"],
              [[i, v, f"['{v}']", "c"] for i, v in enumerate(TINY_VERBS)])
    write_csv("EPIC_100_noun_classes.csv", ["id", "key", "instances", "category"],
              [[i, n, f"['{n}']", "c"] for i, n in enumerate(TINY_NOUNS)])
    write_csv("EPIC_100_video_info.csv", ["video_id", "duration", "fps", "resolution"],
              [[v, n / fps, fps, f"{s[1]}x{s[0]}"] for v, (p, n, fps, s) in TINY_VIDEOS.items()])
    write_csv("EPIC_100_unseen_participant_ids_validation.csv", ["participant_id"], [["P02"]])
    write_csv("EPIC_100_tail_verbs.csv", ["verb"], [[2]])
    write_csv("EPIC_100_tail_nouns.csv", ["noun"], [[3]])
    header = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
              "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
              "noun_class", "all_nouns", "all_noun_classes"]

    def ts(seconds: float) -> str:
        return f"00:00:{seconds:05.2f}"

    for split, rows in TINY_SEGMENTS.items():
        out = []
        for sid, video, start, stop, verb, noun in rows:
            p, _, fps, _ = TINY_VIDEOS[video]
            out.append([sid, p, video, ts(start / fps), ts((start - 1) / fps), ts(stop / fps), start, stop,
                        f"{TINY_VERBS[verb]} {TINY_NOUNS[noun]}", TINY_VERBS[verb], verb, TINY_NOUNS[noun], noun,
                        f"['{TINY_NOUNS[noun]}']", f"[{noun}]"])
        write_csv(f"EPIC_100_{split}.csv", header, out)
    if not with_modalities:
        return root
    for video, (p, n, fps, size) in TINY_VIDEOS.items():
        rgb = root / p / "rgb_frames" / video
        rgb.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            (rgb / f"frame_{i:010d}.jpg").write_bytes(_jpeg(tiny_rgb_frame(i, size)))
        for comp, value in (("u", 200), ("v", 128)):  # u: constant motion to the right; v: none
            d = root / p / "flow_frames" / video / comp
            d.mkdir(parents=True, exist_ok=True)
            for i in range(1, (n + 1) // 2 + 1):
                (d / f"frame_{i:010d}.jpg").write_bytes(_jpeg(np.full(size, value, np.uint8)))
        sr = 8000
        t = np.arange(int(n / fps * sr)) / sr
        tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
        (root / p / "videos").mkdir(parents=True, exist_ok=True)
        with wave.open(str(root / p / "videos" / f"{video}.wav"), "wb") as wf:
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(sr)
            wf.writeframes(tone.tobytes())
        messages = []
        for i in range(1, n + 1):
            m = Detections(video_id=video, frame_number=i)
            hand = m.hands.add(score=0.9, state=3, side=1)
            hand.bbox.left, hand.bbox.top, hand.bbox.right, hand.bbox.bottom = 0.6, 0.5, 0.9, 0.9
            obj = m.objects.add(score=0.8)
            obj.bbox.left, obj.bbox.top, obj.bbox.right, obj.bbox.bottom = 0.1, 0.1, 0.3, 0.4
            weak = m.objects.add(score=0.05)  # below the default threshold
            weak.bbox.left, weak.bbox.top, weak.bbox.right, weak.bbox.bottom = 0.0, 0.0, 0.5, 0.5
            messages.append(m)
        (root / p / "hand-objects").mkdir(parents=True, exist_ok=True)
        write_video_detections(root / p / "hand-objects" / f"{video}.pkl", messages)
    return root


@pytest.fixture(scope="session")
def tiny_epic(tmp_path_factory) -> Path:
    """A tiny EPIC-layout dataset (2 videos, 5 segments, 48x64 frames, flow, wav audio, detections)."""
    return write_tiny_epic(tmp_path_factory.mktemp("tiny_epic"))


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("datasets_cache")


#: a tiny mini-kitchens generation: one seen participant (1 training + 1 validation video), one unseen participant
#: (1 validation video), one test video; 4 segments per video of 8-12 frames at 32x32
MINI_KITCHENS_TINY = dict(
    seen_participants=1, videos_per_seen_participant=2, validation_videos_per_seen_participant=1,
    unseen_participants=1, videos_per_unseen_participant=1, test_videos=1, segments_per_video=4,
    min_segment_frames=8, max_segment_frames=12, height=32, width=32,
)


@pytest.fixture(scope="session")
def mini_kitchens_dir(tmp_path_factory) -> Path:
    """A tiny mini-kitchens generation (seed 3), generated explicitly once per session:
    ``load_dataset("mini-kitchens", data_dir=...)`` only reads it."""
    from mmkd_hf.synthetic import ensure_mini_kitchens

    return ensure_mini_kitchens(tmp_path_factory.mktemp("mini_kitchens") / "mini", seed=3, **MINI_KITCHENS_TINY)
