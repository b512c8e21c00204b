"""Pretrained Video Swin backbones: convert a Kinetics-400 checkpoint to a :class:`VideoSwinModel` folder, and
read the backbone weights that ``train.py --init_from`` starts every Video Swin of a run from.

Two checkpoint formats are recognised from their keys:

* **mmaction** (the Video Swin Transformer release, github.com/SwinTransformer/Video-Swin-Transformer, e.g.
  ``swin_tiny_patch244_window877_kinetics400_1k.pth``): ``{"state_dict": {"backbone.patch_embed.proj.weight",
  ..., "cls_head.fc_cls.weight"}}``, also a bare state dict and keys without the ``backbone.`` prefix. The
  backbone names are those of this package (``patch_embed.{proj,norm}``, ``layers.<i>.blocks.<j>.{norm1,
  attn.qkv, attn.proj, attn.relative_position_bias_table, attn.relative_position_index, norm2, mlp.fc1,
  mlp.fc2}``, ``layers.<i>.downsample.{reduction,norm}``, ``norm``); ``cls_head`` is dropped, as the authors'
  ``SwinModel`` does (src/modelling/models.py of github.com/gorjanradevski/multimodal-distillation).
* **torchvision** ``SwinTransformer3d`` (``swin3d_t``): ``features.*``, ``norm.*``, ``head.*``, renamed by
  :func:`~mmkd_hf.models.video_swin.convert_torchvision.convert_torchvision_swin3d_state_dict`.

The architecture (embedding width, depths, heads, window, patch, MLP ratio, input channels) is read from the
tensor shapes. Files are read with ``torch.load(weights_only=True)``: a checkpoint that pickles code is
refused before anything in it runs.

    mmkd-hf convert-backbone --checkpoint swin_tiny_patch244_window877_kinetics400_1k.pth --out swin-t-k400
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)

from ..utils import ForeignFolderError, check_output_folder, output_directory
from .multi_head_video_pipeline import REMOTE_PIPELINE_FILE
from .video_swin.configuration_video_swin import VideoSwinConfig
from .video_swin.convert_torchvision import convert_torchvision_swin3d_state_dict
from .video_swin.modeling_video_swin import VideoSwinModel

#: Where the paper's backbone comes from (named in the errors of a missing checkpoint).
KINETICS_SWIN_T_FILE = "swin_tiny_patch244_window877_kinetics400_1k.pth"
KINETICS_SWIN_T_SOURCE = (
    f"{KINETICS_SWIN_T_FILE} is the Kinetics-400 Video Swin-T of the Video Swin Transformer release "
    "(github.com/SwinTransformer/Video-Swin-Transformer)"
)
#: The configuration fields that define the backbone's parameters (what a checkpoint must match).
ARCHITECTURE_FIELDS = ("embed_dim", "depths", "num_heads", "window_size", "patch_size", "mlp_ratio", "qkv_bias",
                       "patch_norm", "num_channels")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".tar", ".safetensors")
DERIVED_BUFFER_SUFFIX = "relative_position_index"
_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.")
_MAX_WINDOW = 64
# numpy scalars in the ``meta`` of mmcv checkpoints (e.g. a best score): data, not code.
_NUMPY_SAFE_GLOBALS = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)), type(np.dtype(np.int64))]
try:  # numpy >= 2
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import scalar as _numpy_scalar
_NUMPY_SAFE_GLOBALS.append(_numpy_scalar)


class BackboneCheckpointError(ValueError):
    """A backbone checkpoint that cannot be used; the message is one line saying what to do."""


@dataclass(frozen=True)
class BackboneWeights:
    """Backbone weights in this package's names, with the architecture read from their shapes."""

    state_dict: dict[str, torch.Tensor]
    architecture: dict[str, Any]
    source: str
    format: str

    def describe(self) -> str:
        return describe_architecture(self.architecture)


def describe_architecture(values: Mapping[str, Any]) -> str:
    """``embed_dim 96, depths (2, 2, 6, 2), ...`` for the architecture fields present in ``values``."""
    return ", ".join(f"{name} {_plain(values[name])}" for name in ARCHITECTURE_FIELDS if name in values)


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


# ------------------------------------------------------------------------------------------------------------ reading


