"""Shared helpers of the readers: root checks, hidden entries, class folders, natural
sorting, per-class splits, bad-file errors and ``skip_bad``."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

__all__ = ["BadFileError", "FrameLoader", "frame_shape", "require_root", "require_file",
           "natural_key", "is_hidden", "visible_files", "class_names", "class_dirs",
           "shared_classes", "labelled_files", "split_per_class", "corrupt", "bad_file",
           "report_skipped", "check_skip_bad", "skip_bad_samples", "lazy_dataset"]


class BadFileError(ValueError):
    """A file a reader cannot turn into correct data (empty, truncated, corrupt, too large,
    pixel values outside their range); ``path`` is the file, ``reason`` what is wrong (made
    by :func:`bad_file`). Readers built with ``skip_bad=True`` drop such samples (and list
    them in ``dataset.skipped``) instead of raising. Built from the message alone (as a
    DataLoader worker's error is re-raised), ``path`` is ``None``."""

    def __init__(self, message: str, path=None, reason: str = ""):
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.reason = reason

    def __reduce__(self):
        return type(self), (str(self), self.path, self.reason)


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


def bad_file(path, what: str) -> BadFileError:
    """The error for a file whose content cannot be decoded correctly: ``'<path>' <what>``."""
    return BadFileError(f"{str(path)!r} {what}", path, what)


def corrupt(path, what: str) -> BadFileError:
    """The error for a truncated or malformed file."""
    return bad_file(path, f"is truncated or corrupt: {what}")


def natural_key(path: Path):
    """Sort key comparing digit runs as numbers (``img_2`` before ``img_10``)."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path.name)]


def is_hidden(path: Path) -> bool:
    """Entries named ``.*`` or ``__*`` (``.ipynb_checkpoints``, ``.DS_Store``, macOS ``._x``
    twins, ``__MACOSX``) are tool debris, never classes or samples."""
    return path.name.startswith((".", "__"))


def visible_files(folder: Path, suffixes) -> list[Path]:
    """Files of ``folder`` (not hidden) whose lower-cased suffix is in ``suffixes``, in
    natural order."""
    return sorted((p for p in folder.iterdir() if not is_hidden(p) and p.is_file()
                   and p.suffix.lower() in suffixes), key=natural_key)


def class_names(folder: Path, name: str) -> list[str]:
    """The class list: names of the sub-folders of ``folder`` that are not hidden, sorted
    (plain string order, as torchvision's ``ImageFolder``); at least one."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not is_hidden(p))
    if not classes:
        raise FileNotFoundError(f"{name}: no class folders in {str(folder)!r}; expected one "
                                "sub-folder per class")
    return classes


def class_dirs(folder: Path, classes, name: str, source: str) -> list[tuple[int, Path]]:
    """``(label, folder/<class>)`` for every visible sub-folder of ``folder``, with label =
    ``classes.index(its name)``: the label comes from the name, never from the position in
    ``folder``. A sub-folder whose name is not in ``classes`` (taken from ``source``) is a
    ``ValueError`` naming it."""
    index = {c: k for k, c in enumerate(classes)}
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not is_hidden(p))
    unknown = [c for c in found if c not in index]
    if unknown:
        raise ValueError(f"{name}: class folder(s) {unknown} in {str(folder)!r} are not among "
                         f"the classes of {source} {list(classes)}; labels come from the "
                         "class folder names, so every class must exist there")
    return [(index[c], folder / c) for c in found]


def shared_classes(train_dir: Path, folder: Path, name: str):
    """``(classes, [(label, class folder)])`` of the split ``folder`` for a layout with one
    folder per split: the class list is that of ``train_dir`` (:func:`class_names`), shared
    by every split, so a class missing from ``folder`` or a hidden entry shifts no label."""
    if not train_dir.is_dir():
        raise FileNotFoundError(f"{name}: missing folder {str(train_dir)!r}; its class "
                                "folder names are the class list of every split")
    classes = class_names(train_dir, name)
    return classes, class_dirs(folder, classes, name, repr(str(train_dir)))


def labelled_files(dirs, suffixes, pick=None) -> tuple[list[Path], list[int]]:
    """``(files, labels)`` of ``[(label, class folder)]``: each folder's visible files with
    a suffix in ``suffixes`` in natural order, through ``pick(files)`` when given (e.g. a
    per-class split)."""
    files, labels = [], []
    for label, d in dirs:
        found = visible_files(d, suffixes)
        found = pick(found) if pick is not None else found
        files += found
        labels += [label] * len(found)
    return files, labels


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

    def frames(self, sample):
        """Frames of ``sample`` before augmentation; a file without events (it would give
        an all-zero sample) or with an event outside the sensor is a :class:`BadFileError`."""
        from ..events import events_to_frames

        events, path = self.read(sample)
        if len(events) == 0:
            raise corrupt(path, "it holds no events (it would give an all-zero sample)")
        try:
            return events_to_frames(events, self.T, self.sensor, split=self.binning,
                                    size=self.size)
        except ValueError as e:
            raise corrupt(path, str(e)) from None

    def __call__(self, sample, index: int, epoch: int):
        frames = self.frames(sample)
        if self.augment is not None:
            from ..base import item_generator

            frames = self.augment(frames, item_generator(self.seed, index, epoch))
        return frames


def report_skipped(name: str, skipped: list, total: int, unit: str = "samples") -> tuple:
    """Warn once that ``len(skipped)`` of ``total`` ``unit`` were bad files (the count and the
    first three paths) and return ``skipped`` as the dataset's ``skipped`` tuple of
    ``(path, reason)``; all of them bad is a ``ValueError``."""
    if not skipped:
        return ()
    first = ", ".join(repr(p) for p, _ in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    if len(skipped) == total:
        raise ValueError(f"{name}: all {total} {unit} are bad files (first: {first}; "
                         f"{skipped[0][1]})")
    warnings.warn(f"{name}: skipped {len(skipped)} of {total} {unit} with bad files "
                  f"(skip_bad=True): {first}; dataset.skipped lists each path and reason",
                  stacklevel=3)
    return tuple(skipped)


def check_skip_bad(skip_bad) -> bool:
    if not isinstance(skip_bad, bool):
        raise ValueError(f"skip_bad must be True or False, got {skip_bad!r}")
    return skip_bad


def skip_bad_samples(name: str, samples: list, labels: list, check, skip_bad: bool):
    """``(samples, labels, skipped)``: with ``skip_bad``, every sample is decoded once by
    ``check(sample)`` and those raising :class:`BadFileError` are dropped and reported
    (:func:`report_skipped`); without it, nothing is read here and a bad file raises when
    its item is loaded."""
    if not check_skip_bad(skip_bad):
        return samples, labels, ()
    keep, skipped = [], []
    for k, sample in enumerate(samples):
        try:
            check(sample)
        except BadFileError as e:
            skipped.append((str(e.path), e.reason))
        else:
            keep.append(k)
    skipped = report_skipped(name, skipped, len(samples))
    return [samples[k] for k in keep], [labels[k] for k in keep], skipped


def lazy_dataset(name: str, samples: list, labels: list, load: FrameLoader, info,
                 skip_bad: bool):
    """The :class:`~membra.data.base.LazyDataset` of an event reader, bad files dropped
    first when ``skip_bad`` (:func:`skip_bad_samples`), ``skipped`` set."""
    from ..base import LazyDataset

    samples, labels, skipped = skip_bad_samples(name, samples, labels, load.frames, skip_bad)
    ds = LazyDataset(samples, labels, load, info)
    ds.skipped = skipped
    return ds
