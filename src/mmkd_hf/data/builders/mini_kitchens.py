"""The embedded benchmark "mini-kitchens": a small synthetic egocentric dataset in the EPIC-KITCHENS-100 layout.

``mmkd-hf make-mini-dataset --out DIR --seed S`` renders short clips of a hand manipulating an object
and writes them exactly as the official EPIC-KITCHENS-100 downloader + annotation repository would
(so the ordinary EPIC builder reads them back, no special path)::

    DIR/EPIC_100_train.csv, EPIC_100_validation.csv, EPIC_100_test_timestamps.csv
    DIR/EPIC_100_verb_classes.csv, EPIC_100_noun_classes.csv, EPIC_100_video_info.csv
    DIR/EPIC_100_unseen_participant_ids_validation.csv, EPIC_100_tail_verbs.csv, EPIC_100_tail_nouns.csv
    DIR/<P>/rgb_frames/<video>/frame_0000000001.jpg            (1-based, every RGB frame)
    DIR/<P>/flow_frames/<video>/{u,v}/frame_0000000001.jpg     (half the RGB rate, see below)
    DIR/<P>/videos/<video>.wav                                 (16 kHz mono 16-bit PCM, whole video)
    DIR/<P>/hand-objects/<video>.pkl                           (pickled list of serialised protobuf
                                                               ``Detections``, element k = RGB frame k+1)
    DIR/mini_kitchens_gt_boxes.json                            (clean boxes in pixels, for the
                                                               Something-Else export; not an EPIC file)
    DIR/.complete                                              (JSON marker, written last)

Content. Noun = object class = shape x colour (5 shapes x 10 saturated hues; the two nouns of a shape have
opposite hues, nouns of neighbouring hues have different shapes); verb = what the hand does (take, put,
push, pull, open, close, shake, stir). Four participants differ in background, handedness, room noise and
in how often each nuisance occurs; one of them appears only in validation ("unseen"). Objects and motions
are large (an object spans ~30 % of the frame side, motions 15-20 %), so a tiny Video Swin trained from
scratch at 48 px learns a good part of verb and noun from RGB. Static cues give the verb *pair* (a pale lid
only for open/close, a pale spoon for stir, the object raised and jittering for shake; a large work surface
under the object matches the verb pair in 85 % of the clips), the temporal direction tells the verbs of a pair
apart (up/down, right/left with the hand behind or leading, lid off/on; a fading motion smear trails moving
objects): subtle in RGB from few labels, plain in flow and boxes.

About 60 % of the clips are "clean"; each of the others has one nuisance that hides the RGB cues of a
different subset, resolved by another modality:

* ``low_light`` (10-16 %): dark, noisy, washed-out colours: RGB loses noun and motion; optical flow (OpenCV
  Farneback on the camera's linear frames, before the low-light gain and noise) still shows the motion,
  boxes and audio are unaffected;
* ``occlusion`` (~13 %): a large distractor in front of the object for most of the clip: RGB and flow lose
  the object; audio (verb sounds, the object's hum) and boxes resolve it;
* ``shake`` (~12 %): heavy camera shake with motion blur: RGB and flow are swamped by camera motion; boxes
  (hand-object trajectories, contact) and audio resolve it.

* audio carries verb-specific sound events (grasp click, put-down thud, scraping, lid pop/clack, rattle,
  stirring clinks) with a resonance at the noun's pitch, and while the object is handled it hums at the
  noun's pitch, pulsing at a per-shape rate (a local spectro-temporal pattern, learnable without absolute
  frequency position); room noise, distractor sounds and silent clips (15-20 %); push and pull sound the same;
* hand-object detections give clean trajectories and contact states, and the object box's aspect ratio
  hints the shape; true boxes score >= 0.6, false positives < 0.5 (kept, as in the official files); in
  15 % of the clips the detector struggles (many misses, large jitter, contact errors).

Flow index mapping: flow frame ``k`` (1-based) holds the motion from RGB frame ``a = b - 2`` to
``b = min(2k + 1, N)`` (``a`` clamped to >= 1), i.e. flow frame ``ceil(rgb / 2)`` covers RGB frame
``rgb``; a video of N RGB frames has ``ceil(N / 2)`` flow frames. Each component is a grayscale JPEG:
``value = clip(round(128 + d * 128 / B), 0, 255)`` for a displacement ``d`` in pixels and bound
``B = flow_bound`` (128 = no motion), as EPIC's TV-L1 export quantises a bounded range.

Between segments the camera holds the previous segment's last frame (2 frames), then the next one's
first frame, so every scene cut falls inside a gap and no flow frame of a segment spans it.

Splits (default): participants P01-P03 have 7 videos each (5 train, 2 validation); P04 has 2 videos, in
validation only (``EPIC_100_unseen_participant_ids_validation.csv``); one short unlabelled test video.
Class frequencies are long-tailed (Zipf); the tail CSVs list the classes outside the most frequent ones
that hold 80 % of the training instances. ``mmkd-hf make-mini-dataset --export-ssv2 DIR2`` also writes
the clips in the Something-Something v2 / Something-Else formats (one template per verb).

Timestamps: ``HH:MM:SS.ff`` = frame / fps rounded to 0.01 s; ``start_frame``/``stop_frame`` are 1-based
and inclusive, at each video's own fps (videos alternate 25, 30 and 50 fps).
"""

from __future__ import annotations

import argparse
import colorsys
import csv
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import sys
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from mmkd_hf.utils import atomic_directory, atomic_write_json

FORMAT_VERSION = 5  # bump whenever the generated content changes: cached generations are then redone
COMPLETE_MARKER = ".complete"
HOLD_PREVIOUS = 2  # frames of a gap that hold the previous segment's last frame
#: ground-truth boxes in pixels per video and RGB frame (``null`` between segments), for the
#: Something-Else export; not an EPIC file, ignored by the EPIC builder.
GT_BOXES_FILE = "mini_kitchens_gt_boxes.json"

# --------------------------------------------------------------------------------------------------
# Label spaces
# --------------------------------------------------------------------------------------------------

#: verb id -> (key, EPIC-style instances, category, SSv2-style template)
VERBS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("take", ("take", "pick-up", "grab"), "retrieve", "Picking [something] up"),
    ("put", ("put", "put-down", "place"), "leave", "Putting [something] down"),
    ("push", ("push", "slide"), "move", "Pushing [something] from left to right"),
    ("pull", ("pull", "drag"), "move", "Pulling [something] from right to left"),
    ("open", ("open", "uncover"), "access", "Opening [something]"),
    ("close", ("close", "cover"), "block", "Closing [something]"),
    ("shake", ("shake", "toss"), "move", "Shaking [something]"),
    ("stir", ("stir", "mix"), "mix", "Stirring [something]"),
)

SHAPES = ("circle", "square", "tall", "wide", "triangle")
#: colour name -> hue in [0, 1) (saturated, bright objects on a greyish worktop)
COLOURS: dict[str, float] = {
    "red": 0.0, "orange": 0.1, "lime": 0.2, "green": 0.3, "teal": 0.4,
    "cyan": 0.5, "blue": 0.6, "violet": 0.7, "magenta": 0.8, "pink": 0.9,
}

