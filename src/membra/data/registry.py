"""Dataset registry: names -> builders returning ``torch.utils.data.Dataset`` objects.

Every registered dataset yields ``(x, y)`` with ``x`` float32 ``[T, *S]`` (time first per
sample) and ``y`` an int, and carries ``.info`` (:class:`DatasetInfo`). A DataLoader batch is
therefore ``[B, T, *S]``; a training loop moves time first with ``x.transpose(0, 1)``.

Example::

    from membra.data import get_dataset, list_datasets
    ds = get_dataset("digits", split="train", T=4)
    x, y = ds[0]            # x [4, 64], y int
    ds.info                 # DatasetInfo(name='digits', in_shape=(64,), num_classes=10, T=4)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DatasetInfo", "DatasetEntry", "register_dataset", "list_datasets", "get_dataset",
           "dataset_entries", "SPLITS"]

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset: per-step sample shape ``in_shape``, class
    count and the number of time steps ``T`` of every item."""

    name: str
    in_shape: tuple
    num_classes: int
    T: int


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its builder, a one-line description and whether it needs files
    on the user's disk (``builtin=False``: pass ``root=``)."""

    name: str
    builder: Callable
    description: str
    builtin: bool


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, *, description: str = "", builtin: bool = True):
    """Decorator registering ``builder(*, split, T, root, seed, encoding, **options)`` under
    ``name``. A second registration of the same name is a ``ValueError``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")

    def deco(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is already registered")
        doc = description or (builder.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = DatasetEntry(name, builder, doc, bool(builtin))
        return builder

    return deco


def _ensure_builtins() -> None:
    # Importing the modules registers their datasets (kept lazy so `import membra.data` stays
    # light and the registry can be imported from the builders themselves).
    from . import builtin, readers  # noqa: F401


def list_datasets() -> list[str]:
    """Sorted names of all registered datasets."""
    _ensure_builtins()
    return sorted(_REGISTRY)


def dataset_entries() -> list[DatasetEntry]:
    """All registered datasets with description and built-in flag, sorted by name."""
    _ensure_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_dataset(name: str, *, split: str = "train", T: int | None = None, root=None,
                seed: int = 0, encoding: str = "direct", **options):
    """Build the dataset ``name`` for ``split`` (``"train"`` | ``"test"``).

    Args:
        name: a name from :func:`list_datasets`.
        split: ``"train"`` or ``"test"`` (fixed split per dataset, see ``docs/data.md``).
        T: time steps per item (``None``: the dataset's default).
        root: folder with the user's files (datasets that are not built in); never
            downloaded.
        seed: seed of everything random in the data (encoding noise, augmentation, generated
            events); the same seed gives the same items.
        encoding: for static data, ``"direct"`` (repeat) | ``"rate"`` (Bernoulli) |
            ``"latency"``; event data ignores it.
        **options: dataset-specific options (e.g. ``flatten=False`` for ``digits``).

    Raises:
        ValueError: unknown name (lists the known ones), bad split, T or option.
        FileNotFoundError: missing root or file for a reader.
    """
    _ensure_builtins()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(f"dataset {name!r} is not known{hint} Known datasets: "
                         f"{sorted(_REGISTRY)}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not known; choose one of {list(SPLITS)}")
    if T is not None and (not isinstance(T, int) or isinstance(T, bool) or T < 1):
        raise ValueError(f"T must be a positive int or None, got {T!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    builder = _REGISTRY[name].builder
    known = [p for p in inspect.signature(builder).parameters
             if p not in ("split", "T", "root", "seed", "encoding")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"dataset {name!r} has no option(s) {unknown}; its options are "
                         f"{known}")
    return builder(split=split, T=T, root=root, seed=seed, encoding=encoding, **options)