def load_weights_only(path: str | os.PathLike) -> Mapping[str, torch.Tensor]:
    """The state dict of a checkpoint file, read with the weights-only unpickler.

    Accepts ``{"state_dict": {...}}`` (mmaction / mmcv), ``{"model": {...}}`` and a bare state dict.

    Raises:
        BackboneCheckpointError: the file is missing, pickles code (refused: nothing in it runs) or holds no
            state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise BackboneCheckpointError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(_NUMPY_SAFE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = str(error).splitlines() or [type(error).__name__]
        reason = next((line.strip() for line in lines if "GLOBAL" in line), lines[0].strip())
        raise BackboneCheckpointError(
            f"{path}: refused, it is not a weights-only checkpoint (loading it would run code it pickles: "
            f"{reason}); re-save its state dict with torch.save(model.state_dict(), ...) from a source you trust"
        ) from None
    except (RuntimeError, EOFError, ValueError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0].strip()
        raise BackboneCheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint ({reason}); download it again"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping):
        raise BackboneCheckpointError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    tensors = {str(key): value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise BackboneCheckpointError(f"{path}: holds no tensors")
    return tensors


def checkpoint_format(state: Mapping[str, torch.Tensor]) -> str:
    """``"torchvision"`` (``features.*`` keys) or ``"mmaction"`` (``[backbone.]patch_embed.*``, ``layers.*``)."""
    if any(key.startswith("features.") for key in state):
        return "torchvision"
    return "mmaction"


def to_backbone_state_dict(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Renames a checkpoint (either format) to :class:`VideoSwinModel` keys; heads (``cls_head``, ``head``) dropped.

    Raises:
        BackboneCheckpointError: a torchvision key that belongs to no part of the model.
    """
    if checkpoint_format(state) == "torchvision":
        try:
            return convert_torchvision_swin3d_state_dict(state)
        except ValueError as error:
            raise BackboneCheckpointError(f"{source}: {error}") from None
    if any(key.startswith("backbone.") for key in state):
        # a whole recognizer: only its backbone is kept (``cls_head`` and the rest dropped), as in the authors' code
        return {key[len("backbone.") :]: value for key, value in state.items() if key.startswith("backbone.")}
    return {key: value for key, value in state.items() if not key.startswith("cls_head.")}


