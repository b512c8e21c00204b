"""Pretrained Video Swin backbones: `mmkd-hf convert-backbone` (mmaction and torchvision checkpoints written here
with random weights) and `train.py --init_from` (every Video Swin of a run starts from the checkpoint)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.video import swin3d_t

import mmkd_hf  # noqa: F401  (registers the Auto classes)
from mmkd_hf.cli import main as cli_main
from mmkd_hf.models.convert_backbone import (
    BackboneCheckpointError,
    KINETICS_SWIN_T_FILE,
    convert_backbone,
    read_backbone_checkpoint,
    read_pretrained_backbone,
    window_size_from_bias_table,
)
from mmkd_hf.models.multi_head_video_pipeline import REMOTE_PIPELINE_FILE
from mmkd_hf.models.video_swin.configuration_video_swin import IMAGENET_MEAN, IMAGENET_STD, VideoSwinConfig
from mmkd_hf.models.video_swin.modeling_video_swin import VideoSwinForVideoClassification, VideoSwinModel
from mmkd_hf.pipeline.arguments import PipelineConfig, load_config_file, parse_config
from mmkd_hf.pipeline.model_builders import build_student, build_teacher

REPO = Path(__file__).resolve().parents[1]
SMALL_SWIN = dict(embed_dim=16, depths=(2, 2, 1, 1), num_heads=(1, 2, 2, 4), window_size=(4, 3, 3), mlp_ratio=2.0)
# The "test" preset's Video Swin (teachers and student share it).
TEST_PRESET_SWIN = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(2, 4, 4),
                        mlp_ratio=2.0)
HEADS = {"verb": 3, "noun": 5}
HEAD_LABELS = {"verb": ["take", "put", "wash"], "noun": ["cup", "plate", "knife", "tap", "door"]}


def random_backbone(**architecture) -> VideoSwinModel:
    torch.manual_seed(0)
    model = VideoSwinModel(VideoSwinConfig(**architecture)).eval()
    with torch.no_grad():  # LayerNorms away from (1, 0), so a norm that is not copied shows
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def write_mmaction_checkpoint(path: Path, model: VideoSwinModel, prefix: str = "backbone.", wrap: bool = True,
                              drop_index: bool = False) -> Path:
    """The layout of the Video Swin Transformer release: mmcv ``meta`` + ``state_dict`` with a Kinetics head."""
    state = {f"{prefix}{key}": value.clone() for key, value in model.state_dict().items()
             if not (drop_index and key.endswith("relative_position_index"))}
    state["cls_head.fc_cls.weight"] = torch.randn(400, model.config.num_features)
    state["cls_head.fc_cls.bias"] = torch.randn(400)
    meta = {"epoch": 30, "mmcv_version": "1.3.0", "best_score": np.float64(0.78)}
    torch.save({"meta": meta, "state_dict": state} if wrap else state, path)
    return path


def clip(frames=8, size=48, seed=1) -> torch.Tensor:
    return torch.rand(2, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def features(model: VideoSwinModel, pixel_values: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=pixel_values).pooler_output


# ------------------------------------------------------------------------------------------------ convert-backbone


@pytest.mark.parametrize("prefix, wrap, drop_index", [("backbone.", True, False), ("", False, True)],
                         ids=["mmaction-checkpoint", "bare-state-dict-without-prefix"])
def test_mmaction_checkpoint_converts_to_a_backbone_folder(tmp_path, capsys, prefix, wrap, drop_index):
    source = random_backbone(**SMALL_SWIN)
    checkpoint = write_mmaction_checkpoint(tmp_path / "swin.pth", source, prefix, wrap, drop_index)
    out = tmp_path / "backbone"
    assert cli_main(["convert-backbone", "--checkpoint", str(checkpoint), "--out", str(out),
                     "--num-frames", "8", "--image-size", "48"]) == 0
    assert "wrote VideoSwinModel (embed_dim 16, depths (2, 2, 1, 1)" in capsys.readouterr().out
    loaded = VideoSwinModel.from_pretrained(out).eval()
    assert loaded.config.window_size == (4, 3, 3) and loaded.config.mlp_ratio == 2.0
    assert (features(loaded, clip()) - features(source, clip())).abs().max() <= 1e-4
    # the folder carries its video processor, and declares no classification pipeline (a backbone has no heads)
    processor = json.loads((out / "video_preprocessor_config.json").read_text())
    assert processor["num_frames"] == 8 and processor["crop_size"] == {"height": 48, "width": 48}
    assert "custom_pipelines" not in json.loads((out / "config.json").read_text())
    assert not (out / REMOTE_PIPELINE_FILE).exists()


def test_torchvision_swin3d_t_converts_and_matches_torchvision_features(tmp_path):
    torch.manual_seed(0)
    tv = swin3d_t(weights=None).eval()
    checkpoint = tmp_path / "swin3d_t.pth"
    torch.save(tv.state_dict(), checkpoint)
    out = tmp_path / "backbone"
    assert cli_main(["convert-backbone", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    loaded = VideoSwinModel.from_pretrained(out).eval()
    assert (loaded.config.embed_dim, loaded.config.depths, loaded.config.window_size) == (96, (2, 2, 6, 2), (8, 7, 7))
    video = clip(frames=4, size=64)  # [B, T, C, H, W] in [0, 1]; the model normalises inside
    mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    head, tv.head = tv.head, torch.nn.Identity()
    with torch.no_grad():
        expected = tv(((video - mean) / std).transpose(1, 2))
    tv.head = head
    assert (features(loaded, video) - expected).abs().max() <= 1e-4


def test_window_size_is_read_from_the_bias_table():
    assert window_size_from_bias_table(15 * 13 * 13, 8 * 7 * 7) == (8, 7, 7)
    assert window_size_from_bias_table(15 * 13 * 13) == (8, 7, 7)  # without the index: the cube-like window
    assert window_size_from_bias_table(7 * 11 * 11, 4 * 6 * 6) == (4, 6, 6)
    assert window_size_from_bias_table(2, None) is None


class WritesAFile:
    """Unpickling this would create ``target``: the converter must refuse the checkpoint before that."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "code ran"))


