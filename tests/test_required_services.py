"""Tests that need a service (a redis-server) never pass untested: without the service they are
reported as skipped (pytest) or ignored (cargo), and where ``BATTEN_REQUIRE_SERVICES`` names the
service, as ``.ci/run`` sets it, its absence is a failure. Each check runs the real harness in a
subprocess whose PATH holds no redis-server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_REDIS_TEST = (
    "tests/test_durable.py::test_a_durable_run_records_the_run_and_every_status_change[redis]"
)


def _without_redis(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment with an empty PATH (so no redis-server is found) and no server URL."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("BATTEN_TEST_REDIS_URL", "CI")}
    env.pop("BATTEN_REQUIRE_SERVICES", None)
    return {**env, "PATH": str(empty), **extra}


def _pytest(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", _REDIS_TEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_redis_test_without_a_server_is_reported_as_skipped(tmp_path: Path) -> None:
    done = _pytest(_without_redis(tmp_path))
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in summary and "passed" not in summary, summary


def test_a_redis_test_without_a_server_fails_where_redis_is_required(tmp_path: Path) -> None:
    done = _pytest(_without_redis(tmp_path, BATTEN_REQUIRE_SERVICES="redis"))
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode != 0, done.stdout
    assert "BATTEN_REQUIRE_SERVICES names redis" in done.stdout, done.stdout
    assert "error" in summary and "skipped" not in summary, summary


def test_the_cargo_harness_fails_where_redis_is_required_and_missing(tmp_path: Path) -> None:
    done = subprocess.run(
        ["/bin/bash", "tests/cargo_test.sh"],
        cwd=ROOT,
        env=_without_redis(tmp_path, BATTEN_REQUIRE_SERVICES="redis"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "BATTEN_REQUIRE_SERVICES names redis" in done.stderr, done.stderr


def test_ci_requires_every_service() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    found = re.search(r"^export BATTEN_REQUIRE_SERVICES=(\w+(?:,\w+)*)$", ci, re.MULTILINE)
    assert found, ci
    required = set(found.group(1).split(","))
    assert {"redis", "postgres", "chromium", "ray", "netns"} <= required, found.group(0)
    assert "apt-get install -y -qq postgresql" in ci


_POSTGRES_TEST = (
    "tests/test_durable.py::test_a_durable_run_records_the_run_and_every_status_change[postgres]"
)


def _without_postgres(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment with no PostgreSQL binaries (``BATTEN_PG_BIN`` names an empty dir)."""
    empty = tmp_path / "no-pg"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("BATTEN_REQUIRE_SERVICES", "CI")}
    return {**env, "BATTEN_PG_BIN": str(empty), **extra}


