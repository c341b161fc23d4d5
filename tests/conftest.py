"""Shared fixtures for batten's test-suite.

The tests use real asyncio (``asyncio.run``), real threads and real ``time.sleep``; there is no
pytest-asyncio. Helpers are exposed as fixtures (not importable functions) because pytest may load
more than one module named ``conftest``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest


def _execute(workflow: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``await workflow.execute(*args, **kwargs)`` on a fresh event loop."""
    return asyncio.run(workflow.execute(*args, **kwargs))


@pytest.fixture
def execute() -> Callable[..., Any]:
    """``execute(wf, ...)`` awaits ``wf.execute(...)`` on a fresh event loop; returns the result."""
    return _execute


class InFlight:
    """Counts how many steps are inside a block at once (thread-safe) and the maximum reached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.maximum = 0

    def __enter__(self) -> InFlight:
        with self._lock:
            self.current += 1
            self.maximum = max(self.maximum, self.current)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.current -= 1


@pytest.fixture
def in_flight() -> InFlight:
    """A fresh :class:`InFlight` counter."""
    return InFlight()


class Rendezvous:
    """A meeting point that ``parties`` concurrent steps must all reach before any may go on.

    Proves concurrency without a wall-clock bound: run one after another, the first arrival
    waits alone and fails after ``timeout`` seconds (default 30), however loaded the machine.
    Works from async steps (``await arrive()``, polls so it needs no particular event loop) and
    from sync steps on worker threads (``arrive_sync()``). ``arrived`` counts arrivals.
    """

    def __init__(self, parties: int, timeout: float = 30.0) -> None:
        self.parties = parties
        self.timeout = timeout
        self.arrived = 0
        self._cond = threading.Condition()

    def _arrive(self) -> float:
        with self._cond:
            self.arrived += 1
            self._cond.notify_all()
        return time.monotonic() + self.timeout

    async def arrive(self) -> None:
        """Arrive and wait (async) until all parties have; ``TimeoutError`` after ``timeout`` s."""
        deadline = self._arrive()
        while self.arrived < self.parties:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.arrived} of {self.parties} parties arrived")
            await asyncio.sleep(0.005)

    def arrive_sync(self) -> None:
        """Arrive and block until all parties have; ``TimeoutError`` after ``timeout`` s."""
        deadline = self._arrive()
        with self._cond:
            while self.arrived < self.parties:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"only {self.arrived} of {self.parties} parties arrived")
                self._cond.wait(left)


@pytest.fixture
def rendezvous() -> Callable[..., Rendezvous]:
    """``rendezvous(parties, timeout=30.0)`` makes a fresh :class:`Rendezvous`."""
    return Rendezvous


class Clock:
    """Records named events with ``time.perf_counter`` offsets from the clock's creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, name: str) -> None:
        with self._lock:
            self.marks[name] = time.perf_counter() - self.start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


@pytest.fixture
def clock() -> Clock:
    """A :class:`Clock` started when the test asks for it."""
    return Clock()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real ``redis-server`` started for the session on a free local port; yields its URL
    (``redis://127.0.0.1:PORT``, no db). ``.ci/run`` installs the server from the OS packages;
    set ``BATTEN_TEST_REDIS_URL`` to use a running one instead. When neither exists the tests
    using it are skipped (reported as skipped), or fail when ``BATTEN_REQUIRE_SERVICES`` (a
    comma-separated list) names ``redis``, as ``.ci/run`` sets it."""
    import os
    import shutil
    import subprocess

    given = os.environ.get("BATTEN_TEST_REDIS_URL")
    if given:
        yield given.rstrip("/").rsplit("/", 1)[0] if given.count("/") > 2 else given
        return
    exe = shutil.which("redis-server")
    if exe is None:
        required = os.environ.get("BATTEN_REQUIRE_SERVICES", "").split(",")
        if "redis" in (s.strip() for s in required):
            pytest.fail(
                "BATTEN_REQUIRE_SERVICES names redis, but redis-server is not installed and "
                "BATTEN_TEST_REDIS_URL is unset (.ci/run installs it)"
            )
        pytest.skip("redis-server is not installed (and BATTEN_TEST_REDIS_URL is unset)")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket

    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


_DB = [0]


@pytest.fixture
def redis_store_url(redis_url: str) -> str:
    """A Redis URL on a db index of its own (1..15, cycling) flushed before use."""
    import socket

    _DB[0] = _DB[0] % 15 + 1
    db = _DB[0]
    host, port = redis_url.removeprefix("redis://").split(":")
    with socket.create_connection((host, int(port)), timeout=2) as s:
        s.sendall(f"SELECT {db}\r\nFLUSHDB\r\n".encode())
        s.recv(100)
    return f"{redis_url}/{db}"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real PostgreSQL server started for the session (``initdb`` + ``pg_ctl`` in a temp
    directory on a free local port, by ``tests/pg_server.py``); yields its ``pg_server.Server``
    (``.url``, ``.createdb(name)``, ``.stop()``, ``.start()``, ``.restartable``). ``.ci/run``
    installs PostgreSQL from the OS packages. ``BATTEN_TEST_POSTGRES_URL`` names a running server
    to use instead (``pg_server.External``: the databases the tests create on it are dropped at
    the end; it is never stopped). When it is not installed or does not start, the tests using
    it are skipped (reported as skipped), or fail when ``BATTEN_REQUIRE_SERVICES`` names
    ``postgres``."""
    import os

    import pg_server

    given = pg_server.external()
    if given is not None:
        try:
            yield given
        finally:
            given.drop_created()
        return
    required = "postgres" in (
        s.strip() for s in os.environ.get("BATTEN_REQUIRE_SERVICES", "").split(",")
    )
    try:
        server = pg_server.create()
    except Exception as exc:  # not installed, cannot start: skipped unless required
        if required:
            pytest.fail(f"BATTEN_REQUIRE_SERVICES names postgres, but: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        pg_server.destroy(server)


_PG_DB = [0]


@pytest.fixture
def postgres_store_url(postgres_server: Any) -> str:
    """A PostgreSQL URL on a fresh database of its own."""
    _PG_DB[0] += 1
    return str(postgres_server.createdb(f"t{os.getpid()}_{_PG_DB[0]}"))


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """One URL per backend (memory, a SQLite file in tmp_path, a flushed Redis db, a fresh
    PostgreSQL database): tests taking it form the shared store suite."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "runs.db")
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_store_url"))
    return str(request.getfixturevalue("redis_store_url"))
