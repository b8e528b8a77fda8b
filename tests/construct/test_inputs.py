"""Every field of a rule or circuit JSON, and every input of the torch module, refuses a
wrong-typed or out-of-range value with an error that names it: no silent reinterpretation
(``accept: [true]`` read as "every window", ``inputs: "x0"`` split into characters), and no
huge allocation before the size check (checked with tracemalloc, not with a clock)."""

import copy
import json
import re
import tracemalloc
from functools import partial

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from membra.cli import app
from membra.construct import SpikeRule, SpikingCircuit, compile_rule
from membra.construct.compact import gap_circuit
from membra.construct.compile import METHODS

runner = CliRunner()

#: a refused input may allocate at most this much (the old code tried 2**40 bytes for m = 40)
MAX_ALLOC = 8 << 20

RULES = {
    "table": {"m": 3, "n_inputs": 1, "table": [0, 1, 0, 1, 0, 0, 1, 1]},
    "accept": {"m": 2, "n_inputs": 2, "accept": [1, 5, 15]},
    "pattern": {"pattern": [1, 0, 1, 1]},
}
BAD_COUNT = [True, False, 2.0, 2.5, "2", [2], None, -1, 0, {"m": 2}]
HUGE = [25, 40, 64, 10**6, 2**70]


def _rule_cases():
    """``(id, rule dict, field named in the error)`` for every field x wrong value."""
    for base in ("table", "accept"):
        for field in ("m", "n_inputs"):
            for v in BAD_COUNT + HUGE:
                yield f"{base}.{field}={v!r}", {**RULES[base], field: v}, field
    tbl = RULES["table"]["table"]
    for v in ["01010011", True, 1.5, 3, None, {"0": 1}, [tbl], tbl[:-1], tbl + [0]]:
        yield f"table={v!r}", {**RULES["table"], "table": v}, "table"
    for bad in [2, -1, 0.5, 1.0, 0.0, "1", None, [1], float("nan")]:
        yield f"table[5]={bad!r}", {**RULES["table"], "table": tbl[:5] + [bad] + tbl[6:]}, "table"
    for v in ["15", 15, True, 1.0, None, {"1": 1}]:
        yield f"accept={v!r}", {**RULES["accept"], "accept": v}, "accept"
    for bad in [True, False, 1.0, 1.5, "1", -1, 16, 2**70, None, [1], float("inf")]:
        yield f"accept[1]={bad!r}", {**RULES["accept"], "accept": [1, bad]}, "accept"
    for v in ["1011", 1011, True, None, [], {"0": 1}, [1, 2], [1, 0.5], [1.0, 0], ["1", "0"],
              [None, 1], [-1, 1], [[1], [0]], [0] * 25, [1] * 40]:
        yield f"pattern={str(v)[:20]}", {"pattern": v}, "pattern"
    # unknown, conflicting and missing keys
    yield "unknown key", {**RULES["table"], "tabel": [0, 1]}, "tabel"
    yield "pattern with m", {**RULES["pattern"], "m": 4}, "pattern"
    yield "table and accept", {**RULES["table"], "accept": [1]}, "accept"
    yield "no table", {"m": 2}, "table"
    yield "no m", {"table": [0, 1, 0, 1]}, "m"
    yield "empty", {}, "pattern"


RULE_CASES = list(_rule_cases())
RULE_FIELDS = ["m", "n_inputs", "table", "accept", "pattern", "keys"]


def _field_of(label: str) -> str:
    """The family a rule case belongs to: the field it corrupts, or "keys"."""
    head = re.split(r"[.=\[]", label)[1 if label.startswith(("table.", "accept.")) else 0]
    return head if head in RULE_FIELDS else "keys"


def _names_field(message: str, field: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(field)}(?!\w)", message) is not None


def _why_not_refused(fn, field) -> str | None:
    """``None`` if ``fn()`` raises ValueError/TypeError naming ``field`` and allocates less
    than MAX_ALLOC on the way; else what went wrong."""
    tracemalloc.start()
    try:
        fn()
        why = "accepted silently"
    except (ValueError, TypeError) as e:
        why = None if _names_field(str(e), field) else f"error does not name it: {e}"
    except Exception as e:  # noqa: BLE001 -- MemoryError, KeyError, ...: a wrong refusal
        why = f"{type(e).__name__}: {e}"
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if peak >= MAX_ALLOC:
        why = f"allocated {peak:,} bytes before refusing ({why or 'refused'})"
    return why


