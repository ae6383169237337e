"""Leases: how several processes on one store share a study's runs.

Before a process trains a run it *leases* it: a row ``leases(run_id, owner, expires)``
written in one ``BEGIN IMMEDIATE`` transaction together with the checks that make it safe.
:class:`Lease` does that one chunk at a time, when an executor has room for one (an idle
worker), so a process holds leases only on what it is about to train or is training.
A run is leased only when

* it is not finished (``ok``, ``stuck``, ``diverged``),
* nobody attempted it since this process started (its ``attempts`` is what it was then:
  a run another process just failed is not retried twice in one round), and
* no other owner holds an unexpired lease on it.

``owner`` is ``host:pid:random``. The owner renews its leases while it trains
(:class:`Heartbeat`, every ``ttl / 3`` seconds, on its own connection); recording a run
drops its lease. A worker killed with SIGKILL stops renewing, its leases expire after
``ttl`` seconds (:data:`LEASE_SECONDS`, or the environment variable
``INITLAB_LEASE_SECONDS``) and another process takes the runs over. On the owner's own
host that happens at once: a lease whose process no longer exists is taken over without
waiting (:func:`owner_alive`), so resuming a killed sweep never waits.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from initlab.notes import note
from initlab.pids import pid_alive

if TYPE_CHECKING:
    from initlab.store.sqlite import Store


class Keyed(Protocol):
    """What a lease hands out: items with a run id (a :class:`~initlab.config.RunConfig`)."""

    def key(self) -> str: ...


K = TypeVar("K", bound=Keyed)

LEASE_SECONDS = 600.0
"""Default lease length: a killed worker's runs are taken over after this long."""

LEASE_TABLE = (
    "CREATE TABLE IF NOT EXISTS leases (run_id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
    "expires REAL NOT NULL)"
)
FINISHED_SQL = "('ok', 'stuck', 'diverged')"


def lease_seconds() -> float:
    """``INITLAB_LEASE_SECONDS`` when set (tests use a few seconds), else 600."""
    value = os.environ.get("INITLAB_LEASE_SECONDS")
    return float(value) if value else LEASE_SECONDS


def new_owner() -> str:
    """``host:pid:random``: unique per process and per sweep."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_alive(owner: str) -> bool:
    """Whether the process behind ``owner`` may still be running: ``False`` only for an
    owner on this host whose pid no longer exists (a killed sweep being resumed need not
    wait for its leases to expire). A reused pid errs on the safe side: the lease is kept."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return pid_alive(int(pid))


def attempts(conn: sqlite3.Connection, run_ids: Iterable[str]) -> dict[str, int]:
    """``run_id → attempts`` so far (0 for runs never stored)."""
    stored = dict(conn.execute("SELECT run_id, COALESCE(attempts, 0) FROM runs").fetchall())
    return {r: int(stored.get(r, 0)) for r in run_ids}


def claim(
    conn: sqlite3.Connection,
    run_ids: Iterable[str],
    owner: str,
    baseline: Mapping[str, int],
    ttl: float,
) -> tuple[list[str], list[str]]:
    """Lease those of ``run_ids`` that are free (see the module docstring).

    Returns ``(claimed, held)``: the runs leased now, and those another owner is training
    (an unexpired lease); the rest are done. Call inside a write transaction (``BEGIN
    IMMEDIATE``) so that two processes never lease the same run.
    """
    now, claimed, held_by_others = time.time(), [], []
    for run_id in run_ids:
        row = conn.execute(
            f"SELECT status IN {FINISHED_SQL}, COALESCE(attempts, 0) FROM runs WHERE run_id=?",
            (run_id,),
        ).fetchone()
        if row is not None and (row[0] or row[1] != baseline.get(run_id, 0)):
            continue
        held = conn.execute(
            "SELECT owner, expires FROM leases WHERE run_id=?", (run_id,)
        ).fetchone()
        if held is not None and held[0] != owner and held[1] > now and owner_alive(held[0]):
            held_by_others.append(run_id)
            continue
        conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (run_id, owner, now + ttl))
        claimed.append(run_id)
    return claimed, held_by_others


def release(conn: sqlite3.Connection, owner: str, run_ids: Iterable[str] | None = None) -> None:
    """Drop ``owner``'s leases (on ``run_ids`` only, if given)."""
    if run_ids is None:
        conn.execute("DELETE FROM leases WHERE owner=?", (owner,))
    else:
        conn.executemany(
            "DELETE FROM leases WHERE owner=? AND run_id=?", [(owner, r) for r in run_ids]
        )


