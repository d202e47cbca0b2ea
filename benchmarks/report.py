"""Writing the results: RESULTS.md (tables), results.json (everything) and
results.png (bar charts of the ratios)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .common import Row, SectionResult, format_number

# Absolute paths from error messages and tracebacks are cut to their file name.
_PATH = re.compile(r"(?<![\w.:/])/(?!dev/null|proc/)(?:[\w.+-]+/)+([\w.+-]+)")


def scrub(text: str) -> str:
    """Remove this machine's absolute paths from a message."""
    return _PATH.sub(lambda m: m.group(1), text)


def _ratio_text(row: Row) -> str:
    if row.ratio is None:
        return "-"
    return f"{row.ratio:.2f}x"


def _met_text(row: Row) -> str:
    if row.target == "-":
        return "-"
    if row.met is None:
        return f"{row.target} (no figure)"
    return f"{row.target}: {'met' if row.met else '**missed**'}"


def _cell(text: str) -> str:
    return scrub(text).replace("|", "\\|").replace("\n", " ")


def summary_table(sections: list[SectionResult]) -> list[str]:
    lines = [
        "| Section | What | wirekit | Reference | Ratio | Target | CPU placement |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for section in sections:
        for row in section.rows:
            better = " (lower is better)" if row.lower_is_better else ""
            cells = [
                section.key,
                row.what + better,
                row.wirekit,
                row.reference,
                _ratio_text(row),
                _met_text(row),
                row.placement,
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def figures_table(section: SectionResult) -> list[str]:
    lines = [
        "| Tool | Case | Figure | Runs | CPU placement | Note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for fig in section.figures:
        value = f"{format_number(fig.value)} {fig.unit}" if fig.value is not None else "-"
        runs = ", ".join(format_number(r) for r in fig.runs) or "-"
        cells = [fig.tool, fig.case, value, runs, fig.placement, fig.note or ""]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _meta_lines(meta: dict[str, Any]) -> list[str]:
    lines = ["| | |", "| --- | --- |"]
    for key, value in meta.items():
        lines.append(f"| {_cell(str(key))} | {_cell(str(value))} |")
    return lines


def write_markdown(path: Path, sections: list[SectionResult], meta: dict[str, Any]) -> None:
    met = [row.met for s in sections for row in s.rows if row.target != "-"]
    out = [
        "# wirekit benchmark results",
        "",
        "Written by `python -m benchmarks` (see `benchmarks/__main__.py`); do not edit by "
        "hand. Ratios are wirekit / reference. Every figure comes from separate client and "
        "server processes pinned with `taskset -c`; the last column says where they ran.",
        "",
        f"Targets met: {sum(1 for m in met if m)} of {len(met)}.",
        "",
        *summary_table(sections),
        "",
        "![ratios](results.png)",
        "",
        "## Run",
        "",
        *_meta_lines(meta),
    ]
    for section in sections:
        out += ["", f"## {section.title}", "", *figures_table(section), ""]
        out += [f"- {scrub(note)}" for note in section.notes]
        out.append(f"- Section time: {section.seconds:.0f} s.")
    path.write_text("\n".join(out) + "\n")


def write_json(path: Path, sections: list[SectionResult], meta: dict[str, Any]) -> None:
    data = {"meta": meta, "sections": [s.to_json() for s in sections]}
    text = scrub(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    path.write_text(text + "\n")


def _bar_color(row: Row) -> str:
    if row.met is None:
        return "#9e9e9e"
    return "#2e7d32" if row.met else "#c62828"


def write_png(path: Path, sections: list[SectionResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charted = [s for s in sections if any(r.ratio is not None for r in s.rows)]
    if not charted:
        return
    heights = [max(1.5, 0.45 * len(s.rows) + 0.9) for s in charted]
    fig, axes = plt.subplots(
        len(charted),
        1,
        figsize=(12, sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, section in zip(axes[:, 0], charted, strict=True):
        _chart(ax, section)
    fig.suptitle(
        "wirekit / reference (green: target met, red: missed, grey: no target; "
        "dashed: ratio target)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _chart(ax: Any, section: SectionResult) -> None:
    rows = section.rows
    labels = [f"{r.what}\n[{r.placement}]" for r in rows]
    values = [r.ratio or 0.0 for r in rows]
    ax.barh(range(len(rows)), values, color=[_bar_color(r) for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    for i, row in enumerate(rows):
        figure = row.wirekit.rpartition(": ")[2]
        text = f"{_ratio_text(row)}  (wirekit {figure})" if row.ratio is not None else "no figure"
        ax.text(values[i], i, f" {text}", va="center", fontsize=7)
        if row.target_ratio is not None:
            ax.plot(
                [row.target_ratio] * 2,
                [i - 0.45, i + 0.45],
                color="black",
                linestyle="--",
                linewidth=1.2,
            )
    ax.set_title(section.title, fontsize=9, loc="left")
    ax.set_xlabel("ratio (x)", fontsize=8)
    ax.margins(x=0.3)
