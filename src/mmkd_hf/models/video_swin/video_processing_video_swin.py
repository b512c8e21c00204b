"""Video processor of the Video Swin student: video file -> ``pixel_values`` the model takes.

It follows the ``transformers`` video-processor API (``BaseVideoProcessor``: ``save_pretrained`` writes
``video_preprocessor_config.json``, ``AutoVideoProcessor.from_pretrained`` reads it back) and reproduces the
original evaluation transform:

1. decode with PyAV (the FFmpeg bundled in the ``av`` wheel; mp4/h264, webm/vp8/vp9, ... all work),
2. sample ``num_frames`` frames uniformly, in each of ``num_clips`` equal temporal segments,
3. resize the short side to ``size["shortest_edge"]`` (bilinear, antialiased),
4. crop ``crop_size`` at the centre (``num_crops=1``) or at the start/centre/end of the long side
   (``num_crops=3``),
5. rescale to [0, 1].

``do_normalize`` is False: the model normalises inside ``forward`` (the original convention, see
``VideoSwinConfig.image_mean``), so the processor must NOT normalise again. The output is
``pixel_values`` float32 ``[B, T, 3, H, W]``, or ``[B, V, T, 3, H, W]`` with ``V = num_clips * num_crops``
views (clip-major, ``v = clip * num_crops + crop``) when ``V > 1`` -- the batch contract of the package.

This file is self-contained (``transformers``, ``torch``, ``numpy``, ``av`` only) because
``register_for_auto_class`` ships it with saved models for ``trust_remote_code=True`` users.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata

from .configuration_video_swin import IMAGENET_MEAN, IMAGENET_STD

MAX_DECODED_FRAMES = 20_000  # refuse absurdly long inputs instead of exhausting memory


class VideoSwinVideoProcessorKwargs(VideosKwargs, total=False):
    """Extra keyword arguments of :class:`VideoSwinVideoProcessor`.

    Attributes:
        num_clips: Temporal clips per video (views along time).
        num_crops: Spatial crops per clip: 1 (centre) or 3 (start, centre, end of the long side).
    """

    num_clips: int
    num_crops: int


def uniform_clip_indices(total_frames: int, num_frames: int, num_clips: int = 1) -> np.ndarray:
    """Frame indices of ``num_clips`` clips of ``num_frames`` frames each, sampled uniformly.

    The video is split into ``num_clips`` equal segments; in each, ``num_frames`` indices are taken at the
    centres of ``num_frames`` equal sub-segments (frames repeat when the video is shorter than a clip).

    Args:
        total_frames: Number of frames of the video (> 0).
        num_frames: Frames per clip (> 0).
        num_clips: Number of clips (> 0).

    Returns:
        int64 array of shape ``[num_clips * num_frames]``, clip-major.
    """
    if total_frames <= 0:
        raise ValueError(f"uniform_clip_indices: the video has no frames (total_frames={total_frames}).")
    if num_frames <= 0 or num_clips <= 0:
        raise ValueError(f"uniform_clip_indices: expected num_frames > 0 and num_clips > 0, got {num_frames}, {num_clips}.")
    segment = total_frames / num_clips
    step = segment / num_frames
    offsets = (np.arange(num_frames) + 0.5) * step
    starts = np.arange(num_clips)[:, None] * segment
    indices = np.floor(starts + offsets[None, :]).astype(np.int64)
    return np.clip(indices, 0, total_frames - 1).reshape(-1)


def read_video_pyav(path: str | os.PathLike, indices_fn=None) -> tuple[np.ndarray, VideoMetadata]:
    """Decodes the frames of ``path`` chosen by ``indices_fn`` with PyAV.

    The number of frames is counted by demuxing (no decoding), so containers that do not store a frame count
    (webm, some mp4) work. Only the selected frames are kept in memory.

    Args:
        path: Video file.
        indices_fn: ``fn(metadata=VideoMetadata) -> indices``; all frames when ``None``.

    Returns:
        ``(frames, metadata)``: uint8 ``[N, H, W, 3]`` RGB and a ``VideoMetadata``.

    Raises:
        ValueError: the file cannot be opened, has no video stream, or has no decodable frame.
    """
    try:
        import av
    except ImportError as err:  # optional: only decoding a video file needs PyAV
        raise ImportError("decoding a video file needs PyAV (pip install av)") from err

    path = os.fspath(path)
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as err:
        raise ValueError(f"{path}: not a readable video file ({err.__class__.__name__}: {err})") from err
    with container:
        if not container.streams.video:
            raise ValueError(f"{path}: the file has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else None
        try:
            total = sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.error.FFmpegError as err:
            raise ValueError(f"{path}: the video stream is corrupt ({err})") from err
        if total == 0:
            raise ValueError(f"{path}: the video stream has no frames")
        if total > MAX_DECODED_FRAMES:
            raise ValueError(f"{path}: {total} frames is more than the {MAX_DECODED_FRAMES} this processor decodes")
        metadata = VideoMetadata(
            total_num_frames=total,
            fps=fps,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration=total / fps if fps else None,
            video_backend="pyav",
        )
        indices = np.arange(total) if indices_fn is None else np.asarray(indices_fn(metadata=metadata), dtype=np.int64)
        wanted = set(int(i) for i in indices)
        last = max(wanted)
        kept: dict[int, np.ndarray] = {}
        container.seek(0)
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    kept[index] = frame.to_ndarray(format="rgb24")
                if index >= last:
                    break
        except av.error.FFmpegError as err:
            if not kept:
                raise ValueError(f"{path}: the video stream is corrupt ({err})") from err
        if not kept:
            raise ValueError(f"{path}: no frame could be decoded")
    # Packets can outnumber decodable frames (a corrupt tail): use the nearest decoded frame instead.
    def nearest(index: int) -> int:
        return index if index in kept else min(kept, key=lambda known: abs(known - index))

    chosen = [nearest(int(i)) for i in indices.tolist()]
    frames = [kept[i] for i in chosen]
    metadata.frames_indices = chosen
    return np.stack(frames), metadata


def _crop_offsets(length: int, crop: int, num_crops: int) -> list[int]:
    if num_crops == 1:
        return [(length - crop) // 2]
    if num_crops == 3:
        return [0, (length - crop) // 2, length - crop]
    raise ValueError(f"VideoSwinVideoProcessor: num_crops must be 1 or 3, got {num_crops}")


class VideoSwinVideoProcessor(BaseVideoProcessor):
    """Turns videos (paths, arrays ``[T, H, W, 3]`` or tensors ``[T, 3, H, W]``) into ``pixel_values``.

    Defaults match the student's evaluation transform; build one for a model with
    :meth:`from_model_config` so ``num_frames`` and ``crop_size`` follow ``config.num_frames`` and
    ``config.image_size``. See the module docstring for the steps and the output layout.
    """

    resample = PILImageResampling.BILINEAR
    image_mean = list(IMAGENET_MEAN)  # documentation only: do_normalize is False, the model normalises
    image_std = list(IMAGENET_STD)
    size = {"shortest_edge": 224}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = False
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 16
    num_clips = 1
    num_crops = 1
    valid_kwargs = VideoSwinVideoProcessorKwargs
    model_input_names = ["pixel_values"]

    def __init__(self, **kwargs: Unpack[VideoSwinVideoProcessorKwargs]) -> None:
        super().__init__(**kwargs)

    @classmethod
    def from_model_config(cls, config: Any, **overrides) -> "VideoSwinVideoProcessor":
        """A processor matching a Video Swin config: ``num_frames`` frames, short side resized to
        ``image_size * 256 / 224`` (the usual evaluation ratio), centre crop ``image_size``."""
        image_size = int(getattr(config, "image_size", 224))
        kwargs = {
            "num_frames": int(getattr(config, "num_frames", 16)),
            "size": {"shortest_edge": int(round(image_size * 256 / 224))},
            "crop_size": {"height": image_size, "width": image_size},
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    # -- decoding and sampling (hooks of BaseVideoProcessor) -------------------------------------------------
    def fetch_videos(self, video_url_or_urls, sample_indices_fn=None):
        """Decodes local video files with PyAV (``transformers`` defaults to torchcodec, which needs system
        FFmpeg libraries)."""
        if isinstance(video_url_or_urls, (list, tuple)):
            decoded = [self.fetch_videos(item, sample_indices_fn=sample_indices_fn) for item in video_url_or_urls]
            return [frames for frames, _ in decoded], [meta for _, meta in decoded]
        source = os.fspath(video_url_or_urls)
        if source.startswith(("http://", "https://")):
            raise ValueError(f"VideoSwinVideoProcessor decodes local files only; download {source} first")
        if not os.path.isfile(source):
            raise ValueError(f"VideoSwinVideoProcessor: video file not found: {source}")
        return read_video_pyav(source, indices_fn=sample_indices_fn)

    def sample_frames(self, metadata: VideoMetadata, num_frames: int | None = None, num_clips: int | None = None,
                      fps: float | None = None, **kwargs) -> np.ndarray:
        """Indices of ``num_clips`` uniform clips of ``num_frames`` frames (see :func:`uniform_clip_indices`)."""
        if fps is not None:
            raise ValueError("VideoSwinVideoProcessor samples a fixed number of frames per clip; `fps` is not supported")
        num_frames = num_frames if num_frames is not None else self.num_frames
        num_clips = num_clips if num_clips is not None else self.num_clips
        return uniform_clip_indices(int(metadata.total_num_frames), int(num_frames), int(num_clips))

    # -- tensor transform ----------------------------------------------------------------------------------
    def _preprocess(
        self,
        videos: list[torch.Tensor],
        do_resize: bool,
        size,
        do_center_crop: bool,
        crop_size,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean,
        image_std,
        return_tensors=None,
        num_frames: int | None = None,
        num_clips: int | None = None,
        num_crops: int | None = None,
        do_sample_frames: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        num_clips = int(num_clips or 1)
        num_crops = int(num_crops or 1)
        outputs = []
        for video in videos:
            video = video.float()  # [N, C, H, W], 0..255
            if video.shape[0] % num_clips:
                raise ValueError(
                    f"VideoSwinVideoProcessor: {video.shape[0]} frames cannot be split into {num_clips} clips"
                )
            if do_resize:
                video = self._resize_short_side(video, size)
            views = []
            if do_center_crop:
                height, width = crop_size.height, crop_size.width
                if video.shape[-2] < height or video.shape[-1] < width:
                    raise ValueError(
                        f"VideoSwinVideoProcessor: frames {tuple(video.shape[-2:])} are smaller than the crop "
                        f"{(height, width)}; enable do_resize or lower crop_size"
                    )
                along_width = video.shape[-1] - width >= video.shape[-2] - height
                for offset in _crop_offsets(video.shape[-1] if along_width else video.shape[-2],
                                            width if along_width else height, num_crops):
                    top = offset if not along_width else (video.shape[-2] - height) // 2
                    left = offset if along_width else (video.shape[-1] - width) // 2
                    views.append(video[..., top:top + height, left:left + width])
            else:
                views.append(video)
            if do_rescale:
                views = [view * rescale_factor for view in views]
            if do_normalize:
                mean = torch.tensor(image_mean, dtype=torch.float32).view(1, -1, 1, 1)
                std = torch.tensor(image_std, dtype=torch.float32).view(1, -1, 1, 1)
                views = [(view - mean) / std for view in views]
            frames_per_clip = video.shape[0] // num_clips
            # [crops, clips * T, C, H, W] -> [clips, crops, T, C, H, W] -> [V, T, C, H, W] (clip-major)
            stacked = torch.stack(views).view(len(views), num_clips, frames_per_clip, *views[0].shape[1:])
            stacked = stacked.transpose(0, 1).reshape(num_clips * len(views), frames_per_clip, *views[0].shape[1:])
            outputs.append(stacked[0] if stacked.shape[0] == 1 else stacked)
        if return_tensors is not None:
            shapes = {tuple(item.shape) for item in outputs}
            if len(shapes) > 1:
                raise ValueError(f"VideoSwinVideoProcessor: videos of different shapes {sorted(shapes)} cannot be batched")
            outputs = torch.stack(outputs)
        return BatchFeature(data={"pixel_values": outputs}, tensor_type=return_tensors)

    @staticmethod
    def _resize_short_side(video: torch.Tensor, size) -> torch.Tensor:
        height, width = video.shape[-2:]
        if getattr(size, "shortest_edge", None):
            short = int(size.shortest_edge)
            scale = short / min(height, width)
            new_h, new_w = max(short, round(height * scale)), max(short, round(width * scale))
        elif getattr(size, "height", None) and getattr(size, "width", None):
            new_h, new_w = int(size.height), int(size.width)
        else:
            raise ValueError(f"VideoSwinVideoProcessor: size must have shortest_edge or height/width, got {size}")
        if (new_h, new_w) == (height, width):
            return video
        return F.interpolate(video, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 255)


__all__ = ["VideoSwinVideoProcessor", "read_video_pyav", "uniform_clip_indices"]
