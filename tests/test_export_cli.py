"""``mmkd-hf export``: pt2 and ONNX round trips against eager float32 (dynamic batch and views, named head outputs,
class names and preprocessing in the file's metadata) and its one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig

import mmkd_hf  # noqa: F401  (registers the Auto classes)
from helpers_hub import NOUNS, VERBS, save_tiny_student
from mmkd_hf.cli import main as cli_main
from mmkd_hf.models import export as export_module
from mmkd_hf.models.export import (
    PT2_METADATA_FILE,
    load_classifier,
    onnx_available,
    read_onnx_metadata,
    read_pt2_metadata,
)

# Two blocks per stage: the first stages have shifted windows, so the exported graph carries the region masks.
ARCHITECTURE = dict(depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2))


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return save_tiny_student(tmp_path_factory.mktemp("export") / "student", **ARCHITECTURE)


def clips(batch: int, views: int, dtype: str = "float32", seed: int = 3) -> torch.Tensor:
    values = torch.rand(batch, views, 4, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return (values * 255).round().to(torch.uint8) if dtype == "uint8" else values


def eager_logits(student, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return load_classifier(student)(pixel_values=x).logits


def check_metadata(metadata: dict, input_dtype: str) -> None:
    assert metadata["head_labels"] == {"verb": VERBS, "noun": NOUNS}
    assert metadata["outputs"] == {"verb": "logits_verb", "noun": "logits_noun"}
    assert (metadata["num_frames"], metadata["image_size"], metadata["input_dtype"]) == (4, 32, input_dtype)
    assert len(metadata["image_mean"]) == len(metadata["image_std"]) == 3


@pytest.mark.parametrize("input_dtype", ["float32", "uint8"])
def test_pt2_round_trip_matches_eager_with_dynamic_batch_and_views(student, tmp_path, capsys, input_dtype):
    out = tmp_path / "student.pt2"
    assert cli_main(["export", "--model", str(student), "--format", "pt2", "--out", str(out),
                     "--input-dtype", input_dtype]) == 0
    assert "logits_verb" in capsys.readouterr().out
    extra_files = {PT2_METADATA_FILE: ""}
    program = torch.export.load(out, extra_files=extra_files)
    check_metadata(json.loads(extra_files[PT2_METADATA_FILE]), input_dtype)
    assert read_pt2_metadata(out)["input_dtype"] == input_dtype
    module = program.module()
    for batch, views in ((1, 1), (3, 1), (2, 3)):
        x = clips(batch, views, input_dtype)
        expected = eager_logits(student, x)
        with torch.no_grad():
            got = module(x)
        assert [tuple(value.shape) for value in got] == [(batch, views, len(VERBS)), (batch, views, len(NOUNS))]
        for value, head in zip(got, ("verb", "noun")):
            assert (value - expected[head]).abs().max() <= 1e-4, (batch, views, head)


@pytest.mark.skipif(not onnx_available(), reason="onnx, onnxscript and onnxruntime are not installed (the onnx extra)")
def test_onnx_round_trip_matches_eager_with_dynamic_batch_and_views(student, tmp_path):
    import onnxruntime

    out = tmp_path / "student.onnx"
    assert cli_main(["export", "--model", str(student), "--format", "onnx", "--out", str(out)]) == 0
    check_metadata(read_onnx_metadata(out), "float32")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [node.name for node in session.get_inputs()] == ["pixel_values"]
    assert [node.name for node in session.get_outputs()] == ["logits_verb", "logits_noun"]
    meta = json.loads(session.get_modelmeta().custom_metadata_map["mmkd_meta"])
    assert meta["head_labels"]["verb"] == VERBS
    for batch, views in ((1, 1), (3, 2)):
        x = clips(batch, views)
        expected = eager_logits(student, x)
        verb, noun = session.run(["logits_verb", "logits_noun"], {"pixel_values": x.numpy()})
        assert (torch.from_numpy(verb) - expected["verb"]).abs().max() <= 1e-4
        assert (torch.from_numpy(noun) - expected["noun"]).abs().max() <= 1e-4


@pytest.mark.skipif(not onnx_available(), reason="onnx, onnxscript and onnxruntime are not installed (the onnx extra)")
def test_int8_onnx_keeps_the_metadata_and_stays_close_to_float32(student, tmp_path, capsys):
    import onnx
    import onnxruntime

    out = tmp_path / "student-int8.onnx"
    assert cli_main(["export", "--model", str(student), "--format", "onnx", "--quantize", "int8",
                     "--out", str(out)]) == 0
    assert "onnx, int8" in capsys.readouterr().out
    metadata = read_onnx_metadata(out)
    check_metadata(metadata, "float32")
    assert metadata["quantization"] == "int8"
    graph_ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert "DynamicQuantizeLinear" in graph_ops or "MatMulInteger" in graph_ops, sorted(graph_ops)
    assert [path.name for path in tmp_path.iterdir()] == ["student-int8.onnx"]  # no float32 copy left behind
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = clips(8, 2, seed=5)
    expected = eager_logits(student, x)
    verb, noun = session.run(["logits_verb", "logits_noun"], {"pixel_values": x.numpy()})
    for got, head in ((verb, "verb"), (noun, "noun")):
        want = expected[head]
        error = (torch.from_numpy(got) - want).abs().max()
        assert 0 < error <= 0.1 * want.abs().max() + 0.05, (head, float(error))  # quantized, and close


def test_existing_file_is_refused_unless_forced(student, tmp_path, capsys):
    out = tmp_path / "student.pt2"
    out.write_text("someone else's file")
    assert cli_main(["export", "--model", str(student), "--format", "pt2", "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "exists" in error and "--force" in error and len(error.strip().splitlines()) == 1
    assert out.read_text() == "someone else's file"
    assert cli_main(["export", "--model", str(student), "--format", "pt2", "--out", str(out), "--force"]) == 0
    assert read_pt2_metadata(out)["heads"] == {"verb": len(VERBS), "noun": len(NOUNS)}
    assert [path.name for path in tmp_path.iterdir()] == ["student.pt2"]  # no temporary file left


def test_one_line_errors(student, tmp_path, capsys, monkeypatch):
    def error_of(*argv: str) -> str:
        assert cli_main(["export", *argv]) == 1
        message = capsys.readouterr().err.strip()
        assert len(message.splitlines()) == 1, message
        return message

    assert "unknown format 'tflite'" in error_of("--model", str(student), "--format", "tflite", "--out",
                                                 str(tmp_path / "a.tflite"))
    other = tmp_path / "bert"
    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(other)
    assert "only Video Swin classifiers" in error_of("--model", str(other), "--format", "pt2", "--out",
                                                     str(tmp_path / "b.pt2"))
    assert "not a model folder" in error_of("--model", str(tmp_path / "missing"), "--format", "pt2", "--out",
                                            str(tmp_path / "c.pt2"))
    assert "needs --format onnx" in error_of("--model", str(student), "--format", "pt2", "--quantize", "int8",
                                             "--out", str(tmp_path / "e.pt2"))
    monkeypatch.setattr(export_module, "onnx_available", lambda: False)
    message = error_of("--model", str(student), "--format", "onnx", "--out", str(tmp_path / "d.onnx"))
    assert 'pip install "mmkd-hf[onnx]"' in message
    assert not any(tmp_path.glob("*.onnx")) and not any(tmp_path.glob("*.pt2"))
