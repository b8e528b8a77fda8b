"""Dataset classes shared by the built-in datasets and the readers.

- :class:`StaticDataset`: static samples ``[N, *S]`` encoded to ``[T, *S]`` per item
  (``direct`` | ``rate`` | ``latency``, see :mod:`membra.functional.encoding`).
- :class:`FrameDataset`: ready frames ``[N, T, *S]`` (event data binned in advance).
- :class:`LazyDataset`: one loader call per item (files read on demand).

Randomness per item (rate encoding, augmentation) comes from :func:`item_generator`, seeded
by ``(seed, epoch, index)``: the same on every run and in every DataLoader worker, different
per epoch once the training loop calls ``dataset.set_epoch(epoch)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
from torch.utils.data import Dataset

from ..functional.encoding import ENCODERS, encode
from .registry import DatasetInfo

__all__ = ["item_generator", "single_thread", "check_encoding", "require_direct", "resolve_T",
           "StaticDataset", "FrameDataset", "LazyDataset"]

_MIX = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D)


def item_generator(seed: int, index: int, epoch: int = 0) -> torch.Generator:
    """A CPU generator seeded by ``(seed, epoch, index)`` (a fixed integer mix)."""
    s = (seed * _MIX[0] + (epoch + 1) * _MIX[1] + (index + 1) * _MIX[2]) % (2**63 - 1)
    return torch.Generator().manual_seed(s)


@contextmanager
def single_thread():
    """Run small-tensor generation code on one intra-op thread (restored afterwards): on
    shared or busy CPUs, thread hand-offs on tiny tensors cost far more than the work."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def check_encoding(encoding: str) -> str:
    if encoding not in ENCODERS:
        raise ValueError(f"encoding={encoding!r} is not known; choose one of {sorted(ENCODERS)}")
    return encoding


def require_direct(name: str, encoding: str) -> None:
    """Event and sequence datasets are already time series: only ``encoding="direct"``."""
    if encoding != "direct":
        raise ValueError(f"dataset {name!r} yields sequences already; encoding must be "
                         f"'direct', got {encoding!r}")


def resolve_T(T: int | None, default: int) -> int:
    return default if T is None else T


class _Base(Dataset):
    info: DatasetInfo
    epoch: int = 0
    #: ``(path, reason)`` of each bad file a reader left out with ``skip_bad=True``
    skipped: tuple = ()

    def set_epoch(self, epoch: int) -> None:
        """Change the per-item randomness (rate encoding, augmentation) for a new epoch."""
        self.epoch = int(epoch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info}, n={len(self)})"


class StaticDataset(_Base):
    """Static samples encoded to ``[T, *S]`` on access.

    Args:
        data: tensor ``[N, *S]`` (``rate``/``latency`` need values in ``[0, 1]`` after
            ``transform``), or any sequence a subclass's :meth:`static_item` reads.
        labels: int tensor ``[N]``.
        info: the dataset's :class:`DatasetInfo` (``info.T`` steps).
        encoding: ``"direct"`` | ``"rate"`` | ``"latency"``.
        seed: seed of the rate encoding / augmentation.
        transform: optional ``transform(x [*S], generator) -> x`` applied before encoding
            (augmentation).
    """

    def __init__(self, data: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, *,
                 encoding: str = "direct", seed: int = 0,
                 transform: Callable | None = None):
        check_encoding(encoding)
        if len(data) != len(labels):
            raise ValueError(f"{len(data)} samples but {len(labels)} labels")
        self.data = data
        self.labels = labels.long()
        self.info = info
        self.encoding = encoding
        self.seed = seed
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def static_item(self, index: int) -> torch.Tensor:
        """The static sample before transform and encoding (subclasses may load it)."""
        return self.data[index]

    def __getitem__(self, index: int):
        x = self.static_item(index)
        gen = None
        if self.transform is not None or self.encoding == "rate":
            gen = item_generator(self.seed, int(index), self.epoch)
        if self.transform is not None:
            x = self.transform(x, gen)
        x = encode(x.unsqueeze(0), self.info.T, self.encoding, generator=gen)[:, 0]
        return x.float(), int(self.labels[index])


class FrameDataset(_Base):
    """Ready sequences: ``frames [N, T, *S]`` (any dtype, returned as float32)."""

    def __init__(self, frames: torch.Tensor, labels: torch.Tensor, info: DatasetInfo):
        if len(frames) != len(labels):
            raise ValueError(f"{len(frames)} samples but {len(labels)} labels")
        self.frames = frames
        self.labels = labels.long()
        self.info = info

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.frames[index].float(), int(self.labels[index])


class LazyDataset(_Base):
    """Items loaded on demand: ``load(sample, index, epoch) -> x [T, *S]`` for each entry of
    ``samples`` (e.g. file paths), with ``labels[i]`` its class."""

    def __init__(self, samples: Sequence, labels: Sequence[int], load: Callable,
                 info: DatasetInfo):
        if len(samples) != len(labels):
            raise ValueError(f"{len(samples)} samples but {len(labels)} labels")
        self.samples = list(samples)
        self.labels = [int(v) for v in labels]
        self.load = load
        self.info = info

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        x = self.load(self.samples[index], index, self.epoch)
        return x.float(), self.labels[index]
