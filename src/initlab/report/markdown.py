"""Render a :class:`~initlab.report.model.Report` as Markdown, images as files beside it.

Markdown may contain raw HTML, so text from the data is HTML-escaped as well as having the
characters that would break a table (``|``, newlines) neutralized.
"""

from __future__ import annotations

import html

from initlab.report.model import Block, Details, Image, Note, Report, Section, Table


def md(text: object) -> str:
    """Escape a value for Markdown text or a table cell: HTML-escaped, ``|`` and backslashes
    escaped, ``*``, backticks and brackets escaped, newlines folded to spaces."""
    text = html.escape(str(text), quote=False).replace("\\", "\\\\")
    for char in "|*`[]":
        text = text.replace(char, "\\" + char)
    return " ".join(text.splitlines())


def render_markdown(report: Report) -> str:
    """The report as Markdown; images are referenced as ``<name>.png`` next to the file."""
    parts = [f"# {md(report.title)}", ""]
    parts += [f"- {md(fact)}" for fact in report.facts]
    parts.append("")
    for section in report.sections:
        parts += _section(section)
    return "\n".join(parts).rstrip() + "\n"


def _section(section: Section) -> list[str]:
    lines = [f"## {md(section.title)}", "", md(section.intro), ""]
    for block in section.blocks:
        lines += _block(block)
        lines.append("")
    return lines


def _block(block: Block) -> list[str]:
    if isinstance(block, Table):
        return table_markdown(block)
    if isinstance(block, Image):
        return [f"![{md(block.alt)}]({block.filename})"]
    if isinstance(block, Note):
        return [f"> {'**Warning:** ' if block.kind == 'warning' else ''}{md(block.text)}"]
    if isinstance(block, Details):
        lines = ["<details>", f"<summary>{md(block.summary)}</summary>", ""]
        for inner in block.blocks:
            lines += [*_block(inner), ""]
        return [*lines, "</details>"]
    raise TypeError(f"cannot render {type(block).__name__}")


def table_markdown(table: Table) -> list[str]:
    """A pipe table; rows in ``strong_rows`` are bold."""
    frame = table.frame
    lines = [f"*{md(table.caption)}*", ""] if table.caption else []
    lines.append("| " + " | ".join(md(c) for c in frame.columns) + " |")
    lines.append("|" + "---|" * len(frame.columns))
    for i, values in enumerate(frame.itertuples(index=False, name=None)):
        cells = [md("" if v is None else v) for v in values]
        if i in table.strong_rows:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
