"""A saved Video Swin folder loads with ``trust_remote_code=True`` in a Python that cannot import mmkd_hf."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

import mmkd_hf  # noqa: F401  (registers the Auto classes and `register_for_auto_class`)
from mmkd_hf.models.video_swin.configuration_video_swin import VideoSwinConfig
from mmkd_hf.models.video_swin.modeling_video_swin import VideoSwinForVideoClassification

# Runs in the child. `sys.modules[name] = None` makes every `import mmkd_hf` raise ImportError, even though
# the virtual environment holds an editable install of the package.
CHILD_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["mmkd_hf"] = None
    try:
        import mmkd_hf  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("mmkd_hf is importable in the child; the test would prove nothing")

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification

    folder, inputs_path, outputs_path = sys.argv[1:4]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__name__ == "VideoSwinForVideoClassification", type(model)
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    assert "mmkd_hf" not in sys.modules or sys.modules["mmkd_hf"] is None
    inputs = load_file(inputs_path)
    with torch.no_grad():
        logits = model(flow_values=inputs["flow_values"]).logits
    assert list(logits) == list(config.heads) == ["verb", "noun"], list(logits)
    classifier = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        assert all(torch.equal(classifier(flow_values=inputs["flow_values"]).logits[k], v) for k, v in logits.items())
    save_file({name: value.contiguous() for name, value in logits.items()}, outputs_path)
    """
)


def test_saved_folder_runs_without_the_package(tmp_path):
    torch.manual_seed(0)
    config = VideoSwinConfig(
        embed_dim=16, depths=(2, 1, 1, 1), num_heads=(1, 1, 2, 2), modality="flow", num_channels=3,
        heads={"verb": 3, "noun": 5}, drop_path_rate=0.0,
    )
    model = VideoSwinForVideoClassification(config).eval()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    assert (folder / "modeling_video_swin.py").is_file() and (folder / "configuration_video_swin.py").is_file()

    flow = torch.rand(2, 4, 2, 32, 32, generator=torch.Generator().manual_seed(1))
    save_file({"flow_values": flow}, tmp_path / "inputs.safetensors")
    (tmp_path / "child.py").write_text(CHILD_SCRIPT)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        PYTHONNOUSERSITE="1",
    )
    result = subprocess.run(
        [sys.executable, str(tmp_path / "child.py"), str(folder), str(tmp_path / "inputs.safetensors"),
         str(tmp_path / "outputs.safetensors")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    remote_logits = load_file(tmp_path / "outputs.safetensors")
    with torch.no_grad():
        local_logits = model(flow_values=flow).logits
    assert list(remote_logits) and set(remote_logits) == set(local_logits)
    for head, logits in local_logits.items():
        # the child may run with another thread count: equal up to float32 summation order
        torch.testing.assert_close(remote_logits[head], logits, rtol=1e-5, atol=1e-6, msg=head)


# Runs in a child that never imports mmkd_hf: the pipeline, the model and the video processor all come from
# the saved folder (task inferred from its single `custom_pipelines` entry).
PIPELINE_CHILD_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    from transformers import pipeline

    folder, clip = sys.argv[1:3]
    classify = pipeline(model=folder, trust_remote_code=True)
    result = classify(clip, top_k=2)
    assert "mmkd_hf" not in sys.modules, "the child imported mmkd_hf"
    print(json.dumps({"cls": type(classify).__name__, "module": type(classify).__module__, "result": result}))
    """
)


def test_saved_rgb_folder_runs_its_pipeline_without_the_package(tmp_path):
    from transformers import pipeline

    from helpers_hub import NOUNS, VERBS, tiny_config, write_clip
    from mmkd_hf.models.multi_head_video_pipeline import REMOTE_PIPELINE_FILE, REMOTE_TASK, TASK

    torch.manual_seed(0)
    model = VideoSwinForVideoClassification(tiny_config()).eval()
    folder = tmp_path / "student"
    model.save_pretrained(folder)  # nothing else: the folder must be complete on its own
    config = json.loads((folder / "config.json").read_text())
    assert list(config["custom_pipelines"]) == [REMOTE_TASK]
    assert (folder / REMOTE_PIPELINE_FILE).is_file()
    assert (folder / "video_preprocessor_config.json").is_file()
    clip = write_clip(tmp_path / "clip.mp4", num_frames=16, height=48, width=48)

    (tmp_path / "child.py").write_text(PIPELINE_CHILD_SCRIPT)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1",
               PYTHONNOUSERSITE="1")
    result = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(folder), str(clip)],
                            cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["cls"] == "MultiHeadVideoClassificationPipeline"
    assert answer["module"].startswith("transformers_modules."), answer["module"]
    remote = answer["result"]
    assert list(remote) == ["verb", "noun", "action"]
    assert {item["label"] for item in remote["verb"]} <= set(VERBS)
    assert {item["label"] for item in remote["noun"]} <= set(NOUNS)

    # With the package: the registered custom task, no trust_remote_code needed, same answer.
    local = pipeline(TASK, model=str(folder))(str(clip), top_k=2)
    for head in ("verb", "noun", "action"):
        assert [i["label"] for i in remote[head]] == [i["label"] for i in local[head]]
        assert [i["score"] for i in remote[head]] == pytest.approx([i["score"] for i in local[head]], rel=1e-5)
