"""The multi-head video-classification pipeline (verb / noun / action), task ``"mmkd-video-classification"``.

The stock ``VideoClassificationPipeline`` calls ``logits.softmax`` on a tensor; the models of this package
return ``logits`` as a dict head -> ``[B, C]`` (or ``[B, V, C]`` with views). The subclass below delegates
to the stock pipeline for tensor logits and, for dict logits, returns **one ranked list per head**::

    >>> import mmkd_hf  # registers the custom task "mmkd-video-classification" (stock tasks are untouched)
    >>> from transformers import pipeline
    >>> classify = pipeline("mmkd-video-classification", model="<user>/mmkd-student")
    >>> classify("clip.mp4", top_k=3, num_clips=2, num_crops=3)
    {"verb": [{"label": "take", "score": 0.61}, ...],
     "noun": [{"label": "cup", "score": 0.40}, ...],
     "action": [{"label": "take cup", "score": 0.25}, ...]}

Compute dtype: ``compute_dtype="auto"`` (the default) runs a float32 model in bfloat16 on CPUs with native
bfloat16 arithmetic (AVX512-BF16 or AMX) and on GPUs (float16 where bfloat16 is not supported), and keeps
float32 elsewhere; ``compute_dtype="float32"`` keeps the reference precision. The chosen dtype is the
pipeline's ``compute_dtype`` attribute::

    >>> classify = pipeline("mmkd-video-classification", model="<user>/mmkd-student", compute_dtype="float32")

Label names come from ``config.head_labels``. Scores are softmax probabilities, averaged over the views
when ``num_clips * num_crops > 1``. For models with ``verb`` and ``noun`` heads but no ``action`` head (EPIC),
the ``action`` list ranks verb x noun pairs by the product of their probabilities (the EPIC-KITCHENS
convention of ``compute_action_scores``).

Remote code: this file imports only ``transformers``/``torch``/stdlib. Every saved RGB Video Swin folder
carries a copy of it (``pipeline_mmkd_video.py``) declared in ``config.custom_pipelines`` as its single custom
pipeline, so without this package ``transformers`` infers the task::

    >>> classify = pipeline(model="<user>/mmkd-student", trust_remote_code=True)

The folder declares the pipeline under its own key (``REMOTE_TASK``, not ``TASK``): a key equal to the task
registered by this package would make ``transformers`` demand ``trust_remote_code=True`` even from users
who imported the package.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForVideoClassification
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.video_classification import VideoClassificationPipeline

#: The task this package registers with ``transformers`` on import.
TASK = "mmkd-video-classification"
#: The key under which saved folders declare their copy of this pipeline (see the module docstring).
REMOTE_TASK = "multi-head-video-classification"
REMOTE_PIPELINE_FILE = "pipeline_mmkd_video.py"
HEAD_ORDER = ("verb", "noun", "action")
#: ``compute_dtype`` of a pipeline built without one (see :func:`resolve_compute_dtype`).
DEFAULT_COMPUTE_DTYPE = "auto"
_DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX tiles), where bf16 beats fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_compute_dtype(compute_dtype: str | torch.dtype | None, device: torch.device,
                          model_dtype: torch.dtype) -> torch.dtype:
    """The dtype a pipeline runs its model in.

    Args:
        compute_dtype: ``"auto"``: a float32 model runs in bfloat16 on a CPU with native bfloat16
            (:func:`cpu_has_fast_bfloat16`) or a GPU supporting it, float16 on other GPUs, float32 otherwise;
            a model loaded in another dtype (``pipeline(..., dtype=...)``) keeps it. ``None`` or ``"model"``:
            the model's dtype. ``"float32"`` / ``"bfloat16"`` / ``"float16"`` or a ``torch.dtype``: that dtype.
        device: The model's device.
        model_dtype: The dtype of the model's parameters.

    Raises:
        ValueError: an unknown ``compute_dtype``.
    """
    if isinstance(compute_dtype, torch.dtype):
        return compute_dtype
    if compute_dtype in (None, "model"):
        return model_dtype
    if compute_dtype in _DTYPE_NAMES:
        return _DTYPE_NAMES[compute_dtype]
    if compute_dtype != "auto":
        raise ValueError(f"compute_dtype must be 'auto', 'model', {sorted(_DTYPE_NAMES)} or a torch.dtype, "
                         f"got {compute_dtype!r}")
    if model_dtype != torch.float32:
        return model_dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bfloat16():
        return torch.bfloat16
    return torch.float32


def head_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities of one sample's head logits ``[C]`` or ``[V, C]`` (averaged over views)."""
    probs = logits.float().softmax(dim=-1)
    return probs.mean(dim=0) if probs.ndim == 2 else probs