#: noun id -> (key, shape, colour, category). The two nouns of a shape have opposite hues and nouns with
#: neighbouring hues have different shapes, so colour alone (under +-0.1 hue jitter) and shape alone are
#: each ambiguous, together decisive.
NOUNS: tuple[tuple[str, str, str, str], ...] = (
    ("plate", "circle", "red", "crockery"),
    ("bowl", "circle", "cyan", "crockery"),
    ("box", "square", "orange", "containers"),
    ("sponge", "square", "blue", "cleaning equipment"),
    ("bottle", "tall", "lime", "containers"),
    ("jar", "tall", "violet", "containers"),
    ("board", "wide", "green", "cookware"),
    ("tray", "wide", "magenta", "cookware"),
    ("cheese", "triangle", "teal", "dairy"),
    ("pizza", "triangle", "pink", "baked goods"),
)
#: where each verb pair usually happens (a large, unsaturated work surface under the object): take/put on a
#: wooden board, push/pull on a slate mat, open/close on a white tray, shake/stir over a black hob. The
#: surface matches the verb pair in SURFACE_MATCH_P of the clips (context hints the pair, not the verb).
SURFACES: tuple[tuple[float, float, float], ...] = ((0.72, 0.56, 0.36), (0.2, 0.28, 0.4), (0.93, 0.93, 0.9), (0.07, 0.07, 0.08))
SURFACE_MATCH_P = 0.85

#: motion smear behind moving objects: (frames back, opacity)
TRAIL: tuple[tuple[float, float], ...] = tuple((float(b), round(0.6 * (1.0 - (b - 1) / 8.0), 3)) for b in range(8, 0, -1))

#: clip-level nuisances (each hides a different cue; "clean" clips show everything in RGB)
NUISANCES = ("clean", "low_light", "occlusion", "shake")

EPIC_ANNOTATION_COLUMNS = (
    "narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
    "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
    "noun_class", "all_nouns", "all_noun_classes",
)
EPIC_TEST_COLUMNS = EPIC_ANNOTATION_COLUMNS[:8]

# Official hand-object enums (data-formats.md).
NO_CONTACT, SELF_CONTACT, ANOTHER_PERSON, PORTABLE_OBJECT, STATIONARY_OBJECT = range(5)
LEFT, RIGHT = 0, 1


@dataclass(frozen=True)
class MiniKitchensConfig:
    """Size and rendering parameters. Everything not here is drawn from the seed."""

    seen_participants: int = 3
    videos_per_seen_participant: int = 7
    validation_videos_per_seen_participant: int = 2
    unseen_participants: int = 1
    videos_per_unseen_participant: int = 2
    test_videos: int = 1
    segments_per_video: int = 20
    min_segment_frames: int = 16
    max_segment_frames: int = 28
    min_gap_frames: int = 3
    max_gap_frames: int = 6
    height: int = 64
    width: int = 64
    render_scale: int = 2
    audio_sample_rate: int = 16000
    flow_bound: float = 4.0
    jpeg_quality: int = 90
    fps_cycle: tuple[float, ...] = (30.0, 25.0, 30.0, 50.0, 25.0)

    def __post_init__(self) -> None:
        if self.min_segment_frames < 4 or self.max_segment_frames < self.min_segment_frames:
            raise ValueError(
                f"segment frames: expected 4 <= min <= max, given min={self.min_segment_frames}, "
                f"max={self.max_segment_frames}"
            )
        if self.validation_videos_per_seen_participant >= self.videos_per_seen_participant:
            raise ValueError(
                "validation_videos_per_seen_participant must leave at least one training video per "
                f"participant: given {self.validation_videos_per_seen_participant} of "
                f"{self.videos_per_seen_participant}"
            )
        if self.min_gap_frames < HOLD_PREVIOUS + 1 or self.max_gap_frames < self.min_gap_frames:
            raise ValueError(
                f"gap frames: expected {HOLD_PREVIOUS + 1} <= min <= max, given min={self.min_gap_frames}, "
                f"max={self.max_gap_frames}"
            )
        if self.height < 16 or self.width < 16:
            raise ValueError(f"frame size: expected >= 16x16, given {self.width}x{self.height}")


# --------------------------------------------------------------------------------------------------
# Detections protobuf (the official schema lives in mmkd_hf.data.detections)
# --------------------------------------------------------------------------------------------------


def detections_message_class() -> Any:
    """The official ``Detections`` protobuf class (one schema in the codebase: ``mmkd_hf.data.detections``)."""
    from mmkd_hf.data.detections import Detections

    return Detections


# --------------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------------


@dataclass
class Participant:
    pid: str
    background: np.ndarray  # base RGB in [0, 1]
    tile_colour: np.ndarray
    tile_period: float
    skin: np.ndarray
    sleeve: np.ndarray
    left_handed_p: float
    low_light_p: float
    shake_amplitude: float
    clutter: int
    noise_level: float
    hum_hz: float
    silent_p: float


@dataclass
class Segment:
    index: int
    verb: int
    noun: int
    start_frame: int  # 1-based inclusive
    num_frames: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def stop_frame(self) -> int:
        return self.start_frame + self.num_frames - 1


