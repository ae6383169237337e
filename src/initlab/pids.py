"""Whether a process of this machine still runs: what tells a killed writer's leftovers
(a lease, a temporary file) from those of a process still at work."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine may still run: ``False`` when there is no
    such process, or only its zombie (killed, not yet reaped: a container without an init
    process keeps those, and a zombie writes nothing); ``True`` for another user's process
    (it cannot be signalled), and where that cannot be told."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: running
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Linux's ``/proc/PID/stat`` state ``Z`` (elsewhere: ``False``)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
