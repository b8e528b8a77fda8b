"""Nested state (model, optimizer, scheduler, scaler) to tensors plus a JSON skeleton and
back, and strict loading of a model's weights."""

from __future__ import annotations

import torch

from .checkpoint_file import _short


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


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """``"name (a NaN, b inf of n)"`` for every floating-point tensor holding NaN or inf."""
    out = []
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            out.append(f"{name} ({nan} NaN, {inf} inf of {t.numel()})")
    return out
