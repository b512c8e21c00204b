"""Gradio Space of mmkd-hf: an RGB-only student distilled from multimodal teachers, on your clip.

Model: ``MMKD_MODEL`` (a Hub repo id or a local ``save_pretrained`` folder), default
``outputs/<latest run>/student``; loaded once at start. When the model folder has a sibling ``ensemble/``
(a run folder) and the run's dataset can be read (the run's ``run_settings.json``, through
``mmkd_hf.data.RunSettings``), the examples are clips of that dataset's validation split
and, for them, the teacher ensemble (which also sees flow, audio and object boxes) runs beside the student,
with its end-to-end time: the paper's point, visible. The footer says which path the student runs (its
compute dtype, e.g. bfloat16) and the latency of the latest request per view.

Environment: ``MMKD_MODEL``, ``MMKD_ENSEMBLE`` (override the ensemble folder, or ``none``),
``MMKD_MAX_UPLOAD_MB`` (50), ``MMKD_MAX_SECONDS`` (60), ``MMKD_MAX_PIXELS`` (1920*1080 = 2073600 pixels per
frame), ``MMKD_MAX_FRAMES`` (3600), ``MMKD_CONCURRENCY`` (2), ``MMKD_EXAMPLES_DIR``,
``MMKD_COMPUTE_DTYPE`` (the student's ``compute_dtype``: ``auto`` = bfloat16 on CPUs with native bfloat16 and
on GPUs, float32 elsewhere; or ``float32`` / ``bfloat16`` / ``float16``), and gradio's
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch

ALLOWED_SUFFIXES = (".mp4", ".webm", ".mov", ".m4v", ".mkv")
VIEW_CHOICES = {
    "1 view": (1, 1),
    "2 views (2 clips)": (2, 1),
    "3 views (3 crops)": (1, 3),
    "6 views (2 clips x 3 crops)": (2, 3),
}
TOP_K = 5
DEFAULT_MAX_PIXELS = 1920 * 1080  # per frame
DEFAULT_MAX_FRAMES = 3600  # 60 s at 60 frames per second
REPO_ROOT = Path(__file__).resolve().parents[1]


class ClipError(ValueError):
    """An upload the app refuses, with a message for the user."""


# ------------------------------------------------------------------------------------------ model loading
def default_model_source(outputs: Path = REPO_ROOT / "outputs") -> str | None:
    """``MMKD_MODEL``, else the student of the most recent run under ``outputs/``."""
    if os.environ.get("MMKD_MODEL"):
        return os.environ["MMKD_MODEL"]
    students = sorted(outputs.glob("*/student/config.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    return str(students[0].parent) if students else None


def _package_available() -> bool:
    try:
        import mmkd_hf  # noqa: F401  (registers the model, processor and pipeline)

        return True
    except ImportError:
        return False


def load_classifier(source: str):
    """The multi-head video-classification pipeline of ``source`` (package code if installed, else the
    code shipped with the model: ``trust_remote_code=True``)."""
    from transformers import pipeline

    # Without MMKD_COMPUTE_DTYPE the pipeline's default ("auto") applies; folders saved before the pipeline
    # took `compute_dtype` would refuse the argument.
    dtype = {"compute_dtype": os.environ["MMKD_COMPUTE_DTYPE"]} if os.environ.get("MMKD_COMPUTE_DTYPE") else {}
    if _package_available():
        return pipeline("mmkd-video-classification", model=source, **dtype)
    return pipeline(model=source, trust_remote_code=True, **dtype)


def probe_clip(path: str, max_mb: float, max_seconds: float, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_frames: int = DEFAULT_MAX_FRAMES) -> dict[str, Any]:
    """Checks an upload before decoding any frame: type, file size, a video stream, pixels per frame (from the
    stream's codec parameters), then frames and duration. Those two are read from the container's metadata
    when present and always counted from the stream itself by demuxing its packets (no decoding), stopping as
    soon as a limit is passed, so a file without (or with false) duration metadata cannot get past them.

    Raises:
        ClipError: with the limit and the clip's value, for the user.
    """
    import av

    file = Path(path)
    if file.suffix.lower() not in ALLOWED_SUFFIXES:
        raise ClipError(f"unsupported file type {file.suffix or '(none)'!r}: upload a video ({', '.join(ALLOWED_SUFFIXES)})")
    size_mb = file.stat().st_size / 2**20
    if size_mb > max_mb:
        raise ClipError(f"the file is {size_mb:.1f} MB; the limit is {max_mb:g} MB")
    try:
        # skip_frame=all: FFmpeg's stream probing would otherwise decode the first frames, at any size.
        with av.open(str(file), options={"skip_frame": "all"}) as container:
            if not container.streams.video:
                raise ClipError("the file has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if not width or not height:
                raise ClipError("the video stream does not declare its frame size")
            if width * height > max_pixels:
                raise ClipError(f"the frames are {width}x{height} ({width * height:,} pixels); the limit is "
                                f"{max_pixels:,} pixels per frame (e.g. 1920x1080)")
            seconds = None
            if container.duration:
                seconds = container.duration / 1_000_000
            elif stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            if seconds is not None and seconds > max_seconds:
                raise ClipError(f"the clip lasts {seconds:.1f} s; the limit is {max_seconds:g} s")
            if stream.frames and stream.frames > max_frames:
                raise ClipError(f"the clip has {stream.frames} frames; the limit is {max_frames} frames")
            frames, counted = count_stream(container, stream, max_seconds, max_frames)
    except ClipError:
        raise
    except Exception as err:  # PyAV raises many FFmpeg error types for damaged files
        raise ClipError(f"the file could not be read as a video ({type(err).__name__}); it may be corrupt") from err
    if frames == 0:
        raise ClipError("the video stream has no frames")
    return {"size_mb": size_mb, "seconds": seconds if seconds is not None else counted, "frames": frames,
            "width": width, "height": height}


def count_stream(container: Any, stream: Any, max_seconds: float, max_frames: int) -> tuple[int, float]:
    """(frames, seconds) of a video stream, counted from its packets without decoding them.

    Raises:
        ClipError: as soon as the count passes ``max_frames`` or the packets' timestamps span more than
            ``max_seconds``.
    """
    frames, first, end = 0, None, None
    time_base = float(stream.time_base) if stream.time_base else None
    for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's final empty packet
            continue
        frames += 1
        if frames > max_frames:
            raise ClipError(f"the clip has more than {max_frames} frames (counted in its stream); the limit is "
                            f"{max_frames} frames")
        if packet.pts is not None and time_base:
            start = packet.pts * time_base
            stop = start + (packet.duration or 0) * time_base
            first = start if first is None else min(first, start)
            end = stop if end is None else max(end, stop)
            if end - first > max_seconds:
                raise ClipError(f"the clip lasts at least {end - first:.1f} s (read from its stream); the limit "
                                f"is {max_seconds:g} s")
    return frames, (end - first) if first is not None else 0.0


def to_label(items: list[dict[str, Any]]) -> dict[str, float]:
    return {item["label"]: float(item["score"]) for item in items}


# ------------------------------------------------------------------------------------------ ensemble + examples
def file_digest(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


@dataclass
class EnsembleDemo:
    """The run's teacher ensemble and the dataset items behind the example clips."""

    model: Any
    dataset: Any
    collator: Any
    examples: dict[str, int] = field(default_factory=dict)  # clip digest -> dataset index

    def predict(self, index: int) -> tuple[dict[str, list[dict[str, Any]]], float]:
        started = time.perf_counter()
        batch = self.collator([self.dataset[index]])
        batch = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "labels"}
        with torch.no_grad():
            logits = self.model(**batch).logits
        seconds = time.perf_counter() - started
        names = ensemble_head_labels(self.model.config)
        probs = {head: value[0].float().softmax(-1) for head, value in logits.items()}
        if probs and any(p.ndim == 2 for p in probs.values()):
            probs = {h: (p.mean(0) if p.ndim == 2 else p) for h, p in probs.items()}
        results = {}
        for head, p in probs.items():
            labels = names.get(head) or [f"{head}_{i}" for i in range(p.numel())]
            scores, ids = p.topk(min(TOP_K, p.numel()))
            results[head] = [{"label": labels[i], "score": float(s)} for s, i in zip(scores.tolist(), ids.tolist())]
        if "action" not in results and "verb" in probs and "noun" in probs:
            verbs = names.get("verb") or [f"verb_{i}" for i in range(probs["verb"].numel())]
            nouns = names.get("noun") or [f"noun_{i}" for i in range(probs["noun"].numel())]
            joint = (probs["verb"][:, None] * probs["noun"][None, :]).flatten()
            scores, ids = joint.topk(min(TOP_K, joint.numel()))
            results["action"] = [{"label": f"{verbs[i // len(nouns)]} {nouns[i % len(nouns)]}", "score": float(s)}
                                 for s, i in zip(scores.tolist(), ids.tolist())]
        return results, seconds


