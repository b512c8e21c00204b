"""Video Swin Transformer (Liu et al., "Video Swin Transformer", CVPR 2022) as a ``transformers`` model.

The module tree and parameter names follow the original code (``SwinModel`` in ``src/modelling/models.py``
and ``src/modelling/swin.py`` of github.com/gorjanradevski/multimodal-distillation), so the authors' checkpoints
load 1:1 into :class:`VideoSwinForVideoClassification`:

``backbone.patch_embed.{proj,norm}``, ``backbone.layers.<stage>.blocks.<block>.{norm1, attn.qkv, attn.proj,
attn.relative_position_bias_table, attn.relative_position_index, norm2, mlp.fc1, mlp.fc2}``,
``backbone.layers.<stage>.downsample.{norm,reduction}``, ``backbone.norm`` and ``classifiers.<head>``.

Tensors inside the backbone are channels-last ``[N, T, H, W, C]``. Window attention (``window_attention.py``)
runs through ``torch.nn.functional.scaled_dot_product_attention`` with the relative-position bias (plus the
shifted-window mask) as an additive ``attn_mask`` in the compute dtype; eager CPU inference takes plain batched
products over a few windows at a time instead (``chunked_window_attention``), which is faster on CPUs. The
model runs in the dtype of its parameters (e.g. ``from_pretrained(..., dtype=torch.bfloat16)``); clips are
scaled and normalised in float32 and cast to it inside ``forward``.

This folder is self-contained (relative imports, torch and transformers only) so that ``save_pretrained``
can ship it for ``trust_remote_code=True``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from .configuration_video_swin import VideoSwinConfig
from .window_attention import (
    Triple,
    VideoSwinWindowAttention,
    effective_window_and_shift,
    padding_to_multiple,
    relative_position_index,
    shifted_window_mask,
    window_merge,
    window_partition,
)

# ----------------------------------------------------------------------------------------------------------
# Pure helpers
# ----------------------------------------------------------------------------------------------------------


def drop_path_rates(drop_path_rate: float, num_blocks: int) -> list[float]:
    """Stochastic-depth rate of every block: ``linspace(0, drop_path_rate, num_blocks)``.

    Computed in Python (not ``torch.linspace``) so it also works while the model is built on the meta device.
    """
    if num_blocks == 1:
        return [0.0]
    return [drop_path_rate * index / (num_blocks - 1) for index in range(num_blocks)]


# ----------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------


class VideoSwinDropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability ``drop_prob``."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
        return x * keep / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4f}"


class VideoSwinPatchEmbedding(nn.Module):
    """Conv3d tubelet embedding (kernel = stride = patch), zero-padding the clip to patch multiples."""

    def __init__(self, config: VideoSwinConfig) -> None:
        super().__init__()
        self.patch_size = tuple(config.patch_size)
        self.proj = nn.Conv3d(
            config.num_channels, config.embed_dim, kernel_size=self.patch_size, stride=self.patch_size
        )
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps) if config.patch_norm else None

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``[N, C, T, H, W]`` -> channels-last ``[N, T', H', W', embed_dim]``."""
        pad_t, pad_h, pad_w = padding_to_multiple(tuple(video.shape[-3:]), self.patch_size)
        if pad_t or pad_h or pad_w:
            video = F.pad(video, (0, pad_w, 0, pad_h, 0, pad_t))
        x = self.proj(video).permute(0, 2, 3, 4, 1)
        if self.norm is not None:
            x = self.norm(x)
        return x


