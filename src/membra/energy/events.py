"""Provenance of events: a ``TorchFunctionMode`` that follows spikes through every torch
operation of a forward and keeps, for each tensor computed from them by weight-free
operations, its event map (:mod:`membra.energy` states the rules)."""

from __future__ import annotations

import weakref

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode


def _is_counts(x: torch.Tensor) -> bool:
    return bool(((x >= 0) & (x == x.round())).all())


# ---- provenance of events ----------------------------------------------------------------
# While the model runs, every torch operation passes through _Events. A tensor computed from
# events by a weight-free operation gets an event map e (same shape): at each element, the
# number of (spike, path) pairs that reach it, i.e. the operation applied to the events with
# every nonzero coefficient replaced by 1. _PURE marks tensors whose values are their own
# event counts (spikes, ADDs of spikes, copies of them), so they need no second tensor.
_PURE = object()
_INPLACE_DUNDERS = {"__iadd__", "__imul__", "__itruediv__", "__isub__", "__iand__", "__ior__",
                    "__setitem__"}


def _is_number(c) -> bool:
    return isinstance(c, (int, float)) and not isinstance(c, bool)


def _arg(args, kwargs, i: int, name: str, default=None):
    """Argument ``name`` given at position ``i`` or by keyword."""
    return args[i] if len(args) > i else kwargs.get(name, default)


def _copy(func, args, kwargs, out, ev, pure):
    """Copies and zeros (reshape, slicing, padding, concatenation, nearest upsampling, sum):
    every output element is a sum of input elements with coefficient 1, so the same op maps
    the events. ``args[0]`` is the data (a tensor, or a list of tensors for ``cat``)."""
    data = args[0] if args else None
    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if not all(isinstance(t, torch.Tensor) and ev(t) is not None for t in items):
        return None
    if all(pure(t) for t in items):
        return _PURE
    e = type(data)(ev(t) for t in items) if isinstance(data, (list, tuple)) else ev(data)
    return func(e, *args[1:], **kwargs)


def _convert(func, args, kwargs, out, ev, pure):
    """dtype/device conversions keep the events."""
    e = ev(args[0])
    return None if e is None else _PURE if pure(args[0]) else e.to(out.device)


def _pad(func, args, kwargs, out, ev, pure):
    """Zero, reflect, replicate or circular padding copies; a nonzero constant does not."""
    if _arg(args, kwargs, 2, "mode", "constant") == "constant" and \
            _arg(args, kwargs, 3, "value") not in (None, 0):
        return None
    return _copy(func, args, kwargs, out, ev, pure)


def _interpolate(func, args, kwargs, out, ev, pure):
    """Nearest upsampling copies; interpolating modes weight their inputs (analog)."""
    if _arg(args, kwargs, 3, "mode", "nearest") not in ("nearest", "nearest-exact"):
        return None
    return _copy(func, args, kwargs, out, ev, pure)


def _dropout(func, args, kwargs, out, ev, pure):
    """Dropout: identity in eval; in training the kept events, ``e * [out != 0]``."""
    e = ev(args[0])
    if e is None or not _arg(args, kwargs, 2, "training", True):
        return None if e is None else _PURE if pure(args[0]) else e
    return e * (out != 0)


def _sum_pool(d: int):
    """Average pooling -> the sum over the same windows (divisor 1), exact at padding and
    ceil-mode borders; 1-d pooling runs as 2-d pooling over a unit height."""
    def rule(func, args, kwargs, out, ev, pure):
        e = ev(args[0])
        if e is None:
            return None
        k, stride = _arg(args, kwargs, 1, "kernel_size"), _arg(args, kwargs, 2, "stride")
        pad, ceil = _arg(args, kwargs, 3, "padding", 0), _arg(args, kwargs, 4, "ceil_mode", False)
        if d > 1:
            return getattr(F, f"avg_pool{d}d")(e, k, stride or None, pad, ceil, True, 1)
        k, pad = (v[0] if isinstance(v, (tuple, list)) else v for v in (k, pad))
        stride = (stride[0] if isinstance(stride, (tuple, list)) else stride) or k
        return F.avg_pool2d(e.unsqueeze(-2), (1, k), (1, stride), (0, pad), ceil, True,
                            1).squeeze(-2)
    return rule