def ensemble_head_labels(config: Any) -> dict[str, list[str]]:
    """Class names per head: the ensemble's own, else those of its teachers (they share the student's heads)."""
    if getattr(config, "head_labels", None):
        return dict(config.head_labels)
    for teacher in (getattr(config, "teachers", None) or {}).values():
        if isinstance(teacher, dict) and teacher.get("head_labels"):
            return dict(teacher["head_labels"])
    return {}


def load_ensemble_demo(student_source: str, examples_dir: Path, count: int = 3) -> tuple[EnsembleDemo | None, str]:
    """The ensemble of the student's run and example clips cut from its validation split, or (None, reason)."""
    override = os.environ.get("MMKD_ENSEMBLE")
    if override and override.lower() == "none":
        return None, "disabled (MMKD_ENSEMBLE=none)"
    student_dir = Path(student_source)
    ensemble_dir = Path(override) if override else student_dir.parent / "ensemble"
    if not (ensemble_dir / "config.json").is_file():
        return None, "no ensemble/ folder next to the student (only local runs carry one)"
    try:
        from transformers import AutoModel

        from mmkd_hf.data import MultimodalCollator, RunSettings

        model = AutoModel.from_pretrained(ensemble_dir).eval()
        teachers = list(getattr(model.config, "teacher_order", None) or model.config.teachers)
        modalities = sorted(set(teachers) | {"rgb"})
        # The run's own data settings (clip length, size, audio front end): exactly what the teachers were trained on.
        dataset = RunSettings.from_run_dir(ensemble_dir).load_dataset("validation", modalities, train=False)
        demo = EnsembleDemo(model=model, dataset=dataset, collator=MultimodalCollator(),
                            examples=write_examples(dataset, examples_dir, count))
        return demo, f"loaded from {ensemble_dir}"
    except Exception as err:  # the ensemble is an extra: the student demo works without it
        return None, f"not available ({type(err).__name__}: {err})"


