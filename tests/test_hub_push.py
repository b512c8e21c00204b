"""``mmkd-hf push`` against a loopback fake Hub, then loading by repo id with the real client (online, offline,
``trust_remote_code`` without the package)."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
import torch

from helpers_hub import VERBS, run_python, save_tiny_student, tiny_config, write_clip
from hub_server import FakeHub
from mmkd_hf.data import RunSettings

TOKENS = {"hf_alice": "alice", "hf_bob": "bob"}
INPUT_CODE = "import torch; torch.manual_seed(0); x = torch.rand(1, 4, 3, 32, 32)"
RUN_SNAPSHOT: dict[str, bytes] = {}  # the run folder's files before the push


def _save_plain(folder, seed, **overrides):
    """A model saved like the training pipeline does (weights, code, video processor and pipeline for RGB)."""
    from mmkd_hf import VideoSwinForVideoClassification

    torch.manual_seed(seed)
    model = VideoSwinForVideoClassification(tiny_config(**overrides)).eval()
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from mmkd_hf import MultimodalTeacherEnsemble, MultimodalTeacherEnsembleConfig
    from mmkd_hf.hub.cards import write_model_card

    run = tmp_path_factory.mktemp("outputs") / "run-1"
    run_config = {"dataset": "mini-kitchens", "teachers": "rgb", "temperature": 2.0, "student_epochs": 1.0, "seed": 42}
    student = _save_plain(run / "student", seed=1)
    _save_plain(run / "teacher-rgb", seed=2)
    ensemble = MultimodalTeacherEnsemble(
        MultimodalTeacherEnsembleConfig(teachers={"rgb": tiny_config().to_dict()}, heads=dict(student.config.heads))
    )
    ensemble.save_pretrained(run / "ensemble")
    for unit in ("student", "teacher-rgb", "ensemble"):  # what the pipeline writes at save time
        write_model_card(run / unit, unit=unit, dataset="mini-kitchens", run_config=run_config)
    (run / "checkpoints").mkdir()
    results = {"config": run_config, "models": {
        "student": {"heads": {"verb": {"top1": 40.0, "top5": 90.0, "ece": 6.5}, "noun": {"top1": 30.0, "ece": 8.0}},
                    "action": {"top1": 20.0}, "modalities": ["rgb"]},
        "teacher-rgb": {"heads": {"verb": {"top1": 35.0}, "noun": {"top1": 25.0}}, "modalities": ["rgb"]},
    }}
    (run / "results.json").write_text(json.dumps(results))
    (run / "config.json").write_text(json.dumps({"config": run_config}))
    RunSettings(dataset="mini-kitchens", data_dir=str(run / "data"), heads=dict(student.config.heads)).save(run)
    RUN_SNAPSHOT.update({p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()})
    return run


@pytest.fixture(scope="module")
def hub():
    with FakeHub(tokens=TOKENS, orgs={"alice": ["kitchen-lab"]}) as server:
        yield server


@pytest.fixture(scope="module")
def pushed(run_dir, hub):
    import huggingface_hub.constants

    from mmkd_hf.hub.push import push_run

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the fake serves plain LFS
        return push_run(run_dir, "alice", token="hf_alice", endpoint=hub.url, log=lambda *a: None)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def _env(hub, home, **extra):
    return {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(home), "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            **extra}


def _expected_logits(folder):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    torch.manual_seed(0)
    x = torch.rand(1, 4, 3, 32, 32)
    with torch.no_grad():
        return {k: v[0].tolist() for k, v in model(pixel_values=x).logits.items()}


# ---------------------------------------------------------------------------------------------- push
def test_push_makes_one_complete_commit_per_repo(pushed, hub, run_dir):
    assert [(p.unit, p.repo_id) for p in pushed] == [
        ("teacher-rgb", "alice/mmkd-teacher-rgb"), ("ensemble", "alice/mmkd-ensemble"), ("student", "alice/mmkd-student")]
    for repo in pushed:
        assert hub.commit_count(repo.repo_id) == 2  # the repo's initial commit + exactly one upload
    files = set(hub.file_paths("alice/mmkd-student"))
    assert {"config.json", "model.safetensors", "configuration_video_swin.py", "modeling_video_swin.py", "README.md",
            "video_preprocessor_config.json", "video_processing_video_swin.py", "pipeline_mmkd_video.py"} <= files
    # The weights went through the LFS protocol (batch, PUT, verify), the rest through the commit itself.
    lfs_puts = [path for method, path, status in hub.requests if method == "PUT" and status == 200]
    assert len(lfs_puts) >= 3
    # The run folder is untouched: generated files (cards) exist only in the pushed repos.
    now = {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert now == RUN_SNAPSHOT
    # The saved student already ships its pipeline and video processor (models save both themselves).
    assert (run_dir / "student" / "pipeline_mmkd_video.py").is_file()
    assert "custom_pipelines" in json.loads((run_dir / "student" / "config.json").read_text())


def test_pushed_cards_carry_results_and_teacher_provenance(pushed, hub):
    from huggingface_hub import ModelCard

    def card(repo_id):
        _, _, data = hub.resolve(hub.repos[("model", repo_id)], "main", "README.md")
        return ModelCard(data.decode())

    student = card("alice/mmkd-student")
    teacher_commit = next(p.commit for p in pushed if p.unit == "teacher-rgb")
    assert student.data.base_model == ["alice/mmkd-teacher-rgb"]
    assert teacher_commit in student.text
    values = {(r.metric_config, r.metric_name.split(" (")[0]): r.metric_value for r in student.data.eval_results}
    assert values[("verb", "verb top-1 accuracy")] == 40.0
    assert values[("action", "action top-1 accuracy")] == 20.0
    assert "Not evaluated" in card("alice/mmkd-ensemble").text
    assert card("alice/mmkd-ensemble").data.eval_results is None


# ---------------------------------------------------------------------------------------------- load
@pytest.mark.slow  # fresh interpreters importing torch + transformers
def test_load_by_repo_id_online_then_offline(pushed, hub, run_dir, clip, tmp_path):
    expected = _expected_logits(run_dir / "student")
    home = tmp_path / "hf-home"
    online = f"""