def test_checkpoint_that_pickles_code_is_refused_and_nothing_runs(tmp_path, capsys):
    target = tmp_path / "pwned.txt"
    checkpoint = tmp_path / "evil.pth"
    torch.save({"state_dict": {"backbone.patch_embed.proj.weight": torch.zeros(1)}, "hook": WritesAFile(target)},
               checkpoint)
    with pytest.raises(BackboneCheckpointError, match="refused, it is not a weights-only checkpoint") as error:
        read_backbone_checkpoint(checkpoint)
    assert "\n" not in str(error.value)
    assert cli_main(["convert-backbone", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]) == 1
    assert "refused" in capsys.readouterr().err
    assert not target.exists() and not (tmp_path / "o").exists()


def test_mismatched_keys_give_one_line_naming_the_first_missing_and_unexpected(tmp_path, capsys):
    model = random_backbone(**SMALL_SWIN)
    checkpoint = write_mmaction_checkpoint(tmp_path / "swin.pth", model)
    state = torch.load(checkpoint, weights_only=False)
    del state["state_dict"]["backbone.layers.1.blocks.0.mlp.fc2.bias"]
    state["state_dict"]["backbone.layers.0.blocks.0.attn.extra.weight"] = torch.zeros(2)
    torch.save(state, checkpoint)
    assert cli_main(["convert-backbone", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]) == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message
    assert "1 missing (first: layers.1.blocks.0.mlp.fc2.bias)" in message
    assert "1 unexpected (first: layers.0.blocks.0.attn.extra.weight)" in message


def test_not_a_swin_checkpoint_is_named(tmp_path):
    checkpoint = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7)}, checkpoint)
    with pytest.raises(BackboneCheckpointError, match="not a Video Swin backbone"):
        read_backbone_checkpoint(checkpoint)


# ------------------------------------------------------------------------------------------------ --init_from


def run_config(tmp_path: Path, init_from, preset: str = "test", **overrides) -> PipelineConfig:
    return PipelineConfig(dataset="mini-kitchens", preset=preset, output_dir=str(tmp_path / "runs"),
                          init_from=None if init_from is None else str(init_from), **overrides)


