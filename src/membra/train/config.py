"""Run configs: TOML files parsed into frozen dataclasses.

A run file has five tables, ``[run]``, ``[data]``, ``[model]``, ``[train]`` and ``[eval]``;
every key has a type and a default (:class:`RunConfig`), and every numeric key a range. An
unknown key, a value of the wrong type, an out-of-range value or a name that is empty or holds
a NUL character raises ``ValueError`` naming the full key (``train.lr``) and, for numbers, the
valid range; for unknown keys the message lists the valid ones with a "did you mean".
:func:`key_table` lists every key (``membra config-keys`` prints it).

Overrides use TOML value syntax: ``train.lr=1e-3``, ``model.neuron_kwargs.tau=3.0``,
``run.name=foo`` (a value that is not valid TOML is taken as a string).

Example::

    cfg = load_config("configs/digits_imp_lts.toml", ["train.epochs=3"])
    print(dump_config(cfg))          # the resolved TOML, as saved in runs/<name>/config.toml
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..functional.kinds import ZOO_KINDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "RunSection", "DataSection", "ModelSection", "TrainSection", "EvalSection", "RunConfig",
    "load_config", "parse_config", "config_from_dict", "config_to_dict", "dump_config",
    "apply_overrides", "parse_override", "ConfigKey", "key_table", "keys_markdown",
    "check_batch_split", "check_runnable", "memory_error",
]


def _opt(default, *, choices=None, min=None, max=None, gt=None, valid=None, doc=""):
    """A config field. Numeric keys must state their range: ``min`` (or ``gt`` for an open
    lower bound) and ``max``; ``valid`` describes other constraints for the keys table."""
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    if numeric and (max is None or (min is None) == (gt is None)):
        raise TypeError(f"numeric config key with default {default!r} needs max= and one of "
                        "min=/gt=")
    meta = {"choices": choices, "min": min, "max": max, "gt": gt, "valid": valid, "doc": doc}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class _Section:
    """Base of the config sections: every field is checked (type, range, choices, names) when
    a section is built, from TOML, ``--set``, :meth:`RunConfig.replace` or a direct call, so no
    path leads to an invalid config. ``_name`` is the table name used in error messages."""

    _name = ""

    def __post_init__(self):
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            key = f"{self._name}.{f.name}"
            value = _coerce(key, getattr(self, f.name), hints[f.name], f.metadata)
            _check_value(key, value, f.metadata)
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        """Constraints between the keys of one section (none by default)."""


@dataclass(frozen=True)
class RunSection(_Section):
    """``[run]``: name of the run folder ``<out_dir>/<name>``, global seed, output root."""

    _name = "run"
    name: str = _opt("run", valid="a folder name: no '/', not '.' or '..', at most 255 bytes",
                     doc="run folder name under out_dir")
    seed: int = _opt(0, min=0, max=2**32 - 1,
                     doc="seeds torch, numpy, random, the data order and the data's own "
                         "randomness")
    out_dir: str = _opt("runs", doc="root of run folders")
    progress: bool = _opt(True, doc="show a progress bar per epoch")
    threads: int = _opt(0, min=0, max=1024,
                        doc="torch CPU threads per process (0: torch's default; 1 is fastest "
                            "for tiny nets)")
    plots: bool = _opt(True, doc="write PNG plots at the end (needs matplotlib)")
    tensorboard: bool = _opt(True, doc="write TensorBoard events (needs tensorboard)")
    ddp_timeout_s: float = _opt(600.0, min=1.0, max=86_400.0,
                                doc="seconds a process waits for the others in a collective "
                                    "before stopping with the name of the silent rank")
    tags: dict = _opt({}, valid="strings, numbers or true/false",
                      doc="labels stored with the run, never read by training (e.g. the IMP "
                          "study's `{ study = \"imp\", arm = \"imp_lts\" }`)")

    def _check(self) -> None:
        for k, v in self.tags.items():
            if not isinstance(v, (str, int, float, bool)):
                raise ValueError(f"run.tags.{k} must be a string, a number or true/false, "
                                 f"got {v!r}")
        if "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"run.name must be a folder name without '/', got {self.name!r}")
        if len(self.name.encode("utf-8")) > 255:
            raise ValueError(f"run.name must be at most 255 bytes (a folder name), got "
                             f"{len(self.name.encode('utf-8'))} bytes")


@dataclass(frozen=True)
class DataSection(_Section):
    """``[data]``: dataset by name (``membra datasets``), time steps, loader settings.
    ``batch_size`` is the global batch, split evenly over distributed processes."""

    _name = "data"
    name: str = _opt("digits", doc="dataset (`membra datasets`; see `docs/data.md`)")
    T: int = _opt(4, min=1, max=10_000, doc="time steps")
    root: str | None = _opt(None, valid="an existing folder; unset for built-in datasets",
                            doc="folder of the user's files (datasets read from disk; never "
                                "downloaded)")
    encoding: str = _opt("direct", doc="static images: `direct`, `rate`, `latency`")
    batch_size: int = _opt(64, min=1, max=1_000_000,
                           doc="**global** batch (split evenly over processes)")
    eval_batch_size: int = _opt(256, min=1, max=1_000_000, doc="global evaluation batch")
    num_workers: int = _opt(0, min=0, max=256, doc="DataLoader worker processes")
    options: dict = _opt({}, doc="dataset options (e.g. `{ size = 48 }`, `{ augment = true }`)")


@dataclass(frozen=True)
class ModelSection(_Section):
    """``[model]``: model by name (``membra models``), neuron type and neuron options
    (``neuron_kwargs`` go to every :class:`membra.nn.LIF`/:class:`membra.nn.IF`)."""

    _name = "model"
    name: str = _opt("mlp", doc="model (`membra models`)")
    neuron: str = _opt("lif", choices=tuple(k.value for k in ZOO_KINDS),
                       doc="spiking neuron type (`docs/neurons.md`)")
    neuron_kwargs: dict = _opt({}, valid="the neuron's options, checked by building one",
                               doc="options of every neuron: `init_potential` (`\"learnable\"` "
                                   "= IMP, or a number), `tau`, `v_th`, `reset`, `surrogate`, "
                                   "`alpha`, `detach_reset`, `init_range`, ...")
    options: dict = _opt({}, doc="builder options (e.g. `hidden = [256]`, "
                                 "`channels = [16, 32]`)")

    def _check(self) -> None:
        _check_neuron_kwargs(self.neuron, self.neuron_kwargs)


@dataclass(frozen=True)
class TrainSection(_Section):
    """``[train]``: optimisation. ``lr`` follows a linear warm-up over ``warmup_epochs`` then
    ``schedule`` (cosine down to ``min_lr``, or constant), updated every step."""

    _name = "train"
    epochs: int = _opt(10, min=1, max=100_000, doc="epochs")
    optimizer: str = _opt("adamw", choices=("adamw", "sgd"),
                          doc="`adamw` (with `train.betas`) or `sgd` (with `train.momentum`)")
    lr: float = _opt(1e-3, gt=0.0, max=10.0, doc="peak learning rate")
    weight_decay: float = _opt(0.0, min=0.0, max=10.0,
                               doc="on weight matrices/kernels only: never on initial "
                                   "potentials, norms, biases")
    momentum: float = _opt(0.9, min=0.0, max=1.0, doc="SGD momentum")
    betas: list = _opt([0.9, 0.999], valid="two numbers in [0, 1)", doc="AdamW betas")
    schedule: str = _opt("cosine", choices=("cosine", "constant"),
                         doc="after `train.warmup_epochs` of linear warm-up; set every step")
    warmup_epochs: float = _opt(0.0, min=0.0, max=100_000.0,
                                valid="at most train.epochs", doc="linear warm-up length in "
                                "epochs")
    min_lr: float = _opt(0.0, min=0.0, max=10.0, valid="at most train.lr",
                         doc="final learning rate of the cosine schedule")
    loss: str = _opt("mean_ce", choices=("mean_ce", "lts_ce", "tet", "ls_tet"),
                     doc="`lts_ce`: the last step only")
    loss_eps: float = _opt(0.01, min=0.0, max=1.0, doc="label smoothing of `ls_tet`")
    loss_lambda: float = _opt(0.0, min=0.0, max=1.0, doc="MSE weight of `tet`")
    loss_phi: float = _opt(1.0, min=0.0, max=100.0, doc="MSE target of `tet`")
    grad_clip: float = _opt(0.0, min=0.0, max=1e6, doc="gradient-norm clip (0: off)")
    amp: bool = _opt(False, doc="mixed precision with loss scaling (CUDA only; ignored with a "
                                "note on CPU)")
    checkpoint_every: int = _opt(1, min=1, max=100_000,
                                 doc="epochs between checkpoints (the last epoch always)")
    keep_checkpoints: int = _opt(2, min=0, max=100_000, doc="epoch checkpoints kept (0: all)")
    max_steps: int = _opt(0, min=0, max=10**9,
                          doc="stop after this many optimizer steps (0: no limit)")

    def _check(self) -> None:
        b = self.betas
        if len(b) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                  and 0 <= x < 1 for x in b):
            raise ValueError(f"train.betas must be two numbers in [0, 1), got {b!r}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"train.warmup_epochs={self.warmup_epochs} exceeds "
                             f"train.epochs={self.epochs}")
        if self.min_lr > self.lr:
            raise ValueError(f"train.min_lr={self.min_lr} exceeds train.lr={self.lr}")


@dataclass(frozen=True)
class EvalSection(_Section):
    """``[eval]``: readout that defines the reported accuracy."""

    _name = "eval"
    readout: str = _opt("mean", choices=("mean", "last"), doc="readout of the reported accuracy")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: ``run``, ``data``, ``model``, ``train``, ``eval``."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self):
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"RunConfig.{name} must be a {cls.__name__}, got "
                                f"{type(getattr(self, name)).__name__}")

    def replace(self, **sections) -> RunConfig:
        """A copy with whole sections or ``section__key=value`` fields replaced."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in sections.items():
            if "__" in key:
                sec, k = key.split("__", 1)
                out[sec] = dataclasses.replace(out[sec], **{k: value})
            else:
                out[key] = value
        return RunConfig(**out)


