"""Run configs in and out: nested dicts and TOML text to :class:`RunConfig` and back, and
``section.key=value`` overrides (TOML value syntax; see :mod:`.config`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from .config_schema import SECTIONS, RunConfig
from .config_values import _toml_key, _toml_value, _unknown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


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


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as TOML text; ``parse_config(dump_config(cfg)) == cfg``."""
    lines = ["# membra run config (resolved: every key, defaults filled in)"]
    for name, table in config_to_dict(cfg).items():
        lines.append(f"\n[{name}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
