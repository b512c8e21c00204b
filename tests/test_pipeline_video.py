"""The video processor and ``pipeline("video-classification")`` on real clips written with PyAV."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers_hub import NOUNS, VERBS, run_python, save_tiny_student, write_clip


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return save_tiny_student(tmp_path_factory.mktemp("student") / "student")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", num_frames=16, height=64, width=80)


@pytest.fixture(scope="module")
def classify(student):
    from transformers import pipeline

    return pipeline("mmkd-video-classification", model=str(student), compute_dtype="float32")


def _manual_probabilities(student, clip, **views):
    from transformers import AutoModel, AutoVideoProcessor

    model = AutoModel.from_pretrained(student).eval()
    processor = AutoVideoProcessor.from_pretrained(student)
    pixel_values = processor(str(clip), return_tensors="pt", **views)["pixel_values"]
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits
    return pixel_values, {head: value[0].softmax(-1) for head, value in logits.items()}


# ---------------------------------------------------------------- video processor
def test_uniform_clip_indices_cover_each_segment():
    from mmkd_hf.models.video_swin.video_processing_video_swin import uniform_clip_indices

    assert uniform_clip_indices(16, 4).tolist() == [2, 6, 10, 14]
    two = uniform_clip_indices(16, 4, num_clips=2).tolist()
    assert two == [1, 3, 5, 7, 9, 11, 13, 15]
    assert uniform_clip_indices(3, 4).tolist() == [0, 1, 1, 2]  # short videos repeat frames
    with pytest.raises(ValueError, match="no frames"):
        uniform_clip_indices(0, 4)


def test_processor_decodes_samples_resizes_and_crops(student, clip):
    from transformers import AutoVideoProcessor

    processor = AutoVideoProcessor.from_pretrained(student)
    assert type(processor).__name__ == "VideoSwinVideoProcessor"
    assert processor.do_normalize is False  # the model normalises inside forward
    pixel_values = processor(str(clip), return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 4, 3, 32, 32)
    assert pixel_values.dtype == torch.float32
    assert 0.0 <= float(pixel_values.min()) and float(pixel_values.max()) <= 1.0
    # The blue channel of frame i is 255 - 8 i: uniform sampling picks frames 2, 6, 10, 14.
    blue = pixel_values[0, :, 2].mean(dim=(1, 2)) * 255
    assert torch.allclose(blue, torch.tensor([255 - 8 * i for i in (2, 6, 10, 14)], dtype=torch.float32), atol=4)


def test_processor_views_are_clip_major(student, clip):
    from transformers import AutoVideoProcessor

    processor = AutoVideoProcessor.from_pretrained(student)
    views = processor(str(clip), num_clips=2, num_crops=3, return_tensors="pt")["pixel_values"]
    assert views.shape == (1, 6, 4, 3, 32, 32)
    # Red channel grows with x: the left crop (crop 0) is darker than the right crop (crop 2) in every clip.
    red = views[0, :, :, 0].mean(dim=(1, 2, 3))
    assert red[0] < red[2] and red[3] < red[5]
    # Crops of the same clip share frames (blue depends on time only); clips differ.
    blue = views[0, :, :, 2].mean(dim=(2, 3))
    assert torch.allclose(blue[0], blue[2], atol=2 / 255)
    assert not torch.allclose(blue[0], blue[3], atol=2 / 255)


def test_processor_reads_webm(tmp_path, student):
    from transformers import AutoVideoProcessor

    webm = write_clip(tmp_path / "clip.webm", codec="libvpx", num_frames=12)
    pixel_values = AutoVideoProcessor.from_pretrained(student)(str(webm), return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 4, 3, 32, 32)


def test_processor_rejects_bad_files(tmp_path, student):
    import av
    from transformers import AutoVideoProcessor

    processor = AutoVideoProcessor.from_pretrained(student)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00not a video" * 64)
    with pytest.raises(ValueError, match="corrupt.mp4: not a readable video"):
        processor(str(corrupt))
    with pytest.raises(ValueError, match="not found"):
        processor(str(tmp_path / "missing.mp4"))
    audio_only = tmp_path / "audio.m4a"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    with pytest.raises(ValueError, match="no video stream"):
        processor(str(audio_only))


# ---------------------------------------------------------------- pipeline
def test_pipeline_returns_named_verb_noun_action(classify, student, clip):
    assert type(classify).__name__ == "MultiHeadVideoClassificationPipeline"
    result = classify(str(clip), top_k=3)
    assert list(result) == ["verb", "noun", "action"]
    assert [len(result[h]) for h in result] == [3, 3, 3]
    assert {item["label"] for item in result["verb"]} <= set(VERBS)
    assert {item["label"] for item in result["noun"]} <= set(NOUNS)
    for head in result:
        scores = [item["score"] for item in result[head]]
        assert scores == sorted(scores, reverse=True)
    _, probs = _manual_probabilities(student, clip)
    best_verb, best_noun = int(probs["verb"].argmax()), int(probs["noun"].argmax())
    assert result["verb"][0]["label"] == VERBS[best_verb]
    assert result["verb"][0]["score"] == pytest.approx(float(probs["verb"].max()), rel=1e-5)
    assert result["action"][0]["label"] == f"{VERBS[best_verb]} {NOUNS[best_noun]}"
    assert result["action"][0]["score"] == pytest.approx(float(probs["verb"].max() * probs["noun"].max()), rel=1e-5)


def test_pipeline_averages_probabilities_over_views(classify, student, clip):
    result = classify(str(clip), top_k=len(VERBS), num_clips=2, num_crops=3)
    pixel_values, _ = _manual_probabilities(student, clip)
    from transformers import AutoModel, AutoVideoProcessor

    model = AutoModel.from_pretrained(student).eval()
    views = AutoVideoProcessor.from_pretrained(student)(str(clip), num_clips=2, num_crops=3, return_tensors="pt")
    with torch.no_grad():
        verb_logits = model(**views).logits["verb"][0]  # [V, C]
    expected = verb_logits.softmax(-1).mean(0)
    got = {item["label"]: item["score"] for item in result["verb"]}
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
    for index, name in enumerate(VERBS):
        assert got[name] == pytest.approx(float(expected[index]), rel=1e-5)


def test_pipeline_batch_and_bad_arguments(classify, clip):
    batch = classify([str(clip), str(clip)], top_k=1)
    assert len(batch) == 2 and batch[0] == batch[1]
    with pytest.raises(ValueError, match="num_crops"):
        classify(str(clip), num_crops=0)


def test_pipeline_keeps_stock_behaviour_for_tensor_logits(classify):
    from transformers.modeling_outputs import ImageClassifierOutput

    outputs = ImageClassifierOutput(logits=torch.tensor([[0.0, 3.0]]))
    id2label = classify.model.config.id2label
    result = classify.postprocess(outputs, top_k=1)
    assert result == [{"label": id2label[1], "score": pytest.approx(float(torch.tensor([0.0, 3.0]).softmax(-1)[1]))}]


@pytest.mark.slow  # fresh interpreters importing torch + transformers
def test_remote_pipeline_without_the_package(tmp_path, student, clip, classify):
    import shutil

    from mmkd_hf.models.multi_head_video_pipeline import REMOTE_TASK, add_remote_pipeline

    folder = tmp_path / "remote"
    shutil.copytree(student, folder)
    add_remote_pipeline(folder)
    config = json.loads((folder / "config.json").read_text())
    assert REMOTE_TASK in config["custom_pipelines"]
    code = f"""