def _assert_family_refused(cases) -> None:
    """Every ``(label, fn, field)`` is refused by name; lists all that are not."""
    failures = [f"{label}: {why}" for label, fn, field in cases
                if (why := _why_not_refused(fn, field)) is not None]
    assert not failures, "\n".join(failures)


def _refused_cheaply(fn, field):
    why = _why_not_refused(fn, field)
    assert why is None, why


@pytest.mark.parametrize("field", RULE_FIELDS)
def test_rule_json_field_refused_by_name(field):
    """Each field of a rule JSON x its family of wrong values: bool, float, string for a
    list, negative, out of range, huge m; plus unknown, conflicting and missing keys."""
    cases = [(label, partial(SpikeRule.from_dict, copy.deepcopy(d)), named)
             for label, d, named in RULE_CASES if _field_of(label) == field]
    assert len(cases) >= 6
    _assert_family_refused(cases)
    for good in RULES.values():  # the valid forms still load and round-trip
        rule = SpikeRule.from_dict(good)
        assert SpikeRule.from_dict(rule.to_dict()) == rule


@pytest.mark.parametrize("m", [25, 30, 40, 64])
def test_huge_m_refused_before_allocating_every_constructor(m):
    _refused_cheaply(lambda: SpikeRule.from_predicate(lambda w: 0, m), "m")
    _refused_cheaply(lambda: SpikeRule.from_function(lambda X: X[:, 0] * 0, m), "m")
    _refused_cheaply(lambda: SpikeRule.from_table([0, 1], m), "m")
    _refused_cheaply(lambda: SpikeRule.from_pattern([1] * m), "pattern")


def test_accept_true_is_not_every_window():
    """The reported bug: ``{"m": 2, "accept": [true]}`` compiled a rule accepting all 4.
    Booleans are valid *bits* (table, pattern entries), never *indices* (accept, m)."""
    with pytest.raises(ValueError, match="accept"):
        SpikeRule.from_dict({"m": 2, "accept": [True]})
    assert SpikeRule.from_dict({"m": 2, "accept": [1]}).n_accepted == 1
    tbl = RULES["table"]["table"]
    assert SpikeRule.from_dict({"m": 3, "table": [bool(b) for b in tbl]}) == \
        SpikeRule.from_dict(RULES["table"])
    assert SpikeRule.from_dict({"pattern": [True, False]}) == SpikeRule.from_pattern([1, 0])
    assert list(SpikeRule.from_dict(RULES["accept"]).accepted) == [1, 5, 15]


# ---- circuits ------------------------------------------------------------------------------
def _circuit_bases():
    return {"baseline": compile_rule(SpikeRule.from_pattern([1, 0, 1])).to_dict(),
            "compact": gap_circuit([False, True, False]).to_dict()}


def _circuit_cases():
    for base in ("baseline", "compact"):
        for v in ["x0", "clockx0", 5, True, None, {"x0": 1}, [1], ["x0", None], ["x0", ["y"]]]:
            yield base, "inputs", v
        for v in ["ODD", 5, True, None, [1], [{"group": "g"}], [{"name": 3}],
                  [{"name": "A", "group": 2}], [["A"]]]:
            yield base, "neurons", v
        for v in ["ab", 5, True, None, [["x0", "OUT"]], [[1, "OUT", "1"]],
                  [["x0", "OUT", True]], [["x0", "OUT", [1]]], [["x0", "OUT", "1/0"]],
                  [["x0", "OUT", None]], [["x0", "OUT", "nan"]], [["x0", "OUT", float("nan")]],
                  [{"src": "x0"}]]:
            yield base, "synapses", v
        for v in [["OUT"], 1, None, True, "NOPE", {"OUT": 1}]:
            yield base, "output", v
        for v in [True, "abc", -0.5, 0, 2, [1], None, "1/0", float("nan")]:
            yield base, "lam", v
        for v in ["false", "true", 1, 0, None, [], 0.0]:
            yield base, "requires_clock", v
        for v in ["ODD", 5, True, [1], ["NOPE"], {"ODD": 1}]:
            yield base, "shared", v
        for v in [[1, 2], "x", 5, True]:
            yield base, "meta", v
        for v in ["membra.construct.circuit/2", 5, None, True]:
            yield base, "format", v
        yield base, "synapse", [["x0", "OUT", "1"]]  # an unknown key (misspelt)


