"""User-facing errors.

Everything a user can get wrong (an unknown name, a bad number, missing data) raises an
:class:`InitlabError`. The CLI prints its message on one line and exits with status 2; from
Python it is an ordinary ``ValueError``, so ``except ValueError`` keeps working.

A message names an option as the user's surface spells it (:func:`option`): ``--workers``
under the command line (:func:`initlab.cli.main` runs each command inside
``surface("cli")``), the keyword ``workers`` from Python, the default.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterable, Iterator
from contextvars import ContextVar

SURFACE: ContextVar[str] = ContextVar("initlab_surface", default="python")
"""Where the user speaks to initlab: ``"python"`` (the API, the default) or ``"cli"``."""


@contextlib.contextmanager
def surface(name: str) -> Iterator[None]:
    """Set :data:`SURFACE` to ``name`` (``"cli"`` or ``"python"``) inside the block."""
    token = SURFACE.set(name)
    try:
        yield
    finally:
        SURFACE.reset(token)


def option(cli: str, python: str | None = None) -> str:
    """An option as the user's surface spells it: ``cli`` (``--model-arg NAME=VALUE``)
    under the command line, else ``python`` (``model_args={NAME: VALUE}``); without
    ``python``, :func:`keyword` of ``cli`` (``--device cpu`` → ``device='cpu'``)."""
    if SURFACE.get() == "cli":
        return cli
    return keyword(cli) if python is None else python


def keyword(cli: str) -> str:
    """``cli``'s flag as a Python keyword (``--gpus-per-trial`` → ``gpus_per_trial``), with
    the value after it as the keyword's (``--seeds 3`` → ``seeds=3``, ``--device cpu`` →
    ``device='cpu'``: a number as it is, other text quoted). Text that is no flag is kept."""
    if not cli.startswith("--"):
        return cli
    flag, _, value = cli.partition(" ")
    name = flag[2:].replace("-", "_")
    if not value:
        return name
    try:
        float(value)
    except ValueError:
        value = repr(value)
    return f"{name}={value}"


class InitlabError(ValueError):
    """A mistake in what the user asked for; the message says how to fix it."""


class UnknownNameError(InitlabError):
    """An unknown initializer, activation, dataset, optimizer or other registry name."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]) -> None:
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(unknown_name_message(kind, name, self.choices))


def permission_denied(flag: str | None, given: object, exc: OSError) -> InitlabError:
    """One line for a path the user gave with ``flag`` (``None``: a path no check named)
    that this user may not read, or under a directory it may not search (``Path.exists()``
    itself raises then)."""
    denied = exc.filename if exc.filename is not None else given
    same = os.path.abspath(str(denied)) == os.path.abspath(str(given))
    where = "" if same else f" on {denied}"
    named = f"{option(flag)} {given}" if flag else str(given)
    return InitlabError(
        f"{named}: permission denied{where}; fix its permissions (chmod) or give another path"
    )


class DataNotFoundError(InitlabError):
    """A dataset's files are neither on disk nor downloadable; the message says how to get them."""


def some_names(names: list[str], first: int = 3) -> str:
    """``a, b, c and 2 more``: the ``first`` names and how many others."""
    more = len(names) - first
    return ", ".join(names[:first]) + (f" and {more} more" if more > 0 else "")


SYNONYMS = {
    "learning_rate": "lr",
    "lr_rate": "lr",
    "wd": "weight_decay",
    "l2": "weight_decay",
    "bs": "batch_size",
    "act": "activation",
    "nonlinearity": "activation",
    "initializer": "init",
    "initialization": "init",
    "scheme": "init",
    "layers": "hidden",
    "widths": "hidden",
    "n_seeds": "seeds",
    "num_seeds": "seeds",
    "n_epochs": "epochs",
    "num_epochs": "epochs",
}
"""Other names for a setting that spelling alone does not find (``learning_rate`` → ``lr``);
:func:`closest_name` suggests them first, where they are among the choices."""


def closest_name(name: str, choices: Iterable[str]) -> str | None:
    """The choice most similar to ``name`` (case- and separator-insensitive), if any is close
    (one typo away first, :func:`one_edit`); a known other name of it (:data:`SYNONYMS`); a
    dotted choice also by its last part (``widht`` → ``model_args.width``)."""
    normal = {c.lower().replace("-", "_"): c for c in choices}
    key = str(name).lower().replace("-", "_")
    if key in normal:
        return normal[key]
    if SYNONYMS.get(key) in normal:
        return normal[SYNONYMS[key]]
    near = [k for k in normal if one_edit(key, k)]  # difflib: smae → sparse, not same
    match = difflib.get_close_matches(key, near or list(normal), n=1, cutoff=0 if near else 0.5)
    if match:
        return normal[match[0]]
    tails = {k.rsplit(".", 1)[1]: c for k, c in normal.items() if "." in k}
    match = difflib.get_close_matches(key, list(tails), n=1, cutoff=0.6)
    return tails[match[0]] if match else None


def one_edit(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with one letter changed, added or left out, or two
    neighbouring letters swapped (``smae`` → ``same``)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) != len(b):
        short, long = sorted((a, b), key=len)
        return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    swapped = len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
    return len(diff) == 1 or (swapped and a[diff[1]] == b[diff[0]])


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """``unknown initializer 'he_norml'; did you mean 'he_normal'? (valid: ...)``."""
    choices = sorted(choices)
    hint = closest_name(name, choices)
    suggestion = f"; did you mean '{hint}'?" if hint else ""
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f"unknown {kind} {quoted(name)}{suggestion} (valid: {shown})"


def quoted(text: object) -> str:
    """``'text'`` as a message quotes a user's value; ``repr`` (``'a\\nb'``, ``'\\x1b[31m'``)
    when it holds a newline, a terminal escape or another control character, which would
    otherwise break the message's one line or act on the terminal."""
    text = str(text)
    return repr(text) if not text.isprintable() else f"'{text}'"


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`InitlabError` unless ``value`` is > 0 (or >= 0 with ``allow_zero``)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value:  # NaN fails both comparisons
        bound = ">= 0" if allow_zero else "> 0"
        raise InitlabError(f"{name} must be {bound}, got {value}")


SHOWN_CHARS = 60
"""The most characters of a value a message quotes (a model's or a plan's repr runs on)."""


def shown(value: object) -> str:
    """``repr(value)``, cut to :data:`SHOWN_CHARS` characters (:func:`cut`)."""
    return cut(repr(value))


def cut(text: str) -> str:
    """``text`` on one line (a module's repr spans many), cut to :data:`SHOWN_CHARS`
    characters (``...`` where cut)."""
    text = " ".join(text.split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def first_line(exc: BaseException) -> str:
    """``ValueError: what it said``: an exception's type and the first line of its message
    (a user's code may raise one with a traceback-sized message, and an error is one line)."""
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0]


def a_or_an(word: str) -> str:
    """``a list``, ``an int``: the article a type name takes."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
