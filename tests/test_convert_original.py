"""Tests of the converter for the authors' checkpoints (synthetic original-layout checkpoints, tiny sizes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from conftest import SHARED_DATA

import mmkd_hf  # noqa: F401  (registers the Auto classes)
from mmkd_hf.models.convert_original import (
    STLT_ORIGINAL_KEY_RENAMES,
    convert_original_checkpoint,
    main,
    original_to_hf_key,
    read_original_config,
)
from mmkd_hf.models.stlt.configuration_stlt import STLTConfig
from mmkd_hf.models.stlt.modeling_stlt import STLTForVideoClassification
from mmkd_hf.models.video_swin.configuration_video_swin import VideoSwinConfig
from mmkd_hf.models.video_swin.modeling_video_swin import VideoSwinForVideoClassification

STLT_TINY = dict(hidden_size=16, num_attention_heads=2, num_spatial_layers=1, num_temporal_layers=1, intermediate_size=32)
SWIN_TINY = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(2, 2, 2), image_size=32)

SSV2_STLT_YAML = """\
MODEL_NAME: stlt
DATASET_TYPE: layout
NUM_FRAMES: 8
BATCH_SIZE: 32
TOTAL_ACTIONS:
  ACTION: 7
  NOUN: null
  VERB: null
BATCH_SIZE: 128
NUM_FRAMES: 4
"""

EPIC_FLOW_YAML = """\
MODEL_NAME: swin
DATASET_TYPE: flow
NUM_FRAMES: 4
TOTAL_ACTIONS:
  ACTION: null
  NOUN: 5
  VERB: 3
"""


class NotATensor:
    """A custom class: pickling an instance needs the full unpickler, which the converter must refuse."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def to_original_layout(model: torch.nn.Module, drop_suffix: str | None = None) -> dict[str, torch.Tensor]:
    """Our state dict renamed as the authors' code saved it: upper-case heads, ``_orig_mod.`` prefix."""
    inverse = {ours: original for original, ours in STLT_ORIGINAL_KEY_RENAMES.items()}
    original = {}
    for key, value in model.state_dict().items():
        if drop_suffix and key.endswith(drop_suffix):
            continue
        for ours, theirs in inverse.items():
            if key.startswith(ours):
                key = theirs + key[len(ours) :]
        if key.startswith("classifiers."):
            _, head, rest = key.split(".", 2)
            key = f"classifiers.{head.upper()}.{rest}"
        original[f"_orig_mod.{key}"] = value.clone()
    return original


def write_experiment(folder: Path, state: dict, yaml_text: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "model_checkpoint.pt")
    (folder / "config.yaml").write_text(yaml_text)
    return folder / "model_checkpoint.pt", folder / "config.yaml"


def layout_batch(frames=4, boxes=3):
    generator = torch.Generator().manual_seed(3)
    mask = torch.rand(2, frames, boxes, generator=generator) > 0.3
    return {
        "layout_boxes": torch.rand(2, frames, boxes, 4, generator=generator),
        "layout_categories": torch.randint(1, 3, (2, frames, boxes), generator=generator) * mask,
        "layout_scores": torch.rand(2, frames, boxes, generator=generator),
        "layout_sides": torch.randint(0, 3, (2, frames, boxes), generator=generator),
        "layout_states": torch.randint(0, 6, (2, frames, boxes), generator=generator),
        "layout_mask": mask,
    }


def tiny_stlt() -> STLTForVideoClassification:
    torch.manual_seed(0)
    model = STLTForVideoClassification(STLTConfig(**STLT_TINY, num_frames=4, heads={"action": 7})).eval()
    with torch.no_grad():
        model.temporal_transformer.cls_token.normal_()
    return model


def tiny_flow_swin() -> VideoSwinForVideoClassification:
    torch.manual_seed(0)
    config = VideoSwinConfig(**SWIN_TINY, num_frames=4, modality="flow", num_channels=3, heads={"verb": 3, "noun": 5})
    return VideoSwinForVideoClassification(config).eval()


# ---------------------------------------------------------------- config.yaml


