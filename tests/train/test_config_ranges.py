"""Every config key is checked at the config boundary: numeric keys against a stated range,
name keys against NUL and emptiness, the file against non-UTF-8 bytes, and memory that a valid
config cannot get is reported with the keys that size it.

The keys are found by walking the frozen dataclasses, never listed by hand."""

import dataclasses
import functools
import math
import random
import re
import typing
from pathlib import Path

import pytest
import torch

from membra.train.config import SECTIONS, load_config, parse_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def _keys(kinds):
    """``(full key, annotation, default)`` of every field whose type is in ``kinds``."""
    out = []
    for sec, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
            if args[0] in kinds:
                default = f.default if f.default is not dataclasses.MISSING else None
                out.append((f"{sec}.{f.name}", args[0], default))
    return out


NUMERIC = _keys((int, float))
STRINGS = _keys((str,))
_RANGE = re.compile(r"([\[(])(-?[0-9.e+-]+), (-?[0-9.e+-]+)([\])])")


def _error(key: str, toml_value: str, base=()) -> str | None:
    """The error text of ``key=toml_value`` (``None`` when accepted)."""
    try:
        parse_config("", [*base, f"{key}={toml_value}"])
    except ValueError as err:
        return str(err)
    return None


def _stated_range(msg: str):
    """``(lo, hi, lo_open)`` of the first ``[lo, hi]`` / ``(lo, hi]`` in ``msg``."""
    m = _RANGE.search(msg)
    assert m, f"no valid range stated in: {msg}"
    return float(m.group(2)), float(m.group(3)), m.group(1) == "("


def _inside(v: float, rng) -> bool:
    lo, hi, lo_open = rng
    return (lo < v if lo_open else lo <= v) and v <= hi


@functools.cache
def _ranges() -> dict:
    """The range each numeric key states when refusing NaN (always out of range)."""
    out = {}
    for key, _, _ in NUMERIC:
        msg = _error(key, "nan")
        assert msg is not None and key in msg, (key, msg)
        out[key] = _stated_range(msg)
    return out


def test_walk_finds_the_keys():
    names = {k for k, _, _ in NUMERIC}
    assert {"data.T", "run.threads", "train.lr", "train.loss_phi", "run.seed"} <= names
    assert {"run.name", "data.root", "data.name", "model.name"} <= {k for k, _, _ in STRINGS}


ALWAYS_BAD = ["100000000000000000000", "-100000000000000000000", "1e20", "-1e20", "1e300",
              "nan", "-nan", "inf", "-inf", "true", "false", "'3'", "[1]"]


@pytest.mark.parametrize("key, tp, default", NUMERIC, ids=[k for k, _, _ in NUMERIC])
@pytest.mark.parametrize("value", ALWAYS_BAD)
def test_numeric_key_refuses_huge_nan_inf_bool_with_range(key, tp, default, value):
    msg = _error(key, value)
    assert msg is not None, f"{key}={value} was accepted"
    assert key in msg, msg
    rng = _stated_range(msg)
    assert _inside(float(default), rng), f"default {default} outside stated range {rng}"
    v = float(value) if value[0] in "-0123456789" else math.nan
    if math.isfinite(v):
        assert not _inside(v, rng), f"{key}={value} refused but inside {rng}: {msg}"


@pytest.mark.parametrize("key, tp, default", NUMERIC, ids=[k for k, _, _ in NUMERIC])
def test_numeric_key_accepts_exactly_its_stated_range(key, tp, default):
    """0, -1, the bounds, just outside them and random points inside: accepted iff inside the
    range the key states (warm-up and min_lr are bounded by epochs and lr, set to their max)."""
    ranges = _ranges()
    rng = ranges[key]
    lo, hi, lo_open = rng
    assert math.isfinite(lo) and math.isfinite(hi) and lo < hi
    integer = tp is int
    base = [f"train.epochs={int(ranges['train.epochs'][1])}",
            f"train.lr={ranges['train.lr'][1]}"]
    base = [b for b in base if not b.startswith(key + "=")]
    step = 1 if integer else max(abs(hi), 1.0) * 1e-6
    r = random.Random(key)
    candidates = [0, -1, 1, lo, hi, hi + step, lo - step, (lo + hi) / 2]
    candidates += [lo + (hi - lo) * r.random() for _ in range(5)]
    for v in candidates:
        v = int(round(v)) if integer else float(v)
        text = str(v) if integer else repr(v)
        msg = _error(key, text, base)
        if _inside(v, rng):
            assert msg is None, f"{key}={text} inside {rng} but refused: {msg}"
        else:
            assert msg is not None, f"{key}={text} outside {rng} but accepted"
            assert key in msg and _stated_range(msg) == rng, msg


@pytest.mark.parametrize("key", [k for k, tp, _ in NUMERIC if tp is int])
@pytest.mark.parametrize("value", ["2.5", "1.0", "1e3"])
def test_integer_key_refuses_fractions_with_range(key, value):
    msg = _error(key, value)
    assert msg is not None and key in msg and "integer" in msg
    _stated_range(msg)


def test_sane_caps():
    """Spot checks of the caps the issue asks for (the families above test every key)."""
    r = _ranges()
    assert r["train.lr"] == (0.0, 10.0, True)
    assert r["data.T"][1] <= 100_000 and r["data.T"][0] == 1
    assert r["run.threads"][1] <= 4096
    for key, (_lo, hi, _) in r.items():
        assert hi <= 2**32, key


@pytest.mark.parametrize("key, tp, default", STRINGS, ids=[k for k, _, _ in STRINGS])
@pytest.mark.parametrize("value", ['"a\\u0000b"', '"\\u0000"', '""', '"x\\u0000"'])
def test_string_key_refuses_nul_and_empty(key, tp, default, value):
    msg = _error(key, value)
    assert msg is not None, f"{key}={value} was accepted"
    assert key in msg, msg


