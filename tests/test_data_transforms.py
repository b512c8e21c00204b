"""Per-item consistent augmentation, audio windows, layout padding and the collator."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from mmkd_hf.data import AudioConfig, AugmentationConfig, MultimodalCollator, sample_augmentation
from mmkd_hf.data.audio import log_mel_windows, mask_spectrogram, resize_spectrogram
from mmkd_hf.data.augmentation import apply_to_frames
from mmkd_hf.data.layout import pad_layout, transform_boxes


def _params(train=True, flip=False, seed=0, size=(48, 64), crop=32, num_crops=1):
    cfg = AugmentationConfig(crop_size=crop, horizontal_flip=flip, flip_probability=1.0, num_crops=num_crops)
    return sample_augmentation(np.random.default_rng(seed), size, cfg, train)


def test_train_params_follow_the_original_ranges():
    p = _params(seed=3)
    short = min(p.resize)
    assert round(32 * 1.15) <= short <= round(32 * 1.43)
    (top, left, h, w), = p.crops
    assert (h, w) == (32, 32) and top + h <= p.resize[0] and left + w <= p.resize[1]
    order, b, c, s, hue = p.jitter
    assert sorted(order) == [0, 1, 2, 3] and 0.75 <= b <= 1.25 and -0.1 <= hue <= 0.1
    assert p.flip is False  # flip is off by default


def test_eval_three_crops_left_centre_right():
    p = _params(train=False, num_crops=3, size=(32, 64))
    assert p.resize == (32, 64)
    assert [c[1] for c in p.crops] == [0, 16, 32] and p.jitter is None


def test_rgb_and_flow_share_geometry_and_flip_negates_u():
    p = _params(flip=True)
    assert p.flip
    x = torch.arange(64, dtype=torch.float32).repeat(48, 1)  # value = column index
    rgb = torch.stack([x, x, x]).to(torch.uint8)[None].repeat(2, 1, 1, 1)
    flow = torch.full((2, 2, 24, 32), 200, dtype=torch.uint8)  # half-size flow grid
    flow[:, :, :, :16] = 100
    rgb_out = apply_to_frames(rgb, p, "rgb")
    flow_out = apply_to_frames(flow, p, "flow")
    assert rgb_out.shape == (1, 2, 3, 32, 32) and flow_out.shape == (1, 2, 2, 32, 32)
    # flipped: columns decrease left to right
    assert rgb_out[0, 0, 0, 0, 0] > rgb_out[0, 0, 0, 0, -1]
    # u is negated (1 - u), v is only flipped
    assert flow_out[0, 0, 0].min() < 0.5 and torch.allclose(flow_out[0, 0, 0].max(), torch.tensor(1 - 100 / 255), atol=0.02)
    assert flow_out[0, 0, 1].max() == pytest.approx(200 / 255, abs=0.02)


def test_colour_jitter_touches_rgb_only():
    p = _params(seed=5)
    frames = torch.full((1, 3, 48, 64), 100, dtype=torch.uint8)
    flow = torch.full((1, 2, 48, 64), 100, dtype=torch.uint8)
    assert not torch.allclose(apply_to_frames(frames, p, "rgb")[0, 0, 0], torch.tensor(100 / 255))
    assert torch.allclose(apply_to_frames(flow, p, "flow"), torch.tensor(100 / 255))


def test_boxes_follow_crop_and_flip():
    p = _params(train=False, size=(100, 200), crop=100)  # resize = (100, 200), centre crop x in [50, 150)
    boxes = np.array([[0.30, 0.1, 0.40, 0.5], [0.0, 0.0, 0.1, 0.1], [0.70, 0.2, 0.90, 0.4]])
    out, inside = transform_boxes(boxes, p)
    assert inside.tolist() == [True, False, True]
    assert out[0] == pytest.approx([0.1, 0.1, 0.3, 0.5], abs=1e-5)
    assert out[2] == pytest.approx([0.9, 0.2, 1.0, 0.4], abs=1e-5)  # clipped to the crop
    flipped = sample_augmentation(np.random.default_rng(0), (100, 200),
                                  AugmentationConfig(crop_size=100, horizontal_flip=True, flip_probability=1.0,
                                                     color_jitter=False, scale_range=(1.0, 1.0)), True)
    out_f, _ = transform_boxes(boxes[:1], flipped)
    top, left, _, _ = flipped.crops[0]
    x1 = (0.30 * 200 - left) / 100
    x2 = (0.40 * 200 - left) / 100
    assert out_f[0, 0] == pytest.approx(1 - x2, abs=1e-5) and out_f[0, 2] == pytest.approx(1 - x1, abs=1e-5)


def test_pad_layout_keeps_highest_scores():
    n = 20
    frame = {"boxes": np.tile([[0.1, 0.1, 0.2, 0.2]], (n, 1)).astype(np.float32),
             "categories": np.ones(n, np.int64), "scores": np.linspace(0.1, 1.0, n).astype(np.float32),
             "sides": np.zeros(n, np.int64), "states": np.zeros(n, np.int64)}
    empty = {k: v[:0] for k, v in frame.items()}
    out = pad_layout([frame, empty], max_boxes=14)
    assert out["layout_mask"][0].all() and not out["layout_mask"][1].any()
    assert out["layout_scores"][0].min() >= np.sort(frame["scores"])[-14] - 1e-6
    assert out["layout_categories"][1].sum() == 0 and out["layout_boxes"].shape == (2, 14, 4)


def test_log_mel_window_shape_and_padding():
    cfg = AudioConfig(output_size=None)
    sr = 16000
    samples = np.sin(2 * np.pi * 440 * np.arange(sr * 2) / sr).astype(np.float32)
    spec = log_mel_windows(samples, sr, 0.0, np.array([0.0, 1.0, 1.9]), cfg)
    assert spec.shape == (3, 1, 128, 224)
    assert spec[0, 0, :, :50].max() <= -99.0  # before t = 0: zero-padded -> -100 dB
    assert spec[1].max() > -20.0
    resampled = log_mel_windows(samples[::2], 8000, 0.0, np.array([1.0]), cfg)  # resampled to 16 kHz
    assert resampled.shape == (1, 1, 128, 224)


def test_spectrogram_downsizing_keeps_every_mel_bin():
    """Shrinking 128 mel bins to 48 rows averages their power: a tone in a bin that nearest neighbours would
    drop stays visible; growing an axis stays nearest neighbour (the original 128 -> 224 resize)."""
    power = torch.full((1, 1, 128, 56), 1e-10)
    kept_by_nearest = set(TF.interpolate(torch.arange(128.0).view(1, 1, 128, 1), size=(48, 1), mode="nearest")
                          .flatten().long().tolist())
    dropped = next(b for b in range(40, 128) if b not in kept_by_nearest)
    power[..., dropped, :] = 1.0  # a loud tone in one dropped mel bin
    assert TF.interpolate(power, size=(48, 48), mode="nearest").max() == 1e-10  # the failure guarded against
    small = resize_spectrogram(power, (48, 48))
    assert small.shape == (1, 1, 48, 48) and small.max() > 0.3  # the tone's power averaged over <= 3 bins
    big = resize_spectrogram(power, (224, 224))
    assert torch.equal(big, TF.interpolate(power, size=(224, 224), mode="nearest"))
    mixed = resize_spectrogram(power, (48, 224))  # one axis shrinks, the other grows
    assert mixed.shape == (1, 1, 48, 224) and mixed.max() > 0.3


def test_masking_happens_in_db_space():
    cfg = AudioConfig(output_size=(32, 32), time_mask=10, freq_mask=10, mask_probability=1.0)
    spec = torch.randn(4, 1, 32, 32) * 10 - 30
    masked = mask_spectrogram(spec, np.random.default_rng(0), cfg)
    assert masked.min() >= spec.min() and (masked != spec).any()
    assert not (masked <= -99).any()  # masked bins are the mean dB value, not -100 dB


def test_collator_stacks_and_names_bad_shapes():
    item = lambda i, t=4: {"segment_id": f"s{i}", "pixel_values": torch.zeros(t, 3, 8, 8),
                           "labels": {"verb": i, "noun": 2 * i}}
    batch = MultimodalCollator()([item(1), item(2)])
    assert batch["pixel_values"].shape == (2, 4, 3, 8, 8)
    assert batch["labels"]["noun"].tolist() == [2, 4] and batch["labels"]["verb"].dtype == torch.long
    assert batch["segment_id"] == ["s1", "s2"]
    assert set(MultimodalCollator(keys=["labels"])([item(1)])) == {"labels", "segment_id"}
    with pytest.raises(ValueError, match="s2"):
        MultimodalCollator()([item(1), item(2, t=5)])
    dropped = MultimodalCollator()([item(1), None, {"segment_id": "bad", "skip_reason": "corrupt"}])
    assert dropped["segment_id"] == ["s1"]


def _stepwise_jitter(frames, jitter):
    """Reference: torchvision's float blends one step at a time (clamped), hue as a YIQ chroma rotation."""
    import math

    order, b, c, s, hue = jitter
    x = frames.clone().double()
    grey = lambda v: 0.299 * v[:, 0:1] + 0.587 * v[:, 1:2] + 0.114 * v[:, 2:3]
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
    for op in order:
        if op == 0:
            x = (x * b).clamp(0, 1)
        elif op == 1:
            m = grey(x).mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - m) * c + m).clamp(0, 1)
        elif op == 2:
            g = grey(x)
            x = ((x - g) * s + g).clamp(0, 1)
        elif hue != 0.0:
            th = 2 * math.pi * hue
            rot = torch.tensor([[1, 0, 0], [0, math.cos(th), -math.sin(th)], [0, math.sin(th), math.cos(th)]],
                               dtype=torch.float64)
            x = torch.einsum("ij,tjhw->tihw", torch.linalg.inv(yiq) @ rot @ yiq, x).clamp(0, 1)
    return x.float()


