"""The docs stay true: every limit is documented with its default, and the
README's library example runs as written."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wirekit.limits import DEFAULT_LIMITS, Limits

ROOT = Path(__file__).resolve().parent.parent


def _number(text: str) -> float:
    return float(text.replace(",", "").replace(" s", ""))


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Limits)])
def test_every_limit_is_documented_with_its_default(field: str) -> None:
    doc = (ROOT / "docs" / "limits.md").read_text()
    row = re.search(rf"^\| `{field}` \| ([^|]+) \|", doc, re.MULTILINE)
    assert row, f"docs/limits.md has no row for {field}"
    documented = re.match(r"[\d.,]+( s)?", row.group(1).strip())
    assert documented, f"no default number in the {field} row"
    assert _number(documented.group(0)) == getattr(DEFAULT_LIMITS, field)


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, re.DOTALL)


def test_readme_library_example_runs_and_prints_the_upper_cased_reply() -> None:
    readme = (ROOT / "README.md").read_text()
    example = next(b for b in _python_blocks(readme) if "wirekit.run(main())" in b)
    assert len(example.strip().splitlines()) < 20
    done = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "b'HELLO'"