def _bin_sums(d: int):
    """Adaptive average pooling -> the sum of each bin ``[floor(i n/m), ceil((i+1) n/m))``
    (the bins PyTorch averages; they overlap when m does not divide n), by prefix sums."""
    def rule(func, args, kwargs, out, ev, pure):
        e = ev(args[0])
        if e is None:
            return None
        for k, m in enumerate(out.shape[-d:]):
            dim = e.dim() - d + k
            n, i = e.shape[dim], torch.arange(m, device=e.device)
            c = torch.cat([torch.zeros_like(e.narrow(dim, 0, 1)), e.cumsum(dim)], dim)
            e = c.index_select(dim, -((-(i + 1) * n) // m)) - c.index_select(dim, i * n // m)
        return e
    return rule


def _max_pool(d: int, adaptive: bool):
    """Max pooling selects one input per window: the events of the selected input."""
    where = 2 if adaptive else 6            # position of return_indices

    def rule(func, args, kwargs, out, ev, pure):
        e, x = ev(args[0]), args[0]
        if e is None:
            return None
        if pure(x):
            return (_PURE, None) if isinstance(out, tuple) else _PURE
        if isinstance(out, tuple):
            idx = out[1]
        elif len(args) > where:
            idx = func(*args[:where], True, *args[where + 1:], **kwargs)[1]
        else:
            idx = func(*args, **{**kwargs, "return_indices": True})[1]
        sel = e.flatten(-d).gather(-1, idx.flatten(-d)).view(idx.shape)
        return (sel, None) if isinstance(out, tuple) else sel
    return rule


def _mean(func, args, kwargs, out, ev, pure):
    """A mean is a sum scaled by a constant: the events of the sum."""
    e = ev(args[0])
    return None if e is None else torch.sum(e, *args[1:], **kwargs)


def _add(func, args, kwargs, out, ev, pure):
    """ADD of two event maps (a SEW residual): the counts add up; ``+ 0`` is a copy."""
    a, b = args[0], _arg(args, kwargs, 1, "other")
    alpha = kwargs.get("alpha", 1)
    if _is_number(b):
        return _copy(func, args, kwargs, out, ev, pure) if b == 0 else None
    if not isinstance(b, torch.Tensor) or ev(a) is None or ev(b) is None:
        return None
    if alpha == 0:
        return _PURE if pure(a) else ev(a)
    return _PURE if pure(a) and pure(b) and alpha == 1 else ev(a) + ev(b)


def _scale(func, args, kwargs, out, ev, pure):
    """Multiplication or division by a nonzero constant folds into the next layer's
    weights: same events (a product with 0 has none)."""
    a, c = args[0], _arg(args, kwargs, 1, "other")
    e = ev(a)
    if e is None or not _is_number(c) or kwargs.get("rounding_mode") is not None:
        return None
    if c == 0:
        return None if "div" in func.__name__ else torch.zeros_like(e)
    return _PURE if pure(a) and c == 1 else e


def _zeros_like(func, args, kwargs, out, ev, pure):
    """Zeros shaped like events: no events."""
    return None if ev(args[0]) is None else _PURE


def _setitem(func, args, kwargs, out, ev, pure):
    """``t[idx] = v`` into an event map: the events of ``v`` (none for a 0) at ``idx``."""
    t, idx, v = args
    ev_v = 0 if _is_number(v) and v == 0 else ev(v)
    if ev(t) is None or ev_v is None:
        return None
    if pure(t) and (pure(v) or _is_number(v)):
        return _PURE
    e = ev(t).clone()
    e[idx] = ev_v
    return e


def _names(rule, names: str) -> dict:
    return dict.fromkeys(names.split(), rule)


_RULES = {
    **_names(_copy, "reshape view view_as reshape_as flatten unflatten contiguous clone detach "
                    "expand expand_as broadcast_to unsqueeze squeeze permute transpose swapaxes "
                    "swapdims t movedim moveaxis __getitem__ select narrow repeat tile "
                    "repeat_interleave split chunk unbind tensor_split cat concat concatenate "
                    "stack hstack vstack dstack roll flip fliplr flipud rot90 pixel_shuffle "
                    "pixel_unshuffle channel_shuffle native_channel_shuffle sum nansum "
                    "requires_grad_ detach_"),
    **_names(_convert, "to float double half bfloat16 type cpu cuda"),
    **_names(_dropout, "dropout dropout1d dropout2d dropout3d feature_dropout"),
    **_names(_add, "add __add__ __radd__ add_ __iadd__"),
    **_names(_scale, "mul __mul__ __rmul__ mul_ __imul__ div __truediv__ div_ __itruediv__ "
                     "true_divide"),
    "pad": _pad, "interpolate": _interpolate, "mean": _mean, "zeros_like": _zeros_like,
    "__setitem__": _setitem,
    **{f"avg_pool{d}d": _sum_pool(d) for d in (1, 2, 3)},
    **{f"adaptive_avg_pool{d}d": _bin_sums(d) for d in (1, 2, 3)},
    **{f"max_pool{d}d": _max_pool(d, False) for d in (1, 2, 3)},
    **{f"adaptive_max_pool{d}d": _max_pool(d, True) for d in (1, 2, 3)},
}


def _logic(args, out, pure) -> bool:
    """An elementwise function of spike/count maps only (AND ``o * s``, ``1 - s``, ReLU...)
    whose values are non-negative integers is again a count map."""
    ts = [a for a in args if isinstance(a, torch.Tensor)]
    if not ts or not all(pure(t) for t in ts) or not isinstance(out, torch.Tensor) or \
            any(isinstance(a, (list, tuple)) for a in args):
        return False
    if out.shape != torch.broadcast_shapes(*(t.shape for t in ts)):
        return False
    return out.dtype == torch.bool or _is_counts(out)


class _Events(TorchFunctionMode):
    """Traces event maps through the torch operations of one forward (module doc)."""

    def __init__(self):
        super().__init__()
        self._maps: dict[int, tuple] = {}

    def events(self, t) -> torch.Tensor | None:
        """Event map of ``t`` (``t`` itself for spikes), None for analog values."""
        ent = self._maps.get(id(t)) if isinstance(t, torch.Tensor) else None
        if ent is None or ent[0]() is not t:
            return None
        return t if ent[1] is _PURE else ent[1]

    def mark(self, t: torch.Tensor, e=_PURE) -> None:
        """Record ``e`` as the event map of ``t`` (default: ``t`` counts its own events)."""
        key = id(t)

        def drop(ref, key=key):
            if self._maps.get(key, (None,))[0] is ref:
                del self._maps[key]

        self._maps[key] = (weakref.ref(t, drop), e)

    def spikes_hook(self, module, args, out) -> None:
        """Forward hook of a spiking neuron: its output spikes count themselves. A module that
        emits weighted spikes (``emits_spikes = True``, output ``w * s``) has its binary spikes
        ``s`` of the call in ``last_spikes``: they are the events."""
        if isinstance(out, torch.Tensor):
            s = getattr(module, "last_spikes", None)
            weighted = isinstance(s, torch.Tensor) and s.shape == out.shape and s is not out
            self.mark(out, s if weighted else _PURE)

    def _pure(self, t) -> bool:
        ent = self._maps.get(id(t)) if isinstance(t, torch.Tensor) else None
        return ent is not None and ent[0]() is t and ent[1] is _PURE

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = [b for a in args for b in (a if isinstance(a, (list, tuple)) else (a,))]
        seen = {id(t): e for t in flat if (e := self.events(t)) is not None}
        if not seen:
            return func(*args, **kwargs)
        pures = {id(t) for t in flat if self._pure(t)}
        name = getattr(func, "__name__", "")
        inplace = (name.endswith("_") and not name.startswith("__")) or \
            name in _INPLACE_DUNDERS or kwargs.get("inplace") is True
        if inplace:                             # the op overwrites spikes that count themselves
            seen = {k: (e.clone() if k in pures else e) for k, e in seen.items()}
        result = func(*args, **kwargs)
        out = args[0] if name == "__setitem__" else result     # setitem writes into args[0]
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if not any(isinstance(o, torch.Tensor) for o in outs):
            return result

        def ev(t):
            return seen.get(id(t)) if isinstance(t, torch.Tensor) else None

        def pure(t):
            return isinstance(t, torch.Tensor) and id(t) in pures

        rule = _RULES.get(name)
        try:
            res = rule(func, args, kwargs, out, ev, pure) if rule is not None else None
        except (RuntimeError, TypeError, ValueError, IndexError):
            res = None                          # an unforeseen call form: count it as analog
        if res is None and _logic(args, out, pure):
            res = _PURE
        if res is None and not inplace and any(o is t for o in outs for t in flat):
            return result                       # returned unchanged (e.g. dropout in eval)
        if not isinstance(res, (tuple, list)):
            res = [res] * len(outs) if res is _PURE or res is None else [res]
        if len(res) != len(outs):
            res = [None] * len(outs)
        for o, e in zip(outs, res, strict=True):
            if isinstance(o, torch.Tensor):
                if e is None:
                    self._maps.pop(id(o), None)
                else:
                    self.mark(o, e)
        return result