def _class_probabilities(n: int, exponent: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return p / p.sum()


def _make_participant(pid: str, index: int, rng: np.random.Generator) -> Participant:
    return Participant(
        pid=pid,
        background=rng.uniform(0.38, 0.55) + rng.uniform(-0.06, 0.06, 3),  # greyish worktop
        tile_colour=rng.uniform(0.3, 0.6) + rng.uniform(-0.05, 0.05, 3),
        tile_period=float(rng.uniform(6, 14)),
        skin=np.array([0.85, 0.65, 0.5]) * rng.uniform(0.6, 1.1),
        sleeve=rng.uniform(0.05, 0.9, 3),
        left_handed_p=0.85 if index == 2 else 0.1,
        low_light_p=(0.1, 0.16, 0.12, 0.14)[index % 4],  # clip-level nuisance rates
        shake_amplitude=(0.8, 1.0, 1.2, 1.1)[index % 4],
        clutter=int(rng.integers(2, 6)),
        noise_level=float(rng.uniform(0.004, 0.015)),
        hum_hz=float(rng.choice([50.0, 60.0, 100.0, 120.0])),
        silent_p=(0.15, 0.2, 0.2, 0.2)[index % 4],
    )


# --------------------------------------------------------------------------------------------------
# Motion model: object / lid / hand positions per frame for each verb
# --------------------------------------------------------------------------------------------------


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _segment_trajectory(seg: Segment, cfg: MiniKitchensConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame geometry in output-pixel units: object centre/scale, lid offset, hand centre, contact."""
    T = seg.num_frames
    H, W = cfg.height, cfg.width
    u = H / 64.0  # unit: one pixel of the 64x64 design
    s = np.linspace(0.0, 1.0, T)
    verb = VERBS[seg.verb][0]
    p = seg.params
    side = p["side_sign"]
    t0 = rng.uniform(0.15, 0.35)  # start of the manipulation
    t1 = rng.uniform(0.65, 0.85)  # end of the manipulation
    ramp = _smoothstep((s - t0) / (t1 - t0))
    ox = np.full(T, p["cx"])
    oy = np.full(T, p["cy"])
    scale = np.ones(T)
    lid = np.zeros((T, 2))  # lid offset from its closed position
    contact = np.full(T, PORTABLE_OBJECT)
    size = p["size"]
    grip = np.array([side * size * 0.7, -size * 0.2])
    stick = np.zeros(T, dtype=bool)
    events: list[tuple[str, float]] = []  # (kind, relative time in [0, 1])

    if verb in ("take", "put"):
        lift = rng.uniform(14, 18) * u
        if verb == "take":
            ph = ramp
            contact = np.where(s < t0, NO_CONTACT, PORTABLE_OBJECT)
            events.append(("click", t0))
        else:
            ph = 1.0 - ramp
            contact = np.where(s > t1, NO_CONTACT, PORTABLE_OBJECT)
            events.append(("thud", t1))
        oy = oy - lift * ph
        scale = 1.0 + 0.3 * ph
        hx, hy = ox + grip[0] * scale, oy + grip[1] * scale
        # approach (take) or retreat (put) phase: the hand is away from the object
        away = _smoothstep((t0 - s) / t0) if verb == "take" else _smoothstep((s - t1) / (1 - t1))
        hx = hx + side * away * 14 * u
        hy = hy + away * 18 * u
    elif verb in ("push", "pull"):
        dist = rng.uniform(16, 22) * u
        direction = 1.0 if verb == "push" else -1.0
        ox = ox + direction * dist * (ramp - 0.5)
        oy = oy + rng.uniform(-1.5, 1.5) * u * ramp
        # push: the hand behind the object (left edge); pull: the hand leads, gripping the right edge
        hx, hy = ox - direction * size * 1.0, oy + size * 0.1
        contact = np.full(T, PORTABLE_OBJECT)
        events.append(("scrape", t0))
        events.append(("scrape_end", t1))
    elif verb in ("open", "close"):
        lift = np.array([rng.uniform(6, 9) * u, -rng.uniform(11, 15) * u])
        ph = ramp if verb == "open" else 1.0 - ramp
        lid = ph[:, None] * lift[None, :]
        hx = ox + lid[:, 0] + side * size * 0.4
        hy = oy - size - 1.5 * u + lid[:, 1]
        approach = _smoothstep((t0 - s) / t0)
        hx = hx + side * approach * 14 * u
        hy = hy + approach * 18 * u
        contact = np.where(s < t0 * 0.8, NO_CONTACT, PORTABLE_OBJECT)
        events.append(("pop" if verb == "open" else "clack", t0 if verb == "open" else t1))
    elif verb == "shake":
        period = rng.uniform(4, 7)
        amp = rng.uniform(4.0, 6.0) * u
        frames = np.arange(T)
        env = _smoothstep((s - t0 * 0.5) / 0.15) * _smoothstep((1.0 - s) / 0.15)
        oy = oy - 8 * u * env - amp * env * np.sin(2 * np.pi * frames / period)
        ox = ox + 0.5 * amp * env * np.sin(np.pi * frames / period)
        scale = 1.0 + 0.1 * env
        hx, hy = ox + grip[0], oy + grip[1]
        for k in np.arange(period / 2, T, period / 2):
            if env[min(int(k), T - 1)] > 0.3:
                events.append(("rattle", k / max(T - 1, 1)))
    elif verb == "stir":
        period = rng.uniform(6, 10)
        radius = rng.uniform(4.0, 6.0) * u
        frames = np.arange(T)
        env = _smoothstep((s - t0) / 0.1)
        ang = 2 * np.pi * frames / period * side
        hx = ox + size * 0.3 + radius * np.cos(ang) * env
        hy = oy - size * 0.9 + radius * np.sin(ang) * env * 0.6
        approach = _smoothstep((t0 - s) / t0)
        hx = hx + side * approach * 14 * u
        hy = hy + approach * 18 * u
        stick = s >= t0 * 0.8
        contact = np.where(stick, PORTABLE_OBJECT, NO_CONTACT)
        for k in np.arange(t0 * (T - 1), T, period):
            events.append(("clink", k / max(T - 1, 1)))
    else:  # pragma: no cover - VERBS is fixed
        raise ValueError(f"unknown verb {verb!r}")
    events.append(("hold", t0))  # the object hums while handled (see _segment_audio)
    events.append(("hold_end", t1))
    return {
        "ox": ox, "oy": oy, "scale": scale, "lid": lid, "hx": np.asarray(hx, float), "hy": np.asarray(hy, float),
        "contact": np.asarray(contact), "stick": stick, "events": events,  # type: ignore[dict-item]
    }


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def _pts(points: np.ndarray, k: float) -> np.ndarray:
    return np.round(np.asarray(points) * k * _ONE).astype(np.int32)


def _shape_half_extent(shape: str, size: float) -> tuple[float, float]:
    return {
        "circle": (size, size),
        "square": (size * 0.9, size * 0.9),
        "tall": (size * 0.55, size * 1.15),
        "wide": (size * 1.25, size * 0.55),
        "triangle": (size * 1.1, size * 0.85),
    }[shape]


def _draw_shape(mask: np.ndarray, shape: str, cx: float, cy: float, hw: float, hh: float, k: float) -> None:
    if shape == "circle":
        cv2.ellipse(mask, (int(round(cx * k * _ONE)), int(round(cy * k * _ONE))),
                    (int(round(hw * k * _ONE)), int(round(hh * k * _ONE))), 0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
    elif shape == "triangle":
        pts = np.array([[cx - hw, cy + hh], [cx + hw, cy + hh], [cx, cy - hh]])
        cv2.fillPoly(mask, [_pts(pts, k)], 255, cv2.LINE_AA, _SHIFT)
    else:
        pts = np.array([[cx - hw, cy - hh], [cx + hw, cy - hh], [cx + hw, cy + hh], [cx - hw, cy + hh]])
        cv2.fillPoly(mask, [_pts(pts, k)], 255, cv2.LINE_AA, _SHIFT)


def _blend(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray | float) -> None:
    """Alpha-blend ``colour`` (a constant or an image like ``canvas``) into ``canvas`` where ``mask`` is set."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    alpha = mask[y:y + h, x:x + w, None].astype(np.float32) * np.float32(1.0 / 255.0)
    roi = canvas[y:y + h, x:x + w]
    src = colour[y:y + h, x:x + w] if isinstance(colour, np.ndarray) and colour.ndim == 3 else colour
    roi += alpha * (src - roi)


def _make_background(part: Participant, cfg: MiniKitchensConfig, rng: np.random.Generator) -> np.ndarray:
    k = cfg.render_scale
    H, W = cfg.height * k, cfg.width * k
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) / k
    period = part.tile_period * cfg.height / 64.0
    grout = ((np.mod(xx, period) < 0.8) | (np.mod(yy, period) < 0.8)).astype(np.float32)
    base = part.background * rng.uniform(0.85, 1.15, 3)
    img = np.empty((H, W, 3), np.float32)
    img[:] = base.astype(np.float32)
    img = img * (1 - 0.25 * grout[..., None]) + 0.25 * grout[..., None] * part.tile_colour.astype(np.float32)
    # vertical lighting gradient
    img *= (0.85 + 0.3 * (yy / (H / k)))[..., None]
    # static clutter (distractor objects) near the borders
    for _ in range(part.clutter):
        mask = np.zeros((H, W), np.uint8)
        shape = ("circle", "wide", "tall")[int(rng.integers(3))]  # dots and bars, smaller than the objects
        sz = rng.uniform(1.5, 3.5) * cfg.height / 64.0
        edge = rng.integers(4)
        cx = rng.uniform(0, cfg.width) if edge < 2 else (rng.uniform(0, 10) if edge == 2 else rng.uniform(cfg.width - 10, cfg.width))
        cy = rng.uniform(0, 12) if edge == 0 else (rng.uniform(cfg.height - 12, cfg.height) if edge == 1 else rng.uniform(0, cfg.height))
        hw, hh = _shape_half_extent(shape, sz)
        _draw_shape(mask, shape, cx, cy, hw, hh, k)
        _blend(img, mask, rng.uniform(0.1, 0.9, 3).astype(np.float32))
    return np.clip(img, 0, 1)


def _motion_blur(img: np.ndarray, vx: float, vy: float) -> np.ndarray:
    length = math.hypot(vx, vy)
    if length < 1.5:
        return img
    n = int(min(9, round(length))) | 1
    kernel = np.zeros((n, n), np.float32)
    c = n // 2
    ang = math.atan2(vy, vx)
    for t in np.linspace(-c, c, 2 * n):
        kernel[int(round(c + t * math.sin(ang))), int(round(c + t * math.cos(ang)))] = 1.0
    kernel /= kernel.sum()
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def _render_segment(
    seg: Segment, traj: dict[str, np.ndarray], background: np.ndarray, part: Participant,
    cfg: MiniKitchensConfig, rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[dict[str, Any]], list[np.ndarray]]:
    """Render the RGB frames (uint8 HxWx3, RGB order), the ground-truth geometry of one segment and the
    optical-flow source frames (the same frames before low-light gain, sensor noise and colour loss: the
    flow is computed on the camera's linear signal, so motion stays visible in low light)."""
    k = cfg.render_scale
    Hk, Wk = cfg.height * k, cfg.width * k
    u = cfg.height / 64.0
    p = seg.params
    T = seg.num_frames
    shape = NOUNS[seg.noun][1]
    colour = p["colour"].astype(np.float32)
    yy, xx = np.mgrid[0:Hk, 0:Wk].astype(np.float32) / k
    # camera shake: smooth random translation (sum of two sinusoids + a drift) per frame
    amp = part.shake_amplitude * u * p["shake_gain"]
    f = np.arange(T)
    shake = np.stack([
        amp * (np.sin(2 * np.pi * f / p["shake_periods"][0] + p["shake_phases"][0])
               + 0.5 * np.sin(2 * np.pi * f / p["shake_periods"][1] + p["shake_phases"][1])),
        amp * (np.sin(2 * np.pi * f / p["shake_periods"][2] + p["shake_phases"][2])
               + 0.5 * np.sin(2 * np.pi * f / p["shake_periods"][3] + p["shake_phases"][3])),
    ], axis=1) + np.outer(f / max(T - 1, 1), p["drift"] * u)
    frames: list[np.ndarray] = []
    flow_sources: list[np.ndarray] = []  # the frames before low-light gain, noise and colour loss
    geoms: list[dict[str, Any]] = []
    hw0, hh0 = _shape_half_extent(shape, p["size"])
    lid_h = 0.6 * hh0
    occ = p.get("occluder")
    scene = background.copy()  # the work surface under the object (static within the segment)
    smask = np.zeros((Hk, Wk), np.uint8)
    sw, sh = p["surface_half"]
    _draw_shape(smask, "square", p["cx"], p["cy"] + 0.3 * p["size"], sw, sh, k)
    _blend(scene, smask, p["surface"].astype(np.float32))
    for t in range(T):
        img = scene.copy()
        cx, cy, sc = float(traj["ox"][t]), float(traj["oy"][t]), float(traj["scale"][t])
        hw, hh = hw0 * sc, hh0 * sc
        # motion smear: the object's recent positions fade behind it (exposure persistence), so each frame
        # shows which way the object is moving (the direction of push/pull, take/put, lid off/on)
        mask = np.zeros((Hk, Wk), np.uint8)
        for back, alpha in TRAIL:
            tb = max(t - back, 0.0)
            px, py = np.interp(tb, f, traj["ox"]), np.interp(tb, f, traj["oy"])
            if abs(px - cx) + abs(py - cy) < 0.3 * u:
                continue
            psc = float(np.interp(tb, f, traj["scale"]))
            mask[:] = 0
            _draw_shape(mask, shape, float(px), float(py), hw0 * psc, hh0 * psc, k)
            _blend(img, (mask * alpha).astype(np.uint8), colour)
        if p["has_lid"]:
            for back, alpha in TRAIL:
                tb = max(t - back, 0.0)
                lxb = float(np.interp(tb, f, traj["ox"]) + np.interp(tb, f, traj["lid"][:, 0]))
                lyb = float(np.interp(tb, f, traj["oy"]) - hh0 * np.interp(tb, f, traj["scale"]) - lid_h * 0.5
                            + np.interp(tb, f, traj["lid"][:, 1]))
                mask[:] = 0
                _draw_shape(mask, "square", lxb, lyb, hw0 * 1.05, lid_h * 0.5, k)
                _blend(img, (mask * alpha).astype(np.uint8), p["lid_colour"].astype(np.float32))
        # object body: a dark rim (crisp silhouette) and the noun's colour
        mask[:] = 0
        _draw_shape(mask, shape, cx, cy, hw + 0.8 * u, hh + 0.8 * u, k)
        _blend(img, mask, colour * 0.25)
        mask[:] = 0
        _draw_shape(mask, shape, cx, cy, hw, hh, k)
        _blend(img, mask, colour)
        boxes = {"object": (cx - hw, cy - hh, cx + hw, cy + hh)}
        if p["has_lid"]:
            lx, ly = cx + traj["lid"][t, 0], cy - hh - lid_h * 0.5 + traj["lid"][t, 1]
            lmask = np.zeros((Hk, Wk), np.uint8)
            _draw_shape(lmask, "square", lx, ly, hw * 1.05, lid_h * 0.5, k)
            _blend(img, lmask, p["lid_colour"].astype(np.float32))
            boxes["lid"] = (lx - hw * 1.05, ly - lid_h * 0.5, lx + hw * 1.05, ly + lid_h * 0.5)
        hx, hy = float(traj["hx"][t]), float(traj["hy"][t])
        if traj["stick"][t]:
            # a pale spoon from above the hand into the object (stir's static cue)
            cv2.line(img, tuple(int(v) for v in _pts([hx, hy - 7 * u], k)), tuple(int(v) for v in _pts([cx, cy - 0.1 * hh], k)),
                     (0.95, 0.95, 0.88), max(1, int(3.0 * k * u)), cv2.LINE_AA, _SHIFT)
        # arm from the bottom edge, then the hand
        arm_x = cfg.width * (0.8 if p["side_sign"] > 0 else 0.2)
        arm = np.array([[hx - 3.5 * u, hy], [hx + 3.5 * u, hy], [arm_x + 5 * u, cfg.height + 6 * u], [arm_x - 5 * u, cfg.height + 6 * u]])
        amask = np.zeros((Hk, Wk), np.uint8)
        cv2.fillPoly(amask, [_pts(arm, k)], 255, cv2.LINE_AA, _SHIFT)
        _blend(img, amask, part.sleeve.astype(np.float32))
        hmask = np.zeros((Hk, Wk), np.uint8)
        hand_rx, hand_ry = 6.0 * u, 4.5 * u
        cv2.ellipse(hmask, tuple(int(v) for v in _pts([hx, hy], k)), tuple(int(v) for v in _pts([hand_rx, hand_ry], k)),
                    0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
        _blend(img, hmask, part.skin.astype(np.float32))
        boxes["hand"] = (hx - hand_rx, hy - hand_ry, hx + hand_rx, hy + hand_ry)
        # foreground occluder (a distractor passing over part of the scene)
        if occ is not None and occ["t0"] <= t <= occ["t1"]:
            prog = (t - occ["t0"]) / max(occ["t1"] - occ["t0"], 1)
            ocx = occ["x0"] + (occ["x1"] - occ["x0"]) * prog
            omask = np.zeros((Hk, Wk), np.uint8)
            _draw_shape(omask, occ["shape"], ocx, occ["y"], occ["size"], occ["size"] * 0.8, k)
            _blend(img, omask, occ["colour"].astype(np.float32))
        # camera: translation (shake), motion blur from the shake velocity, lighting, sensor noise
        dx, dy = shake[t]
        M = np.array([[1, 0, dx * k], [0, 1, dy * k]], np.float32)
        img = cv2.warpAffine(img, M, (Wk, Hk), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if t > 0:
            v = (shake[t] - shake[t - 1]) * k * p["blur_gain"]
            img = _motion_blur(img, float(v[0]), float(v[1]))
        img = cv2.resize(img, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA)
        flow_sources.append(np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8))
        img = img * p["brightness"] * p["cast"] + p["noise_sigma"] * p["noise"][t]
        if p["desaturate"] > 0:  # low light: colours wash out towards grey
            grey = img.mean(axis=2, keepdims=True)
            img = img + p["desaturate"] * (grey - img)
        frames.append(np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8))
        geoms.append({
            "boxes": {name: (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy) for name, b in boxes.items()},
            "contact": int(traj["contact"][t]),
            "side": RIGHT if p["side_sign"] > 0 else LEFT,
            "hand_centre": (hx + dx, hy + dy),
            "object_centre": (cx + dx, cy + dy),
        })
    return frames, geoms, flow_sources


def _render_gap(background: np.ndarray, cfg: MiniKitchensConfig, part: Participant, num: int, rng: np.random.Generator) -> list[np.ndarray]:
    img = cv2.resize(background, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA) * rng.uniform(0.6, 1.0)
    out = []
    for _ in range(num):
        noisy = img + 0.01 * rng.standard_normal(img.shape).astype(np.float32)
        out.append(np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8))
    return out


