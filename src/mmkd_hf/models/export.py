"""Export a trained Video Swin classifier (the distilled student) to one file for deployment without this package.

``mmkd-hf export --model DIR --format onnx|pt2 --out FILE`` writes either

* ``pt2``: a ``torch.export`` program (``torch.export.save``), read back with ``torch.export.load(FILE).module()``;
* ``onnx``: an ONNX model (``torch.onnx.export(..., dynamo=True)``) for ONNX Runtime and other ONNX engines
  (needs the ``onnx`` extra: ``pip install "mmkd-hf[onnx]"``).

Both take one input ``pixel_values`` ``[batch, views, frames, 3, height, width]`` with a dynamic batch and a
dynamic number of views (frames and frame size are fixed at the model's ``num_frames`` and ``image_size``), in
``uint8`` (0-255) or ``float32`` (0-1) as chosen with ``--input-dtype``; scaling and the mean/std
normalisation happen inside the graph. They return one output per head, named ``logits_<head>`` (e.g.
``logits_verb``, ``logits_noun``), each ``[batch, views, classes]``: average the softmax over the views for a
multi-view prediction (as the ``mmkd-video-classification`` pipeline does).

The file carries what a runtime needs besides the graph, as JSON (:func:`export_metadata`): the heads and their
class names (``config.head_labels``) and the preprocessing (frames, frame size, input dtype and layout, mean and
std). ONNX keeps it in ``metadata_props`` (key ``mmkd_meta``); a ``pt2`` file in the ``extra_files`` entry
``mmkd_meta.json`` (``torch.export.load(FILE, extra_files={"mmkd_meta.json": ""})``).

The file is written atomically; an existing file is refused unless ``force=True`` (``--force``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel

from ..utils import atomic_path
from .video_swin.configuration_video_swin import VideoSwinConfig
from .video_swin.modeling_video_swin import VideoSwinForVideoClassification

#: Formats of :func:`export_student` and the file suffix each usually has.
FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}
#: ONNX ``metadata_props`` key, and ``pt2`` ``extra_files`` name, holding :func:`export_metadata` as JSON.
ONNX_METADATA_KEY = "mmkd_meta"
PT2_METADATA_FILE = "mmkd_meta.json"
INPUT_NAME = "pixel_values"
INPUT_DTYPES = {"float32": torch.float32, "uint8": torch.uint8}
#: ``--quantize`` choices (ONNX only).
QUANTIZATIONS = ("int8",)
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")
ONNX_INSTALL_HINT = 'pip install "mmkd-hf[onnx]"'
#: Upper bounds of the dynamic axes (torch.export needs finite ranges to reason about them).
MAX_BATCH, MAX_VIEWS = 1024, 64


class ExportError(ValueError):
    """The export cannot run (unknown format, missing ``onnx`` extra, unsupported model, existing file)."""


class LogitsTuple(torch.nn.Module):
    """The classifier with a tensor input and a tuple of per-head logits (in ``heads`` order), as exporters want."""

    def __init__(self, model: VideoSwinForVideoClassification) -> None:
        super().__init__()
        self.model = model
        self.heads = list(model.config.heads)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.model(pixel_values=pixel_values).logits
        return tuple(logits[head] for head in self.heads)


def onnx_available() -> bool:
    """Whether ``onnx``, ``onnxscript`` and ``onnxruntime`` (the ``onnx`` extra) are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ONNX_MODULES)


def output_names(heads: list[str]) -> list[str]:
    """``logits_<head>`` for every head: the names of the exported outputs."""
    return [f"logits_{head}" for head in heads]


