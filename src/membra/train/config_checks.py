"""Checks of a run config that need the registries, the disk or the process count, and the
message of a run that does not fit in memory."""

from __future__ import annotations

import re
from pathlib import Path

from .config_schema import RunConfig


def check_batch_split(cfg: RunConfig, world_size: int) -> None:
    """``data.batch_size`` and ``data.eval_batch_size`` are global batches: each must split
    evenly over ``world_size`` processes (``batch % world_size == 0``)."""
    for key in ("batch_size", "eval_batch_size"):
        bs = getattr(cfg.data, key)
        if bs % world_size:
            near = sorted({max(world_size, bs - bs % world_size), bs - bs % world_size +
                           world_size})
            raise ValueError(f"data.{key}={bs} must be divisible by the {world_size} "
                             f"processes (it is the global batch); e.g. "
                             f"{' or '.join(map(str, near))}")


def check_runnable(cfg: RunConfig, world_size: int = 1) -> None:
    """What can be checked before any process starts: ``data.name`` and ``model.name`` are
    registered, a dataset read from disk has ``data.root`` naming an existing folder, and the
    batches split over ``world_size`` processes."""
    from ..data import dataset_entries
    from ..models import list_models

    entries = {e.name: e for e in dataset_entries()}
    for key, name, known, verb in (("data.name", cfg.data.name, sorted(entries), "datasets"),
                                   ("model.name", cfg.model.name, list_models(), "models")):
        if name not in known:
            raise ValueError(f"{key}={name!r} is not known; choose one of {known} (`membra "
                             f"{verb}` lists them)")
    if not entries[cfg.data.name].builtin:
        root = cfg.data.root
        if root is None:
            raise ValueError(f"data.root is not set: dataset {cfg.data.name!r} reads your "
                             "local files; set data.root to their folder (nothing is "
                             "downloaded)")
        if not Path(root).expanduser().is_dir():
            raise FileNotFoundError(f"data.root={root!r} does not exist or is not a folder "
                                    f"(dataset {cfg.data.name!r} reads its files from there)")
    check_batch_split(cfg, world_size)


_OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory|cannot allocate memory",
                            re.IGNORECASE)


def _bytes(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps the number >= 1 (``47.7 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.4g} {unit}"
        n /= 1024
    return f"{n:.4g} TiB"


def memory_error(cfg: RunConfig, err: BaseException) -> MemoryError | None:
    """A ``MemoryError`` naming the keys that size a run's memory when ``err`` is a failed
    allocation (``MemoryError``, torch's CPU allocator or CUDA out of memory), else ``None``."""
    text = str(err)
    if not isinstance(err, MemoryError) and not (isinstance(err, RuntimeError)
                                                 and _OUT_OF_MEMORY.search(text)):
        return None
    m = re.search(r"allocate (\d+) bytes", text)
    size = (_bytes(int(m.group(1))) if m else
            (re.search(r"allocate ([\d.]+ [KMGT]i?B)", text) or [None, None])[1])
    d, mo = cfg.data, cfg.model
    return MemoryError(
        "the run does not fit in memory" + (f" (an allocation of {size} failed)" if size else "")
        + f": memory grows with data.T={d.T}, data.batch_size={d.batch_size}, "
        f"data.eval_batch_size={d.eval_batch_size} and the model (model.name={mo.name!r}, "
        f"model.options={mo.options!r}); lower one of them")


