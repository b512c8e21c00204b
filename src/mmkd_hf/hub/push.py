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

When the network or the Hub fails: reads and the repo creation are retried with exponential backoff on
connection errors, timeouts and HTTP 408/429/5xx (the file transfers themselves are retried by
``huggingface_hub.utils.http_backoff``). A failed commit is retried only after reading the repo back: when the
repo already holds exactly the files of the commit (the Hub applied it and the answer was lost, or a 500 came
after the commit landed), the push is reported as done. A repo created by the push is deleted again if its
first commit cannot be made, so no empty repo is left. Running the same command again completes a partial
push; a repo that already holds identical files gets no new commit. A failure is one line that names the repo,
its state on the Hub and what to do.

Usage::

    mmkd-hf push --run outputs/<run> --namespace USER [--private] [--datasets] [--token TOKEN]
    mmkd-hf push --dataset-dir OUT --namespace USER [--private]    # a folder of `mmkd-hf export-dataset`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..data import RunSettings, build_metadata
from ..models.multi_head_video_pipeline import REMOTE_PIPELINE_FILE, REMOTE_TASK, add_remote_pipeline
from ..models.video_swin.video_processing_video_swin import VideoSwinVideoProcessor
from .cards import kind_from_unit, load_model_config, load_run_results, render_dataset_card, render_model_card
from .dataset_export import NOT_REHOSTABLE

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
    changed: bool = True  # False when the repo already held identical files (no commit made)


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


# ------------------------------------------------------------------------------------------ Hub access
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
    status = _status(err)
    server = getattr(getattr(err, "response", None), "headers", {}).get("X-Error-Message") if status else None
    detail = f" (server: {server})" if server else ""
    if status == 401:
        return f"the token was rejected while {what} (HTTP 401){detail}: check --token / HF_TOKEN"
    if status == 403:
        return (f"no write access to namespace {namespace!r} while {what} (HTTP 403){detail}: the token belongs to "
                f"{user or 'another user'}; use your user name or an organisation where you can write")
    return f"the Hub refused {what}: {describe_error(err)}"


# ------------------------------------------------------------------------------------------ network faults
#: HTTP answers worth another try (those ``huggingface_hub.utils.http_backoff`` retries).
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries per request, waiting ``first_wait_s`` after the first failure and doubling the wait up
    to ``max_wait_s`` (the schedule of ``huggingface_hub.utils.http_backoff``)."""

    attempts: int = 5
    first_wait_s: float = 1.0
    max_wait_s: float = 8.0

    def waits(self) -> Iterator[float]:
        wait = self.first_wait_s
        for _ in range(self.attempts - 1):
            yield wait
            wait = min(self.max_wait_s, wait * 2)


def _status(err: BaseException) -> int | None:
    return getattr(getattr(err, "response", None), "status_code", None)


def is_transient(err: BaseException) -> bool:
    """A connection error (refused, reset, dropped), a timeout or an HTTP 408/429/5xx: worth another try."""
    status = _status(err)
    if status is not None:
        return status in TRANSIENT_STATUS
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    # httpx's (huggingface_hub 1.x) or httpx2's (2.x) TransportError: ConnectError, ReadError, RemoteProtocolError...
    return any(cls.__name__ == "TransportError" and cls.__module__.startswith("httpx") for cls in type(err).__mro__)


def describe_error(err: BaseException) -> str:
    """The error in one short line: the HTTP status and the server's message, or the connection failure."""
    status = _status(err)
    if status is not None:
        server = err.response.headers.get("X-Error-Message") or ""
        return f"HTTP {status}" + (f" ({server})" if server else "")
    text = " ".join(str(err).split())[:160]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _retrying(action, what: str, policy: RetryPolicy, log):
    """``action()``, tried again after a transient error (see :func:`is_transient`) as ``policy`` allows."""
    waits = policy.waits()
    while True:
        try:
            return action()
        except Exception as err:
            wait = next(waits, None) if is_transient(err) else None
            if wait is None:
                raise
            log(f"[push] {what}: {describe_error(err)}; retrying in {wait:g} s")
            time.sleep(wait)