def ranked(probs: torch.Tensor, names: list[str], top_k: int) -> list[dict[str, Any]]:
    """The ``top_k`` most probable classes as ``[{"label", "score"}]``, best first."""
    scores, ids = probs.topk(min(top_k, probs.numel()))
    return [{"label": names[i] if i < len(names) else str(i), "score": float(s)} for s, i in zip(scores.tolist(), ids.tolist())]


def action_from_verb_noun(verb: torch.Tensor, noun: torch.Tensor, verb_names: list[str], noun_names: list[str],
                          top_k: int) -> list[dict[str, Any]]:
    """Top-k verb x noun pairs by ``p(verb) * p(noun)``, labelled ``"<verb> <noun>"``."""
    joint = verb[:, None] * noun[None, :]
    scores, flat = joint.flatten().topk(min(top_k, joint.numel()))
    results = []
    for score, index in zip(scores.tolist(), flat.tolist()):
        v, n = divmod(index, noun.numel())
        results.append({"label": f"{verb_names[v]} {noun_names[n]}", "score": float(score), "verb_id": v, "noun_id": n})
    return results


class MultiHeadVideoClassificationPipeline(VideoClassificationPipeline):
    """``VideoClassificationPipeline`` that also understands dict (multi-head) logits.

    Constructor argument (through ``pipeline(..., compute_dtype=...)``):
        compute_dtype: ``"auto"`` (default), ``"model"``, ``"float32"``, ``"bfloat16"``, ``"float16"`` or a
            ``torch.dtype`` (see :func:`resolve_compute_dtype`). The model is cast in place; the chosen dtype
            is the ``compute_dtype`` attribute. Inputs stay float32 up to the model, which normalises them in
            float32 and casts them itself.

    Call arguments (besides the stock ``top_k``, ``num_frames``, ``function_to_apply``):
        num_clips: Temporal clips per video (views along time), if the video processor supports it.
        num_crops: Spatial crops per clip (1 or 3), if the video processor supports it.

    Returns, for dict logits, ``{head: [{"label", "score"}, ...]}`` (plus ``"action"`` built from verb and
    noun when the model has no action head); for tensor logits, the stock list of ``{"label", "score"}``.
    """

    def __init__(self, *args, compute_dtype: str | torch.dtype | None = DEFAULT_COMPUTE_DTYPE, **kwargs):
        super().__init__(*args, **kwargs)
        model_dtype = getattr(self.model, "dtype", torch.float32)
        self.compute_dtype = resolve_compute_dtype(compute_dtype, self.model.device, model_dtype)
        if self.compute_dtype != model_dtype:
            self.model.to(self.compute_dtype)

    def check_model_type(self, supported_models):
        # Multi-head models of this package follow the `config.heads` contract; others go through the stock check.
        if isinstance(getattr(self.model.config, "heads", None), dict):
            return
        super().check_model_type(supported_models)

    def _sanitize_parameters(self, top_k=None, num_frames=None, frame_sampling_rate=None, function_to_apply=None,
                             num_clips=None, num_crops=None):
        preprocess, forward, postprocess = super()._sanitize_parameters(
            top_k=top_k, num_frames=num_frames, frame_sampling_rate=frame_sampling_rate,
            function_to_apply=function_to_apply,
        )
        for name, value in (("num_clips", num_clips), ("num_crops", num_crops)):
            if value is not None:
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name} must be a positive int, got {value!r}")
                preprocess[name] = value
        return preprocess, forward, postprocess

    def preprocess(self, video, num_frames=None, frame_sampling_rate=1, num_clips=None, num_crops=None):
        views = {"num_clips": num_clips, "num_crops": num_crops}
        requested = {k: v for k, v in views.items() if v is not None}
        casts_itself = isinstance(getattr(self.model.config, "heads", None), dict)  # models of this package
        if self.video_processor is None or not (requested or casts_itself):
            if requested:
                raise ValueError("num_clips / num_crops need a video processor that supports them")
            return super().preprocess(video, num_frames=num_frames, frame_sampling_rate=frame_sampling_rate)
        supported = getattr(self.video_processor, "valid_kwargs", None)
        supported = getattr(supported, "__annotations__", {})
        unsupported = [name for name in requested if name not in supported]
        if unsupported:
            raise ValueError(f"the video processor {type(self.video_processor).__name__} does not support {unsupported}")
        if num_frames is None:
            num_frames = self.model.config.num_frames
        inputs = self.video_processor(video, num_frames=num_frames, do_sample_frames=True, return_tensors="pt",
                                      **requested)
        # The models of this package normalise float32 clips and cast them to their dtype themselves.
        return inputs if casts_itself else inputs.to(self.dtype)

    def postprocess(self, model_outputs, top_k=5, function_to_apply=None):
        logits = model_outputs["logits"]
        if not isinstance(logits, dict):
            return super().postprocess(model_outputs, top_k=top_k, function_to_apply=function_to_apply)
        if function_to_apply not in (None, "softmax"):
            raise ValueError(f"multi-head outputs support function_to_apply='softmax' only, got {function_to_apply!r}")
        config = self.model.config
        label_names = dict(getattr(config, "head_labels", None) or {})
        probabilities = {head: head_probabilities(value[0]) for head, value in logits.items()}
        names = {head: list(label_names.get(head) or [f"{head}_{i}" for i in range(p.numel())])
                 for head, p in probabilities.items()}
        results = {head: ranked(p, names[head], top_k) for head, p in probabilities.items()}
        if "action" not in results and "verb" in results and "noun" in results:
            results["action"] = action_from_verb_noun(
                probabilities["verb"], probabilities["noun"], names["verb"], names["noun"], top_k
            )
        # Saved configs sort their keys, so present the EPIC heads in their usual order, then any others.
        order = [head for head in HEAD_ORDER if head in results] + [h for h in results if h not in HEAD_ORDER]
        return {head: results[head] for head in order}


