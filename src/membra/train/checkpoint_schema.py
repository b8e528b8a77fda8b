"""The metadata schema of a training checkpoint (as written by ``membra.train.fit``): keys,
types, ranges and the invariants between them, checked before a run resumes or loads."""

from __future__ import annotations

import math

import torch

from .checkpoint_file import _short
from .checkpoint_state import unflatten_state

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