import json, mmkd_hf
from helpers_hub import ensure_registered; ensure_registered()  # no-op once `import mmkd_hf` registers them
from transformers import AutoModel, pipeline
{INPUT_CODE}
model = AutoModel.from_pretrained("alice/mmkd-student").eval()
logits = {{k: v[0].tolist() for k, v in model(pixel_values=x).logits.items()}}
result = pipeline("mmkd-video-classification", model="alice/mmkd-student")({str(clip)!r}, top_k=1)
try:
    AutoModel.from_pretrained("alice/no-such-model")
    missing = "loaded?!"
except OSError as err:
    missing = str(err)
print(json.dumps({{"logits": logits, "verb": result["verb"][0]["label"], "missing": missing}}))
"""
    proc = run_python(online, _env(hub, home))
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    for head, values in expected.items():
        assert answer["logits"][head] == pytest.approx(values, abs=1e-6)
    assert answer["verb"] in VERBS
    assert "alice/no-such-model" in answer["missing"] and "valid model identifier" in answer["missing"]

    requests_before = len(hub.requests)
    offline = f"""
import json, mmkd_hf
from transformers import AutoModel
{INPUT_CODE}
model = AutoModel.from_pretrained("alice/mmkd-student").eval()
print(json.dumps({{k: v[0].tolist() for k, v in model(pixel_values=x).logits.items()}}))
"""
    proc = run_python(offline, _env(hub, home, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    logits = json.loads(proc.stdout.strip().splitlines()[-1])
    for head, values in expected.items():
        assert logits[head] == pytest.approx(values, abs=1e-6)
    assert len(hub.requests) == requests_before  # served from the cache alone


@pytest.mark.slow  # fresh interpreters importing torch + transformers
def test_trust_remote_code_without_the_package(pushed, hub, run_dir, clip, tmp_path):
    expected = _expected_logits(run_dir / "student")
    code = f"""
