"""Private network namespaces for tests that need more than one host on one machine.

:func:`private_network` makes one *hub* namespace holding a Linux bridge and one namespace per
host name given, each joined to the bridge by a veth pair and given a private address
(``10.213.X.n/24``, ``X`` random so that two runs at once do not clash). Traffic between two
hosts really crosses interfaces: out of one host's veth, over the bridge, into the other's.
Nothing is added to the root network namespace: every link and address lives in the test's
own namespaces, and on exit every process in them is SIGKILLed and the namespaces are deleted
(deleting a namespace deletes the veths in it, and with them their peers).

Needs root and ``ip`` (iproute2); :func:`unavailable_reason` says why not where it cannot run.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

#: Seconds any one ``ip`` command may take.
IP_TIMEOUT_S = 20


def _ip(*args: str) -> str:
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def unavailable_reason() -> str | None:
    """Why :func:`private_network` cannot run here (not root, no ``ip``, ``ip netns add``
    refused), or None when it can: tries to add (and deletes) one namespace."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to make network namespaces"
    probe = f"btprobe-{uuid.uuid4().hex[:8]}"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` is not permitted here: {exc}"
    with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
        _ip("netns", "delete", probe)
    return None


@dataclass
class Host:
    """One host: namespace ``ns``, its end of the veth pair ``veth``, address ``ip``."""

    name: str
    ns: str
    veth: str
    ip: str

    def exec_prefix(self) -> list[str]:
        """The command prefix that runs a command in this host's namespace."""
        return ["ip", "netns", "exec", self.ns]

    def counters(self) -> dict[str, int]:
        """Bytes received and sent on the host's veth so far: ``{"rx_bytes", "tx_bytes"}``."""
        out = {}
        for key in ("rx_bytes", "tx_bytes"):
            done = subprocess.run(
                [*self.exec_prefix(), "cat", f"/sys/class/net/{self.veth}/statistics/{key}"],
                capture_output=True,
                text=True,
                timeout=IP_TIMEOUT_S,
                check=True,
            )
            out[key] = int(done.stdout)
        return out


@dataclass
class Network:
    hub: str
    hosts: dict[str, Host] = field(default_factory=dict)

    def namespaces(self) -> list[str]:
        return [self.hub, *(h.ns for h in self.hosts.values())]

    def pids(self) -> list[int]:
        """Every process still in one of this network's namespaces."""
        found: list[int] = []
        for ns in self.namespaces():
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                found += [int(p) for p in _ip("netns", "pids", ns).split()]
        return found

    def teardown(self) -> None:
        """SIGKILLs every process in the namespaces (until none is left, at most 20 s), then
        deletes them."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        for ns in self.namespaces():
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                _ip("netns", "delete", ns)


def existing_namespaces() -> set[str]:
    """Names of the network namespaces ``ip netns`` knows."""
    return {line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()}


@contextlib.contextmanager
def private_network(names: list[str]) -> Iterator[Network]:
    """A hub namespace with a bridge and one namespace per name in ``names``, joined to the
    bridge by a veth pair, addressed ``10.213.X.1``, ``.2``, ... in the order given (``lo`` up
    in each). Torn down on exit (:meth:`Network.teardown`). Raises ``RuntimeError`` (after
    tearing down what it made) when an ``ip`` command fails."""
    tag = uuid.uuid4().hex[:6]
    subnet = random.randrange(1, 255)
    net = Network(hub=f"bthub-{tag}")
    try:
        _ip("netns", "add", net.hub)
        _ip("-n", net.hub, "link", "set", "lo", "up")
        _ip("-n", net.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", net.hub, "link", "set", "br0", "up")
        for i, name in enumerate(names, start=1):
            ns = f"bt{name[:6]}-{tag}"
            net.hosts[name] = host = Host(name, ns, "eth0", f"10.213.{subnet}.{i}")
            _ip("netns", "add", ns)
            # made in the hub (so the root namespace never holds it), one end moved out
            _ip("-n", net.hub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0")
            _ip("-n", net.hub, "link", "set", "eth0", "netns", ns)
            _ip("-n", net.hub, "link", "set", f"p{i}", "master", "br0")
            _ip("-n", net.hub, "link", "set", f"p{i}", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{host.ip}/24", "dev", host.veth)
            _ip("-n", ns, "link", "set", host.veth, "up")
        yield net
    finally:
        net.teardown()