def test_reads_config_last_duplicate_key_wins_and_heads_are_ordered(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(SSV2_STLT_YAML)
    run = read_original_config(path)
    assert (run.model_name, run.modality, run.num_frames, run.heads) == ("stlt", "layout", 4, {"action": 7})
    path.write_text(EPIC_FLOW_YAML)
    run = read_original_config(path)
    assert list(run.heads.items()) == [("verb", 3), ("noun", 5)] and run.modality == "flow"


@pytest.mark.parametrize(
    "dataset_type, modality",
    [("video", "rgb"), ("video_flow_audio", "rgb"), ("video_layout_flow", "rgb"), ("flow", "flow"), ("audio", "audio")],
)
def test_dataset_type_maps_to_modality(tmp_path, dataset_type, modality):
    path = tmp_path / "config.yaml"
    path.write_text(EPIC_FLOW_YAML.replace("DATASET_TYPE: flow", f"DATASET_TYPE: {dataset_type}"))
    assert read_original_config(path).modality == modality


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        (EPIC_FLOW_YAML.replace("MODEL_NAME: swin", "MODEL_NAME: resnet3d"), "MODEL_NAME"),
        (EPIC_FLOW_YAML.replace("NOUN: 5", "NOUN: null").replace("VERB: 3", "VERB: null"), "no non-null head"),
        (EPIC_FLOW_YAML.replace("DATASET_TYPE: flow", "DATASET_TYPE: depth"), "DATASET_TYPE 'depth'"),
        (EPIC_FLOW_YAML.replace("NOUN: 5", "NOUN: -1"), "TOTAL_ACTIONS.NOUN"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_invalid_configs_are_rejected_naming_the_field(tmp_path, yaml_text, message):
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError, match=message) as error:
        read_original_config(path)
    assert str(path) in str(error.value)


def test_key_mapping():
    assert original_to_hf_key("_orig_mod.classifiers.VERB.weight", "swin") == "classifiers.verb.weight"
    assert original_to_hf_key("backbone.norm.bias", "swin") == "backbone.norm.bias"
    key = "temporal_transformer.layout_embedding.category_box_embeddings.side_embedding.weight"
    assert original_to_hf_key("_orig_mod." + key, "stlt") == key


# ---------------------------------------------------------------- conversion


def test_stlt_conversion_gives_identical_logits(tmp_path):
    model = tiny_stlt()
    checkpoint, config = write_experiment(tmp_path / "exp", to_original_layout(model), SSV2_STLT_YAML)
    out = tmp_path / "converted"
    convert_original_checkpoint(checkpoint, config, out, config_overrides=STLT_TINY)
    assert (out / "model.safetensors").is_file()
    loaded = AutoModel.from_pretrained(out).eval()
    assert isinstance(loaded, STLTForVideoClassification) and loaded.config.heads == {"action": 7}
    batch = layout_batch()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits["action"], model(**batch).logits["action"])


@pytest.mark.parametrize("with_index_buffers", [True, False])
def test_swin_flow_conversion_with_or_without_relative_position_index(tmp_path, with_index_buffers):
    model = tiny_flow_swin()
    original = to_original_layout(model, drop_suffix=None if with_index_buffers else "relative_position_index")
    assert any(key.endswith("relative_position_index") for key in original) == with_index_buffers
    assert "_orig_mod.classifiers.VERB.weight" in original
    checkpoint, config = write_experiment(tmp_path / "exp", original, EPIC_FLOW_YAML)
    out = tmp_path / "converted"
    converted = convert_original_checkpoint(checkpoint, config, out, config_overrides=SWIN_TINY)
    assert list(converted.config.heads) == ["verb", "noun"]
    loaded = AutoModel.from_pretrained(out).eval()
    assert loaded.config.modality == "flow" and loaded.config.num_channels == 3
    assert loaded.config.heads == {"verb": 3, "noun": 5}
    flow = torch.rand(2, 4, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model(pixel_values=flow).logits, loaded(pixel_values=flow).logits
    for head in ("verb", "noun"):
        assert torch.equal(got[head], expected[head])


def test_extra_and_missing_keys_are_both_listed(tmp_path):
    original = to_original_layout(tiny_stlt())
    original["_orig_mod.temporal_transformer.surprise.weight"] = torch.zeros(2)
    del original["_orig_mod.temporal_transformer.layer_norm.bias"]
    checkpoint, config = write_experiment(tmp_path / "exp", original, SSV2_STLT_YAML)
    with pytest.raises(ValueError) as error:
        convert_original_checkpoint(checkpoint, config, tmp_path / "out", config_overrides=STLT_TINY)
    message = str(error.value)
    assert "unexpected keys 1: [temporal_transformer.surprise.weight]" in message
    assert "missing keys 1: [temporal_transformer.layer_norm.bias]" in message
    assert not (tmp_path / "out").exists()


def test_shape_mismatch_is_reported(tmp_path):
    original = to_original_layout(tiny_stlt())  # position table of 4 frames
    checkpoint, config = write_experiment(
        tmp_path / "exp", original, SSV2_STLT_YAML.replace("NUM_FRAMES: 4", "NUM_FRAMES: 16")
    )
    with pytest.raises(ValueError, match=r"shape mismatches 1: \[temporal_transformer.position_embeddings.weight"):
        convert_original_checkpoint(checkpoint, config, tmp_path / "out", config_overrides=STLT_TINY)


def test_non_weights_only_pickle_is_refused(tmp_path):
    original = to_original_layout(tiny_stlt())
    original["extra"] = NotATensor()
    checkpoint, config = write_experiment(tmp_path / "exp", original, SSV2_STLT_YAML)
    with pytest.raises(ValueError, match="weights-only"):
        convert_original_checkpoint(checkpoint, config, tmp_path / "out", config_overrides=STLT_TINY)


def test_cli(tmp_path, capsys):
    model = tiny_stlt()
    checkpoint, config = write_experiment(tmp_path / "exp", to_original_layout(model), SSV2_STLT_YAML)
    # Default (full) sizes do not fit the tiny checkpoint: the CLI reports it and exits 1.
    assert main(["--checkpoint", str(checkpoint), "--config", str(config), "--out", str(tmp_path / "o")]) == 1
    assert "shape mismatches" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "nope.pt"), "--config", str(config), "--out", str(tmp_path / "o")]) == 1
    assert "is not a file" in capsys.readouterr().err