import json, sys
sys.modules["mmkd_hf"] = None  # the package cannot be imported: the code must come from the repo
from transformers import AutoModel, pipeline
{INPUT_CODE}
model = AutoModel.from_pretrained("alice/mmkd-student", trust_remote_code=True).eval()
logits = {{k: v[0].tolist() for k, v in model(pixel_values=x).logits.items()}}
classify = pipeline(model="alice/mmkd-student", trust_remote_code=True)
print(json.dumps({{"logits": logits, "module": type(model).__module__, "result": classify({str(clip)!r}, top_k=2)}}))
"""
    proc = run_python(code, _env(hub, tmp_path / "hf-home"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["module"].startswith("transformers_modules.")
    for head, values in expected.items():
        assert answer["logits"][head] == pytest.approx(values, abs=1e-6)
    assert list(answer["result"]) == ["verb", "noun", "action"]


# ---------------------------------------------------------------------------------------------- bad input
def test_push_refuses_bad_input_before_creating_anything(run_dir, hub, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from mmkd_hf.hub.push import PushError, main, push_run

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    quiet = {"endpoint": hub.url, "log": lambda *a: None}
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        push_run(tmp_path / "does-not-exist", "alice", token="hf_alice", **quiet)

    broken = tmp_path / "broken-run"
    shutil.copytree(run_dir, broken)
    (broken / "student" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="student has no config.json"):
        push_run(broken, "alice", token="hf_alice", units=["student"], **quiet)

    no_code = tmp_path / "no-code-run"
    shutil.copytree(run_dir, no_code)
    (no_code / "student" / "modeling_video_swin.py").unlink()
    with pytest.raises(PushError, match="modeling_video_swin.py, which is missing"):
        push_run(no_code, "alice", token="hf_alice", **quiet)

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with pytest.raises(PushError, match="no Hugging Face token"):
        push_run(run_dir, "alice", **quiet)
    with pytest.raises(PushError, match="token was rejected"):
        push_run(run_dir, "alice", token="hf_wrong", **quiet)

    repos_before = set(hub.repos)
    with pytest.raises(PushError, match="no write access to namespace 'bob'.*alice"):
        push_run(run_dir, "bob", token="hf_alice", **quiet)
    assert set(hub.repos) == repos_before  # a 403 leaves nothing behind

    assert main(["--run", str(tmp_path / "does-not-exist"), "--namespace", "alice", "--token", "hf_alice",
                 "--endpoint", hub.url]) == 2


def test_push_to_an_organisation_and_datasets_as_parquet(run_dir, hub, tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants
    import pyarrow.parquet as pq
    from huggingface_hub import hf_hub_download

    import mmkd_hf.hub.push
    from mmkd_hf.hub.push import push_run

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    metadata = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"segment_id": ["a", "b", "c"], "verb_class": [0, 1, 2]}),
        "validation": datasets.Dataset.from_dict({"segment_id": ["d"], "verb_class": [1]}),
    })
    calls = []
    monkeypatch.setattr(mmkd_hf.hub.push, "build_metadata", lambda name, data_dir=None: calls.append(name) or metadata)
    pushed = push_run(run_dir, "kitchen-lab", token="hf_alice", units=["student"], datasets=True, private=True,
                      endpoint=hub.url, log=lambda *a: None)
    assert calls == ["mini-kitchens"]
    assert [(p.repo_type, p.repo_id) for p in pushed] == [
        ("dataset", "kitchen-lab/mmkd-mini-kitchens"), ("model", "kitchen-lab/mmkd-student")]
    assert hub.repos[("model", "kitchen-lab/mmkd-student")].private
    assert hub.commit_count("kitchen-lab/mmkd-mini-kitchens", repo_type="dataset") == 2
    path = hf_hub_download("kitchen-lab/mmkd-mini-kitchens", "data/train-00000-of-00001.parquet", repo_type="dataset",
                           endpoint=hub.url, token="hf_alice", cache_dir=tmp_path / "cache")
    assert pq.read_table(path).to_pydict()["segment_id"] == ["a", "b", "c"]
    readme = hub.resolve(hub.repos[("model", "kitchen-lab/mmkd-student")], "main", "README.md")[2].decode()
    assert "kitchen-lab/mmkd-mini-kitchens" in readme  # the card links the pushed dataset


# ---------------------------------------------------------------------------------------------- network faults
FAST_RETRY = {"attempts": 3, "first_wait_s": 0.01, "max_wait_s": 0.02}


@pytest.fixture
def faulty_hub(monkeypatch):
    """A fresh fake Hub per test (faults are injected into it) and plain LFS uploads."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    with FakeHub(tokens=TOKENS) as server:
        yield server