# --------------------------------------------------------------------------------------------------
# Optical flow
# --------------------------------------------------------------------------------------------------


def flow_pair_for(flow_index: int, num_rgb_frames: int) -> tuple[int, int]:
    """RGB frames (1-based) whose motion flow frame ``flow_index`` (1-based) stores: ``(a, b)``."""
    b = min(2 * flow_index + 1, num_rgb_frames)
    a = max(1, b - 2)
    return a, b


def encode_flow_component(d: np.ndarray, bound: float) -> np.ndarray:
    """Quantise a displacement map (pixels) to uint8 with 128 = no motion and +-bound -> 0 / 255."""
    return np.clip(np.rint(128.0 + d * (128.0 / bound)), 0, 255).astype(np.uint8)


def decode_flow_component(q: np.ndarray, bound: float) -> np.ndarray:
    """Inverse of :func:`encode_flow_component` (up to quantisation)."""
    return (q.astype(np.float32) - 128.0) * (bound / 128.0)


def compute_flow(frames: Sequence[np.ndarray], bound: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Farneback optical flow at half the RGB rate, quantised to (u, v) uint8 images."""
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    n = len(grays)
    out = []
    for k in range(1, (n + 1) // 2 + 1):
        a, b = flow_pair_for(k, n)
        if a == b or np.array_equal(grays[a - 1], grays[b - 1]):  # Farneback is not exactly 0 on equal frames
            flow = np.zeros(grays[0].shape + (2,), np.float32)
        else:
            flow = cv2.calcOpticalFlowFarneback(grays[a - 1], grays[b - 1], None, 0.5, 2, 7, 3, 5, 1.1, 0)
        out.append((encode_flow_component(flow[..., 0], bound), encode_flow_component(flow[..., 1], bound)))
    return out


# --------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------

#: pulse rate (Hz) of the hum an object makes while handled, per shape
TREMOLO_HZ: dict[str, float] = {"circle": 3.0, "square": 5.0, "tall": 8.0, "wide": 12.0, "triangle": 18.0}


def material_hz(noun: int) -> float:
    """Ringing pitch of a noun's material: a ladder 320 Hz x 1.28^noun (neighbours overlap with the jitter)."""
    return 320.0 * 1.28 ** noun


def _ring(sr: int, hz: float, dur: float, decay: float) -> np.ndarray:
    t = np.arange(int(dur * sr)) / sr
    return np.sin(2 * np.pi * hz * t) * np.exp(-t / decay)


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec[(freqs < lo) | (freqs > hi)] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.abs(x).max() + 1e-9)


