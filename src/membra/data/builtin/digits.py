"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, offline).

Pixels are divided by 16 (values in ``[0, 1]``). A fixed permutation
(``torch.randperm(1797, generator=torch.Generator().manual_seed(0))``) puts the first 1200
images in ``train`` and the other 597 in ``test``, whatever ``seed`` is; ``seed`` only drives
the ``rate`` encoding. Items are ``[T, 64]`` (``flatten=True``, default) or ``[T, 1, 8, 8]``.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..base import StaticDataset, check_encoding, resolve_T
from ..registry import DatasetInfo, register_dataset

__all__ = ["digits_arrays", "N_TRAIN", "N_TEST"]

N_TRAIN, N_TEST = 1200, 597


@lru_cache(maxsize=1)
def _all_digits() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the digits datasets need scikit-learn: pip install "
                          "'membra[data]'") from e
    d = load_digits()
    x = torch.as_tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return x[perm].contiguous(), y[perm].contiguous()


def digits_arrays(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, 8, 8]`` in ``[0, 1]`` and labels ``[N]`` of the fixed ``split``."""
    x, y = _all_digits()
    sl = slice(0, N_TRAIN) if split == "train" else slice(N_TRAIN, N_TRAIN + N_TEST)
    return x[sl].view(-1, 8, 8), y[sl]


@register_dataset("digits", description="scikit-learn 8x8 digits, 1200/597 split, static "
                                        "(direct|rate|latency encoding), 10 classes")
def digits(*, split, T, root, seed, encoding, flatten: bool = True):
    """scikit-learn 8x8 digits, static images encoded over T steps (default T=4)."""
    check_encoding(encoding)
    T = resolve_T(T, 4)
    x, y = digits_arrays(split)
    x = x.reshape(len(x), 64) if flatten else x.unsqueeze(1)
    info = DatasetInfo("digits", tuple(x.shape[1:]), 10, T)
    return StaticDataset(x, y, info, encoding=encoding, seed=seed)