CIRCUIT_CASES = list(_circuit_cases())
CIRCUIT_FIELDS = sorted({f for _, f, _ in CIRCUIT_CASES})


def _bad_circuit(base: str, field: str, value) -> dict:
    return {**_circuit_bases()[base], field: copy.deepcopy(value)}


@pytest.mark.parametrize("field", CIRCUIT_FIELDS)
def test_circuit_json_field_refused_by_name(field):
    """Each field of a circuit JSON x its family of wrong values, for a baseline and a
    compact circuit."""
    cases = [(f"{b}.{f}={v!r:.30}", partial(SpikingCircuit.from_dict, _bad_circuit(b, f, v)), f)
             for b, f, v in CIRCUIT_CASES if f == field]
    _assert_family_refused(cases)
    for good in _circuit_bases().values():  # valid forms (also without "format") still load
        assert SpikingCircuit.from_dict(json.loads(json.dumps(good))).to_dict() == good
        no_format = {k: v for k, v in good.items() if k != "format"}
        assert SpikingCircuit.from_dict(no_format).to_dict() == good


def test_circuit_constructor_refuses_strings_for_lists():
    """The Python API has the same boundary as JSON: a str is not a list of names."""
    for kw, field in (({"inputs": "x0"}, "inputs"), ({"neurons": "A"}, "neurons"),
                      ({"shared": "A"}, "shared")):
        args = {"inputs": ["x0"], "neurons": ["A"], "synapses": [("x0", "A", 2)],
                "output": "A", **kw}
        _refused_cheaply(lambda args=args: SpikingCircuit(
            args["inputs"], args["neurons"], args["synapses"], args["output"],
            shared=args.get("shared", ())), field)


# ---- methods -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["paper", "papr", "Baseline", "", None, 1])
def test_only_working_methods_are_offered(method):
    assert METHODS == ("baseline", "compact")
    with pytest.raises(ValueError) as err:
        compile_rule(SpikeRule.from_pattern([1, 1]), method=method)
    assert "'baseline'" in str(err.value) and "'compact'" in str(err.value)
    assert "paper" not in str(err.value).replace(repr(method), "")


# ---- torch module --------------------------------------------------------------------------
def _modules():
    base = compile_rule(SpikeRule.from_table(np.arange(16) % 5 == 1, 2, n_inputs=2))
    comp = gap_circuit([False, True, True, False])
    return [(base, torch.float64), (base, torch.float32), (comp, torch.float64)]


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, float("nan"), float("inf"), -0.25, 1e-12])
@pytest.mark.parametrize("k", range(3))
def test_torch_module_refuses_non_binary_inputs(bad, k):
    circ, dtype = _modules()[k]
    rng = np.random.default_rng(k)
    x = torch.tensor((rng.random((40, 3, circ.n_inputs)) < 0.5).astype(np.float64))
    t, b, c = (int(rng.integers(s)) for s in x.shape)
    x[t, b, c] = bad
    mod = circ.to_torch(dtype)
    with pytest.raises(ValueError, match="0 and 1") as err:
        mod(x)
    msg = str(err.value)
    assert str(bad) in msg or repr(bad) in msg, msg
    assert f"[{t}, {b}, {c}]" in msg, msg
    with pytest.raises(ValueError, match="0 and 1"):
        mod(x.to(dtype), return_all=True)
    # 0/1 inputs of any dtype (bool, int, float, -0.0) give the simulator's spikes
    x[t, b, c] = 0
    X = x.numpy().astype(bool)
    ref = circ.simulate(X.astype(np.int8))
    for xx in (torch.tensor(X), torch.tensor(X, dtype=torch.int64),
               torch.tensor(X, dtype=torch.float32), -torch.zeros(X.shape) + torch.tensor(X)):
        np.testing.assert_array_equal(mod(xx).numpy(), ref)