def _add(buf: np.ndarray, start: int, x: np.ndarray) -> None:
    if start >= len(buf):
        return
    start = max(start, 0)
    end = min(len(buf), start + len(x))
    buf[start:end] += x[: end - start]


def _sound_event(kind: str, noun: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A verb-specific transient followed by the object's resonance (pitch = :func:`material_hz`)."""
    mat = material_hz(noun) * rng.uniform(0.96, 1.04)
    resonance = 0.5 * _ring(sr, mat, 0.35, rng.uniform(0.08, 0.14))
    if kind == "click":
        n = int(0.01 * sr)
        transient = 0.6 * _band_noise(rng, n, sr, 2000, 7000) * np.hanning(n)
    elif kind == "thud":
        transient = 0.9 * _ring(sr, rng.uniform(70, 110), 0.15, 0.05)
    elif kind == "pop":
        n = int(0.03 * sr)
        transient = 0.7 * _band_noise(rng, n, sr, 4000, 7500) * np.hanning(n)
    elif kind == "clack":
        one = 0.6 * _ring(sr, rng.uniform(900, 1200), 0.03, 0.008)
        transient = np.concatenate([one, np.zeros(int(0.02 * sr)), one])
    elif kind == "rattle":
        n = int(0.025 * sr)
        transient = 0.5 * _band_noise(rng, n, sr, 3000, 7000) * np.hanning(n)
        resonance = resonance[: int(0.05 * sr)] * 0.6
    elif kind == "clink":
        transient = 0.2 * _ring(sr, rng.uniform(4000, 5000), 0.08, 0.02)
        resonance = resonance[: int(0.1 * sr)]
    else:
        raise ValueError(f"unknown sound event {kind!r}")
    out = np.zeros(max(len(transient), len(resonance)))
    out[: len(transient)] += transient
    out[: len(resonance)] += resonance
    return out


def _segment_audio(
    buf: np.ndarray, seg: Segment, traj_events: list[tuple[str, float]], fps: float, sr: int,
    rng: np.random.Generator,
) -> None:
    if seg.params["silent"]:
        return
    material = seg.noun
    gain = seg.params["audio_gain"]
    t_start = (seg.start_frame - 1) / fps
    dur = seg.num_frames / fps
    scrape_from = None
    hold_from = None
    for kind, rel in traj_events:
        at = t_start + rel * dur
        if kind == "hold":
            hold_from = at
            continue
        if kind == "hold_end":
            if hold_from is not None:  # the material's hum, pulsing at the shape's rate (a local pattern)
                n = max(1, int((at - hold_from) * sr))
                tt = np.arange(n) / sr
                mat = material_hz(material) * rng.uniform(0.98, 1.02)
                pulse = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * TREMOLO_HZ[NOUNS[material][1]] * tt + rng.uniform(0, 6.3)))
                tone = np.sin(2 * np.pi * mat * tt) + 0.5 * np.sin(4 * np.pi * mat * tt)
                _add(buf, int(hold_from * sr), gain * 0.22 * tone * pulse * np.hanning(n) ** 0.25)
            continue
        if kind == "scrape":
            scrape_from = at
            continue
        if kind == "scrape_end":
            if scrape_from is None:
                continue
            n = max(1, int((at - scrape_from) * sr))
            env = np.hanning(n) ** 0.5 * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(8, 14) * np.arange(n) / sr))
            mat = material_hz(material)
            x = (0.2 * _band_noise(rng, n, sr, 800, 2500) + 0.15 * _band_noise(rng, n, sr, 0.85 * mat, 1.15 * mat)) * env
            _add(buf, int(scrape_from * sr), gain * x)
            continue
        _add(buf, int(at * sr), gain * _sound_event(kind, material, sr, rng))


