"""The student at the edge: bfloat16 loading and inference, cached attention masks, torch.export and ONNX
parity with eager float32, the pipeline's compute dtype, and benchmarks/student_inference.py at tiny size."""

from __future__ import annotations

import json

import pytest
import torch

import mmkd_hf  # noqa: F401  (registers the Auto classes)
from helpers_hub import save_tiny_student, write_clip
from mmkd_hf.models.export import LogitsTuple, onnx_available
from mmkd_hf.models.multi_head_video_pipeline import resolve_compute_dtype
from mmkd_hf.models.video_swin.configuration_video_swin import VideoSwinConfig
from mmkd_hf.models.video_swin.modeling_video_swin import VideoSwinForVideoClassification

# Two blocks per stage so that every stage has a shifted block; 8 frames of 64x64: a padded, shifted first stage.
TINY = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), num_frames=8, image_size=64,
            heads={"verb": 5, "noun": 7}, drop_path_rate=0.0)
HAS_ONNX = onnx_available()


def tiny_student(seed: int = 0) -> VideoSwinForVideoClassification:
    torch.manual_seed(seed)
    return VideoSwinForVideoClassification(VideoSwinConfig(**TINY)).eval()


def clips(count: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 8, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_from_pretrained_in_bfloat16_takes_float_and_uint8_clips(tmp_path):
    tiny_student().save_pretrained(tmp_path / "student")
    model = VideoSwinForVideoClassification.from_pretrained(tmp_path / "student", dtype=torch.bfloat16).eval()
    assert model.dtype == torch.bfloat16
    x = clips(2)
    with torch.no_grad():
        from_float = model(pixel_values=x).logits
        from_uint8 = model(pixel_values=(x * 255).round().to(torch.uint8)).logits
    assert all(value.dtype == torch.bfloat16 and value.shape[0] == 2 for value in from_float.values())
    assert all(torch.allclose(from_float[k].float(), from_uint8[k].float(), atol=0.05) for k in from_float)


def test_saved_folder_carries_the_window_attention_module(tmp_path):
    tiny_student().save_pretrained(tmp_path / "student")
    assert (tmp_path / "student" / "window_attention.py").is_file()
    assert (tmp_path / "student" / "modeling_video_swin.py").is_file()


def test_bfloat16_agrees_with_float32_on_random_clips():
    """bf16 rounds every activation (8-bit mantissa), so a near-tie may flip; a clear winner may not.

    Every clip whose float32 top-1 leads the runner-up by more than twice the largest logit error must keep its
    top-1, the logit error stays small against the logits' scale, and overall >= 95 % of the decisions agree.
    """
    reference = tiny_student()
    low = tiny_student().to(torch.bfloat16)
    x = clips(300, seed=5)
    with torch.no_grad():
        want = reference(pixel_values=x).logits
        got = {head: value.float() for head, value in low(pixel_values=x).logits.items()}
    agree = total = 0
    for head in want:
        error = (got[head] - want[head]).abs().max()
        assert error <= 0.03 * want[head].abs().max() + 0.02, (head, float(error))
        top2 = want[head].topk(2, dim=-1).values
        clear = (top2[:, 0] - top2[:, 1]) > 2 * error
        same = got[head].argmax(-1) == want[head].argmax(-1)
        assert bool(same[clear].all()), f"{head}: a clear float32 winner changed in bfloat16"
        agree, total = agree + int(same.sum()), total + same.numel()
    assert agree / total >= 0.95, agree / total


def colour_task(count: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clips whose verb is the brightest colour channel and whose noun is the brightness drift over time."""
    generator = torch.Generator().manual_seed(seed)
    verb = torch.randint(0, 3, (count,), generator=generator)
    noun = torch.randint(0, 3, (count,), generator=generator)
    x = 0.35 + 0.1 * torch.rand(count, 8, 3, 64, 64, generator=generator)
    x[torch.arange(count), :, verb] += 0.25
    drift = (noun.float() - 1)[:, None] * torch.linspace(-0.25, 0.25, 8)[None]  # darker, flat or brighter
    return (x + drift[:, :, None, None, None]).clamp(0, 1), {"verb": verb, "noun": noun}


def test_bfloat16_keeps_the_decisions_of_a_trained_student():
    """A student trained here (a learnable colour / brightness task) decides the same in bfloat16 as in float32."""
    torch.manual_seed(0)
    model = VideoSwinForVideoClassification(VideoSwinConfig(**{**TINY, "heads": {"verb": 3, "noun": 3}}))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    clips_train, labels_train = colour_task(384, seed=1)
    model.train()
    for _ in range(3):
        for start in range(0, 384, 32):
            logits = model(pixel_values=clips_train[start : start + 32]).logits
            loss = sum(torch.nn.functional.cross_entropy(logits[h], labels_train[h][start : start + 32])
                       for h in logits)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    clips_test, labels_test = colour_task(200, seed=2)
    with torch.no_grad():
        want = model(pixel_values=clips_test).logits
        got = model.to(torch.bfloat16)(pixel_values=clips_test).logits
    agree = total = 0
    for head in want:
        accuracy_float32 = (want[head].argmax(-1) == labels_test[head]).float().mean().item()
        accuracy_bfloat16 = (got[head].argmax(-1) == labels_test[head]).float().mean().item()
        assert accuracy_float32 >= 0.8, (head, accuracy_float32)  # it did learn the task
        assert abs(accuracy_bfloat16 - accuracy_float32) <= 0.005, head
        agree += int((got[head].argmax(-1) == want[head].argmax(-1)).sum())
        total += len(labels_test[head])
    assert agree / total >= 0.99, agree / total


def test_attention_masks_are_cached_in_the_compute_dtype_and_follow_the_weights():
    model = tiny_student().to(torch.bfloat16)
    x = clips(1)
    attention = model.backbone.layers[0].blocks[1].attn  # a shifted block
    with torch.no_grad():
        first = model(pixel_values=x).logits["verb"]
        cached = attention._mask_cache[2]
        assert cached.dtype == torch.bfloat16
        model(pixel_values=x)
        assert attention._mask_cache[2] is cached  # reused, not rebuilt
        attention.relative_position_bias_table.add_(1.0)  # a weight update invalidates it
        changed = model(pixel_values=x).logits["verb"]
        assert attention._mask_cache[2] is not cached
    assert not torch.equal(first, changed)
    attention._mask_cache = None
    model(pixel_values=x)  # autograd on (training-style): nothing is cached
    assert attention._mask_cache is None


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 0.1)])
@pytest.mark.parametrize("num_heads", [(1, 1, 2, 2), (3, 3, 6, 6)])
def test_cpu_inference_attention_matches_the_fused_kernel(dtype, tolerance, num_heads):
    """Eager CPU inference takes the chunked window attention; autograd (training) keeps SDPA. Same logits."""
    from mmkd_hf.models.video_swin import window_attention

    torch.manual_seed(0)
    config = VideoSwinConfig(**{**TINY, "embed_dim": 12 if num_heads[0] == 3 else 16, "num_heads": num_heads})
    model = VideoSwinForVideoClassification(config).eval().to(dtype)
    x = clips(3)  # a batch: the shifted-window mask repeats per clip
    calls = []
    original = window_attention.chunked_window_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    window_attention.chunked_window_attention = counting
    try:
        with torch.no_grad():
            fast = model(pixel_values=x).logits
        assert len(calls) == sum(config.depths)
        calls.clear()
        reference = model(pixel_values=x).logits  # autograd on: scaled_dot_product_attention
        assert not calls
    finally:
        window_attention.chunked_window_attention = original
    for head in fast:
        assert (fast[head].float() - reference[head].float()).abs().max() <= tolerance, head


def test_torch_export_matches_eager():
    wrapped = LogitsTuple(tiny_student()).eval()
    x = clips(1)
    with torch.no_grad():
        eager = wrapped(x)
    program = torch.export.export(wrapped, (x,))
    exported = program.module()(clips(1, seed=9))  # another clip of the same shape
    with torch.no_grad():
        eager_other = wrapped(clips(1, seed=9))
    assert all((a - b).abs().max() <= 1e-4 for a, b in zip(exported, eager_other))
    assert all((a - b).abs().max() <= 1e-4 for a, b in zip(program.module()(x), eager))


@pytest.mark.skipif(not HAS_ONNX, reason="onnx, onnxscript and onnxruntime are not installed (the `onnx` extra)")
def test_onnx_export_matches_eager(tmp_path):
    import onnxruntime

    wrapped = LogitsTuple(tiny_student()).eval()
    x = clips(1)
    program = torch.onnx.export(wrapped, (x,), dynamo=True, input_names=["pixel_values"],
                                output_names=["verb", "noun"], verbose=False)
    program.save(str(tmp_path / "student.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "student.onnx"), providers=["CPUExecutionProvider"])
    for seed in (1, 9):
        clip = clips(1, seed=seed)
        with torch.no_grad():
            expected = wrapped(clip)
        outputs = session.run(None, {"pixel_values": clip.numpy()})
        assert all(abs(torch.from_numpy(got) - want).max() <= 1e-4 for got, want in zip(outputs, expected))


def test_compute_dtype_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_compute_dtype("float32", cpu, torch.float32) == torch.float32
    assert resolve_compute_dtype(torch.float16, cpu, torch.float32) == torch.float16
    assert resolve_compute_dtype("model", cpu, torch.bfloat16) == torch.bfloat16
    assert resolve_compute_dtype("auto", cpu, torch.float16) == torch.float16  # an explicit load dtype is kept
    assert resolve_compute_dtype("auto", cpu, torch.float32) in (torch.float32, torch.bfloat16)
    if torch.cuda.is_available():
        assert resolve_compute_dtype("auto", cuda, torch.float32) in (torch.bfloat16, torch.float16)
    with pytest.raises(ValueError, match="compute_dtype"):
        resolve_compute_dtype("int8", cpu, torch.float32)


def test_pipeline_runs_in_the_requested_compute_dtype(tmp_path):
    from transformers import pipeline

    student = save_tiny_student(tmp_path / "student")
    clip = write_clip(tmp_path / "clip.mp4", num_frames=16, height=64, width=80)
    reference = pipeline("mmkd-video-classification", model=str(student), compute_dtype="float32")
    low = pipeline("mmkd-video-classification", model=str(student), compute_dtype="bfloat16")
    assert reference.compute_dtype == reference.model.dtype == torch.float32
    assert low.compute_dtype == low.model.dtype == torch.bfloat16
    want, got = reference(str(clip), top_k=3), low(str(clip), top_k=3)
    assert list(got) == list(want)
    for head in want:
        assert [i["score"] for i in got[head]] == pytest.approx([i["score"] for i in want[head]], abs=0.02)


def test_benchmark_runs_at_tiny_size(tmp_path):
    from conftest import load_benchmark

    benchmark = load_benchmark("student_inference")
    output = tmp_path / "student_inference.json"
    benchmark.main(["--preset", "tiny", "--iterations", "2", "--warmup", "0", "--clips", "3", "--threads", "1",
                    "--output", str(output)])
    result = json.loads(output.read_text())
    variants = {row["variant"]: row for row in result["rows"]}
    assert {"float32", "bfloat16", "torch.export (float32)", "torchvision SwinTransformer3d (float32)"} <= set(variants)
    assert ("ONNX Runtime (float32)" in variants) == HAS_ONNX
    assert (benchmark.INT8 in variants) == HAS_ONNX
    assert f"bfloat16, {benchmark.FUSED} attention" in variants  # the kernel the chunked CPU attention replaces
    assert variants["torch.export (float32)"]["max_abs_logit_diff"] <= 1e-4
    assert variants["bfloat16"]["decisions"] == 6  # 3 clips x 2 heads
    assert all(row["latency_s_per_view"] > 0 and len(row["latency_all_s"]) == 2 for row in result["rows"])
    assert result["matmul_peak_gflop_s"]["bfloat16"] > 0 and "random" in result["agreement_source"]
    assert result["matmul_peak_gflop_s"]["int8"] > 0 and result["settings"]["cpu_model"]
    assert result["table"].startswith("| variant |")