def test_relative_position_index_of_another_window_is_rejected(tmp_path):
    original = to_original_layout(tiny_flow_swin())
    key = next(key for key in original if key.endswith("relative_position_index"))
    original[key] = original[key].flip(0)
    checkpoint, config = write_experiment(tmp_path / "exp", original, EPIC_FLOW_YAML)
    with pytest.raises(ValueError, match="relative_position_index buffers differ"):
        convert_original_checkpoint(checkpoint, config, tmp_path / "out", config_overrides=SWIN_TINY)


EPIC_RGB_YAML = EPIC_FLOW_YAML.replace("DATASET_TYPE: flow", "DATASET_TYPE: video")


def test_converted_rgb_folder_runs_the_multi_head_pipeline(tmp_path):
    import json

    from transformers import pipeline

    from helpers_hub import write_clip
    from mmkd_hf.models.multi_head_video_pipeline import REMOTE_PIPELINE_FILE, REMOTE_TASK, TASK

    torch.manual_seed(0)
    model = VideoSwinForVideoClassification(
        VideoSwinConfig(**SWIN_TINY, num_frames=4, modality="rgb", heads={"verb": 3, "noun": 5})).eval()
    checkpoint, config = write_experiment(tmp_path / "exp", to_original_layout(model), EPIC_RGB_YAML)
    out = tmp_path / "converted"
    convert_original_checkpoint(checkpoint, config, out, config_overrides=SWIN_TINY)
    assert REMOTE_TASK in json.loads((out / "config.json").read_text())["custom_pipelines"]
    assert (out / REMOTE_PIPELINE_FILE).is_file() and (out / "video_preprocessor_config.json").is_file()
    result = pipeline(TASK, model=str(out))(str(write_clip(tmp_path / "clip.mp4", num_frames=8)), top_k=2)
    assert list(result) == ["verb", "noun", "action"] and len(result["verb"]) == 2


def test_converted_flow_folder_declares_no_video_pipeline(tmp_path):
    import json

    checkpoint, config = write_experiment(tmp_path / "exp", to_original_layout(tiny_flow_swin()), EPIC_FLOW_YAML)
    convert_original_checkpoint(checkpoint, config, tmp_path / "converted", config_overrides=SWIN_TINY)
    assert "custom_pipelines" not in json.loads((tmp_path / "converted" / "config.json").read_text())


# ---------------------------------------------------------------- class names (--annotations-dir)

EPIC_ANNOTATIONS = SHARED_DATA / "epic-kitchens-100-annotations"  # the real class lists, when ../shared/data exists
TINY_VERBS = ["take", "put", "wash"]
TINY_NOUNS = ["tap", "spoon", "plate", "cupboard", "knife"]

# Runs in a child that never imports mmkd_hf: pipeline, model and video processor come from the folder.
PIPELINE_CHILD_SCRIPT = """
import json
import sys

sys.modules["mmkd_hf"] = None  # `import mmkd_hf` raises ImportError in here
from transformers import pipeline

folder, clip = sys.argv[1:3]
classify = pipeline(model=folder, trust_remote_code=True)
result = classify(clip, top_k=3)
print(json.dumps({"module": type(classify).__module__, "result": result}))
"""