def _remote_files(api, repo_id: str, repo_type: str) -> tuple[str, dict[str, Any]] | None:
    """(head commit, path -> file entry) of the repo's main branch, or None when the repo does not exist."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = api.repo_info(repo_id, repo_type=repo_type, files_metadata=True)
    except RepositoryNotFoundError:
        return None
    return info.sha, {sibling.rfilename: sibling for sibling in info.siblings or []}


def holds_folder(stage: Path, remote: Mapping[str, Any]) -> bool:
    """Whether the repo files ``remote`` (from :func:`_remote_files`) hold every file of ``stage``, byte for byte
    (git blob id for regular files, sha256 for LFS files, as the Hub reports them)."""
    from huggingface_hub.utils.sha import git_hash, sha_fileobj

    for path in sorted(stage.rglob("*")):
        if path.is_dir():
            continue
        entry = remote.get(path.relative_to(stage).as_posix())
        if entry is None:
            return False
        if entry.lfs is not None:
            with open(path, "rb") as handle:
                if sha_fileobj(handle).hex() != entry.lfs.sha256:
                    return False
        elif git_hash(path.read_bytes()) != entry.blob_id:
            return False
    return True


def push_folder(api, repo_id: str, stage: Path, *, repo_type: str = "model", private: bool = False,
                commit_message: str, commit_description: str | None = None, retry: RetryPolicy | None = None,
                namespace: str = "", user: str | None = None, log=print) -> tuple[str, bool]:
    """Brings ``repo_id`` to hold the files of ``stage`` in at most one commit; returns (head commit, whether
    a commit was made). A repo that already holds identical files gets no commit.

    Raises:
        PushError: one line naming the repo, its state on the Hub and what to do.
    """
    retry = retry or RetryPolicy()
    before, created = None, False
    try:
        before = _retrying(lambda: _remote_files(api, repo_id, repo_type), f"reading {repo_id}", retry, log)
        if before is None:
            created = True
            _retrying(lambda: api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True),
                      f"creating {repo_id}", retry, log)
        waits = retry.waits()
        while True:
            try:
                info = api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=stage,
                                         commit_message=commit_message, commit_description=commit_description)
                return info.oid, before is None or info.oid != before[0]
            except Exception as err:
                if not is_transient(err):
                    raise
                # A commit is not repeated blindly: the Hub may have applied it before the answer was lost.
                state = _retrying(lambda: _remote_files(api, repo_id, repo_type), f"reading {repo_id}", retry, log)
                if state is not None and holds_folder(stage, state[1]):
                    log(f"[push] {repo_id}: the Hub applied the commit despite {describe_error(err)}")
                    return state[0], before is None or state[0] != before[0]
                wait = next(waits, None)
                if wait is None:
                    raise
                log(f"[push] uploading to {repo_id}: {describe_error(err)}; retrying in {wait:g} s")
                time.sleep(wait)
    except Exception as err:
        if not (is_transient(err) or _status(err) is not None):
            raise
        raise PushError(_failure_message(api, repo_id, repo_type, err, created, before, namespace, user, log)) from err


def _failure_message(api, repo_id: str, repo_type: str, err: Exception, created: bool,
                     before: tuple[str, dict] | None, namespace: str, user: str | None, log) -> str:
    """What failed, the repo's state on the Hub after the failure (read back) and what to do, in one line."""
    status = _status(err)
    reason = (_http_message(err, namespace, user, f"pushing {repo_id}") if status in (401, 403)
              else f"pushing {repo_id} failed ({describe_error(err)})")
    again = "run the same command again (it completes the push and skips repos that are up to date)"
    quick = RetryPolicy(attempts=3)
    try:
        state = _retrying(lambda: _remote_files(api, repo_id, repo_type), f"reading {repo_id}", quick, log)
    except Exception:
        if created:
            return (f"{reason}; the Hub could not be read back, so {repo_id} may exist empty: {again}, or delete it "
                    f"with `hf repos delete {repo_id}`")
        return f"{reason}; the Hub could not be read back, so the state of {repo_id} is unknown: {again}"
    if state is None:
        return f"{reason}; nothing was created on the Hub for {repo_id}: {again}"
    head, files = state
    if created and set(files) <= {".gitattributes"}:
        try:
            _retrying(lambda: api.delete_repo(repo_id, repo_type=repo_type, missing_ok=True),
                      f"deleting the empty {repo_id}", quick, log)
            return f"{reason}; the repo created for it was deleted again, nothing is on the Hub for it: {again}"
        except Exception as delete_err:
            return (f"{reason}; the new repo {repo_id} is left empty (deleting it failed: {describe_error(delete_err)}): "
                    f"{again}, or delete it with `hf repos delete {repo_id}`")
    if before is not None and head == before[0]:
        return f"{reason}; {repo_id} is unchanged at its previous commit {head[:12]}: {again}"
    return f"{reason}; {repo_id} is at commit {head[:12]}, which does not hold every file of this push: {again}"