import sys, json
sys.modules["mmkd_hf"] = None  # the package is not importable: everything must come from the folder
from transformers import pipeline
classify = pipeline(model={str(folder)!r}, trust_remote_code=True, compute_dtype="float32")
print(json.dumps({{"cls": type(classify).__name__, "result": classify({str(clip)!r}, top_k=2)}}))
"""
    proc = run_python(code, env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["cls"] == "MultiHeadVideoClassificationPipeline"
    expected = classify(str(clip), top_k=2)
    for head in ("verb", "noun", "action"):
        assert [i["label"] for i in answer["result"][head]] == [i["label"] for i in expected[head]]
        assert [i["score"] for i in answer["result"][head]] == pytest.approx([i["score"] for i in expected[head]], rel=1e-5)
    # A folder that is not a saved model is refused with its name.
    with pytest.raises(FileNotFoundError, match="no config.json"):
        add_remote_pipeline(tmp_path)


def test_importing_mmkd_hf_registers_pipeline_and_video_processor(tmp_path):
    code = """
import mmkd_hf
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING
impl = PIPELINE_REGISTRY.supported_tasks["mmkd-video-classification"]["impl"]
processor = VIDEO_PROCESSOR_MAPPING._extra_content.get(mmkd_hf.VideoSwinConfig, {}).get("torchvision")
print(getattr(impl, "__name__", impl).split(".")[-1], getattr(processor, "__name__", processor))
"""
    proc = run_python(code, env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["MultiHeadVideoClassificationPipeline", "VideoSwinVideoProcessor"]
