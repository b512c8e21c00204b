"""mmkd-hf: multimodal knowledge distillation for egocentric action recognition, on Hugging Face.

Importing the package registers its configs and models with the ``transformers`` Auto classes, so
``AutoModel.from_pretrained(folder_or_repo_id)`` works for every model this package saves, and adds the
custom task ``pipeline("mmkd-video-classification")`` (verb / noun / action lists). Stock ``transformers``
tasks are left as they are.
"""

__version__ = "0.1.0"

from .models import (  # noqa: E402  (registration happens on import)
    MultimodalTeacherEnsemble,
    MultimodalTeacherEnsembleConfig,
    STLTConfig,
    STLTForVideoClassification,
    VideoSwinConfig,
    VideoSwinForVideoClassification,
    VideoSwinModel,
    VideoSwinVideoProcessor,
)
from .models.multi_head_video_pipeline import register_pipeline as _register_pipeline  # noqa: E402

_register_pipeline()

__all__ = [
    "MultimodalTeacherEnsemble",
    "MultimodalTeacherEnsembleConfig",
    "STLTConfig",
    "STLTForVideoClassification",
    "VideoSwinConfig",
    "VideoSwinForVideoClassification",
    "VideoSwinModel",
    "VideoSwinVideoProcessor",
    "__version__",
]
