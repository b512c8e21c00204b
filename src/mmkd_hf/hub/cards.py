"""Model and dataset cards (``README.md``) rendered from ``hub_cards/`` templates with ``huggingface_hub``.

A model card has YAML metadata (``ModelCardData``: ``library_name``, ``pipeline_tag``, ``tags``,
``license``, ``datasets``, ``base_model`` and a ``model-index`` built from ``EvalResult`` objects) and a body
rendered from ``hub_cards/model_card_template.md`` (Jinja) for four kinds of model: ``student``,
``teacher``, ``ensemble`` and ``baseline``.

Choices:

* ``library_name: transformers`` (with the ``custom_code`` tag): every folder is a ``save_pretrained``
  checkpoint that ``transformers.AutoModel`` loads, with ``trust_remote_code=True`` or after
  ``import mmkd_hf``; the tag ``mmkd-hf`` names the package.
* A model without evaluation results gets a card anyway (cards are written when a model is saved, before the
  evaluation stage), with a visible **"Not evaluated"** section and no ``model-index``. ``mmkd-hf push``
  re-renders every card from the run's ``results.json``, so pushed cards carry the numbers.
* ``base_model`` of the student (and of the ensemble) lists the teachers' repo ids when they are known (at
  push time), with their revisions in the body.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from importlib.resources import files

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from ..data import dataset_card_info
from ..models.multi_head_video_pipeline import REMOTE_PIPELINE_FILE
from ..utils import atomic_write_text

KINDS = ("student", "teacher", "ensemble", "baseline")
# The templates are package data: ``mmkd_hf/hub/templates`` links to the repository's ``hub_cards/`` (their
# source) and wheels carry the files themselves (pyproject.toml ``package-data``).
TEMPLATE_DIR = files("mmkd_hf.hub").joinpath("templates")
MODEL_CARD_TEMPLATE = "model_card_template.md"
DATASET_CARD_TEMPLATE = "dataset_card_template.md"
HUB_URL = "https://huggingface.co"

PAPER_BIBTEX = """@inproceedings{radevski2023multimodal,
  title     = {Multimodal Distillation for Egocentric Action Recognition},
  author    = {Radevski, Gorjan and Grujicic, Dusan and Blaschko, Matthew and Moens, Marie-Francine and Tuytelaars, Tinne},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages     = {5213--5224},
  year      = {2023}
}"""

DATASET_PRETTY_NAMES = {
    "epic-kitchens-100": "EPIC-KITCHENS-100",
    "something-something-v2": "Something-Something v2",
    "something-else": "Something-Else",
    "mini-kitchens": "mini-kitchens (synthetic)",
}
ROLE_DESCRIPTIONS = {
    "student": "student: RGB-only Video Swin distilled from the multimodal teacher ensemble",
    "teacher": "teacher: trained on one modality with the ground-truth labels",
    "ensemble": "teacher ensemble: weighted combination of the per-modality teachers (distillation target)",
    "baseline": "baseline: the student's architecture trained without distillation",
}
METRIC_NAMES = {
    "top1": ("accuracy", "top-1 accuracy"),
    "top5": ("accuracy", "top-5 accuracy"),
    "ece": ("ece", "expected calibration error"),
    "nll": ("nll", "negative log-likelihood"),
}
RECIPE_FIELDS = {
    "common": ("dataset", "preset", "num_frames", "image_size", "seed", "weight_decay", "warmup_ratio",
               "max_grad_norm"),
    "teacher": ("teacher_epochs", "teacher_batch_size", "teacher_learning_rate", "layout_learning_rate"),
    "ensemble": ("teachers", "weighting_scheme", "weights_temperature", "combine_space", "calibrate_ensemble",
                 "held_out_fraction"),
    "student": ("teachers", "student_epochs", "student_batch_size", "student_learning_rate", "temperature",
                "kd_weight", "ce_weight", "weighting_scheme", "weights_temperature", "combine_space", "calibrate_ensemble"),
    "baseline": ("student_epochs", "baseline_epochs", "student_batch_size", "student_learning_rate"),
}


# ------------------------------------------------------------------------------------------ inputs
def kind_from_unit(unit: str) -> str:
    """Card kind of a run unit: ``teacher-rgb`` -> teacher, ``baseline-rgb``/``omnivore`` -> baseline."""
    if unit.startswith("teacher"):
        return "teacher"
    if unit in ("ensemble", "student"):
        return unit
    if unit.startswith("baseline") or unit == "omnivore":
        return "baseline"
    raise ValueError(f"unknown model unit {unit!r}: expected teacher-<modality>, ensemble, student, baseline-*, omnivore")


def load_model_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a ``save_pretrained`` folder.

    Raises:
        FileNotFoundError: the folder or its ``config.json`` is missing.
        ValueError: ``config.json`` is not a JSON object.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist")
    path = model_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json: not a save_pretrained model folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def load_run_results(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``results.json`` of a run (``None`` when the run was not evaluated)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return None
    payload = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return payload


def model_results(results: Mapping[str, Any] | None, unit: str | None) -> dict[str, Any] | None:
    """This model's entry: ``results`` may be a whole ``results.json`` payload (``{"models": {unit: ...}}``),
    a ``metrics.json`` (``{"metrics": {...}}``) or already one model's result dict."""
    if not results:
        return None
    if "models" in results and isinstance(results["models"], Mapping):
        entry = results["models"].get(unit) if unit else None
        return dict(entry) if entry else None
    if "metrics" in results and isinstance(results["metrics"], Mapping):
        return dict(results["metrics"])
    return dict(results)


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def metric_rows(result: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Flattens a result into rows ``{"head", "key", "metric", "value"}`` (top-1/top-5 accuracy, ECE, ...).

    Accepts ``{"heads": {head: {"top1": .., "top5": .., "ece": ..}}, "action": {...}}`` (the pipeline's
    ``results.json``) and the flat ``{head: {metric: value}}`` form of ``metrics.json``.
    """
    if not result:
        return []
    heads = result.get("heads") if isinstance(result.get("heads"), Mapping) else {
        key: value for key, value in result.items() if isinstance(value, Mapping)
    }
    heads = dict(heads)
    if "action" not in heads and isinstance(result.get("action"), Mapping):
        heads["action"] = result["action"]
    rows = []
    for head, metrics in heads.items():
        if not isinstance(metrics, Mapping):
            continue
        for key, value in metrics.items():
            number = _finite_number(value)
            if number is None or key not in METRIC_NAMES:
                continue
            rows.append({"head": head, "key": key, "metric": METRIC_NAMES[key][1], "value": round(number, 4)})
    return rows


def number_of_views(result: Mapping[str, Any] | None, run_config: Mapping[str, Any] | None) -> int | None:
    """Views per video of the evaluation (clips x crops): from the result, else the run's settings."""
    if result:
        for key in ("num_views", "views"):
            if isinstance(result.get(key), int):
                return int(result[key])
        if isinstance(result.get("num_clips"), int):
            return int(result["num_clips"]) * int(result.get("num_crops", 1))
    if run_config is not None and result:
        return int(run_config.get("num_test_clips", 1) or 1) * int(run_config.get("num_test_crops", 1) or 1)
    return None


def count_parameters(model_dir: Path) -> int | None:
    """Number of parameters stored in the folder's safetensors files (read from their headers only)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for path in files:
        with safe_open(str(path), framework="np") as handle:
            for name in handle.keys():
                total += math.prod(handle.get_slice(name).get_shape())
    return total


def _describe_model(config: Mapping[str, Any]) -> tuple[str, str, str]:
    """(architecture, input description, input key) from a model config."""
    model_type = str(config.get("model_type", "unknown"))
    if "video_swin" in model_type:
        modality = config.get("modality", "rgb")
        architecture = (f"Video Swin Transformer (embed {config.get('embed_dim')}, depths {config.get('depths')}, "
                        f"patch {config.get('patch_size')}, window {config.get('window_size')})")
        what = {"rgb": "RGB frames", "flow": "optical-flow frames (u, v)", "audio": "log-mel spectrogram frames"}
        inputs = f"{what.get(modality, modality)}: {config.get('num_frames')} x {config.get('image_size')}^2"
        key = {"rgb": "pixel_values", "flow": "flow_values", "audio": "audio_values"}.get(modality, "pixel_values")
        return architecture, inputs, key
    if "stlt" in model_type:
        return ("STLT: spatial-temporal layout transformer over object and hand boxes",
                "per-frame boxes, categories, scores, sides and contact states", "layout_boxes")
    if "ensemble" in model_type:
        teachers = config.get("teacher_order") or list(config.get("teachers") or {})
        return (f"weighted ensemble of {len(teachers)} teachers ({', '.join(teachers)})",
                "the whole multimodal batch (each teacher reads its own key)", "batch")
    return model_type, "see config.json", "pixel_values"


def training_recipe(kind: str, run_config: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The run settings that matter for a model of ``kind``, as (name, value) pairs."""
    if not run_config:
        return []
    names = RECIPE_FIELDS["common"] + RECIPE_FIELDS.get(kind, ())
    recipe = []
    for name in dict.fromkeys(names):
        value = run_config.get(name)
        if value is None or value == "":
            continue
        recipe.append((name.replace("_", " "), ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)))
    return recipe


