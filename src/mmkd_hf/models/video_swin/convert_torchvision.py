"""Convert torchvision's ``SwinTransformer3d`` (e.g. ``swin3d_t``) weights to :class:`VideoSwinModel`.

torchvision stores the stages flat in ``features``: ``features.<2s>`` are the blocks of stage ``s`` and
``features.<2s+1>`` its patch merging; the block MLP is a ``Sequential`` (``mlp.0`` and ``mlp.3``). Everything
else (patch embedding, attention, norms, relative-position tables and index) has the same names and layout
as the original Video Swin code that this package follows. The Kinetics-400 ``head`` is dropped.

torchvision normalises nothing inside the model, so compare or use converted weights with the input
normalisation you need (``normalize_inputs`` with ImageNet constants matches torchvision's preset).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from .configuration_video_swin import VideoSwinConfig
from .modeling_video_swin import VideoSwinForVideoClassification

_BLOCK_KEY = re.compile(r"^features\.(\d+)\.(\d+)\.(.+)$")
_MERGE_KEY = re.compile(r"^features\.(\d+)\.(norm|reduction)\.(.+)$")
_MLP_RENAMES = {"mlp.0.": "mlp.fc1.", "mlp.3.": "mlp.fc2."}


def _rename_block_param(name: str) -> str:
    for old, new in _MLP_RENAMES.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def convert_torchvision_swin3d_state_dict(tv_state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Maps a torchvision ``SwinTransformer3d`` state dict onto :class:`VideoSwinModel` keys.

    Args:
        tv_state_dict: ``model.state_dict()`` of a torchvision ``SwinTransformer3d``.

    Returns:
        A state dict for ``VideoSwinModel`` (prefix it with ``"backbone."`` for the classification model).
        The ``head.*`` entries are dropped.

    Raises:
        ValueError: On a key that belongs to no known part of the torchvision model.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in tv_state_dict.items():
        if key.startswith("head."):
            continue
        if key.startswith(("patch_embed.", "norm.")):
            converted[key] = tensor
            continue
        block = _BLOCK_KEY.match(key)
        merge = _MERGE_KEY.match(key)
        if merge and int(merge.group(1)) % 2 == 1:
            stage = int(merge.group(1)) // 2
            converted[f"layers.{stage}.downsample.{merge.group(2)}.{merge.group(3)}"] = tensor
        elif block and int(block.group(1)) % 2 == 0:
            stage = int(block.group(1)) // 2
            converted[f"layers.{stage}.blocks.{block.group(2)}.{_rename_block_param(block.group(3))}"] = tensor
        else:
            raise ValueError(f"convert_torchvision_swin3d_state_dict: unexpected torchvision key {key!r}.")
    return converted


def _config_from_torchvision(tv_model: nn.Module, **config_kwargs) -> VideoSwinConfig:
    stages = [module for index, module in enumerate(tv_model.features) if index % 2 == 0]
    first_attention = stages[0][0].attn
    mlp_hidden = stages[0][0].mlp[0].out_features
    embed_dim = tv_model.patch_embed.proj.out_channels
    return VideoSwinConfig(
        patch_size=tuple(tv_model.patch_embed.proj.kernel_size),
        embed_dim=embed_dim,
        depths=tuple(len(stage) for stage in stages),
        num_heads=tuple(stage[0].attn.num_heads for stage in stages),
        window_size=tuple(first_attention.window_size),
        mlp_ratio=mlp_hidden / embed_dim,
        qkv_bias=first_attention.qkv.bias is not None,
        num_channels=tv_model.patch_embed.proj.in_channels,
        layer_norm_eps=tv_model.norm.eps,
        **config_kwargs,
    )


def video_swin_from_torchvision(
    tv_model: nn.Module, heads: Mapping[str, int] | None = None, **config_kwargs
) -> VideoSwinForVideoClassification:
    """Builds a :class:`VideoSwinForVideoClassification` with the backbone weights of a torchvision model.

    Args:
        tv_model: A torchvision ``SwinTransformer3d`` (e.g. ``torchvision.models.video.swin3d_t(weights=...)``).
        heads: Heads of the new model (freshly initialised); default ``{"action": 174}``.
        **config_kwargs: Other :class:`VideoSwinConfig` fields (e.g. ``drop_path_rate``, ``modality``,
            ``normalize_inputs``). The architecture fields are read from ``tv_model``.

    Returns:
        The model, in the same train/eval mode as ``tv_model``.
    """
    config = _config_from_torchvision(tv_model, heads=dict(heads) if heads else None, **config_kwargs)
    model = VideoSwinForVideoClassification(config)
    model.backbone.load_state_dict(convert_torchvision_swin3d_state_dict(tv_model.state_dict()), strict=True)
    return model.train(tv_model.training)


__all__ = ["convert_torchvision_swin3d_state_dict", "video_swin_from_torchvision"]