def register_pipeline() -> None:
    """Registers the custom task ``"mmkd-video-classification"`` (no stock task changes). Idempotent."""
    current = PIPELINE_REGISTRY.supported_tasks.get(TASK, {})
    if current.get("impl") is MultiHeadVideoClassificationPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK,
        pipeline_class=MultiHeadVideoClassificationPipeline,
        pt_model=AutoModelForVideoClassification,
        type="video",
    )


def remote_pipeline_declaration() -> dict[str, dict[str, Any]]:
    """The ``config.custom_pipelines`` entry naming the copy of this file saved beside a model."""
    return {
        REMOTE_TASK: {
            "impl": f"{Path(REMOTE_PIPELINE_FILE).stem}.{MultiHeadVideoClassificationPipeline.__name__}",
            "pt": ["AutoModelForVideoClassification"],
            "type": "video",
        }
    }


def copy_pipeline_code(model_dir: str | os.PathLike) -> Path:
    """Writes this file into ``model_dir`` as ``pipeline_mmkd_video.py``; returns its path."""
    target = Path(model_dir) / REMOTE_PIPELINE_FILE
    _atomic_write(target, Path(inspect.getsourcefile(MultiHeadVideoClassificationPipeline)).read_text(encoding="utf-8"))
    return target


def add_remote_pipeline(model_dir: str | os.PathLike) -> Path:
    """Ships this pipeline with an already saved model folder, for ``trust_remote_code=True`` users.

    Copies this file into ``model_dir`` as ``pipeline_mmkd_video.py`` and declares it in ``config.json``
    under ``custom_pipelines``, so ``pipeline(model=folder_or_repo_id, trust_remote_code=True)`` picks it
    without this package. (Models of this package do this themselves in ``save_pretrained``.)

    Args:
        model_dir: A ``save_pretrained`` folder (must hold ``config.json``).

    Returns:
        The path of the copied pipeline file.

    Raises:
        FileNotFoundError: ``model_dir`` has no ``config.json``.
    """
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"add_remote_pipeline: {model_dir} has no config.json (not a save_pretrained folder)")
    target = copy_pipeline_code(model_dir)
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.setdefault("custom_pipelines", {}).update(remote_pipeline_declaration())
    _atomic_write(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return target


def _atomic_write(path: Path, text: str) -> None:
    # Local helper (not mmkd_hf.utils) so that this file stays importable as remote code.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


__all__ = [
    "DEFAULT_COMPUTE_DTYPE",
    "REMOTE_PIPELINE_FILE",
    "REMOTE_TASK",
    "TASK",
    "MultiHeadVideoClassificationPipeline",
    "add_remote_pipeline",
    "copy_pipeline_code",
    "cpu_has_fast_bfloat16",
    "register_pipeline",
    "remote_pipeline_declaration",
    "resolve_compute_dtype",
]
