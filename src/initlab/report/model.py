"""What a report is made of, independent of its format: sections holding blocks.

:mod:`initlab.report.build` assembles a :class:`Report`; :mod:`initlab.report.html` and
:mod:`initlab.report.markdown` render the same object. Every string here is plain text as the
user or the data gave it: the renderers escape it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

DPI = 100


@dataclass
class Table:
    """A table of display strings; rows listed in ``strong_rows`` are emphasized."""

    frame: pd.DataFrame
    caption: str = ""
    strong_rows: tuple[int, ...] = ()


@dataclass
class Image:
    """A PNG figure: ``name`` is its file stem (``curves`` → ``curves.png``)."""

    name: str
    png: bytes
    alt: str

    @classmethod
    def from_figure(cls, name: str, fig: Figure, alt: str) -> Image:
        """Render ``fig`` to PNG bytes (Agg, no pyplot)."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        return cls(name, buffer.getvalue(), alt)

    @property
    def filename(self) -> str:
        return f"{self.name}.png"


@dataclass
class Note:
    """A paragraph of text (``kind="warning"`` renders it highlighted)."""

    text: str
    kind: str = "note"


@dataclass
class Details:
    """A collapsible block (``<details>`` in HTML) around other blocks."""

    summary: str
    blocks: list[Block] = field(default_factory=list)


Block = Table | Image | Note | Details


@dataclass
class Section:
    """A titled part of the report; ``intro`` says how to read it."""

    id: str
    title: str
    intro: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    """The whole report: a title, a few lines about the data, and its sections."""

    title: str
    facts: list[str]
    sections: list[Section]

    def images(self) -> list[Image]:
        """Every image, in order, including those inside :class:`Details`."""
        found: list[Image] = []

        def walk(blocks: list[Block]) -> None:
            for block in blocks:
                if isinstance(block, Image):
                    found.append(block)
                elif isinstance(block, Details):
                    walk(block.blocks)

        for section in self.sections:
            walk(section.blocks)
        return found
