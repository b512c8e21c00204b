"""Configuration of the STLT layout teacher (Spatial-Temporal Layout Transformer).

The defaults reproduce the hard-coded sizes of the authors' ``src/modelling/hand_models.py``:
hidden 768, 8 heads, 6 spatial + 6 temporal post-LN layers, FFN 3072, GELU, dropout 0.1, and the
unusual LayerNorm eps of 0.1 on the embedding / temporal norms (kept for weight compatibility).

This file only imports ``transformers`` so that the model folder stays self-contained for
``trust_remote_code``.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

_SUPPORTED_ACTIVATIONS = ("gelu", "relu")


def _require_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"STLTConfig.{name} must be a positive integer, got {value!r}")


def _require_positive_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"STLTConfig.{name} must be a positive number, got {value!r}")


def _ordered_heads(heads: dict[str, int], head_order: list[str] | None) -> dict[str, int]:
    """Reorder ``heads`` as ``head_order`` (when given and naming exactly the same heads)."""
    if head_order is None:
        return heads
    if sorted(head_order) != sorted(heads):
        raise ValueError(f"STLTConfig.head_order {list(head_order)} must name exactly the heads {list(heads)}")
    return {head: heads[head] for head in head_order}


class STLTConfig(PreTrainedConfig):
    r"""Configuration of [`STLTForVideoClassification`].

    Args:
        hidden_size (`int`, defaults to 768): width of every token.
        num_attention_heads (`int`, defaults to 8): attention heads in both transformers.
        num_spatial_layers (`int`, defaults to 6): layers of the per-frame (box) transformer.
        num_temporal_layers (`int`, defaults to 6): layers of the causal frame transformer.
        intermediate_size (`int`, defaults to 3072): feed-forward width.
        hidden_dropout (`float`, defaults to 0.1): dropout of the embeddings and inside the transformer layers.
        hidden_act (`str`, defaults to `"gelu"`): feed-forward activation (`"gelu"` or `"relu"`).
        embedding_layer_norm_eps (`float`, defaults to 0.1): eps of the box-embedding and temporal
            LayerNorms (0.1 in the original code, sic).
        transformer_layer_norm_eps (`float`, defaults to 1e-5): eps of the LayerNorms inside the
            transformer layers (PyTorch default, as the original).
        num_frames (`int`, defaults to 16): size of the temporal position table, i.e. the most frames
            a clip may have.
        max_boxes (`int`, defaults to 14): boxes kept per frame; frames with more real boxes keep the
            highest-scoring ``max_boxes``.
        num_categories (`int`, defaults to 3): box categories, 0 = padding, 1 = object, 2 = hand.
        num_sides (`int`, defaults to 3): hand sides, 0 = padding/unknown, 1 = left, 2 = right.
        num_states (`int`, defaults to 6): hand contact states, 0 = padding/unknown, 1 no contact,
            2 self, 3 other person, 4 portable object, 5 stationary object.
        heads (`dict[str, int]`, defaults to `{"action": 174}`): classification heads in order,
            name -> number of classes.
        head_labels (`dict[str, list[str]]`, *optional*): class names per head; heads without names
            get ``"<head>_<index>"``.
        modality (`str`, defaults to `"layout"`): the only modality this model reads.
        head_order (`list[str]`, *optional*): the order of ``heads``. ``config.json`` is written with sorted
            keys, which would reorder ``heads``; this list (saved automatically) restores the order on load.
    """

    model_type = "mmkd_stlt"

    def __init__(
        self,
        hidden_size: int = 768,
        num_attention_heads: int = 8,
        num_spatial_layers: int = 6,
        num_temporal_layers: int = 6,
        intermediate_size: int = 3072,
        hidden_dropout: float = 0.1,
        hidden_act: str = "gelu",
        embedding_layer_norm_eps: float = 0.1,
        transformer_layer_norm_eps: float = 1e-5,
        num_frames: int = 16,
        max_boxes: int = 14,
        num_categories: int = 3,
        num_sides: int = 3,
        num_states: int = 6,
        heads: dict[str, int] | None = None,
        head_labels: dict[str, list[str]] | None = None,
        modality: str = "layout",
        head_order: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.num_spatial_layers = num_spatial_layers
        self.num_temporal_layers = num_temporal_layers
        self.intermediate_size = intermediate_size
        self.hidden_dropout = hidden_dropout
        self.hidden_act = hidden_act
        self.embedding_layer_norm_eps = embedding_layer_norm_eps
        self.transformer_layer_norm_eps = transformer_layer_norm_eps
        self.num_frames = num_frames
        self.max_boxes = max_boxes
        self.num_categories = num_categories
        self.num_sides = num_sides
        self.num_states = num_states
        self.heads = _ordered_heads(dict(heads) if heads is not None else {"action": 174}, head_order)
        self.head_labels = head_labels
        self.modality = modality
        super().__init__(**kwargs)
        self._check_and_fill()

    @property
    def input_key(self) -> str:
        """Prefix of the batch keys this model reads (``layout_boxes``, ``layout_categories``, ...)."""
        return "layout"

    def _check_and_fill(self) -> None:
        """Raise a ValueError naming the first invalid field; fill the default class names."""
        for name in (
            "hidden_size",
            "num_attention_heads",
            "num_spatial_layers",
            "num_temporal_layers",
            "intermediate_size",
            "num_frames",
            "max_boxes",
        ):
            _require_positive_int(name, getattr(self, name))
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"STLTConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        for name in ("num_categories", "num_sides", "num_states"):
            value = getattr(self, name)
            _require_positive_int(name, value)
            if value < 2:
                raise ValueError(f"STLTConfig.{name} must be >= 2 (index 0 is padding), got {value}")
        if isinstance(self.hidden_dropout, bool) or not isinstance(self.hidden_dropout, (int, float)) or not (
            0.0 <= self.hidden_dropout < 1.0
        ):
            raise ValueError(f"STLTConfig.hidden_dropout must be in [0, 1), got {self.hidden_dropout!r}")
        _require_positive_float("embedding_layer_norm_eps", self.embedding_layer_norm_eps)
        _require_positive_float("transformer_layer_norm_eps", self.transformer_layer_norm_eps)
        if self.hidden_act not in _SUPPORTED_ACTIVATIONS:
            raise ValueError(
                f"STLTConfig.hidden_act must be one of {_SUPPORTED_ACTIVATIONS}, got {self.hidden_act!r}"
            )
        if self.modality != "layout":
            raise ValueError(f"STLTConfig.modality must be 'layout', got {self.modality!r}")
        if not isinstance(self.heads, dict) or not self.heads:
            raise ValueError(f"STLTConfig.heads must be a non-empty dict name -> num_classes, got {self.heads!r}")
        for head, num_classes in self.heads.items():
            if not isinstance(head, str) or not head:
                raise ValueError(f"STLTConfig.heads: head names must be non-empty strings, got {head!r}")
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
                raise ValueError(
                    f"STLTConfig.heads[{head!r}] must be a positive number of classes, got {num_classes!r}"
                )
        given = {} if self.head_labels is None else self.head_labels
        if not isinstance(given, dict):
            raise ValueError(f"STLTConfig.head_labels must be a dict head -> class names, got {given!r}")
        unknown = [head for head in given if head not in self.heads]
        if unknown:
            raise ValueError(f"STLTConfig.head_labels has heads {unknown} that are not in heads {list(self.heads)}")
        head_labels = {}
        for head, num_classes in self.heads.items():
            names = [str(name) for name in given[head]] if head in given else [f"{head}_{i}" for i in range(num_classes)]
            if len(names) != num_classes:
                raise ValueError(
                    f"STLTConfig.head_labels[{head!r}] has {len(names)} names, expected {num_classes} "
                    f"(heads[{head!r}])"
                )
            head_labels[head] = names
        self.head_labels = head_labels
        self.head_order = list(self.heads)


__all__ = ["STLTConfig"]
