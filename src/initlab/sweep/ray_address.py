"""Whether a Ray cluster answers at an address, before a sweep starts.

``ray.init(address="host:port")`` on an address where no cluster listens does not raise: Ray
2.x retries the connection to the head node's GCS for minutes (``gcs_client ... TimedOut``)
while the sweep's progress line says it is running. One TCP connection with a deadline
(:data:`CONNECT_SECONDS`) tells "nothing listens there" in seconds, before the store is
touched; a cluster that answers is then Ray's to judge.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from initlab.errors import InitlabError, option

CONNECT_SECONDS = 5.0
"""How long the check waits for the head node to accept a connection."""


def host_port(address: str) -> tuple[str, int] | None:
    """``("10.0.0.1", 6379)`` for ``10.0.0.1:6379`` or ``ray://10.0.0.1:10001``; ``None``
    for ``auto``, ``local`` or anything without a numeric port (Ray judges those)."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str | None, ray: Any = None, seconds: float = CONNECT_SECONDS) -> None:
    """One line when nothing accepts a TCP connection at ``address`` (``None``: the address
    in ``$RAY_ADDRESS``, if any) within ``seconds``: what was tried, and what to do. Nothing
    is checked where ``ray`` (the module) is connected already: that connection is used."""
    given = address if address is not None else os.environ.get("RAY_ADDRESS")
    where = host_port(given) if given else None
    if where is None or (ray is not None and ray.is_initialized()):
        return
    try:
        with socket.create_connection(where, timeout=seconds):
            return
    except OSError as exc:
        why = f"no answer within {seconds:g}s" if isinstance(exc, TimeoutError) else exc
        why = why if isinstance(why, str) else (exc.strerror or str(exc)).lower()
    if address is not None:
        named, instead = option(f"--address {given}"), f"leave {option('--address')} out"
    else:
        named, instead = f"RAY_ADDRESS={given}", "unset RAY_ADDRESS"
    raise InitlabError(
        f"{named}: no Ray cluster answers there ({why}): start one with `ray start --head` on "
        f"that machine and give the address it prints, or {instead} to run on a local Ray"
    )
