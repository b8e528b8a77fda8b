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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

import torch

__all__ = [
    "FORMAT", "MAX_DEPTH", "save_checkpoint", "load_checkpoint", "read_meta",
    "flatten_state", "unflatten_state", "write_latest", "resolve_checkpoint",
    "load_model_state", "atomic_write_bytes", "clean_stale_temps", "has_checkpoints",
    "run_folder_of", "check_run_meta", "load_run_checkpoint", "upgrade_checkpoint",
    "non_finite_tensors", "tensor_digest",
]

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
LATEST = "latest"
_LATEST_MAX = 256  # bytes of a `latest` pointer
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.safetensors")
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


def has_checkpoints(folder) -> bool:
    """Whether ``folder`` holds a checkpoint file (``*.safetensors``, temp files excluded)."""
    folder = Path(folder)
    return folder.is_dir() and any(p.suffix == ".safetensors" and not p.name.startswith(".")
                                   for p in folder.iterdir())


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
    """A dict key from ``[type name, value]`` (inverse of :func:`_key`)."""
    kind, v = k
    types = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
             "NoneType": (type(None),)}
    if kind not in types or not isinstance(v, types[kind]) or (
            kind in ("int", "float") and isinstance(v, bool)):
        raise ValueError(f"malformed state key {_short(k)}")
    return float(v) if kind == "float" else v


def unflatten_state(skeleton, tensors: dict[str, torch.Tensor]):
    """Inverse of :func:`flatten_state`; a malformed skeleton or a missing tensor is a
    ``ValueError``."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__tensor__"}:
            key = skeleton["__tensor__"]
            if not isinstance(key, str) or key not in tensors:
                raise ValueError(f"checkpoint is missing tensor {_short(key)}")
            return tensors[key]
        if set(skeleton) == {"__tuple__"} and isinstance(skeleton["__tuple__"], list):
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
        items = skeleton.get("__dict__") if set(skeleton) == {"__dict__"} else None
        if not isinstance(items, list) or not all(
                isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], list)
                and len(kv[0]) == 2 for kv in items):
            raise ValueError(f"malformed state entry {_short(skeleton)}")
        return {_unkey(k): unflatten_state(v, tensors) for k, v in items}
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


# ---- training checkpoints: the metadata schema ---------------------------------------------
_MAX_COUNT = 10**15


def _is_int(v, lo: int = 0, hi: int = _MAX_COUNT) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_amount(v) -> bool:
    """A finite number >= 0."""
    return _is_num(v) and math.isfinite(v) and v >= 0


#: key -> (rule, what the rule asks) for the metadata of a checkpoint written by ``fit``
_RUN_KEYS = {
    "config": (lambda v: isinstance(v, dict), "a table (the run config)"),
    "epoch": (_is_int, "an integer in [0, 1e15]"),
    "step": (_is_int, "an integer in [0, 1e15]"),
    "batch_in_epoch": (_is_int, "an integer in [0, 1e15]"),
    "epoch_sums": (lambda v: isinstance(v, list) and len(v) == 3 and all(map(_is_amount, v)),
                   "three finite numbers >= 0 (loss sum, correct, samples)"),
    "epoch_time": (_is_amount, "a finite number >= 0"),
    "optimizer": (lambda v: isinstance(v, dict), "a table (optimizer state)"),
    "scheduler": (lambda v: isinstance(v, dict), "a table"),
    "rng": (lambda v: isinstance(v, dict), "a table (RNG states)"),
    "history": (lambda v: isinstance(v, list), "a list (one entry per finished epoch)"),
    "world_size": (lambda v: _is_int(v, 1, 10**6), "an integer >= 1"),
}
def _is_model_info(v) -> bool:
    """``{"in_shape": [ints >= 1], "num_classes": int >= 1, "custom": null | {"class": str,
    "module": str}}`` (written by ``fit``; see :func:`membra.train.runs.model_info`)."""
    if not isinstance(v, dict) or set(v) != {"in_shape", "num_classes", "custom"}:
        return False
    shape, custom = v["in_shape"], v["custom"]
    return (isinstance(shape, list) and 0 < len(shape) <= 16
            and all(_is_int(d, 1) for d in shape) and _is_int(v["num_classes"], 1)
            and (custom is None or (isinstance(custom, dict) and set(custom) == {"class", "module"}
                                    and all(isinstance(s, str) and s for s in custom.values()))))


_RUN_OPTIONAL = {
    "scaler": (lambda v: v is None or isinstance(v, dict), "null or a table"),
    "torch": (lambda v: isinstance(v, str), "a string"),
    "model_info": (_is_model_info, "a table {in_shape: list of ints >= 1, num_classes: int "
                                   ">= 1, custom: null or {class, module} strings}"),
}
_HISTORY_NUMBERS = ("train_loss", "train_acc", "test_loss", "test_acc", "test_acc_mean",
                    "test_acc_last", "lr")
_HISTORY_STEPS = ("test_acc_per_step", "test_acc_cumulative")


def check_run_meta(meta: dict, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Validate the metadata of a training checkpoint (as written by ``membra.train.fit``)
    against its schema: required keys and their types, ranges, and the invariants
    ``epoch == len(history)``, ``history[i].epoch == i + 1``, per-step lists of ``data.T``
    entries, ``epoch_sums`` counting samples iff ``batch_in_epoch > 0``, RNG states of the
    right size and an optimizer skeleton whose tensors exist. Raises ``ValueError`` starting
    with ``where`` and naming the key."""
    from .config import config_from_dict

    def fail(key, text):
        raise ValueError(f"{where}: metadata {key!r} {text}")

    for key in _RUN_KEYS:
        if key not in meta:
            fail(key, f"is missing (a training checkpoint has {', '.join(_RUN_KEYS)})")
    for key, (rule, asks) in (*_RUN_KEYS.items(), *_RUN_OPTIONAL.items()):
        if key in meta and not rule(meta[key]):
            fail(key, f"must be {asks}, got {_short(meta[key])}")
    try:
        T = config_from_dict(meta["config"]).data.T
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        fail("config", f"is not a valid run config: {err}")
    if meta["epoch"] != len(meta["history"]):
        fail("epoch", f"({meta['epoch']}) must equal the number of finished epochs in "
                      f"'history' ({len(meta['history'])})")
    for i, m in enumerate(meta["history"]):
        problem = _history_problem(m, i, T)
        if problem:
            fail("history", f"entry {i}: {problem}")
    loss, correct, samples = meta["epoch_sums"]
    if (samples > 0) != (meta["batch_in_epoch"] > 0) or correct > samples:
        fail("epoch_sums", f"({meta['epoch_sums']}) must count the samples of the "
                           f"batch_in_epoch={meta['batch_in_epoch']} batches done")
    if meta["step"] < meta["batch_in_epoch"]:
        fail("step", f"({meta['step']}) must be >= batch_in_epoch ({meta['batch_in_epoch']})")
    problem = _rng_problem(meta["rng"], tensors)
    if problem:
        fail("rng", problem)
    try:
        opt = unflatten_state(meta["optimizer"], tensors)
    except (ValueError, TypeError) as err:
        fail("optimizer", f"is malformed: {err}")
    if not isinstance(opt, dict) or not isinstance(opt.get("state"), dict) or \
            not isinstance(opt.get("param_groups"), list):
        fail("optimizer", "must hold an optimizer state dict (state, param_groups)")