def _video_audio(
    num_frames: int, fps: float, segments: list[Segment], trajs: list[dict[str, Any]], part: Participant,
    sr: int, rng: np.random.Generator,
) -> np.ndarray:
    n = int(math.ceil(num_frames / fps * sr))
    t = np.arange(n) / sr
    buf = part.noise_level * rng.standard_normal(n) + 0.004 * np.sin(2 * np.pi * part.hum_hz * t)
    for seg, traj in zip(segments, trajs):
        _segment_audio(buf, seg, traj["events"], fps, sr, rng)
        if seg.params["distractor_sound"]:  # a sound unrelated to the action (door, tap, voice-like)
            kind = ["click", "thud", "pop", "clack", "rattle", "clink"][int(rng.integers(6))]
            at = (seg.start_frame - 1) / fps + rng.uniform(0, seg.num_frames / fps)
            material = int(rng.integers(len(NOUNS)))
            _add(buf, int(at * sr), 0.7 * _sound_event(kind, material, sr, rng))
    return np.clip(buf, -1.0, 1.0)


def write_wav(path: Path, samples: np.ndarray, sr: int) -> None:
    """Write mono 16-bit PCM with the standard library's ``wave`` module."""
    pcm = np.clip(np.rint(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


# --------------------------------------------------------------------------------------------------
# Hand-object detections
# --------------------------------------------------------------------------------------------------


def _frac_box(box: tuple[float, float, float, float], W: int, H: int) -> tuple[float, float, float, float] | None:
    x1, y1, x2, y2 = max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(W)), min(box[3], float(H))
    if x2 - x1 < 0.5 or y2 - y1 < 0.5:
        return None
    return x1 / W, y1 / H, x2 / W, y2 / H


def _frame_detections(
    msg_cls: Any, video_id: str, frame_number: int, geom: dict[str, Any] | None, low_light: bool,
    cfg: MiniKitchensConfig, rng: np.random.Generator, failure: bool = False,
) -> bytes:
    """One frame's ``Detections``: true hands/objects score >= 0.6 (kept by the usual 0.5 thresholds), false
    positives score < 0.5. ``failure`` (a clip where the detector struggles): many misses, large jitter."""
    W, H = cfg.width, cfg.height
    det = msg_cls(video_id=video_id, frame_number=frame_number)
    jitter = (3.5 if failure else 0.8) * W / 64.0

    def noisy(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        d = rng.normal(0, jitter, 4)
        return box[0] + d[0], box[1] + d[1], box[2] + d[2], box[3] + d[3]

    miss = 0.45 if failure else (0.12 if low_light else 0.05)
    if geom is not None:
        hand_box = _frac_box(noisy(geom["boxes"]["hand"]), W, H)
        if hand_box is not None and rng.random() > miss:
            h = det.hands.add()
            h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom = hand_box
            h.score = float(np.clip(rng.normal(0.75 if low_light else 0.92, 0.06), 0.6, 0.999))
            state = geom["contact"]
            if rng.random() < (0.3 if failure else 0.08):  # contact-state classifier errors
                state = int(rng.choice([NO_CONTACT, PORTABLE_OBJECT, STATIONARY_OBJECT]))
            h.state = state
            h.side = geom["side"] if rng.random() > 0.05 else 1 - geom["side"]
            if state != NO_CONTACT:
                h.object_offset.x = float((geom["object_centre"][0] - geom["hand_centre"][0]) / W)
                h.object_offset.y = float((geom["object_centre"][1] - geom["hand_centre"][1]) / H)
        for name in ("object", "lid"):
            if name in geom["boxes"] and rng.random() > miss:
                box = _frac_box(noisy(geom["boxes"][name]), W, H)
                if box is not None:
                    o = det.objects.add()
                    o.bbox.left, o.bbox.top, o.bbox.right, o.bbox.bottom = box
                    o.score = float(np.clip(rng.normal(0.72 if low_light else 0.85, 0.08), 0.6, 0.999))
    # low-score false positives (the official files keep objects >= 0.01 and hands >= 0.1)
    for _ in range(int(rng.poisson(2.5 if failure else 1.2))):
        cx, cy, bw, bh = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3)
        o = det.objects.add()
        o.bbox.left, o.bbox.top = max(0.0, cx - bw / 2), max(0.0, cy - bh / 2)
        o.bbox.right, o.bbox.bottom = min(1.0, cx + bw / 2), min(1.0, cy + bh / 2)
        o.score = float(rng.uniform(0.01, 0.35))
    if rng.random() < 0.1:
        cx, cy = rng.uniform(0.1, 0.9), rng.uniform(0.4, 1.0)
        h = det.hands.add()
        h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom = max(0.0, cx - 0.07), max(0.0, cy - 0.06), min(1.0, cx + 0.07), min(1.0, cy + 0.06)
        h.score = float(rng.uniform(0.1, 0.4))
        h.state = NO_CONTACT
        h.side = int(rng.integers(2))
    return det.SerializeToString(deterministic=True)


# --------------------------------------------------------------------------------------------------
# Dataset plan and writers
# --------------------------------------------------------------------------------------------------


@dataclass
class VideoPlan:
    video_id: str
    participant: int
    split: str  # train / validation / test
    fps: float
    segments: list[Segment]
    gaps: list[int]  # gap before each segment, then one trailing gap

    @property
    def num_frames(self) -> int:
        return sum(s.num_frames for s in self.segments) + sum(self.gaps)


def _segment_params(verb: int, noun: int, part: Participant, cfg: MiniKitchensConfig, T: int, rng: np.random.Generator) -> dict[str, Any]:
    u = cfg.height / 64.0
    # one nuisance per clip at most: "clean" clips show verb and noun plainly in RGB; each nuisance hides the
    # RGB cues of a different subset, resolved by another modality (flow in low light, audio and boxes
    # under occlusion, boxes and audio under heavy shake / blur)
    p_nuisance = np.array([part.low_light_p, 0.13, 0.12 * part.shake_amplitude])
    weights = np.concatenate([[max(0.0, 1.0 - p_nuisance.sum())], p_nuisance])
    nuisance = NUISANCES[int(rng.choice(len(NUISANCES), p=weights / weights.sum()))]
    low_light = nuisance == "low_light"
    left = rng.random() < part.left_handed_p
    shape = NOUNS[noun][1]
    size = rng.uniform(10.0, 12.5) * u * (0.85 if shape in ("wide", "tall") else 1.0)
    hue = (COLOURS[NOUNS[noun][2]] + rng.normal(0.0, 0.015)) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 0.95), rng.uniform(0.8, 0.97)))
    shaky = nuisance == "shake"
    pair = verb // 2
    surface = pair if rng.random() < SURFACE_MATCH_P else int(rng.choice([i for i in range(len(SURFACES)) if i != pair]))
    p: dict[str, Any] = {
        "nuisance": nuisance,
        "low_light": low_light,
        "side_sign": -1.0 if left else 1.0,
        "cx": rng.uniform(0.42, 0.58) * cfg.width,
        "cy": rng.uniform(0.55, 0.64) * cfg.height,
        "size": size,
        "colour": colour,
        "surface": np.array(SURFACES[surface]) * rng.uniform(0.92, 1.08),
        "surface_half": (rng.uniform(20, 24) * u, rng.uniform(12, 15) * u),
        "lid_colour": rng.uniform(0.85, 0.97) + rng.uniform(-0.03, 0.03, 3),  # a pale lid
        "has_lid": VERBS[verb][0] in ("open", "close") or rng.random() < 0.05,
        "brightness": rng.uniform(0.14, 0.22) if low_light else rng.uniform(0.85, 1.1),
        "desaturate": rng.uniform(0.6, 0.85) if low_light else 0.0,
        "cast": rng.uniform(0.95, 1.05, 3).astype(np.float32),
        "noise_sigma": rng.uniform(0.035, 0.05) if low_light else rng.uniform(0.005, 0.012),
        "shake_gain": rng.uniform(3.0, 4.5) if shaky else rng.uniform(0.1, 0.3),
        "shake_periods": rng.uniform(3, 7, 4) if shaky else rng.uniform(8, 17, 4),
        "shake_phases": rng.uniform(0, 2 * np.pi, 4),
        "drift": rng.normal(0, 4.0 if shaky else 0.5, 2),
        "blur_gain": rng.uniform(2.0, 3.0) if shaky else 0.5,
        "silent": bool(rng.random() < part.silent_p),
        "audio_gain": rng.uniform(0.6, 1.0),
        "distractor_sound": bool(rng.random() < 0.2),
        "detector_failure": bool(rng.random() < 0.15),
        "noise": rng.standard_normal((T, cfg.height, cfg.width, 3), dtype=np.float32),
    }
    if nuisance == "occlusion":  # a large distractor in front of the object for most of the clip
        p["occluder"] = {
            "t0": int(rng.integers(0, max(1, T // 6))), "t1": int(rng.integers(T - max(1, T // 6), T + 1)),
            "x0": p["cx"] + rng.uniform(-6, 6) * u, "x1": p["cx"] + rng.uniform(-6, 6) * u,
            "y": p["cy"] - rng.uniform(2, 8) * u, "size": rng.uniform(15, 19) * u,
            "shape": SHAPES[int(rng.integers(len(SHAPES)))], "colour": rng.uniform(0.05, 0.9, 3),
        }
    return p


def _plan(cfg: MiniKitchensConfig, seed: int) -> tuple[list[Participant], list[VideoPlan]]:
    root = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    n_part = cfg.seen_participants + cfg.unseen_participants
    participants = [_make_participant(f"P{i + 1:02d}", i, root) for i in range(n_part)]
    verb_p = _class_probabilities(len(VERBS), 0.3)
    noun_p = _class_probabilities(len(NOUNS), 0.5)
    videos: list[VideoPlan] = []
    layout: list[tuple[int, str]] = []
    for pi in range(cfg.seen_participants):
        n_val = cfg.validation_videos_per_seen_participant
        for vi in range(cfg.videos_per_seen_participant):
            layout.append((pi, "validation" if vi >= cfg.videos_per_seen_participant - n_val else "train"))
    for pi in range(cfg.seen_participants, n_part):
        layout += [(pi, "validation")] * cfg.videos_per_unseen_participant
    for ti in range(cfg.test_videos):
        layout.append((ti % max(cfg.seen_participants, 1), "test"))
    per_part_count = [0] * n_part
    for vidx, (pi, split) in enumerate(layout):
        per_part_count[pi] += 1
        vid = f"{participants[pi].pid}_{per_part_count[pi]:02d}"
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, vidx]))
        n_seg = cfg.segments_per_video if split != "test" else max(2, cfg.segments_per_video // 4)
        segments, gaps = [], []
        frame = 1
        for si in range(n_seg):
            gap = int(rng.integers(cfg.min_gap_frames, cfg.max_gap_frames + 1))
            gaps.append(gap)
            frame += gap
            T = int(rng.integers(cfg.min_segment_frames, cfg.max_segment_frames + 1))
            verb = int(rng.choice(len(VERBS), p=verb_p))
            noun = int(rng.choice(len(NOUNS), p=noun_p))
            segments.append(Segment(si, verb, noun, frame, T))
            frame += T
        gaps.append(int(rng.integers(cfg.min_gap_frames, cfg.max_gap_frames + 1)))
        videos.append(VideoPlan(vid, pi, split, float(cfg.fps_cycle[vidx % len(cfg.fps_cycle)]), segments, gaps))
    return participants, videos


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
    background = _make_background(part, cfg, rng)
    frames: list[np.ndarray] = []
    fsrc: list[np.ndarray] = []
    geoms: list[dict[str, Any] | None] = []
    lows: list[tuple[bool, bool]] = []  # (low light, detector failure) per frame
    trajs = []
    rendered = []
    for seg in plan.segments:
        seg.params = _segment_params(seg.verb, seg.noun, part, cfg, seg.num_frames, rng)
        traj = _segment_trajectory(seg, cfg, rng)
        trajs.append(traj)
        rendered.append(_render_segment(seg, traj, background, part, cfg, rng))
    # Between segments the camera keeps looking: the previous segment's last frame is held for
    # ``HOLD_PREVIOUS`` frames, then the next segment's first frame, so the scene cut falls inside the
    # gap and no flow frame touching a segment spans it (flow pairs are 2 RGB frames apart).
    previous: tuple[np.ndarray, dict[str, Any] | None, tuple[bool, bool], np.ndarray] | None = None
    for seg, gap, (seg_frames, seg_geoms, seg_fsrc) in zip(plan.segments, plan.gaps, rendered):
        low = (bool(seg.params["low_light"]), bool(seg.params["detector_failure"]))  # detector conditions
        n_prev = min(HOLD_PREVIOUS, gap - 1) if previous is not None else 0
        if previous is None:
            n_bg = max(gap - 1, 0)
            bg_frames = _render_gap(background, cfg, part, n_bg, rng)
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
    audio = _video_audio(len(frames), plan.fps, plan.segments, trajs, part, cfg.audio_sample_rate, rng)
    (root / pid / "videos").mkdir(parents=True, exist_ok=True)
    write_wav(root / pid / "videos" / f"{plan.video_id}.wav", audio, cfg.audio_sample_rate)
    msg_cls = detections_message_class()
    dets = [
        _frame_detections(msg_cls, plan.video_id, i, g, low, cfg, rng, fail)
        for i, (g, (low, fail)) in enumerate(zip(geoms, lows), start=1)
    ]
    (root / pid / "hand-objects").mkdir(parents=True, exist_ok=True)
    with open(root / pid / "hand-objects" / f"{plan.video_id}.pkl", "wb") as fh:
        pickle.dump(dets, fh, protocol=4)
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
    participants, videos = _plan(cfg, seed)
    jobs = [(plan, participants[plan.participant], cfg, seed, root, vidx) for vidx, plan in enumerate(videos)]
    if workers > 1 and len(jobs) > 1:
        # every video has its own seed, so the result does not depend on the number of workers
        from concurrent.futures import ProcessPoolExecutor

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
    _write_csv(root / "EPIC_100_train.csv", EPIC_ANNOTATION_COLUMNS, rows["train"])
    _write_csv(root / "EPIC_100_validation.csv", EPIC_ANNOTATION_COLUMNS, rows["validation"])
    _write_csv(root / "EPIC_100_test_timestamps.csv", EPIC_TEST_COLUMNS, rows["test"])
    _write_csv(root / "EPIC_100_video_info.csv", ("video_id", "duration", "fps", "resolution"), video_info)
    verb_counts = np.bincount([r["verb_class"] for r in rows["train"]], minlength=len(VERBS))
    noun_counts = np.bincount([r["noun_class"] for r in rows["train"]], minlength=len(NOUNS))
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
    }


