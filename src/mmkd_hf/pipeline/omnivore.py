"""The omnivore baseline's inputs: one RGB network fed RGB, flow and audio clips in turn.

Flow and audio are mapped to the RGB input format (3 channels, the frame size, ImageNet normalisation applied by the
model), so the same Video Swin takes every modality.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..models.video_swin.configuration_video_swin import AUDIO_DB_MEAN, AUDIO_DB_STD, IMAGENET_MEAN, IMAGENET_STD

#: Modalities the omnivore baseline trains on, among those the dataset has (evaluation is always on RGB).
OMNIVORE_MODALITIES = ("rgb", "flow", "audio")


def flow_as_rgb(flow: torch.Tensor) -> torch.Tensor:
    """Map flow ``[..., 2, H, W]`` (u, v) to the RGB input format ``[..., 3, H, W]`` by appending an all-zero
    third channel, as the authors' code does (``Image.merge("RGB", [u, v, zeros])`` in src/modelling/dataset_video.py
    of github.com/gorjanradevski/multimodal-distillation)."""
    if flow.shape[-3] != 2:
        raise ValueError(f"flow_as_rgb: expected 2 channels (u, v) at dim -3, got shape {tuple(flow.shape)}")
    return torch.cat([flow, torch.zeros_like(flow[..., :1, :, :])], dim=-3)


def audio_as_rgb(audio: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Map log-mel frames ``[B, T, 1, F, W]`` (dB) to the RGB input format ``[B, T, 3, H, W]``.

    The spectrogram is repeated on 3 channels (the original audio checkpoints' convention), resized bilinearly to
    ``size`` (the frame size) when it differs, and affinely mapped so that the RGB model's own ImageNet
    normalisation turns it into the audio model's normalised input ``(dB - mean) / std`` (the authors' code,
    src/modelling/dataset_audio.py): ``rgb_c = mean_c + std_c * (dB - audio_mean) / audio_std``.
    """
    if audio.ndim != 5 or audio.shape[2] != 1:
        raise ValueError(f"audio_as_rgb: expected [B, T, 1, F, W], got shape {tuple(audio.shape)}")
    b, t = audio.shape[:2]
    if size is not None and tuple(size) != tuple(audio.shape[-2:]):
        flat = audio.reshape(b * t, 1, *audio.shape[-2:])
        audio = torch.nn.functional.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
        audio = audio.reshape(b, t, 1, *size)
    z = (audio - AUDIO_DB_MEAN) / AUDIO_DB_STD
    mean = torch.tensor(IMAGENET_MEAN, dtype=audio.dtype, device=audio.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=audio.dtype, device=audio.device).view(1, 1, 3, 1, 1)
    return mean + std * z


class OmnivoreDataset(torch.utils.data.Dataset):
    """Training data of the omnivore baseline: one RGB network fed RGB, flow and audio clips in turn.

    Item ``i`` of epoch ``e`` is clip ``i`` in modality ``modalities[(i + e) % M]`` (every clip is seen in every
    modality across epochs, and every batch mixes them), mapped to the RGB input format: flow by
    :func:`flow_as_rgb`, audio by :func:`audio_as_rgb`. Only that modality is decoded, so an epoch costs about
    what an RGB epoch does. Items carry ``pixel_values`` (float: uint8 frames are divided by 255, as the model
    would, so that one batch can mix them with spectrograms), ``labels`` and ``segment_id``.
    """

    def __init__(self, datasets: Mapping[str, Any], frame_size: tuple[int, int]):
        if not datasets:
            raise ValueError("OmnivoreDataset needs at least one modality")
        lengths = {m: len(d) for m, d in datasets.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"OmnivoreDataset: the modalities' datasets differ in length: {lengths}")
        self.datasets = dict(datasets)
        self.modalities = tuple(datasets)
        self.frame_size = tuple(frame_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(next(iter(self.datasets.values())))

    def modality_of(self, index: int) -> str:
        return self.modalities[(int(index) + self.epoch) % len(self.modalities)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        modality = self.modality_of(index)
        item = dict(self.datasets[modality][index])
        if modality == "rgb":
            values = item.pop("pixel_values")
        elif modality == "flow":
            values = flow_as_rgb(item.pop("flow_values"))
        else:
            values = audio_as_rgb(item.pop("audio_values").unsqueeze(0), self.frame_size)[0]
        if values.dtype == torch.uint8:
            values = values.float().div_(255.0)
        return {"pixel_values": values, "labels": item["labels"], "segment_id": item.get("segment_id")}


__all__ = ["OMNIVORE_MODALITIES", "OmnivoreDataset", "audio_as_rgb", "flow_as_rgb"]
