"""Convert a checkpoint of the authors' code (github.com/gorjanradevski/multimodal-distillation) to a
``transformers`` model folder.

An experiment folder of the original code holds ``config.yaml`` (a yacs dump) and ``model_checkpoint.pt``
(a plain ``state_dict``, possibly with the ``_orig_mod.`` prefix of ``torch.compile``)::

    mmkd-hf convert-original --checkpoint EXP/model_checkpoint.pt --config EXP/config.yaml --out DIR \
        [--annotations-dir DIR]

``--annotations-dir`` names the classes of the heads: the EPIC-KITCHENS-100 annotations folder
(``EPIC_100_verb_classes.csv`` / ``EPIC_100_noun_classes.csv``, columns ``id,key,...``) for verb/noun heads, or
the Something-Something v2 labels (``something-something-v2-labels.json`` or ``labels.json``: template -> id) for
an action head. Without it the heads show ``verb_0``, ``verb_1``, ...

What is read from ``config.yaml`` (``yaml.safe_load``, so the *last* duplicate key wins, as yacs):

* ``MODEL_NAME``: ``swin`` -> :class:`VideoSwinForVideoClassification`, ``stlt`` -> :class:`STLTForVideoClassification`.
* ``TOTAL_ACTIONS.{VERB, NOUN, ACTION}``: every non-null entry is a head, renamed lower-case and ordered
  verb, noun, action.
* ``DATASET_TYPE``: ``video`` and every combined type (``video_flow``, ...) -> ``rgb``; ``flow``; ``audio``;
  ``layout``. Swin flow/audio checkpoints have 3 input channels, as in the original.
* ``NUM_FRAMES`` (yacs default 8).

The sizes of the networks were hard-coded in the original code, so the converter always builds
Video Swin-T / STLT default sizes (``config_overrides`` of :func:`convert_original_checkpoint` changes
them, for tests).

Key mapping (``original_to_hf_key``): strip ``_orig_mod.``, lower-case the head name after
``classifiers.``; every other key keeps its name (both models use the original module names; the STLT box
embedding names ``category_embeddings, box_embedding, score_embedding, side_embedding, state_embedding,
layer_norm`` are those of the authors' ``hand_models.py``, listed in ``STLT_ORIGINAL_KEY_RENAMES``).
``relative_position_index`` buffers are derived from the window size: they may be present or absent in
the checkpoint; when present they must equal the model's.
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import PreTrainedModel

from ..utils import ForeignFolderError, check_output_folder, output_directory
from .stlt.configuration_stlt import STLTConfig
from .stlt.modeling_stlt import STLTForVideoClassification
from .video_swin.configuration_video_swin import VideoSwinConfig
from .video_swin.modeling_video_swin import VideoSwinForVideoClassification

ORIGINAL_PREFIX = "_orig_mod."
HEAD_ORDER = ("VERB", "NOUN", "ACTION")
SUPPORTED_MODELS = ("swin", "stlt")
DERIVED_BUFFER_SUFFIX = "relative_position_index"
# Identity today (our STLT keeps the authors' module names); kept explicit so a rename on either side is
# one line here, and tested.
STLT_ORIGINAL_KEY_RENAMES: dict[str, str] = {
    "temporal_transformer.layout_embedding.category_box_embeddings.category_embeddings.": (
        "temporal_transformer.layout_embedding.category_box_embeddings.category_embeddings."
    ),
    "temporal_transformer.layout_embedding.category_box_embeddings.box_embedding.": (
        "temporal_transformer.layout_embedding.category_box_embeddings.box_embedding."
    ),
    "temporal_transformer.layout_embedding.category_box_embeddings.score_embedding.": (
        "temporal_transformer.layout_embedding.category_box_embeddings.score_embedding."
    ),
    "temporal_transformer.layout_embedding.category_box_embeddings.side_embedding.": (
        "temporal_transformer.layout_embedding.category_box_embeddings.side_embedding."
    ),
    "temporal_transformer.layout_embedding.category_box_embeddings.state_embedding.": (
        "temporal_transformer.layout_embedding.category_box_embeddings.state_embedding."
    ),
    "temporal_transformer.layout_embedding.category_box_embeddings.layer_norm.": (
        "temporal_transformer.layout_embedding.category_box_embeddings.layer_norm."
    ),
}
#: Class-name files per head, looked up in ``--annotations-dir`` (first found wins).
CLASS_NAME_FILES = {
    "verb": ("EPIC_100_verb_classes.csv",),
    "noun": ("EPIC_100_noun_classes.csv",),
    "action": ("something-something-v2-labels.json", "labels.json"),
}
_CLASSIFIER_KEY = re.compile(r"^classifiers\.([^.]+)\.(.+)$")
_MAX_LISTED_KEYS = 10


@dataclass(frozen=True)
class OriginalRunConfig:
    """What the converter needs from the authors' ``config.yaml``."""

    model_name: str
    heads: dict[str, int]
    modality: str
    num_frames: int
    dataset_type: str


