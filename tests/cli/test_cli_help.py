"""Every command path of the ``membra`` app, discovered from the typer app itself: its help and
``--version`` import no torch, its help carries an example that parses, and the help text is
wrapped by the terminal at word boundaries, never at the docstring's own line breaks."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import membra.cli as cli

ROOT = Path(__file__).resolve().parents[2]
BOX = "│╭╰─╮╯┃┏┗━┓┛"


def _tree():
    return typer.main.get_command(cli.app)


def _paths(command=None, prefix=()) -> list[tuple[str, ...]]:
    """Every command path: ``()`` (the root), each group and each leaf command."""
    command = command or _tree()
    out = [prefix]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        out += _paths(sub, (*prefix, name))
    return out


def _command(path):
    command = _tree()
    for name in path:
        command = command.commands[name]
    return command


PATHS = _paths()
IDS = [" ".join(p) or "membra" for p in PATHS]


def test_the_app_has_many_paths():
    """The discovery walks groups: at least every top-level verb and the group members."""
    assert {("train",), ("eval",), ("construct", "compile"), ("report", "patterns"),
            ("export", "nir"), ("control", "eval")} <= set(PATHS)


# ---- no torch for help and version ------------------------------------------------------------
_PROBE = r"""
import json, os, sys
from membra.cli import main
report = {}
for argv in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        sys.argv = ["membra", *argv]
        sys.stdout = open(os.devnull, "w")
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code or 0
        torch = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        with open(os.environ["PROBE_OUT"] + str(os.getpid()), "w") as f:
            json.dump({"argv": argv, "code": code, "torch": torch[:5],
                       "dynamo": "torch._dynamo" in sys.modules}, f)
        os._exit(0)
    os.waitpid(pid, 0)
    with open(os.environ["PROBE_OUT"] + str(pid)) as f:
        report[" ".join(argv)] = json.load(f)
print(json.dumps(report))
"""


def _probe(argvs: list[list[str]], tmp: Path) -> dict:
    """Run ``membra ARGV`` for each ARGV in one fresh interpreter (a fork each, after
    importing ``membra.cli`` once) and return what each left in ``sys.modules``."""
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PROBE_OUT": str(tmp / "p"),
           "COLUMNS": "100"}
    res = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argvs)], capture_output=True,
                         text=True, env=env, cwd=tmp, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def help_probe(tmp_path_factory):
    argvs = [[*p, "--help"] for p in PATHS] + [["--version"]] + [
        [*p] for p in PATHS if getattr(_command(p), "commands", None) is not None]
    return _probe(argvs, tmp_path_factory.mktemp("probe"))


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_help_imports_no_torch(help_probe, path):
    got = help_probe[" ".join([*path, "--help"])]
    assert got["code"] == 0
    assert got["torch"] == [], f"`membra {' '.join(path)} --help` imported {got['torch']}"


@pytest.mark.parametrize("path", [p for p in PATHS
                                  if getattr(_command(p), "commands", None) is not None],
                         ids=lambda p: " ".join(p) or "membra")
def test_group_without_a_command_imports_no_torch(help_probe, path):
    """``membra`` and ``membra GROUP`` alone print their help (no_args_is_help)."""
    got = help_probe[" ".join(path)]
    assert got["torch"] == [], f"`membra {' '.join(path)}` imported {got['torch']}"


def test_version_imports_no_torch(help_probe):
    got = help_probe["--version"]
    assert got["code"] == 0 and got["torch"] == []


def test_info_does_not_import_dynamo(tmp_path):
    """``membra info`` needs torch, but not ``torch.compile``'s machinery."""
    got = _probe([["info"]], tmp_path)["info"]
    assert got["code"] == 0
    assert "torch" in got["torch"]
    assert not got["dynamo"], "`membra info` imported torch._dynamo"


# ---- examples ------------------------------------------------------------------------------
def examples(help_text: str) -> list[str]:
    """The ``membra ...`` lines of a help text's ``Example:``/``Examples:`` paragraphs."""
    paras = cli.tidy_help(help_text).split("\n\n")
    out = []
    for head, body in zip(paras, paras[1:], strict=False):
        if head in ("Example:", "Examples:"):
            out += [ln for ln in body.splitlines() if ln.startswith("membra ")]
    return out