def load_classifier(model_dir: str | os.PathLike) -> VideoSwinForVideoClassification:
    """The Video Swin classifier of a ``save_pretrained`` folder in float32 eval mode.

    Raises:
        ExportError: the folder has no ``config.json`` or holds another kind of model (an ensemble, STLT, ...).
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"{model_dir} is not a model folder (no config.json)")
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (ValueError, KeyError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"{model_dir} is not a Video Swin classifier folder ({first_line})") from None
    if not isinstance(config, VideoSwinConfig):
        raise ExportError(f"{model_dir} holds a {type(config).__name__} model; only Video Swin classifiers "
                          "(the distilled student, a video teacher) can be exported")
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32)
    if not isinstance(model, VideoSwinForVideoClassification):
        raise ExportError(f"{model_dir} holds a {type(model).__name__}, not a VideoSwinForVideoClassification")
    return model.eval()


def export_metadata(config: VideoSwinConfig, input_dtype: str) -> dict[str, Any]:
    """What a runtime needs besides the graph: heads, class names, input layout and preprocessing."""
    heads = list(config.heads)
    return {
        "format_version": 1,
        "model_type": config.model_type,
        "modality": config.modality,
        "input_name": INPUT_NAME,
        "input_layout": "[batch, views, frames, channels, height, width]",
        "input_dtype": input_dtype,
        "input_range": "0-255" if input_dtype == "uint8" else "0-1",
        "normalization": "inside the model: (x / 255 if uint8) then (x - mean) / std per channel",
        "num_frames": config.num_frames,
        "image_size": config.image_size,
        "num_channels": config.num_channels,
        "image_mean": list(config.image_mean),
        "image_std": list(config.image_std),
        "dynamic_axes": ["batch", "views"],
        "heads": dict(config.heads),
        "outputs": dict(zip(heads, output_names(heads))),
        "output_layout": "[batch, views, classes] logits; average the softmax over views",
        "head_labels": {head: list(names) for head, names in (config.head_labels or {}).items()},
    }


def example_input(config: VideoSwinConfig, input_dtype: str, batch: int = 2, views: int = 2) -> torch.Tensor:
    """A clip batch of the exported input's shape and dtype (2 x 2: neither axis is traced as 1)."""
    shape = (batch, views, config.num_frames, config.num_channels, config.image_size, config.image_size)
    clips = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    return (clips * 255).round().to(torch.uint8) if input_dtype == "uint8" else clips


def dynamic_shapes() -> dict[str, dict[int, Any]]:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    views = torch.export.Dim("views", min=1, max=MAX_VIEWS)
    return {INPUT_NAME: {0: batch, 1: views}}


def _write_pt2(wrapped: LogitsTuple, example: torch.Tensor, path: Path, metadata: dict) -> None:
    program = torch.export.export(wrapped, (example,), dynamic_shapes=dynamic_shapes())
    torch.export.save(program, path, extra_files={PT2_METADATA_FILE: json.dumps(metadata)})


def _write_onnx(wrapped: LogitsTuple, example: torch.Tensor, path: Path, metadata: dict) -> None:
    import onnx

    program = torch.onnx.export(
        wrapped, (example,), dynamo=True, dynamic_shapes=dynamic_shapes(), input_names=[INPUT_NAME],
        output_names=output_names(wrapped.heads), verbose=False,
    )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {ONNX_METADATA_KEY: json.dumps(metadata)})
    if metadata.get("quantization") == "int8":
        with tempfile.TemporaryDirectory(dir=path.parent) as workdir:
            float_path = Path(workdir) / "float32.onnx"
            onnx.save_model(proto, str(float_path))
            quantize_onnx_int8(float_path, path)
        return
    onnx.save_model(proto, str(path))


