"""Checkpoints: tensors in safetensors, metadata as JSON, written atomically, never pickled.

One checkpoint is one ``.safetensors`` file. Its header carries the JSON metadata (config,
epoch, step, RNG states, metric history) under the key ``"membra"`` and a SHA-256 digest of
every tensor's bytes under ``"membra_sha256"``, so a truncated or altered file is refused
instead of silently loading wrong weights.

Writing is atomic: the file is written to a temporary name in the same folder, flushed with
``fsync`` and moved over the target with ``os.replace``; a failure (disk full, no permission)
leaves any previous checkpoint untouched and removes the temporary file.

Model, optimizer and scheduler/scaler state are flattened with :func:`flatten_state` (tensors
-> ``prefix.path`` keys, everything else -> JSON) and rebuilt with :func:`unflatten_state`.

Example::

    save_checkpoint("runs/x/checkpoints/epoch_0001.safetensors",
                    {"model.fc.weight": w}, {"epoch": 1})
    tensors, meta = load_checkpoint("runs/x/checkpoints/epoch_0001.safetensors")
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

__all__ = [
    "FORMAT", "save_checkpoint", "load_checkpoint", "read_meta", "flatten_state",
    "unflatten_state", "write_latest", "resolve_checkpoint", "load_model_state",
    "atomic_write_bytes",
]

FORMAT = "membra.checkpoint/1"
_META_KEY = "membra"
_DIGEST_KEY = "membra_sha256"
LATEST = "latest"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync,
    ``os.replace``). On failure the previous file is intact and ``OSError`` names the path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OSError(err.errno, f"could not write {str(path)!r} ({err.strerror or err}); "
                                 "any previous file there is intact") from err
    try:  # make the rename durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_checkpoint(path, tensors: dict, meta: dict) -> Path:
    """Atomically write ``tensors`` (name -> tensor, any device) and JSON-serialisable
    ``meta`` to ``path`` (a ``.safetensors`` file). Returns the path."""
    from safetensors.torch import save

    if not isinstance(tensors, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        raise TypeError("save_checkpoint: tensors must be a dict of name -> torch.Tensor")
    try:
        meta_json = json.dumps({"format": FORMAT, **meta}, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise TypeError(f"save_checkpoint: meta must be JSON-serialisable: {err}") from None
    # clone: safetensors refuses tensors sharing memory (tied weights, views)
    flat = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    header = {_META_KEY: meta_json, _DIGEST_KEY: _digest(flat)}
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"checkpoint folder {str(path.parent)!r} does not exist")
    atomic_write_bytes(path, save(flat, metadata=header))
    return path


def _header(path: Path) -> dict:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise ValueError(f"checkpoint {str(path)!r} is truncated or not a safetensors file "
                             f"({size} bytes)")
        n = int.from_bytes(raw, "little")
        if n <= 0 or n > min(size - 8, 100_000_000):
            raise ValueError(f"checkpoint {str(path)!r} is corrupted or not a safetensors file "
                             f"(header length {n}, file size {size})")
        try:
            return json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"checkpoint {str(path)!r} is corrupted (unreadable header)") \
                from None


def read_meta(path) -> dict:
    """The JSON metadata of a checkpoint, reading only its header."""
    path = _existing(path)
    header = _header(path)
    meta = (header.get("__metadata__") or {}).get(_META_KEY)
    if meta is None:
        raise ValueError(f"{str(path)!r} is a safetensors file but not a membra checkpoint "
                         "(no membra metadata)")
    meta = json.loads(meta)
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} has format {meta.get('format')!r}; this "
                         f"membra reads {FORMAT!r}")
    return meta


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
    corrupted (digest mismatch) or foreign file."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = _existing(path)
    meta = read_meta(path)
    try:
        tensors = load(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise ValueError(f"checkpoint {str(path)!r} is corrupted or truncated: {err}") from None
    digest = _header(path)["__metadata__"].get(_DIGEST_KEY)
    if digest != _digest(tensors):
        raise ValueError(f"checkpoint {str(path)!r} is corrupted: its tensor data does not "
                         "match the digest written with it")
    return tensors, meta


# ---- latest pointer ------------------------------------------------------------------------
def write_latest(ckpt_dir, name: str) -> None:
    """Point ``<ckpt_dir>/latest`` at the checkpoint file ``name`` (atomic)."""
    atomic_write_bytes(Path(ckpt_dir) / LATEST, (name + "\n").encode())


def resolve_checkpoint(path) -> Path:
    """A checkpoint file from a file path, a ``checkpoints/`` folder or a run folder
    (through its ``latest`` pointer)."""
    path = Path(path)
    if path.is_file():
        return path
    for d in (path / "checkpoints", path):
        pointer = d / LATEST
        if pointer.is_file():
            target = d / pointer.read_text().strip()
            if not target.is_file():
                raise FileNotFoundError(f"{str(pointer)!r} points at {str(target)!r}, which is "
                                        "missing")
            return target
    if path.is_dir():
        raise FileNotFoundError(f"no checkpoint in {str(path)!r} (expected "
                                f"{str(path / 'checkpoints' / LATEST)!r})")
    raise FileNotFoundError(f"{str(path)!r} not found (expected a run folder such as "
                            "runs/<name> or a .safetensors checkpoint written by membra)")


# ---- state flattening ----------------------------------------------------------------------
def flatten_state(obj, prefix: str) -> tuple[dict[str, torch.Tensor], object]:
    """Split a nested state (dicts, lists, tuples, tensors, scalars) into tensors keyed
    ``prefix.path`` and a JSON skeleton where each tensor is ``{"__tensor__": key}``."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(o, key):
        if isinstance(o, torch.Tensor):
            tensors[key] = o
            return {"__tensor__": key}
        if isinstance(o, dict):
            return {"__dict__": [[_key(k), walk(v, f"{key}.{k}")] for k, v in o.items()]}
        if isinstance(o, tuple):
            return {"__tuple__": [walk(v, f"{key}.{i}") for i, v in enumerate(o)]}
        if isinstance(o, list):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(o)]
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"cannot store {type(o).__name__} at {key!r} in a checkpoint")

    return tensors, walk(obj, prefix)


def _key(k):
    if isinstance(k, (bool, int, float, str)) or k is None:
        return [type(k).__name__, k]
    raise TypeError(f"cannot store a dict key of type {type(k).__name__} in a checkpoint")


def _unkey(k):
    kind, v = k
    return {"int": int, "float": float, "str": str, "bool": bool}.get(kind, lambda x: x)(v)


def unflatten_state(skeleton, tensors: dict[str, torch.Tensor]):
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            key = skeleton["__tensor__"]
            if key not in tensors:
                raise ValueError(f"checkpoint is missing tensor {key!r}")
            return tensors[key]
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
        return {_unkey(k): unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor],
                     source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` strictly; missing/unexpected names and shape mismatches
    raise ``ValueError`` listing them (first few of each)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: model {tuple(own[k].shape)} vs {source} {tuple(state[k].shape)}"
              for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing in " + source, missing),
                             ("not in the model", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label}: {', '.join(items[:5])}{more}")
        raise ValueError(f"{source} does not match the model; " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
