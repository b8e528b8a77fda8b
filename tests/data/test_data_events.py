"""Event binning against a plain loop."""

import numpy as np
import pytest
import torch

from membra.data import EVENT_DTYPE, events_to_frames
from membra.data.events import make_events


def _random_events(n, H, W, seed=0, t_max=10_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n))
    return make_events(t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n))


def _loop(events, T, H, W, split, Ho=None, Wo=None):
    Ho, Wo = Ho or H, Wo or W
    out = np.zeros((T, 2, Ho, Wo))
    n = len(events)
    t0, t1 = events["t"].min(), events["t"].max()
    for k, e in enumerate(events):
        if split == "count":
            f = int(k * T // n)
        else:
            f = int((int(e["t"]) - t0) * T // (t1 - t0 + 1))
        out[f, e["p"], e["y"] * Ho // H, e["x"] * Wo // W] += 1
    return out


@pytest.mark.parametrize("split", ["count", "time"])
@pytest.mark.parametrize("n, T", [(1000, 16), (7, 3), (5, 8)])
def test_binning_matches_loop(split, n, T):
    ev = _random_events(n, 6, 9)
    frames = events_to_frames(ev, T, (6, 9), split=split)
    assert frames.dtype == torch.float32 and frames.shape == (T, 2, 6, 9)
    assert np.array_equal(frames.numpy(), _loop(ev, T, 6, 9, split))
    assert frames.sum() == n


def test_equal_count_frames_are_balanced():
    frames = events_to_frames(_random_events(1003, 4, 4), 16, (4, 4), split="count")
    per = frames.sum(dim=(1, 2, 3))
    assert per.max() - per.min() <= 1 and per.sum() == 1003


def test_resize_keeps_every_event():
    ev = _random_events(500, 128, 128, seed=1)
    frames = events_to_frames(ev, 4, (128, 128), size=(48, 48))
    assert frames.shape == (4, 2, 48, 48) and frames.sum() == 500
    assert np.array_equal(frames.numpy(), _loop(ev, 4, 128, 128, "count", 48, 48))


def test_unsorted_input_is_sorted_stably():
    ev = _random_events(200, 5, 5, seed=2)
    shuffled = ev[np.random.default_rng(0).permutation(len(ev))]
    a = events_to_frames(ev, 5, (5, 5), split="time")
    b = events_to_frames(shuffled, 5, (5, 5), split="time")
    assert torch.equal(a, b)


def test_empty_and_errors():
    empty = np.zeros(0, dtype=EVENT_DTYPE)
    assert torch.equal(events_to_frames(empty, 3, (2, 2)), torch.zeros(3, 2, 2, 2))
    ev = make_events([0, 1], [0, 5], [0, 0], [0, 1])
    with pytest.raises(ValueError, match="outside the sensor"):
        events_to_frames(ev, 2, (4, 4))
    with pytest.raises(ValueError, match="split='equal'"):
        events_to_frames(ev, 2, (8, 8), split="equal")
    with pytest.raises(ValueError, match="polarities"):
        events_to_frames(make_events([0], [0], [0], [2]), 1, (2, 2))
    with pytest.raises(ValueError, match="T must be"):
        events_to_frames(ev, 0, (8, 8))
