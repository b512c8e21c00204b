"""``mmkd-hf profile``: compute cost of the student vs the full multimodal teacher ensemble.

Both are measured **end to end from decoded RGB frames** (uint8 ``[T, H, W, 3]`` at the source
resolution, 256×456 like EPIC's frames), per view (one clip, one crop, batch 1):

* student: frames -> float, resize + centre crop -> the RGB network;
* ensemble: the same RGB path, plus optical flow computed with the **same OpenCV Farneback call as
  the mini-kitchens generator** (``mmkd_hf.data.flow.compute_flow``: half the RGB
  rate, one flow field per sampled frame from a frame pair, quantised like EPIC's JPEGs), the log-mel
  spectrogram windows of the audio (``mmkd_hf.data.audio.log_mel_windows``, torchaudio), and the
  hand-object boxes parsed from serialized detections (``mmkd_hf.data.detections.frame_layout``); then
  every teacher network.

Reported per model: parameters, network GFLOPs per view (``torch.utils.flop_counter.FlopCounterMode``;
FLOPs = 2 × multiply-adds; optical flow and FFTs are not counted), latency per view (median, ms, split
into pre-processing and network), and peak memory (CUDA: ``max_memory_allocated``; CPU: the peak RSS
of the process, measured in a separate process per model by the benchmark).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.audio import log_mel_windows
from ..data.configs import AudioConfig
from ..data.detections import DetectionThresholds, Detections, frame_layout
from ..data.flow import compute_flow
from ..models import (
    MultimodalTeacherEnsemble,
    MultimodalTeacherEnsembleConfig,
    STLTConfig,
    VideoSwinConfig,
    VideoSwinForVideoClassification,
)
from .exports import write_metrics_json

__all__ = [
    "ClipSpec",
    "build_default_ensemble",
    "count_flops",
    "ensemble_pipeline",
    "main",
    "compare",
    "profile_pipeline",
    "run_profile",
    "table",
    "student_pipeline",
    "synthetic_clip",
]


@dataclass(frozen=True)
class ClipSpec:
    """One view of raw input: ``num_frames`` sampled RGB frames at ``source_size``, its audio and boxes."""

    num_frames: int = 16
    image_size: int = 224
    source_size: tuple[int, int] = (256, 456)  # H, W of EPIC's extracted frames
    fps: float = 60.0
    frame_stride: int = 2  # RGB frames between sampled frames (flow uses the pair around each)
    audio_sample_rate: int = 16000
    boxes_per_frame: int = 6
    flow_bound: float = 20.0


def synthetic_clip(spec: ClipSpec, seed: int = 0) -> dict[str, Any]:
    """Decoded inputs of one view: ``frames`` uint8 ``[2T, H, W, 3]`` (pairs for flow), ``audio`` float32
    waveform covering the clip plus a window, ``detections`` (T serialized ``Detections`` messages)."""
    rng = np.random.default_rng(seed)
    height, width = spec.source_size
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    frames = np.stack([np.roll(base, shift=2 * i, axis=1) for i in range(2 * spec.num_frames)])
    seconds = spec.num_frames * spec.frame_stride / spec.fps + 1.2
    audio = rng.normal(scale=0.1, size=int(seconds * spec.audio_sample_rate)).astype(np.float32)
    detections = []
    for t in range(spec.num_frames):
        message = Detections(video_id="P01_01", frame_number=t + 1)
        for b in range(spec.boxes_per_frame):
            x, y = rng.uniform(0, 0.7, 2)
            if b < 2:
                hand = message.hands.add(score=0.9, side=b, state=3)
                hand.bbox.left, hand.bbox.top, hand.bbox.right, hand.bbox.bottom = x, y, x + 0.2, y + 0.2
            else:
                obj = message.objects.add(score=0.8)
                obj.bbox.left, obj.bbox.top, obj.bbox.right, obj.bbox.bottom = x, y, x + 0.25, y + 0.25
        detections.append(message.SerializeToString())
    return {"frames": frames, "audio": audio, "detections": detections}


# ------------------------------------------------------------------------------------- pre-process
def _resize_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """``[T, C, H, W]`` float -> short side ``size`` (bilinear) -> centre ``size``×``size`` crop."""
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    resized = F.interpolate(images, size=(max(size, round(height * scale)), max(size, round(width * scale))),
                            mode="bilinear", align_corners=False)
    top = (resized.shape[-2] - size) // 2
    left = (resized.shape[-1] - size) // 2
    return resized[..., top: top + size, left: left + size]


def rgb_input(frames: np.ndarray, spec: ClipSpec) -> torch.Tensor:
    """``pixel_values`` ``[1, T, 3, S, S]`` in [0, 1] from the sampled frames (every other of the pairs)."""
    sampled = torch.from_numpy(np.ascontiguousarray(frames[::2]))  # [T, H, W, 3]
    images = sampled.permute(0, 3, 1, 2).float().div_(255.0)
    return _resize_crop(images, spec.image_size).unsqueeze(0)


def flow_input(frames: np.ndarray, spec: ClipSpec) -> torch.Tensor:
    """``flow_values`` ``[1, T, 2, S, S]``: Farneback (the generator's call) on each frame pair, quantised."""
    flows = compute_flow(list(frames), spec.flow_bound)[: spec.num_frames]  # T (u, v) uint8 pairs
    stacked = torch.from_numpy(np.stack([np.stack(pair) for pair in flows])).float().div_(255.0)  # [T, 2, H, W]
    return _resize_crop(stacked, spec.image_size).unsqueeze(0)


def audio_input(audio: np.ndarray, spec: ClipSpec) -> torch.Tensor:
    """``audio_values`` ``[1, T, 1, 224, 224]``: log-mel windows centred on the sampled frames."""
    centres = 0.6 + np.arange(spec.num_frames) * spec.frame_stride / spec.fps
    return log_mel_windows(audio, spec.audio_sample_rate, 0.0, centres, AudioConfig()).unsqueeze(0)


def layout_input(detections: Sequence[bytes], spec: ClipSpec, max_boxes: int = 14) -> dict[str, torch.Tensor]:
    """``layout_*`` tensors ``[1, T, N]`` parsed from serialized per-frame detections."""
    thresholds = DetectionThresholds()
    frames = len(detections)
    out = {
        "layout_boxes": torch.zeros(1, frames, max_boxes, 4),
        "layout_categories": torch.zeros(1, frames, max_boxes, dtype=torch.long),
        "layout_scores": torch.zeros(1, frames, max_boxes),
        "layout_sides": torch.zeros(1, frames, max_boxes, dtype=torch.long),
        "layout_states": torch.zeros(1, frames, max_boxes, dtype=torch.long),
        "layout_mask": torch.zeros(1, frames, max_boxes, dtype=torch.bool),
    }
    for t, serialized in enumerate(detections):
        layout = frame_layout(serialized, thresholds)
        k = min(len(layout["scores"]), max_boxes)
        out["layout_boxes"][0, t, :k] = torch.from_numpy(layout["boxes"][:k])
        out["layout_categories"][0, t, :k] = torch.from_numpy(layout["categories"][:k])
        out["layout_scores"][0, t, :k] = torch.from_numpy(layout["scores"][:k])
        out["layout_sides"][0, t, :k] = torch.from_numpy(layout["sides"][:k])
        out["layout_states"][0, t, :k] = torch.from_numpy(layout["states"][:k])
        out["layout_mask"][0, t, :k] = True
    return out


def student_pipeline(raw: Mapping[str, Any], spec: ClipSpec) -> dict[str, torch.Tensor]:
    """Batch of the RGB student from decoded frames."""
    return {"pixel_values": rgb_input(raw["frames"], spec)}


def ensemble_pipeline(raw: Mapping[str, Any], spec: ClipSpec, modalities: Sequence[str] = ("rgb", "flow", "audio", "layout")) -> dict[str, torch.Tensor]:
    """Batch of the multimodal ensemble from decoded frames, audio samples and serialized detections."""
    batch: dict[str, torch.Tensor] = {}
    if "rgb" in modalities:
        batch["pixel_values"] = rgb_input(raw["frames"], spec)
    if "flow" in modalities:
        batch["flow_values"] = flow_input(raw["frames"], spec)
    if "audio" in modalities:
        batch["audio_values"] = audio_input(raw["audio"], spec)
    if "layout" in modalities:
        batch.update(layout_input(raw["detections"], spec))
    return batch


# ----------------------------------------------------------------------------------------- models
def build_default_ensemble(student_config, modalities: Sequence[str] = ("rgb", "flow", "audio", "layout"), stlt_kwargs: Mapping[str, Any] | None = None):
    """The paper's ensemble for a Video Swin student: one Video Swin per video modality with the
    student's architecture, plus a default STLT on boxes; uniform weighting."""
    heads = dict(student_config.heads)
    base = student_config.to_dict()
    teachers = {}
    for modality in modalities:
        if modality == "layout":
            teachers["layout"] = STLTConfig(heads=heads, num_frames=student_config.num_frames, **dict(stlt_kwargs or {})).to_dict()
        else:
            keep = {k: base[k] for k in ("patch_size", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio",
                                         "num_frames", "image_size") if k in base}
            teachers[modality] = VideoSwinConfig(modality=modality, heads=heads, **keep).to_dict()
    return MultimodalTeacherEnsemble(MultimodalTeacherEnsembleConfig(teachers=teachers, heads=heads)).eval()


def count_call_flops(forward: Callable[[], Any]) -> int:
    """FLOPs of one call of ``forward()`` (``FlopCounterMode``; 2 × multiply-adds).

    Attention runs through SDPA's math backend and ``nn.TransformerEncoder``'s fused fast path is off while
    counting: the fused kernels have no FLOP formula, so they would otherwise drop out of the count.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
            forward()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops())


def count_flops(model: torch.nn.Module, inputs: Mapping[str, Any]) -> int:
    """FLOPs of one forward of ``model(**inputs)`` (see :func:`count_call_flops`)."""
    return count_call_flops(lambda: model(**inputs))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def profile_pipeline(
    model: torch.nn.Module,
    make_inputs: Callable[[Mapping[str, Any]], dict[str, torch.Tensor]],
    raw: Mapping[str, Any],
    *,
    device: str | torch.device = "cpu",
    warmup: int = 1,
    repeats: int = 3,
) -> dict[str, Any]:
    """Parameters, GFLOPs, latency (pre-processing + network) and peak memory of one view, end to end."""
    device = torch.device(device)
    model = model.to(device).eval()
    inputs = {k: v.to(device) for k, v in make_inputs(raw).items()}
    flops = count_flops(model, inputs)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    preprocess_ms, network_ms = [], []
    for step in range(warmup + repeats):
        _sync(device)
        started = time.perf_counter()
        inputs = {k: v.to(device) for k, v in make_inputs(raw).items()}
        _sync(device)
        prepared = time.perf_counter()
        model(**inputs)
        _sync(device)
        finished = time.perf_counter()
        if step >= warmup:
            preprocess_ms.append(1000 * (prepared - started))
            network_ms.append(1000 * (finished - prepared))
    totals = [a + b for a, b in zip(preprocess_ms, network_ms)]
    peak = (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "gflops_per_view": flops / 1e9,
        "latency_ms_per_view": statistics.median(totals),
        "preprocess_ms_per_view": statistics.median(preprocess_ms),
        "network_ms_per_view": statistics.median(network_ms),
        "peak_memory_mb": peak,
        "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "process_peak_rss",
        "device": str(device),
        "repeats": repeats,
        "inputs": {k: list(v.shape) for k, v in inputs.items()},
    }


def compare(student: Mapping[str, Any], ensemble: Mapping[str, Any]) -> dict[str, float]:
    """Ensemble / student ratios (> 1: the student is cheaper)."""
    def ratio(key: str) -> float:
        return float(ensemble[key]) / float(student[key]) if student.get(key) else float("nan")

    return {key: ratio(key) for key in ("gflops_per_view", "latency_ms_per_view", "parameters", "peak_memory_mb")}


def table(rows: Mapping[str, Mapping[str, Any]], ratios: Mapping[str, float]) -> str:
    """Markdown table of profiles plus the ratio row."""
    lines = ["| model | params (M) | GFLOPs / view | latency ms / view (pre + net) | peak memory MB |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['parameters'] / 1e6:.2f} | {row['gflops_per_view']:.2f} | "
            f"{row['latency_ms_per_view']:.1f} ({row['preprocess_ms_per_view']:.1f} + {row['network_ms_per_view']:.1f}) | "
            f"{row['peak_memory_mb']:.0f} |"
        )
    lines.append(
        f"| ensemble / student | {ratios['parameters']:.2f}x | {ratios['gflops_per_view']:.2f}x | "
        f"{ratios['latency_ms_per_view']:.2f}x | {ratios['peak_memory_mb']:.2f}x |"
    )
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- CLI
def _worker(kind: str, model_dir: str | None, ensemble_dir: str | None, spec: dict, modalities: list[str], device: str,
            repeats: int, overrides: dict) -> dict[str, Any]:
    """Profile one side in this process (run in a fresh process so the CPU peak RSS is its own)."""
    from transformers import AutoModel

    torch.manual_seed(0)
    clip_spec = ClipSpec(**{**spec, "source_size": tuple(spec["source_size"])})
    student = AutoModel.from_pretrained(model_dir) if model_dir else _default_student(clip_spec, overrides)
    raw = synthetic_clip(clip_spec)
    if kind == "student":
        return profile_pipeline(student, lambda r: student_pipeline(r, clip_spec), raw, device=device, repeats=repeats)
    ensemble = AutoModel.from_pretrained(ensemble_dir) if ensemble_dir else build_default_ensemble(student.config, modalities)
    used = list(getattr(ensemble.config, "teachers", modalities))
    result = profile_pipeline(ensemble, lambda r: ensemble_pipeline(r, clip_spec, used), raw, device=device, repeats=repeats)
    result["teachers"] = used
    return result


def _default_student(spec: ClipSpec, overrides: Mapping[str, Any]):
    config = VideoSwinConfig(num_frames=spec.num_frames, image_size=spec.image_size,
                             heads=overrides.get("heads") or {"verb": 97, "noun": 300}, **overrides.get("swin", {}))
    return VideoSwinForVideoClassification(config).eval()


def _run_isolated(args: tuple) -> dict[str, Any]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_worker, args)


def run_profile(
    model_dir: str | None = None,
    ensemble_dir: str | None = None,
    *,
    spec: ClipSpec = ClipSpec(),
    modalities: Sequence[str] = ("rgb", "flow", "audio", "layout"),
    device: str = "cpu",
    repeats: int = 3,
    isolate: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Profile the student and the ensemble (each in its own process when ``isolate``) and compare."""
    spec_dict = asdict(spec)
    common = (model_dir, ensemble_dir, spec_dict, list(modalities), device, repeats, dict(overrides or {}))
    runner = _run_isolated if isolate else (lambda a: _worker(*a))
    student = runner(("student",) + common)
    ensemble = runner(("ensemble",) + common)
    ratios = compare(student, ensemble)
    return {"spec": spec_dict, "student": student, "ensemble": ensemble, "ensemble_over_student": ratios,
            # end to end = measured latency from decoded frames; the GFLOPs ratio counts the networks only
            # (Farneback flow and the STFTs are not counted), so it understates the ensemble's cost
            "target_met_3x_end_to_end": bool(ratios["latency_ms_per_view"] >= 3.0)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmkd-hf profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="student folder / Hub id (default: a Video Swin-T built from config)")
    parser.add_argument("--ensemble", default=None, help="ensemble folder (default: Swin-T per video modality + STLT)")
    parser.add_argument("--teachers", default="rgb,flow,audio,layout", help="modalities of the default ensemble")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--source-size", default="256x456", help="decoded frame HxW")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-isolate", action="store_true", help="profile both in this process (CPU peak memory then mixes)")
    parser.add_argument("--output", default=None, help="write the JSON result here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    height, width = (int(x) for x in args.source_size.lower().split("x"))
    spec = ClipSpec(num_frames=args.frames, image_size=args.size, source_size=(height, width))
    result = run_profile(args.model, args.ensemble, spec=spec, modalities=[m for m in args.teachers.split(",") if m],
                         device=args.device, repeats=args.repeats, isolate=not args.no_isolate)
    print(table({"student": result["student"], "ensemble": result["ensemble"]}, result["ensemble_over_student"]))
    print(f"end-to-end latency ratio {result['ensemble_over_student']['latency_ms_per_view']:.2f}x, "
          f"GFLOPs ratio {result['ensemble_over_student']['gflops_per_view']:.2f}x "
          f"(network only) (target >= 3x end to end: {'met' if result['target_met_3x_end_to_end'] else 'NOT met'})")
    if args.output:
        write_metrics_json(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