def every_video_swin(config: PipelineConfig) -> dict[str, VideoSwinForVideoClassification]:
    units = {f"teacher-{m}": build_teacher(config, m, HEADS, HEAD_LABELS) for m in ("rgb", "flow", "audio")}
    units["student"] = build_student(config, HEADS, HEAD_LABELS)  # also baseline-rgb and omnivore
    return units


def assert_backbone_equals(model: VideoSwinForVideoClassification, source: VideoSwinModel) -> None:
    ours, theirs = model.backbone.state_dict(), source.state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


@pytest.mark.parametrize("kind", ["mmaction-file", "torchvision-file", "backbone-folder", "classifier-folder"])
def test_every_video_swin_of_a_run_starts_from_init_from(tmp_path, kind):
    source = random_backbone(**TEST_PRESET_SWIN)
    if kind == "mmaction-file":
        init_from = write_mmaction_checkpoint(tmp_path / "k400.pth", source)
    elif kind == "torchvision-file":
        init_from = tmp_path / "swin3d.pth"
        torch.save(to_torchvision_names(source.state_dict()), init_from)
    elif kind == "backbone-folder":
        init_from = tmp_path / "backbone"
        source.save_pretrained(init_from)
    else:
        classifier = VideoSwinForVideoClassification(VideoSwinConfig(**TEST_PRESET_SWIN, heads={"action": 400}))
        classifier.backbone.load_state_dict(source.state_dict())
        init_from = tmp_path / "classifier"
        classifier.save_pretrained(init_from)
    units = every_video_swin(run_config(tmp_path, init_from))
    for unit, model in units.items():
        assert_backbone_equals(model, source)
        assert model.config.heads == HEADS and model.config.head_labels == HEAD_LABELS, unit
        assert model.config.num_channels == 3, unit  # RGB patch embedding; flow/audio adapted by the model
    assert units["teacher-flow"].config.image_mean == list(IMAGENET_MEAN)
    # fresh heads: the same as a random build with the same seed
    torch.manual_seed(5)
    pretrained = build_student(run_config(tmp_path, init_from), HEADS, HEAD_LABELS)
    torch.manual_seed(5)
    scratch = build_student(run_config(tmp_path, None), HEADS, HEAD_LABELS)
    for head in HEADS:
        assert torch.equal(pretrained.classifiers[head].weight, scratch.classifiers[head].weight)
    # flow (u, v) and 1-channel audio clips go through the 3-channel teachers
    with torch.no_grad():
        assert units["teacher-flow"](flow_values=torch.rand(1, 4, 2, 32, 32)).logits["verb"].shape == (1, 3)
        assert units["teacher-audio"](audio_values=torch.randn(1, 4, 1, 32, 32)).logits["noun"].shape == (1, 5)


def to_torchvision_names(state: dict) -> dict:
    """Our backbone keys -> torchvision SwinTransformer3d keys (the inverse of the torchvision converter)."""
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "layers":
            stage = int(parts[1])
            if parts[2] == "blocks":
                rest = ".".join(parts[4:]).replace("mlp.fc1.", "mlp.0.").replace("mlp.fc2.", "mlp.3.")
                key = f"features.{2 * stage}.{parts[3]}.{rest}"
            else:
                key = f"features.{2 * stage + 1}.{'.'.join(parts[3:])}"
        renamed[key] = value
    renamed["head.weight"], renamed["head.bias"] = torch.zeros(400, 128), torch.zeros(400)
    return renamed


def test_architecture_mismatch_names_the_preset_and_the_checkpoint_sizes(tmp_path):
    checkpoint = write_mmaction_checkpoint(tmp_path / "k400.pth", random_backbone(**SMALL_SWIN))
    with pytest.raises(BackboneCheckpointError) as error:
        build_teacher(run_config(tmp_path, checkpoint, preset="tiny"), "rgb", HEADS, HEAD_LABELS)
    message = str(error.value)
    assert "\n" not in message and "preset 'tiny'" in message
    assert "embed_dim 16, depths (2, 2, 1, 1)" in message  # the checkpoint's sizes
    assert "embed_dim 32" in message  # the preset's teacher


