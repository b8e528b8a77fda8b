"""docs/neurons.md: every Python snippet runs as written (imports included)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "neurons.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_doc_has_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("i", range(len(SNIPPETS)))
def test_snippet_runs(i):
    exec(compile(SNIPPETS[i], f"docs/neurons.md snippet {i}", "exec"), {})
