"""What a mini-kitchens clip shows: label spaces, participants, per-clip parameters and the motion of each verb.

Noun = object class = shape x colour (5 shapes x 10 saturated hues; the two nouns of a shape have opposite hues,
nouns of neighbouring hues have different shapes); verb = what the hand does (take, put, push, pull, open, close,
shake, stir). Participants differ in background, handedness, room noise and in how often each nuisance occurs.
:func:`plan_dataset` lays out the videos, segments and gaps of a generation from its seed.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HOLD_PREVIOUS = 2  # frames of a gap that hold the previous segment's last frame

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

# Hand-object enums of the official detections (epic-kitchens-100-hand-object-bboxes, data-formats.md).
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
    #: probability that a *training* narration names the other verb / the other noun of its pair
    #: (:mod:`mmkd_hf.synthetic.narration_noise`); the validation narrations are always exact
    narration_verb_noise: float = 0.3
    narration_noun_noise: float = 0.3

    def __post_init__(self) -> None:
        for name in ("narration_verb_noise", "narration_noun_noise"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], given {getattr(self, name)}")
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


def segment_trajectory(seg: Segment, cfg: MiniKitchensConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame geometry in output-pixel units: object centre/scale, lid offset, hand centre, contact."""
    T = seg.num_frames
    u = cfg.height / 64.0  # unit: one pixel of the 64x64 design
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
# Dataset plan: participants, videos, segments and their clip-level parameters
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


def segment_params(verb: int, noun: int, part: Participant, cfg: MiniKitchensConfig, T: int, rng: np.random.Generator) -> dict[str, Any]:
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


def plan_dataset(cfg: MiniKitchensConfig, seed: int) -> tuple[list[Participant], list[VideoPlan]]:
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