@pytest.mark.parametrize("jitter", [((0, 1, 2, 3), 1.25, 0.75, 1.2, 0.1), ((3, 2, 1, 0), 0.8, 1.25, 0.75, -0.07),
                                    ((2, 0, 3, 1), 1.1, 1.2, 1.25, 0.0)])
def test_uint8_colour_jitter_matches_stepwise_blends(jitter):
    from mmkd_hf.data.augmentation import color_jitter_uint8

    frames = torch.randint(0, 256, (3, 3, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = color_jitter_uint8(frames.clone(memory_format=torch.channels_last), jitter)
    assert out.shape == frames.shape and out.dtype == torch.uint8
    reference = _stepwise_jitter(frames.float() / 255.0, jitter)
    assert torch.allclose(out.float() / 255.0, reference, atol=2.5 / 255, rtol=0)
    assert not torch.equal(out, frames)


def test_apply_to_frames_same_result_for_any_memory_layout_and_channel_count():
    from torchvision.transforms.v2 import functional as VF

    p = _params(seed=7, flip=True)
    gen = torch.Generator().manual_seed(1)
    rgb = torch.randint(0, 256, (4, 3, 48, 64), dtype=torch.uint8, generator=gen)
    channels_last = rgb.contiguous(memory_format=torch.channels_last)
    assert torch.equal(apply_to_frames(rgb, p, "rgb"), apply_to_frames(channels_last, p, "rgb"))
    # 2-channel flow (packed three planes per image internally) equals resizing each plane on its own
    flow = torch.randint(0, 256, (5, 2, 24, 32), dtype=torch.uint8, generator=gen)
    out = apply_to_frames(flow, p, "flow")
    top, left, h, w = p.crops[0]
    sy, sx = 24 / p.resize[0], 32 / p.resize[1]
    box = (round(top * sy), round(left * sx), min(24 - round(top * sy), round(h * sy)), min(32 - round(left * sx), round(w * sx)))
    planes = torch.stack([VF.resized_crop(flow[:, c:c + 1], *box, [h, w], antialias=True)[:, 0] for c in range(2)], 1)
    expected = planes.flip(-1).float() / 255
    expected[:, 0] = 1 - expected[:, 0]
    assert out.shape == (1, 5, 2, h, w) and torch.allclose(out[0], expected, atol=1e-6)


def test_folder_frames_decode_channels_last_and_repeat_duplicates(tmp_path):
    from torchvision.io import encode_jpeg

    from mmkd_hf.data.decoding import FolderFrames

    gen = torch.Generator().manual_seed(2)
    for n in (1, 2, 3):
        img = torch.randint(0, 256, (3, 16, 24), dtype=torch.uint8, generator=gen)
        (tmp_path / f"{n:04d}.jpg").write_bytes(encode_jpeg(img, quality=95).numpy().tobytes())
    store = FolderFrames(tmp_path, "%04d.jpg")
    frames = store.read([3, 1, 1, 2])
    assert frames.shape == (4, 3, 16, 24) and frames.is_contiguous(memory_format=torch.channels_last)
    single = [store.read([n])[0] for n in (3, 1, 1, 2)]
    assert all(torch.equal(f, s) for f, s in zip(frames, single)) and torch.equal(frames[1], frames[2])
    gray = store.read([2, 2], gray=True)
    assert gray.shape == (2, 1, 16, 24) and torch.equal(gray[0], gray[1])
