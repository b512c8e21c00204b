"""The audio track of a mini-kitchens video (16 kHz mono): room noise and hum, verb-specific sound events
with a resonance at the noun's pitch, and the object's pulsing hum while it is handled.

Sound events: grasp click, put-down thud, scraping (push and pull sound the same), lid pop/clack, rattle,
stirring clinks. While handled, an object hums at its noun's pitch, pulsing at a per-shape rate (a local
spectro-temporal pattern, learnable without absolute frequency position). Some clips are silent, some carry a
distractor sound unrelated to the action.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path
from typing import Any

import numpy as np

from .scene import NOUNS, Participant, Segment

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


def video_audio(
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
