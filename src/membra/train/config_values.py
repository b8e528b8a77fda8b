"""One config value: its type, range, choices and TOML spelling.

Every section of :mod:`.config_schema` checks each of its fields with :func:`_coerce` (type
and numeric range) and :func:`_check_value` (choices, non-empty names without NUL); errors
name the full key (``train.lr``) and, for numbers, the valid range.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import types
import typing


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

