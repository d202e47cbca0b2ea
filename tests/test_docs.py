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


def _slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_lead_to_a_file_and_heading(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        missing_anchor = file.exists() and file.suffix == ".md" and anchor
        if not file.exists() or (missing_anchor and anchor not in _anchors(file)):
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"
