"""``mmkd-hf push``: publish a run's models (and its prepared datasets) on the Hugging Face Hub.

Every model folder of a run (``teacher-<modality>``, ``ensemble``, ``student``, ``baseline-rgb``,
``omnivore``) becomes its own model repo ``<namespace>/<prefix>-<unit>`` (``alice/mmkd-student``,
``alice/mmkd-teacher-rgb``, ...), uploaded with ``HfApi.create_repo`` + ``HfApi.upload_folder``: **one commit
per repo**, so a repo is either fully updated or untouched. What is uploaded is the ``save_pretrained`` folder
(weights, ``config.json`` with ``auto_map`` and the model's code files, so ``trust_remote_code=True`` works
without this package) plus, generated at push time without touching the run folder:

* ``README.md``: the model card re-rendered with the run's ``results.json``, the repo ids and the commits of
  the teachers (student and ensemble cards list them as ``base_model``);
* for RGB Video Swin models saved by older versions: ``video_preprocessor_config.json`` and the multi-head
  pipeline (``pipeline_mmkd_video.py`` + ``config.custom_pipelines``) when missing (models save both
  themselves now), so that ``pipeline(model=repo_id, trust_remote_code=True)`` works.

Everything is checked before the first request (folders, configs, weights, code files, token), so bad input
fails before anything is created. ``--datasets`` also pushes the run's prepared metadata (one Parquet file
per split, with a dataset card) to the dataset repo ``<namespace>/<prefix>-<dataset>``; the dataset and its
folder come from the run's ``run_settings.json`` (:class:`mmkd_hf.data.RunSettings`).

Usage::

    mmkd-hf push --run outputs/<run> --namespace USER [--private] [--datasets] [--token TOKEN]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..data import RunSettings, build_metadata
from ..models.multi_head_video_pipeline import REMOTE_PIPELINE_FILE, REMOTE_TASK, add_remote_pipeline
from ..models.video_swin.video_processing_video_swin import VideoSwinVideoProcessor
from .cards import kind_from_unit, load_model_config, load_run_results, render_dataset_card, render_model_card

#: Push order: the teachers first (their commits go into the ensemble's and the student's cards).
UNIT_ORDER = ("teacher-rgb", "teacher-flow", "teacher-audio", "teacher-layout", "ensemble", "student",
              "baseline-rgb", "omnivore")
NOT_MODEL_DIRS = {"checkpoints", "tensorboard", "stages"}
GENERATED_FILES = {"README.md"}


class PushError(RuntimeError):
    """A push that cannot proceed, with a message meant for the user."""


@dataclass
class ModelFolder:
    unit: str
    path: Path
    config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class PushedRepo:
    unit: str
    repo_id: str
    repo_type: str
    commit: str
    url: str


# ------------------------------------------------------------------------------------------ inspection
def find_model_folders(run_dir: str | os.PathLike, units: Sequence[str] | None = None) -> list[ModelFolder]:
    """The run's model folders in push order, each checked to be a complete ``save_pretrained`` folder.

    Args:
        run_dir: The run folder (``outputs/<run>``).
        units: Only these units (default: every model folder found).

    Raises:
        FileNotFoundError: the run folder or a requested unit is missing, or a folder lacks ``config.json``.
        PushError: no model folder at all, or a folder without weights / with missing code files.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    if units:
        candidates = []
        for unit in units:
            path = run_dir / unit
            if not path.is_dir():
                raise FileNotFoundError(f"{run_dir} has no model folder {unit!r} (found: {_list_dirs(run_dir)})")
            candidates.append(path)
    else:
        candidates = [p for p in sorted(run_dir.iterdir()) if p.is_dir() and p.name not in NOT_MODEL_DIRS
                      and not p.name.startswith(".")]
        candidates = [p for p in candidates if (p / "config.json").is_file() or _looks_like_model_dir(p)]
        if not candidates:
            raise PushError(f"{run_dir} holds no model folder (expected e.g. student/, teacher-rgb/ with a config.json); "
                            f"is it a run folder of `accelerate launch train.py`?")
    folders = []
    for path in candidates:
        config = load_model_config(path)  # FileNotFoundError naming the folder when config.json is missing
        folder = ModelFolder(unit=path.name, path=path, config=config)
        _check_model_folder(folder)
        folders.append(folder)
    rank = {unit: index for index, unit in enumerate(UNIT_ORDER)}
    return sorted(folders, key=lambda f: (rank.get(f.unit, len(rank)), f.unit))


