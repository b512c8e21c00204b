"""Configuration of the Video Swin Transformer (Liu et al., 2022) used as student and teachers.

The defaults are Video Swin-T exactly as the original code builds it (``SwinModel`` in ``src/modelling/models.py``
and ``src/modelling/swin.py`` of github.com/gorjanradevski/multimodal-distillation): patch (2, 4, 4), embed 96,
depths (2, 2, 6, 2), heads (3, 6, 12, 24), window (8, 7, 7), drop-path 0.2, one ``action`` head of 174 classes
(Something-Something v2).

The same network serves three modalities (``modality``):

* ``"rgb"``: frames in [0, 1], ImageNet normalisation, 3 channels.
* ``"flow"``: optical flow (u, v) in [0, 1] (0.5 = no motion), ImageNet normalisation (the original treats
  flow like RGB), 2 channels by default. The authors' flow checkpoints have 3 input channels (u, v, 0); a
  3-channel flow model accepts 2-channel input and appends the zero channel itself.
* ``"audio"``: log-mel spectrogram frames in dB, normalised with the scalar mean -28.1125 and std 16.5627,
  1 channel by default. The authors' audio checkpoints have 3 channels (the spectrogram repeated); a
  3-channel audio model accepts 1-channel input and repeats it.

Normalisation happens inside ``forward`` (``normalize_inputs=True``), as in the original, so models take
un-normalised inputs and the authors' checkpoints work unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PreTrainedConfig
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

MODALITIES = ("rgb", "flow", "audio")
MODALITY_INPUT_KEYS = {"rgb": "pixel_values", "flow": "flow_values", "audio": "audio_values"}
DEFAULT_NUM_CHANNELS = {"rgb": 3, "flow": 2, "audio": 1}
IMAGENET_MEAN = tuple(IMAGENET_DEFAULT_MEAN)
IMAGENET_STD = tuple(IMAGENET_DEFAULT_STD)
AUDIO_DB_MEAN = -28.1125
AUDIO_DB_STD = 16.5627


def default_normalization(modality: str, num_channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std the original code uses for a modality (``src/utils/data_utils.py``).

    Args:
        modality: One of ``"rgb"``, ``"flow"``, ``"audio"``.
        num_channels: Number of input channels of the model.

    Returns:
        ``(mean, std)``, each a list of ``num_channels`` floats. RGB and flow use the ImageNet constants
        (sliced to ``num_channels``); audio uses one scalar dB mean/std repeated on every channel.
    """
    if modality == "audio":
        return [AUDIO_DB_MEAN] * num_channels, [AUDIO_DB_STD] * num_channels
    if num_channels > len(IMAGENET_MEAN):
        raise ValueError(
            f"No default normalisation for a {modality} model with {num_channels} channels (at most "
            f"{len(IMAGENET_MEAN)}); pass image_mean and image_std explicitly."
        )
    return list(IMAGENET_MEAN[:num_channels]), list(IMAGENET_STD[:num_channels])


def _int_triple(name: str, value: Any) -> tuple[int, int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value, value)
    if not isinstance(value, Sequence) or len(value) != 3 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise ValueError(f"VideoSwinConfig.{name}: expected 3 positive ints (T, H, W), got {value!r}.")
    return tuple(value)


def _positive_int_tuple(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, Sequence) or len(value) == 0 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise ValueError(f"VideoSwinConfig.{name}: expected a non-empty list of positive ints, got {value!r}.")
    return tuple(value)


def _probability(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"VideoSwinConfig.{name}: expected a float in [0, 1), got {value!r}.")
    return float(value)