class VideoSwinMlp(nn.Module):
    """Block feed-forward: Linear -> GELU -> Dropout -> Linear -> Dropout."""

    def __init__(self, config: VideoSwinConfig, dim: int) -> None:
        super().__init__()
        hidden = int(dim * config.mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(config.drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class VideoSwinBlock(GradientCheckpointingLayer):
    """Pre-norm Swin block: ``x + DropPath(W-MSA(LN x))`` then ``x + DropPath(MLP(LN x))``."""

    def __init__(self, config: VideoSwinConfig, dim: int, num_heads: int, shifted: bool, drop_path: float) -> None:
        super().__init__()
        self.window_size = tuple(config.window_size)
        self.shift_size = tuple(size // 2 for size in self.window_size) if shifted else (0, 0, 0)
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = VideoSwinWindowAttention(config, dim, num_heads)
        self.drop_path = VideoSwinDropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = VideoSwinMlp(config, dim)

    def window_attention(
        self, x: torch.Tensor, window: Triple, shift: Triple, region_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Pads to window multiples, rolls by ``-shift``, attends per window, then undoes all three."""
        _, t, h, w, _ = x.shape
        pad_t, pad_h, pad_w = padding_to_multiple((t, h, w), window)
        if pad_t or pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h, 0, pad_t))
        padded_size = (t + pad_t, h + pad_h, w + pad_w)
        # Roll only the shifted axes (e.g. never time for 16-frame clips).
        shifted_dims = tuple(dim for dim, amount in zip((1, 2, 3), shift) if amount)
        shifted_amounts = tuple(amount for amount in shift if amount)
        if shifted_dims:
            x = torch.roll(x, shifts=tuple(-amount for amount in shifted_amounts), dims=shifted_dims)
        windows = self.attn(window_partition(x, window), region_mask if shifted_dims else None)
        x = window_merge(windows, window, padded_size)
        if shifted_dims:
            x = torch.roll(x, shifts=shifted_amounts, dims=shifted_dims)
        if pad_t or pad_h or pad_w:
            x = x[:, :t, :h, :w]
        return x

    def forward(self, x: torch.Tensor, region_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, T, H, W, C]`` -> same shape. ``region_mask`` comes from the stage (shifted blocks only)."""
        window, shift = effective_window_and_shift(tuple(x.shape[1:4]), self.window_size, self.shift_size)
        x = x + self.drop_path(self.window_attention(self.norm1(x), window, shift, region_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VideoSwinPatchMerging(nn.Module):
    """Spatial 2x downsampling: concat the 2x2 neighbours -> LayerNorm(4C) -> Linear(4C -> 2C, no bias)."""

    def __init__(self, config: VideoSwinConfig, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=config.layer_norm_eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, h, w, c = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
            h, w = h + h % 2, w + w % 2
        # The original concatenates x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2] (rows, cols):
        # the row offset varies fastest, so the column offset goes first in the permuted view.
        x = x.view(n, t, h // 2, 2, w // 2, 2, c).permute(0, 1, 2, 4, 5, 3, 6)
        return self.reduction(self.norm(x.reshape(n, t, h // 2, w // 2, 4 * c)))


class VideoSwinStage(nn.Module):
    """Swin blocks alternating plain and shifted windows, then (except the last stage) patch merging."""

    def __init__(self, config: VideoSwinConfig, stage: int, drop_paths: list[float]) -> None:
        super().__init__()
        dim = config.embed_dim * 2**stage
        self.window_size = tuple(config.window_size)
        self.shift_size = tuple(size // 2 for size in self.window_size)
        self.blocks = nn.ModuleList(
            VideoSwinBlock(
                config, dim, config.num_heads[stage], shifted=index % 2 == 1, drop_path=drop_paths[index]
            )
            for index in range(config.depths[stage])
        )
        is_last = stage == len(config.depths) - 1
        self.downsample = None if is_last else VideoSwinPatchMerging(config, dim)
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def region_mask(self, feature_size: Triple, device: torch.device) -> torch.Tensor | None:
        """Shifted-window mask for this stage's feature size (cached per size and device), or None."""
        window, shift = effective_window_and_shift(feature_size, self.window_size, self.shift_size)
        if len(self.blocks) < 2 or not any(shift):
            return None
        padded = tuple(size + pad for size, pad in zip(feature_size, padding_to_multiple(feature_size, window)))
        if torch.compiler.is_compiling():
            return shifted_window_mask(padded, window, shift, device)
        key = (padded, window, shift, str(device))
        if key not in self._mask_cache:
            self._mask_cache.clear()
            self._mask_cache[key] = shifted_window_mask(padded, window, shift, device)
        return self._mask_cache[key]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(output after the blocks, output after downsampling)`` (the same tensor at the last stage)."""
        region_mask = self.region_mask(tuple(x.shape[1:4]), x.device)
        for block in self.blocks:
            x = block(x, region_mask)
        return x, (x if self.downsample is None else self.downsample(x))


# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------


@dataclass
class VideoSwinClassifierOutput(ModelOutput):
    """Output of :class:`VideoSwinForVideoClassification`.

    Args:
        loss: Mean over heads of the cross-entropy of the view-averaged logits (when labels are given).
        logits: One tensor per head in ``config.heads`` order: ``[B, classes]``, or ``[B, V, classes]`` when
            the input had a views axis (views are not reduced).
        pooled_output: Globally averaged features ``[B, C]`` or ``[B, V, C]``.
        hidden_states: With ``output_hidden_states``, the patch embedding and every stage's output
            (before merging), channels-last ``[B*V, T', H', W', C]``.
    """

    loss: torch.Tensor | None = None
    logits: dict[str, torch.Tensor] | None = None
    pooled_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class VideoSwinPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading glue shared by the Video Swin models."""

    config_class = VideoSwinConfig
    config: VideoSwinConfig
    base_model_prefix = "backbone"
    main_input_name = "pixel_values"
    input_modalities = ("video",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["VideoSwinBlock"]
    _supports_sdpa = True
    # Recomputed by `_init_weights` when a checkpoint lacks it (it is a pure function of the window size).
    _keys_to_ignore_on_load_missing = [r"relative_position_index"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, writing every remote-code Auto class into ``auto_map``.

        ``register_for_auto_class`` remembers a single Auto class per model class; this also maps
        ``AutoModel`` and ``AutoModelForVideoClassification`` so both load the folder with
        ``trust_remote_code=True``.
        """
        if self._auto_class is not None:
            class_path = f"{type(self).__module__.rsplit('.', 1)[-1]}.{type(self).__name__}"
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            for auto_class in ("AutoModel", "AutoModelForVideoClassification"):
                auto_map.setdefault(auto_class, class_path)
            self.config.auto_map = auto_map
        pipeline_code = None
        if self.config.modality == "rgb":
            # RGB folders are complete for `pipeline(model=folder)`: the multi-head pipeline and the video processor.
            try:  # the pipeline code ships with the package; as remote code without it, the folder keeps its own
                from mmkd_hf.models.multi_head_video_pipeline import copy_pipeline_code, remote_pipeline_declaration
            except ImportError:
                copy_pipeline_code = None
            if copy_pipeline_code is not None:
                self.config.custom_pipelines = {**(getattr(self.config, "custom_pipelines", None) or {}),
                                                **remote_pipeline_declaration()}
                pipeline_code = copy_pipeline_code
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if self.config.modality == "rgb" and kwargs.get("is_main_process", True):
            if pipeline_code is not None:
                pipeline_code(save_directory)
            if not os.path.isfile(os.path.join(save_directory, "video_preprocessor_config.json")):
                from .video_processing_video_swin import VideoSwinVideoProcessor

                VideoSwinVideoProcessor.from_model_config(self.config).save_pretrained(save_directory)
        return result

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch default init (the original never calls ``init_weights``); bias tables trunc-normal(0.02)."""
        if isinstance(module, (nn.Linear, nn.Conv3d)):
            init.kaiming_uniform_(module.weight, a=5**0.5)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1.0 / fan_in**0.5 if fan_in > 0 else 0.0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, VideoSwinWindowAttention):
            init.trunc_normal_(module.relative_position_bias_table, std=0.02)
            init.copy_(module.relative_position_index, relative_position_index(module.window_size))


def _flatten_views(values: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    if values.ndim == 6:
        b, v = values.shape[:2]
        return values.reshape(b * v, *values.shape[2:]), v
    return values, None


class VideoSwinModel(VideoSwinPreTrainedModel):
    """Video Swin backbone: clip ``[B, T, C, H, W]`` (or ``[B, V, T, C, H, W]``) -> pooled ``[B*V, C]``.

    Inputs are un-normalised (RGB/flow in [0, 1], audio in dB) and normalised here when
    ``config.normalize_inputs``; a 3-channel flow model appends a zero channel to (u, v) input and a
    3-channel audio model repeats a 1-channel spectrogram.
    """

    def __init__(self, config: VideoSwinConfig) -> None:
        super().__init__(config)
        self.patch_embed = VideoSwinPatchEmbedding(config)
        self.pos_drop = nn.Dropout(config.drop_rate)
        rates = drop_path_rates(config.drop_path_rate, sum(config.depths))
        starts = [sum(config.depths[:stage]) for stage in range(len(config.depths))]
        self.layers = nn.ModuleList(
            VideoSwinStage(config, stage, rates[start : start + depth])
            for stage, (start, depth) in enumerate(zip(starts, config.depths))
        )
        self.norm = nn.LayerNorm(config.num_features, eps=config.layer_norm_eps)
        self.post_init()

    def adapt_channels(self, frames: torch.Tensor) -> torch.Tensor:
        """Matches ``[..., C, H, W]`` input to ``config.num_channels`` (zero flow channel, repeated audio)."""
        expected, given = self.config.num_channels, frames.shape[-3]
        if given == expected:
            return frames
        modality = self.config.modality
        if modality == "flow" and expected == 3 and given == 2:
            return torch.cat([frames, torch.zeros_like(frames[..., :1, :, :])], dim=-3)
        if modality == "audio" and expected == 3 and given == 1:
            return frames.expand(*frames.shape[:-3], 3, *frames.shape[-2:])
        raise ValueError(
            f"VideoSwinModel ({modality}): expected {expected} channels at dim -3 of the "
            f"[B, T, C, H, W] input, got {given} (shape {tuple(frames.shape)})."
        )

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel (dim -3), with the config's constants."""
        mean = torch.tensor(self.config.image_mean, dtype=frames.dtype, device=frames.device)
        std = torch.tensor(self.config.image_std, dtype=frames.dtype, device=frames.device)
        return (frames - mean[:, None, None]) / std[:, None, None]

    def check_input(self, pixel_values: torch.Tensor) -> None:
        """Raises ValueError (expected vs given) for a wrong rank or too few frames."""
        if not isinstance(pixel_values, torch.Tensor):
            raise ValueError(f"VideoSwinModel: expected a tensor, got {type(pixel_values).__name__}.")
        if pixel_values.ndim not in (5, 6):
            raise ValueError(
                "VideoSwinModel: expected input [B, T, C, H, W] or [B, V, T, C, H, W], got "
                f"{pixel_values.ndim} dims (shape {tuple(pixel_values.shape)})."
            )
        num_frames = pixel_values.shape[-4]
        if num_frames < self.config.patch_size[0]:
            raise ValueError(
                f"VideoSwinModel: expected at least {self.config.patch_size[0]} frames (the temporal patch), "
                f"got {num_frames} (shape {tuple(pixel_values.shape)})."
            )

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """Encodes clips.

        Args:
            pixel_values: ``[B, T, C, H, W]`` or ``[B, V, T, C, H, W]`` (views are folded into the batch):
                floats in [0, 1], or uint8 in 0-255 (divided by 255 here, on the model's device). Scaling and
                normalisation run in at least float32; the result is cast to the parameters' dtype (a model
                loaded with ``dtype=torch.bfloat16`` takes the same float32 or uint8 clips).
            output_hidden_states: Also return the patch embedding and every stage's output.
            return_dict: Return a ``BaseModelOutputWithPooling`` (default) or a tuple.

        Returns:
            ``last_hidden_state`` channels-last ``[N, T', H', W', C]`` after the final LayerNorm and
            ``pooler_output`` ``[N, C]`` (mean over T', H', W'), with ``N = B * V``.
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self.check_input(pixel_values)
        frames, _ = _flatten_views(pixel_values)
        compute_dtype = self.patch_embed.proj.weight.dtype
        if frames.dtype == torch.uint8:  # 0-255 clips (the data pipeline's frames_dtype="uint8")
            frames = frames.to(torch.promote_types(compute_dtype, torch.float32)).div_(255.0)
        elif frames.dtype in (torch.float16, torch.bfloat16):
            frames = frames.float()
        frames = self.adapt_channels(frames)
        if self.config.normalize_inputs:
            frames = self.normalize(frames)
        frames = frames.to(compute_dtype)  # e.g. float clips into a model loaded with dtype=torch.bfloat16
        x = self.patch_embed(frames.transpose(1, 2))  # [N, C, T, H, W] -> [N, T', H', W', D]
        x = self.pos_drop(x)
        hidden_states = [x] if output_hidden_states else None
        for stage in self.layers:
            stage_output, x = stage(x)
            if hidden_states is not None:
                hidden_states.append(stage_output)
        x = self.norm(x)
        pooled = x.mean(dim=(1, 2, 3))
        hidden_states = tuple(hidden_states) if hidden_states is not None else None
        if not return_dict:
            return tuple(value for value in (x, pooled, hidden_states) if value is not None)
        return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=pooled, hidden_states=hidden_states)


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


class VideoSwinForVideoClassification(VideoSwinPreTrainedModel):
    """Video Swin backbone + one linear head per entry of ``config.heads`` (the original ``SwinModel``)."""

    # Our loss is a mean over the batch; Trainer must keep scaling it for gradient accumulation.
    accepts_loss_kwargs = False

    def __init__(self, config: VideoSwinConfig) -> None:
        super().__init__(config)
        self.backbone = VideoSwinModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifiers = nn.ModuleDict(
            {name: nn.Linear(config.num_features, size) for name, size in config.heads.items()}
        )
        self.post_init()

    def _select_input(self, pixel_values, flow_values, audio_values) -> torch.Tensor:
        by_key = {"pixel_values": pixel_values, "flow_values": flow_values, "audio_values": audio_values}
        values = by_key[self.config.input_key]
        if values is None:
            values = pixel_values
        if values is None:
            raise ValueError(
                f"VideoSwinForVideoClassification ({self.config.modality}): expected input "
                f"`{self.config.input_key}` (or `pixel_values`), got neither."
            )
        return values

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: dict[str, torch.Tensor] | torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        flow_values: torch.Tensor | None = None,
        audio_values: torch.Tensor | None = None,
        **kwargs,
    ) -> VideoSwinClassifierOutput | tuple:
        """Classifies clips.

        Args:
            pixel_values: The model's frames ``[B, T, C, H, W]`` or ``[B, V, T, C, H, W]``, un-normalised.
            labels: ``dict`` head -> ``LongTensor[B]`` (extra keys ignored), or one tensor with one head.
            output_hidden_states: Also return the backbone's hidden states.
            return_dict: Return a ``VideoSwinClassifierOutput`` (default) or a tuple.
            flow_values: Batch key of flow models; used instead of ``pixel_values`` when
                ``config.modality == "flow"``.
            audio_values: Batch key of audio models; used instead of ``pixel_values`` when
                ``config.modality == "audio"``.
            **kwargs: Other batch keys (e.g. ``segment_id``, other modalities) are ignored.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        values = self._select_input(pixel_values, flow_values, audio_values)
        outputs = self.backbone(values, output_hidden_states=output_hidden_states, return_dict=True)
        pooled = outputs.pooler_output
        features = self.dropout(pooled)
        logits = {name: head(features) for name, head in self.classifiers.items()}
        if values.ndim == 6:
            b, v = values.shape[:2]
            logits = {name: value.view(b, v, -1) for name, value in logits.items()}
            pooled = pooled.view(b, v, -1)
        loss = multi_head_cross_entropy(logits, labels) if labels is not None else None
        if not return_dict:
            output = (logits, pooled, outputs.hidden_states)
            output = tuple(value for value in output if value is not None)
            return ((loss,) + output) if loss is not None else output
        return VideoSwinClassifierOutput(
            loss=loss, logits=logits, pooled_output=pooled, hidden_states=outputs.hidden_states
        )


__all__ = [
    "VideoSwinClassifierOutput",
    "multi_head_cross_entropy",
    "VideoSwinForVideoClassification",
    "VideoSwinModel",
    "VideoSwinPreTrainedModel",
]
