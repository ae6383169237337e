"""``initlab theory``: what mean-field theory predicts for a deep fully connected network."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from initlab.cli import app
from initlab.cli import options as opt
from initlab.cli.outputs import PLOT_FILES, check_output_file
from initlab.cli.tables import print_frame
from initlab.console import stdout_console
from initlab.jsonsafe import dumps

out = stdout_console()
SCAN_FACTORS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
"""Without ``--sigma-w2`` the command scans these multiples of the critical sigma_w²."""


MAX_DEPTH = 10_000
"""The most layers ``--depth`` prints a predicted variance for."""


@app.command()
def theory(
    activation: opt.Activation = "tanh",
    sigma_w2: Annotated[
        float | None, typer.Option(help="weight variance × fan_in (default: scan around the edge)")
    ] = None,
    sigma_b2: Annotated[float, typer.Option(help="bias variance")] = 0.0,
    depth: Annotated[
        int | None, typer.Option(help="also print the predicted variance of each of N layers")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="draw the phase diagram (sigma_w² × sigma_b²) here")
    ] = None,
) -> None:
    """q*, chi_1, depth scales (xi_q, xi_c, xi_grad), the edge of chaos, the trainable depth."""
    from initlab.errors import InitlabError
    from initlab.theory import analyze, plot_phase_diagram, predicted_variances

    check_output_file(plot, PLOT_FILES, "--plot", only=True)
    values = [sigma_w2] if sigma_w2 is not None else _scan(activation, sigma_b2)
    rows = [analyze(activation, sw, sigma_b2) for sw in values]
    variances = None
    if depth is not None and not 1 <= depth <= MAX_DEPTH:
        raise InitlabError(f"--depth must be in [1, {MAX_DEPTH:,}] (layers printed), got {depth}")
    if depth is not None:
        sw = values[0] if sigma_w2 is not None else rows[0]["critical_sigma_w2"]
        variances = predicted_variances(activation, sw, sigma_b2, depth)
    if as_json:
        payload = rows[0] if sigma_w2 is not None else {"scan": rows}
        if variances is not None:
            payload["predicted_variances"] = [float(v) for v in variances]
        out.print_json(dumps(payload))
    else:
        _print_tables(rows, variances, sigma_b2)
    if plot is not None:
        from initlab.atomic_files import write_error

        try:
            written = plot_phase_diagram(activation, plot)
        except OSError as exc:  # after the tables: one line, no traceback
            raise write_error(exc, "the predictions are above") from None
        out.print(f"wrote {written}", soft_wrap=True)


def _scan(activation: str, sigma_b2: float) -> list[float]:
    from initlab.theory import critical_sigma_w2

    critical = critical_sigma_w2(activation, sigma_b2)
    if not math.isfinite(critical):  # else "sigma_w2 must be finite, got inf": not the user's
        from initlab.errors import InitlabError
        from initlab.theory.meanfield import SIGMA_W2_SCAN

        raise InitlabError(
            f"{activation} at sigma_b² = {sigma_b2:g} has no edge of chaos up to sigma_w² = "
            f"{SIGMA_W2_SCAN[-1]:g} (chi_1 stays below 1) to scan around: give --sigma-w2 to "
            "evaluate one point, or a smaller --sigma-b2"
        )
    return [critical * f for f in SCAN_FACTORS]


def _edge_line(activation: str, sigma_b2: float) -> str:
    """What the scan is centred on: the edge of chaos (chi_1 = 1), or, for activations whose
    chi_1 jumps across 1 (gelu, silu; docs/theory.md, "Activation notes"), that jump."""
    from initlab.theory import edge_of_chaos

    edge = edge_of_chaos(activation, sigma_b2)
    head = f"{activation}, sigma_b² = {sigma_b2:g}: "
    if not edge.jump:
        return head + f"edge of chaos at sigma_w² = {edge.sigma_w2:.4g} (chi_1 = 1)."
    return head + (
        f"no sigma_w² gives chi_1 = 1: at sigma_w² = {edge.sigma_w2:.4g} (critical_sigma_w2) "
        f"the fixed point q* reached from q0 = 1 jumps from {edge.q_below:.3g} to "
        f"{edge.q_above:.3g} and chi_1 jumps from {edge.chi1_below:.3g} to "
        f"{edge.chi1_above:.3g} ({edge.chi1_at:.4g} at that sigma_w² itself, where "
        f"q* = {edge.q_at:.4g})."
    )


def _print_tables(rows: list[dict], variances, sigma_b2: float) -> None:
    import pandas as pd

    first = rows[0]
    out.print(
        _edge_line(first["activation"], sigma_b2)
        + " chi_1 < 1: ordered (or, where the variance itself vanishes, vanishing), gradients "
        "vanish with depth; chi_1 > 1: chaotic (or, where the variance diverges, exploding), "
        "gradients explode. xi_grad = 1/|ln chi_1|: the gradients' mean square changes e-fold."
    )
    columns = [
        "sigma_w2", "q_star", "chi1", "phase", "xi_q", "xi_c", "xi_grad", "max_trainable_depth"
    ]  # fmt: skip
    print_frame(pd.DataFrame(rows)[columns], out, title="mean-field predictions")
    for note in dict.fromkeys(row["note"] for row in rows if row.get("note")):  # once each
        out.print(f"note: {note}", soft_wrap=True, markup=False, highlight=False)
    if variances is not None:
        frame = pd.DataFrame({"layer": range(1, len(variances) + 1), "variance": variances})
        print_frame(frame, out, title="predicted pre-activation variance (input q0 = 1)")
