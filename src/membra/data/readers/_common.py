"""Shared helpers of the readers: root checks, natural sorting, per-class splits, errors."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["FrameLoader", "frame_shape", "require_root", "require_file", "natural_key",
           "class_folders", "split_per_class", "corrupt"]


def require_root(root, name: str, expected: str) -> Path:
    """``root`` as a Path; ``FileNotFoundError`` naming it and the expected layout when it is
    missing or not a folder."""
    if root is None:
        raise ValueError(f"dataset {name!r} reads your local files: pass root= the folder "
                         f"holding {expected} (nothing is downloaded)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{name}: root {str(path)!r} does not exist or is not a "
                                f"folder; expected a folder holding {expected}")
    return path


def require_file(path: Path, name: str, expected: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{name}: missing file {str(path)!r} ({expected})")
    return path


def corrupt(path, what: str) -> ValueError:
    """The error for a truncated or malformed file."""
    return ValueError(f"{str(path)!r} is truncated or corrupt: {what}")


def natural_key(path: Path):
    """Sort key comparing digit runs as numbers (``img_2`` before ``img_10``)."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path.name)]


def class_folders(folder: Path, name: str) -> list[Path]:
    """Sorted class sub-folders of ``folder`` (at least one)."""
    classes = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)
    if not classes:
        raise FileNotFoundError(f"{name}: no class folders in {str(folder)!r}; expected one "
                                "sub-folder per class")
    return classes


def split_per_class(files: list[Path], split: str, test_fraction: float) -> list[Path]:
    """Per-class split of naturally sorted ``files``: the first ``round(test_fraction * n)``
    are ``test``, the rest ``train``."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    files = sorted(files, key=natural_key)
    n_test = round(test_fraction * len(files))
    return files[:n_test] if split == "test" else files[n_test:]


def frame_shape(T: int, sensor, binning: str, size) -> tuple[int, ...]:
    """Per-step shape ``(2, H', W')`` of binned frames; checks ``T``, ``binning``, ``size``."""
    from ..events import events_to_frames, make_events

    empty = make_events([], [], [], [])
    return tuple(events_to_frames(empty, T, sensor, split=binning, size=size).shape[1:])


class FrameLoader:
    """Picklable ``load(sample, index, epoch) -> frames [T, 2, H', W']`` for the event
    readers: ``read(sample) -> (events, path)`` decodes, :func:`events_to_frames` bins; a
    coordinate outside the sensor is reported as a corrupt file naming the path. With
    ``augment`` (e.g. :class:`membra.data.transforms.EventAugment`), the frames go through
    ``augment(frames, item_generator(seed, index, epoch))``."""

    def __init__(self, read, T: int, sensor, binning: str, size, augment=None,
                 seed: int = 0):
        self.read, self.T, self.sensor, self.binning, self.size = read, T, sensor, binning, size
        self.augment, self.seed = augment, seed

    def __call__(self, sample, index: int, epoch: int):
        from ..events import events_to_frames

        events, path = self.read(sample)
        try:
            frames = events_to_frames(events, self.T, self.sensor, split=self.binning,
                                      size=self.size)
        except ValueError as e:
            raise corrupt(path, str(e)) from None
        if self.augment is not None:
            from ..base import item_generator

            frames = self.augment(frames, item_generator(self.seed, index, epoch))
        return frames