def write_epic_class_csvs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, keys in (("EPIC_100_verb_classes.csv", TINY_VERBS), ("EPIC_100_noun_classes.csv", TINY_NOUNS)):
        rows = ["id,key,instances,category"] + [f'{index},{key},"[\'{key}\']",misc' for index, key in enumerate(keys)]
        # written out of id order: the names must follow the ids
        (folder / name).write_text("\n".join([rows[0], *reversed(rows[1:])]) + "\n")
    return folder


@pytest.fixture
def epic_annotations(tmp_path) -> tuple[Path, dict[str, int]]:
    """The official EPIC-KITCHENS-100 annotations when present here, else a tiny class-list pair."""
    if (EPIC_ANNOTATIONS / "EPIC_100_verb_classes.csv").is_file():
        return EPIC_ANNOTATIONS, {"verb": 97, "noun": 300}
    return write_epic_class_csvs(tmp_path / "annotations"), {"verb": len(TINY_VERBS), "noun": len(TINY_NOUNS)}


def epic_rgb_experiment(folder: Path, heads: dict[str, int]) -> tuple[Path, Path]:
    torch.manual_seed(0)
    model = VideoSwinForVideoClassification(VideoSwinConfig(**SWIN_TINY, num_frames=4, modality="rgb", heads=heads))
    yaml_text = EPIC_RGB_YAML.replace("NOUN: 5", f"NOUN: {heads['noun']}").replace("VERB: 3", f"VERB: {heads['verb']}")
    return write_experiment(folder, to_original_layout(model.eval()), yaml_text)


def test_annotations_dir_gives_real_class_names_and_the_folder_runs_without_the_package(tmp_path, epic_annotations):
    import json
    import os
    import subprocess
    import sys

    from helpers_hub import write_clip

    annotations, heads = epic_annotations
    checkpoint, config = epic_rgb_experiment(tmp_path / "exp", heads)
    out = tmp_path / "converted"
    convert_original_checkpoint(checkpoint, config, out, config_overrides=SWIN_TINY, annotations_dir=annotations)
    labels = json.loads((out / "config.json").read_text())["head_labels"]
    assert [len(labels["verb"]), len(labels["noun"])] == [heads["verb"], heads["noun"]]
    assert labels["verb"][:2] == ["take", "put"] and labels["noun"][:2] == ["tap", "spoon"]

    (tmp_path / "child.py").write_text(PIPELINE_CHILD_SCRIPT)
    (tmp_path / "elsewhere").mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1",
               PYTHONNOUSERSITE="1")
    clip = write_clip(tmp_path / "clip.mp4", num_frames=8, height=48, width=48)
    result = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(out), str(clip)],
                            cwd=tmp_path / "elsewhere", env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["module"].startswith("transformers_modules.")
    assert {item["label"] for item in answer["result"]["verb"]} <= set(labels["verb"])
    assert {item["label"] for item in answer["result"]["noun"]} <= set(labels["noun"])
    assert not any(item["label"].startswith(("verb_", "noun_")) for head in ("verb", "noun")
                   for item in answer["result"][head])


def test_annotations_dir_without_the_class_csvs_is_one_clear_line(tmp_path, capsys):
    checkpoint, config = epic_rgb_experiment(tmp_path / "exp", {"verb": 3, "noun": 5})
    empty = tmp_path / "annotations"
    empty.mkdir()
    (empty / "EPIC_100_train.csv").write_text("narration_id\n")
    assert main(["--checkpoint", str(checkpoint), "--config", str(config), "--out", str(tmp_path / "o"),
                 "--annotations-dir", str(empty)]) == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and str(empty) in message and "EPIC_100_verb_classes.csv" in message
    assert not (tmp_path / "o").exists()
    assert main(["--checkpoint", str(checkpoint), "--config", str(config), "--out", str(tmp_path / "o"),
                 "--annotations-dir", str(tmp_path / "nope")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_class_count_must_match_the_head(tmp_path):
    annotations = write_epic_class_csvs(tmp_path / "annotations")
    checkpoint, config = epic_rgb_experiment(tmp_path / "exp", {"verb": 4, "noun": 5})
    with pytest.raises(ValueError, match="3 classes, but the checkpoint's verb head has 4"):
        convert_original_checkpoint(checkpoint, config, tmp_path / "o", config_overrides=SWIN_TINY,
                                    annotations_dir=annotations)
