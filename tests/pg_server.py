"""A throwaway PostgreSQL server for the tests (not a test): ``initdb`` + ``pg_ctl`` in a temp
directory, on a free local port, trusting local connections as user ``batten``.

PostgreSQL refuses to run as root, so as root the server runs as an unprivileged account: the
``postgres`` account the OS packages create, else a ``batten-pg`` account made with ``useradd``.
The binaries are found on ``PATH`` or where Debian's ``postgresql`` package puts them
(``/usr/lib/postgresql/<version>/bin``), which ``.ci/run`` installs when missing.

Used by ``tests/conftest.py`` (the ``postgres_url`` fixture) and by ``tests/cargo_test.sh``:
``python3 tests/pg_server.py start DIR`` prints the server's URL, ``... stop DIR`` stops it.
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
from pathlib import Path

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
