"""Where checkpoints live: the ``checkpoints/latest`` pointer of a run folder, which must
name a checkpoint file in the same folder, and the run folder that owns a checkpoint.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .checkpoint_file import _short, atomic_write_bytes

LATEST = "latest"
_LATEST_MAX = 256  # bytes of a `latest` pointer
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.safetensors")


def has_checkpoints(folder) -> bool:
    """Whether ``folder`` holds a checkpoint file (``*.safetensors``, temp files excluded)."""
    folder = Path(folder)
    return folder.is_dir() and any(p.suffix == ".safetensors" and not p.name.startswith(".")
                                   for p in folder.iterdir())


# ---- latest pointer and run folders --------------------------------------------------------
def write_latest(ckpt_dir, name: str) -> None:
    """Point ``<ckpt_dir>/latest`` at the checkpoint file ``name`` (atomic)."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"latest must name a checkpoint file, got {name!r}")
    atomic_write_bytes(Path(ckpt_dir) / LATEST, (name + "\n").encode())


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` resolves (symlinks followed) to an entry directly in ``folder``."""
    return Path(os.path.realpath(path)).parent == Path(os.path.realpath(folder))


def _follow_latest(d: Path) -> Path:
    """The checkpoint named by ``d/latest``: a bare ``*.safetensors`` file name whose file
    (symlinks followed) lies in ``d`` itself; anything else is a ``ValueError``."""
    pointer = d / LATEST
    if pointer.is_symlink() or not pointer.is_file():
        kind = "a symbolic link" if pointer.is_symlink() else "a folder or special file"
        raise ValueError(f"{d.name}/{LATEST} ({str(pointer)!r}) must be a plain file naming a "
                         f"checkpoint in the same folder; it is {kind}")
    with open(pointer, "rb") as fh:
        raw = fh.read(_LATEST_MAX + 1)
    name = raw.decode("ascii", "replace").strip()
    if len(raw) > _LATEST_MAX or not _NAME_RE.fullmatch(name):
        raise ValueError(f"{d.name}/{LATEST} ({str(pointer)!r}) must hold the name of a "
                         "checkpoint file in the same folder (e.g. epoch_0003.safetensors; no "
                         f"folders, '..' or absolute paths); it holds {_short(raw)}")
    target = d / name
    if not (target.is_symlink() or target.exists()):
        raise FileNotFoundError(f"{d.name}/{LATEST} ({str(pointer)!r}) points at "
                                f"{str(target)!r}, which is missing")
    if not target.is_file() or not _inside(target, d):
        raise ValueError(f"{d.name}/{LATEST} ({str(pointer)!r}) points at {str(target)!r}, a "
                         f"symbolic link leading outside its folder or not a file; checkpoints "
                         "read through latest must be files in that folder")
    return target


def resolve_checkpoint(path) -> Path:
    """A checkpoint file from a file path, a ``checkpoints/`` folder or a run folder
    (through its ``latest`` pointer, which must name a file inside that ``checkpoints/``)."""
    path = Path(path)
    if path.is_file():
        return path
    ckdir = path / "checkpoints"
    if ckdir.is_symlink() and not _inside(ckdir, path):
        raise ValueError(f"the run's checkpoints folder ({str(ckdir)!r}) is a symbolic link "
                         "leading outside the run folder; refusing to read or write through "
                         "it")
    for d in (ckdir, path):
        if (d / LATEST).is_symlink() or (d / LATEST).exists():
            return _follow_latest(d)
    if path.is_dir():
        raise FileNotFoundError(f"no checkpoint in {str(path)!r} (expected a checkpoints/"
                                f"{LATEST} pointer in it, as membra train writes)")
    raise FileNotFoundError(f"{str(path)!r} not found (expected a run folder such as "
                            "runs/<name> or a .safetensors checkpoint written by membra)")


def run_folder_of(path) -> Path | None:
    """The run folder owning the checkpoint file ``path`` (``<run>/checkpoints/<file>`` with
    ``<run>/config.toml``), or ``None`` for a loose file."""
    path = Path(path)
    if path.parent.name == "checkpoints" and (path.parent.parent / "config.toml").is_file():
        return path.parent.parent
    return None


