"""docs/neurons.md: every Python snippet runs as written (imports included)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "neurons.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_doc_has_snippets():
    assert len(SNIPPETS) >= 2


#: the training snippet runs for one epoch into a temporary folder (the doc's run: 40 epochs)
SHORT = ('["run.name=', '["train.epochs=1", "run.out_dir={out}", "run.name=')


@pytest.mark.parametrize("i", range(len(SNIPPETS)))
def test_snippet_runs(i, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = SNIPPETS[i].replace(SHORT[0], SHORT[1].format(out=tmp_path.as_posix()))
    exec(compile(code, f"docs/neurons.md snippet {i}", "exec"), {})
