"""CIFAR-10 from its binary version (``cifar-10-batches-bin``), never unpickled.

Files ``data_batch_1.bin`` ... ``data_batch_5.bin`` (train) and ``test_batch.bin`` (test) in
``root`` or ``root/cifar-10-batches-bin``; each is a sequence of 3073-byte records: 1 label
byte (0..9), then 1024 red, 1024 green, 1024 blue bytes (row-major 32x32). The official
files hold exactly 10000 records each, so a file cut even at a record boundary is caught by
its size (``records_per_file``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..base import StaticDataset, check_encoding, resolve_T
from ..registry import DatasetInfo, register_dataset
from ..transforms import CIFAR10_MEAN, CIFAR10_STD, ImageTransform
from ._common import (
    BadFileError,
    check_skip_bad,
    corrupt,
    report_skipped,
    require_file,
    require_root,
)

__all__ = ["read_cifar10_bin", "encode_cifar10_bin", "CIFAR10_FILES", "CIFAR10_RECORDS"]

RECORD = 3073
CIFAR10_RECORDS = 10000   # records in each official file
CIFAR10_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)],
                 "test": ["test_batch.bin"]}


def read_cifar10_bin(path, records: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 3, 32, 32]`` uint8 and labels ``[N]`` of one CIFAR-10 ``.bin`` file;
    with ``records``, a file of any other record count is a :class:`BadFileError`."""
    path = Path(path)
    require_file(path, "cifar10", "CIFAR-10 binary version, 3073-byte records")
    raw = np.fromfile(path, dtype=np.uint8)
    if len(raw) == 0 or len(raw) % RECORD:
        raise corrupt(path, f"{len(raw)} bytes is not a whole, non-zero number of 3073-byte "
                            "records (1 label byte + 3072 pixel bytes)")
    if records is not None and len(raw) != records * RECORD:
        raise corrupt(path, f"it holds {len(raw) // RECORD} records of 3073 bytes, expected "
                            f"{records} (the official files hold {CIFAR10_RECORDS} each; "
                            "records_per_file=0 reads any whole number of records)")
    raw = raw.reshape(-1, RECORD)
    labels = raw[:, 0]
    if labels.max() > 9:
        raise corrupt(path, f"label byte {int(labels.max())} outside 0..9")
    return raw[:, 1:].reshape(-1, 3, 32, 32), labels


def encode_cifar10_bin(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Bytes of a CIFAR-10 ``.bin`` file (inverse of :func:`read_cifar10_bin`)."""
    images = np.asarray(images, dtype=np.uint8).reshape(len(images), 3072)
    return np.concatenate([np.asarray(labels, dtype=np.uint8)[:, None], images], 1).tobytes()


@register_dataset("cifar10", builtin=False,
                  description="CIFAR-10 from the binary version (*.bin files, never pickle), "
                              "[T, 3, 32, 32], 10 classes")
def cifar10(*, split, T, root, seed, encoding, augment: bool = False, normalize: bool = True,
            records_per_file: int | None = CIFAR10_RECORDS, skip_bad: bool = False):
    """CIFAR-10 images encoded over T steps (default T=4). ``augment``: random crop (pad 4)
    + horizontal flip, seeded per item and epoch; ``normalize``: CIFAR-10 mean/std (not with
    ``rate``/``latency`` encodings, which need values in [0, 1]); ``records_per_file``: the
    record count every file must hold (``0`` or ``None``: any); ``skip_bad=True`` leaves out
    a bad file (reported) instead of raising."""
    check_encoding(encoding)
    if records_per_file is not None and (not isinstance(records_per_file, int)
                                         or isinstance(records_per_file, bool)
                                         or records_per_file < 0):
        raise ValueError(f"records_per_file must be an int >= 0 or None (0 or None: any "
                         f"whole number of records), got {records_per_file!r}")
    check_skip_bad(skip_bad)
    if normalize and encoding != "direct":
        raise ValueError(f"encoding={encoding!r} needs pixel values in [0, 1]: use "
                         "normalize=False with it")
    root = require_root(root, "cifar10", "data_batch_1.bin ... data_batch_5.bin and "
                                         "test_batch.bin (CIFAR-10 binary version)")
    if not (root / "test_batch.bin").exists() and (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    for f in CIFAR10_FILES[split]:   # all present before reading any
        require_file(root / f, "cifar10", "CIFAR-10 binary version, 3073-byte records")
    parts, skipped = [], []
    for f in CIFAR10_FILES[split]:
        try:
            parts.append(read_cifar10_bin(root / f, records_per_file or None))
        except BadFileError as e:
            if not skip_bad:
                raise
            skipped.append((str(e.path), e.reason))
    skipped = report_skipped("cifar10", skipped, len(CIFAR10_FILES[split]), "files")
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]).astype(np.int64))
    tf = ImageTransform(augment, 4, *((CIFAR10_MEAN, CIFAR10_STD) if normalize else (None, None)))
    info = DatasetInfo("cifar10", (3, 32, 32), 10, resolve_T(T, 4))
    ds = StaticDataset(images, labels, info, encoding=encoding, seed=seed, transform=tf)
    ds.skipped = skipped
    return ds
