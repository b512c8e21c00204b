"""Lazy decoding of frames (JPEG folders, un-extracted tars, videos) and audio, with clear errors.

Every function raises :class:`~mmkd_hf.data.errors.FileDecodeError` naming the file; the transform adds
the sample id. Frame numbers are **1-based** everywhere (EPIC ``frame_%010d.jpg``, SSv2 ``%04d.jpg``).

Frames are read as raw bytes and decoded by OpenCV's ``imdecode`` (libjpeg-turbo; the fastest full-frame
decoder here, bit-identical to ``torchvision.io.decode_jpeg``, which is the fallback and the source of
error messages) into uint8 ``[N, C, H, W]`` tensors stored channels-last; duplicated indices are decoded
once.
"""

from __future__ import annotations

import functools
import os
import tarfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from .errors import FileDecodeError

try:  # OpenCV >= 4.10 decodes straight to RGB
    import cv2

    _CV2_FLAGS: dict[bool, int] | None = {
        False: cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION,
        True: cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION,
    }
except (ImportError, AttributeError):  # pragma: no cover - older OpenCV: torchvision decodes
    _CV2_FLAGS = None

__all__ = [
    "FrameStore",
    "FolderFrames",
    "TarFrames",
    "VideoFrames",
    "decode_jpeg_bytes",
    "jpeg_size",
    "last_frame_number",
    "tar_problem",
    "video_stream_frames",
    "read_audio",
    "AudioClip",
]


def _decode_torchvision(blob, path: str, gray: bool) -> torch.Tensor:
    data = torch.frombuffer(blob if isinstance(blob, bytearray) else bytearray(blob), dtype=torch.uint8)
    try:
        image = decode_jpeg(data, mode=ImageReadMode.GRAY if gray else ImageReadMode.RGB)
    except RuntimeError as exc:
        raise FileDecodeError(path, f"corrupt JPEG ({str(exc).splitlines()[0]})") from None
    return image.permute(1, 2, 0)


def _decode_one(blob, path: str, gray: bool) -> torch.Tensor:
    """One JPEG to uint8 ``[H, W, C]`` (EXIF orientation ignored, as ``decode_jpeg``)."""
    if len(blob) < 4 or blob[0] != 0xFF or blob[1] != 0xD8:
        raise FileDecodeError(path, "not a JPEG file (missing SOI marker)")
    if _CV2_FLAGS is None:
        return _decode_torchvision(blob, path, gray)
    image = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), _CV2_FLAGS[gray])
    if image is None:  # OpenCV returns None on any error: torchvision names it (or decodes what it can)
        return _decode_torchvision(blob, path, gray)
    return torch.from_numpy(image[:, :, None] if image.ndim == 2 else image)


def decode_jpeg_bytes(
    blobs: Sequence[bytes], paths: Sequence[str], gray: bool = False, order: Sequence[int] | np.ndarray | None = None
) -> torch.Tensor:
    """Decode a batch of JPEG byte strings to uint8 ``[N, C, H, W]`` (C = 1 if ``gray`` else 3).

    RGB results are channels-last in memory (each frame stored as H x W x C, the decoder's own layout),
    which is what the uint8 resize kernels are fastest on; its shape is the usual ``[N, C, H, W]``.
    Grey results are plain contiguous ``[N, 1, H, W]``.

    Args:
        order: optional indices into ``blobs``: frame ``i`` of the result is ``blobs[order[i]]`` (each
            blob is decoded once; repeated indices are copies). None = ``range(len(blobs))``.
    """
    images = [_decode_one(blob, path, gray) for blob, path in zip(blobs, paths)]
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise FileDecodeError(paths[0], f"frames of one clip have different sizes: "
                                        f"{sorted((h, w) for h, w, _ in shapes)}")
    if order is not None:
        images = [images[int(i)] for i in np.asarray(order).reshape(-1)]
    # one copy of each (H, W, C) frame into the [N, H, W, C] result
    stacked = torch.stack(images)
    if gray:  # [N, 1, H, W] with plain strides (else torch.cat of u and v would interleave them)
        return stacked[..., 0].unsqueeze(1)
    return stacked.permute(0, 3, 1, 2)


