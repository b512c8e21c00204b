"""STLT layout teacher (Spatial-Temporal Layout Transformer) as a ``transformers`` model.

Architecture (``STLT`` in ``src/modelling/hand_models.py`` of the authors' public code (github.com/gorjanradevski/multimodal-distillation)):

1. **Box embeddings** (``STLTCategoryBoxEmbeddings``): category Embedding(3, pad 0) + box Linear(4)
   + score Linear(1) + side Embedding(3, pad 0) + state Embedding(6, pad 0), summed, then
   LayerNorm(eps 0.1) and Dropout.
2. **Spatial transformer** (``STLTSpatialTransformer``), per frame: a learnable CLS token (zeros init)
   is put *before* the boxes, padded boxes are masked out as keys, a post-LN ``nn.TransformerEncoder``
   runs, and the CLS token of every frame is kept.
3. **Temporal transformer** (``STLTTemporalTransformer``): frame tokens + position embeddings, then
   LayerNorm(eps 0.1) and Dropout; a learnable CLS token is appended at the *end*; a causal encoder
   runs and the last token (which sees every frame) is the clip feature.
4. ``classifiers``: one ``nn.Linear`` per head.

State-dict keys equal the original ones (module names follow the authors' code), so converted
checkpoints load without renaming apart from the head names (``classifiers.ACTION`` ->
``classifiers.action``) and the ``_orig_mod.`` prefix; see ``mmkd_hf.models.convert_original``::

    temporal_transformer.layout_embedding.category_box_embeddings.{category_embeddings, box_embedding,
        score_embedding, side_embedding, state_embedding, layer_norm}.*
    temporal_transformer.layout_embedding.cls_token
    temporal_transformer.layout_embedding.transformer.layers.{i}.{self_attn.in_proj_weight, ...}
    temporal_transformer.{position_embeddings, layer_norm, cls_token, transformer.layers.*}
    classifiers.<head>.{weight, bias}

Only relative imports inside this folder (it is shipped as ``trust_remote_code`` code).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_stlt import STLTConfig

LAYOUT_FIELDS = ("layout_boxes", "layout_categories", "layout_scores", "layout_sides", "layout_states", "layout_mask")


@dataclass
class STLTClassifierOutput(ModelOutput):
    """Output of [`STLTForVideoClassification`].

    Args:
        loss: mean over heads of the cross-entropy on the view-mean logits (only with ``labels``).
        logits: head name -> ``[B, C]``, or ``[B, V, C]`` when the input had a views dimension.
    """

    loss: torch.Tensor | None = None
    logits: dict[str, torch.Tensor] | None = None


def select_top_scoring_boxes(layout: dict[str, torch.Tensor], max_boxes: int) -> dict[str, torch.Tensor]:
    """Keep at most ``max_boxes`` boxes per frame: the real boxes with the highest scores.

    Padded slots rank below every real box; ties keep the earlier box, and the kept boxes keep their
    original order. Inputs with ``N <= max_boxes`` are returned unchanged.

    Args:
        layout: the six ``layout_*`` tensors; ``layout_boxes`` is ``[..., N, 4]``, the others ``[..., N]``.
        max_boxes: the number of box slots to keep.

    Returns:
        The same keys with ``N`` reduced to ``min(N, max_boxes)``.
    """
    num_boxes = layout["layout_mask"].shape[-1]
    if num_boxes <= max_boxes:
        return layout
    ranking_score = layout["layout_scores"].float().masked_fill(~layout["layout_mask"], float("-inf"))
    order = torch.sort(ranking_score, dim=-1, descending=True, stable=True).indices
    keep = torch.sort(order[..., :max_boxes], dim=-1).values
    selected = {}
    for name, tensor in layout.items():
        if name == "layout_boxes":
            selected[name] = torch.gather(tensor, -2, keep.unsqueeze(-1).expand(*keep.shape, tensor.shape[-1]))
        else:
            selected[name] = torch.gather(tensor, -1, keep)
    return selected


def causal_mask(size: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[size, size]`` mask, True above the diagonal (= blocked), as the original."""
    return torch.ones(size, size, dtype=torch.bool, device=device).triu(diagonal=1)


def _encoder(config: STLTConfig, num_layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model=config.hidden_size,
        nhead=config.num_attention_heads,
        dim_feedforward=config.intermediate_size,
        dropout=config.hidden_dropout,
        activation=config.hidden_act,
        layer_norm_eps=config.transformer_layer_norm_eps,
        batch_first=True,
        norm_first=False,
    )
    return nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)