def test_missing_kinetics_file_says_where_it_comes_from(tmp_path, capsys):
    missing = tmp_path / "checkpoints" / KINETICS_SWIN_T_FILE
    with pytest.raises(BackboneCheckpointError) as error:
        read_pretrained_backbone(missing)
    message = str(error.value)
    assert "\n" not in message
    assert "github.com/SwinTransformer/Video-Swin-Transformer" in message and "Kinetics-400" in message
    assert "mmkd-hf convert-backbone" in message
    # train.py fails before the run starts, with the same line
    with pytest.raises(ValueError, match="Video-Swin-Transformer"):
        parse_config(["--preset", "test", "--init_from", str(missing), "--output_dir", str(tmp_path)])
    assert parse_config(["--preset", "test", "--init_from", "none"]).init_from is None


def test_repo_id_while_offline_says_it_is_not_cached(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(BackboneCheckpointError) as error:
        read_pretrained_backbone("someone/video-swin-t-k400")
    message = str(error.value)
    assert "\n" not in message and "not in the local cache" in message
    assert "hf download someone/video-swin-t-k400" in message
    with pytest.raises(ValueError, match="init_from: someone/video-swin-t-k400: not a local file or folder"):
        parse_config(["--preset", "test", "--init_from", "someone/video-swin-t-k400"])


def test_init_from_enters_the_run_identity_only_when_set(tmp_path):
    checkpoint = write_mmaction_checkpoint(tmp_path / "k400.pth", random_backbone(**TEST_PRESET_SWIN))
    assert "init_from" not in run_config(tmp_path, None).identity()
    assert run_config(tmp_path, checkpoint).identity()["init_from"] == str(checkpoint)
    assert run_config(tmp_path, checkpoint).identity_hash() != run_config(tmp_path, None).identity_hash()


@pytest.mark.parametrize("name", ["epic-kitchens-100", "something-something-v2", "something-else"])
def test_real_dataset_configs_start_from_the_kinetics_backbone(name):
    values = load_config_file(REPO / "configs" / f"{name}.json")
    assert values["init_from"] == f"checkpoints/{KINETICS_SWIN_T_FILE}" and values["preset"] == "base"


def test_weights_and_evaluate_stages_do_not_need_the_checkpoint(tmp_path):
    missing = str(tmp_path / KINETICS_SWIN_T_FILE)
    for stage in ("weights", "evaluate"):
        assert run_config(tmp_path, missing, stage=stage).init_from == missing
    assert not os.path.exists(missing)


def test_base_preset_starts_from_a_full_size_swin_t_checkpoint(tmp_path):
    source = VideoSwinModel(VideoSwinConfig()).eval()  # Video Swin-T, as the Kinetics-400 file
    checkpoint = write_mmaction_checkpoint(tmp_path / KINETICS_SWIN_T_FILE, source)
    config = PipelineConfig(dataset="epic-kitchens-100", data_dir=str(tmp_path), preset="base",
                            output_dir=str(tmp_path / "runs"), init_from=str(checkpoint))
    for model in (build_teacher(config, "flow", HEADS, HEAD_LABELS), build_student(config, HEADS, HEAD_LABELS)):
        assert_backbone_equals(model, source)


def test_a_folder_of_another_model_is_refused(tmp_path):
    folder = tmp_path / "stlt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mmkd_stlt"}))
    with pytest.raises(BackboneCheckpointError, match="not a Video Swin model folder"):
        read_pretrained_backbone(folder)


def test_a_truncated_file_is_named_as_unreadable(tmp_path):
    checkpoint = write_mmaction_checkpoint(tmp_path / "swin.pth", random_backbone(**SMALL_SWIN))
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(BackboneCheckpointError, match="cannot be read as a PyTorch checkpoint") as error:
        read_backbone_checkpoint(checkpoint)
    assert "\n" not in str(error.value)


def test_a_relative_position_index_in_another_order_is_refused(tmp_path):
    source = random_backbone(**SMALL_SWIN)
    checkpoint = write_mmaction_checkpoint(tmp_path / "swin.pth", source)
    state = torch.load(checkpoint, weights_only=False)
    key = "backbone.layers.0.blocks.0.attn.relative_position_index"
    state["state_dict"][key] = state["state_dict"][key].flip(0)
    torch.save(state, checkpoint)
    with pytest.raises(BackboneCheckpointError, match="1 with another relative_position_index"):
        convert_backbone(checkpoint, tmp_path / "out")
