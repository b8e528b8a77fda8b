r"""``mnist1d``: the MNIST-1D sequences, generated offline.

A numpy re-implementation of the generator of the ``mnist1d`` package (Greydanus, 2020),
with the same ten 12-point templates and the same transforms, but drawn from a
``numpy.random.Generator(seed)`` instead of the global numpy state (the package also imports
matplotlib and requests and can unpickle a downloaded file; membra needs none of that). Per
sample, in this order:

1. pad the template with ``U{36..60}`` zeros on the right, resample linearly to 72 points;
2. scale by :math:`1 + 0.4(u - 0.5)`; roll right by ``U{0..47}`` points;
3. where the signal is exactly 0, replace it by correlated noise (``0.25 N(0, 1)`` smoothed
   by a Gaussian of sigma 2, reflected borders); add iid noise ``0.02 N(0, 1)``;
4. shear: subtract :math:`0.75(u - 0.5) \cdot \mathrm{linspace}(-0.5, 0.5)`;
5. resample linearly to ``T`` points (default 40, the package's ``final_seq_length``).

``num_samples=5000`` (the package default; 500 per class) are shuffled, standardised by the
global mean and std, and split 80/20: 4000 ``train`` / 1000 ``test``. ``seed`` (default 0)
drives the generation; both splits come from the same generated set. Items are ``[T, 1]``:
one value per step, a memory task.

``mnist1d-static`` holds the same samples as static vectors: the whole ``length``-point signal
(default 40; ``generate_mnist1d(length, seed, num_samples)``) is the input at every one of
the ``T`` steps (direct encoding), items ``[T, length]``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..base import FrameDataset, StaticDataset, require_direct, resolve_T
from ..registry import DatasetInfo, register_dataset

__all__ = ["mnist1d_templates", "generate_mnist1d", "mnist1d_arrays"]


def mnist1d_templates() -> np.ndarray:
    """The ten 12-point templates ``[10, 12]`` (whitened, starting at 0, scaled by 1/6)."""
    x = np.asarray([
        [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
        [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
        [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
        [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
        [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
        [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
        [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
        [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
    ])
    x = x - x.mean(1, keepdims=True)
    x = x / x.std(1, keepdims=True)
    x = x - x[:, :1]
    return x / 6.0


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(x)), x)


def _gaussian_smooth(x: np.ndarray, sigma: float = 2.0, truncate: float = 4.0) -> np.ndarray:
    """1-D Gaussian filter with reflected borders (``scipy.ndimage.gaussian_filter`` with
    ``mode='reflect'``)."""
    r = int(truncate * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    return np.convolve(np.pad(x, r, mode="symmetric"), k, mode="valid")


def _transform(x: np.ndarray, rng: np.random.Generator, T: int) -> np.ndarray:
    pad = 36 + int(rng.random() * (60 - 36 + 1))
    x = _resample(np.concatenate([x + 1e-8, np.zeros(pad)]), 12 + 60)
    x = x * (1 + 0.4 * (rng.random() - 0.5))
    x = np.roll(x, int(rng.integers(48)))
    mask = x != 0
    x = mask * x + (~mask) * _gaussian_smooth(0.25 * rng.standard_normal(len(x)))
    x = x + 0.02 * rng.standard_normal(len(x))
    x = x - 0.75 * (rng.random() - 0.5) * np.linspace(-0.5, 0.5, len(x))
    return _resample(x, T)


@lru_cache(maxsize=4)
def generate_mnist1d(T: int = 40, seed: int = 0, num_samples: int = 5000):
    """``(x [N, T], y [N])`` float32/int64 for all samples, shuffled and standardised; the
    first 80% are the train split."""
    if not isinstance(num_samples, int) or num_samples < 10:
        raise ValueError(f"num_samples must be an int >= 10, got {num_samples!r}")
    rng = np.random.default_rng(seed)
    templates = mnist1d_templates()
    per_class = num_samples // 10
    xs = np.stack([_transform(templates[c], rng, T) for c in range(10) for _ in range(per_class)])
    ys = np.repeat(np.arange(10), per_class)
    perm = rng.permutation(len(ys))
    xs, ys = xs[perm], ys[perm]
    xs = (xs - xs.mean()) / xs.std()
    return torch.as_tensor(xs, dtype=torch.float32), torch.as_tensor(ys, dtype=torch.long)


def mnist1d_arrays(split: str, length: int = 40, seed: int = 0,
                   num_samples: int = 5000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [N, length], y [N])`` of ``split``: the first 80 % of :func:`generate_mnist1d`'s
    samples are ``train``, the rest ``test``."""
    x, y = generate_mnist1d(length, seed, num_samples)
    n_train = int(len(y) * 0.8)
    sl = slice(0, n_train) if split == "train" else slice(n_train, None)
    return x[sl], y[sl]


@register_dataset("mnist1d", description="MNIST-1D sequences [T=40, 1] generated offline "
                                         "(4000/1000 split), one value per step, 10 classes")
def mnist1d(*, split, T, root, seed, encoding, num_samples: int = 5000):
    """MNIST-1D: 1-D digit sequences, one value per time step (default T=40)."""
    require_direct("mnist1d", encoding)
    T = resolve_T(T, 40)
    x, y = mnist1d_arrays(split, T, seed, num_samples)
    return FrameDataset(x.unsqueeze(-1), y, DatasetInfo("mnist1d", (1,), 10, T))


@register_dataset("mnist1d-static", description="MNIST-1D as static 40-vectors [T, 40] "
                                                "(the same samples as mnist1d, direct "
                                                "encoding), 10 classes")
def mnist1d_static(*, split, T, root, seed, encoding, length: int = 40,
                   num_samples: int = 5000):
    """MNIST-1D: the whole ``length``-point signal (default 40) at every step (default T=4)."""
    if encoding != "direct":
        raise ValueError(f"dataset 'mnist1d-static' holds standardised signals (values below "
                         f"0 and above 1); encoding must be 'direct', got {encoding!r}")
    if not isinstance(length, int) or isinstance(length, bool) or length < 2:
        raise ValueError(f"mnist1d-static: length must be an int >= 2, got {length!r}")
    T = resolve_T(T, 4)
    x, y = mnist1d_arrays(split, length, seed, num_samples)
    info = DatasetInfo("mnist1d-static", (length,), 10, T)
    return StaticDataset(x, y, info, encoding="direct", seed=seed)
