r"""Finite-memory spike-train rules: :class:`SpikeRule`.

A rule maps binary input trains :math:`X \in \{0,1\}^{T \times n}` to an output train
:math:`y \in \{0,1\}^T` through a window function :math:`g`:

.. math::

    y[t] = g(X[t], X[t-1], \dots, X[t-m+1]),\qquad X[s] = 0 \text{ for } s < 0.

The window is stored as the integer :math:`\mathrm{idx} = \sum_{c,k} X_c[t-k]\, 2^{c m + k}`
(channel ``c``, lag ``k``; lag 0 is the current step), and the rule as a table of
:math:`2^{nm}` booleans indexed by ``idx``. A rule is *input-dominated* when
:math:`g = 0` on every window whose current step is silent on all channels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from .errors import MemoryTooLongError, NotBinaryError, NotCausalError

__all__ = ["SpikeRule", "window_indices", "binary_error"]

_WARN_BITS = 16
_MAX_BITS = 24
_RULE_KEYS = ("pattern", "m", "n_inputs", "table", "accept")


def _check_pos_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; booleans, floats and strings are refused."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_bits(bits: int, what: str = "n_inputs * m") -> None:
    """Refuse a window table of more than ``2**_MAX_BITS`` entries *before* allocating it."""
    if bits > _MAX_BITS:
        raise ValueError(f"{what} = {bits} is too large for a window table (max "
                         f"{_MAX_BITS}); gap rules of any m compile without a table with "
                         "membra.construct.compact.gap_circuit")


def _check_list(name: str, value) -> None:
    """A JSON list (or a tuple / 1-d array from Python); a string is not a list of values."""
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(f"{name} must be a list, got {type(value).__name__} {value!r:.40}")
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {value.shape}")


def _is_bit(v) -> bool:
    return isinstance(v, (bool, np.bool_, int, np.integer)) and v in (0, 1)


def _as_bits(name: str, value) -> np.ndarray:
    """``value`` as a bool array; each entry must be 0, 1, false or true (not 1.0, not "1")."""
    _check_list(name, value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biu" and \
            np.isin(value, (0, 1)).all():
        return value.astype(bool)
    bad = next(((i, v) for i, v in enumerate(value) if not _is_bit(v)), None)
    if bad is not None:
        raise NotBinaryError(f"{name}[{bad[0]}] must be 0, 1, false or true, got {bad[1]!r}")
    return np.array(value, dtype=bool).reshape(len(value))


def binary_error(name: str, value, index) -> ValueError:
    """The error for a non-spike value ``value`` at ``name[index]`` of a 0/1 input train."""
    where = ", ".join(str(int(i)) for i in index)
    return ValueError(f"{name} must contain only 0 and 1 (spikes), got {value!r} at "
                      f"{name}[{where}]")


def _as_trains(x, n_inputs: int, name: str = "x") -> tuple[np.ndarray, bool]:
    """Return ``x`` as an int8 array ``(T, B, n)`` and whether a batch axis was given.

    Accepts ``(T,)`` for one input line, ``(T, n)`` or ``(T, B, n)``; values must be 0/1."""
    arr = np.asarray(x)
    if arr.ndim == 1 and n_inputs == 1:
        arr = arr[:, None]
    if arr.ndim == 2:
        arr, batched = arr[:, None, :], False
    elif arr.ndim == 3:
        batched = True
    else:
        raise ValueError(f"{name} must have shape (T, n) or (T, B, n) with n = {n_inputs}, got "
                         f"{arr.shape}")
    if arr.shape[-1] != n_inputs:
        raise ValueError(f"{name} must have {n_inputs} input channel(s) on its last axis, got "
                         f"shape {arr.shape}")
    bad = ~np.isin(arr, (0, 1))
    if arr.size and bad.any():
        index = np.argwhere(bad)[0]
        raise binary_error(name, arr[tuple(index)].item(), index)
    return arr.astype(np.int8), batched


def window_indices(x: np.ndarray, m: int) -> np.ndarray:
    """Window index :math:`\\sum_{c,k} X_c[t-k] 2^{cm+k}` at every step of ``x`` ``(T, B, n)``;
    returns an int64 array ``(T, B)``."""
    T, B, n = x.shape
    idx = np.zeros((T, B), dtype=np.int64)
    for c in range(n):
        for k in range(m):
            if k < T:
                idx[k:] += x[: T - k, :, c].astype(np.int64) << (c * m + k)
    return idx


class SpikeRule:
    """A causal, finite-memory rule on ``n_inputs`` spike trains, stored as its window table.

    Build it with :meth:`from_table`, :meth:`from_predicate`, :meth:`from_pattern` or
    :meth:`from_function`; evaluate it with ``rule(x)`` (the numpy reference evaluator)."""

    def __init__(self, table, m: int, n_inputs: int = 1):
        self.m = _check_pos_int("m", m)
        self.n_inputs = _check_pos_int("n_inputs", n_inputs)
        _check_bits(self.m * self.n_inputs)
        size = 1 << (self.m * self.n_inputs)
        _check_list("table", table)
        if len(table) != size:
            raise ValueError(f"table must have 2**(n_inputs*m) = {size} entries (n_inputs="
                             f"{self.n_inputs}, m={self.m}), got {len(table)}")
        self.table = _as_bits("table", table)
        self.table.setflags(write=False)

    # ---- constructors --------------------------------------------------------------------
    @classmethod
    def from_table(cls, table, m: int, n_inputs: int = 1) -> SpikeRule:
        """Rule from its window table: ``table[idx]`` is :math:`g` of window ``idx``. The table
        is a list, tuple or 1-d array of ``2**(n_inputs*m)`` entries, each 0, 1, ``False`` or
        ``True`` (a float such as 1.0 raises :class:`NotBinaryError`)."""
        return cls(table, m, n_inputs)

    @classmethod
    def from_predicate(cls, fn: Callable[[np.ndarray], bool], m: int,
                       n_inputs: int = 1) -> SpikeRule:
        """Rule from ``fn(window) -> bool``; ``window`` is an int array ``(n_inputs, m)`` with
        the lag on axis 1 (``window[c, 0]`` is the current step of channel ``c``)."""
        m = _check_pos_int("m", m)
        n = _check_pos_int("n_inputs", n_inputs)
        _check_bits(n * m)
        table = np.zeros(1 << (n * m), dtype=bool)
        for idx in range(table.size):
            out = fn(cls.window_of(idx, m, n))
            if out not in (0, 1, True, False):
                raise NotBinaryError(f"predicate returned {out!r} for window {idx}; expected a "
                                     "bool or 0/1")
            table[idx] = bool(out)
        return cls(table, m, n)

    @classmethod
    def from_pattern(cls, pattern: Sequence[int]) -> SpikeRule:
        """One-input rule "the last ``len(pattern)`` steps equal ``pattern``", given oldest to
        newest (``pattern[-1]`` is the current step)."""
        _check_list("pattern", pattern)
        if len(pattern) == 0:
            raise ValueError("pattern must hold at least one 0/1 value, got []")
        _check_bits(len(pattern), "the pattern's length m")
        pat = _as_bits("pattern", pattern)
        m = len(pat)
        idx = sum(int(b) << (m - 1 - i) for i, b in enumerate(pat))
        table = np.zeros(1 << m, dtype=bool)
        table[idx] = True
        return cls(table, m, 1)

    @classmethod
    def from_function(cls, fn: Callable[[np.ndarray], np.ndarray], m: int, n_inputs: int = 1,
                      probes: int = 2000, seed: int = 0) -> SpikeRule:
        """Rule from a train-to-train function ``fn(X: (T, n) int array) -> (T,) array``.

        The table is read off ``fn`` on the :math:`2^{nm}` trains of length ``m`` (the last step
        holds the window). Membership in the class is then *probed*, not proved: on ``probes``
        random trains (random rates and lengths, seeded) the function must return 0/1
        (else :class:`NotBinaryError`), be unchanged at ``t`` when the inputs after ``t`` are
        redrawn (else :class:`NotCausalError`), and agree with the table at every step, also after
        the inputs before ``t - m + 1`` are redrawn (else :class:`MemoryTooLongError`). A function
        that passes can still be outside the class on trains the probes did not draw."""
        m = _check_pos_int("m", m)
        n = _check_pos_int("n_inputs", n_inputs)
        _check_bits(n * m)
        probes = _check_pos_int("probes", probes, 0)
        rng = np.random.default_rng(seed)

        def call(X: np.ndarray) -> np.ndarray:
            y = np.asarray(fn(X.copy()))
            if y.shape == (X.shape[0], 1):
                y = y[:, 0]
            if y.shape != (X.shape[0],):
                raise ValueError(f"fn must map a (T, n) train to a (T,) train; for T = "
                                 f"{X.shape[0]} it returned shape {y.shape}")
            if not np.isin(y, (0, 1)).all():
                bad = y[~np.isin(y, (0, 1))].ravel()[0]
                raise NotBinaryError(f"fn returned {bad!r}; spike-train outputs must be 0 or 1")
            return y.astype(bool)

        table = np.zeros(1 << (n * m), dtype=bool)
        for idx in range(table.size):
            table[idx] = call(cls.window_of(idx, m, n).T[::-1].copy())[-1]
        rule = cls(table, m, n)
        trains = []
        for _ in range(probes):
            T = int(rng.integers(m + 1, 4 * m + 16))
            trains.append((rng.random((T, n)) < rng.uniform(0.1, 0.9)).astype(np.int8))
        outputs = [call(X) for X in trains]
        for X, y in zip(trains, outputs, strict=True):  # causality first: it explains more
            t = int(rng.integers(0, X.shape[0] - 1))
            X2 = X.copy()
            X2[t + 1:] = rng.random((X.shape[0] - t - 1, n)) < 0.5
            if (call(X2)[: t + 1] != y[: t + 1]).any():
                raise NotCausalError(f"fn is not causal: redrawing the inputs after step {t} "
                                     f"changed its output at or before step {t}")
        for X, y in zip(trains, outputs, strict=True):
            ref = rule(X)
            if (ref != y).any():
                s = int(np.argmax(ref != y))
                raise MemoryTooLongError(f"fn's output at step {s} is not a function of the "
                                         f"last m = {m} steps (it depends on older inputs or "
                                         "on the absolute time)")
        return rule

    # ---- windows and properties ---------------------------------------------------------
    @staticmethod
    def window_of(idx: int, m: int, n_inputs: int = 1) -> np.ndarray:
        """Window ``idx`` as an int array ``(n_inputs, m)``, lag on axis 1."""
        bits = [(idx >> (c * m + k)) & 1 for c in range(n_inputs) for k in range(m)]
        return np.array(bits, dtype=np.int8).reshape(n_inputs, m)

    @property
    def n_windows(self) -> int:
        return self.table.size

    @property
    def n_accepted(self) -> int:
        """Number of accepted windows (``g = 1``)."""
        return int(self.table.sum())

    @property
    def n_runs(self) -> int:
        """Number of maximal runs of accepted windows in the order of ``idx``."""
        t = self.table.astype(np.int8)
        return int(((t[1:] == 1) & (t[:-1] == 0)).sum() + t[0])

    @property
    def accepted(self) -> np.ndarray:
        """Indices of the accepted windows."""
        return np.flatnonzero(self.table)

    @property
    def silent_mask(self) -> np.ndarray:
        """Boolean mask of the windows whose current step is silent on every channel."""
        idx = np.arange(self.table.size)
        lag0 = sum(1 << (c * self.m) for c in range(self.n_inputs))
        return (idx & lag0) == 0

    @property
    def is_input_dominated(self) -> bool:
        """``g = 0`` whenever the current step is silent on every input line."""
        return not self.table[self.silent_mask].any()

    def warn_if_large(self) -> None:
        if self.n_inputs * self.m > _WARN_BITS:
            warnings.warn(f"n_inputs * m = {self.n_inputs * self.m} > {_WARN_BITS}: the window "
                          "table and the baseline circuit grow as 2**(n*m)", stacklevel=3)

    # ---- evaluation -----------------------------------------------------------------------
    def __call__(self, x) -> np.ndarray:
        """Reference evaluator: ``y[t] = table[idx(t)]`` for ``x`` of shape ``(T,)`` (one input),
        ``(T, n)`` or ``(T, B, n)``; returns int8 ``(T,)`` or ``(T, B)``."""
        arr, batched = _as_trains(x, self.n_inputs)
        y = self.table[window_indices(arr, self.m)].astype(np.int8)
        return y if batched else y[:, 0]

    def to_dict(self) -> dict:
        return {"m": self.m, "n_inputs": self.n_inputs,
                "accept": [int(i) for i in self.accepted]}

    @classmethod
    def from_dict(cls, d: dict) -> SpikeRule:
        """Rule from JSON: ``{"pattern": [1, 0, 1, 1]}``, ``{"m", "n_inputs", "table": [...]}``
        or ``{"m", "n_inputs", "accept": [idx, ...]}``. Every field is checked before anything
        is allocated; a wrong type, an unknown key or an out-of-range value is an error that
        names the field (``accept: [true]`` is refused, not read as a mask)."""
        if not isinstance(d, dict):
            raise TypeError(f"a rule must be a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_RULE_KEYS))
        if unknown:
            raise ValueError(f"unknown rule key(s) {unknown}; a rule is {{'pattern': [...]}} "
                             "or {'m', 'n_inputs', 'table' | 'accept'}")
        if "pattern" in d:
            if len(d) > 1:
                raise ValueError(f"a rule with 'pattern' takes no other key, got "
                                 f"{sorted(set(d) - {'pattern'})}")
            return cls.from_pattern(d["pattern"])
        if "m" not in d or not ({"table", "accept"} & set(d)):
            raise ValueError("a rule needs 'pattern', or 'm' with 'table' (2**(n_inputs*m) "
                             "0/1 values) or 'accept' (window indices)")
        if "table" in d and "accept" in d:
            raise ValueError("give either 'table' or 'accept', not both")
        m = _check_pos_int("m", d["m"])
        n = _check_pos_int("n_inputs", d.get("n_inputs", 1))
        _check_bits(n * m)
        if "table" in d:
            return cls(d["table"], m, n)
        accept = d["accept"]
        _check_list("accept", accept)
        size = 1 << (n * m)
        table = np.zeros(size, dtype=bool)
        for k, i in enumerate(accept):
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) or \
                    not 0 <= i < size:
                raise ValueError(f"accept[{k}] must be a window index, an int in [0, {size}), "
                                 f"got {i!r}")
            table[i] = True
        return cls(table, m, n)

    def __eq__(self, other) -> bool:
        return isinstance(other, SpikeRule) and self.m == other.m and \
            self.n_inputs == other.n_inputs and bool((self.table == other.table).all())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"SpikeRule(m={self.m}, n_inputs={self.n_inputs}, accepted={self.n_accepted}, "
                f"runs={self.n_runs}, input_dominated={self.is_input_dominated})")