def _list_dirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _looks_like_model_dir(path: Path) -> bool:
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin"))


def _check_model_folder(folder: ModelFolder) -> None:
    path = folder.path
    if not (any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").is_file()):
        raise PushError(f"{path}: no *.safetensors weights (save the model with save_pretrained first)")
    auto_map = folder.config.get("auto_map") or {}
    if not auto_map:
        folder.warnings.append(
            f"{folder.unit}: config.json has no auto_map, so `trust_remote_code=True` cannot load it without the "
            "mmkd-hf package (users must `pip install mmkd-hf` and `import mmkd_hf`)"
        )
    for auto_class, reference in auto_map.items():
        references = reference if isinstance(reference, (list, tuple)) else [reference]
        for ref in references:
            if not ref or "--" in ref:
                continue
            module_file = path / (ref.split(".")[0] + ".py")
            if not module_file.is_file():
                raise PushError(f"{path}: config.json auto_map[{auto_class!r}] needs {module_file.name}, which is missing")


def _is_rgb_video_swin(config: Mapping[str, Any]) -> bool:
    return "video_swin" in str(config.get("model_type", "")) and config.get("modality", "rgb") == "rgb"


def read_run_config(run_dir: Path, results: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's options: ``results.json["config"]``, else ``config.json["config"]`` of the run folder."""
    if results and isinstance(results.get("config"), Mapping):
        return dict(results["config"])
    path = run_dir / "config.json"
    if path.is_file():
        payload = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(payload, Mapping):
            return dict(payload.get("config", payload))
    return {}


# ------------------------------------------------------------------------------------------ staging
@contextmanager
def staged_folder(folder: ModelFolder, card_text: str) -> Iterator[Path]:
    """A temporary copy of the model folder (symlinks to the files) completed with the generated files.

    The run folder itself is never modified.
    """
    with tempfile.TemporaryDirectory(prefix=f"mmkd-push-{folder.unit}-") as tmp:
        stage = Path(tmp)
        for source in sorted(folder.path.rglob("*")):
            relative = source.relative_to(folder.path)
            if any(part.startswith(".") for part in relative.parts) or source.is_dir():
                continue
            if relative.as_posix() in GENERATED_FILES:
                continue
            target = stage / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(source.resolve(), target)
        if _is_rgb_video_swin(folder.config):
            _add_video_processor(folder, stage)
            _add_remote_pipeline(stage)
        (stage / "README.md").write_text(card_text, encoding="utf-8")
        yield stage


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.symlink(source, target)
    except OSError:
        shutil.copy2(source, target)


def _add_video_processor(folder: ModelFolder, stage: Path) -> None:
    if (stage / "video_preprocessor_config.json").exists():
        return
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder.path)
    processor = VideoSwinVideoProcessor.from_model_config(config)
    processor.register_for_auto_class()
    processor.save_pretrained(stage)  # also copies video_processing_video_swin.py for remote code


def _add_remote_pipeline(stage: Path) -> None:
    config_path = stage / "config.json"
    declared = json.loads(config_path.read_text(encoding="utf-8")).get("custom_pipelines") or {}
    if (stage / REMOTE_PIPELINE_FILE).exists() and REMOTE_TASK in declared:
        return  # saved by a version whose models ship the pipeline themselves
    if config_path.is_symlink():  # edit a real copy, never the run's file behind the link
        text = config_path.read_text(encoding="utf-8")
        config_path.unlink()
        config_path.write_text(text, encoding="utf-8")
    add_remote_pipeline(stage)


# ------------------------------------------------------------------------------------------ push
def _api(endpoint: str | None, token: str):
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token)


