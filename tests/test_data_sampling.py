"""Frame samplers and index mappings (mmkd_hf.data.sampling)."""

import numpy as np
import pytest

from mmkd_hf.data.sampling import (
    frame_to_seconds,
    rgb_to_flow_index,
    sample_indices,
    stride_indices,
    uniform_segment_indices,
)


def test_uniform_eval_is_centred_and_increasing():
    idx = uniform_segment_indices(100, 8, train=False)
    assert idx.shape == (1, 8)
    assert np.all(np.diff(idx[0]) > 0)
    assert idx[0, 0] == 6 and idx[0, -1] <= 99  # centre of the first part [0, 12]


def test_uniform_train_random_within_parts():
    rng = np.random.default_rng(0)
    draws = np.stack([uniform_segment_indices(100, 8, True, rng)[0] for _ in range(200)])
    part = 99 / 8
    for t in range(8):
        assert draws[:, t].min() >= round(part * t) and draws[:, t].max() <= round(part * (t + 1))
    assert len(np.unique(draws[:, 3])) > 3  # actually random


def test_uniform_multi_clip_eval_interleaves():
    idx = uniform_segment_indices(100, 4, train=False, num_clips=3)
    assert idx.shape == (3, 4)
    assert np.all(idx[0] <= idx[1]) and np.all(idx[1] <= idx[2]) and not np.array_equal(idx[0], idx[2])


def test_short_segment_repeats():
    assert uniform_segment_indices(3, 8, train=False).max() <= 2
    idx = stride_indices(5, 4, 2, train=False)
    assert idx.tolist() == [[0, 2, 4, 4]]  # out of range -> last valid index of the clip


def test_stride_train_ignores_num_clips_and_eval_spreads_clips():
    rng = np.random.default_rng(1)
    assert stride_indices(200, 8, 4, True, rng, num_clips=5).shape == (1, 8)
    ev = stride_indices(200, 8, 4, False, num_clips=3)
    assert ev.shape == (3, 8)
    assert np.all(np.diff(ev[:, 0]) > 0) and np.all(np.diff(ev, axis=1) == 4) and ev.max() < 200


def test_stride_train_stays_in_segment():
    rng = np.random.default_rng(2)
    for length in (1, 7, 31, 32, 33, 500):
        idx = stride_indices(length, 16, 2, True, rng)
        assert idx.min() >= 0 and idx.max() <= length - 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="segment length"):
        uniform_segment_indices(0, 8, False)
    with pytest.raises(ValueError, match="rng"):
        stride_indices(10, 2, 1, True, None)
    with pytest.raises(ValueError, match="sampler"):
        sample_indices("nope", 10, 2, False, None)


def test_flow_index_half_rate_and_clamped():
    assert rgb_to_flow_index(np.array([1, 2, 3, 4, 5, 100]), 10).tolist() == [1, 1, 2, 2, 3, 10]
    assert frame_to_seconds(61, 60.0) == pytest.approx(1.0)