def frames_to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Dataset frames as uint8 0-255: uint8 frames stay as they are, float frames in [0, 1] are scaled."""
    if frames.dtype == torch.uint8:
        return frames
    if not frames.is_floating_point():
        raise TypeError(f"frames must be uint8 or float in [0, 1], got {frames.dtype}")
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8)


#: H.264 settings of the example clips: near-lossless (crf 12) so the student sees what the dataset holds.
#: yuv420p keeps the clips playable in every browser (its chroma subsampling is most of the remaining loss);
#: tests/test_space_examples.py checks PSNR >= 30 dB against the dataset clip.
EXAMPLE_CODEC_OPTIONS = {"crf": "12", "preset": "medium"}


def write_mp4(path: Path, frames: np.ndarray, fps: int = 8) -> Path:
    """Writes uint8 frames ``[T, H, W, 3]`` as an H.264 mp4 that browsers play (even sides, yuv420p)."""
    import av

    if frames.dtype != np.uint8:
        raise TypeError(f"write_mp4 takes uint8 frames, got {frames.dtype}")
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options=EXAMPLE_CODEC_OPTIONS)
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_examples(dataset: Any, examples_dir: Path, count: int) -> dict[str, int]:
    """Writes the first ``count`` clips of ``dataset`` as ``example-<i>.mp4``; returns clip digest -> index."""
    examples_dir.mkdir(parents=True, exist_ok=True)
    examples = {}
    for index in range(min(count, len(dataset))):
        path = examples_dir / f"example-{index}.mp4"
        frames = frames_to_uint8(dataset[index]["pixel_values"])  # [T, 3, H, W]
        write_mp4(path, frames.permute(0, 2, 3, 1).numpy())
        examples[file_digest(path)] = index
    return examples


def synthetic_examples(examples_dir: Path, count: int = 2) -> list[Path]:
    """Small generated clips (a hand-like blob moving over a table) when no dataset clips are available."""
    examples_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = examples_dir / f"synthetic-{index}.mp4"
        if not path.exists():
            frames = np.zeros((16, 128, 128, 3), np.uint8)
            frames[..., :] = (90 + 40 * index, 70, 50)
            for t in range(16):
                x = 10 + t * 6 if index == 0 else 100 - t * 5
                frames[t, 50:80, x:x + 24] = (230, 190, 160)
            write_mp4(path, frames)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------ app
class SpaceApp:
    """Holds the loaded models; :meth:`predict` is the Space's one endpoint."""

    def __init__(self, source: str | None, examples_dir: Path | None = None,
                 max_mb: float | None = None, max_seconds: float | None = None, max_pixels: int | None = None,
                 max_frames: int | None = None):
        self.source = source
        self.max_mb = float(max_mb if max_mb is not None else os.environ.get("MMKD_MAX_UPLOAD_MB", 50))
        self.max_seconds = float(max_seconds if max_seconds is not None else os.environ.get("MMKD_MAX_SECONDS", 60))
        self.max_pixels = int(max_pixels if max_pixels is not None
                              else os.environ.get("MMKD_MAX_PIXELS", DEFAULT_MAX_PIXELS))
        self.max_frames = int(max_frames if max_frames is not None
                              else os.environ.get("MMKD_MAX_FRAMES", DEFAULT_MAX_FRAMES))
        self.examples_dir = Path(examples_dir or os.environ.get("MMKD_EXAMPLES_DIR")
                                 or Path(tempfile.gettempdir()) / "mmkd-space-examples")
        self._lock = threading.Lock()  # one inference at a time: the pipeline object is not re-entrant
        self.classifier = None
        self.ensemble: EnsembleDemo | None = None
        self.ensemble_status = "no student model"
        self.load_error = None
        self.last_ms_per_view: float | None = None  # latency of the latest student request, per view
        if source is None:
            self.load_error = ("No model: set MMKD_MODEL to a Hub repo id or a local model folder, or train one "
                               "with `accelerate launch train.py` (outputs/<run>/student).")
            return
        try:
            self.classifier = load_classifier(source)
        except Exception as err:
            self.load_error = f"The model {source!r} could not be loaded: {type(err).__name__}: {err}"
            return
        self.ensemble, self.ensemble_status = load_ensemble_demo(source, self.examples_dir)

    @property
    def compute_dtype(self) -> str:
        """The dtype the student runs in (the pipeline's ``compute_dtype``, e.g. ``bfloat16``), or ``"-"``."""
        if self.classifier is None:
            return "-"
        dtype = (getattr(self.classifier, "compute_dtype", None)
                 or getattr(getattr(self.classifier, "model", None), "dtype", None))
        return str(dtype).removeprefix("torch.") if dtype is not None else "-"

    def status_text(self) -> str:
        """Footer line: the student's compute dtype and device, and the latency of the latest request per view."""
        if self.classifier is None:
            return "Student: not loaded."
        latency = ("no request yet" if self.last_ms_per_view is None
                   else f"{self.last_ms_per_view:.0f} ms per view (end to end)")
        device = getattr(getattr(self.classifier, "device", None), "type", "cpu")
        return (f"Student runs in **{self.compute_dtype}** on {device} "
                f"(MMKD_COMPUTE_DTYPE={os.environ.get('MMKD_COMPUTE_DTYPE') or 'auto'}) · last request: {latency}")

    @property
    def example_paths(self) -> list[Path]:
        if self.ensemble is not None and self.ensemble.examples:
            return sorted(self.examples_dir.glob("example-*.mp4"))
        return synthetic_examples(self.examples_dir)

    def predict(self, video: str | None, views: str):
        """Student top-5 verbs / nouns / actions for one clip (+ the ensemble's for dataset examples)."""
        if self.classifier is None:
            raise gr.Error(self.load_error or "no model loaded")
        if not video:
            raise gr.Error("Upload or record a clip first (mp4 or webm), or pick an example.")
        if views not in VIEW_CHOICES:
            raise gr.Error(f"unknown views setting {views!r}; choose one of {list(VIEW_CHOICES)}")
        num_clips, num_crops = VIEW_CHOICES[views]
        try:
            probe = probe_clip(video, self.max_mb, self.max_seconds, self.max_pixels, self.max_frames)
            with self._lock:
                started = time.perf_counter()
                result = self.classifier(video, top_k=TOP_K, num_clips=num_clips, num_crops=num_crops)
                seconds = time.perf_counter() - started
                self.last_ms_per_view = seconds * 1000 / (num_clips * num_crops)
        except ClipError as err:
            raise gr.Error(str(err)) from err
        except ValueError as err:  # decoding errors of the video processor name the problem
            raise gr.Error(f"The clip could not be processed: {err}") from err
        duration = f"{probe['seconds']:.1f} s clip · " if probe["seconds"] else ""
        info = (f"**Student** (RGB only): {seconds * 1000:.0f} ms end to end (decode + {num_clips * num_crops} view(s) "
                f"+ forward), {self.last_ms_per_view:.0f} ms per view · {duration}views used: "
                f"{num_clips * num_crops} ({num_clips} clip(s) x {num_crops} crop(s)) · "
                f"compute dtype {self.compute_dtype}")
        ensemble_outputs = [{}, {}, {}, f"Teacher ensemble: {self.ensemble_status}."]
        if self.ensemble is not None:
            index = self.ensemble.examples.get(file_digest(video))
            if index is None:
                ensemble_outputs[3] = ("Teacher ensemble: runs on the examples only (it needs optical flow, audio "
                                       "and object boxes, which an uploaded clip does not carry).")
            else:
                with self._lock:
                    teacher, teacher_seconds = self.ensemble.predict(index)
                ensemble_outputs = [to_label(teacher.get("verb", [])), to_label(teacher.get("noun", [])),
                                    to_label(teacher.get("action", [])),
                                    f"**Teacher ensemble** ({', '.join(self.ensemble.model.config.teachers)}): "
                                    f"{teacher_seconds * 1000:.0f} ms end to end (loading every modality + forward)."]
        return (to_label(result.get("verb", [])), to_label(result.get("noun", [])), to_label(result.get("action", [])),
                info, *ensemble_outputs)