class VideoSwinConfig(PreTrainedConfig):
    r"""Configuration of :class:`VideoSwinForVideoClassification` (Video Swin-T by default).

    Args:
        patch_size: Tubelet size (T, H, W) of the Conv3d patch embedding.
        embed_dim: Channels after the patch embedding; stage ``i`` has ``embed_dim * 2**i`` channels.
        depths: Number of Swin blocks per stage.
        num_heads: Attention heads per stage.
        window_size: 3-D attention window (T, H, W); shrunk on axes where the feature map is smaller.
        mlp_ratio: Hidden size of the block MLP relative to the stage width.
        qkv_bias: Whether the query/key/value projection has a bias.
        drop_rate: Dropout after the patch embedding, in the MLP and after the attention projection.
        attn_drop_rate: Dropout on the attention probabilities.
        drop_path_rate: Largest stochastic-depth rate; block ``i`` of ``n`` uses ``rate * i / (n - 1)``.
        patch_norm: Whether a LayerNorm follows the patch embedding.
        layer_norm_eps: Epsilon of every LayerNorm.
        num_frames: Number of frames of the model's clips (documentation; any count >= patch T works).
        image_size: Side of the square frames the model was trained on (documentation).
        modality: ``"rgb"``, ``"flow"`` or ``"audio"``; picks the batch key and default normalisation.
        num_channels: Input channels of the patch embedding. Defaults per modality: rgb 3, flow 2,
            audio 1. Use 3 for the authors' flow/audio checkpoints.
        image_mean: Per-channel mean subtracted inside ``forward`` (default per modality, spec 2.1).
        image_std: Per-channel std divided inside ``forward`` (default per modality, spec 2.1).
        normalize_inputs: Normalise inside ``forward`` (True, as the original) or expect normalised input.
        heads: Ordered mapping head name -> number of classes, e.g. ``{"verb": 97, "noun": 300}``.
        head_order: Head names in order. Filled in automatically: ``config.json`` is written with sorted
            keys, so the order of ``heads`` (and of the logits dict) is restored from this list on load.
            Ignored when it does not name exactly the heads of ``heads``.
        head_labels: Class names per head; generated as ``"<head>_<index>"`` when omitted.
        classifier_dropout: Dropout on the pooled features before the heads.
    """

    model_type = "mmkd_video_swin"
    # Trainer.predict returns only the logits dict, not the pooled features or hidden states.
    keys_to_ignore_at_inference = ["pooled_output", "hidden_states"]

    patch_size: Any = (2, 4, 4)
    embed_dim: int = 96
    depths: Any = (2, 2, 6, 2)
    num_heads: Any = (3, 6, 12, 24)
    window_size: Any = (8, 7, 7)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.2
    patch_norm: bool = True
    layer_norm_eps: float = 1e-5
    num_frames: int = 16
    image_size: int = 224
    modality: str = "rgb"
    num_channels: int | None = None
    image_mean: Any = None
    image_std: Any = None
    normalize_inputs: bool = True
    heads: Any = None
    head_order: Any = None
    head_labels: Any = None
    classifier_dropout: float = 0.0

    def __post_init__(self, **kwargs):
        self._validate_and_fill_defaults()
        super().__post_init__(**kwargs)

    @property
    def input_key(self) -> str:
        """Batch key that feeds this model: ``pixel_values``, ``flow_values`` or ``audio_values``."""
        return MODALITY_INPUT_KEYS[self.modality]

    @property
    def num_features(self) -> int:
        """Channels of the last stage, i.e. of the pooled features fed to the heads."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    def _validate_and_fill_defaults(self) -> None:
        self.patch_size = _int_triple("patch_size", self.patch_size)
        self.window_size = _int_triple("window_size", self.window_size)
        self.depths = _positive_int_tuple("depths", self.depths)
        self.num_heads = _positive_int_tuple("num_heads", self.num_heads)
        if len(self.depths) != len(self.num_heads):
            raise ValueError(
                f"VideoSwinConfig: depths and num_heads need one entry per stage, got {len(self.depths)} "
                f"depths {self.depths} and {len(self.num_heads)} num_heads {self.num_heads}."
            )
        if not isinstance(self.embed_dim, int) or self.embed_dim <= 0:
            raise ValueError(f"VideoSwinConfig.embed_dim: expected a positive int, got {self.embed_dim!r}.")
        for stage, heads in enumerate(self.num_heads):
            width = self.embed_dim * 2**stage
            if width % heads:
                raise ValueError(
                    f"VideoSwinConfig: stage {stage} has {width} channels, not divisible by its {heads} heads."
                )
        if not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio <= 0:
            raise ValueError(f"VideoSwinConfig.mlp_ratio: expected a positive number, got {self.mlp_ratio!r}.")
        self.drop_rate = _probability("drop_rate", self.drop_rate)
        self.attn_drop_rate = _probability("attn_drop_rate", self.attn_drop_rate)
        self.drop_path_rate = _probability("drop_path_rate", self.drop_path_rate)
        self.classifier_dropout = _probability("classifier_dropout", self.classifier_dropout)
        if not isinstance(self.layer_norm_eps, (int, float)) or self.layer_norm_eps <= 0:
            raise ValueError(f"VideoSwinConfig.layer_norm_eps: expected > 0, got {self.layer_norm_eps!r}.")
        for name in ("num_frames", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"VideoSwinConfig.{name}: expected a positive int, got {value!r}.")

        if self.modality not in MODALITIES:
            raise ValueError(f"VideoSwinConfig.modality: expected one of {MODALITIES}, got {self.modality!r}.")
        if self.num_channels is None:
            self.num_channels = DEFAULT_NUM_CHANNELS[self.modality]
        if not isinstance(self.num_channels, int) or isinstance(self.num_channels, bool) or self.num_channels <= 0:
            raise ValueError(f"VideoSwinConfig.num_channels: expected a positive int, got {self.num_channels!r}.")
        self._fill_normalization()
        self._fill_heads()

    def _fill_normalization(self) -> None:
        if self.image_mean is None or self.image_std is None:
            default_mean, default_std = default_normalization(self.modality, self.num_channels)
            self.image_mean = default_mean if self.image_mean is None else self.image_mean
            self.image_std = default_std if self.image_std is None else self.image_std
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = [float(value)] * self.num_channels
            if not isinstance(value, Sequence) or len(value) != self.num_channels:
                raise ValueError(
                    f"VideoSwinConfig.{name}: expected {self.num_channels} values (one per channel), got {value!r}."
                )
            setattr(self, name, [float(v) for v in value])
        if any(std <= 0 for std in self.image_std):
            raise ValueError(f"VideoSwinConfig.image_std: every std must be > 0, got {self.image_std}.")

    def _fill_heads(self) -> None:
        heads = {"action": 174} if self.heads is None else self.heads
        if not isinstance(heads, Mapping) or len(heads) == 0:
            raise ValueError(f"VideoSwinConfig.heads: expected a non-empty dict name -> classes, got {heads!r}.")
        for name, size in heads.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"VideoSwinConfig.heads: head names must be non-empty strings, got {name!r}.")
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                raise ValueError(f"VideoSwinConfig.heads[{name!r}]: expected a positive int, got {size!r}.")
        order = list(heads)
        if isinstance(self.head_order, Sequence) and not isinstance(self.head_order, str):
            if sorted(self.head_order) == sorted(order) and len(set(self.head_order)) == len(order):
                order = list(self.head_order)
        self.heads = {name: heads[name] for name in order}
        self.head_order = order

        given = {} if self.head_labels is None else self.head_labels
        if not isinstance(given, Mapping):
            raise ValueError(f"VideoSwinConfig.head_labels: expected a dict head -> class names, got {given!r}.")
        unknown = sorted(set(given) - set(self.heads))
        if unknown:
            raise ValueError(
                f"VideoSwinConfig.head_labels: heads {unknown} are not in heads {list(self.heads)}."
            )
        labels = {}
        for name, size in self.heads.items():
            names = list(given[name]) if name in given else [f"{name}_{index}" for index in range(size)]
            if len(names) != size:
                raise ValueError(
                    f"VideoSwinConfig.head_labels[{name!r}]: expected {size} class names, got {len(names)}."
                )
            labels[name] = [str(label) for label in names]
        self.head_labels = labels


__all__ = ["VideoSwinConfig", "default_normalization"]
