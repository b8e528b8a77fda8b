"""Checkpoints: tensors in safetensors, metadata as JSON, written atomically, never pickled.

One checkpoint is one ``.safetensors`` file. Its header carries the JSON metadata (config,
epoch, step, RNG states, metric history) under the key ``"membra"`` and, under
``"membra_file_sha256"``, the SHA-256 of the whole file as written with those 64 hex digits
read as ``0``: every byte (length prefix, header, metadata, padding, tensor data) is covered,
so a truncated, extended or altered file is refused instead of silently loading wrong weights
or a wrong history. The digest is a checksum, not a signature: whoever can write the file can
recompute it, so the metadata of a training checkpoint is also validated against a schema
(:func:`check_run_meta`) and JSON nested deeper than :data:`MAX_DEPTH` levels is refused.

Writing is atomic: the file is written to a temporary name ``.<name>.<random>.tmp`` in the same
folder, flushed with ``fsync`` and moved over the target with ``os.replace`` (then the folder is
fsynced); any failure, ``KeyboardInterrupt`` included, leaves a previous checkpoint untouched and
removes the temporary file. Temporary files left by a killed process are removed by
:func:`clean_stale_temps` when a run starts or resumes.

A run folder's ``checkpoints/latest`` holds the bare file name of a checkpoint in the same
folder; :func:`resolve_checkpoint` refuses anything else (a path, ``..``, a symlink leading out).

Model, optimizer and scheduler/scaler state are flattened with :func:`flatten_state` (tensors
-> ``prefix.path`` keys, everything else -> JSON) and rebuilt with :func:`unflatten_state`.

Example::

    save_checkpoint("runs/x/checkpoints/epoch_0001.safetensors",
                    {"model.fc.weight": w}, {"epoch": 1})
    tensors, meta = load_checkpoint("runs/x/checkpoints/epoch_0001.safetensors")

The pieces: :mod:`.checkpoint_file` (the bytes of one file: digest, JSON, atomic writes,
:func:`save_checkpoint`), :mod:`.checkpoint_folder` (the ``latest`` pointer and run folders),
:mod:`.checkpoint_state` (state flattening, strict model loading), :mod:`.checkpoint_schema`
(:func:`check_run_meta`). This module reads a checkpoint from a file or a run folder and is
the public path to all of them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint_file import (
    _DIGEST_1_KEY,
    _FORMAT_1,
    _META_KEY,
    FORMAT,
    MAX_DEPTH,
    _header_length,
    _json,
    _read_verified,
    atomic_write_bytes,
    clean_stale_temps,
    save_checkpoint,
    tensor_digest,
)
from .checkpoint_folder import (
    LATEST,  # noqa: F401  (the pointer's name, read by other packages)
    has_checkpoints,
    resolve_checkpoint,
    run_folder_of,
    write_latest,
)
from .checkpoint_schema import check_run_meta
from .checkpoint_state import (
    flatten_state,
    load_model_state,
    non_finite_tensors,
    unflatten_state,
)

__all__ = [
    "FORMAT", "MAX_DEPTH", "save_checkpoint", "load_checkpoint", "read_meta",
    "flatten_state", "unflatten_state", "write_latest", "resolve_checkpoint",
    "load_model_state", "atomic_write_bytes", "clean_stale_temps", "has_checkpoints",
    "run_folder_of", "check_run_meta", "load_run_checkpoint", "upgrade_checkpoint",
    "non_finite_tensors", "tensor_digest",
]


def read_meta(path) -> dict:
    """The JSON metadata of a checkpoint (after checking the digest of the whole file)."""
    return _read_verified(_existing(path))[1]


def _existing(path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = resolve_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found (expected a .safetensors "
                                "file written by membra, or a run folder)")
    return path


def load_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, meta)`` of a checkpoint file (or of the latest one of a run folder).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a truncated,
    corrupted or altered (digest mismatch), foreign or older-format file."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = _existing(path)
    raw, meta = _read_verified(path)
    try:
        tensors = load(raw)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as err:
        raise ValueError(f"checkpoint {str(path)!r} is corrupted: {err}") from None
    return tensors, meta


def upgrade_checkpoint(path) -> Path:
    """Rewrite a format-1 checkpoint (digest over the tensors only) in the current format.

    The tensor digest is checked first (altered tensor bytes are refused); the metadata of a
    format-1 file cannot be verified, so upgrade only files you trust."""
    from safetensors.torch import load

    path = _existing(path)
    raw = path.read_bytes()
    n = _header_length(raw, path)
    md = (_json(raw[8:8 + n], f"checkpoint {str(path)!r}: the header") or {})
    md = md.get("__metadata__") if isinstance(md, dict) else None
    if not isinstance(md, dict) or _DIGEST_1_KEY not in md or _META_KEY not in md:
        raise ValueError(f"{str(path)!r} is not a {_FORMAT_1!r} checkpoint")
    try:
        tensors = load(raw)
    except Exception as err:  # noqa: BLE001 -- any parse failure means a damaged file
        raise ValueError(f"checkpoint {str(path)!r} is corrupted: {err}") from None
    if md[_DIGEST_1_KEY] != tensor_digest(tensors):
        raise ValueError(f"checkpoint {str(path)!r} is corrupted or was altered: its tensor "
                         "data does not match the digest written with it")
    meta = _json(md[_META_KEY], f"checkpoint {str(path)!r}: the metadata")
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_1:
        raise ValueError(f"{str(path)!r} is not a {_FORMAT_1!r} checkpoint")
    meta.pop("format")
    return save_checkpoint(path, tensors, meta)


def load_run_checkpoint(source) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """``(path, tensors, meta)`` of a training checkpoint: a file, or a run folder through its
    ``latest`` pointer; the digest of every byte and the metadata schema are checked."""
    path = resolve_checkpoint(source)
    tensors, meta = load_checkpoint(path)
    check_run_meta(meta, tensors, f"checkpoint {str(path)!r}")
    return path, tensors, meta