def quantize_onnx_int8(source: Path, out: Path) -> None:
    """ONNX Runtime's dynamic int8 quantization of ``source`` into ``out``; the metadata is kept.

    Weights of the matrix products (linear layers) become int8 per output channel, activations are quantized
    per call; the attention products, normalisation and the rest stay float32. On CPUs with int8 dot products
    (AVX512-VNNI, AVX-VNNI, Arm dot product) the linear layers run about twice as fast as float32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logger = logging.getLogger()  # ONNX Runtime suggests its optional pre-processing on the root logger
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logger.setLevel(level)
    quantized = onnx.load(str(out))
    kept = {prop.key: prop.value for prop in onnx.load(str(source), load_external_data=False).metadata_props}
    if {prop.key for prop in quantized.metadata_props} != set(kept):
        del quantized.metadata_props[:]
        onnx.helper.set_model_props(quantized, kept)
        onnx.save_model(quantized, str(out))


def export_student(model_dir: str | os.PathLike, out: str | os.PathLike, format: str, *,
                   input_dtype: str = "float32", quantize: str | None = None, force: bool = False) -> dict[str, Any]:
    """Exports the Video Swin classifier of ``model_dir`` to ``out``; returns the metadata written into it.

    Args:
        model_dir: A ``save_pretrained`` folder of a ``VideoSwinForVideoClassification``.
        out: The file to write (atomically).
        format: ``"onnx"`` or ``"pt2"``.
        input_dtype: ``"float32"`` (clips in 0-1) or ``"uint8"`` (0-255) as the exported input.
        quantize: ``"int8"``: ONNX only, the linear layers' weights in int8 (:func:`quantize_onnx_int8`); None
            keeps float32.
        force: Replace an existing ``out``.

    Raises:
        ExportError: unknown format or input dtype, the ``onnx`` extra missing, not a Video Swin classifier,
            or ``out`` exists without ``force``.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; choose one of {sorted(FORMATS)}")
    if input_dtype not in INPUT_DTYPES:
        raise ExportError(f"unknown input dtype {input_dtype!r}; choose one of {sorted(INPUT_DTYPES)}")
    if quantize not in (None, *QUANTIZATIONS):
        raise ExportError(f"unknown quantization {quantize!r}; choose one of {sorted(QUANTIZATIONS)}")
    if quantize is not None and format != "onnx":
        raise ExportError(f"--quantize {quantize} needs --format onnx (ONNX Runtime quantizes the graph)")
    if format == "onnx" and not onnx_available():
        missing = [name for name in ONNX_MODULES if importlib.util.find_spec(name) is None] or list(ONNX_MODULES)
        raise ExportError(f"--format onnx needs {', '.join(missing)}: install the onnx extra, {ONNX_INSTALL_HINT}")
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out} is a folder; give the path of the file to write")
    if out.exists() and not force:
        raise ExportError(f"{out} exists; nothing was written (pass --force to replace it)")
    model = load_classifier(model_dir)
    metadata = export_metadata(model.config, input_dtype)
    if quantize is not None:
        metadata["quantization"] = quantize
    wrapped = LogitsTuple(model).eval()
    example = example_input(model.config, input_dtype)
    writer = _write_onnx if format == "onnx" else _write_pt2
    with torch.no_grad(), atomic_path(out) as tmp:
        writer(wrapped, example, tmp, metadata)
    return metadata


def read_pt2_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a ``pt2`` file written by :func:`export_student`."""
    extra_files = {PT2_METADATA_FILE: ""}
    torch.export.load(path, extra_files=extra_files)
    return json.loads(extra_files[PT2_METADATA_FILE])


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an ONNX file written by :func:`export_student` (needs ``onnx``)."""
    import onnx

    props = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[ONNX_METADATA_KEY])


def main(argv: list[str] | None = None) -> int:
    """``mmkd-hf export``: returns 0 on success, 1 on a one-line error."""
    parser = argparse.ArgumentParser(
        prog="mmkd-hf export",
        description="Export a Video Swin classifier folder (e.g. a run's student) to ONNX or a torch.export "
        "program: input pixel_values [batch, views, frames, 3, H, W] with dynamic batch and views, one output "
        "logits_<head> [batch, views, classes] per head, class names and preprocessing in the file's metadata.",
    )
    parser.add_argument("--model", required=True, type=Path, help="the model folder (save_pretrained)")
    parser.add_argument("--format", required=True, help="onnx (needs the onnx extra) or pt2 (torch.export)")
    parser.add_argument("--out", required=True, type=Path, help="the file to write (refused if it exists)")
    parser.add_argument("--input-dtype", default="float32", choices=sorted(INPUT_DTYPES),
                        help="dtype of the exported input: float32 clips in 0-1 (default) or uint8 in 0-255")
    parser.add_argument("--quantize", default=None, choices=QUANTIZATIONS,
                        help="onnx only: int8 weights for the linear layers (ONNX Runtime dynamic quantization; "
                        "about 2x faster linear layers on CPUs with int8 dot products)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    try:
        metadata = export_student(args.model, args.out, args.format, input_dtype=args.input_dtype,
                                  quantize=args.quantize, force=args.force)
    except (ExportError, OSError) as error:
        print(f"mmkd-hf export: {error}", file=sys.stderr)
        return 1
    outputs = ", ".join(metadata["outputs"].values())
    kind = args.format if args.quantize is None else f"{args.format}, {args.quantize}"
    print(f"wrote {args.out} ({kind}): input {INPUT_NAME} {metadata['input_dtype']} "
          f"[batch, views, {metadata['num_frames']}, {metadata['num_channels']}, {metadata['image_size']}, "
          f"{metadata['image_size']}], outputs {outputs}")
    return 0


__all__ = [
    "ExportError",
    "FORMATS",
    "LogitsTuple",
    "ONNX_METADATA_KEY",
    "PT2_METADATA_FILE",
    "export_metadata",
    "export_student",
    "load_classifier",
    "onnx_available",
    "quantize_onnx_int8",
    "read_onnx_metadata",
    "read_pt2_metadata",
]


if __name__ == "__main__":
    sys.exit(main())
