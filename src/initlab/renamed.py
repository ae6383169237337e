"""Keywords that were renamed: the old name still works for a while, with a warning.

``initialize`` and ``plan`` named their keywords ``output_layer``, ``residual`` and
``embedding`` where ``compare``, specs, :class:`~initlab.config.RunConfig` and the command
line say ``output_init``, ``residual_init`` and ``embedding_init``; they now take the
common names (:data:`INIT_KEYWORDS`) and accept the old ones with a ``DeprecationWarning``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from initlab.errors import InitlabError

F = TypeVar("F", bound=Callable[..., Any])

INIT_KEYWORDS = {
    "output_layer": "output_init",
    "residual": "residual_init",
    "embedding": "embedding_init",
}
"""Old keyword → its name everywhere else (compare, specs, ``RunConfig``, the CLI)."""


def renamed_keywords(renames: Mapping[str, str]) -> Callable[[F], F]:
    """Let the decorated function take each old keyword of ``renames`` (old → new) as its
    new one, with a ``DeprecationWarning`` naming the new; both given → one line."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise InitlabError(
                        f"{function.__name__}() got {old}= and {new}=: {old} is the old name "
                        f"of {new}, give {new}= only"
                    )
                warnings.warn(
                    f"{function.__name__}({old}=...) is now {new}=, as in compare and the "
                    f"command line's --{new.replace('_', '-')}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
