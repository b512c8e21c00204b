"""The ``mmkd-hf`` command line. Each sub-command lives beside the code it drives and parses its own
arguments (``mmkd-hf <command> --help``); this file only dispatches."""

from __future__ import annotations

import importlib
import sys

# command -> ("module:function", one-line help). Each function takes argv (list[str]) and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("mmkd_hf.pipeline:main", "run the teacher -> ensemble -> student pipeline (same as train.py)"),
    "make-mini-dataset": ("mmkd_hf.synthetic.make_dataset:main", "generate the embedded mini-kitchens dataset"),
    "evaluate": ("mmkd_hf.evaluation.cli:main", "multi-view evaluation with the official metrics and calibration"),
    "profile": ("mmkd_hf.evaluation.profile:main", "GFLOPs / memory / latency of the student vs the ensemble"),
    "precompute": ("mmkd_hf.distillation.cache:main", "cache the teacher ensemble's logits for cached distillation"),
    "push": ("mmkd_hf.hub.push:main", "push a run's models (and datasets) to the Hugging Face Hub"),
    "export-dataset": ("mmkd_hf.hub.dataset_export:main",
                       "write a dataset as Parquet shards + card that datasets.load_dataset reads as is"),
    "export": ("mmkd_hf.models.export:main",
               "export a Video Swin classifier (the student) to ONNX or torch.export (.pt2) for deployment"),
    "convert-original": ("mmkd_hf.models.convert_original:main", "convert a checkpoint of the authors' code"),
    "convert-backbone": ("mmkd_hf.models.convert_backbone:main",
                         "convert a Kinetics-400 Video Swin checkpoint (mmaction or torchvision) to a model folder"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: mmkd-hf <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `mmkd-hf <command> --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"mmkd-hf: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
