"""Keep init health in your own test suite: :func:`assert_healthy_init` and a pytest fixture.

>>> from initlab.testing import assert_healthy_init
>>> assert_healthy_init(build_model(), x_batch, y_batch)   # AssertionError with the findings

It runs :func:`initlab.diagnose` (one forward and one backward pass on the batch, the model
left exactly as it was) and fails when any finding is present: vanishing or exploding
activations or gradients, saturation, dead units, symmetric units (the thresholds are those
of :mod:`initlab.probe.findings`). ``allow`` names findings to tolerate.

With pytest, the fixture ``healthy_init`` is that function (installed as a pytest plugin
through the ``pytest11`` entry point ``initlab``; or add ``pytest_plugins =
["initlab.testing"]`` to a ``conftest.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when the function runs: this module is a pytest
    # plugin (entry point ``pytest11``), loaded by every pytest session of an environment
    # with initlab installed, so importing it must stay cheap and free of side effects
    from torch import Tensor, nn

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pytest = None


def assert_healthy_init(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None = None,
    *,
    loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    allow: Iterable[str] = (),
) -> None:
    """Raise ``AssertionError`` listing every finding of :func:`initlab.diagnose` on
    ``(x, y)`` (``y=None``: a fixed random cotangent replaces the loss) except those in
    ``allow`` (a name or names of :data:`initlab.probe.findings.FINDINGS`: a misspelled one,
    silently never matched, is an :class:`~initlab.errors.InitlabError`); each line names
    the finding, its layers and what to do."""
    from initlab.probe import diagnose

    tolerated = _allowed(allow)
    found = diagnose(model, x, y, loss=loss).findings
    bad = [f for f in found if f.name not in tolerated]
    if bad:
        lines = [f"{f.name} ({', '.join(f.layers)}): {f.message} — {f.suggestion}" for f in bad]
        raise AssertionError("unhealthy initialization:\n  " + "\n  ".join(lines))


def _allowed(allow: object) -> set[str]:
    """``allow`` as a set of finding names: one string is one name (``"dead_units"`` was
    read as its letters); anything but names of findings is one line."""
    from initlab.errors import InitlabError, closest_name
    from initlab.probe.findings import FINDINGS

    names = [allow] if isinstance(allow, str) else allow
    try:
        names = list(names)
    except TypeError:
        names = [names]
    for name in names:
        if name not in FINDINGS:
            hint = closest_name(str(name), FINDINGS) if isinstance(name, str) else None
            guess = f"did you mean '{hint}'? " if hint else ""
            raise InitlabError(
                f"allow takes names of findings, got {name!r}; {guess}(one of: "
                f"{', '.join(FINDINGS)})"
            )
    return set(names)


if pytest is not None:

    @pytest.fixture
    def healthy_init() -> Callable[..., None]:
        """The fixture form of :func:`assert_healthy_init`."""
        return assert_healthy_init