def dataset_info(dataset: str | None) -> dict[str, str]:
    """Description / licence / citation of a dataset from the data layer (empty when unknown)."""
    if not dataset:
        return {}
    try:
        return dataset_card_info(dataset)
    except ValueError:  # not a dataset of the registry
        return {}


def _read_template(template_path: str | os.PathLike | None, name: str) -> str:
    """An explicit template file, else the packaged ``hub_cards`` template ``name`` (via importlib.resources)."""
    template = Path(template_path) if template_path else TEMPLATE_DIR.joinpath(name)
    if not template.is_file():
        raise FileNotFoundError(f"card template {template} not found")
    return template.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------ model cards
def render_model_card(
    kind: str,
    model_dir: str | os.PathLike,
    results: Mapping[str, Any] | None = None,
    *,
    unit: str | None = None,
    repo_id: str | None = None,
    dataset: str | None = None,
    dataset_repo_id: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    teachers: Sequence[Mapping[str, Any]] | None = None,
    license: str | None = None,
    eval_split: str = "validation",
    endpoint: str = HUB_URL,
    template_path: str | os.PathLike | None = None,
) -> ModelCard:
    """Renders the card of one saved model.

    Args:
        kind: ``"student"``, ``"teacher"``, ``"ensemble"`` or ``"baseline"``.
        model_dir: The ``save_pretrained`` folder (its ``config.json`` describes the model).
        results: This model's evaluation result, or a whole ``results.json`` payload (then ``unit`` picks
            the entry), or ``None`` (the card then says "Not evaluated").
        unit: Name of the model in the run (``student``, ``teacher-rgb``, ...); defaults to ``kind``.
        repo_id: Hub repo id used in the usage snippet (defaults to ``<user>/mmkd-<unit>``).
        dataset: Dataset name (``epic-kitchens-100``, ``mini-kitchens``, ...); defaults to the run's.
        dataset_repo_id: Hub id of the dataset, listed in ``datasets`` metadata when given.
        run_config: The run's options (``results.json["config"]`` or the run's ``config.json``).
        teachers: ``[{"name", "repo_id", "revision"}]`` of the teachers (student/ensemble cards).
        license: Licence id; defaults to the training dataset's licence.
        eval_split: Split the results were computed on.
        endpoint: Hub URL used for links.
        template_path: Jinja template; defaults to ``hub_cards/model_card_template.md``.

    Returns:
        A ``huggingface_hub.ModelCard``.

    Raises:
        ValueError: unknown ``kind``.
        FileNotFoundError: ``model_dir`` has no ``config.json``, or the template is missing.
    """
    if kind not in KINDS:
        raise ValueError(f"render_model_card: kind must be one of {KINDS}, got {kind!r}")
    model_dir = Path(model_dir)
    config = load_model_config(model_dir)
    unit = unit or kind
    run_config = dict(run_config or {})
    dataset = dataset or run_config.get("dataset")
    result = model_results(results, unit)
    rows = metric_rows(result)
    evaluated = bool(rows)
    views = number_of_views(result, run_config) if evaluated else None
    info = dataset_info(dataset)
    license = license or info.get("license") or "other"
    pretty_dataset = DATASET_PRETTY_NAMES.get(dataset, dataset) if dataset else None
    repo_id = repo_id or f"<user>/mmkd-{unit}"
    architecture, input_description, input_key = _describe_model(config)
    heads = config.get("heads") or {}
    teacher_entries = []
    for teacher in teachers or []:
        entry = dict(teacher)
        if entry.get("repo_id"):
            entry["url"] = f"{endpoint.rstrip('/')}/{entry['repo_id']}"
            if entry.get("revision"):
                entry["url"] += f"/tree/{entry['revision']}"
        teacher_entries.append(entry)
    base_models = [t["repo_id"] for t in teacher_entries if t.get("repo_id")] if kind in ("student", "ensemble") else []

    eval_results = None
    if evaluated:
        dataset_type = dataset_repo_id or dataset or "unknown"
        eval_results = [
            EvalResult(
                task_type="video-classification",
                task_name="Action recognition",
                dataset_type=dataset_type,
                dataset_name=pretty_dataset or dataset_type,
                dataset_split=eval_split,
                metric_type=METRIC_NAMES[row["key"]][0],
                metric_name=f"{row['head']} {row['metric']}" + (f" ({views} view{'s' if views > 1 else ''})" if views else ""),
                metric_value=row["value"],
                metric_config=row["head"],
                metric_args={"num_views": views} if views else None,
            )
            for row in rows
        ]
    tags = ["knowledge-distillation", "egocentric", "action-recognition", "video-classification", "mmkd-hf",
            "custom_code", kind]
    if dataset:
        tags.append(dataset)
    if config.get("modality"):
        tags.append(str(config["modality"]))
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="video-classification",
        tags=list(dict.fromkeys(tags)),
        license=license,
        license_name=info.get("license_name") if license == "other" else None,
        datasets=[dataset_repo_id] if dataset_repo_id else None,
        base_model=base_models or None,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results,
    )
    template = _read_template(template_path, MODEL_CARD_TEMPLATE)
    parameters = (result or {}).get("parameters") or count_parameters(model_dir)
    return ModelCard.from_template(
        card_data,
        template_str=template,
        title=f"mmkd-hf {unit}" + (f" ({pretty_dataset})" if pretty_dataset else ""),
        summary=_summary(kind, unit, pretty_dataset, config),
        kind=kind,
        unit=unit,
        repo_id=repo_id,
        role_description=ROLE_DESCRIPTIONS[kind] + (f" ({unit})" if unit != kind else ""),
        architecture=architecture,
        input_description=input_description,
        input_key=input_key,
        heads_description=", ".join(f"{name} ({size} classes)" for name, size in heads.items()) or "see config.json",
        parameters=f"{parameters:,}" if isinstance(parameters, int) else None,
        dataset_name=pretty_dataset,
        evaluated=evaluated,
        eval_split=eval_split,
        num_views=views,
        result_rows=rows,
        recipe=training_recipe(kind, run_config),
        teachers=teacher_entries,
        has_remote_pipeline=(model_dir / REMOTE_PIPELINE_FILE).is_file(),
        dataset_license_note=_license_note(dataset, info),
        synthetic=dataset == "mini-kitchens",
        citation=PAPER_BIBTEX,
    )


