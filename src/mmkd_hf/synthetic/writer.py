"""Writing a mini-kitchens generation in the EPIC-KITCHENS-100 layout, and the public generation API.

``mmkd-hf make-mini-dataset --out DIR`` (:func:`ensure_mini_kitchens`) renders short clips of a hand manipulating
an object and writes them exactly as the official EPIC-KITCHENS-100 downloader + annotation repository would (so
the ordinary EPIC builder reads them back, no special path)::

    DIR/EPIC_100_train.csv, EPIC_100_validation.csv, EPIC_100_test_timestamps.csv
    DIR/EPIC_100_verb_classes.csv, EPIC_100_noun_classes.csv, EPIC_100_video_info.csv
    DIR/EPIC_100_unseen_participant_ids_validation.csv, EPIC_100_tail_verbs.csv, EPIC_100_tail_nouns.csv
    DIR/<P>/rgb_frames/<video>/frame_0000000001.jpg            (1-based, every RGB frame)
    DIR/<P>/flow_frames/<video>/{u,v}/frame_0000000001.jpg     (half the RGB rate, ``mmkd_hf.data.flow``)
    DIR/<P>/videos/<video>.wav                                 (16 kHz mono 16-bit PCM, whole video)
    DIR/<P>/hand-objects/<video>.pkl                           (pickled list of serialised protobuf
                                                               ``Detections``, element k = RGB frame k+1)
    DIR/mini_kitchens_gt_boxes.json                            (clean boxes in pixels, for the
                                                               Something-Else export; not an EPIC file)
    DIR/.complete                                              (JSON marker, written last)

Flow is computed on the camera's linear frames (before the low-light gain and noise), so motion stays visible in
low light. Between segments the camera holds the previous segment's last frame (2 frames), then the next one's
first frame, so every scene cut falls inside a gap and no flow frame of a segment spans it.

Splits (default): participants P01-P03 have 7 videos each (5 train, 2 validation); P04 has 2 videos, in
validation only (``EPIC_100_unseen_participant_ids_validation.csv``); one short unlabelled test video. Class
frequencies are long-tailed (Zipf); the tail CSVs list the classes outside the most frequent ones that hold 80 %
of the training instances.

Timestamps: ``HH:MM:SS.ff`` = frame / fps rounded to 0.01 s; ``start_frame``/``stop_frame`` are 1-based and
inclusive, at each video's own fps (videos alternate 25, 30 and 50 fps).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from mmkd_hf.data.builders import MINI_KITCHENS_FORMAT_VERSION, MINI_KITCHENS_MARKER, read_mini_kitchens_marker
from mmkd_hf.data.flow import compute_flow
from mmkd_hf.utils import ForeignFolderError, atomic_directory

from .audio import video_audio, write_wav
from .detections import write_detections
from .narration_noise import confuse_pairs
from .render import make_background, render_gap, render_segment
from .scene import (
    HOLD_PREVIOUS,
    NOUNS,
    VERBS,
    MiniKitchensConfig,
    Participant,
    VideoPlan,
    plan_dataset,
    segment_params,
    segment_trajectory,
)

FORMAT_VERSION = MINI_KITCHENS_FORMAT_VERSION  # bump (in mmkd_hf.data.builders) whenever the generated content changes
COMPLETE_MARKER = MINI_KITCHENS_MARKER
#: ground-truth boxes in pixels per video and RGB frame (``null`` between segments), for the
#: Something-Else export; not an EPIC file, ignored by the EPIC builder.
GT_BOXES_FILE = "mini_kitchens_gt_boxes.json"

#: named sizes of a generation: overrides of :class:`MiniKitchensConfig` (``default`` = its defaults); train.py's
#: ``--mini_kitchens_scale`` picks one.
MINI_KITCHENS_SCALES: dict[str, dict[str, Any]] = {
    "default": {},
    "tiny": {"videos_per_seen_participant": 2, "validation_videos_per_seen_participant": 1,
             "videos_per_unseen_participant": 1, "segments_per_video": 6, "height": 32, "width": 32,
             "min_segment_frames": 8, "max_segment_frames": 12},
}

EPIC_ANNOTATION_COLUMNS = (
    "narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
    "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
    "noun_class", "all_nouns", "all_noun_classes",
)
EPIC_TEST_COLUMNS = EPIC_ANNOTATION_COLUMNS[:8]


@contextmanager
def _opencv_single_threaded() -> Iterator[None]:
    """Run OpenCV on the calling thread only, then restore its thread count.

    Frames are tiny (the generator parallelises over videos instead), and an OpenCV thread pool started here
    would make a later forked process (a ``DataLoader`` worker) hang in ``cv2.setNumThreads``.
    """
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def read_marker(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``.complete`` marker of the generation in ``out_dir`` (seed, config, counts), or None."""
    return read_mini_kitchens_marker(out_dir)


