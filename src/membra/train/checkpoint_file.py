"""One checkpoint file: the safetensors bytes sealed with the SHA-256 of every byte, JSON
metadata with a depth limit, and atomic writes (:mod:`.checkpoint` describes the format).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import torch

FORMAT = "membra.checkpoint/2"
_FORMAT_1 = "membra.checkpoint/1"  # digest over the tensors only; see upgrade_checkpoint
_META_KEY = "membra"
_DIGEST_KEY = "membra_file_sha256"
_DIGEST_1_KEY = "membra_sha256"
_ZERO = b"0" * 64
_DIGEST_RE = re.compile(rb'"membra_file_sha256":"([0-9a-f]{64})"')
_MAX_HEADER = 100_000_000
#: deepest JSON nesting accepted in checkpoint metadata (membra writes about 10)
MAX_DEPTH = 64
_TMP_RE = re.compile(r"\..+\.tmp")  # names of atomic_write_bytes' temporary files


# ---- digests -------------------------------------------------------------------------------
def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """The format-1 digest (``membra_sha256``): SHA-256 over ``name|dtype|shape|bytes`` of the
    tensors in sorted name order; :func:`upgrade_checkpoint` checks it."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _file_digest(raw: bytes, span: tuple[int, int]) -> str:
    """SHA-256 of the file ``raw`` with the digest digits at ``span`` read as '0'."""
    h = hashlib.sha256()
    view = memoryview(raw)
    h.update(view[:span[0]])
    h.update(_ZERO)
    h.update(view[span[1]:])
    return h.hexdigest()


def _header_length(raw: bytes, path: Path) -> int:
    """The safetensors header length ``n`` (bytes ``8 .. 8 + n``), checked against the file."""
    if len(raw) < 8:
        raise ValueError(f"checkpoint {str(path)!r} is truncated or not a safetensors file "
                         f"({len(raw)} bytes)")
    n = int.from_bytes(raw[:8], "little")
    if n <= 0 or n > min(len(raw) - 8, _MAX_HEADER):
        raise ValueError(f"checkpoint {str(path)!r} is corrupted, truncated or not a "
                         f"safetensors file (header length {n}, file size {len(raw)})")
    return n


def _digest_span(raw: bytes, n: int) -> tuple[int, int] | None:
    """Where the 64 digest digits sit in the header; ``None`` unless exactly once."""
    found = list(_DIGEST_RE.finditer(raw, 8, 8 + n))
    return found[0].span(1) if len(found) == 1 else None


def _json(text, what: str):
    """``json.loads`` whose every failure (syntax, encoding, nesting) is a ``ValueError``
    starting with ``what``; values nested deeper than :data:`MAX_DEPTH` are refused."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
        depth = MAX_DEPTH + 1
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} is not valid JSON ({err})") from None
    else:
        depth = _depth(value)
    if depth > MAX_DEPTH:
        raise ValueError(f"{what} is nested too deeply (more than {MAX_DEPTH} levels)")
    return value


def _depth(value) -> int:
    """Nesting depth of lists/dicts in ``value`` (a scalar is 0), stopping past MAX_DEPTH."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list, tuple)):
            deepest = max(deepest, d)
            if d > MAX_DEPTH:
                break
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


