"""Run configs: TOML files parsed into frozen dataclasses.

A run file has five tables, ``[run]``, ``[data]``, ``[model]``, ``[train]`` and ``[eval]``;
every key has a type and a default (:class:`RunConfig`). An unknown key, a value of the wrong
type or an out-of-range value raises ``ValueError`` naming the full key (``train.lr``); for
unknown keys the message lists the valid ones with a "did you mean".

Overrides use TOML value syntax: ``train.lr=1e-3``, ``model.neuron_kwargs.tau=3.0``,
``run.name=foo`` (a value that is not valid TOML is taken as a string).

Example::

    cfg = load_config("configs/digits_imp_lts.toml", ["train.epochs=3"])
    print(dump_config(cfg))          # the resolved TOML, as saved in runs/<name>/config.toml
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "RunSection", "DataSection", "ModelSection", "TrainSection", "EvalSection", "RunConfig",
    "load_config", "parse_config", "config_from_dict", "config_to_dict", "dump_config",
    "apply_overrides", "parse_override",
]


def _opt(default, *, choices=None, min=None, max=None, gt=None, doc=""):
    meta = {"choices": choices, "min": min, "max": max, "gt": gt, "doc": doc}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunSection:
    """``[run]``: name of the run folder ``<out_dir>/<name>``, global seed, output root."""

    name: str = _opt("run", doc="run folder name under out_dir")
    seed: int = _opt(0, min=0, doc="seed of torch, numpy, random and the data order")
    out_dir: str = _opt("runs", doc="root folder of run folders")
    progress: bool = _opt(True, doc="show a progress bar per epoch")
    threads: int = _opt(0, min=0, doc="torch CPU threads per process (0: torch's default)")
    plots: bool = _opt(True, doc="write PNG plots at the end (needs matplotlib)")
    tensorboard: bool = _opt(True, doc="write TensorBoard events (needs tensorboard)")


@dataclass(frozen=True)
class DataSection:
    """``[data]``: dataset by name (``membra datasets``), time steps, loader settings.
    ``batch_size`` is the global batch, split evenly over distributed processes."""

    name: str = _opt("digits", doc="registered dataset name")
    T: int = _opt(4, min=1, doc="time steps")
    root: str | None = _opt(None, doc="folder with the user's files (datasets read from disk)")
    encoding: str = _opt("direct", doc="static-image encoding: direct | rate | latency")
    batch_size: int = _opt(64, min=1, doc="global training batch size")
    eval_batch_size: int = _opt(256, min=1, doc="global evaluation batch size")
    num_workers: int = _opt(0, min=0, doc="DataLoader worker processes")
    options: dict = _opt({}, doc="extra keyword options of the dataset")


@dataclass(frozen=True)
class ModelSection:
    """``[model]``: model by name (``membra models``), neuron type and neuron options
    (``neuron_kwargs`` go to every :class:`membra.nn.LIF`/:class:`membra.nn.IF`)."""

    name: str = _opt("mlp", doc="registered model name")
    neuron: str = _opt("lif", choices=("lif", "if"), doc="spiking neuron type")
    neuron_kwargs: dict = _opt({}, doc="options of every spiking neuron")
    options: dict = _opt({}, doc="extra keyword options of the model builder")


@dataclass(frozen=True)
class TrainSection:
    """``[train]``: optimisation. ``lr`` follows a linear warm-up over ``warmup_epochs`` then
    ``schedule`` (cosine down to ``min_lr``, or constant), updated every step."""

    epochs: int = _opt(10, min=1, doc="training epochs")
    optimizer: str = _opt("adamw", choices=("adamw", "sgd"), doc="optimizer")
    lr: float = _opt(1e-3, gt=0.0, doc="peak learning rate")
    weight_decay: float = _opt(0.0, min=0.0, doc="decay of weights (never IMP/norm/bias)")
    momentum: float = _opt(0.9, min=0.0, max=1.0, doc="SGD momentum")
    betas: list = _opt([0.9, 0.999], doc="AdamW betas")
    schedule: str = _opt("cosine", choices=("cosine", "constant"), doc="learning-rate schedule")
    warmup_epochs: float = _opt(0.0, min=0.0, doc="linear warm-up length in epochs")
    min_lr: float = _opt(0.0, min=0.0, doc="floor of the cosine schedule")
    loss: str = _opt("mean_ce", choices=("mean_ce", "lts_ce", "tet", "ls_tet"), doc="loss")
    loss_eps: float = _opt(0.01, min=0.0, max=1.0, doc="label smoothing of ls_tet")
    loss_lambda: float = _opt(0.0, min=0.0, max=1.0, doc="MSE weight of tet")
    loss_phi: float = _opt(1.0, doc="MSE target of tet")
    grad_clip: float = _opt(0.0, min=0.0, doc="gradient-norm clip (0: off)")
    amp: bool = _opt(False, doc="mixed precision (CUDA only)")
    checkpoint_every: int = _opt(1, min=1, doc="checkpoint every N epochs (and the last)")
    keep_checkpoints: int = _opt(2, min=0, doc="epoch checkpoints kept (0: all)")
    max_steps: int = _opt(0, min=0, doc="stop after this many optimizer steps (0: no limit)")


@dataclass(frozen=True)
class EvalSection:
    """``[eval]``: readout that defines the reported accuracy."""

    readout: str = _opt("mean", choices=("mean", "last"), doc="readout of the reported accuracy")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: ``run``, ``data``, ``model``, ``train``, ``eval``."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def replace(self, **sections) -> RunConfig:
        """A copy with whole sections or ``section__key=value`` fields replaced."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in sections.items():
            if "__" in key:
                sec, k = key.split("__", 1)
                out[sec] = dataclasses.replace(out[sec], **{k: value})
            else:
                out[key] = value
        return config_from_dict(config_to_dict(RunConfig(**out)))