def _help_text(path) -> str:
    return _command(path).help or ""


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_every_help_has_an_example_of_itself(path):
    ex = examples(_help_text(path))
    assert ex, f"`membra {' '.join(path)} --help` has no Example section"
    prefix = " ".join(("membra", *path))
    assert any(e == prefix or e.startswith(prefix + " ") for e in ex), (prefix, ex)


def _parse(argv: list[str]):
    """Parse ``membra ARGV`` down to its leaf command as click would before running it (types,
    ranges, unknown options, missing arguments), without running anything."""
    command, ctx = _tree(), None
    ctx = command.make_context("membra", list(argv), resilient_parsing=False)
    while getattr(command, "commands", None) is not None:
        rest = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return command, ctx


ALL_EXAMPLES = sorted({e for p in PATHS for e in examples(_help_text(p))})


@pytest.mark.parametrize("example", ALL_EXAMPLES)
def test_every_example_parses(example):
    """Each example names real commands and options with valid values, and the repository
    files it names (configs, ...) exist."""
    argv = shlex.split(example)[1:]
    command, ctx = _parse(argv)
    assert getattr(command, "commands", None) is None or not argv
    for tok in argv:
        if re.fullmatch(r"configs/\S+\.toml", tok):
            assert list(ROOT.glob(tok)), f"{example}: {tok} matches no file of the repository"


# ---- wrapping ------------------------------------------------------------------------------
def _render(path, width: int, monkeypatch) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(width))  # (TERMINAL_WIDTH is read once, at import)
    res = CliRunner().invoke(cli.app, [*path, "--help"], color=False)
    assert res.exit_code == 0, res.output
    return res.output.splitlines()


def _cells(line: str) -> str:
    """A rendered line without the boxes' border characters."""
    return line.strip().strip(BOX).strip()


def _premature_breaks(lines: list[str], width: int) -> list[str]:
    """Pairs of lines where the terminal had room for the next line's first word, so the break
    came from the text, not from the width. Line ``b`` continues line ``a`` when both are
    inside a box or both outside, and ``a``'s text (same cell) covers the column where ``b``'s
    text starts."""
    bad = []
    for a, b in zip(lines, lines[1:], strict=False):
        a, b = a.rstrip(), b.rstrip()
        boxed = b.startswith(BOX[0])
        if boxed != a.startswith(BOX[0]) or a.lstrip()[:1] in BOX[1:] or \
                b.lstrip()[:1] in BOX[1:]:
            continue
        inner = b[1:] if boxed else b
        start = int(boxed) + len(inner) - len(inner.lstrip())
        body_a = a[:-1].rstrip() if boxed else a
        first_a = int(boxed) + len(body_a[int(boxed):]) - len(body_a[int(boxed):].lstrip())
        if start >= len(b) or start >= len(body_a) or body_a[start] == " " or \
                (boxed and start <= first_a):  # in a box, a row at the left edge is a new row
            continue
        word = b[start:].split(" ", 1)[0]
        if word.startswith(("[default", "[required", "membra", "-")) or body_a.endswith(":"):
            continue
        right = len(a) - 2 if boxed else width - 1  # the last column text may use
        if len(body_a) + 1 + len(word) <= right:
            bad.append(f"{body_a.strip(BOX + ' ')!r} / {b.strip(BOX + ' ')!r}")
    return bad


WIDTH_CASES = [pytest.param(p, w, id=f"{i}-{w}") for p, i in zip(PATHS, IDS, strict=True)
               for w in (80, 120)]


@pytest.mark.parametrize("path, width", WIDTH_CASES)
def test_help_wraps_at_the_terminal_width(path, width, monkeypatch):
    lines = _render(path, width, monkeypatch)
    assert max(len(ln) for ln in lines) <= width
    cells = [_cells(ln) for ln in lines]
    for ex in examples(_help_text(path)):
        assert ex in cells, f"example {ex!r} is not one line at width {width}"
    assert _premature_breaks(lines, width) == []
    words = set(" ".join(cells).split())
    command = _command(path)
    texts = [cli.tidy_help(command.help or "")] + [getattr(p, "help", None) or ""
                                                   for p in command.params]
    cut = sorted({w for t in texts for w in t.replace("\\", "").split()} - words)
    assert cut == [], f"words cut or lost at width {width}: {cut[:8]}"