def _modality_from_dataset_type(dataset_type: str, config_path: Path) -> str:
    if dataset_type in ("flow", "audio", "layout"):
        return dataset_type
    if dataset_type.startswith("video"):
        return "rgb"
    raise ValueError(
        f"{config_path}: DATASET_TYPE {dataset_type!r} is not supported; expected video, flow, audio, layout "
        "or a combined video_* type"
    )


def read_original_config(config_path: str | Path) -> OriginalRunConfig:
    """Read MODEL_NAME, TOTAL_ACTIONS, DATASET_TYPE and NUM_FRAMES from the authors' ``config.yaml``.

    Args:
        config_path: the yacs dump of an experiment.

    Returns:
        The parsed settings, heads lower-cased and ordered verb, noun, action.

    Raises:
        ValueError: naming the file and the field that is missing or invalid.
    """
    config_path = Path(config_path)
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{config_path}: not a valid YAML file ({error})") from error
    if not isinstance(raw, Mapping):
        raise ValueError(f"{config_path}: expected a YAML mapping of config keys, got {type(raw).__name__}")

    model_name = str(raw.get("MODEL_NAME") or "").lower()
    if model_name not in SUPPORTED_MODELS:
        raise ValueError(f"{config_path}: MODEL_NAME must be one of {SUPPORTED_MODELS}, got {raw.get('MODEL_NAME')!r}")

    total_actions = raw.get("TOTAL_ACTIONS")
    if not isinstance(total_actions, Mapping):
        raise ValueError(f"{config_path}: TOTAL_ACTIONS must be a mapping {{VERB, NOUN, ACTION}}, got {total_actions!r}")
    unknown_heads = sorted(set(total_actions) - set(HEAD_ORDER))
    if unknown_heads:
        raise ValueError(f"{config_path}: TOTAL_ACTIONS has unknown heads {unknown_heads}; expected {list(HEAD_ORDER)}")
    heads = {}
    for name in HEAD_ORDER:
        value = total_actions.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{config_path}: TOTAL_ACTIONS.{name} must be a positive int or null, got {value!r}")
        heads[name.lower()] = value
    if not heads:
        raise ValueError(f"{config_path}: TOTAL_ACTIONS has no non-null head (VERB, NOUN or ACTION)")

    dataset_type = str(raw.get("DATASET_TYPE") or "")
    modality = "layout" if model_name == "stlt" else _modality_from_dataset_type(dataset_type, config_path)
    if model_name == "swin" and modality == "layout":
        raise ValueError(f"{config_path}: MODEL_NAME swin cannot read DATASET_TYPE layout")

    num_frames = raw.get("NUM_FRAMES", 8)
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"{config_path}: NUM_FRAMES must be a positive int, got {num_frames!r}")
    return OriginalRunConfig(
        model_name=model_name, heads=heads, modality=modality, num_frames=num_frames, dataset_type=dataset_type
    )