def _summary(kind: str, unit: str, dataset: str | None, config: Mapping[str, Any]) -> str:
    on = f" on {dataset}" if dataset else ""
    if kind == "student":
        return (f"An RGB-only action recognizer{on}, distilled from a teacher ensemble that sees several "
                "modalities. At test time it needs only the video frames.")
    if kind == "teacher":
        modality = config.get("modality") or unit.split("-", 1)[-1]
        modality = {"rgb": "an RGB", "flow": "an optical-flow", "audio": "an audio", "layout": "an object-layout"}.get(
            modality, f"a {modality}")
        return f"{modality[0].upper()}{modality[1:]} teacher{on}, trained with the ground-truth labels; one member of the teacher ensemble."
    if kind == "ensemble":
        return f"The multimodal teacher ensemble{on} whose predictions the student learns to match."
    return f"A baseline{on} ({unit}) with the student's architecture, trained without distillation, for comparison."


def _license_note(dataset: str | None, info: Mapping[str, str]) -> str | None:
    if not info.get("license"):
        return None
    return (f"The training data ({DATASET_PRETTY_NAMES.get(dataset, dataset)}) is licensed "
            f"{info.get('license_name') or info['license']}; this model inherits its terms of use.")


def write_model_card(
    model_dir: str | os.PathLike,
    kind: str | None = None,
    results: Mapping[str, Any] | None = None,
    *,
    unit: str | None = None,
    role: str | None = None,
    dataset: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Path:
    """Renders a card and writes it atomically as ``<model_dir>/README.md``.

    Called by the training pipeline for every saved model (``unit``/``role``/``dataset``/``run_config``/
    ``info``), and by ``mmkd-hf push`` with the run's results and the repo ids.

    Args:
        model_dir: The ``save_pretrained`` folder.
        kind: Card kind; derived from ``unit`` (or ``role``) when omitted.
        results: See :func:`render_model_card`.
        unit: Name of the model in the run.
        role: Alias of ``unit`` used by the pipeline.
        dataset: Dataset name.
        run_config: The run's options.
        info: Extra facts from the pipeline; ``info["results"]`` is used when ``results`` is None.
        **kwargs: Passed to :func:`render_model_card` (``repo_id``, ``teachers``, ``license``, ...).

    Returns:
        The path of the written ``README.md``.
    """
    unit = unit or role or kind
    if unit is None:
        raise ValueError("write_model_card: give kind or unit")
    kind = kind or kind_from_unit(unit)
    if results is None and info:
        results = info.get("results")
    card = render_model_card(kind, model_dir, results, unit=unit, dataset=dataset, run_config=run_config, **kwargs)
    path = Path(model_dir) / "README.md"
    atomic_write_text(path, str(card))
    return path


# ------------------------------------------------------------------------------------------ dataset cards
#: Per-dataset text of the dataset card besides ``dataset_card_info`` (modalities, on-disk layout, notes).
DATASET_CARD_CONTEXT = {
    "epic-kitchens-100": {
        "modalities": ["rgb", "flow", "audio", "layout"],
        "layout": "`EPIC_100_{train,validation}.csv`, `EPIC_100_test_timestamps.csv`, class CSVs and "
                  "`EPIC_100_video_info.csv` at the root (or in `annotations/`); per participant "
                  "`<P>/rgb_frames/<video>/frame_%010d.jpg` (or the `.tar`, or `<P>/videos/<video>.MP4`), "
                  "`<P>/flow_frames/<video>/{u,v}/frame_%010d.jpg` (half rate), `<P>/videos/<video>.wav` or the "
                  "MP4 audio track, `<P>/hand-objects/<video>.pkl`.",
        "splits_note": "The test split has no labels (verb/noun/action = -1). `unseen_participant`, `tail_verb` "
                       "and `tail_noun` flag the official evaluation subsets.",
        "license_note": "EPIC-KITCHENS-100 is for non-commercial use; the annotations are from "
                        "github.com/epic-kitchens/epic-kitchens-100-annotations.",
    },
    "mini-kitchens": {
        "modalities": ["rgb", "flow", "audio", "layout"],
        "layout": "Exactly the EPIC-KITCHENS-100 layout (read by the same builder).",
        "splits_note": "One participant is held out as unseen.",
        "license_note": "Synthetic data generated by mmkd-hf; contains no third-party content.",
    },
    "something-something-v2": {
        "modalities": ["rgb"],
        "layout": "`something-something-v2-{train,validation,test}.json` and `something-something-v2-labels.json`; "
                  "videos `videos/<id>.webm` or frame folders `frames/<id>/%04d.jpg` (1-based).",
        "splits_note": "The test list has ids only (no labels).",
        "license_note": "Obtain the videos from Qualcomm under their licence; this card does not redistribute them.",
    },
    "something-else": {
        "modalities": ["rgb", "layout"],
        "layout": "`train.json`/`validation.json` (compositional split, or `dataset_splits/<variant>/`), "
                  "`labels.json`, `bounding_box_annotations.json` (or `bounding_box_smthsmth_part*.json`), "
                  "frames `frames/<id>/%04d.jpg`.",
        "splits_note": "Compositional split: verb-noun combinations of train and validation do not overlap.",
        "license_note": "Box annotations under MIT; the frames are Something-Something v2 content (research only).",
    },
}


def render_dataset_card(
    dataset: str,
    *,
    repo_id: str | None = None,
    splits: Mapping[str, Any] | None = None,
    license: str | None = None,
    template_path: str | os.PathLike | None = None,
) -> DatasetCard:
    """The dataset card of ``dataset`` from ``hub_cards/dataset_card_template.md``.

    Description, citation and licence come from the data layer (``mmkd_hf.data.dataset_card_info``, the same
    metadata the ``datasets`` builder puts in its ``DatasetInfo``). With ``repo_id`` (a pushed dataset: Parquet
    files under ``data/<split>-*.parquet``) the metadata also gets ``configs`` pointing at the Parquet files (so
    ``datasets.load_dataset(repo_id)`` reads them) and the body a section on what the repo holds.

    Args:
        dataset: Dataset name (see ``mmkd_hf.data.DATASETS``).
        repo_id: The dataset repo id, for a pushed dataset.
        splits: split name -> ``datasets.Dataset`` (row counts and features) or its number of rows.
        license: Licence id; defaults to the dataset's.
        template_path: An explicit Jinja template instead of the packaged one.
    """
    info = dataset_card_info(dataset)
    splits = dict(splits or {})
    rows = {split: (value if isinstance(value, int) else value.num_rows) for split, value in splits.items()}
    first = next((value for value in splits.values() if not isinstance(value, int)), None)
    card_data = DatasetCardData(
        license=license or info["license"], pretty_name=info.get("pretty_name") or DATASET_PRETTY_NAMES.get(dataset, dataset),
        task_categories=["video-classification"], tags=["egocentric", "multimodal", "mmkd-hf", dataset])
    context = {**DATASET_CARD_CONTEXT.get(dataset, {}), **info}
    context.setdefault("modalities", ["rgb"])
    card = DatasetCard.from_template(
        card_data, template_str=_read_template(template_path, DATASET_CARD_TEMPLATE), dataset_name=dataset,
        splits=rows, features={k: str(v) for k, v in first.features.items()} if first is not None else {},
        **context)
    if repo_id is None:
        return card
    card.data.configs = [{"config_name": "default",
                          "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in rows]}]
    card.text = card.text.rstrip() + (
        "\n\n## This repository\n\n"
        f"Segment metadata prepared by mmkd-hf, one Parquet file per split ({', '.join(f'{k}: {v} rows' for k, v in rows.items())}); "
        "the media are not included.\n\n"
        f"```python\nfrom datasets import load_dataset\n\nmetadata = load_dataset(\"{repo_id}\", split=\"{next(iter(rows), 'train')}\")\n```\n"
    )
    return card


__all__ = [
    "KINDS",
    "PAPER_BIBTEX",
    "kind_from_unit",
    "load_run_results",
    "metric_rows",
    "render_dataset_card",
    "render_model_card",
    "write_model_card",
]
