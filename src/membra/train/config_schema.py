"""The run config's schema: five frozen sections of typed, ranged keys, and the keys table.

A run file has five tables, ``[run]``, ``[data]``, ``[model]``, ``[train]`` and ``[eval]``;
every key has a type and a default (:class:`RunConfig`), and every numeric key a range, all
declared here with :func:`_opt`. A section checks every field when it is built
(:mod:`.config_values`), so no path leads to an invalid config. :func:`key_table` lists every
key from the dataclasses themselves (``membra config-keys`` prints it).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field

from ..functional.kinds import ZOO_KINDS
from .config_values import (
    _base_type,
    _check_value,
    _coerce,
    _hints,
    _range_text,
    _toml_value,
    _unknown,
)


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


def _neuron_params(neuron: str) -> dict[str, inspect.Parameter]:
    """The named arguments of the neuron class, following ``**kwargs`` to the base class
    (``RLIF(shape, **kwargs)`` takes LIF's)."""
    from ..models.common import NEURON_CLASSES

    params: dict[str, inspect.Parameter] = {}
    for cls in NEURON_CLASSES[neuron].__mro__:
        if "__init__" not in vars(cls):
            continue
        own = inspect.signature(cls.__init__).parameters
        params.update({n: p for n, p in own.items() if n not in ("self", "shape")
                       and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in params})
        if not any(p.kind is p.VAR_KEYWORD for p in own.values()):
            break
    return params


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