SECTIONS: dict[str, type] = {"run": RunSection, "data": DataSection, "model": ModelSection,
            "train": TrainSection, "eval": EvalSection}


# ---- validation ----------------------------------------------------------------------------
@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _did_you_mean(name: str, valid) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(key: str, name: str, valid) -> ValueError:
    return ValueError(f"unknown config key {key!r}{_did_you_mean(name, valid)}; valid keys: "
                      f"{', '.join(sorted(valid))}")


def _type_name(tp) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false",
            dict: "a table", list: "an array"}.get(tp, str(tp))


def _base_type(tp):
    """``X`` of ``X`` or ``X | None``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _bound(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _range_text(meta) -> str:
    """``[min, max]`` or ``(gt, max]`` of a numeric key."""
    if meta.get("gt") is not None:
        return f"({_bound(meta['gt'])}, {_bound(meta['max'])}]"
    return f"[{_bound(meta['min'])}, {_bound(meta['max'])}]"


def _in_range(value, meta) -> bool:
    lo_ok = value > meta["gt"] if meta.get("gt") is not None else value >= meta["min"]
    return lo_ok and value <= meta["max"]


def _shown(value) -> str:
    """``value`` as TOML spells it (``true``, ``nan``, ``1e+20``, ``'text'``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return _toml_value(value)
    return repr(value)


def _coerce(key: str, value, tp, meta=None):
    """Check ``value`` against the annotation ``tp`` (str, int, float, bool, dict, list or
    ``X | None``); ints are accepted for floats. A numeric value of the wrong type, or one
    outside the key's range, is refused with the range stated."""
    if value is None and tp is not _base_type(tp):
        return None
    tp = _base_type(tp)
    if tp in (int, float):
        ok = not isinstance(value, bool) and isinstance(value, int if tp is int else (int, float))
        if not ok or not math.isfinite(value) or (meta and not _in_range(value, meta)):
            kind = "an integer" if tp is int else "a number"
            where = f" in {_range_text(meta)}" if meta else ""
            raise ValueError(f"{key} must be {kind}{where}, got {_shown(value)}")
        return float(value) if tp is float else value
    if not isinstance(value, tp):
        raise ValueError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if tp is dict:
        return dict(value)
    if tp is list:
        return list(value)
    return value


def _check_value(key: str, value, meta) -> None:
    """Choices of a choice key; a name key is neither empty nor holds a NUL character."""
    if value is None:
        return
    if meta.get("choices") and value not in meta["choices"]:
        raise ValueError(f"{key}={value!r} is not valid; choose one of "
                         f"{', '.join(map(repr, meta['choices']))}"
                         f"{_did_you_mean(str(value), meta['choices'])}")
    if isinstance(value, str):
        if not value:
            raise ValueError(f"{key} must not be empty" + (
                " (leave it out for built-in datasets)" if key == "data.root" else ""))
        if "\x00" in value:
            raise ValueError(f"{key} must not contain a NUL character, got {value!r}")


def _neuron_params(neuron: str) -> dict[str, inspect.Parameter]:
    from ..models.common import NEURON_CLASSES

    cls = NEURON_CLASSES[neuron]
    return {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
            if n not in ("self", "shape")}


def _check_neuron_kwargs(neuron: str, kwargs: dict) -> None:
    """Unknown neuron options and bad values are errors naming ``model.neuron_kwargs.<k>``;
    values are checked by building one neuron with them."""
    params = _neuron_params(neuron)
    for k in kwargs:
        if k not in params:
            raise _unknown(f"model.neuron_kwargs.{k}", k, params)
    from ..models.common import NEURON_CLASSES

    cls = NEURON_CLASSES[neuron]
    try:
        cls(shape=(1,), **kwargs)
    except (TypeError, ValueError) as err:
        msg = str(err)
        which = next((k for k in kwargs if msg.startswith(k) or f"{k}=" in msg or f"{k} " in msg),
                     None)
        where = f"model.neuron_kwargs.{which}" if which else "model.neuron_kwargs"
        raise ValueError(f"{where}: {msg}") from None


def _section_from_dict(name: str, cls, data) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"[{name}] must be a table, got {data!r}")
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise _unknown(f"{name}.{key}", key, fields)
    return cls(**data)


