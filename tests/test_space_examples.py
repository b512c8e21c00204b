"""The Space's example clips hold the dataset's pixels: decoded back they match the clip the dataset gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers_hub import save_tiny_student
from test_space import load_space_module


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _decode(path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


@pytest.fixture(scope="module")
def run_dir(tiny_epic, tmp_path_factory):
    from mmkd_hf.data import RunSettings

    run = tmp_path_factory.mktemp("run")
    RunSettings(dataset="epic-kitchens-100", data_dir=str(tiny_epic),
                load_kwargs={"num_frames": 4, "crop_size": 32, "seed": 0, "frames_dtype": "uint8"}).save(run)
    save_tiny_student(run / "student")
    return run


def test_frames_to_uint8_keeps_uint8_and_scales_float():
    space = load_space_module()
    frames = torch.tensor([[0, 37, 128, 255]], dtype=torch.uint8)
    assert torch.equal(space.frames_to_uint8(frames), frames)
    assert torch.equal(space.frames_to_uint8(frames.float() / 255), frames)
    with pytest.raises(TypeError):
        space.frames_to_uint8(frames.to(torch.int32))


@pytest.mark.parametrize("frames_dtype", ["uint8", "float32"])
def test_example_clips_match_the_dataset_and_the_student_agrees(run_dir, tmp_path, frames_dtype):
    from mmkd_hf.data import RunSettings

    space = load_space_module()
    settings = RunSettings.from_run_dir(run_dir)
    settings.load_kwargs["frames_dtype"] = frames_dtype
    dataset = settings.load_dataset("validation", ("rgb",), train=False)
    examples = space.write_examples(dataset, tmp_path / "examples", count=2)
    assert sorted(examples.values()) == [0, 1]

    app = space.SpaceApp(str(run_dir / "student"), examples_dir=tmp_path / "space-examples")
    assert app.load_error is None, app.load_error
    for index in examples.values():
        path = tmp_path / "examples" / f"example-{index}.mp4"
        clip = space.frames_to_uint8(dataset[index]["pixel_values"])  # [T, 3, H, W] uint8
        expected = clip.permute(0, 2, 3, 1).numpy()
        decoded = _decode(path)
        assert decoded.shape == expected.shape
        assert _psnr(decoded, expected) >= 30.0, _psnr(decoded, expected)
        # The Space's prediction on the example equals the student's prediction on the dataset clip itself.
        on_example = app.classifier(str(path), top_k=5, num_clips=1, num_crops=1)
        on_dataset = app.classifier(clip, top_k=5, num_clips=1, num_crops=1)
        for head in ("verb", "noun", "action"):
            assert [i["label"] for i in on_example[head]][:1] == [i["label"] for i in on_dataset[head]][:1], head
            assert on_example[head][0]["score"] == pytest.approx(on_dataset[head][0]["score"], abs=0.02)
