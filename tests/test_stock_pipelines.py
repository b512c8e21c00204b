"""Importing mmkd_hf leaves every stock ``transformers`` task as it was and only adds its own custom task."""

from __future__ import annotations

import copy

from transformers.pipelines import PIPELINE_REGISTRY, SUPPORTED_TASKS


def test_import_changes_no_stock_task():
    before = {task: copy.copy(entry) for task, entry in SUPPORTED_TASKS.items()}
    import mmkd_hf  # noqa: F401
    from mmkd_hf.models.multi_head_video_pipeline import TASK, MultiHeadVideoClassificationPipeline

    for task, entry in before.items():
        assert PIPELINE_REGISTRY.supported_tasks[task]["impl"] is entry["impl"], task
    assert PIPELINE_REGISTRY.supported_tasks[TASK]["impl"] is MultiHeadVideoClassificationPipeline
    assert set(PIPELINE_REGISTRY.supported_tasks) - set(before) <= {TASK}


def test_stock_video_classification_pipeline_for_a_stock_model():
    import mmkd_hf  # noqa: F401
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessor, pipeline
    from transformers.pipelines.video_classification import VideoClassificationPipeline

    config = VideoMAEConfig(image_size=32, patch_size=16, num_frames=2, tubelet_size=2, hidden_size=32,
                            num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, num_labels=3)
    model = VideoMAEForVideoClassification(config).eval()
    classify = pipeline("video-classification", model=model,
                        image_processor=VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size=32))
    assert type(classify) is VideoClassificationPipeline