def _history_problem(m, i: int, T: int) -> str | None:
    """What is wrong with history entry ``i`` (metrics of epoch ``i + 1``), or ``None``."""
    if not isinstance(m, dict):
        return f"must be a table of metrics, got {_short(m)}"
    if m.get("epoch") != i + 1 or not _is_int(m.get("epoch")):
        return f"'epoch' must be {i + 1}, got {_short(m.get('epoch'))}"
    if not _is_int(m.get("step")):
        return f"'step' must be an integer >= 0, got {_short(m.get('step'))}"
    for key in _HISTORY_NUMBERS:
        if not _is_num(m.get(key)):
            return f"{key!r} must be a number, got {_short(m.get(key))}"
    for key in _HISTORY_STEPS:
        v = m.get(key)
        if not (isinstance(v, list) and len(v) == T and all(map(_is_num, v))):
            return f"{key!r} must be a list of {T} numbers (data.T), got {_short(v)}"
    rates = m.get("firing_rate")
    if not (isinstance(rates, dict) and all(map(_is_num, rates.values()))):
        return f"'firing_rate' must be a table of numbers, got {_short(rates)}"
    return None


def _rng_problem(r: dict, tensors: dict[str, torch.Tensor]) -> str | None:
    """What is wrong with the RNG states (``rng.capture``'s JSON part and tensors)."""
    np_state, py_state = r.get("numpy"), r.get("python")
    if not (isinstance(np_state, list) and len(np_state) == 4 and np_state[0] == "MT19937"
            and _is_int(np_state[1], 0, 624) and np_state[2] in (0, 1)
            and _is_num(np_state[3])):
        return f"'numpy' must be ['MT19937', pos, has_gauss, cached], got {_short(np_state)}"
    if not (isinstance(py_state, list) and len(py_state) == 3 and py_state[0] == 3
            and isinstance(py_state[1], list) and len(py_state[1]) == 625
            and all(_is_int(x, 0, 2**32 - 1) for x in py_state[1])
            and (py_state[2] is None or _is_num(py_state[2]))):
        return f"'python' must be Python's random state [3, 625 integers, gauss], got " \
               f"{_short(py_state)}"
    t, n = tensors.get("rng.torch"), tensors.get("rng.numpy")
    if not (isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 1):
        return "needs the tensor 'rng.torch' (uint8 bytes of torch's RNG state)"
    if not (isinstance(n, torch.Tensor) and n.dtype == torch.int64 and n.shape == (624,)
            and bool(((n >= 0) & (n < 2**32)).all())):
        return "needs the tensor 'rng.numpy' (624 integers of numpy's MT19937 state)"
    return None


def load_run_checkpoint(source) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """``(path, tensors, meta)`` of a training checkpoint: a file, or a run folder through its
    ``latest`` pointer; the digest of every byte and the metadata schema are checked."""
    path = resolve_checkpoint(source)
    tensors, meta = load_checkpoint(path)
    check_run_meta(meta, tensors, f"checkpoint {str(path)!r}")
    return path, tensors, meta


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """``"name (a NaN, b inf of n)"`` for every floating-point tensor holding NaN or inf."""
    out = []
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            out.append(f"{name} ({nan} NaN, {inf} inf of {t.numel()})")
    return out