# --------------------------------------------------------------------------------------------------
# SSv2 / Something-Else export
# --------------------------------------------------------------------------------------------------


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def export_ssv2(epic_root: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Export the mini-kitchens clips in the Something-Something v2 + Something-Else formats.

    Writes ``<id>/NNNN.jpg`` frame folders (1-based, 4 digits), ``something-something-v2-{train,validation}.json``,
    ``something-something-v2-labels.json`` (one template per verb), ``bounding_box_annotations.json``
    (ground-truth boxes in pixels from ``mini_kitchens_gt_boxes.json``: hand, object and lid) and the
    Something-Else compositional split files under ``dataset_splits/compositional/``; ``id_map.json``
    maps each SSv2 id to its EPIC ``narration_id``. Returns ``out_dir``.
    """
    epic_root, out_dir = Path(epic_root), Path(out_dir)
    gt_path = epic_root / GT_BOXES_FILE
    if not gt_path.is_file():
        raise FileNotFoundError(f"{gt_path}: ground-truth boxes missing; is {epic_root} a mini-kitchens generation?")
    gt_boxes = json.loads(gt_path.read_text(encoding="utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {r["video_id"]: r for r in _read_csv_rows(epic_root / "EPIC_100_video_info.csv")}
    labels = {VERBS[i][3].replace("[", "").replace("]", ""): str(i) for i in range(len(VERBS))}
    entries: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    boxes_json: dict[str, Any] = {}
    id_map: dict[str, str] = {}
    next_id = 1
    for split in ("train", "validation"):
        for row in _read_csv_rows(epic_root / f"EPIC_100_{split}.csv"):
            vid = str(next_id)
            next_id += 1
            id_map[vid] = row["narration_id"]
            verb, noun = int(row["verb_class"]), row["noun"]
            template = VERBS[verb][3]
            entries[split].append({
                "id": vid, "label": template.replace("[something]", noun), "template": template,
                "placeholders": [noun],
            })
            res = info[row["video_id"]]["resolution"]
            width, height = (int(v) for v in res.split("x"))
            src = epic_root / row["participant_id"] / "rgb_frames" / row["video_id"]
            dst = out_dir / vid
            dst.mkdir(exist_ok=True)
            frames = []
            for j, fno in enumerate(range(int(row["start_frame"]), int(row["stop_frame"]) + 1), start=1):
                shutil.copyfile(src / f"frame_{fno:010d}.jpg", dst / f"{j:04d}.jpg")
                labels_ = []
                geom = gt_boxes[row["video_id"]][fno - 1] or {}
                for name, (x1, y1, x2, y2) in geom.items():
                    cat = "hand" if name == "hand" else (noun if name == "object" else f"{noun} lid")
                    std = "hand" if name == "hand" else ("0000" if name == "object" else "0001")
                    labels_.append({
                        "box2d": {"x1": float(max(0.0, x1)), "y1": float(max(0.0, y1)),
                                  "x2": float(min(width, x2)), "y2": float(min(height, y2))},
                        "gt_annotation": "object hand" if name == "hand" else f"object {std[-1]}",
                        "category": cat, "standard_category": std,
                    })
                frames.append({
                    "name": f"{vid}/{j:04d}.jpg", "labels": labels_, "gt_placeholders": [noun],
                    "nr_instances": len(labels_),
                })
            boxes_json[vid] = frames
    atomic_write_json(out_dir / "something-something-v2-labels.json", labels)
    for split, items in entries.items():
        atomic_write_json(out_dir / f"something-something-v2-{split}.json", items)
    comp = out_dir / "dataset_splits" / "compositional"
    comp.mkdir(parents=True, exist_ok=True)
    atomic_write_json(comp / "labels.json", {k: int(v) for k, v in labels.items()})
    for split, items in entries.items():
        atomic_write_json(comp / f"{split}.json", [dict(e, new_placeholdes=e["placeholders"]) for e in items])
    atomic_write_json(out_dir / "bounding_box_annotations.json", boxes_json, indent=None)
    atomic_write_json(out_dir / "id_map.json", id_map)
    return out_dir


def load_detections_pickle(path: str | os.PathLike) -> list[bytes]:
    """Read an official hand-object ``.pkl`` with the package's restricted unpickler (a list of bytes only)."""
    from mmkd_hf.data.detections import load_detection_list

    return load_detection_list(path)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def read_marker(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(out_dir) / COMPLETE_MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


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
    if out.exists() and any(out.iterdir()) and read_marker(out) is None:
        raise FileExistsError(
            f"{out}: refusing to replace a non-empty directory that is not a mini-kitchens generation "
            f"(no {COMPLETE_MARKER} marker); choose an empty or new --out"
        )
    started = time.perf_counter()
    with atomic_directory(out) as tmp:  # a crash leaves the previous generation (or nothing), never half a dataset
        n_videos = cfg.seen_participants * cfg.videos_per_seen_participant + cfg.test_videos + (
            cfg.unseen_participants * cfg.videos_per_unseen_participant)
        if workers is None:
            workers = min(2, os.cpu_count() or 1) if n_videos > 4 else 1
        summary = _write_dataset(tmp, cfg, seed, workers=workers)
        marker = {**_config_fingerprint(cfg, seed), **summary, "generation_seconds": round(time.perf_counter() - started, 2)}
        (tmp / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return out


def ensure_mini_kitchens(
    out_dir: str | os.PathLike, seed: int = 0, config: MiniKitchensConfig | None = None, workers: int | None = None,
    **overrides: Any,
) -> Path:
    """Return ``out_dir`` holding a complete generation for ``seed``/config, generating it if needed."""
    cfg = config if config is not None else MiniKitchensConfig()
    if overrides:
        cfg = MiniKitchensConfig(**{**asdict(cfg), **overrides})
    marker = read_marker(out_dir)
    want = _config_fingerprint(cfg, seed)
    if marker is not None and all(marker.get(k) == v for k, v in want.items()):
        return Path(out_dir)
    return generate_mini_kitchens(out_dir, seed=seed, config=cfg, workers=workers)


def fingerprint_digest(out_dir: str | os.PathLike) -> str:
    """SHA-256 over every file of a generation (relative path + bytes), marker excluded."""
    root = Path(out_dir)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    """``mmkd-hf make-mini-dataset``: write mini-kitchens (EPIC-KITCHENS-100 layout) and optionally report."""
    ap = argparse.ArgumentParser(prog="mmkd-hf make-mini-dataset", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created; a previous generation is replaced)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="regenerate even when a complete generation exists")
    ap.add_argument("--export-ssv2", metavar="DIR2", default=None, help="also write the SSv2/Something-Else export here")
    ap.add_argument("--report", action="store_true", help="train a tiny model per modality and print report.json")
    ap.add_argument("--report-backend", choices=("proxy", "package"), default="proxy",
                    help="proxy: fast plain-torch models; package: Video Swin / STLT through the data pipeline")
    ap.add_argument("--report-epochs", type=int, default=None,
                    help="training epochs of each report model (default: 40 proxy, 24 package = the main job's teachers)")
    ap.add_argument("--segments-per-video", type=int, default=None)
    ap.add_argument("--size", type=int, default=None, help="frame height = width in pixels")
    args = ap.parse_args(list(argv) if argv is not None else None)
    overrides: dict[str, Any] = {}
    if args.segments_per_video is not None:
        overrides["segments_per_video"] = args.segments_per_video
    if args.size is not None:
        overrides["height"] = overrides["width"] = args.size
    started = time.perf_counter()
    if args.force:
        out = generate_mini_kitchens(args.out, seed=args.seed, **overrides)
    else:
        out = ensure_mini_kitchens(args.out, seed=args.seed, **overrides)
    marker = read_marker(out) or {}
    print(f"mini-kitchens at {out}: {marker.get('segments')} segments over {marker.get('num_videos')} videos "
          f"(generated in {marker.get('generation_seconds')} s; this call {time.perf_counter() - started:.1f} s)")
    if args.export_ssv2:
        export_ssv2(out, args.export_ssv2)
        print(f"SSv2/Something-Else export at {args.export_ssv2}")
    if args.report:
        from mmkd_hf.data.builders.mini_kitchens_report import run_report

        run_report(out, backend=args.report_backend, seed=args.seed, epochs=args.report_epochs)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