SECTIONS: dict[str, type] = {"run": RunSection, "data": DataSection, "model": ModelSection,
            "train": TrainSection, "eval": EvalSection}


# ---- validation ----------------------------------------------------------------------------
def _did_you_mean(name: str, valid) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(key: str, name: str, valid) -> ValueError:
    return ValueError(f"unknown config key {key!r}{_did_you_mean(name, valid)}; valid keys: "
                      f"{', '.join(sorted(valid))}")


def _type_name(tp) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false",
            dict: "a table", list: "an array"}.get(tp, str(tp))


def _coerce(key: str, value, tp):
    """Check ``value`` against the annotation ``tp`` (str, int, float, bool, dict, list or
    ``X | None``); ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        tp = args[0]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{key} must be finite, got {value!r}")
        return value
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ValueError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if tp is dict:
        return dict(value)
    if tp is list:
        return list(value)
    return value


def _check_value(key: str, value, meta) -> None:
    if value is None:
        return
    if meta.get("choices") and value not in meta["choices"]:
        raise ValueError(f"{key}={value!r} is not valid; choose one of "
                         f"{', '.join(map(repr, meta['choices']))}"
                         f"{_did_you_mean(str(value), meta['choices'])}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ValueError(f"{key} must be >= {meta['min']}, got {value!r}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ValueError(f"{key} must be <= {meta['max']}, got {value!r}")
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise ValueError(f"{key} must be > {meta['gt']}, got {value!r}")
    if isinstance(value, str) and not value and not key.endswith("root"):
        raise ValueError(f"{key} must not be empty")


def _neuron_params(neuron: str) -> dict[str, inspect.Parameter]:
    from ..nn import IF, LIF

    cls = LIF if neuron == "lif" else IF
    return {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
            if n not in ("self", "shape")}


def _check_neuron_kwargs(neuron: str, kwargs: dict) -> None:
    """Unknown neuron options and bad values are errors naming ``model.neuron_kwargs.<k>``;
    values are checked by building one neuron with them."""
    params = _neuron_params(neuron)
    for k in kwargs:
        if k not in params:
            raise _unknown(f"model.neuron_kwargs.{k}", k, params)
    from ..nn import IF, LIF

    cls = LIF if neuron == "lif" else IF
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
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{name}.{key}"
        if key not in fields:
            raise _unknown(full, key, fields)
        value = _coerce(full, value, hints[key])
        _check_value(full, value, fields[key].metadata)
        kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(data: dict) -> RunConfig:
    """Validate a nested dict (as read from TOML) into a :class:`RunConfig`."""
    if not isinstance(data, dict):
        raise ValueError(f"a run config must be a table, got {type(data).__name__}")
    for name in data:
        if name not in SECTIONS:
            raise _unknown(name, name, SECTIONS)
    sections = {name: _section_from_dict(name, cls, data.get(name, {}))
                for name, cls in SECTIONS.items()}
    cfg = RunConfig(**sections)
    betas = cfg.train.betas
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ValueError(f"train.betas must be two numbers in [0, 1), got {betas!r}")
    if cfg.train.warmup_epochs > cfg.train.epochs:
        raise ValueError(f"train.warmup_epochs={cfg.train.warmup_epochs} exceeds "
                         f"train.epochs={cfg.train.epochs}")
    if cfg.train.min_lr > cfg.train.lr:
        raise ValueError(f"train.min_lr={cfg.train.min_lr} exceeds train.lr={cfg.train.lr}")
    _check_neuron_kwargs(cfg.model.neuron, cfg.model.neuron_kwargs)
    if "/" in cfg.run.name or cfg.run.name in (".", ".."):
        raise ValueError(f"run.name must be a folder name without '/', got {cfg.run.name!r}")
    return cfg


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
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} not found (expected a TOML run file, "
                                "e.g. configs/digits_imp_lts.toml)")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
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