def holders(conn: sqlite3.Connection, run_ids: Iterable[str]) -> list[tuple[str, int, float]]:
    """``(owner, runs held, latest expiry)`` of the leases on ``run_ids``, by owner."""
    wanted = list(run_ids)
    marks = ", ".join("?" * len(wanted))
    query = f"SELECT owner, COUNT(*), MAX(expires) FROM leases WHERE run_id IN ({marks})"
    return conn.execute(f"{query} GROUP BY owner", wanted).fetchall() if wanted else []


def waiting_line(held: list[tuple[str, int, float]], now: float) -> str:
    """Why a sweep sits idle while other processes train its runs: ``... 3 by host:412
    (renewed while it runs; else taken over in 540 s) ...``."""
    parts = [
        f"{count} by {owner.rpartition(':')[0]} (renewed while it runs; else taken over in "
        f"{max(expires - now, 0):.0f} s)"
        for owner, count, expires in held
    ]
    return (
        f"the rest of this study's runs are being trained by another process: "
        f"{'; '.join(parts)}; waiting for them to finish (Ctrl-C keeps what is done)"
    )


class Heartbeat:
    """A daemon thread that renews ``owner``'s leases every ``ttl / 3`` seconds.

    It uses its own connection (SQLite connections belong to one thread); a renewal that
    fails (the store busy for long, a full disk) is tried again at the next beat.
    """

    def __init__(self, db: Path, owner: str, ttl: float) -> None:
        self.db, self.owner, self.ttl = db, owner, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="lease-heartbeat")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        conn = sqlite3.connect(str(self.db), timeout=self.ttl / 3, isolation_level=None)
        try:
            while not self._stop.wait(self.ttl / 3):
                try:
                    conn.execute(
                        "UPDATE leases SET expires=? WHERE owner=?",
                        (time.time() + self.ttl, self.owner),
                    )
                except sqlite3.Error:
                    continue
        finally:
            conn.close()


class Lease(Generic[K]):
    """One process's share of a study's runs on ``store``: hands out its chunks one at a
    time, each leased right when an executor asks for work (:meth:`take`), so worker
    processes started once per sweep are fed as they become idle and the runs this process
    has not started yet stay free for other processes sharing the store.

    Leases are renewed by a :class:`Heartbeat` while the ``with`` block runs, and the
    leases still held (runs not recorded: interrupted, failed disk) are dropped at its end,
    so another process can take them over at once.
    """

    def __init__(
        self, store: Store, chunks: Iterable[Sequence[K]], ttl: float | None = None
    ) -> None:
        self.store = store
        self._left: deque[list[K]] = deque(list(chunk) for chunk in chunks)
        self.ttl = lease_seconds() if ttl is None else ttl
        self.owner = new_owner()
        self.baseline = store.attempts(item.key() for chunk in self._left for item in chunk)
        self.poll = min(1.0, self.ttl / 4)
        self._retry_at = 0.0
        self._told = False
        self._heartbeat = Heartbeat(store.path, self.owner, self.ttl) if store.path else None

    def __enter__(self) -> Lease[K]:
        if self._heartbeat is not None:
            self._heartbeat.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._heartbeat is not None:
            self._heartbeat.__exit__(*exc)
        with contextlib.suppress(sqlite3.Error, ValueError):  # full disk, damage: they expire
            self.store.release(self.owner)

    @property
    def done(self) -> bool:
        """Whether every chunk has been handed out or found finished elsewhere."""
        return not self._left

    def take(self) -> list[K] | None:
        """The next chunk, cut down to the runs leased for this process now; ``None`` when
        no run can be leased now: the runs left are held by other processes (ask again after
        :meth:`wait`; a lease that expires is taken over) or there are none (:attr:`done`).

        Finished runs, and runs someone else attempted meanwhile, are dropped; the held runs
        of a chunk go to the back of the line. A pass that leases nothing is not repeated for
        :attr:`poll` seconds.
        """
        if time.monotonic() < self._retry_at:
            return None
        held: list[str] = []
        for _ in range(len(self._left)):
            chunk = self._left.popleft()
            mine, theirs = self.store.claim(
                [item.key() for item in chunk], self.owner, self.baseline, self.ttl
            )
            if others := set(theirs):
                self._left.append([item for item in chunk if item.key() in others])
                held += theirs
            if mine:
                return [item for item in chunk if item.key() in set(mine)]
        self._retry_at = time.monotonic() + self.poll
        if held and not self._told:  # said once: a sweep idle without a word looks hung
            self._told = True
            note(waiting_line(self.store.holders(held), time.time()))
        return None

    def wait(self) -> None:
        """Sleep until :meth:`take` may lease again (after a pass that leased nothing)."""
        time.sleep(max(0.0, self._retry_at - time.monotonic()))