def jpeg_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of a JPEG from its header (no full decode)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise FileDecodeError(path, "frame file not found") from None
    except Exception as exc:
        raise FileDecodeError(path, f"unreadable image ({exc})") from None
    return h, w


class FrameStore:
    """A source of numbered frames of one video (or one flow component)."""

    def describe(self, number: int) -> str:
        raise NotImplementedError

    def read_bytes(self, number: int) -> bytes:
        raise NotImplementedError

    def num_frames(self) -> int:
        raise NotImplementedError

    def read(self, numbers: Sequence[int] | np.ndarray, gray: bool = False) -> torch.Tensor:
        """uint8 ``[len(numbers), C, H, W]`` for the 1-based frame ``numbers`` (duplicates allowed)."""
        numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
        unique, inverse = np.unique(numbers, return_inverse=True)
        blobs = [self.read_bytes(int(n)) for n in unique]
        # each distinct frame decoded once, then copied straight to every position that shows it
        return decode_jpeg_bytes(blobs, [self.describe(int(n)) for n in unique], gray=gray, order=inverse)


class FolderFrames(FrameStore):
    """JPEG files ``<folder>/<pattern % number>`` (e.g. ``frame_%010d.jpg`` or ``%04d.jpg``)."""

    def __init__(self, folder: str | os.PathLike, pattern: str):
        self.folder = Path(folder)
        self.pattern = pattern
        self._prefix = os.path.join(str(self.folder), "")  # describe() is called per frame: no pathlib there

    def describe(self, number: int) -> str:
        return self._prefix + self.pattern % number

    def read_bytes(self, number: int) -> bytes:
        path = self.describe(number)
        try:
            with open(path, "rb", buffering=0) as fh:  # one open, one read into a writable buffer
                size = os.fstat(fh.fileno()).st_size
                data = bytearray(size)
                got = fh.readinto(data)
                if got != size:
                    data = bytearray(data[:got]) + bytearray(fh.read())
                return data
        except FileNotFoundError:
            raise FileDecodeError(path, "frame file not found") from None

    def num_frames(self) -> int:
        return _count_frames(str(self.folder), self.pattern)


def _frame_numbers(folder: str, pattern: str) -> set[int]:
    """The frame numbers of the files of ``folder`` named by ``pattern`` (one directory listing)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        raise FileDecodeError(folder, "frame folder not found") from None
    suffix = pattern.rsplit("%", 1)[-1].split("d", 1)[-1]
    prefix = pattern.split("%", 1)[0]
    numbers = set()
    for name in names:
        if name.startswith(prefix) and name.endswith(suffix):
            core = name[len(prefix): len(name) - len(suffix)] if suffix else name[len(prefix):]
            if core.isdigit():
                numbers.add(int(core))
    return numbers


@functools.lru_cache(maxsize=4096)
def _count_frames(folder: str, pattern: str) -> int:
    """Highest n such that frames 1..n exist (contiguous numbering); 0 if none."""
    numbers = _frame_numbers(folder, pattern)
    count = 0
    while count + 1 in numbers:
        count += 1
    return count


def last_frame_number(folder: str | os.PathLike, pattern: str) -> int:
    """The highest frame number of the files of ``folder`` named by ``pattern``; 0 if none or no folder."""
    try:
        return max(_frame_numbers(str(folder), pattern), default=0)
    except FileDecodeError:
        return 0


def tar_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a readable uncompressed tar archive (from its first header block), or None.

    Reads 512 bytes: cheap enough to check every archive of a dataset before training."""
    try:
        with open(path, "rb") as fh:
            block = fh.read(tarfile.BLOCKSIZE)
    except FileNotFoundError:
        return "archive not found"
    except OSError as exc:
        return f"unreadable archive ({exc.strerror or exc})"
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError as exc:
        return f"not an uncompressed tar archive ({exc})"
    return None