def load_original_state_dict(checkpoint_path: str | Path) -> dict[str, torch.Tensor]:
    """Load ``model_checkpoint.pt`` with the restricted (weights-only) unpickler.

    Raises:
        ValueError: if the file holds anything but tensors/containers (a non weights-only pickle) or is
            not a mapping of parameter names to tensors.
    """
    checkpoint_path = Path(checkpoint_path)
    try:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(
            f"{checkpoint_path}: cannot be loaded as a weights-only checkpoint (refusing to unpickle "
            f"arbitrary objects): {str(error).splitlines()[0]}"
        ) from error
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{checkpoint_path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{checkpoint_path}: entries that are not tensors: {not_tensors[:_MAX_LISTED_KEYS]}")
    return dict(state)


def original_to_hf_key(key: str, model_name: str) -> str:
    """Map one key of the authors' state dict to ours (see the module docstring)."""
    if key.startswith(ORIGINAL_PREFIX):
        key = key[len(ORIGINAL_PREFIX) :]
    match = _CLASSIFIER_KEY.match(key)
    if match:
        return f"classifiers.{match.group(1).lower()}.{match.group(2)}"
    if model_name == "stlt":
        for original, ours in STLT_ORIGINAL_KEY_RENAMES.items():
            if key.startswith(original):
                return ours + key[len(original) :]
    return key


def _list_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    more = f", ... ({len(keys) - _MAX_LISTED_KEYS} more)" if len(keys) > _MAX_LISTED_KEYS else ""
    return f"{len(keys)}: [{shown}{more}]"


def match_state_dict(
    original: Mapping[str, torch.Tensor], model: torch.nn.Module, model_name: str, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename ``original`` to the model's keys and check that it covers the model exactly.

    Derived ``relative_position_index`` buffers may be absent from the checkpoint (the model's own value is
    used) or present (they must equal the model's buffer, which catches a different window size).

    Raises:
        ValueError: listing unexpected keys, missing keys and shape mismatches (first 10 of each, with counts).
    """
    expected = model.state_dict()
    derived = {name: buffer for name, buffer in model.named_buffers() if name.endswith(DERIVED_BUFFER_SUFFIX)}
    renamed: dict[str, torch.Tensor] = {}
    for key, value in original.items():
        new_key = original_to_hf_key(key, model_name)
        if new_key in renamed:
            raise ValueError(f"{source}: two keys map to {new_key!r} (one of them is {key!r})")
        renamed[new_key] = value

    problems = []
    bad_derived = [
        key for key in renamed if key in derived and not torch.equal(renamed[key].to(derived[key].dtype), derived[key])
    ]
    unexpected = sorted(key for key in renamed if key not in expected and key not in derived)
    missing = sorted(key for key in expected if key not in renamed and key not in derived)
    mismatched = sorted(
        f"{key} (checkpoint {tuple(renamed[key].shape)}, model {tuple(expected[key].shape)})"
        for key in renamed
        if key in expected and renamed[key].shape != expected[key].shape
    )
    if unexpected:
        problems.append(f"unexpected keys {_list_keys(unexpected)}")
    if missing:
        problems.append(f"missing keys {_list_keys(missing)}")
    if mismatched:
        problems.append(f"shape mismatches {_list_keys(mismatched)}")
    if bad_derived:
        problems.append(
            f"relative_position_index buffers differ from the model's (other window size?) {_list_keys(bad_derived)}"
        )
    if problems:
        raise ValueError(f"{source} does not match the {model_name} model: " + "; ".join(problems))

    state = {key: value for key, value in renamed.items() if key in expected}
    for key in expected:
        if key not in state:  # a derived buffer that the checkpoint lacks: keep the model's own
            state[key] = expected[key]
    return state


def _class_names_from_csv(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"id", "key"} <= set(reader.fieldnames or ()):
            raise ValueError(
                f"{path}: expected columns id,key (the EPIC-KITCHENS-100 class list), got {reader.fieldnames}")
        try:
            names = {int(row["id"]): row["key"] for row in reader}
        except ValueError as error:
            raise ValueError(f"{path}: an id is not an integer ({error})") from None
    return _in_id_order(names, path)


def _class_names_from_json(path: Path) -> list[str]:
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
        names = {int(index): str(template) for template, index in labels.items()}
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{path}: expected a JSON object template -> class id ({error})") from None
    return _in_id_order(names, path)


def _in_id_order(names: Mapping[int, str], path: Path) -> list[str]:
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{path}: class ids must be 0..{len(names) - 1} without gaps")
    return [names[index] for index in range(len(names))]


def read_head_labels(annotations_dir: str | Path, heads: Mapping[str, int]) -> dict[str, list[str]]:
    """Class names of every head from the dataset's annotation files (see ``CLASS_NAME_FILES``).

    Raises:
        ValueError: one line naming the folder and the files it lacks, or a class count that differs from the head.
    """
    folder = Path(annotations_dir)
    labels = {}
    for head, size in heads.items():
        candidates = CLASS_NAME_FILES.get(head, ())
        path = next((folder / name for name in candidates if (folder / name).is_file()), None)
        if path is None:
            wanted = " or ".join(candidates) or f"a class list for head {head!r}"
            raise ValueError(
                f"--annotations-dir {folder}: no {wanted} there; pass the folder of the dataset's annotations "
                "(EPIC-KITCHENS-100: github.com/epic-kitchens/epic-kitchens-100-annotations) or leave the option out"
            )
        names = _class_names_from_csv(path) if path.suffix == ".csv" else _class_names_from_json(path)
        if len(names) != size:
            raise ValueError(f"{path}: {len(names)} classes, but the checkpoint's {head} head has {size}")
        labels[head] = names
    return labels


def build_model(run: OriginalRunConfig, config_overrides: Mapping[str, Any] | None = None,
                head_labels: Mapping[str, list[str]] | None = None) -> PreTrainedModel:
    """A randomly initialised model of the original run's architecture (default sizes + overrides, class names)."""
    overrides = dict(config_overrides or {})
    if head_labels:
        overrides.setdefault("head_labels", dict(head_labels))
    if run.model_name == "stlt":
        kwargs = {"heads": run.heads, "num_frames": run.num_frames, **overrides}
        return STLTForVideoClassification(STLTConfig(**kwargs))

    kwargs = {
        "heads": run.heads,
        "modality": run.modality,
        "num_channels": 3,  # the authors feed flow as (u, v, 0) and audio repeated to 3 channels
        "num_frames": run.num_frames,
        **overrides,
    }
    return VideoSwinForVideoClassification(VideoSwinConfig(**kwargs))


def convert_original_checkpoint(
    checkpoint_path: str | Path,
    config_path: str | Path,
    out_dir: str | Path,
    config_overrides: Mapping[str, Any] | None = None,
    annotations_dir: str | Path | None = None,
) -> PreTrainedModel:
    """Convert the authors' ``model_checkpoint.pt`` + ``config.yaml`` into a ``save_pretrained`` folder.

    Args:
        checkpoint_path: ``model_checkpoint.pt`` of an experiment of the original code.
        config_path: the experiment's ``config.yaml``.
        out_dir: destination folder: new, empty or an earlier output of this command (recognised by its
            ``.mmkd-hf-output.json``), replaced atomically (safetensors + config.json + model code); any other
            non-empty folder raises ``ForeignFolderError`` before anything is read.
        config_overrides: extra config fields (e.g. tiny sizes in tests); the original sizes were hard-coded.
        annotations_dir: the dataset's annotations folder, for the heads' class names (``read_head_labels``).

    Returns:
        The converted model (eval mode).

    Raises:
        ValueError: invalid config, a non weights-only checkpoint, or keys that do not match.
    """
    check_output_folder(out_dir, "convert-original")
    run = read_original_config(config_path)
    head_labels = read_head_labels(annotations_dir, run.heads) if annotations_dir is not None else None
    original = load_original_state_dict(checkpoint_path)
    model = build_model(run, config_overrides, head_labels)
    state = match_state_dict(original, model, run.model_name, source=str(checkpoint_path))
    model.load_state_dict(state, strict=True)
    model.eval()
    with output_directory(out_dir, "convert-original") as tmp:
        model.save_pretrained(tmp)
    return model


def main(argv: list[str] | None = None) -> int:
    """``mmkd-hf convert-original``: returns 0 on success, 1 on a conversion error."""
    parser = argparse.ArgumentParser(
        prog="mmkd-hf convert-original",
        description="Convert a checkpoint of the authors' code (Video Swin or STLT) to a transformers model folder.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="the experiment's model_checkpoint.pt")
    parser.add_argument("--config", required=True, type=Path, help="the experiment's config.yaml")
    parser.add_argument("--out", required=True, type=Path, help="output folder: new, empty or an earlier "
                        "output of this command (replaced); any other non-empty folder is refused")
    parser.add_argument(
        "--annotations-dir", type=Path, default=None,
        help="the dataset's annotations folder, for the class names of the heads (EPIC-KITCHENS-100: "
             "EPIC_100_verb_classes.csv and EPIC_100_noun_classes.csv; SSv2: something-something-v2-labels.json)",
    )
    args = parser.parse_args(argv)
    for flag, path in (("--checkpoint", args.checkpoint), ("--config", args.config)):
        if not path.is_file():
            print(f"mmkd-hf convert-original: {flag} {path} is not a file", file=sys.stderr)
            return 1
    if args.annotations_dir is not None and not args.annotations_dir.is_dir():
        print(f"mmkd-hf convert-original: --annotations-dir {args.annotations_dir} is not a folder", file=sys.stderr)
        return 1
    try:
        model = convert_original_checkpoint(args.checkpoint, args.config, args.out,
                                            annotations_dir=args.annotations_dir)
    except (ValueError, ForeignFolderError) as error:
        print(f"mmkd-hf convert-original: {error}", file=sys.stderr)
        return 1
    config = model.config
    print(f"wrote {type(model).__name__} ({config.modality}, heads {config.heads}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
