"""The data pipeline's fast paths against plain reference implementations, numerically.

Decoding (OpenCV) vs ``torchvision.io.decode_jpeg``; plane packing / splitting (OpenCV) vs torch copies;
``apply_to_frames`` (uint8 geometry, composed uint8 colour jitter, planes) vs resize + float + a
step-by-step jitter in float64; batch buffers + the collator's zero-copy path vs ``torch.stack``.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg
from torchvision.transforms.v2 import functional as VF

from mmkd_hf.data import AugmentationConfig, MultimodalCollator, load_dataset, sample_augmentation
from mmkd_hf.data.decoding import FolderFrames, decode_jpeg_bytes
from mmkd_hf.data.errors import FileDecodeError
from mmkd_hf.data.augmentation import _pack_planes, _split_planes, apply_to_frames, color_jitter_uint8
from mmkd_hf.data.memory import _StoragePool, batch_buffer
from test_data_transforms import _stepwise_jitter  # the float64 step-by-step jitter reference


def _smooth(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
    low = torch.from_numpy(rng.integers(0, 256, (1, c, h // 8 + 2, w // 8 + 2)).astype(np.float32))
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic")[0].permute(1, 2, 0).numpy()
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def _reference_apply(frames: torch.Tensor, params, kind: str) -> torch.Tensor:
    """The transform in plain torch: crop box scaled to the input, one antialiased resize (channels-last
    uint8 for RGB, each plane on its own otherwise), flip (flow u -> 255 - u), float / 255, step-by-step jitter."""
    t, channels, in_h, in_w = frames.shape
    out = []
    for top, left, h, w in params.crops:
        sy, sx = in_h / params.resize[0], in_w / params.resize[1]
        st, sl = round(top * sy), round(left * sx)
        box = (st, sl, max(1, min(in_h - st, round(h * sy))), max(1, min(in_w - sl, round(w * sx))))
        if channels == 3:
            resized = VF.resized_crop(frames.contiguous(memory_format=torch.channels_last), *box, [h, w], antialias=True)
        else:
            resized = torch.stack([VF.resized_crop(frames[:, i:i + 1], *box, [h, w], antialias=True)[:, 0]
                                   for i in range(channels)], 1)
        if params.flip:
            resized = resized.flip(-1)
        if kind == "flow" and params.flip:
            resized = resized.clone()
            resized[:, 0] = 255 - resized[:, 0]
        clip = resized.contiguous().float() / 255.0
        if kind == "rgb" and params.jitter is not None:
            clip = _stepwise_jitter(clip, params.jitter)
        out.append(clip)
    return torch.stack(out)


# ------------------------------------------------------------------------------------------------ decoding
def _jpeg_variants(rng):
    rgb = _smooth(rng, 37, 61)
    out = [("torchvision 4:2:0", encode_jpeg(torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), quality=90)
            .numpy().tobytes())]
    for name, kwargs in [("4:4:4", dict(subsampling=0)), ("4:2:2", dict(subsampling=1)),
                         ("progressive", dict(subsampling=2, progressive=True))]:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=85, **kwargs)
        out.append((name, buf.getvalue()))
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees (decoders here ignore it, as decode_jpeg does)
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, exif=exif)
    out.append(("exif-rotated", buf.getvalue()))
    buf = io.BytesIO()
    Image.fromarray(rgb[..., 0]).save(buf, "JPEG", quality=90)
    out.append(("grey source", buf.getvalue()))
    return out


@pytest.mark.parametrize("gray", [False, True])
def test_decode_matches_torchvision_decode_jpeg_bit_for_bit(gray):
    for name, blob in _jpeg_variants(np.random.default_rng(0)):
        ours = decode_jpeg_bytes([blob], [name], gray=gray)
        reference = decode_jpeg(torch.frombuffer(bytearray(blob), dtype=torch.uint8),
                                mode=ImageReadMode.GRAY if gray else ImageReadMode.RGB)
        assert ours.shape == (1, *reference.shape), name
        assert torch.equal(ours[0], reference), name


def test_decode_order_gathers_copies_and_layouts():
    rng = np.random.default_rng(1)
    blobs = [encode_jpeg(torch.from_numpy(_smooth(rng, 16, 24)).permute(2, 0, 1).contiguous()).numpy().tobytes()
             for _ in range(3)]
    order = np.array([2, 0, 0, 1, 2])
    frames = decode_jpeg_bytes(blobs, ["a", "b", "c"], order=order)
    singles = [decode_jpeg_bytes([b], ["x"])[0] for b in blobs]
    assert frames.shape == (5, 3, 16, 24) and frames.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(frames[i], singles[j]) for i, j in enumerate(order))
    assert frames[1].data_ptr() != frames[2].data_ptr()  # repeats are copies, not aliases
    gray = decode_jpeg_bytes(blobs, ["a", "b", "c"], gray=True, order=order)
    assert gray.shape == (5, 1, 16, 24) and gray.is_contiguous()
    # u and v concatenated stay plain contiguous planes (not interleaved)
    assert torch.cat([gray, gray], dim=1).is_contiguous()


def test_decode_errors_name_the_file(tmp_path):
    blob = encode_jpeg(torch.zeros(3, 16, 16, dtype=torch.uint8)).numpy().tobytes()
    with pytest.raises(FileDecodeError, match=r"frame_7\.jpg.*corrupt JPEG"):
        decode_jpeg_bytes([blob[: len(blob) // 2]], ["frame_7.jpg"])
    with pytest.raises(FileDecodeError, match=r"frame_8\.jpg.*SOI"):
        decode_jpeg_bytes([b"not a jpeg"], ["frame_8.jpg"])
    other = encode_jpeg(torch.zeros(3, 8, 16, dtype=torch.uint8)).numpy().tobytes()
    with pytest.raises(FileDecodeError, match="different sizes"):
        decode_jpeg_bytes([blob, other], ["a.jpg", "b.jpg"])
    (tmp_path / "0001.jpg").write_bytes(blob)
    assert FolderFrames(tmp_path, "%04d.jpg").describe(1) == str(tmp_path / "0001.jpg")


# ------------------------------------------------------------------------------------------ planes helpers
@pytest.mark.parametrize("t,c", [(4, 2), (5, 2), (3, 1), (2, 4)])
def test_pack_planes_matches_torch_copy(t, c):
    frames = torch.randint(0, 256, (t, c, 9, 13), dtype=torch.uint8, generator=torch.Generator().manual_seed(t))
    packed = _pack_planes(frames)
    n = t * c
    planes = frames.reshape(n, 9, 13)
    expected = torch.zeros((n + 2) // 3 * 3, 9, 13, dtype=torch.uint8)
    expected[:n] = planes
    assert packed.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(packed, expected.view(-1, 3, 9, 13))
    assert torch.equal(_split_planes(packed), expected)


# ----------------------------------------------------------------------------------------- apply_to_frames
def _params(seed, size, train, flip=False, num_crops=1, crop=24, **jitter):
    cfg = AugmentationConfig(crop_size=crop, horizontal_flip=flip, flip_probability=1.0, num_crops=num_crops, **jitter)
    return sample_augmentation(np.random.default_rng(seed), size, cfg, train)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("train,flip,num_crops", [(False, False, 1), (False, False, 3), (True, False, 1),
                                                  (True, True, 1)])
def test_apply_to_frames_matches_reference(seed, train, flip, num_crops):
    rng = np.random.default_rng(seed)
    size = (int(rng.integers(26, 50)), int(rng.integers(26, 80)))
    params = _params(seed, size, train, flip=flip, num_crops=num_crops)
    rgb = torch.from_numpy(np.stack([_smooth(rng, *size) for _ in range(4)])).permute(0, 3, 1, 2)  # channels-last
    flow = torch.from_numpy(np.stack([_smooth(rng, size[0] // 2, size[1] // 2, 2) for _ in range(4)]))
    flow = flow.permute(0, 3, 1, 2).contiguous()
    for kind, frames in (("rgb", rgb), ("flow", flow)):
        ours = apply_to_frames(frames, params, kind)
        reference = _reference_apply(frames, params, kind)
        assert ours.shape == reference.shape and ours.dtype == torch.float32
        assert ours.min() >= 0 and ours.max() <= 1
        if kind == "rgb" and params.jitter is not None:  # integer rounding at each of <= 4 passes
            assert torch.allclose(ours, reference, atol=JITTER_ATOL, rtol=0), (kind, (ours - reference).abs().max() * 255)
        else:  # no jitter: bit-identical (same resize, same division)
            assert torch.equal(ours, reference), kind
        as_bytes = apply_to_frames(frames, params, kind, dtype=torch.uint8)
        assert as_bytes.dtype == torch.uint8 and torch.equal(as_bytes.float() / 255.0, ours), kind


#: the uint8 jitter rounds to integers at each pass (<= 4 passes) and later steps scale that error by their
#: factors (up to 1.4 here): measured over 300 random draws, at most 3.3 units of 1/255 (2.8 with exact
#: float64 passes instead of OpenCV's fixed-point ones), a mean signed error under 0.21 units.
JITTER_ATOL = 3.5 / 255


def _random_jitter(rng, seed):
    order = tuple(int(i) for i in rng.permutation(4))
    return (order, *(float(v) for v in rng.uniform(0.6, 1.4, 3)), 0.0 if seed % 4 == 0 else float(rng.uniform(-0.1, 0.1)))


@pytest.mark.parametrize("backend", ["opencv", "torch"])
@pytest.mark.parametrize("seed", range(12))
def test_uint8_jitter_matches_stepwise_blends(seed, backend, monkeypatch):
    """Every order, factors on both sides of 1 (passes made only where a clamp can matter), hue 0 or not;
    OpenCV's passes and the torch fallback's."""
    import mmkd_hf.data.augmentation as augmentation

    if backend == "torch":
        monkeypatch.setattr(augmentation, "_cv2", None)
    rng = np.random.default_rng(seed)
    frames = torch.from_numpy(np.stack([_smooth(rng, 20, 28) for _ in range(3)])).permute(0, 3, 1, 2)  # channels-last
    jitter = _random_jitter(rng, seed)
    reference = _stepwise_jitter(frames.float() / 255.0, jitter)
    x = color_jitter_uint8(frames.clone(memory_format=torch.channels_last), jitter)
    assert x.dtype == torch.uint8 and x.is_contiguous(memory_format=torch.channels_last)
    error = x.float() / 255.0 - reference
    assert error.abs().max() <= JITTER_ATOL, (jitter, error.abs().max() * 255)
    assert abs(error.mean()) < 0.3 / 255, (jitter, error.mean() * 255)  # rounding, not a systematic shift


def test_uint8_jitter_refuses_planar_frames():
    with pytest.raises(ValueError, match="channels-last"):
        color_jitter_uint8(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ((0, 1, 2, 3), 1.1, 1.0, 1.0, 0.0))


def test_apply_to_frames_writes_into_out_and_checks_it():
    params = _params(0, (30, 40), True)
    frames = torch.randint(0, 256, (3, 3, 30, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = torch.full((1, 3, 3, 24, 24), -1.0)
    assert apply_to_frames(frames, params, "rgb", out=out) is out
    assert torch.equal(out, apply_to_frames(frames, params, "rgb"))
    with pytest.raises(ValueError, match="out must be"):
        apply_to_frames(frames, params, "rgb", out=torch.empty(1, 3, 3, 24, 23))
    out8 = torch.zeros((1, 3, 3, 24, 24), dtype=torch.uint8)
    assert apply_to_frames(frames, params, "rgb", out=out8) is out8
    assert torch.equal(out8.float() / 255.0, out)
    with pytest.raises(ValueError, match="dtype must be"):
        apply_to_frames(frames, params, "rgb", dtype=torch.float16)


# ------------------------------------------------------------------------------ batch buffers and collator
def test_storage_pool_reuses_only_released_buffers():
    pool = _StoragePool(max_buffers=2, min_bytes=1024)
    a = pool.tensor((4, 1000))
    ptr = a.data_ptr()
    b = pool.tensor((4, 1000))
    assert b.data_ptr() != ptr  # a is still in use
    view = a[1]
    del a
    assert pool.tensor((4, 1000)).data_ptr() != ptr  # a view keeps it alive
    del view
    assert pool.tensor((4, 1000)).data_ptr() == ptr  # released: recycled
    assert pool.tensor((2, 10)).numel() == 20  # small: plain allocation


def test_collator_returns_adjacent_items_without_copy():
    buffer = batch_buffer((3, 4, 3, 8, 8))
    buffer.copy_(torch.rand(3, 4, 3, 8, 8))
    items = [{"segment_id": f"s{i}", "pixel_values": buffer[i]} for i in range(3)]
    batch = MultimodalCollator()(items)
    assert batch["pixel_values"].data_ptr() == buffer.data_ptr() and torch.equal(batch["pixel_values"], buffer)
    # reordered, partial or separate items are copied, with the same values as torch.stack
    for chosen in ([buffer[1], buffer[0]], [buffer[0], buffer[2]], [buffer[0].clone(), buffer[1]]):
        items = [{"segment_id": str(i), "pixel_values": v} for i, v in enumerate(chosen)]
        out = MultimodalCollator()(items)["pixel_values"]
        assert out.data_ptr() != buffer.data_ptr() and torch.equal(out, torch.stack(chosen))
    # dropping a bad item at the end keeps the remaining adjacent prefix
    items = [{"segment_id": "a", "pixel_values": buffer[0]}, {"segment_id": "b", "pixel_values": buffer[1]},
             {"segment_id": "c", "skip_reason": "corrupt"}]
    assert torch.equal(MultimodalCollator()(items)["pixel_values"], buffer[:2])


@pytest.mark.parametrize("modalities,train", [(["rgb", "flow"], False), (["rgb"], True)])
def test_dataloader_batches_equal_single_items(tiny_epic, data_cache, modalities, train):
    ds = load_dataset("epic-kitchens-100", tiny_epic, "validation", modalities, data_cache, num_frames=4,
                      crop_size=32, train=train, sampler="uniform", seed=3)
    indices = list(range(min(len(ds), 3)))
    items = ds.__getitems__(indices)  # what a DataLoader asks for: one transform call for the batch
    batch = MultimodalCollator()(items)
    assert batch["pixel_values"].data_ptr() == items[0]["pixel_values"].data_ptr()  # no copy
    singles = [ds[i] for i in indices]
    for key in ("pixel_values", "flow_values") if "flow" in modalities else ("pixel_values",):
        expected = torch.stack([s[key] for s in singles])
        assert batch[key].shape == expected.shape
        if train:  # fresh random draws per access: same shapes and ranges only
            assert 0 <= batch[key].min() and batch[key].max() <= 1
        else:
            assert torch.equal(batch[key], expected)


def _collate_and_report_sharing(items):
    batch = MultimodalCollator()(items)
    batch["built_in_shared_memory"] = batch["pixel_values"].is_shared()  # in the worker, before any transfer
    return batch


def test_worker_batches_are_built_in_shared_memory(tiny_epic, data_cache):
    ds = load_dataset("epic-kitchens-100", tiny_epic, "validation", ["rgb"], data_cache, num_frames=4,
                      crop_size=32, sampler="uniform")
    reference = MultimodalCollator()([ds[0], ds[1]])["pixel_values"]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, collate_fn=_collate_and_report_sharing)
    batch = next(iter(loader))
    assert batch["built_in_shared_memory"] is True  # written there by the transform: nothing copied to send it
    assert torch.equal(batch["pixel_values"], reference)


def test_transform_configures_its_dataloader_worker_once(monkeypatch):
    """Inside a worker the first call sets one compute thread (torch and OpenCV), once per process."""
    import types

    import cv2

    from mmkd_hf.data import memory

    calls, worker_init = [], memory.dataloader_worker_init
    monkeypatch.setattr(memory, "_CONFIGURED_WORKER_PID", None)
    monkeypatch.setattr(memory, "dataloader_worker_init", lambda worker_id: calls.append(worker_id))
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: None)
    memory.configure_worker_once()
    assert calls == []  # the main process is left alone
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: types.SimpleNamespace(id=3))
    memory.configure_worker_once()
    memory.configure_worker_once()
    assert calls == [3]

    threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        torch.set_num_threads(2)
        cv2.setNumThreads(2)
        worker_init(0)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
