"""The application behind ``train.py``: teachers -> ensemble weights -> distilled student -> baselines -> evaluation.

``accelerate launch train.py`` with no arguments runs the embedded mini-kitchens default end to end on CPU or GPU,
under one process or several (DDP). The options are the fields of the argument groups in
:mod:`~mmkd_hf.pipeline.arguments`, parsed by one ``HfArgumentParser``; ``--config FILE`` (JSON or YAML) sets any of
them and the command line overrides the file. The run folder is described in :mod:`~mmkd_hf.pipeline.run_folder`.

Modules: ``arguments`` (options, configuration), ``runtime`` (processes, logging, seeding), ``run_folder``,
``data_adapter`` (datasets of a run), ``model_builders``, ``omnivore`` (the omnivore baseline's inputs), ``stages``
(the :class:`Runner` of the units), ``results``, ``main`` (:func:`main`, :func:`run_pipeline`).
"""

from .arguments import (
    ARGUMENT_GROUPS,
    DATASET_TEACHERS,
    DATASETS,
    STAGES,
    TEACHER_MODALITIES,
    DataArguments,
    DistillationArguments,
    EnsembleArguments,
    PipelineConfig,
    RunArguments,
    ScheduleArguments,
    build_parser,
    load_config_file,
    parse_config,
)
from .data_adapter import (
    MINI_KITCHENS_SCALES,
    EpochSeededDataset,
    PipelineData,
    dataset_load_kwargs,
    find_transforms,
    heads_from_features,
    prepare_dataset,
)
from .main import RESUME_EXIT_CODE, main, run_pipeline
from .model_builders import build_student, build_teacher
from .omnivore import OmnivoreDataset, audio_as_rgb, flow_as_rgb
from .results import results_markdown, write_results
from .run_folder import RunConflictError, RunFolder, last_valid_checkpoint, load_or_make_held_out_split
from .runtime import SimulatedInterruption, isolated_rng, seed_everything
from .stages import Runner

__all__ = [
    "ARGUMENT_GROUPS",
    "DATASETS",
    "DATASET_TEACHERS",
    "DataArguments",
    "DistillationArguments",
    "EnsembleArguments",
    "EpochSeededDataset",
    "MINI_KITCHENS_SCALES",
    "OmnivoreDataset",
    "PipelineConfig",
    "PipelineData",
    "RESUME_EXIT_CODE",
    "RunArguments",
    "RunConflictError",
    "RunFolder",
    "Runner",
    "STAGES",
    "ScheduleArguments",
    "SimulatedInterruption",
    "TEACHER_MODALITIES",
    "audio_as_rgb",
    "build_parser",
    "build_student",
    "build_teacher",
    "dataset_load_kwargs",
    "find_transforms",
    "flow_as_rgb",
    "heads_from_features",
    "isolated_rng",
    "last_valid_checkpoint",
    "load_config_file",
    "load_or_make_held_out_split",
    "main",
    "parse_config",
    "prepare_dataset",
    "results_markdown",
    "run_pipeline",
    "seed_everything",
    "write_results",
]