def _pytest_postgres(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", _POSTGRES_TEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_postgres_test_without_a_server_is_reported_as_skipped(tmp_path: Path) -> None:
    done = _pytest_postgres(_without_postgres(tmp_path))
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in summary and "passed" not in summary, summary


def test_a_postgres_test_without_a_server_fails_where_postgres_is_required(
    tmp_path: Path,
) -> None:
    done = _pytest_postgres(_without_postgres(tmp_path, BATTEN_REQUIRE_SERVICES="postgres"))
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode != 0, done.stdout
    assert "BATTEN_REQUIRE_SERVICES names postgres" in done.stdout, done.stdout
    assert "error" in summary and "skipped" not in summary, summary


def test_the_cargo_harness_fails_where_postgres_is_required_and_missing(tmp_path: Path) -> None:
    env = _without_postgres(tmp_path, BATTEN_REQUIRE_SERVICES="postgres")
    env.pop("BATTEN_TEST_POSTGRES_URL", None)
    # No redis-server either (redis is not required here): the harness stops before cargo.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    done = subprocess.run(
        ["/bin/bash", "tests/cargo_test.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "BATTEN_REQUIRE_SERVICES names postgres" in done.stderr, done.stderr


def _rust_tests(source: str) -> list[tuple[str, str, str]]:
    """``(attributes, name, body)`` of every ``#[test]`` function at the top level."""
    pattern = re.compile(r"((?:#\[[^\n]*\]\n)+)fn (\w+)\(\) \{\n(.*?)\n\}\n", re.DOTALL)
    return [m.groups() for m in pattern.finditer(source) if "#[test]" in m.group(1)]


def test_every_cargo_test_that_needs_a_redis_server_is_ignored_without_one() -> None:
    source = (ROOT / "tests" / "store_redis.rs").read_text(encoding="utf-8")
    needing = [t for t in _rust_tests(source) if "server_url()" in t[2]]
    assert len(needing) >= 8, [name for _attrs, name, _body in needing]
    unmarked = [name for attrs, name, _body in needing if "#[ignore" not in attrs]
    assert unmarked == []
    conformance = (ROOT / "tests" / "store_conformance.rs").read_text(encoding="utf-8")
    redis_module = conformance.split("mod redis {", 1)[1].split("}\n    };", 1)[0]
    assert "#[ignore" in redis_module and "redis_store" in redis_module


def test_every_cargo_test_that_needs_a_postgres_server_is_ignored_without_one() -> None:
    source = (ROOT / "tests" / "store_postgres.rs").read_text(encoding="utf-8")
    needing = [
        t for t in _rust_tests(source) if "server_url()" in t[2] or "fresh_database()" in t[2]
    ]
    assert len(needing) >= 6, [name for _attrs, name, _body in needing]
    unmarked = [name for attrs, name, _body in needing if "#[ignore" not in attrs]
    assert unmarked == []
    conformance = (ROOT / "tests" / "store_conformance.rs").read_text(encoding="utf-8")
    module = conformance.split("mod postgres {", 1)[1].split("}\n    };", 1)[0]
    assert "#[ignore" in module and "postgres_store" in module


_RAY_TEST = "tests/test_ray.py::test_map_of_cpu_bound_steps_spreads_over_both_workers"


def _without_ray(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment with a ``ray`` package first on the path that cannot be imported."""
    blocked = tmp_path / "no-ray"
    (blocked / "ray").mkdir(parents=True, exist_ok=True)
    (blocked / "ray" / "__init__.py").write_text("raise ImportError('ray blocked by the test')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("BATTEN_REQUIRE_SERVICES", "CI")}
    paths = [str(blocked), str(ROOT / "python"), env.get("PYTHONPATH", "")]
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}


def _pytest_ray(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", _RAY_TEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_ray_cluster_test_without_ray_is_reported_as_skipped(tmp_path: Path) -> None:
    done = _pytest_ray(_without_ray(tmp_path))
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in summary and "passed" not in summary, summary


def test_a_ray_cluster_test_without_ray_fails_where_ray_is_required(tmp_path: Path) -> None:
    done = _pytest_ray(_without_ray(tmp_path, BATTEN_REQUIRE_SERVICES="redis,ray"))
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode != 0, done.stdout
    assert "BATTEN_REQUIRE_SERVICES names ray" in done.stdout, done.stdout
    assert "error" in summary and "skipped" not in summary, summary


_NETNS_TEST = "tests/test_ray_netns.py::test_map_over_nodes_in_their_own_network_namespaces"


def _pytest_netns(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """The network-namespace Ray test with a PATH holding no ``ip`` (so no namespace can be
    made, and no cluster is started)."""
    empty = tmp_path / "no-ip"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("BATTEN_REQUIRE_SERVICES", "CI")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", _NETNS_TEST],
        cwd=ROOT,
        env={**env, "PATH": str(empty), **extra},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_netns_ray_test_without_network_namespaces_is_reported_as_skipped(
    tmp_path: Path,
) -> None:
    done = _pytest_netns(tmp_path)
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in summary and "passed" not in summary, summary


def test_the_netns_ray_test_fails_where_netns_is_required_and_missing(tmp_path: Path) -> None:
    done = _pytest_netns(tmp_path, BATTEN_REQUIRE_SERVICES="ray,netns")
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode != 0, done.stdout
    assert "BATTEN_REQUIRE_SERVICES names netns" in done.stdout, done.stdout
    assert "error" in summary and "skipped" not in summary, summary