def video_stream_frames(path: str | os.PathLike) -> int | None:
    """Frame count of a video's first stream from its container metadata, None when the container does not
    say (nothing is decoded). Raises :class:`FileDecodeError` for a missing or unreadable file."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FileDecodeError(path, "no video stream")
            frames = int(container.streams.video[0].frames or 0)
    except FileNotFoundError:
        raise FileDecodeError(path, "video file not found") from None
    except av.error.FFmpegError as exc:
        raise FileDecodeError(path, f"unreadable video ({getattr(exc, 'strerror', None) or exc})") from None
    return frames or None


@dataclass(frozen=True)
class _TarIndex:
    members: dict[str, tuple[int, int]]  # normalised member name -> (data offset, size)


@functools.lru_cache(maxsize=64)
def _index_tar(path: str, mtime_ns: int) -> _TarIndex:
    members: dict[str, tuple[int, int]] = {}
    try:
        with tarfile.open(path, mode="r:") as tf:  # uncompressed only: random access by offset
            for info in tf:
                if info.isfile():
                    name = info.name[2:] if info.name.startswith("./") else info.name
                    members[name] = (info.offset_data, info.size)
    except FileNotFoundError:
        raise FileDecodeError(path, "frame archive not found") from None
    except tarfile.TarError as exc:
        raise FileDecodeError(path, f"not an uncompressed tar archive ({exc})") from None
    return _TarIndex(members)


class TarFrames(FrameStore):
    """Frames inside an un-extracted, uncompressed tar (the official ``rgb_frames/<video>.tar``).

    The archive is indexed once per process (member -> offset); members are then read at random.
    ``member_prefix`` selects e.g. ``u/`` or ``v/`` inside a flow archive.
    """

    def __init__(self, path: str | os.PathLike, pattern: str, member_prefix: str = ""):
        self.path = str(path)
        self.pattern = pattern
        self.member_prefix = member_prefix

    def _index(self) -> _TarIndex:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            raise FileDecodeError(self.path, "frame archive not found") from None
        return _index_tar(self.path, mtime)

    def describe(self, number: int) -> str:
        return f"{self.path}::{self.member_prefix}{self.pattern % number}"

    def read_bytes(self, number: int) -> bytes:
        name = self.member_prefix + self.pattern % number
        entry = self._index().members.get(name)
        if entry is None:
            raise FileDecodeError(self.describe(number), "frame not in archive")
        offset, size = entry
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(size)
        if len(data) != size:
            raise FileDecodeError(self.describe(number), "archive truncated")
        return data

    def num_frames(self) -> int:
        members = self._index().members
        count = 0
        while f"{self.member_prefix}{self.pattern % (count + 1)}" in members:
            count += 1
        return count


class VideoFrames(FrameStore):
    """Frames of a video file decoded with PyAV (EPIC ``.MP4``, SSv2 ``.webm``); frame n = n-th decoded."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)

    def describe(self, number: int) -> str:
        return f"{self.path}#frame{number}"

    def num_frames(self) -> int:
        return _video_num_frames(self.path)

    def read(self, numbers: Sequence[int] | np.ndarray, gray: bool = False) -> torch.Tensor:
        import av

        numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
        unique, inverse = np.unique(numbers, return_inverse=True)
        wanted = {int(n): i for i, n in enumerate(unique)}
        out: list[np.ndarray | None] = [None] * len(unique)
        fmt = "gray" if gray else "rgb24"
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                for k, frame in enumerate(container.decode(stream), start=1):
                    if k in wanted:
                        out[wanted[k]] = frame.to_ndarray(format=fmt)
                    if k >= unique[-1]:
                        break
        except FileNotFoundError:
            raise FileDecodeError(self.path, "video file not found") from None
        except av.error.FFmpegError as exc:
            raise FileDecodeError(self.path, f"video decode failed ({exc})") from None
        missing = [int(n) for n, o in zip(unique, out) if o is None]
        if missing:
            raise FileDecodeError(self.path, f"video has fewer frames than requested (missing {missing[:5]})")
        arrays = [a[..., None] if a.ndim == 2 else a for a in out]
        decoded = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return decoded[torch.from_numpy(inverse.reshape(-1))]


@functools.lru_cache(maxsize=1024)
def _video_num_frames(path: str) -> int:
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for _ in container.decode(stream))
    except FileNotFoundError:
        raise FileDecodeError(path, "video file not found") from None
    except av.error.FFmpegError as exc:
        raise FileDecodeError(path, f"video decode failed ({exc})") from None