def window_size_from_bias_table(rows: int, tokens: int | None = None) -> tuple[int, int, int] | None:
    """The 3-D window with a square spatial part whose bias table has ``rows`` rows (and ``tokens`` tokens).

    ``rows = (2 Wt - 1)(2 Wh - 1)(2 Ww - 1)`` and ``tokens = Wt Wh Ww`` (the side of the position index). When
    only ``rows`` is known and several windows fit, the most cube-like one is taken.
    """
    found = []
    for side in range(1, _MAX_WINDOW + 1):
        spatial = (2 * side - 1) ** 2
        if rows % spatial or (rows // spatial) % 2 == 0:
            continue
        depth = (rows // spatial + 1) // 2
        if tokens is None or depth * side * side == tokens:
            found.append((depth, side, side))
    if not found:
        return None
    return min(found, key=lambda window: max(window) / min(window))


def architecture_from_state_dict(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, Any]:
    """The :class:`VideoSwinConfig` architecture fields that the backbone tensors imply.

    Raises:
        BackboneCheckpointError: the tensors are not those of a Video Swin backbone.
    """
    proj = state.get("patch_embed.proj.weight")
    if proj is None or proj.ndim != 5:
        some = ", ".join(list(state)[:3])
        raise BackboneCheckpointError(
            f"{source}: not a Video Swin backbone (no 5-D patch_embed.proj.weight; first keys: {some}); expected an "
            "mmaction Video Swin checkpoint (backbone.*) or a torchvision swin3d state dict (features.*)"
        )
    depths: dict[int, int] = {}
    for key in state:
        match = _BLOCK.match(key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            depths[stage] = max(depths.get(stage, 0), block + 1)
    if not depths or sorted(depths) != list(range(len(depths))):
        raise BackboneCheckpointError(f"{source}: its layers.<stage>.blocks.<block> keys do not form stages 0..N-1")
    num_heads, windows = [], set()
    for stage in range(len(depths)):
        table = state.get(f"layers.{stage}.blocks.0.attn.relative_position_bias_table")
        if table is None or table.ndim != 2:
            raise BackboneCheckpointError(
                f"{source}: missing layers.{stage}.blocks.0.attn.relative_position_bias_table")
        num_heads.append(int(table.shape[1]))
        index = state.get(f"layers.{stage}.blocks.0.attn.relative_position_index")
        tokens = int(index.shape[0]) if index is not None else None
        windows.add(window_size_from_bias_table(int(table.shape[0]), tokens))
    window = windows.pop() if len(windows) == 1 else None
    if window is None:
        raise BackboneCheckpointError(f"{source}: cannot read one 3-D window size from its relative-position tables")
    embed_dim = int(proj.shape[0])
    fc1 = state.get("layers.0.blocks.0.mlp.fc1.weight")
    return {
        "embed_dim": embed_dim,
        "depths": tuple(depths[stage] for stage in range(len(depths))),
        "num_heads": tuple(num_heads),
        "window_size": window,
        "patch_size": tuple(int(size) for size in proj.shape[2:]),
        "mlp_ratio": float(fc1.shape[0]) / embed_dim if fc1 is not None else 4.0,
        "qkv_bias": "layers.0.blocks.0.attn.qkv.bias" in state,
        "patch_norm": "patch_embed.norm.weight" in state,
        "num_channels": int(proj.shape[1]),
    }


def read_backbone_checkpoint(path: str | os.PathLike) -> BackboneWeights:
    """Backbone weights and architecture of an mmaction or torchvision checkpoint file (weights only)."""
    raw = load_weights_only(path)
    state = to_backbone_state_dict(raw, source=str(path))
    return BackboneWeights(state, architecture_from_state_dict(state, str(path)), str(path), checkpoint_format(raw))


def match_backbone_state_dict(weights: BackboneWeights, model: VideoSwinModel) -> dict[str, torch.Tensor]:
    """``weights`` checked against ``model``'s parameters: the state dict to load with ``strict=True``.

    ``relative_position_index`` buffers are derived from the window: absent ones take the model's value, present
    ones must equal it.

    Raises:
        BackboneCheckpointError: one line with the counts and first names of missing, unexpected and mis-shaped
            keys.
    """
    expected = model.state_dict()
    given = weights.state_dict
    unexpected = sorted(key for key in given if key not in expected)
    missing = sorted(key for key in expected if key not in given and not key.endswith(DERIVED_BUFFER_SUFFIX))
    shapes = sorted(f"{key} {tuple(given[key].shape)} vs {tuple(expected[key].shape)}"
                    for key in given if key in expected and given[key].shape != expected[key].shape)
    # the position index is derived from the window: one that differs means another token order
    other_index = sorted(key for key in given if key.endswith(DERIVED_BUFFER_SUFFIX) and key in expected
                         and given[key].shape == expected[key].shape and not torch.equal(given[key], expected[key]))
    problems = [f"{len(names)} {what} (first: {names[0]})"
                for what, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes),
                                    ("with another relative_position_index", other_index)) if names]
    if problems:
        raise BackboneCheckpointError(
            f"{weights.source}: keys do not match a Video Swin backbone of "
            f"{describe_architecture(model.config.to_dict())}: {'; '.join(problems)}"
        )
    return {key: given.get(key, value) for key, value in expected.items()}


def load_backbone_weights(model: VideoSwinModel, weights: BackboneWeights) -> VideoSwinModel:
    """Copies ``weights`` into ``model`` (strict); returns ``model``."""
    model.load_state_dict(match_backbone_state_dict(weights, model), strict=True)
    return model


# ------------------------------------------------------------------------------------------------------- folders


def _is_checkpoint_path(source: str) -> bool:
    return source.endswith(CHECKPOINT_SUFFIXES) or source.startswith((".", "/", "~")) or source.count("/") > 1


def check_backbone_source(source: str | os.PathLike) -> Path:
    """Where an ``--init_from`` value is, checked before a run starts: a local file or folder, or the local snapshot
    of a Hub repo (downloaded if needed; only its config and weights).

    Raises:
        BackboneCheckpointError: one line saying what is missing and how to get it (for the paper's Kinetics-400
            file, where it comes from).
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if _is_checkpoint_path(text):
        hint = f" ({KINETICS_SWIN_T_SOURCE})" if path.name == KINETICS_SWIN_T_FILE else ""
        raise BackboneCheckpointError(
            f"{text}: no such file or folder{hint}; download it and give its path, or the folder that "
            "`mmkd-hf convert-backbone --checkpoint FILE --out DIR` writes from it, or a Hub repo id "
            "(or 'none' for random weights)"
        )
    try:
        return Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors"]))
    except LocalEntryNotFoundError:
        raise BackboneCheckpointError(
            f"{text}: not a local file or folder, and the Hub repo is not in the local cache (offline or Hub "
            f"unreachable); download it while online with `hf download {text}`, or pass a local path"
        ) from None
    except (RepositoryNotFoundError, HFValidationError, HfHubHTTPError) as error:
        raise BackboneCheckpointError(
            f"{text}: not a local file or folder, nor a Hub model repo you can read ({type(error).__name__}); pass "
            "the path of a Video Swin checkpoint or model folder, or log in with `hf auth login` for a private repo"
        ) from None


def read_pretrained_backbone(source: str | os.PathLike) -> BackboneWeights:
    """Backbone weights from a checkpoint file, a model folder or a Hub repo id (:func:`check_backbone_source`).

    A file is converted on the fly (:func:`read_backbone_checkpoint`); a folder or repo is a ``save_pretrained``
    of :class:`VideoSwinModel` or ``VideoSwinForVideoClassification`` (its heads are ignored).

    Raises:
        BackboneCheckpointError: one line saying what is missing and how to get it.
    """
    text = os.fspath(source)
    path = check_backbone_source(text)
    if path.is_file():
        return read_backbone_checkpoint(path)
    return _read_model_folder(path, text)


def _read_model_folder(folder: Path, source: str) -> BackboneWeights:
    config_file = folder / "config.json"
    model_type = None
    if config_file.is_file():
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    if model_type != VideoSwinConfig.model_type:
        raise BackboneCheckpointError(
            f"{source}: not a Video Swin model folder (config.json model_type {model_type!r}, expected "
            f"{VideoSwinConfig.model_type!r}); convert a checkpoint with `mmkd-hf convert-backbone`"
        )
    backbone = VideoSwinModel.from_pretrained(folder)
    state = {key: value.detach().clone() for key, value in backbone.state_dict().items()}
    architecture = {name: _plain(getattr(backbone.config, name)) for name in ARCHITECTURE_FIELDS}
    return BackboneWeights(state, architecture, source, "folder")


def backbone_model(weights: BackboneWeights, **config_kwargs) -> VideoSwinModel:
    """A :class:`VideoSwinModel` of the weights' architecture holding the weights (eval mode)."""
    config = VideoSwinConfig(**{**weights.architecture, **config_kwargs})
    return load_backbone_weights(VideoSwinModel(config), weights).eval()


def convert_backbone(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, **config_kwargs) -> VideoSwinModel:
    """Writes a :class:`VideoSwinModel` folder (weights, config, code, video processor) from a checkpoint file.

    Args:
        checkpoint: an mmaction Video Swin checkpoint or a torchvision ``swin3d`` state dict.
        out_dir: the folder to write: new, empty or an earlier output of this command (replaced atomically); any
            other non-empty folder raises ``ForeignFolderError`` before anything is read.
        **config_kwargs: other :class:`VideoSwinConfig` fields (e.g. ``num_frames``, ``image_size``).
    """
    check_output_folder(out_dir, "convert-backbone")
    model = backbone_model(read_backbone_checkpoint(checkpoint), **config_kwargs)
    with output_directory(out_dir, "convert-backbone") as tmp:
        model.save_pretrained(tmp)
        _drop_classification_pipeline(tmp)
    return model


def _drop_classification_pipeline(folder: Path) -> None:
    # A backbone has no heads: the multi-head classification pipeline that RGB folders declare does not apply.
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.pop("custom_pipelines", None) is not None:
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / REMOTE_PIPELINE_FILE).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """``mmkd-hf convert-backbone``: returns 0 on success, 1 on an unusable checkpoint."""
    parser = argparse.ArgumentParser(
        prog="mmkd-hf convert-backbone",
        description="Convert a Kinetics-400 Video Swin checkpoint (mmaction, e.g. " + KINETICS_SWIN_T_FILE
        + ", or torchvision swin3d) to a VideoSwinModel folder that train.py --init_from can start from.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="the .pth checkpoint file")
    parser.add_argument("--out", required=True, type=Path, help="output folder: new, empty or an earlier "
                        "output of this command (replaced); any other non-empty folder is refused")
    parser.add_argument("--num-frames", type=int, default=16, help="frames per clip of the folder's video processor")
    parser.add_argument("--image-size", type=int, default=224, help="frame side of the folder's video processor")
    args = parser.parse_args(argv)
    try:
        model = convert_backbone(args.checkpoint, args.out, num_frames=args.num_frames, image_size=args.image_size)
    except (BackboneCheckpointError, ForeignFolderError) as error:
        print(f"mmkd-hf convert-backbone: {error}", file=sys.stderr)
        return 1
    print(f"wrote VideoSwinModel ({describe_architecture(model.config.to_dict())}) to {args.out}")
    return 0


__all__ = [
    "BackboneCheckpointError",
    "BackboneWeights",
    "KINETICS_SWIN_T_FILE",
    "architecture_from_state_dict",
    "backbone_model",
    "check_backbone_source",
    "convert_backbone",
    "load_backbone_weights",
    "load_weights_only",
    "read_backbone_checkpoint",
    "read_pretrained_backbone",
    "to_backbone_state_dict",
    "window_size_from_bias_table",
]


if __name__ == "__main__":
    sys.exit(main())
