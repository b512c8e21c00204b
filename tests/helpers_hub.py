"""Shared helpers for the Hub / pipeline / Space tests: tiny models, tiny clips, subprocess runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
VERBS = ["take", "put", "wash", "open", "close"]
NOUNS = ["cup", "plate", "knife", "tap", "door", "pan", "spoon"]


def ensure_registered() -> None:
    """Registers the pipeline and the video processor (no-ops once ``import mmkd_hf`` does it)."""
    from transformers import AutoVideoProcessor

    from mmkd_hf.models.video_swin.configuration_video_swin import VideoSwinConfig
    from mmkd_hf.models.video_swin.video_processing_video_swin import VideoSwinVideoProcessor
    from mmkd_hf.models.multi_head_video_pipeline import register_pipeline

    register_pipeline()
    AutoVideoProcessor.register(VideoSwinConfig, VideoSwinVideoProcessor, exist_ok=True)
    VideoSwinVideoProcessor.register_for_auto_class()


def tiny_config(**overrides):
    from mmkd_hf import VideoSwinConfig

    kwargs = dict(
        embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(2, 4, 4),
        num_frames=4, image_size=32, heads={"verb": len(VERBS), "noun": len(NOUNS)},
        head_labels={"verb": VERBS, "noun": NOUNS}, drop_path_rate=0.0,
    )
    kwargs.update(overrides)
    return VideoSwinConfig(**kwargs)


def save_tiny_student(folder: Path, seed: int = 0, **overrides) -> Path:
    """A tiny random student saved like the training pipeline does: weights, code, video processor."""
    import torch

    from mmkd_hf import VideoSwinForVideoClassification
    from mmkd_hf.models.video_swin.video_processing_video_swin import VideoSwinVideoProcessor

    ensure_registered()
    torch.manual_seed(seed)
    model = VideoSwinForVideoClassification(tiny_config(**overrides)).eval()
    model.save_pretrained(folder)
    VideoSwinVideoProcessor.from_model_config(model.config).save_pretrained(folder)
    return Path(folder)


def write_clip(path: Path, num_frames: int = 16, height: int = 64, width: int = 64, codec: str = "libx264",
               fps: int = 8, container_options: dict[str, str] | None = None) -> Path:
    """Writes a small clip (red grows with x, green with y, blue falls with time) with PyAV (h264 mp4 by default,
    ``libvpx`` for webm). ``container_options`` go to the muxer (e.g. ``{"live": "1"}``: a webm without duration)."""
    import av

    path = Path(path)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        ys, xs = np.mgrid[0:height, 0:width]
        for index in range(num_frames):
            frame = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), np.full_like(xs, 255 - index * 8)], -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def run_python(code: str, env: dict[str, str], timeout: float = 180.0) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter with ``env`` added to a clean copy of the environment."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    full_env.update({"OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false",
                     "PYTHONPATH": str(REPO_ROOT / "tests")})
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO_ROOT))


def write_blank_clip(path: Path, width: int, height: int, num_frames: int = 2, fps: int = 8) -> Path:
    """A clip of black frames of any size, cheap to encode (H.264 ``ultrafast``: 8192x8192 frames give ~100 KB)."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for _ in range(num_frames):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