@dataclass
class AudioClip:
    """Mono float32 waveform ``samples`` starting at ``start_s`` seconds of the file, at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int
    start_s: float


def read_audio(path: str | os.PathLike, start_s: float, stop_s: float) -> AudioClip:
    """Read mono audio between ``start_s`` and ``stop_s`` seconds (clamped to the file).

    ``.wav`` (PCM) is read with the standard library by seeking; anything else (``.MP4`` audio track,
    float WAV) with PyAV. A file whose data stops before its header's length is **truncated** and raises
    :class:`FileDecodeError`; a request past the end of an intact file returns what exists (the caller
    zero-pads).
    """
    path = str(path)
    start_s = max(0.0, float(start_s))
    if path.lower().endswith(".wav"):
        try:
            return _read_wav(path, start_s, stop_s)
        except wave.Error:
            pass  # e.g. IEEE float WAV: PyAV handles it
    return _read_av_audio(path, start_s, stop_s)


def _read_wav(path: str, start_s: float, stop_s: float) -> AudioClip:
    try:
        fh = wave.open(path, "rb")
    except FileNotFoundError:
        raise FileDecodeError(path, "audio file not found") from None
    except EOFError:
        raise FileDecodeError(path, "audio file truncated (incomplete header)") from None
    with fh:
        sr, channels, width, total = fh.getframerate(), fh.getnchannels(), fh.getsampwidth(), fh.getnframes()
        if width not in (1, 2, 4):
            raise wave.Error(f"unsupported sample width {width}")
        first = min(int(round(start_s * sr)), total)
        last = min(int(round(stop_s * sr)), total)
        fh.setpos(first)
        raw = fh.readframes(max(0, last - first))
    expected = (last - first) * channels * width
    if len(raw) < expected:
        raise FileDecodeError(path, f"audio file truncated: header declares {total} frames, data ends early "
                                    f"(read {len(raw) // (channels * width)} of {last - first} requested)")
    if os.path.getsize(path) < 44 + total * channels * width:  # 44 = smallest PCM WAV header
        raise FileDecodeError(path, f"audio file truncated: header declares {total} frames "
                                    f"({total * channels * width} bytes), file is {os.path.getsize(path)} bytes")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    data = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    if width == 1:
        data = (data - 128.0) / 128.0
    else:
        data /= float(2 ** (8 * width - 1))
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return AudioClip(data, sr, first / sr)


def _read_av_audio(path: str, start_s: float, stop_s: float) -> AudioClip:
    import av

    chunks: list[np.ndarray] = []
    sr = None
    first_time = None
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise FileDecodeError(path, "no audio stream")
            stream = container.streams.audio[0]
            sr = stream.rate or stream.codec_context.sample_rate
            if start_s > 1.0 and stream.time_base is not None:
                container.seek(int(max(0.0, start_s - 0.5) / stream.time_base), stream=stream)
            for frame in container.decode(stream):
                t = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
                raw = frame.to_ndarray()
                arr = raw.astype(np.float32)
                if np.issubdtype(raw.dtype, np.integer):
                    arr /= float(np.iinfo(raw.dtype).max)
                if not frame.format.is_planar:
                    arr = arr.reshape(-1, len(frame.layout.channels)).T
                mono = arr.reshape(arr.shape[0], -1).mean(axis=0)
                if t + len(mono) / sr < start_s:
                    continue
                if first_time is None:
                    first_time = t
                chunks.append(mono)
                if t > stop_s:
                    break
    except FileNotFoundError:
        raise FileDecodeError(path, "audio file not found") from None
    except av.error.FFmpegError as exc:
        raise FileDecodeError(path, f"audio decode failed ({exc})") from None
    if sr is None:
        raise FileDecodeError(path, "no audio stream")
    if not chunks:
        return AudioClip(np.zeros(0, np.float32), int(sr), start_s)
    data = np.concatenate(chunks)
    lo = max(0, int(round((start_s - first_time) * sr)))
    hi = max(lo, int(round((stop_s - first_time) * sr)))
    return AudioClip(data[lo:hi], int(sr), first_time + lo / sr)
