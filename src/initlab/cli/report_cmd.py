"""``initlab report``: a self-contained HTML (and Markdown) report of stored results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from initlab.cli import app
from initlab.cli.options import Within
from initlab.cli.outputs import check_output_dir
from initlab.cli.parsing import split_list
from initlab.console import stdout_console
from initlab.errors import InitlabError
from initlab.speclist import repeated

out = stdout_console()


@app.command()
def report(
    source: Annotated[
        Path,
        typer.Argument(
            help="a results store (SQLite file, or a directory holding initlab.db) or a "
            "directory written by `initlab compare --out` (summary.csv + epochs.csv)",
            show_default=False,
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="write report.html, report.md and PNGs here")
    ],
    study: Annotated[
        str | None,
        typer.Option(
            help="only the runs of this study (stores only; default: the store's only study, "
            "else every run)"
        ),
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option(
            help="comma-separated grouping columns (default: the study's group_by; else the "
            "settings that vary between the runs, seeds excepted; init when none vary)"
        ),
    ] = None,
    title: Annotated[str | None, typer.Option(help="the report's title")] = None,
    within: Within = None,
) -> None:
    """Write report.html (self-contained, opens offline) and report.md from stored results."""
    from initlab.atomic_files import write_error
    from initlab.report.build import DEFAULT_TITLE, build_report, ranked_apart
    from initlab.report.sources import load_results

    check_output_dir(out_dir)
    results, layer_stats = load_results(source, study=study)
    keys = split_list(group_by, "--group-by") if group_by else None
    twice = repeated(keys or [])
    if twice is not None:
        raise InitlabError(f"--group-by names '{twice}' twice; name each setting once")
    if within:
        results, keys = ranked_apart(results, split_list(within, "--within"), keys), None
    default_title = f"{DEFAULT_TITLE}: {study}" if study else DEFAULT_TITLE
    try:
        paths = build_report(
            results, out_dir, layer_stats=layer_stats, title=title or default_title, group_by=keys
        )
    except OSError as exc:
        raise write_error(exc, f"{out_dir} is as it was; the store is untouched") from None
    out.print(
        f"wrote {paths.html} and {paths.markdown} ({len(paths.images)} figures)", soft_wrap=True
    )