@pytest.mark.parametrize("value", ['"' + "a" * 256 + '"', '"' + "é" * 128 + '"', '"."', '"a/b"'])
def test_run_name_must_be_one_folder_name(value):
    msg = _error("run.name", value)
    assert msg is not None and "run.name" in msg


@pytest.mark.parametrize("bad", [b"\xff", b"\xe9", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80",
                                 b"\x80abc"])
@pytest.mark.parametrize("where", ["comment", "string", "start", "end"])
def test_non_utf8_file_names_the_file_and_line(tmp_path, bad, where):
    lines = [b"[run]", b'name = "ok"', b"# a comment", b"[train]", b"lr = 0.01"]
    if where == "comment":
        line = 3
        lines[2] = b"# a " + bad + b" comment"
    elif where == "string":
        line = 2
        lines[1] = b'name = "o' + bad + b'k"'
    elif where == "start":
        line = 1
        lines[0] = bad + lines[0]
    else:
        line = len(lines)
        lines[-1] = lines[-1] + bad
    path = tmp_path / f"bad {where}.toml"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and "UTF-8" in msg and f"line {line}" in msg, msg


# ---- memory a valid config cannot get ------------------------------------------------------
_ALLOC = [  # (error as torch raises it, the size the message must give)
    (lambda: RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                          "can't allocate memory: you tried to allocate 51200000000 bytes. "
                          "Error code 12 (Cannot allocate memory)"), "47.68 GiB"),
    (lambda: RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                          "2560000 bytes. Error code 12 (Cannot allocate memory)"), "2.441 MiB"),
    (lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
     "20.00 GiB"),
    (lambda: MemoryError(), None),
]


@pytest.mark.parametrize("phase", ["datasets", "model", "step"])
@pytest.mark.parametrize("make, size", _ALLOC, ids=["cpu_gib", "cpu_mib", "cuda_oom", "memerr"])
def test_allocation_failure_names_the_keys(tmp_path, monkeypatch, phase, make, size):
    import _tiny

    from membra.train import engine, fit

    _tiny.patch(monkeypatch)

    def boom(*a, **k):
        raise make()

    if phase == "datasets":
        monkeypatch.setattr(engine, "build_datasets", boom)
    elif phase == "model":
        monkeypatch.setattr(engine, "build_model", boom)
    cfg = parse_config(_tiny.TINY_TOML, ["data.T=7", "data.batch_size=24"])
    with pytest.raises(MemoryError) as e:
        fit(cfg, run_dir=tmp_path / "r", device="cpu",
            loss_fn=boom if phase == "step" else None)
    msg = str(e.value)
    assert "data.T=7" in msg and "data.batch_size=24" in msg, msg
    assert (f"an allocation of {size} failed" in msg) if size else "allocation" not in msg, msg


def test_other_runtime_errors_pass_unchanged(tmp_path, monkeypatch):
    import _tiny

    from membra.train import fit

    _tiny.patch(monkeypatch)

    def boom(*a, **k):
        raise RuntimeError("some other failure")

    with pytest.raises(RuntimeError, match="^some other failure$"):
        fit(parse_config(_tiny.TINY_TOML), run_dir=tmp_path / "r", device="cpu", loss_fn=boom)


# ---- the CLI and the docs ------------------------------------------------------------------
@pytest.mark.parametrize("override, key", [
    ("run.threads=100000", "run.threads"), ("data.T=100000000000000000000", "data.T"),
    ("data.T=100000000", "data.T"), ("train.lr=1e300", "train.lr"),
    ('run.name="a\\u0000b"', "run.name"), ("data.root=''", "data.root"),
])
def test_cli_refuses_before_training_in_one_line(monkeypatch, override, key):
    from typer.testing import CliRunner

    import membra.train
    from membra.cli import app

    def no_fit(*a, **k):
        raise AssertionError("training must not start")

    monkeypatch.setattr(membra.train, "fit", no_fit)
    cfg = str(Path(__file__).resolve().parents[2] / "configs" / "digits_imp_lts.toml")
    res = CliRunner().invoke(app, ["train", cfg, "--set", override])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], res.output


def test_keys_table_is_printed_and_is_the_docs_table():
    """``membra config-keys`` prints one row per key of the dataclasses, and docs/training.md
    holds exactly that table, so docs and code cannot drift."""
    from typer.testing import CliRunner

    from membra.cli import app

    res = CliRunner().invoke(app, ["config-keys"])
    assert res.exit_code == 0, res.output
    rows = [ln for ln in res.output.splitlines() if ln.startswith("| `")]
    every = [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]
    assert [r.split("`")[1] for r in rows] == every
    ranges = _ranges()
    for key, (lo, hi, lo_open) in ranges.items():
        row = next(r for r in rows if r.startswith(f"| `{key}`"))
        assert _stated_range(row) == (lo, hi, lo_open), row
    assert res.output.strip() in DOCS.read_text()


@pytest.mark.parametrize("key, tp, default", NUMERIC, ids=[k for k, _, _ in NUMERIC])
def test_every_way_of_building_a_section_is_checked(key, tp, default):
    """Direct construction and ``RunConfig.replace`` are checked like TOML and ``--set``."""
    from membra.train.config import RunConfig

    sec, name = key.split(".")
    with pytest.raises(ValueError, match=re.escape(key)):
        SECTIONS[sec](**{name: 10**20})
    with pytest.raises(ValueError, match=re.escape(key)):
        RunConfig().replace(**{f"{sec}__{name}": math.nan})