def format_timestamp(seconds: float) -> str:
    """``HH:MM:SS.ff`` as in the EPIC-KITCHENS-100 annotation CSVs."""
    centis = int(round(seconds * 100))
    h, rem = divmod(centis, 360000)
    m, rem = divmod(rem, 6000)
    s, c = divmod(rem, 100)
    return f"{h:02d}:{m:02d}:{s:02d}.{c:02d}"


def _write_jpeg(path: Path, img: np.ndarray, quality: int) -> None:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV failure
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def _generate_video(plan: VideoPlan, part: Participant, cfg: MiniKitchensConfig, seed: int, root: Path, vidx: int) -> dict[str, Any]:
    """Render, encode and write every modality of one video. Returns per-video metadata."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2, vidx]))
    background = make_background(part, cfg, rng)
    frames: list[np.ndarray] = []
    fsrc: list[np.ndarray] = []
    geoms: list[dict[str, Any] | None] = []
    lows: list[tuple[bool, bool]] = []  # (low light, detector failure) per frame
    trajs = []
    rendered = []
    for seg in plan.segments:
        seg.params = segment_params(seg.verb, seg.noun, part, cfg, seg.num_frames, rng)
        traj = segment_trajectory(seg, cfg, rng)
        trajs.append(traj)
        rendered.append(render_segment(seg, traj, background, part, cfg, rng))
    # Between segments the camera keeps looking: the previous segment's last frame is held for
    # ``HOLD_PREVIOUS`` frames, then the next segment's first frame, so the scene cut falls inside the
    # gap and no flow frame touching a segment spans it (flow pairs are 2 RGB frames apart).
    previous: tuple[np.ndarray, dict[str, Any] | None, tuple[bool, bool], np.ndarray] | None = None
    for seg, gap, (seg_frames, seg_geoms, seg_fsrc) in zip(plan.segments, plan.gaps, rendered):
        low = (bool(seg.params["low_light"]), bool(seg.params["detector_failure"]))  # detector conditions
        n_prev = min(HOLD_PREVIOUS, gap - 1) if previous is not None else 0
        if previous is None:
            n_bg = max(gap - 1, 0)
            bg_frames = render_gap(background, cfg, part, n_bg, rng)
            frames += bg_frames
            fsrc += bg_frames
            geoms += [None] * n_bg
            lows += [(False, False)] * n_bg
            n_prev = 0
            n_next = gap - n_bg
        else:
            n_next = gap - n_prev
            frames += [previous[0]] * n_prev
            geoms += [previous[1]] * n_prev
            lows += [previous[2]] * n_prev
            fsrc += [previous[3]] * n_prev
        frames += [seg_frames[0]] * n_next
        fsrc += [seg_fsrc[0]] * n_next
        geoms += [seg_geoms[0]] * n_next
        lows += [low] * n_next
        assert len(frames) + 1 == seg.start_frame
        frames += seg_frames
        fsrc += seg_fsrc
        geoms += seg_geoms
        lows += [low] * seg.num_frames
        previous = (seg_frames[-1], seg_geoms[-1], low, seg_fsrc[-1])
    tail = plan.gaps[-1]
    if previous is not None:
        frames += [previous[0]] * tail
        fsrc += [previous[3]] * tail
        geoms += [previous[1]] * tail
        lows += [previous[2]] * tail
    assert len(fsrc) == len(frames)
    pid = part.pid
    rgb_dir = root / pid / "rgb_frames" / plan.video_id
    rgb_dir.mkdir(parents=True)
    for i, img in enumerate(frames, start=1):
        _write_jpeg(rgb_dir / f"frame_{i:010d}.jpg", img, cfg.jpeg_quality)
    # flow from the decoded JPEGs would add JPEG noise twice; EPIC computed flow from the video frames
    flow = compute_flow(fsrc, cfg.flow_bound)
    for comp in ("u", "v"):
        (root / pid / "flow_frames" / plan.video_id / comp).mkdir(parents=True)
    for k, (fu, fv) in enumerate(flow, start=1):
        _write_jpeg(root / pid / "flow_frames" / plan.video_id / "u" / f"frame_{k:010d}.jpg", fu, cfg.jpeg_quality)
        _write_jpeg(root / pid / "flow_frames" / plan.video_id / "v" / f"frame_{k:010d}.jpg", fv, cfg.jpeg_quality)
    audio = video_audio(len(frames), plan.fps, plan.segments, trajs, part, cfg.audio_sample_rate, rng)
    (root / pid / "videos").mkdir(parents=True, exist_ok=True)
    write_wav(root / pid / "videos" / f"{plan.video_id}.wav", audio, cfg.audio_sample_rate)
    (root / pid / "hand-objects").mkdir(parents=True, exist_ok=True)
    write_detections(root / pid / "hand-objects" / f"{plan.video_id}.pkl", plan.video_id, geoms, lows, cfg, rng)
    # ground-truth boxes (pixels) for the Something-Else export
    gt = [None if g is None else {"boxes": g["boxes"]} for g in geoms]
    return {"num_frames": len(frames), "gt": gt}


def _annotation_rows(plan: VideoPlan, part: Participant, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for seg in plan.segments:
        vkey, vinst, _, _ = VERBS[seg.verb]
        nkey = NOUNS[seg.noun][0]
        verb_word = vinst[int(rng.integers(len(vinst)))]
        start_s, stop_s = (seg.start_frame - 1) / plan.fps, seg.stop_frame / plan.fps
        rows.append({
            "narration_id": f"{plan.video_id}_{seg.index}",
            "participant_id": part.pid,
            "video_id": plan.video_id,
            "narration_timestamp": format_timestamp(start_s + 0.3 * (stop_s - start_s)) + "0",
            "start_timestamp": format_timestamp(start_s),
            "stop_timestamp": format_timestamp(stop_s),
            "start_frame": seg.start_frame,
            "stop_frame": seg.stop_frame,
            "narration": f"{verb_word.replace('-', ' ')} {nkey}",
            "verb": verb_word,
            "verb_class": seg.verb,
            "noun": nkey,
            "noun_class": seg.noun,
            "all_nouns": str([nkey]),
            "all_noun_classes": str([seg.noun]),
        })
    return rows


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _tail_classes(counts: np.ndarray, head_fraction: float = 0.8) -> list[int]:
    """Classes outside the most frequent ones that together hold ``head_fraction`` of the instances."""
    order = np.argsort(-counts, kind="stable")
    cum = np.cumsum(counts[order]) / max(counts.sum(), 1)
    head = set(order[: int(np.searchsorted(cum, head_fraction) + 1)].tolist())
    return sorted(int(c) for c in range(len(counts)) if c not in head)


def _config_fingerprint(cfg: MiniKitchensConfig, seed: int) -> dict[str, Any]:
    params = asdict(cfg)
    params["fps_cycle"] = list(cfg.fps_cycle)
    return {"format_version": FORMAT_VERSION, "seed": int(seed), "config": params}


def _generate_video_job(args: tuple) -> dict[str, Any]:
    return _generate_video(*args)


def _write_dataset(root: Path, cfg: MiniKitchensConfig, seed: int, workers: int = 1) -> dict[str, Any]:
    participants, videos = plan_dataset(cfg, seed)
    jobs = [(plan, participants[plan.participant], cfg, seed, root, vidx) for vidx, plan in enumerate(videos)]
    if workers > 1 and len(jobs) > 1:
        # every video has its own seed, so the result does not depend on the number of workers
        with ProcessPoolExecutor(max_workers=workers) as pool:
            metas = list(pool.map(_generate_video_job, jobs))
    else:
        metas = [_generate_video_job(job) for job in jobs]
    meta_rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
    video_info = []
    gts: dict[str, Any] = {}
    for plan, meta in zip(videos, metas):
        part = participants[plan.participant]
        gts[plan.video_id] = meta["gt"]
        rows[plan.split] += _annotation_rows(plan, part, meta_rng)
        video_info.append({
            "video_id": plan.video_id, "duration": f"{meta['num_frames'] / plan.fps:.6f}",
            "fps": f"{plan.fps:g}", "resolution": f"{cfg.width}x{cfg.height}",
        })
    # class frequencies (tail classes) of the true actions; then the training narrations get their noise
    verb_counts = np.bincount([r["verb_class"] for r in rows["train"]], minlength=len(VERBS))
    noun_counts = np.bincount([r["noun_class"] for r in rows["train"]], minlength=len(NOUNS))
    confused = confuse_pairs(rows["train"], {i: v[0] for i, v in enumerate(VERBS)}, cfg.narration_verb_noise, seed,
                             {i: n[0] for i, n in enumerate(NOUNS)}, cfg.narration_noun_noise)
    _write_csv(root / "EPIC_100_train.csv", EPIC_ANNOTATION_COLUMNS, rows["train"])
    _write_csv(root / "EPIC_100_validation.csv", EPIC_ANNOTATION_COLUMNS, rows["validation"])
    _write_csv(root / "EPIC_100_test_timestamps.csv", EPIC_TEST_COLUMNS, rows["test"])
    _write_csv(root / "EPIC_100_video_info.csv", ("video_id", "duration", "fps", "resolution"), video_info)
    _write_csv(root / "EPIC_100_verb_classes.csv", ("id", "key", "instances", "category"), [
        {"id": i, "key": v[0], "instances": str(list(v[1])), "category": v[2]} for i, v in enumerate(VERBS)
    ])
    _write_csv(root / "EPIC_100_noun_classes.csv", ("id", "key", "instances", "category"), [
        {"id": i, "key": n[0], "instances": str([n[0], f"{n[0]}:{n[2]}"]), "category": n[3]} for i, n in enumerate(NOUNS)
    ])
    (root / "EPIC_100_tail_verbs.csv").write_text("verb\n" + "".join(f"{c}\n" for c in _tail_classes(verb_counts)))
    (root / "EPIC_100_tail_nouns.csv").write_text("noun\n" + "".join(f"{c}\n" for c in _tail_classes(noun_counts)))
    unseen = [p.pid for p in participants[cfg.seen_participants:]]
    (root / "EPIC_100_unseen_participant_ids_validation.csv").write_text(
        "participant_id\n" + "".join(f"{p}\n" for p in unseen)
    )
    gt_json = {
        vid: [None if g is None else {k: [round(float(x), 3) for x in b] for k, b in g["boxes"].items()} for g in frames]
        for vid, frames in gts.items()
    }
    (root / GT_BOXES_FILE).write_text(json.dumps(gt_json, separators=(",", ":")), encoding="utf-8")
    return {
        "num_videos": len(videos),
        "segments": {k: len(v) for k, v in rows.items()},
        "participants": [p.pid for p in participants],
        "unseen_participants": unseen,
        "training_narrations_confused": {"verb": confused[0], "noun": confused[1]},
    }


def generation_request(marker: dict[str, Any]) -> tuple[int, MiniKitchensConfig]:
    """The ``(seed, config)`` a ``.complete`` marker asked for, in terms of the current generator.

    Fields the current :class:`MiniKitchensConfig` no longer has are dropped, new ones take their defaults
    and an unreadable config falls back to the defaults, so ``ensure_mini_kitchens(dir, *generation_request(m))``
    keeps an up-to-date generation and regenerates a stale one (older ``FORMAT_VERSION`` or parameters) at the
    same seed and size.
    """
    known = set(MiniKitchensConfig.__dataclass_fields__)
    stored = marker.get("config") if isinstance(marker.get("config"), dict) else {}
    params = {k: v for k, v in stored.items() if k in known}
    if isinstance(params.get("fps_cycle"), list):
        params["fps_cycle"] = tuple(params["fps_cycle"])
    try:
        config = MiniKitchensConfig(**params)
    except (TypeError, ValueError):
        config = MiniKitchensConfig()
    seed = marker.get("seed")
    return (int(seed) if isinstance(seed, int) else 0), config


def generate_mini_kitchens(
    out_dir: str | os.PathLike, seed: int = 0, config: MiniKitchensConfig | None = None, workers: int | None = None,
    **overrides: Any,
) -> Path:
    """Generate the dataset into ``out_dir`` (replacing a previous generation there). Returns ``out_dir``.

    The files are written into a temporary sibling directory that is renamed over ``out_dir`` at the
    end, with the ``.complete`` marker (seed, config, counts) written last. ``overrides`` replace fields
    of :class:`MiniKitchensConfig` (e.g. ``segments_per_video=4, height=32, width=32``). ``workers``
    processes render videos in parallel (default: up to 2 when there are more than 4 videos); the output
    is byte-identical whatever the number of workers.

    Raises:
        FileExistsError: ``out_dir`` exists, is not empty and is not a mini-kitchens generation.
    """
    out = Path(out_dir)
    cfg = config if config is not None else MiniKitchensConfig()
    if overrides:
        cfg = MiniKitchensConfig(**{**asdict(cfg), **overrides})
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and read_marker(out) is None:
        raise ForeignFolderError(
            f"{out}: refusing to replace a non-empty directory that is not a mini-kitchens generation "
            f"(no {COMPLETE_MARKER} marker); choose an empty or new --out"
        )
    started = time.perf_counter()
    # a crash leaves the previous generation (or nothing), never half a dataset
    with _opencv_single_threaded(), atomic_directory(out) as tmp:
        n_videos = cfg.seen_participants * cfg.videos_per_seen_participant + cfg.test_videos + (
            cfg.unseen_participants * cfg.videos_per_unseen_participant)
        if workers is None:
            workers = min(2, os.cpu_count() or 1) if n_videos > 4 else 1
        summary = _write_dataset(tmp, cfg, seed, workers=workers)
        marker = {**_config_fingerprint(cfg, seed), **summary, "generation_seconds": round(time.perf_counter() - started, 2)}
        (tmp / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return out


def describe_generation(seed: int, config: MiniKitchensConfig, format_version: Any = FORMAT_VERSION) -> str:
    """``seed 0, 32x32 frames, 6 segments per video, format 5``: what tells two generations apart, in words."""
    return (f"seed {seed}, {config.height}x{config.width} frames, {config.segments_per_video} segments per video, "
            f"narration noise {config.narration_verb_noise:g}/{config.narration_noun_noise:g} (verb/noun), "
            f"format {format_version}")


def ensure_mini_kitchens(
    out_dir: str | os.PathLike, seed: int = 0, config: MiniKitchensConfig | None = None, workers: int | None = None,
    *, replace_other_settings: bool = True, **overrides: Any,
) -> Path:
    """Return ``out_dir`` holding a complete generation for ``seed``/config, generating it if needed.

    A folder that is not empty and holds no generation is never written into (:class:`ForeignFolderError`). With
    ``replace_other_settings=False`` (train.py's prepare stage) a generation made with another seed or other
    settings is not replaced either: :class:`ForeignFolderError` names both settings; a folder without a
    generation marker but with content is returned untouched (the reader decides whether it is usable). Only a
    stale generation (an older format) of the same seed and settings is regenerated.
    """
    cfg = config if config is not None else MiniKitchensConfig()
    if overrides:
        cfg = MiniKitchensConfig(**{**asdict(cfg), **overrides})
    out = Path(out_dir)
    marker = read_marker(out)
    want = _config_fingerprint(cfg, seed)
    if marker is not None and all(marker.get(k) == v for k, v in want.items()):
        return out
    if not replace_other_settings:
        if marker is None and out.is_dir() and any(out.iterdir()):
            return out  # not a generation of this package: never regenerated
        if marker is not None:
            have_seed, have_cfg = generation_request(marker)
            have = _config_fingerprint(have_cfg, have_seed)
            if (have["seed"], have["config"]) != (want["seed"], want["config"]):
                raise ForeignFolderError(
                    f"{out} holds a mini-kitchens generation with other settings "
                    f"({describe_generation(have_seed, have_cfg, marker.get('format_version'))}; requested "
                    f"{describe_generation(seed, cfg)}); nothing was regenerated: choose another --data_dir (or "
                    f"the matching --mini_kitchens_scale), or regenerate it with `mmkd-hf make-mini-dataset --out {out} "
                    f"--force`"
                )
    return generate_mini_kitchens(out, seed=seed, config=cfg, workers=workers)


def fingerprint_digest(out_dir: str | os.PathLike) -> str:
    """SHA-256 over every file of a generation (relative path + bytes), marker excluded."""
    root = Path(out_dir)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()
