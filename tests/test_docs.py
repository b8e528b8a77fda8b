"""The docs run: every fenced ``python`` block of README.md and docs/*.md executes on its own
(a fresh namespace, a temporary working directory), and README.md's ``membra ...`` shell
examples run. A block preceded by ``<!-- slow -->`` is marked slow."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
_SLOW = "<!-- slow -->"


def blocks(path: Path, lang: str) -> list[tuple[int, str, bool]]:
    """``(line, code, slow)`` of every fenced block of ``lang`` in ``path``; ``slow`` when the
    last non-blank line before the fence is ``<!-- slow -->``."""
    text = path.read_text()
    out = []
    for m in _FENCE.finditer(text):
        if m.group(1) != lang:
            continue
        before = text[:m.start()].rstrip().rsplit("\n", 1)[-1].strip()
        out.append((text.count("\n", 0, m.start()) + 1, m.group(2), before == _SLOW))
    return out


PY_BLOCKS = [pytest.param(code, id=f"{p.relative_to(ROOT)}:{line}",
                          marks=[pytest.mark.slow] if slow else [])
             for p in DOCS for line, code, slow in blocks(p, "python")]


def test_the_docs_have_python_blocks():
    assert len(PY_BLOCKS) >= 16
    assert blocks(ROOT / "README.md", "bash")


@pytest.mark.parametrize("code", PY_BLOCKS)
def test_python_block_runs(code, tmp_path, monkeypatch):
    (tmp_path / "configs").symlink_to(ROOT / "configs")  # as in a checkout: configs/ at hand
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs block>", "exec"), {"__name__": "__docs__"})  # noqa: S102


#: README shell examples made small: extra arguments per command prefix (the command the user
#: reads is run as written, plus these)
SMALL = {
    "membra train configs/": ["--set", "train.epochs=1", "--set", "run.tensorboard=false",
                              "--set", "run.plots=false"],
    "membra control eval": ["--episodes", "1"],
}


def readme_commands() -> list[str]:
    """The ``membra ...`` commands of README.md's bash blocks, comments dropped, ``a && b``
    split; ``make ...`` lines are the set-up, not examples."""
    out = []
    for _, code, _ in blocks(ROOT / "README.md", "bash"):
        for line in code.splitlines():
            line = line.split("#", 1)[0].strip()
            out += [c.strip() for c in line.split("&&") if c.strip().startswith("membra ")]
    return out


def test_readme_lists_membra_commands():
    cmds = readme_commands()
    assert any(c.startswith("membra train") for c in cmds)
    assert not any(c.startswith("make") for c in cmds)


@pytest.mark.slow
def test_readme_shell_examples_run(tmp_path):
    """Run in order in one folder (``--resume`` and ``eval`` use the run trained before)."""
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    for cmd in readme_commands():
        argv = shlex.split(cmd)[1:]
        argv += next((extra for k, extra in SMALL.items() if cmd.startswith(k)), [])
        res = subprocess.run([sys.executable, "-m", "membra", *argv], cwd=tmp_path, env=env,
                             capture_output=True, text=True, check=False, timeout=1800)
        assert res.returncode == 0, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"


def test_sources_cite_the_docs_a_user_has():
    """Docstrings point to docs/ (shipped), never to specs/ or "spec §N" (not shipped)."""
    cites = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "src").rglob("*"))
             if p.suffix in (".py", ".cpp", ".cu", ".md")
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"specs/|spec §", line)]
    assert cites == []