def resolve_token(token: str | None) -> str:
    """The token to push with: ``--token``, else ``HF_TOKEN`` / the saved login.

    Raises:
        PushError: no token anywhere.
    """
    if token:
        return token
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise PushError("no Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login` "
                        "(a token with write access is needed to create repos)")
    return found


def _http_message(err: Exception, namespace: str, user: str | None, what: str) -> str:
    status = getattr(getattr(err, "response", None), "status_code", None)
    server = getattr(getattr(err, "response", None), "headers", {}).get("X-Error-Message") if status else None
    detail = f" (server: {server})" if server else ""
    if status == 401:
        return f"the token was rejected while {what} (HTTP 401){detail}: check --token / HF_TOKEN"
    if status == 403:
        return (f"no write access to namespace {namespace!r} while {what} (HTTP 403){detail}: the token belongs to "
                f"{user or 'another user'}; use your user name or an organisation where you can write")
    return f"the Hub refused {what}: {err}"


def push_run(
    run_dir: str | os.PathLike,
    namespace: str,
    *,
    token: str | None = None,
    private: bool = False,
    datasets: bool = False,
    prefix: str = "mmkd",
    units: Sequence[str] | None = None,
    endpoint: str | None = None,
    log=print,
) -> list[PushedRepo]:
    """Pushes the models of a run (and optionally its datasets); returns what was pushed, in order.

    Args:
        run_dir: The run folder (``outputs/<run>``).
        namespace: User or organisation that receives the repos.
        token: Hugging Face token (default: ``HF_TOKEN`` / saved login).
        private: Create the repos private.
        datasets: Also push the run's prepared dataset metadata as Parquet.
        prefix: Repo name prefix (``<namespace>/<prefix>-<unit>``).
        units: Only these model folders (default: all).
        endpoint: Hub URL (default: ``HF_ENDPOINT`` or huggingface.co).
        log: Progress printer.

    Raises:
        FileNotFoundError, PushError: bad input (checked before anything is created) or a refused request.
    """
    from huggingface_hub.errors import HfHubHTTPError

    run_dir = Path(run_dir)
    if not namespace or "/" in namespace:
        raise PushError(f"--namespace must be a user or organisation name, got {namespace!r}")
    folders = find_model_folders(run_dir, units)
    results = load_run_results(run_dir)
    run_config = read_run_config(run_dir, results)
    settings = None
    if datasets:
        try:
            settings = RunSettings.from_run_dir(run_dir)
        except (FileNotFoundError, ValueError) as err:
            raise PushError(f"--datasets: {err}") from None
    if results is None:
        log(f"[push] {run_dir} has no results.json: the cards will say 'Not evaluated'")
    for folder in folders:
        for warning in folder.warnings:
            log(f"[push] warning: {warning}")
    token = resolve_token(token)
    api = _api(endpoint, token)
    try:
        user = api.whoami()["name"]
    except HfHubHTTPError as err:
        raise PushError(_http_message(err, namespace, None, "checking the token")) from err

    pushed: list[PushedRepo] = []
    dataset_repo_id = None
    if datasets:
        dataset_repo = push_dataset(api, settings, namespace, prefix=prefix, private=private, user=user, log=log)
        pushed.append(dataset_repo)
        dataset_repo_id = dataset_repo.repo_id
    teachers: list[dict[str, Any]] = []
    for folder in folders:
        repo_id = f"{namespace}/{prefix}-{folder.unit}"
        kind = kind_from_unit(folder.unit)
        card = render_model_card(
            kind, folder.path, results, unit=folder.unit, repo_id=repo_id, run_config=run_config,
            dataset_repo_id=dataset_repo_id, teachers=teachers if kind in ("student", "ensemble") else None,
            endpoint=api.endpoint,
        )
        with staged_folder(folder, str(card)) as stage:
            try:
                api.create_repo(repo_id, private=private, exist_ok=True)
                info = api.upload_folder(
                    repo_id=repo_id, folder_path=stage,
                    commit_message=f"Upload {folder.unit} of mmkd-hf run {run_dir.name}",
                    commit_description=f"{kind} model pushed by `mmkd-hf push` from {run_dir.name}/{folder.unit}.",
                )
            except HfHubHTTPError as err:
                done = ", ".join(repo.repo_id for repo in pushed) or "none"
                raise PushError(_http_message(err, namespace, user, f"pushing {repo_id}") +
                                f" [already pushed: {done}]") from err
        record = PushedRepo(folder.unit, repo_id, "model", info.oid, f"{api.endpoint}/{repo_id}")
        pushed.append(record)
        log(f"[push] {folder.unit:<14} -> {record.url} @ {record.commit[:12]}")
        if kind == "teacher":
            teachers.append({"name": folder.unit, "repo_id": repo_id, "revision": info.oid})
    return pushed


