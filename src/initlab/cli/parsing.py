"""Option text into values: widths, seeds, a bias, ``--model-arg`` pairs, one scheme. Each
mistake is one line naming the option (:class:`~initlab.errors.InitlabError`)."""

from __future__ import annotations

from initlab.errors import InitlabError, quoted
from initlab.speclist import split_list


def one_scheme(flag: str, value: str) -> str:
    """``value`` of ``flag`` (``--output-init``, ``--embedding-init``): one scheme; a
    comma-separated list is one line saying how to compare several (a sweep's axis)."""
    if not value.strip():
        raise InitlabError(f"{flag} needs a scheme (e.g. glorot_uniform), got {value!r}")
    items = split_list(value, flag)
    if len(items) > 1:
        key = flag.removeprefix("--").replace("-", "_")
        shown = ", ".join(f'"{item}"' for item in items)
        raise InitlabError(
            f"{flag} takes one scheme, got {len(items)} ({value}); only --inits is compared "
            f"side by side: to compare these, run `initlab sweep` on a spec with "
            f"{key} = [{shown}] under [sweep] (docs/sweeps.md)"
        )
    return value


def parse_widths(text: str) -> tuple[int, ...]:
    """``"300,100"`` → ``(300, 100)``; ``""`` or ``"none"`` → ``()`` (no hidden layer)."""
    if text.strip().lower() in ("", "none"):
        return ()
    if any(not part.strip() for part in text.split(",")):  # "8,,8": a width left out?
        raise InitlabError(
            f"hidden widths must be integers like 300,100; '{text}' has an empty one"
        )
    try:
        widths = tuple(int(w) for w in split_list(text))
    except ValueError:
        raise InitlabError(f"hidden widths must be integers like 300,100; got '{text}'") from None
    if any(w <= 0 for w in widths):
        raise InitlabError(f"hidden widths must be positive, got '{text}'")
    return widths


def parse_seeds(text: str) -> list[int]:
    """``"3"`` → seeds 0, 1, 2; ``"0,5,7"`` → those seeds; ``"10-14"`` → 10..14 (at most
    :data:`initlab.sweep.seeds.MAX_SEEDS` of them)."""
    from initlab.sweep.seeds import MAX_SEEDS, seed_list

    span = "-" in text.strip("-")
    try:
        if "," in text:
            return [int(s) for s in split_list(text)]
        if span:
            lo, hi = (int(p) for p in text.split("-", 1))
            count = hi - lo + 1
        else:
            lo, count = 0, int(text)
    except ValueError:
        raise InitlabError(
            f"--seeds takes a count (3) or seeds (0,5,7 or 10-14); got {quoted(text)}"
        ) from None
    if count < 1:
        empty = f"--seeds {text} is an empty range: write it low-high (e.g. 10-14)"
        raise InitlabError(empty if span else f"--seeds must be at least 1, got {count}")
    if span and count > MAX_SEEDS:  # not a count of seeds the user typed
        raise InitlabError(f"--seeds {text} spans {count:,} seeds; at most {MAX_SEEDS:,}")
    return list(seed_list(list(range(lo, lo + count)) if span else count, "--seeds"))


def parse_bias(text: str) -> str | float:
    """``--bias``: a number is a constant; anything else a policy or initializer spec."""
    try:
        return float(text)
    except ValueError:
        return text


def parse_model_args(items: list[str] | None) -> dict[str, int | float | bool | str]:
    """``["width=64", "bn=true", "act=gelu"]`` → ``{"width": 64, "bn": True, "act": "gelu"}``.

    A value is an int if it reads as one, else a float, else ``true``/``false`` (any case),
    else text. A key given twice is refused (which value was meant?).
    """
    parsed: dict[str, int | float | bool | str] = {}
    given: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise InitlabError(
                f"--model-arg takes key=value with a Python name as key (e.g. width=64), "
                f"got '{item}'"
            )
        if key in given:
            raise InitlabError(
                f"--model-arg {key} is given twice ({given[key]}, {item}): give each model "
                "argument once"
            )
        given[key] = item
        parsed[key] = _scalar(value.strip())
    return parsed


def _scalar(text: str) -> int | float | bool | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text
