"""Built-in datasets: digits, digits-dvs, mnist1d."""

import math

import numpy as np
import pytest
import torch

from membra.data import get_dataset
from membra.data.builtin.digits_dvs import generate_digits_dvs
from membra.data.builtin.mnist1d import _gaussian_smooth, generate_mnist1d
from membra.data.events import render_shifted, saccade_path

sklearn = pytest.importorskip("sklearn")


# ---- digits ------------------------------------------------------------------------------
def test_digits_split_sizes_and_pixels():
    from sklearn.datasets import load_digits

    d = load_digits()
    tr, te = get_dataset("digits", split="train"), get_dataset("digits", split="test")
    assert (len(tr), len(te)) == (1200, 597)
    assert tr.info.in_shape == (64,) and tr.info.T == 4 and tr.info.num_classes == 10
    perm = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    x = torch.cat([tr.data, te.data])
    y = torch.cat([tr.labels, te.labels])
    ref = torch.as_tensor(d.data, dtype=torch.float32)[perm] / 16
    assert torch.equal(x, ref)
    assert torch.equal(y, torch.as_tensor(d.target)[perm])
    # every image exactly once across the two splits
    assert sorted(perm.tolist()) == list(range(1797))


def test_digits_direct_encoding_and_unflattened_shape():
    ds = get_dataset("digits", split="test", T=5, flatten=False)
    x, y = ds[3]
    assert ds.info.in_shape == (1, 8, 8) and x.shape == (5, 1, 8, 8)
    for t in range(5):
        assert torch.equal(x[t, 0], ds.data[3, 0])


def test_digits_rate_encoding_seeded():
    a = get_dataset("digits", encoding="rate", T=6, seed=0)
    b = get_dataset("digits", encoding="rate", T=6, seed=0)
    c = get_dataset("digits", encoding="rate", T=6, seed=1)
    xa, xb, xc = a[7][0], b[7][0], c[7][0]
    assert set(xa.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)
    assert torch.all(xa[:, a.data[7] == 0] == 0)  # zero pixels never spike
    a.set_epoch(1)
    assert not torch.equal(a[7][0], xb)


# ---- digits-dvs --------------------------------------------------------------------------
def test_render_matches_grid_sample():
    img = torch.rand(4, 8, 8)
    off = torch.tensor([[0.3, -0.7], [1.0, 0.5], [-1.2, 0.0], [0.0, 0.0]])
    size, m = 16, 2
    u = torch.arange(size) + 0.5
    gx = ((u.view(1, -1) - off[:, :1] - m) / (size - 2 * m)) * 2 - 1
    gy = ((u.view(1, -1) - off[:, 1:] - m) / (size - 2 * m)) * 2 - 1
    grid = torch.stack([gx.unsqueeze(1).expand(4, size, size),
                        gy.unsqueeze(2).expand(4, size, size)], -1)
    ref = torch.nn.functional.grid_sample(img.unsqueeze(1), grid, align_corners=False)[:, 0]
    assert torch.allclose(render_shifted(img, off, size, m), ref, atol=1e-6)


def test_digits_dvs_events_match_plain_loop():
    """Noise-free events equal a per-pixel loop of the log-intensity change detector."""
    steps, T, thr = 12, 3, 0.25
    frames, labels = generate_digits_dvs.__wrapped__("test", T, 0, 16, steps, thr, 0.0, 0.0, 0.0)
    from membra.data.builtin.digits import digits_arrays

    imgs = digits_arrays("test")[0][:2]
    path = saccade_path(steps, 2.0, 0.0, 2, torch.Generator().manual_seed(0))
    logs = [torch.log(render_shifted(imgs, path[k], 16, 2) + 0.1).double() for k in range(steps)]
    ref = np.zeros((2, T, 2, 16, 16))
    for n in range(2):
        for i in range(16):
            for j in range(16):
                level = logs[0][n, i, j].item()
                for k in range(1, steps):
                    f = k * T // steps
                    while logs[k][n, i, j].item() - level >= thr - 1e-6:
                        ref[n, f, 1, i, j] += 1
                        level += thr
                    while level - logs[k][n, i, j].item() >= thr - 1e-6:
                        ref[n, f, 0, i, j] += 1
                        level -= thr
    assert ref.sum() > 50
    assert np.array_equal(frames[:2].numpy(), ref)


def test_digits_dvs_deterministic_per_seed_and_differs_across_seeds():
    ds0 = get_dataset("digits-dvs", split="test", T=4, seed=3)
    fresh, labels = generate_digits_dvs.__wrapped__("test", 4, 3)   # bypass the cache
    other = get_dataset("digits-dvs", split="test", T=4, seed=4)
    assert torch.equal(ds0.frames, fresh)
    assert not torch.equal(ds0.frames, other.frames)
    assert torch.equal(ds0.labels, other.labels)  # same digits, same split
    assert len(ds0) == 597 and len(get_dataset("digits-dvs", T=4, seed=3)) == 1200
    x, _ = ds0[0]
    assert x.shape == (4, 2, 16, 16) and ds0.info.in_shape == (2, 16, 16)
    per_frame = ds0.frames.float().sum(dim=(2, 3, 4)).mean(0)
    assert torch.all(per_frame > 20)  # every frame sees the digit move
    on, off = ds0.frames[:, :, 1].sum(), ds0.frames[:, :, 0].sum()
    assert 0.5 < on / off < 2  # a closed path makes roughly as many ON as OFF events


def test_digits_dvs_options():
    ds = get_dataset("digits-dvs", split="test", T=2, size=24)
    assert ds[0][0].shape == (2, 2, 24, 24)
    with pytest.raises(ValueError, match="size must be an int >= 8"):
        get_dataset("digits-dvs", size=4)


# ---- mnist1d -----------------------------------------------------------------------------
def test_mnist1d_splits_and_statistics():
    tr, te = get_dataset("mnist1d", split="train"), get_dataset("mnist1d", split="test")
    assert (len(tr), len(te)) == (4000, 1000)
    assert tr.info.in_shape == (1,) and tr.info.T == 40
    x = torch.cat([tr.frames, te.frames])
    assert math.isclose(x.mean().item(), 0.0, abs_tol=1e-4)
    assert math.isclose(x.std(unbiased=False).item(), 1.0, rel_tol=1e-4)
    counts = torch.bincount(torch.cat([tr.labels, te.labels]))
    assert counts.tolist() == [500] * 10


def test_mnist1d_seeded():
    a, _ = generate_mnist1d.__wrapped__(40, 0, 200)
    b, _ = generate_mnist1d.__wrapped__(40, 0, 200)
    c, _ = generate_mnist1d.__wrapped__(40, 1, 200)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert get_dataset("mnist1d", split="test", T=20)[0][0].shape == (20, 1)


def test_gaussian_smooth_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).standard_normal(72)
    assert np.allclose(_gaussian_smooth(x), ndimage.gaussian_filter(x, 2), atol=1e-12)
