"""The networks of the paper as ``transformers`` models, registered with the Auto classes on import."""

from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoVideoProcessor

from .ensemble.configuration_ensemble import MultimodalTeacherEnsembleConfig
from .ensemble.modeling_ensemble import MultimodalTeacherEnsemble
from .stlt.configuration_stlt import STLTConfig
from .stlt.modeling_stlt import STLTForVideoClassification
from .video_swin.configuration_video_swin import VideoSwinConfig
from .video_swin.modeling_video_swin import VideoSwinForVideoClassification, VideoSwinModel
from .video_swin.video_processing_video_swin import VideoSwinVideoProcessor


def _register() -> None:
    AutoConfig.register(VideoSwinConfig.model_type, VideoSwinConfig, exist_ok=True)
    AutoModel.register(VideoSwinConfig, VideoSwinForVideoClassification, exist_ok=True)
    AutoModelForVideoClassification.register(VideoSwinConfig, VideoSwinForVideoClassification, exist_ok=True)

    AutoConfig.register(STLTConfig.model_type, STLTConfig, exist_ok=True)
    AutoModel.register(STLTConfig, STLTForVideoClassification, exist_ok=True)
    AutoModelForVideoClassification.register(STLTConfig, STLTForVideoClassification, exist_ok=True)

    AutoConfig.register(MultimodalTeacherEnsembleConfig.model_type, MultimodalTeacherEnsembleConfig, exist_ok=True)
    AutoModel.register(MultimodalTeacherEnsembleConfig, MultimodalTeacherEnsemble, exist_ok=True)
    AutoModelForVideoClassification.register(
        MultimodalTeacherEnsembleConfig, MultimodalTeacherEnsemble, exist_ok=True
    )

    AutoVideoProcessor.register(VideoSwinConfig, VideoSwinVideoProcessor, exist_ok=True)

    # Saved folders carry their code, so `trust_remote_code=True` works without this package.
    VideoSwinConfig.register_for_auto_class()
    VideoSwinForVideoClassification.register_for_auto_class("AutoModel")
    VideoSwinForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
    VideoSwinVideoProcessor.register_for_auto_class()
    STLTConfig.register_for_auto_class()
    STLTForVideoClassification.register_for_auto_class("AutoModel")
    STLTForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")


_register()

__all__ = [
    "MultimodalTeacherEnsemble",
    "MultimodalTeacherEnsembleConfig",
    "STLTConfig",
    "STLTForVideoClassification",
    "VideoSwinConfig",
    "VideoSwinForVideoClassification",
    "VideoSwinModel",
    "VideoSwinVideoProcessor",
]
