"""How fast is the Video Swin student on a CPU, and does bfloat16 / torch.export / ONNX change its answers?

Measures, for one view (batch 1) in eval mode on this machine, in one run:

* the latency per view of the student in float32 (the reference), in bfloat16 (also with window attention
  through the fused ``scaled_dot_product_attention`` kernel instead of the chunked CPU path, for comparison),
  as a ``torch.export``-ed program (float32), and through ONNX Runtime in float32 and with int8 linear layers
  (``mmkd-hf export --quantize int8``; when ``onnx``, ``onnxscript`` and ``onnxruntime``
  are installed, e.g. ``pip install "mmkd-hf[onnx]"``), against torchvision's ``SwinTransformer3d`` of the
  same architecture in float32 (``swin3d_t`` for ``--preset swin-t``) as the peer; the variants are timed
  round-robin so that load changes hit all alike, and the ratio to the peer is the median of per-round ratios;
* the fraction of this machine's matmul peak each variant reaches: the model's FLOPs
  (``mmkd_hf.evaluation.profile.count_call_flops``) over its latency, against a 2048 x 2048 matmul timed in
  the same run (bfloat16 for the bfloat16 rows, int8 ``torch._int_mm`` for the int8 row, float32 for the
  others);
* the peak resident memory above the idle process during one forward (sampled every millisecond);
* top-1 agreement, the largest logit difference, and the largest float32 top-1 margin (top-1 minus runner-up
  logit) among the decisions that changed, of every variant against float32 on the validation clips
  of a trained run (``--run``: its ``student``, read through ``RunSettings.from_run_dir(run).load_dataset``),
  or, without a run folder, of a randomly initialised student on random clips (the output says which).

Presets: ``swin-t`` (Video Swin-T, 16 x 224 x 224, the size of the paper's student) and ``tiny`` (a few
seconds, what the tests run).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/student_inference.py --preset swin-t --threads 2 \\
        --run outputs/mini-kitchens-tiny-seed42

Prints a Markdown table and writes ``benchmarks/results/student_inference.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from transformers import AutoModel

import mmkd_hf  # noqa: F401  (registers the models)
from mmkd_hf.data import RunSettings
from mmkd_hf.evaluation.profile import count_call_flops
from mmkd_hf.models.export import ONNX_MODULES, LogitsTuple, onnx_available, quantize_onnx_int8
from mmkd_hf.models.multi_head_video_pipeline import cpu_has_fast_bfloat16
from mmkd_hf.models.video_swin import window_attention
from mmkd_hf.models.video_swin.configuration_video_swin import VideoSwinConfig
from mmkd_hf.models.video_swin.modeling_video_swin import VideoSwinForVideoClassification
from mmkd_hf.utils import atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "student_inference.json"
PRESETS = {
    "swin-t": {"config": {}, "frames": 16, "size": 224},
    "tiny": {
        "config": {"embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 1, 2, 2)},
        "frames": 8,
        "size": 64,
    },
}

def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s (GOP/s for int8: ``torch._int_mm``, int32 sums) of the best of ``repeats`` square matmuls."""
    if dtype == torch.int8:
        a = torch.randint(-127, 128, (size, size), dtype=dtype)
        b = torch.randint(-127, 128, (size, size), dtype=dtype)
        multiply = torch._int_mm
    else:
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        multiply = torch.mm
    with torch.inference_mode():
        multiply(a, b)
        best = min(_seconds(lambda: multiply(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_mib(call) -> float | None:
    """Peak resident memory above the process's idle level during ``call()`` (Linux; None elsewhere)."""
    if not os.path.exists("/proc/self/statm"):
        return None
    try:  # hand freed heap back first so that the baseline is the idle process
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    baseline, peak, done = _rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        call()
    finally:
        done.set()
        sampler.join()
    return round(max(peak[0], _rss_bytes()) - baseline) / 2**20


FUSED = "fused SDPA"
INT8 = "ONNX Runtime int8 (dynamic, per-channel)"


def with_fused_attention(module: torch.nn.Module):
    """``module`` run with window attention through ``scaled_dot_product_attention`` (the CPU path before chunking)."""

    def call(clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
        window_attention.CHUNKED_CPU_ATTENTION = False
        try:
            return module(clip)
        finally:
            window_attention.CHUNKED_CPU_ATTENTION = True

    return call


def build_variants(model: VideoSwinForVideoClassification, example: torch.Tensor, with_onnx: bool,
                   workdir: Path, threads: int) -> tuple[dict, dict]:
    """``{name: callable(clip) -> tuple of logits}`` for every variant, and notes on the ones left out."""
    model = model.eval()
    wrapped = LogitsTuple(model).eval()
    bf16 = LogitsTuple(VideoSwinForVideoClassification(model.config).eval()).eval()
    bf16.model.load_state_dict(model.state_dict())
    bf16.model.to(torch.bfloat16)
    variants = {"float32": wrapped, "bfloat16": bf16,
                f"bfloat16, {FUSED} attention": with_fused_attention(bf16)}
    notes = {}
    exported = torch.export.export(wrapped, (example,)).module()
    variants["torch.export (float32)"] = exported
    if with_onnx and onnx_available():
        import onnxruntime

        path = workdir / "student.onnx"
        program = torch.onnx.export(wrapped, (example,), dynamo=True, input_names=["pixel_values"],
                                    output_names=wrapped.heads, verbose=False)
        program.save(str(path))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run_onnx(clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
            outputs = session.run(None, {"pixel_values": clip.numpy()})
            return tuple(torch.from_numpy(output) for output in outputs)

        variants["ONNX Runtime (float32)"] = run_onnx
        quantized = workdir / "student-int8.onnx"
        quantize_onnx_int8(path, quantized)
        int8_session = onnxruntime.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])

        def run_onnx_int8(clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
            outputs = int8_session.run(None, {"pixel_values": clip.numpy()})
            return tuple(torch.from_numpy(output) for output in outputs)

        variants[INT8] = run_onnx_int8
    elif with_onnx:
        for name in ("ONNX Runtime (float32)", INT8):
            notes[name] = f"skipped: install {', '.join(ONNX_MODULES)} (the `onnx` extra)"
    return variants, notes


def agreement(variants: dict, clips: list[torch.Tensor]) -> dict[str, dict]:
    """Top-1 agreement (every head, every clip) and max |logit difference| of each variant vs float32."""
    reference = [[logits.float() for logits in variants["float32"](clip)] for clip in clips]
    results = {}
    for name, variant in variants.items():
        if name == "float32":
            continue
        same, total, max_diff, flipped_margin = 0, 0, 0.0, 0.0
        for clip, expected in zip(clips, reference):
            for got, want in zip(variant(clip), expected):
                got = got.float()
                agree = got.argmax(-1) == want.argmax(-1)
                same += int(agree.sum())
                total += want.shape[0]
                max_diff = max(max_diff, float((got - want).abs().max()))
                top2 = want.topk(min(2, want.shape[-1]), dim=-1).values
                margins = (top2[:, 0] - top2[:, -1])[~agree]
                flipped_margin = max([flipped_margin, *margins.tolist()])
        results[name] = {"top1_agreement": same / total, "decisions": total, "max_abs_logit_diff": max_diff,
                         # how close to a tie the float32 logits were where the top-1 changed (0: no change)
                         "max_float32_margin_of_changed_top1": flipped_margin}
    return results


def agreement_clips(args) -> tuple[VideoSwinForVideoClassification, list[torch.Tensor], str]:
    """The trained student and its run's validation clips, or a random student and random clips."""
    if args.run is not None and (Path(args.run) / "student" / "config.json").is_file():
        model = AutoModel.from_pretrained(Path(args.run) / "student").eval()
        dataset = RunSettings.from_run_dir(args.run).load_dataset(split="validation", modalities=("rgb",))
        count = min(len(dataset), args.clips)
        clips = [dataset[index]["pixel_values"][None] for index in range(count)]
        return model, clips, f"trained student of {Path(args.run).name}, {count} validation clips (uint8)"
    config, frames, size = _preset_config(args.preset, heads={"verb": 97, "noun": 300})
    torch.manual_seed(1)
    model = VideoSwinForVideoClassification(config).eval()
    generator = torch.Generator().manual_seed(2)
    clips = [torch.rand(1, frames, 3, size, size, generator=generator) for _ in range(args.clips)]
    reason = "no --run given" if args.run is None else f"{args.run} has no trained student yet"
    return model, clips, f"random student on {args.clips} random clips ({reason})"


def _preset_config(preset: str, heads: dict[str, int]) -> tuple[VideoSwinConfig, int, int]:
    spec = PRESETS[preset]
    config = VideoSwinConfig(**spec["config"], num_frames=spec["frames"], image_size=spec["size"], heads=heads,
                             drop_path_rate=0.0)
    return config, spec["frames"], spec["size"]


def torchvision_peer(config: VideoSwinConfig) -> torch.nn.Module:
    """torchvision's ``SwinTransformer3d`` with the student's architecture (``swin3d_t`` for Swin-T)."""
    from torchvision.models.video.swin_transformer import SwinTransformer3d

    return SwinTransformer3d(
        patch_size=list(config.patch_size), embed_dim=config.embed_dim, depths=list(config.depths),
        num_heads=list(config.num_heads), window_size=list(config.window_size), stochastic_depth_prob=0.0,
        num_classes=sum(config.heads.values()),
    ).eval()


def time_round_robin(calls: dict, warmup: int, iterations: int) -> dict[str, list[float]]:
    """Seconds of every call of every variant, one call of each per round."""
    with torch.inference_mode():
        for call in calls.values():
            for _ in range(warmup):
                call()
        timings = {name: [] for name in calls}
        for _ in range(iterations):
            for name, call in calls.items():
                timings[name].append(_seconds(call))
    return timings


def measure(args) -> dict:
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    config, frames, size = _preset_config(args.preset, heads={"verb": 97, "noun": 300})
    torch.manual_seed(0)
    student = VideoSwinForVideoClassification(config).eval()
    clip = torch.rand(1, frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    peer = torchvision_peer(config)
    peer_clip = student.backbone.normalize(clip).transpose(1, 2).contiguous()  # [B, C, T, H, W], normalised

    with tempfile.TemporaryDirectory() as workdir:
        variants, notes = build_variants(student, clip, not args.no_onnx, Path(workdir), args.threads)
        calls = {name: (lambda variant=variant: variant(clip)) for name, variant in variants.items()}
        calls["torchvision SwinTransformer3d (float32)"] = lambda: peer(peer_clip)
        timings = time_round_robin(calls, args.warmup, args.iterations)
        memory = {}
        with torch.inference_mode():
            for name, call in calls.items():
                memory[name] = peak_memory_mib(call)

        gflops = count_call_flops(lambda: student(clip)) / 1e9
        peer_gflops = count_call_flops(lambda: peer(peer_clip)) / 1e9
        peaks = {"float32": matmul_peak_gflops(torch.float32), "bfloat16": matmul_peak_gflops(torch.bfloat16),
                 "int8": matmul_peak_gflops(torch.int8)}

        trained, clips, source = agreement_clips(args)
        # Exported graphs take clips of the example's dtype: uint8 for a run's clips, float32 for random ones.
        trained_variants, _ = build_variants(trained, clips[0], not args.no_onnx, Path(workdir), args.threads)
        with torch.inference_mode():
            agreements = agreement(trained_variants, clips)
    load_after = os.getloadavg()[0]

    peer_name = "torchvision SwinTransformer3d (float32)"
    peer_times = timings[peer_name]
    rows = []
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        flops = peer_gflops if name == peer_name else gflops
        peak = peaks["bfloat16" if name.startswith("bfloat16") else "int8" if name == INT8 else "float32"]
        rows.append({
            "variant": name,
            "latency_s_per_view": round(median, 4),
            "latency_all_s": [round(value, 4) for value in seconds],
            "ratio_to_peer": round(statistics.median(a / b for a, b in zip(seconds, peer_times)), 3),
            "gflops": round(flops, 2),
            "achieved_gflop_s": round(flops / median, 1),
            "fraction_of_matmul_peak": round(flops / median / peak, 3),
            "peak_memory_mib": None if memory[name] is None else round(memory[name], 1),
            **{key: value for key, value in agreements.get(name, {}).items()},
        })
    return {
        "preset": args.preset,
        "input": f"1x{frames}x3x{size}x{size}",
        "rows": rows,
        "not_measured": notes,
        "matmul_peak_gflop_s": {key: round(value, 1) for key, value in peaks.items()},
        "agreement_source": source,
        "settings": {
            "threads": args.threads,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(),
            "cpu_has_amx": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_has_fast_bfloat16": cpu_has_fast_bfloat16(),
            "warmup": args.warmup,
            "iterations": args.iterations,
            "torch": torch.__version__,
            "load_average_1min_before_after": [round(load_before, 2), round(load_after, 2)],
        },
    }


def markdown_table(result: dict) -> str:
    lines = [
        "| variant | s / view | × peer | GFLOP/s | of matmul peak | peak MiB | top-1 agreement | max logit diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        if "top1_agreement" in row:
            agree = f"{row['top1_agreement']:.1%} of {row['decisions']}"
            if row["top1_agreement"] < 1:
                agree += f" (changed where margin ≤ {row['max_float32_margin_of_changed_top1']:.3f})"
        else:
            agree = "reference" if row["variant"] == "float32" else "–"
        diff = f"{row['max_abs_logit_diff']:.2g}" if "max_abs_logit_diff" in row else "–"
        memory = "–" if row["peak_memory_mib"] is None else f"{row['peak_memory_mib']:.0f}"
        lines.append(
            f"| {row['variant']} | {row['latency_s_per_view']:.3f} | {row['ratio_to_peer']:.2f} | "
            f"{row['achieved_gflop_s']:.0f} | {row['fraction_of_matmul_peak']:.1%} | {memory} | {agree} | {diff} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="swin-t")
    parser.add_argument("--threads", type=int, default=2, help="torch (and ONNX Runtime) intra-op threads")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per variant")
    parser.add_argument("--iterations", type=int, default=5, help="timed rounds (one call of every variant each)")
    parser.add_argument("--run", type=Path, default=None,
                        help="a training run folder: agreement on its validation clips with its trained student")
    parser.add_argument("--clips", type=int, default=200, help="clips for the agreement (at most the split)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export and ONNX Runtime row")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    result = measure(args)
    table = markdown_table(result)
    print(f"Student {args.preset} ({result['input']}), {args.threads} threads, "
          f"load {result['settings']['load_average_1min_before_after']} (1-min average before / after)\n")
    print(table)
    for name, note in result["not_measured"].items():
        print(f"\n{name}: {note}")
    peaks = result["matmul_peak_gflop_s"]
    print(f"\nmatmul peak (2048²): float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s, "
          f"int8 {peaks['int8']:.0f} GOP/s")
    print(f"agreement: {result['agreement_source']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, {**result, "table": table})
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