def push_dataset(api, settings: RunSettings, namespace: str, *, prefix: str = "mmkd", private: bool = False,
                 user: str | None = None, log=print) -> PushedRepo:
    """Pushes the run's prepared dataset metadata: ``data/<split>-00000-of-00001.parquet`` + a dataset card,
    in one commit to ``<namespace>/<prefix>-<dataset>`` (dataset and folder from the run's settings)."""
    from huggingface_hub.errors import HfHubHTTPError

    dataset = settings.dataset
    annotations = settings.load_kwargs.get("annotations_dir")  # where the run found its annotation files
    splits = build_metadata(dataset, data_dir=settings.data_dir, **({"annotations_dir": annotations} if annotations else {}))
    repo_id = f"{namespace}/{prefix}-{dataset}"
    with tempfile.TemporaryDirectory(prefix="mmkd-push-dataset-") as tmp:
        stage = Path(tmp)
        (stage / "data").mkdir()
        rows = {}
        for split, table in splits.items():
            table.to_parquet(str(stage / "data" / f"{split}-00000-of-00001.parquet"))
            rows[split] = len(table)
        card = render_dataset_card(dataset, repo_id=repo_id, splits=splits)
        (stage / "README.md").write_text(str(card), encoding="utf-8")
        try:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=stage,
                                     commit_message=f"Upload {dataset} metadata prepared by mmkd-hf")
        except HfHubHTTPError as err:
            raise PushError(_http_message(err, namespace, user, f"pushing dataset {repo_id}")) from err
    record = PushedRepo(dataset, repo_id, "dataset", info.oid, f"{api.endpoint}/datasets/{repo_id}")
    log(f"[push] dataset {dataset} ({', '.join(f'{k}: {v}' for k, v in rows.items())}) -> {record.url}")
    return record


# ------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmkd-hf push", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run folder, e.g. outputs/<run>")
    parser.add_argument("--namespace", required=True, help="Hub user or organisation receiving the repos")
    parser.add_argument("--private", action="store_true", help="create private repos")
    parser.add_argument("--datasets", action="store_true", help="also push the prepared dataset metadata as Parquet")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    parser.add_argument("--prefix", default="mmkd", help="repo name prefix: <namespace>/<prefix>-<unit> (default mmkd)")
    parser.add_argument("--units", default=None, help="comma-separated model folders to push (default: all)")
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    units = [u.strip() for u in args.units.split(",") if u.strip()] if args.units else None
    try:
        pushed = push_run(args.run, args.namespace, token=args.token, private=args.private, datasets=args.datasets,
                          prefix=args.prefix, units=units, endpoint=args.endpoint)
    except (PushError, FileNotFoundError, ValueError) as err:
        print(f"mmkd-hf push: error: {err}", file=sys.stderr)
        return 2
    print(f"[push] done: {len(pushed)} repo(s)")
    return 0


__all__ = ["PushError", "PushedRepo", "find_model_folders", "main", "push_dataset", "push_run", "resolve_token"]