# ------------------------------------------------------------------------------------------ push
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
    retry: RetryPolicy | None = None,
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
        retry: How requests are retried on connection errors and HTTP 408/429/5xx (default :class:`RetryPolicy`).
        log: Progress printer.

    Raises:
        FileNotFoundError, PushError: bad input (checked before anything is created), a refused request, or a
            network failure that outlasted the retries (the message names the repo and its state on the Hub).
    """
    from huggingface_hub.errors import HfHubHTTPError

    retry = retry or RetryPolicy()
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
        user = _retrying(lambda: api.whoami()["name"], "checking the token", retry, log)
    except Exception as err:
        if isinstance(err, HfHubHTTPError) and not is_transient(err):
            raise PushError(_http_message(err, namespace, None, "checking the token")) from err
        if not is_transient(err):
            raise
        raise PushError(f"cannot reach the Hub at {api.endpoint} ({describe_error(err)}); nothing was created or "
                        "changed: check the network or --endpoint, then run the same command again") from err

    pushed: list[PushedRepo] = []

    def already_pushed(err: PushError) -> PushError:
        done = ", ".join(repo.repo_id for repo in pushed) or "none"
        return PushError(f"{err} [already pushed: {done}]")

    dataset_repo_id = None
    if datasets:
        try:
            dataset_repo = push_dataset(api, settings, namespace, prefix=prefix, private=private, user=user,
                                        retry=retry, log=log)
        except PushError as err:
            raise already_pushed(err) from err.__cause__
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
                commit, changed = push_folder(
                    api, repo_id, stage, private=private, retry=retry, namespace=namespace, user=user, log=log,
                    commit_message=f"Upload {folder.unit} of mmkd-hf run {run_dir.name}",
                    commit_description=f"{kind} model pushed by `mmkd-hf push` from {run_dir.name}/{folder.unit}.",
                )
            except PushError as err:
                raise already_pushed(err) from err.__cause__
        record = PushedRepo(folder.unit, repo_id, "model", commit, f"{api.endpoint}/{repo_id}", changed)
        pushed.append(record)
        note = "" if changed else " (unchanged: the repo already holds these files)"
        log(f"[push] {folder.unit:<14} -> {record.url} @ {record.commit[:12]}{note}")
        if kind == "teacher":
            teachers.append({"name": folder.unit, "repo_id": repo_id, "revision": commit})
    return pushed


def push_dataset(api, settings: RunSettings, namespace: str, *, prefix: str = "mmkd", private: bool = False,
                 user: str | None = None, retry: RetryPolicy | None = None, log=print) -> PushedRepo:
    """Pushes the run's prepared dataset metadata: ``data/<split>-00000-of-00001.parquet`` + a dataset card,
    in one commit to ``<namespace>/<prefix>-<dataset>`` (dataset and folder from the run's settings)."""
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
        commit, changed = push_folder(api, repo_id, stage, repo_type="dataset", private=private, retry=retry,
                                      namespace=namespace, user=user, log=log,
                                      commit_message=f"Upload {dataset} metadata prepared by mmkd-hf")
    record = PushedRepo(dataset, repo_id, "dataset", commit, f"{api.endpoint}/datasets/{repo_id}", changed)
    log(f"[push] dataset {dataset} ({', '.join(f'{k}: {v}' for k, v in rows.items())}) -> {record.url}")
    return record


def push_exported_dataset(folder: str | os.PathLike, namespace: str, *, token: str | None = None,
                          private: bool = False, prefix: str = "mmkd", endpoint: str | None = None,
                          retry: RetryPolicy | None = None, log=print) -> PushedRepo:
    """Pushes a folder written by ``mmkd-hf export-dataset`` (its card and ``data/*.parquet`` shards, nothing
    else) in one commit to ``<namespace>/<prefix>-<dataset>``; an unchanged folder makes no commit. A dataset
    that may not be re-hosted (EPIC-KITCHENS-100) is pushed only with ``private=True``."""
    from huggingface_hub import DatasetCard

    folder = Path(folder)
    shards = sorted((folder / "data").glob("*.parquet")) if folder.is_dir() else []
    if not shards or not (folder / "README.md").is_file():
        raise PushError(f"--dataset-dir: {folder} is not a folder written by `mmkd-hf export-dataset` "
                        "(expected README.md and data/<split>-*.parquet)")
    dataset = (DatasetCard.load(folder / "README.md").data.to_dict().get("mmkd_hf") or {}).get("dataset")
    if not dataset:
        raise PushError(f"--dataset-dir: the card of {folder} has no mmkd_hf.dataset entry; export it again")
    if dataset in NOT_REHOSTABLE and not private:
        raise PushError(f"--dataset-dir: {NOT_REHOSTABLE[dataset]} may not be re-hosted publicly: "
                        "push it with --private (your lab's repo) or share the folder on your own storage")
    if not namespace or "/" in namespace:
        raise PushError(f"--namespace must be a user or organisation name, got {namespace!r}")
    api = _api(endpoint, resolve_token(token))
    repo_id = f"{namespace}/{prefix}-{dataset}"
    with tempfile.TemporaryDirectory(prefix="mmkd-push-dataset-") as tmp:
        stage = Path(tmp)
        (stage / "data").mkdir()
        _link_or_copy((folder / "README.md").resolve(), stage / "README.md")
        for shard in shards:
            _link_or_copy(shard.resolve(), stage / "data" / shard.name)
        commit, changed = push_folder(api, repo_id, stage, repo_type="dataset", private=private, retry=retry,
                                      namespace=namespace, log=log,
                                      commit_message=f"Upload {dataset} exported by mmkd-hf export-dataset")
    record = PushedRepo(dataset, repo_id, "dataset", commit, f"{api.endpoint}/datasets/{repo_id}", changed)
    log(f"[push] dataset folder {folder} -> {record.url} @ {commit[:12]}" + ("" if changed else " (unchanged)"))
    return record


# ------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmkd-hf push", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=None, help="run folder, e.g. outputs/<run>")
    parser.add_argument("--dataset-dir", default=None,
                        help="push this folder written by `mmkd-hf export-dataset` (alone, or before --run's models)")
    parser.add_argument("--namespace", required=True, help="Hub user or organisation receiving the repos")
    parser.add_argument("--private", action="store_true", help="create private repos")
    parser.add_argument("--datasets", action="store_true", help="also push the prepared dataset metadata as Parquet")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    parser.add_argument("--prefix", default="mmkd", help="repo name prefix: <namespace>/<prefix>-<unit> (default mmkd)")
    parser.add_argument("--units", default=None, help="comma-separated model folders to push (default: all)")
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")
    parser.add_argument("--retries", type=int, default=RetryPolicy.attempts,
                        help="tries per request on connection errors and HTTP 408/429/5xx, with waits of 1, 2, 4, "
                             f"8 s between them (default {RetryPolicy.attempts})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    units = [u.strip() for u in args.units.split(",") if u.strip()] if args.units else None
    if args.retries < 1:
        print(f"mmkd-hf push: error: --retries must be at least 1, got {args.retries}", file=sys.stderr)
        return 2
    if not args.run and not args.dataset_dir:
        print("mmkd-hf push: error: give --run (a run folder) and/or --dataset-dir (an exported dataset)",
              file=sys.stderr)
        return 2
    try:
        pushed = [push_exported_dataset(args.dataset_dir, args.namespace, token=args.token, private=args.private,
                                        prefix=args.prefix, endpoint=args.endpoint,
                                        retry=RetryPolicy(attempts=args.retries))] if args.dataset_dir else []
        if args.run:
            pushed += push_run(args.run, args.namespace, token=args.token, private=args.private,
                               datasets=args.datasets, prefix=args.prefix, units=units, endpoint=args.endpoint,
                               retry=RetryPolicy(attempts=args.retries))
    except (PushError, FileNotFoundError, ValueError) as err:
        print(f"mmkd-hf push: error: {err}", file=sys.stderr)
        return 2
    print(f"[push] done: {len(pushed)} repo(s)")
    return 0


__all__ = ["PushError", "PushedRepo", "RetryPolicy", "find_model_folders", "holds_folder", "is_transient", "main",
           "push_dataset", "push_exported_dataset", "push_folder", "push_run", "resolve_token"]
