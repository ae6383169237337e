"""An option given twice on one command line (``--epochs 1 … --epochs 5``): Click keeps the
last value without a word, so a long command edited in place trains what the user did not
read. :func:`repeated_option` finds it before the command runs; options that collect
several values (``--model-arg``) are left alone. Click's objects are read by their
attributes: Typer may vendor its own Click."""

from __future__ import annotations

from typing import Any


def repeated_option(root: Any, args: list[str]) -> str | None:
    """``"--epochs is given twice ('1', '5'): give it once"`` for the first single-valued option
    of the command ``args`` name that appears more than once (``--flag/--no-flag`` count as
    one option), else ``None``. Stops at ``--``; an option's value is never read as an
    option."""
    if "--help" in args:  # the help asked for is shown, whatever else the line holds
        return None
    command, rest = _subcommand(root, args)
    by_flag = {
        flag: param
        for param in command.params
        if param.param_type_name == "option" and not param.multiple and not param.count
        for flag in (*param.opts, *param.secondary_opts)
    }
    seen: dict[str, list[str]] = {}
    tokens = iter(rest)
    for token in tokens:
        if token == "--":
            break
        flag, equals, value = token.partition("=")
        param = by_flag.get(flag)
        if param is None:
            continue
        if not param.is_flag and not equals:
            value = next(tokens, "")
        given = seen.setdefault(param.name or flag, [])
        given.append(flag if param.is_flag else repr(value))
        if len(given) == 2:
            return f"{param.opts[0]} is given twice ({', '.join(given)}): give it once"
    return None


def _subcommand(root: Any, args: list[str]) -> tuple[Any, list[str]]:
    """The (sub)command ``args`` name (``store check``) and the arguments after its name;
    a group's own options before the name (``initlab --no-mkl-dispatch theory``: flags) are
    passed over."""
    command, rest = root, list(args)
    while getattr(command, "commands", None):
        while rest and rest[0].startswith("-") and rest[0] not in command.commands:
            rest = rest[1:]
        if not rest or rest[0] not in command.commands:
            break
        command, rest = command.commands[rest[0]], rest[1:]
    return command, rest