def _push(run_dir, hub, **kwargs):
    from mmkd_hf.hub.push import RetryPolicy, push_run

    kwargs.setdefault("units", ["student"])
    return push_run(run_dir, "alice", token="hf_alice", endpoint=hub.url, retry=RetryPolicy(**FAST_RETRY),
                    log=lambda *a: None, **kwargs)


def _commits_posted(hub, since=0):
    return [path for method, path, _ in hub.requests[since:] if method == "POST" and "/commit/" in path]


def test_dropped_connections_mid_push_are_retried(run_dir, faulty_hub):
    hub = faulty_hub
    hub.inject("drop", method="PUT", path="^/_lfs/upload/")  # a weights upload: retried by huggingface_hub
    hub.inject("drop", method="POST", path="/commit/")  # the commit, never applied: retried after a read-back
    hub.inject("500", method="POST", path="^/api/repos/create$")  # a 5xx before anything was applied
    hub.inject("refuse", method="GET", path="^/api/whoami")
    [record] = _push(run_dir, hub)
    assert record.changed and hub.commit_count("alice/mmkd-student") == 2
    assert "model.safetensors" in hub.file_paths("alice/mmkd-student")
    unanswered = [method for method, path, status in hub.requests if status == 0]
    assert unanswered == ["GET", "PUT", "POST"]
    assert ("POST", "/api/repos/create", 500) in hub.requests
    assert len(_commits_posted(hub)) == 2


def test_refused_connections_give_one_line_and_leave_no_empty_repo(run_dir, faulty_hub, tmp_path, capsys):
    from mmkd_hf.hub.push import PushError, main

    hub = faulty_hub
    hub.inject("refuse", method="POST", path="/commit/", times=100)
    with pytest.raises(PushError) as info:
        _push(run_dir, hub)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert "alice/mmkd-student" in message and "deleted again" in message and "run the same command again" in message
    assert ("model", "alice/mmkd-student") not in hub.repos  # the repo created for the push is gone
    assert len(_commits_posted(hub)) == FAST_RETRY["attempts"]

    # Nothing listening at all: the first request fails, nothing is created, the CLI prints one line.
    capsys.readouterr()  # forget the progress bars of the push above
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    assert main(["--run", str(run_dir), "--namespace", "alice", "--token", "hf_alice", "--endpoint", closed_url,
                 "--units", "student", "--retries", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach the Hub" in err and "nothing was created" in err


@pytest.mark.parametrize("fault", ["500-after-apply", "drop-after-apply"])
def test_a_commit_applied_despite_an_error_is_reported_as_pushed(run_dir, faulty_hub, fault):
    hub = faulty_hub
    hub.inject(fault, method="POST", path="/commit/")
    [record] = _push(run_dir, hub)
    assert record.changed and hub.commit_count("alice/mmkd-student") == 2  # no second commit
    assert record.commit == hub.repos[("model", "alice/mmkd-student")].branches["main"]
    assert len(_commits_posted(hub)) == 1


def test_a_second_push_completes_a_partial_one_and_a_third_makes_no_commit(run_dir, faulty_hub):
    from huggingface_hub import HfApi

    from mmkd_hf.hub.push import PushError

    hub = faulty_hub
    units = ["teacher-rgb", "ensemble", "student"]
    hub.inject("refuse", method="POST", path="^/api/models/alice/mmkd-student/commit/", times=100)
    with pytest.raises(PushError, match=r"alice/mmkd-student.*\[already pushed: alice/mmkd-teacher-rgb, "
                                        r"alice/mmkd-ensemble\]"):
        _push(run_dir, hub, units=units)
    hub.clear_faults()

    second = _push(run_dir, hub, units=units)
    assert [(p.unit, p.changed) for p in second] == [("teacher-rgb", False), ("ensemble", False), ("student", True)]
    assert {p.repo_id: hub.commit_count(p.repo_id) for p in second} == {p.repo_id: 2 for p in second}

    requests_before = len(hub.requests)
    third = _push(run_dir, hub, units=units)
    assert not any(p.changed for p in third) and not _commits_posted(hub, requests_before)
    assert [p.commit for p in third] == [p.commit for p in second]
    # The fake answers an existing repo as the Hub does (409 with its url), so exist_ok=True works.
    url = HfApi(endpoint=hub.url, token="hf_alice").create_repo("alice/mmkd-student", exist_ok=True)
    assert url.repo_id == "alice/mmkd-student"
