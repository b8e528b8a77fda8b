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

The pieces: :mod:`.config_schema` (the sections, their keys and the keys table),
:mod:`.config_values` (checks of one value), :mod:`.config_toml` (dicts, TOML text and
overrides in and out), :mod:`.config_checks` (checks that need the registries, the disk or the
process count). This module is the public path to all of them.
"""

from __future__ import annotations

from .config_checks import check_batch_split, check_runnable, memory_error
from .config_schema import (
    SECTIONS,  # noqa: F401  (the section table, read by tests)
    ConfigKey,
    DataSection,
    EvalSection,
    ModelSection,
    RunConfig,
    RunSection,
    TrainSection,
    key_table,
    keys_markdown,
)
from .config_toml import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_config,
    parse_override,
)

__all__ = [
    "RunSection", "DataSection", "ModelSection", "TrainSection", "EvalSection", "RunConfig",
    "load_config", "parse_config", "config_from_dict", "config_to_dict", "dump_config",
    "apply_overrides", "parse_override", "ConfigKey", "key_table", "keys_markdown",
    "check_batch_split", "check_runnable", "memory_error",
]