# ---- writing -------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file ``.<name>.<random>.tmp`` in the same
    folder, fsync, ``os.replace``, fsync of the folder). On any failure the temp file is
    removed and the previous file is intact; ``OSError`` names the path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # the mode open() would give, not mkstemp's 0600
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:  # Ctrl-C or MemoryError mid-write must not leave the temp
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise OSError(err.errno, f"could not write {str(path)!r} ({err.strerror or err}); "
                                     "any previous file there is intact") from err
        raise
    try:  # make the rename durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def clean_stale_temps(folder) -> list[Path]:
    """Remove the temporary files (``.<name>.<random>.tmp``) that an interrupted
    :func:`atomic_write_bytes` left in ``folder``; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if _TMP_RE.fullmatch(p.name) and
             (p.is_symlink() or p.is_file())]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def save_checkpoint(path, tensors: dict, meta: dict) -> Path:
    """Atomically write ``tensors`` (name -> tensor, any device) and JSON-serialisable
    ``meta`` to ``path`` (a ``.safetensors`` file), sealed with the digest of every byte.
    Returns the path."""
    from safetensors.torch import save

    if not isinstance(tensors, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        raise TypeError("save_checkpoint: tensors must be a dict of name -> torch.Tensor")
    if not isinstance(meta, dict):
        raise TypeError(f"save_checkpoint: meta must be a dict, got {type(meta).__name__}")
    if _depth(meta) > MAX_DEPTH - 1:
        raise ValueError(f"save_checkpoint: meta is nested deeper than {MAX_DEPTH - 1} levels")
    try:
        meta_json = json.dumps({"format": FORMAT, **meta}, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise TypeError(f"save_checkpoint: meta must be JSON-serialisable: {err}") from None
    # clone: safetensors refuses tensors sharing memory (tied weights, views)
    flat = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"checkpoint folder {str(path.parent)!r} does not exist")
    raw = bytearray(save(flat, metadata={_META_KEY: meta_json, _DIGEST_KEY: _ZERO.decode()}))
    span = _digest_span(raw, _header_length(raw, path))
    raw[span[0]:span[1]] = _file_digest(raw, span).encode()
    atomic_write_bytes(path, bytes(raw))
    return path


# ---- reading -------------------------------------------------------------------------------
def _read_verified(path: Path) -> tuple[bytes, dict]:
    """``(file bytes, metadata)`` of a checkpoint whose digest matches every byte.

    Raises ``ValueError`` naming the file for a truncated, altered, foreign or older file,
    unreadable or too deeply nested JSON and metadata that is not an object."""
    raw = path.read_bytes()
    n = _header_length(raw, path)
    span = _digest_span(raw, n)
    if span is None:
        _explain_missing_digest(raw, n, path)
    if raw[span[0]:span[1]].decode() != _file_digest(raw, span):
        raise ValueError(f"checkpoint {str(path)!r} is corrupted or was altered: its bytes do "
                         "not match the SHA-256 digest written with it")
    header = _json(raw[8:8 + n], f"checkpoint {str(path)!r}: the header")
    md = header.get("__metadata__") if isinstance(header, dict) else None
    meta_text = md.get(_META_KEY) if isinstance(md, dict) else None
    if not isinstance(meta_text, str):
        raise ValueError(f"checkpoint {str(path)!r} has no membra metadata")
    meta = _json(meta_text, f"checkpoint {str(path)!r}: the metadata")
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint {str(path)!r}: the metadata must be a JSON object, got "
                         f"{type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {str(path)!r}: metadata 'format' is "
                         f"{_short(meta.get('format'))}; this membra reads {FORMAT!r}")
    return raw, meta


def _explain_missing_digest(raw: bytes, n: int, path: Path):
    """Raise the ``ValueError`` that says why a file has no (single) digest."""
    try:
        md = json.loads(raw[8:8 + n]).get("__metadata__") or {}
    except (ValueError, RecursionError, AttributeError):
        md = {}
    if not isinstance(md, dict) or _META_KEY not in md:
        raise ValueError(f"{str(path)!r} is corrupted or a safetensors file but not a membra "
                         "checkpoint (no membra metadata)")
    if _DIGEST_1_KEY in md and _DIGEST_KEY not in md:
        raise ValueError(
            f"checkpoint {str(path)!r} has the older format {_FORMAT_1!r}, whose digest covers "
            "the tensors only, so its metadata cannot be verified; if you trust the file, "
            "convert it once with `python -c \"from membra.train.checkpoint import "
            f"upgrade_checkpoint; upgrade_checkpoint('{path}')\"`")
    raise ValueError(f"checkpoint {str(path)!r} is corrupted or was altered: its "
                     f"{_DIGEST_KEY!r} digest is missing or malformed")


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


