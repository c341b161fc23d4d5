"""Who executes a durable run (private leaf): this process as a lease owner, and whether an
owner recorded in the store is still alive (DESIGN §4 "Ownership").

An owner is ``(host, pid, owner_id, started)``: ``started`` is the process's start time as
Linux counts it (``/proc/<pid>/stat`` field 22, clock ticks since boot), so a later process that
reuses a dead owner's pid is not mistaken for it (as systemd and psutil tell processes apart).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

#: Seconds a run's lease lasts unless renewed (Temporal's heartbeat timeout; Prefect's zombie
#: detector waits a similar 90 s of missed heartbeats).
DEFAULT_LEASE_SECONDS = 30.0
#: Seconds between two renewals of a held lease.
DEFAULT_HEARTBEAT_SECONDS = 10.0

__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "DEFAULT_LEASE_SECONDS",
    "Owner",
    "lease_is_live",
    "new_owner",
    "owner_is_alive",
    "process_start",
]

#: ``(host, pid, owner_id, started)``.
Owner = tuple[str, int, str, "int | None"]


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time)`` of process ``pid`` from ``/proc``, or ``None`` where unknown."""
    # NOTE: os.open/os.read rather than open(): no buffered file object for one small read
    # (~30 µs of the first durable run in a process, issue 18's D3).
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) is in parentheses and may hold spaces or ")": split after
    # the last ")".
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def process_start(pid: int) -> int | None:
    """Process ``pid``'s start time (clock ticks since boot; Linux), or ``None`` where unknown."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _host() -> str:
    # BATTEN_HOST_ID names this host in leases instead of its host name: containers that share
    # a name, or several "hosts" on one machine in tests. Owners on other hosts are taken at
    # their word until their lease expires (owner_is_alive), so two real hosts must not share it.
    given = os.environ.get("BATTEN_HOST_ID")
    if given:
        return given
    # NOTE: imported on first use: socket is ~3 ms of `import batten` (runs without a store
    # never need it); os.urandom stands in for secrets (~20 ms with hashlib).
    import socket

    return socket.gethostname()


#: ``(pid, start time, host)`` of this process, read once per pid (a forked child reads its
#: own).
_me: tuple[int, int | None, str] | None = None


def new_owner() -> Owner:
    """This process as a new lease owner: host name (``BATTEN_HOST_ID`` or the host's name), pid,
    a random id, start time.
    NOTE: the start time and the host are read once per process (per pid, so a forked child
    reads its own): reading ``/proc/<pid>/stat`` per durable run was ~50 µs of issue 18's D4
    (1,000 short durable runs), the environment and the host name ~5 µs."""
    pid, started, host = _identity()
    return host, pid, os.urandom(8).hex(), started


def _identity() -> tuple[int, int | None, str]:
    """``(pid, start time, host)`` of this process (see :func:`new_owner`)."""
    global _me
    pid = os.getpid()
    if _me is None or _me[0] != pid:
        _me = (pid, process_start(pid), _host())
    return _me


def owner_is_alive(lease: Mapping[str, Any]) -> bool:
    """Whether the process a lease names may still run: ``True`` unless it is on this host and
    its pid is gone, a zombie, or now another process (another start time). An owner on
    another host is taken at its word until its lease expires."""
    if lease["host"] != _identity()[2]:
        return True
    pid = int(lease["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    except OSError:
        return True
    stat = _stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state == "Z":  # exited, not yet reaped by its parent
        return False
    return lease.get("started") is None or started == lease["started"]


def lease_is_live(lease: Mapping[str, Any] | None, now: float | None = None) -> bool:
    """Whether ``lease`` (a store's lease dict, or ``None``) still holds its run: not expired
    at ``now`` (unix seconds; default the clock) and its owner alive (:func:`owner_is_alive`)."""
    if lease is None:
        return False
    if float(lease["expires_at"]) <= (time.time() if now is None else now):
        return False
    return owner_is_alive(lease)
