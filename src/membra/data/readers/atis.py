r"""N-MNIST and N-Caltech101 from their original ATIS ``.bin`` files.

**Format** (Orchard et al. 2015): 5 bytes (40 bits) per event, big-endian bit order:
byte 0 = x (8 bits), byte 1 = y (8 bits), bit 7 of byte 2 = polarity (1 = ON), bits 6..0 of
byte 2 + bytes 3 and 4 = timestamp (23 bits, microseconds). An event with ``y = 240`` marks a
timestamp overflow: it is dropped and every later timestamp gets :math:`+2^{13}` (the
original Matlab/Python readers' rule).

**Layouts.** N-MNIST: ``root/Train/<digit>/*.bin`` and ``root/Test/<digit>/*.bin`` (sensor
34x34). N-Caltech101: ``root/<class>/*.bin`` or ``root/Caltech101/<class>/*.bin`` (sensor
taken as 180x240, H x W); it has no official split: per class, files in natural order, the
first ``round(test_fraction * n)`` (default 10%) are ``test``, the rest ``train``. A label
is the index of the class folder's name among the sorted, visible folder names of ``Train/``
(N-MNIST, both splits) or of the root (N-Caltech101).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import require_direct, resolve_T
from ..events import make_events
from ..registry import DatasetInfo, register_dataset
from ..transforms import EventAugment
from ._common import (
    FrameLoader,
    class_dirs,
    class_names,
    corrupt,
    frame_shape,
    labelled_files,
    lazy_dataset,
    require_root,
    shared_classes,
    split_per_class,
)

__all__ = ["read_atis_bin", "encode_atis_bin"]

_OVERFLOW_Y = 240


def read_atis_bin(path) -> np.ndarray:
    """Events of one ATIS ``.bin`` file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing event file {str(path)!r} (ATIS .bin, 5 bytes/event)")
    raw = np.fromfile(path, dtype=np.uint8)
    if len(raw) % 5:
        raise corrupt(path, f"{len(raw)} bytes is not a whole number of 5-byte ATIS events")
    raw = raw.reshape(-1, 5).astype(np.int64)
    x, y = raw[:, 0], raw[:, 1]
    p = raw[:, 2] >> 7
    t = ((raw[:, 2] & 127) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    overflow = y == _OVERFLOW_Y
    t = t + np.cumsum(overflow) * (1 << 13)
    keep = ~overflow
    return make_events(t[keep], x[keep], y[keep], p[keep])


def encode_atis_bin(events: np.ndarray) -> bytes:
    """Bytes of ``events`` in the ATIS ``.bin`` format (timestamps < 2**23, no overflow
    markers): the inverse of :func:`read_atis_bin`, for tests and tools."""
    t = events["t"].astype(np.int64)
    if len(t) and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("ATIS timestamps must lie in [0, 2**23)")
    out = np.empty((len(events), 5), dtype=np.uint8)
    out[:, 0] = events["x"]
    out[:, 1] = events["y"]
    out[:, 2] = (events["p"].astype(np.int64) << 7) | (t >> 16)
    out[:, 3] = (t >> 8) & 255
    out[:, 4] = t & 255
    return out.tobytes()


def _read_file(path):
    return read_atis_bin(path), path


def _build(name, samples, labels, classes, sensor, T, binning, size, augment=None, seed=0,
           skip_bad=False):
    if not samples:
        raise FileNotFoundError(f"{name}: no .bin event files found under the given root")
    info = DatasetInfo(name, frame_shape(T, sensor, binning, size), len(classes), T)
    load = FrameLoader(_read_file, T, sensor, binning, size, augment, seed)
    return lazy_dataset(name, samples, labels, load, info, skip_bad)


@register_dataset("nmnist", builtin=False,
                  description="N-MNIST from its ATIS .bin files (root/Train, root/Test), "
                              "frames [T, 2, 34, 34], 10 classes")
def nmnist(*, split, T, root, seed, encoding, binning: str = "count", size=None,
           skip_bad: bool = False):
    """N-MNIST event frames (default T=10, equal-count binning). Classes are the folder
    names of ``Train/`` (for both splits); ``skip_bad=True`` drops bad files (reported)."""
    require_direct("nmnist", encoding)
    root = require_root(root, "nmnist", "Train/<digit>/*.bin and Test/<digit>/*.bin")
    folder = root / ("Train" if split == "train" else "Test")
    if not folder.is_dir():
        raise FileNotFoundError(f"nmnist: missing folder {str(folder)!r}; expected "
                                f"{'Train' if split == 'train' else 'Test'}/<digit>/*.bin")
    classes, dirs = shared_classes(root / "Train", folder, "nmnist")
    samples, labels = labelled_files(dirs, (".bin",))
    return _build("nmnist", samples, labels, classes, (34, 34), resolve_T(T, 10), binning, size,
                  skip_bad=skip_bad)


@register_dataset("ncaltech101", builtin=False,
                  description="N-Caltech101 from its ATIS .bin files (root/<class>/*.bin), "
                              "frames [T, 2, 180, 240], 90/10 split per class")
def ncaltech101(*, split, T, root, seed, encoding, binning: str = "count", size=None,
                test_fraction: float = 0.1, sensor_size=(180, 240), augment: bool = False,
                skip_bad: bool = False):
    """N-Caltech101 event frames (default T=16, equal-count binning). The recordings have
    no fixed sensor size; ``sensor_size=(180, 240)`` (H, W) is the frame size SpikingJelly
    uses for this set; widen it if a file has events beyond it (reported with the file).
    ``augment=True``: the recipe's flip + one of shear/translate/rotate/cutout
    (:class:`membra.data.transforms.EventAugment`), seeded per item and epoch.
    ``skip_bad=True`` drops bad files (reported)."""
    require_direct("ncaltech101", encoding)
    root = require_root(root, "ncaltech101", "<class>/*.bin (or Caltech101/<class>/*.bin)")
    if (root / "Caltech101").is_dir():
        root = root / "Caltech101"
    classes = class_names(root, "ncaltech101")
    dirs = class_dirs(root, classes, "ncaltech101", repr(str(root)))
    samples, labels = labelled_files(
        dirs, (".bin",), lambda files: split_per_class(files, split, test_fraction))
    return _build("ncaltech101", samples, labels, classes, tuple(sensor_size), resolve_T(T, 16),
                  binning, size, EventAugment() if augment else None, seed, skip_bad)