class STLTCategoryBoxEmbeddings(nn.Module):
    """Sum of the category, box, score, side and state embeddings of every box, then LayerNorm + Dropout."""

    def __init__(self, config: STLTConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.category_embeddings = nn.Embedding(config.num_categories, hidden, padding_idx=0)
        self.box_embedding = nn.Linear(4, hidden)
        self.score_embedding = nn.Linear(1, hidden)
        self.side_embedding = nn.Embedding(config.num_sides, hidden, padding_idx=0)
        self.state_embedding = nn.Embedding(config.num_states, hidden, padding_idx=0)
        self.layer_norm = nn.LayerNorm(hidden, eps=config.embedding_layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self,
        boxes: torch.Tensor,
        categories: torch.Tensor,
        scores: torch.Tensor,
        sides: torch.Tensor,
        states: torch.Tensor,
    ) -> torch.Tensor:
        embeddings = (
            self.category_embeddings(categories)
            + self.box_embedding(boxes)
            + self.score_embedding(scores.unsqueeze(-1))
            + self.side_embedding(sides)
            + self.state_embedding(states)
        )
        return self.dropout(self.layer_norm(embeddings))


class STLTSpatialTransformer(nn.Module):
    """Per-frame transformer over the boxes; returns the CLS token of every frame, ``[B, T, H]``."""

    def __init__(self, config: STLTConfig) -> None:
        super().__init__()
        self.category_box_embeddings = STLTCategoryBoxEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.transformer = _encoder(config, config.num_spatial_layers)

    def forward(
        self,
        boxes: torch.Tensor,
        categories: torch.Tensor,
        scores: torch.Tensor,
        sides: torch.Tensor,
        states: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        embeddings = self.category_box_embeddings(boxes, categories, scores, sides, states)
        batch, frames, num_boxes, hidden = embeddings.shape
        tokens = torch.cat((self.cls_token.expand(batch * frames, 1, hidden), embeddings.flatten(0, 1)), dim=1)
        cls_is_real = torch.ones(batch * frames, 1, dtype=torch.bool, device=mask.device)
        padding = ~torch.cat((cls_is_real, mask.flatten(0, 1)), dim=1)
        encoded = self.transformer(tokens, src_key_padding_mask=padding)
        return encoded[:, 0].view(batch, frames, hidden)


class STLTTemporalTransformer(nn.Module):
    """Causal transformer over the frame tokens with a trailing CLS token; returns ``[B, H]``."""

    def __init__(self, config: STLTConfig) -> None:
        super().__init__()
        self.layout_embedding = STLTSpatialTransformer(config)
        self.position_embeddings = nn.Embedding(config.num_frames, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.embedding_layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.transformer = _encoder(config, config.num_temporal_layers)

    def forward(
        self,
        boxes: torch.Tensor,
        categories: torch.Tensor,
        scores: torch.Tensor,
        sides: torch.Tensor,
        states: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        frame_tokens = self.layout_embedding(boxes, categories, scores, sides, states, mask)
        batch, frames, hidden = frame_tokens.shape
        positions = self.position_embeddings(torch.arange(frames, device=frame_tokens.device))
        tokens = self.dropout(self.layer_norm(frame_tokens + positions))
        tokens = torch.cat((tokens, self.cls_token.expand(batch, 1, hidden)), dim=1)
        encoded = self.transformer(tokens, mask=causal_mask(frames + 1, tokens.device), is_causal=True)
        return encoded[:, -1]


class STLTPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading glue shared by the STLT models."""

    config_class = STLTConfig
    config: STLTConfig
    base_model_prefix = ""
    main_input_name = "layout_boxes"
    input_modalities = "video"
    _no_split_modules = ["TransformerEncoderLayer"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, recording the code for both ``AutoModel`` and
        ``AutoModelForVideoClassification`` in ``auto_map`` (transformers keeps only the last registered
        auto class), so ``trust_remote_code`` loading works through either."""
        if type(self)._auto_class is not None:
            class_path = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            for auto_class in ("AutoModel", "AutoModelForVideoClassification"):
                auto_map.setdefault(auto_class, class_path)
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch default init for every layer (the original never re-initialises), zeros for the CLS tokens."""
        if isinstance(module, nn.MultiheadAttention):
            module._reset_parameters()
        elif isinstance(module, (nn.Linear, nn.Embedding, nn.LayerNorm)):
            module.reset_parameters()
        elif isinstance(module, (STLTSpatialTransformer, STLTTemporalTransformer)):
            nn.init.zeros_(module.cls_token)


# Copied from mmkd_hf.models.video_swin.modeling_video_swin.multi_head_cross_entropy
def multi_head_cross_entropy(
    logits: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor] | torch.Tensor,
    head_weights: Mapping[str, float] | None = None,
) -> torch.Tensor:
    """``(1/|A|) Σ_a w_a · CE(logits_a, labels_a)`` over the heads ``A`` of ``logits``.

    Logits with a views dimension ``[B, V, C]`` are averaged over views first. ``labels``: ``{head: LongTensor[B]}``
    (extra keys ignored), or one tensor when there is one head. ``head_weights`` defaults to 1 for every head.

    Raises:
        ValueError: a head without labels, one labels tensor for several heads, or labels of the wrong shape.
    """
    if not logits:
        raise ValueError("logits dict is empty: the model has no heads")
    if isinstance(labels, torch.Tensor):
        if len(logits) != 1:
            raise ValueError(
                f"labels is a single tensor, which needs exactly one head; the logits have heads {list(logits)}: "
                "pass a dict head -> LongTensor[B]"
            )
        labels = {next(iter(logits)): labels}
    missing = [head for head in logits if head not in labels]
    if missing:
        raise ValueError(f"labels lack heads {missing}: expected every head {list(logits)}, given {list(labels)}")
    losses = []
    for head, head_logits in logits.items():
        if head_logits.dim() == 3:
            head_logits = head_logits.mean(dim=1)
        target = labels[head]
        if target.shape != head_logits.shape[:1]:
            raise ValueError(
                f"labels[{head!r}] must have shape [{head_logits.shape[0]}], got {tuple(target.shape)}"
            )
        weight = 1.0 if head_weights is None else float(head_weights.get(head, 1.0))
        losses.append(weight * F.cross_entropy(head_logits, target.to(head_logits.device).long()))
    return torch.stack(losses).mean()


class STLTForVideoClassification(STLTPreTrainedModel):
    """STLT with one linear classifier per head of ``config.heads``.

    Inputs follow the layout batch contract (``docs/design.md``); ``N`` may exceed ``config.max_boxes``
    (the highest-scoring boxes are kept) and ``T`` may be anything up to ``config.num_frames``.
    """

    def __init__(self, config: STLTConfig) -> None:
        super().__init__(config)
        self.temporal_transformer = STLTTemporalTransformer(config)
        self.classifiers = nn.ModuleDict(
            {head: nn.Linear(config.hidden_size, num_classes) for head, num_classes in config.heads.items()}
        )
        self.post_init()

    # ------------------------------------------------------------------ input checks
    def _prepare_layout(
        self,
        layout_boxes: torch.Tensor,
        layout_categories: torch.Tensor,
        layout_scores: torch.Tensor | None,
        layout_sides: torch.Tensor | None,
        layout_states: torch.Tensor | None,
        layout_mask: torch.Tensor | None,
    ) -> tuple[dict[str, torch.Tensor], int | None]:
        """Check shapes/dtypes/ranges, fold the views dimension, sanitise padded slots.

        Returns:
            The six tensors as ``[B', T, N', ...]`` (``B' = B * V``) and ``V`` (None without views).
        """
        if not isinstance(layout_boxes, torch.Tensor) or layout_boxes.dim() not in (4, 5) or layout_boxes.shape[-1] != 4:
            given = tuple(layout_boxes.shape) if isinstance(layout_boxes, torch.Tensor) else type(layout_boxes).__name__
            raise ValueError(
                f"layout_boxes must have shape [B, T, N, 4] or [B, V, T, N, 4], got {given}"
            )
        if not layout_boxes.is_floating_point():
            raise ValueError(f"layout_boxes must be a floating-point tensor, got dtype {layout_boxes.dtype}")
        slot_shape = layout_boxes.shape[:-1]
        if layout_categories is None:
            raise ValueError("layout_categories is required (int64 [B, T, N]: 0 pad, 1 object, 2 hand)")
        if layout_mask is None:
            layout_mask = layout_categories != 0
        if layout_scores is None:
            layout_scores = layout_mask.to(layout_boxes.dtype)
        if layout_sides is None:
            layout_sides = torch.zeros_like(layout_categories)
        if layout_states is None:
            layout_states = torch.zeros_like(layout_categories)
        layout = {
            "layout_boxes": layout_boxes,
            "layout_categories": layout_categories,
            "layout_scores": layout_scores,
            "layout_sides": layout_sides,
            "layout_states": layout_states,
            "layout_mask": layout_mask,
        }
        for name in LAYOUT_FIELDS[1:]:
            tensor = layout[name]
            if not isinstance(tensor, torch.Tensor) or tensor.shape != slot_shape:
                given = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                raise ValueError(
                    f"{name} must have shape {tuple(slot_shape)} (layout_boxes.shape[:-1]), got {given}"
                )
        for name in ("layout_categories", "layout_sides", "layout_states"):
            if layout[name].is_floating_point() or layout[name].dtype == torch.bool:
                raise ValueError(f"{name} must be an integer tensor, got dtype {layout[name].dtype}")
        if layout_mask.dtype != torch.bool:
            raise ValueError(f"layout_mask must be a bool tensor (True = real box), got dtype {layout_mask.dtype}")
        frames = slot_shape[-2]
        if frames > self.config.num_frames:
            raise ValueError(
                f"layout_boxes has {frames} frames but the position table holds config.num_frames="
                f"{self.config.num_frames}; give at most {self.config.num_frames} frames"
            )

        num_views = slot_shape[1] if len(slot_shape) == 4 else None
        if num_views is not None:
            layout = {name: tensor.flatten(0, 1) for name, tensor in layout.items()}

        # Padded slots are never attended to; zeroing them also keeps NaN/garbage out of the matmuls.
        mask = layout["layout_mask"]
        layout["layout_boxes"] = layout["layout_boxes"].masked_fill(~mask.unsqueeze(-1), 0.0)
        layout["layout_scores"] = layout["layout_scores"].to(layout_boxes.dtype).masked_fill(~mask, 0.0)
        for name in ("layout_categories", "layout_sides", "layout_states"):
            layout[name] = layout[name].long().masked_fill(~mask, 0)
        if not torch.compiler.is_compiling():
            self._check_index_ranges(layout)
        layout = select_top_scoring_boxes(layout, self.config.max_boxes)
        return layout, num_views

    def _check_index_ranges(self, layout: dict[str, torch.Tensor]) -> None:
        limits = {
            "layout_categories": self.config.num_categories,
            "layout_sides": self.config.num_sides,
            "layout_states": self.config.num_states,
        }
        for name, limit in limits.items():
            values = layout[name]
            if values.numel() and (values.min() < 0 or values.max() >= limit):
                raise ValueError(
                    f"{name} of real boxes must be in [0, {limit - 1}], got values in "
                    f"[{int(values.min())}, {int(values.max())}]"
                )

    # ------------------------------------------------------------------ forward
    def get_layout_features(
        self,
        layout_boxes: torch.Tensor,
        layout_categories: torch.Tensor,
        layout_scores: torch.Tensor | None = None,
        layout_sides: torch.Tensor | None = None,
        layout_states: torch.Tensor | None = None,
        layout_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Clip features before the classifiers: ``[B, H]``, or ``[B, V, H]`` with a views dimension."""
        layout, num_views = self._prepare_layout(
            layout_boxes, layout_categories, layout_scores, layout_sides, layout_states, layout_mask
        )
        features = self.temporal_transformer(
            layout["layout_boxes"],
            layout["layout_categories"],
            layout["layout_scores"],
            layout["layout_sides"],
            layout["layout_states"],
            layout["layout_mask"],
        )
        if num_views is not None:
            features = features.view(-1, num_views, features.shape[-1])
        return features

    def forward(
        self,
        layout_boxes: torch.Tensor,
        layout_categories: torch.Tensor,
        layout_scores: torch.Tensor | None = None,
        layout_sides: torch.Tensor | None = None,
        layout_states: torch.Tensor | None = None,
        layout_mask: torch.Tensor | None = None,
        labels: dict[str, torch.Tensor] | torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> STLTClassifierOutput | tuple:
        """Classify a clip of box layouts.

        Args:
            layout_boxes: float ``[B, T, N, 4]`` (or ``[B, V, T, N, 4]``), x1, y1, x2, y2 in [0, 1].
            layout_categories: int ``[B, T, N]``: 0 pad, 1 object, 2 hand.
            layout_scores: float ``[B, T, N]`` detector scores; default 1.0 for real boxes.
            layout_sides: int ``[B, T, N]``: 0 unknown, 1 left, 2 right; default 0.
            layout_states: int ``[B, T, N]``: 0 unknown, 1..5 contact states; default 0.
            layout_mask: bool ``[B, T, N]``, True = real box; default ``layout_categories != 0``.
                Values in padded slots never influence the output.
            labels: ``dict[head, LongTensor[B]]`` (extra heads are ignored), or one tensor for a
                single-head model.
            return_dict: return a tuple when False.

        Returns:
            `STLTClassifierOutput` with ``logits[head]`` of shape ``[B, C]`` (``[B, V, C]`` with views).
        """
        features = self.get_layout_features(
            layout_boxes, layout_categories, layout_scores, layout_sides, layout_states, layout_mask
        )
        logits = {head: classifier(features) for head, classifier in self.classifiers.items()}
        loss = multi_head_cross_entropy(logits, labels) if labels is not None else None
        output = STLTClassifierOutput(loss=loss, logits=logits)
        if return_dict is False:
            return output.to_tuple()
        return output


__all__ = ["STLTClassifierOutput", "STLTForVideoClassification", "STLTPreTrainedModel", "select_top_scoring_boxes"]
