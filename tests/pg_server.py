"""A throwaway PostgreSQL server for the tests (not a test): ``initdb`` + ``pg_ctl`` in a temp
directory, on a free local port, trusting local connections as user ``batten``.

PostgreSQL refuses to run as root, so as root the server runs as an unprivileged account: the
``postgres`` account the OS packages create, else a ``batten-pg`` account made with ``useradd``.
The binaries are found on ``PATH`` or where Debian's ``postgresql`` package puts them
(``/usr/lib/postgresql/<version>/bin``), which ``.ci/run`` installs when missing.

Used by ``tests/conftest.py`` (the ``postgres_server`` fixture) and by ``tests/cargo_test.sh``:
``python3 tests/pg_server.py start DIR`` prints the server's URL, ``... stop DIR`` stops it.

``BATTEN_TEST_POSTGRES_URL`` (e.g. ``postgresql://me:pw@db.example:5432/postgres``) names a
running server to use instead (:func:`external`): the tests create their databases on it with
the ``createdb`` client (or psycopg when importable) and drop them afterwards, and the tests that
stop and restart the server are skipped.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

USER = "batten"
TIMEOUT_S = 60


def bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``createdb``, or ``None``:
    ``$BATTEN_PG_BIN`` when set (an empty one means "not installed", for tests of the skip),
    else ``initdb``'s on ``PATH``, else Debian's ``/usr/lib/postgresql/<version>/bin``."""
    given = os.environ.get("BATTEN_PG_BIN")
    if given is not None:
        return Path(given) if given and (Path(given) / "initdb").exists() else None
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _account() -> str | None:
    """The account to run the server as: ``None`` (this one) unless running as root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "batten-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "batten-pg"],
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    return "batten-pg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], account: str | None) -> subprocess.CompletedProcess[str]:
    if account is not None:
        argv = ["runuser", "-u", account, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, cwd="/")


class Server:
    """A PostgreSQL server in ``directory`` (its data in ``data/``, its log in ``log``)."""

    #: The tests may stop and start it (:meth:`stop`, :meth:`start`).
    restartable = True

    def __init__(self, directory: Path, port: int, account: str | None, bin_dir: Path) -> None:
        self.directory = directory
        self.port = port
        self.account = account
        self.bin = bin_dir

    @property
    def url(self) -> str:
        """``postgresql://batten@127.0.0.1:PORT/postgres``."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def url_of(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Starts (or restarts) the server and waits until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        done = _run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-o",
                options,
                "-l",
                str(self.directory / "log"),
                "-w",
                "-t",
                "30",
                "start",
            ],
            self.account,
        )
        if done.returncode != 0:
            log = (self.directory / "log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}\n{log}")

    def stop(self) -> None:
        """Stops the server (fast shutdown: open connections are closed)."""
        _run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
                "stop",
            ],
            self.account,
        )

    def createdb(self, name: str) -> str:
        """Creates database ``name``; returns its URL."""
        done = _run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name],
            self.account,
        )
        if done.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {done.stderr}")
        return self.url_of(name)


#: The environment variable naming an external server's URL (a database on it the tests'
#: account may connect to, and create databases from).
EXTERNAL_ENV = "BATTEN_TEST_POSTGRES_URL"


class External:
    """A running server the tests did not start (``BATTEN_TEST_POSTGRES_URL``): the same
    ``url`` / ``url_of`` / ``createdb`` as :class:`Server`; it cannot be stopped or restarted
    (``restartable`` is false: the tests that do are skipped)."""

    restartable = False

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise RuntimeError(
                f"{EXTERNAL_ENV} must be a postgresql://user[:password]@host[:port]/db URL"
            )
        self.url = url
        self._parts = parts
        #: Databases created by :meth:`createdb`, dropped by :meth:`drop_created`.
        self.created: list[str] = []
        #: A random tag in the names of the databases created here, so that sessions sharing
        #: the server (or a later one reusing a pid) never collide.
        self.tag = uuid.uuid4().hex[:6]

    def url_of(self, database: str) -> str:
        """The URL of ``database`` on this server (same user, password and parameters)."""
        return urlunsplit(self._parts._replace(path="/" + database))

    def _sql(self, statement: str) -> None:
        """Runs one statement (``CREATE``/``DROP DATABASE``, which take no parameters) on the
        server's maintenance database: the ``psql`` client when installed, else psycopg."""
        psql = shutil.which("psql")
        if psql is not None:
            done = subprocess.run(
                [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.url, "-c", statement],
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
            if done.returncode != 0:
                raise RuntimeError(f"{statement}: {done.stderr.strip()}")
            return
        try:
            import psycopg  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise RuntimeError(
                f"{EXTERNAL_ENV} is set, but neither the psql client (postgresql-client) nor "
                "psycopg is installed to create the tests' databases"
            ) from None
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    def createdb(self, name: str) -> str:
        """Creates database ``name`` + a random tag; returns its URL."""
        name = f"{name}_{self.tag}"
        self._sql(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.url_of(name)

    def drop_created(self) -> None:
        """Drops the databases :meth:`createdb` created (best effort: ``WITH (FORCE)`` closes
        connections the test process still pools)."""
        for name in self.created:
            try:
                self._sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except (RuntimeError, OSError, subprocess.SubprocessError):
                pass
        self.created.clear()

    def stop(self) -> None:
        raise RuntimeError(f"the server of {EXTERNAL_ENV} was not started by the tests")

    start = stop


def external() -> External | None:
    """The server ``BATTEN_TEST_POSTGRES_URL`` names, or ``None`` when it is unset or empty."""
    url = os.environ.get(EXTERNAL_ENV)
    return External(url) if url else None


def create(directory: Path | None = None) -> Server:
    """Initialises a cluster in a new directory (under ``directory`` if given) and starts it.
    ``RuntimeError`` when PostgreSQL is not installed or does not start."""
    bin_dir = bindir()
    if bin_dir is None:
        raise RuntimeError(
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql)"
        )
    account = _account()
    # Not under pytest's tmp_path: its parents are private to root, the server's account must
    # reach its data directory; and a short path keeps the Unix socket's under 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="batten-pg-", dir=directory))
    if account is not None:
        entry = pwd.getpwnam(account)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    done = _run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        account,
    )
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
    server = Server(root, _free_port(), account, bin_dir)
    server.start()
    (root / "port").write_text(str(server.port))
    return server


def attach(directory: Path) -> Server:
    """The server created in ``directory`` by :func:`create`."""
    port = int((directory / "port").read_text())
    bin_dir = bindir()
    assert bin_dir is not None
    return Server(directory, port, _account(), bin_dir)


def destroy(server: Server) -> None:
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        raise SystemExit("usage: pg_server.py start PARENT_DIR | stop SERVER_DIR")
    if sys.argv[1] == "start":
        try:
            started = create(Path(sys.argv[2]))
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"pg_server.py: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        print(started.directory)
        print(started.url)
    else:
        destroy(attach(Path(sys.argv[2])))
