"""Every snippet of docs/conversion.md's "Bring your own model" section runs as written."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "conversion.md"


def _snippets():
    text = DOC.read_text()
    section = text[text.index("## Bring your own model"):text.index("## AL-QCFS")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_section_has_one_snippet_per_family():
    assert len(_snippets()) == 3


@pytest.mark.parametrize("i", range(3), ids=["resnet", "unet", "quantize_relu"])
def test_snippet_runs(i, capsys):
    exec(compile(_snippets()[i], f"{DOC.name}[snippet {i}]", "exec"), {})