def config_from_dict(data: dict) -> RunConfig:
    """Validate a nested dict (as read from TOML) into a :class:`RunConfig`."""
    if not isinstance(data, dict):
        raise ValueError(f"a run config must be a table, got {type(data).__name__}")
    for name in data:
        if name not in SECTIONS:
            raise _unknown(name, name, SECTIONS)
    return RunConfig(**{name: _section_from_dict(name, cls, data.get(name, {}))
                        for name, cls in SECTIONS.items()})


# ---- the keys table (printed by `membra config-keys`, copied into docs/training.md) ----------
@dataclass(frozen=True)
class ConfigKey:
    """One row of the keys table: full key, TOML type, default, valid values, meaning."""

    key: str
    type: str
    default: str
    valid: str
    doc: str


def key_table() -> list[ConfigKey]:
    """Every config key, in section and field order, from the dataclasses themselves."""
    names = {str: "string", int: "integer", float: "number", bool: "bool", dict: "table",
             list: "array"}
    rows = []
    for sec, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            meta, tp = f.metadata, _base_type(_hints(cls)[f.name])
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if tp in (int, float):
                valid = _range_text(meta)
            elif meta.get("choices"):
                valid = " \\| ".join(f"`{c}`" for c in meta["choices"])
            elif tp is str:
                valid = "non-empty, no NUL"
            else:
                valid = ""
            extra = meta.get("valid")
            valid = "; ".join(v for v in (valid, extra) if v)
            rows.append(ConfigKey(f"{sec}.{f.name}", names[tp],
                                  "unset" if default is None else _toml_value(default),
                                  valid, meta.get("doc", "")))
    return rows