def build_demo(app: SpaceApp) -> gr.Blocks:
    with gr.Blocks(title="mmkd-hf: multimodal distillation for egocentric action recognition") as demo:
        gr.Markdown(
            "# Multimodal distillation for egocentric action recognition\n"
            "A student that sees **RGB only**, distilled from teachers that also see optical flow, audio and "
            "object boxes (Radevski et al., ICCV 2023). Upload or record a short kitchen clip (mp4 / webm), or "
            "pick an example."
        )
        if app.load_error:
            gr.Markdown(f"**{app.load_error}**", elem_id="load-error")
        else:
            gr.Markdown(f"Model: `{app.source}` · teacher ensemble: {app.ensemble_status}", elem_id="model-info")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="clip", sources=["upload", "webcam"], elem_id="clip")
                views = gr.Radio(list(VIEW_CHOICES), value="1 view", label="views (temporal clips x spatial crops)")
                run = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column(scale=2):
                info = gr.Markdown(elem_id="student-info")
                with gr.Row():
                    verbs = gr.Label(num_top_classes=TOP_K, label="student: verbs", elem_id="student-verbs")
                    nouns = gr.Label(num_top_classes=TOP_K, label="student: nouns", elem_id="student-nouns")
                    actions = gr.Label(num_top_classes=TOP_K, label="student: actions", elem_id="student-actions")
                ensemble_info = gr.Markdown(elem_id="ensemble-info")
                with gr.Row():
                    t_verbs = gr.Label(num_top_classes=TOP_K, label="teacher ensemble: verbs")
                    t_nouns = gr.Label(num_top_classes=TOP_K, label="teacher ensemble: nouns")
                    t_actions = gr.Label(num_top_classes=TOP_K, label="teacher ensemble: actions")
        outputs = [verbs, nouns, actions, info, t_verbs, t_nouns, t_actions, ensemble_info]
        run.click(app.predict, inputs=[video, views], outputs=outputs, api_name="predict")
        if app.classifier is not None:
            gr.Examples(examples=[[str(p), "1 view"] for p in app.example_paths], inputs=[video, views],
                        outputs=outputs, fn=app.predict, cache_examples=False, run_on_click=True,
                        elem_id="examples", label="examples")
        # Re-rendered on every page load: the path the student runs (dtype) and the latest request's latency.
        gr.Markdown(app.status_text, elem_id="runtime-status")
    demo.queue(default_concurrency_limit=int(os.environ.get("MMKD_CONCURRENCY", 2)), max_size=64)
    return demo


def main() -> None:
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))))
    app = SpaceApp(default_model_source())
    demo = build_demo(app)
    demo.launch(allowed_paths=[str(app.examples_dir)])


if __name__ == "__main__":
    main()