# ---- command line --------------------------------------------------------------------------
def _why_not_one_line(res, field) -> str | None:
    """``None`` if the command exited 2 with one ``error: ...`` line naming ``field``."""
    lines = res.output.strip().splitlines()
    if res.exit_code != 2 or len(lines) != 1 or not lines[0].startswith("error: "):
        return f"exit {res.exit_code}, output {res.output!r:.300}"
    return None if _names_field(lines[0], field) else f"does not name it: {lines[0]}"


def _one_line_error(res, field):
    why = _why_not_one_line(res, field)
    assert why is None, why


@pytest.mark.parametrize("field", RULE_FIELDS)
def test_cli_compile_bad_rule_one_line(field, tmp_path):
    path, out = tmp_path / "rule.json", tmp_path / "c.json"
    failures = []
    for label, d, named in RULE_CASES:
        if _field_of(label) == field:
            path.write_text(json.dumps(d))
            res = runner.invoke(app, ["construct", "compile", str(path), "--out", str(out)])
            why = _why_not_one_line(res, named) or (out.exists() and "wrote a circuit")
            if why:
                failures.append(f"{label}: {why}")
            out.unlink(missing_ok=True)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("field", CIRCUIT_FIELDS)
def test_cli_check_and_plot_bad_circuit_one_line(field, tmp_path):
    path = tmp_path / "circ.json"
    failures = []
    for base, f, value in CIRCUIT_CASES:
        if f != field:
            continue
        path.write_text(json.dumps(_bad_circuit(base, f, value)))
        for argv in (["check", str(path), "--steps", "50"],
                     ["plot", str(path), "--out", str(tmp_path / "r.png")]):
            why = _why_not_one_line(runner.invoke(app, ["construct", *argv]), field)
            if why:
                failures.append(f"{argv[0]} {base}.{f}={value!r:.30}: {why}")
    assert not failures, "\n".join(failures)


def test_cli_check_bad_stored_rule_one_line(tmp_path):
    d = _circuit_bases()["baseline"]
    d["meta"]["rule"]["accept"] = [True]
    path = tmp_path / "circ.json"
    path.write_text(json.dumps(d))
    _one_line_error(runner.invoke(app, ["construct", "check", str(path)]), "accept")


@pytest.mark.parametrize("argv, field", [
    (["compile", "--pattern", "1,1", "--method", "paper"], "method"),
    (["compile", "--pattern", "1,0", "--method", "compact"], "clock"),
    (["compile", "--pattern", "1,2"], "pattern"),
    (["compile", "--pattern", "1,,x"], "pattern"),
    (["compile", "--pattern", ""], "pattern"),
    (["compile", "--pattern", ",".join("1" * 30)], "pattern"),
    (["compile"], "pattern"),
    (["check", "{c}", "--steps", "0"], "steps"),
    (["check", "{c}", "--steps", "-5"], "steps"),
    (["check", "{c}", "--seed", "-1"], "seed"),
    (["check", "{missing}"], "missing.json"),
    (["plot", "{c}", "--steps", "0"], "steps"),
    (["plot", "{c}", "--rate", "1.5"], "rate"),
    (["plot", "{c}", "--rate", "nan"], "rate"),
    (["plot", "{c}", "--seed", "-3"], "seed"),
    (["classify", "--n", "401"], "n"),
    (["classify", "--trials", "0"], "trials"),
    (["classify", "--epochs", "0"], "epochs"),
    (["scaling", "--max-m", "1"], "max-m"),
    (["scaling", "--max-m", "25"], "max-m"),
    (["scaling", "--max-m", "6", "--full"], "full"),
])
def test_cli_bad_options_one_line(argv, field, tmp_path):
    circ = tmp_path / "c.json"
    compile_rule(SpikeRule.from_pattern([1, 1])).save(circ)
    argv = [a.format(c=circ, missing=tmp_path / "missing.json") for a in argv]
    if argv[0] == "compile":
        argv += ["--out", str(tmp_path / "o.json")]
    if argv[0] in ("plot", "scaling"):
        argv += ["--out-dir" if argv[0] == "scaling" else "--out", str(tmp_path / "o")]
    _one_line_error(runner.invoke(app, ["construct", *argv]), field)