def keys_markdown() -> str:
    """The keys table as Markdown (``membra config-keys``; the table in docs/training.md)."""
    lines = ["| key | type | default | valid | meaning |", "|---|---|---|---|---|"]
    lines += [f"| `{r.key}` | {r.type} | `{r.default}` | {r.valid} | {r.doc} |"
              for r in key_table()]
    return "\n".join(lines)


# ---- checks that need the registries, the disk or the process count ------------------------
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


def config_to_dict(cfg: RunConfig) -> dict:
    """Plain nested dict of a config (``None`` values left out, as TOML has no null)."""
    out = {}
    for name in SECTIONS:
        sec = getattr(cfg, name)
        out[name] = {f.name: _plain(getattr(sec, f.name)) for f in dataclasses.fields(sec)
                     if getattr(sec, f.name) is not None}
    return out


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# ---- TOML in and out -----------------------------------------------------------------------
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"section.key=value"`` -> (``["section", "key"]``, value parsed as a TOML value; text
    that is not a TOML value is a string)."""
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value "
                         "(e.g. train.lr=1e-3)")
    key, raw = text.split("=", 1)
    path = [p.strip() for p in key.strip().split(".")]
    if len(path) < 2 or not all(path):
        raise ValueError(f"override {text!r}: the key must be section.key (e.g. train.epochs)")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value


def apply_overrides(data: dict, overrides) -> dict:
    """A copy of the nested dict ``data`` with ``section.key=value`` overrides applied."""
    data = json.loads(json.dumps(data))  # deep copy of plain TOML data
    for text in overrides or ():
        path, value = parse_override(text)
        if path[0] not in SECTIONS:
            raise _unknown(path[0], path[0], SECTIONS)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {text!r}: {part!r} is not a table")
        node[path[-1]] = value
    return data


def _read_toml(path) -> dict:
    """The TOML table of a run file; a missing file, bytes that are not UTF-8 (with line and
    column of the first bad byte) and bad TOML are errors naming the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} not found (expected a TOML run file, "
                                "e.g. configs/digits_imp_lts.toml)")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        col = err.start - raw.rfind(b"\n", 0, err.start)
        raise ValueError(f"config file {str(p)!r} is not UTF-8 text: byte 0x{raw[err.start]:02x} "
                         f"at line {line}, column {col} ({err.reason}); save it as UTF-8"
                         ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {str(p)!r} is not valid TOML: {err}") from None


def parse_config(text: str, overrides=()) -> RunConfig:
    """A :class:`RunConfig` from TOML text plus overrides."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config is not valid TOML: {err}") from None
    return config_from_dict(apply_overrides(data, overrides))


def load_config(path, overrides: list[str] = ()) -> RunConfig:
    """Read a TOML run file, apply ``section.key=value`` overrides and validate."""
    return config_from_dict(apply_overrides(_read_toml(path), overrides))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as TOML text; ``parse_config(dump_config(cfg)) == cfg``."""
    lines = ["# membra run config (resolved: every key, defaults filled in)"]
    for name, table in config_to_dict(cfg).items():
        lines.append(f"\n[{name}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
