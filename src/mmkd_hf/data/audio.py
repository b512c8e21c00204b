"""Audio of a segment as log-mel (dB) windows centred on the sampled frames, and train-time masking.

The windows follow the authors' public code (``src/modelling/dataset_audio.py`` of
github.com/gorjanradevski/multimodal-distillation) with an explicit 16 kHz sample rate and each video's own fps.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as TF

from .configs import AudioConfig
from .decoding import read_audio
from .sampling import frame_to_seconds

__all__ = ["log_mel_windows", "resize_spectrogram", "mask_spectrogram", "audio_windows_for_segment"]

_MEL_CACHE: dict[tuple, Any] = {}


logger = logging.getLogger(__name__)
_warned: set[str] = set()


def warn_once(key: str, message: str, *args: Any) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process (a data problem met every epoch
    is said once)."""
    if key not in _warned and len(_warned) < 1000:
        _warned.add(key)
        logger.warning(message, *args)


def _mel(config: AudioConfig):
    import torchaudio

    key = (config.sample_rate, config.n_fft, config.win_length, config.hop_length, config.n_mels)
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate, n_fft=config.n_fft, win_length=config.win_length,
            hop_length=config.hop_length, n_mels=config.n_mels, center=True, pad_mode="reflect", power=2.0)
    return _MEL_CACHE[key]


def log_mel_windows(
    samples: np.ndarray,
    sample_rate: int,
    clip_start_s: float,
    centres_s: np.ndarray,
    config: AudioConfig,
    valid_range_s: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Log-mel (dB) spectrogram windows centred on ``centres_s``; returns float ``[T, 1, F, W]``.

    Args:
        samples: mono waveform starting at ``clip_start_s`` seconds, at ``sample_rate``.
        centres_s: window centres in seconds (one per sampled frame).
        valid_range_s: zero the waveform outside this range (the action segment), or None.

    Audio that is missing (before 0 s, past the end of the file, outside ``valid_range_s``) is zeros,
    which gives -100 dB: a silent or short recording is zero-padded, not an error.
    """
    import torchaudio

    wave = torch.as_tensor(np.asarray(samples, np.float32))
    sr = config.sample_rate
    if sample_rate != sr and wave.numel() > 0:
        wave = torchaudio.functional.resample(wave, orig_freq=int(sample_rate), new_freq=sr)
    length = int(config.window_seconds * sr)
    centres = np.round((np.asarray(centres_s, np.float64) - clip_start_s) * sr).astype(np.int64)
    lefts = centres - length // 2
    # pad the waveform so every window lies inside it
    pad_left = int(max(0, -lefts.min())) if len(lefts) else 0
    pad_right = int(max(0, lefts.max() + length - wave.numel())) if len(lefts) else 0
    padded = TF.pad(wave, (pad_left, pad_right))
    if valid_range_s is not None:
        lo = int(round((valid_range_s[0] - clip_start_s) * sr)) + pad_left
        hi = int(round((valid_range_s[1] - clip_start_s) * sr)) + pad_left
        padded[: max(0, lo)] = 0.0
        padded[max(0, hi):] = 0.0
    idx = torch.from_numpy(lefts + pad_left)[:, None] + torch.arange(length)[None, :]
    windows = padded[idx]  # [T, L]
    spec = _mel(config)(windows).unsqueeze(1)  # power, [T, 1, n_mels, W]
    if config.output_size is not None:
        spec = resize_spectrogram(spec, tuple(config.output_size))
    return 10.0 * torch.log10(torch.clamp(spec, min=1e-10))  # AmplitudeToDB(power, top_db=None)


def resize_spectrogram(spec: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize power spectrograms ``[N, C, F, W]`` to ``size`` = (F', W'), one axis at a time.

    An axis that grows (or keeps its size) is resized with nearest neighbours, as the original code does
    for its 128 x 224 -> 224 x 224 spectrograms (nearest neighbours commute with the dB conversion, so
    resizing before it changes nothing there). An axis that shrinks is area-averaged in power, like a
    coarser mel filterbank: nearest neighbours would keep only some of the rows, and a tone whose energy
    lies in the dropped mel bins would vanish (128 mel bins -> 48 rows keeps 3 bins in 8).
    """
    for axis, target in ((2, int(size[0])), (3, int(size[1]))):
        current = spec.shape[axis]
        if current == target:
            continue
        shape = [target if a == axis else spec.shape[a] for a in (2, 3)]
        spec = TF.interpolate(spec, size=tuple(shape), mode="area" if target < current else "nearest")
    return spec


def mask_spectrogram(spec_db: torch.Tensor, rng: np.random.Generator, config: AudioConfig) -> torch.Tensor:
    """Train-time SpecAugment in dB space: per window, p = ``mask_probability`` each for a time and a
    frequency mask of width U[0, max). Masked bins take the item's mean dB value (not -100 dB)."""
    if config.time_mask <= 0 and config.freq_mask <= 0:
        return spec_db
    out = spec_db.clone()
    fill = float(spec_db.mean())
    f_size, w_size = out.shape[-2], out.shape[-1]
    for t in range(out.shape[0]):
        if config.time_mask > 0 and rng.random() < config.mask_probability:
            width = int(rng.integers(0, min(config.time_mask, w_size) + 1))
            start = int(rng.integers(0, w_size - width + 1))
            out[t, ..., start: start + width] = fill
        if config.freq_mask > 0 and rng.random() < config.mask_probability:
            width = int(rng.integers(0, min(config.freq_mask, f_size) + 1))
            start = int(rng.integers(0, f_size - width + 1))
            out[t, ..., start: start + width, :] = fill
    return out


def audio_windows_for_segment(
    path: str, fps: float, segment_first: int, segment_last: int, numbers: np.ndarray, config: AudioConfig,
    segment_id: str | None = None,
) -> torch.Tensor:
    """Read one segment's audio (with half a window of context) and build the windows for ``numbers``.

    A recording that ends before the segment starts gives silence, with a warning naming the segment (once per
    segment and process); a segment past the end of its *video* is the reader's error (see the EPIC reader)."""
    centres = frame_to_seconds(numbers, fps)
    seg_start = float(frame_to_seconds(segment_first, fps))
    seg_stop = float(frame_to_seconds(segment_last + 1, fps))
    half = config.window_seconds / 2.0 + 0.05
    read_from = max(0.0, min(seg_start, float(centres.min())) - half)
    read_to = max(seg_stop, float(centres.max())) + half
    clip = read_audio(path, read_from, read_to)
    clip_end = clip.start_s + len(clip.samples) / clip.sample_rate
    if len(clip.samples) == 0 or clip_end <= seg_start:  # zero-padded (-100 dB), but said
        warn_once(f"{path}|{seg_start}", "segment %s (%.2f-%.2f s) lies wholly past the end of the audio in %s (it "
                   "ends at %.2f s): its spectrogram is silence (-100 dB)", segment_id or "?", seg_start, seg_stop,
                   path, clip_end)
    valid = (seg_start, seg_stop) if config.pad_outside_segment else None
    return log_mel_windows(clip.samples, clip.sample_rate, clip.start_s, centres, config, valid)

