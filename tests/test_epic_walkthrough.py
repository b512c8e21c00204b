"""docs/epic-kitchens-100.md, command by command, on a tiny EPIC-KITCHENS-100 download in the official layout:
the dataset as downloaded -> ``mmkd-hf convert-backbone`` -> ``train.py --init_from`` -> ``mmkd-hf evaluate`` with
the official metrics -> ``mmkd-hf push``, then the student loaded by repo id from a loopback fake Hub.

Each step goes through the command's own entry point (``mmkd_hf.cli.main`` for ``mmkd-hf``,
``mmkd_hf.pipeline.main`` for ``train.py``), in this process. ``accelerate launch train.py ...`` with one process
runs exactly ``mmkd_hf.pipeline.main``; several processes (DDP) are covered by tests/test_pipeline_ddp.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hub_server import FakeHub
from mmkd_hf import cli, pipeline
from mmkd_hf.data import RunSettings
from mmkd_hf.models.video_swin.modeling_video_swin import VideoSwinModel
from mmkd_hf.pipeline.arguments import parse_config
from mmkd_hf.pipeline.model_builders import build_student
from test_convert_backbone import TEST_PRESET_SWIN, random_backbone, to_torchvision_names, write_mmaction_checkpoint
from test_data_official_layout import epic_layouts  # noqa: F401  (the fixture: the tiny official download)

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "epic-kitchens-100.md"
# configs/epic-kitchens-100.json as documented, shrunk to a run of a few seconds (the command line overrides it)
TINY_SCHEDULE = {"preset": "test", "teacher_epochs": 1, "student_epochs": 1, "teacher_batch_size": 2,
                 "student_batch_size": 2, "eval_batch_size": 4, "num_workers": 0, "save_steps": 1,
                 "report_to": "none", "max_steps": 1,
                 "held_out_fraction": 0.34}  # 3 training segments: 1 held out for the ensemble weights


def _backbone_of(model) -> dict[str, torch.Tensor]:
    return model.backbone.state_dict()


@pytest.fixture(scope="module")
def walkthrough(epic_layouts, tmp_path_factory):  # noqa: F811
    """Steps 1-4 once: the download, the converted backbone, the run and its evaluation."""
    work = tmp_path_factory.mktemp("walkthrough")
    # 1. the download as the official downloader and the annotations clone leave it (P02's frames still in .tar)
    data = shutil.copytree(epic_layouts["download"], work / "data")  # data/annotations + data/EPIC-KITCHENS/<P>
    assert (data / "annotations" / "EPIC_100_train.csv").is_file() and (data / "EPIC-KITCHENS" / "P01").is_dir()

    # 2. mmkd-hf convert-backbone --checkpoint checkpoints/<k400>.pth --out checkpoints/swin-t-kinetics400
    source = random_backbone(**TEST_PRESET_SWIN)  # the test preset's Video Swin, in the Video Swin release's format
    (work / "checkpoints").mkdir()
    checkpoint = write_mmaction_checkpoint(work / "checkpoints" / "k400.pth", source)
    converted = work / "checkpoints" / "swin-t-kinetics400"
    assert cli.main(["convert-backbone", "--checkpoint", str(checkpoint), "--out", str(converted)]) == 0
    assert VideoSwinModel.from_pretrained(converted).config.embed_dim == TEST_PRESET_SWIN["embed_dim"]

    # 3. accelerate launch train.py --config configs/epic-kitchens-100.json --data_dir data/EPIC-KITCHENS
    #    --init_from checkpoints/swin-t-kinetics400   (one process: train.py's main, in this process)
    config = json.loads((REPO / "configs" / "epic-kitchens-100.json").read_text())
    config.update(TINY_SCHEDULE)
    config_file = work / "epic-kitchens-100.json"
    config_file.write_text(json.dumps(config))
    outputs = work / "outputs"
    args = ["--config", str(config_file), "--data_dir", str(data / "EPIC-KITCHENS"), "--output_dir", str(outputs)]
    assert pipeline.main(args + ["--init_from", str(converted)]) == 0
    run = outputs / "epic-kitchens-100-test-seed42"
    assert (run / "student").is_dir() and (run / "run_settings.json").is_file()

    # 4. mmkd-hf evaluate --model outputs/<run>/student --clips 2 --crops 3 (here 1 x 1)
    assert cli.main(["evaluate", "--model", str(run / "student"), "--clips", "1", "--crops", "1"]) == 0
    return {"data": data, "source": source, "checkpoint": checkpoint, "converted": converted, "run": run,
            "config_file": config_file}


def test_the_document_lists_the_commands_this_test_runs():
    text = DOC.read_text()
    for command in ("mmkd-hf convert-backbone --checkpoint", "--init_from checkpoints/swin-t-kinetics400",
                    "accelerate launch train.py --config configs/epic-kitchens-100.json --data_dir data/EPIC-KITCHENS",
                    "mmkd-hf evaluate --model outputs/epic-kitchens-100-base-seed42/student --clips 2 --crops 3",
                    "mmkd-hf push --run outputs/epic-kitchens-100-base-seed42 --namespace <user>"):
        assert command in text, command
    config = json.loads((REPO / "configs" / "epic-kitchens-100.json").read_text())
    assert config["dataset"] == "epic-kitchens-100" and config["data_dir"] == "data/EPIC-KITCHENS"


def test_train_starts_from_the_converted_backbone_and_remembers_the_download(walkthrough):
    run, source = walkthrough["run"], walkthrough["source"]
    results = json.loads((run / "results.json").read_text())
    assert {"teacher-rgb", "teacher-flow", "teacher-audio", "teacher-layout", "ensemble", "student"} <= set(
        results["models"])
    settings = RunSettings.from_run_dir(run)
    assert settings.dataset == "epic-kitchens-100"
    assert Path(settings.data_dir).resolve() == (walkthrough["data"] / "EPIC-KITCHENS").resolve()
    # every Video Swin starts from the checkpoint: one max_steps=1 step moves each weight by at most ~lr
    from transformers import AutoModel

    student = AutoModel.from_pretrained(run / "student")
    ours = _backbone_of(student)["patch_embed.proj.weight"]
    theirs = source.state_dict()["patch_embed.proj.weight"]
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-2), "the student did not start from --init_from"
    scratch = VideoSwinModel(source.config).state_dict()["patch_embed.proj.weight"]
    assert not torch.allclose(scratch, theirs, atol=1e-2)


def test_init_from_the_checkpoint_file_as_the_config_names_it(walkthrough):
    """The config's own ``init_from`` (the .pth file of the Video Swin release) reaches the student as the
    converted folder does (same parse as train.py; the models are built, not trained again)."""
    args = ["--config", str(walkthrough["config_file"]), "--data_dir", str(walkthrough["data"] / "EPIC-KITCHENS")]
    heads, labels = {"verb": 3, "noun": 5}, {"verb": list("abc"), "noun": list("abcde")}
    from_file = build_student(parse_config(args + ["--init_from", str(walkthrough["checkpoint"])]), heads, labels)
    from_folder = build_student(parse_config(args + ["--init_from", str(walkthrough["converted"])]), heads, labels)
    for key, value in walkthrough["source"].state_dict().items():
        assert torch.equal(_backbone_of(from_file)[key], value), key
        assert torch.equal(_backbone_of(from_folder)[key], value), key


def test_convert_backbone_reads_torchvision_swin3d_t_too(walkthrough, tmp_path):
    """mmkd-hf convert-backbone --checkpoint checkpoints/swin3d_t_k400.pth --out checkpoints/swin3d-t-kinetics400
    (a state dict with torchvision's names, as ``swin3d_t(...).state_dict()`` saves it)."""
    source = walkthrough["source"]
    checkpoint = tmp_path / "swin3d_t_k400.pth"
    torch.save(to_torchvision_names(source.state_dict()), checkpoint)
    out = tmp_path / "swin3d-t-kinetics400"
    assert cli.main(["convert-backbone", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    converted = VideoSwinModel.from_pretrained(out).state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(converted[key], value), key


def test_train_with_the_config_as_written_and_annotations_elsewhere(epic_layouts, tmp_path, monkeypatch):  # noqa: F811
    """Steps 1-2 without conversion, from the working directory the document assumes: the config's own
    ``init_from`` (checkpoints/swin_tiny_patch244_window877_kinetics400_1k.pth, the Video Swin release's file) and
    ``data_dir`` (data/EPIC-KITCHENS), the annotations cloned elsewhere and named by ``--annotations_dir``; then
    ``mmkd-hf evaluate`` finds them again through the run's settings."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(epic_layouts["download"] / "EPIC-KITCHENS", tmp_path / "data" / "EPIC-KITCHENS")
    annotations = shutil.copytree(epic_layouts["download"] / "annotations",
                                  tmp_path / "src" / "epic-kitchens-100-annotations")
    config = json.loads((REPO / "configs" / "epic-kitchens-100.json").read_text())
    (tmp_path / "checkpoints").mkdir()
    source = random_backbone(**TEST_PRESET_SWIN)
    write_mmaction_checkpoint(tmp_path / config["init_from"], source)
    config.update(TINY_SCHEDULE, teachers="rgb")
    Path("epic-kitchens-100.json").write_text(json.dumps(config))
    # accelerate launch train.py --config configs/epic-kitchens-100.json --data_dir data/EPIC-KITCHENS \
    #     --annotations_dir ~/src/epic-kitchens-100-annotations
    assert pipeline.main(["--config", "epic-kitchens-100.json", "--data_dir", "data/EPIC-KITCHENS",
                          "--annotations_dir", str(annotations)]) == 0
    run = Path("outputs/epic-kitchens-100-test-seed42")
    student = VideoSwinModel.from_pretrained(run / "student")  # the backbone of the saved classifier
    theirs = source.state_dict()["patch_embed.proj.weight"]
    assert torch.allclose(student.state_dict()["patch_embed.proj.weight"], theirs, atol=1e-2)
    assert cli.main(["evaluate", "--model", str(run / "student"), "--clips", "1", "--crops", "1"]) == 0
    assert (run / "student" / "eval-validation-1x1" / "metrics.json").is_file()


def test_evaluate_defaults_to_the_run_and_writes_the_official_metrics(walkthrough):
    student = walkthrough["run"] / "student"
    out = student / "eval-validation-1x1"
    assert out.is_dir(), sorted(p.name for p in student.iterdir())
    files = {p.name for p in out.iterdir()}
    assert {"metrics.json", "epic_results.pt", "epic_submission.zip", "reliability.png"} <= files, sorted(files)
    metrics = json.loads((out / "metrics.json").read_text())
    for head in ("verb", "noun"):  # calibration of each head
        assert {"top1", "top5", "ece", "mce", "nll", "brier"} <= set(metrics["heads"][head]), head
    for part in ("all", "tail", "unseen"):  # the official evaluation's overall / tail / unseen top-1 and top-5
        for head in ("verb", "noun", "action"):
            for k in (1, 5):
                assert 0.0 <= metrics["epic"][f"{part}_{head}_accuracy_at_{k}"] <= 100.0, (part, head, k)
    assert metrics["epic"]["all_action_num_samples"] == 2  # both validation segments, P02's read from its .tar


def test_push_then_load_the_student_by_repo_id(walkthrough, tmp_path, monkeypatch):
    import huggingface_hub.constants
    from transformers import AutoModel

    run = walkthrough["run"]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the fake Hub serves plain LFS
    with FakeHub(tokens={"hf_alice": "alice"}) as hub:
        # mmkd-hf push --run outputs/<run> --namespace <user>
        assert cli.main(["push", "--run", str(run), "--namespace", "alice", "--token", "hf_alice",
                         "--endpoint", hub.url]) == 0
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_TOKEN", "hf_alice")
        pushed = huggingface_hub.HfApi(endpoint=hub.url, token="hf_alice").list_repo_files("alice/mmkd-student")
        student = AutoModel.from_pretrained("alice/mmkd-student", cache_dir=tmp_path / "hub-cache")
    assert {"README.md", "config.json", "model.safetensors"} <= set(pushed)
    assert "eval-validation-1x1/metrics.json" in pushed  # the evaluation written inside the model folder goes along
    local = AutoModel.from_pretrained(run / "student")
    for key, value in local.state_dict().items():
        assert torch.equal(student.state_dict()[key], value), key
