#!/usr/bin/env bash
# `cargo test` of the pure-Rust engine and stores. Arguments go to `cargo test`; those after a `--`
# go to the test binaries.
#
# The Redis and PostgreSQL stores' tests need a server, so they are `#[ignore]`d: a plain `cargo
# test` reports them as ignored, never as passed untested. This script runs them
# (`--include-ignored`) against BATTEN_TEST_REDIS_URL / BATTEN_TEST_POSTGRES_URL when set, else
# against a redis-server / PostgreSQL server it starts on a free local port when one is installed.
# Without one, its tests stay ignored and the summary says so, unless BATTEN_REQUIRE_SERVICES names
# `redis` / `postgres` (as `.ci/run` does): then a missing server is a failure.
set -euo pipefail

cargo_args=()
test_args=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then
        shift
        test_args=("$@")
        break
    fi
    cargo_args+=("$1")
    shift
done

required() {
    case ",${BATTEN_REQUIRE_SERVICES:-}," in
    *,"$1",*) return 0 ;;
    esac
    return 1
}

# The Redis server: BATTEN_TEST_REDIS_URL, or one started here.
redis_url="${BATTEN_TEST_REDIS_URL:-}"
if [ -z "$redis_url" ] && ! command -v redis-server >/dev/null 2>&1; then
    if required redis; then
        echo "tests/cargo_test.sh: BATTEN_REQUIRE_SERVICES names redis, but redis-server is not" \
            "installed and BATTEN_TEST_REDIS_URL is unset" >&2
        exit 1
    fi
    echo "tests/cargo_test.sh: no redis-server: the Redis store's tests are reported as ignored" >&2
fi
dir=$(mktemp -d)
cleanup() {
    [ -s "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null
    [ -s "$dir/pg" ] && python3 tests/pg_server.py stop "$(cat "$dir/pg")" >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
if [ -z "$redis_url" ] && command -v redis-server >/dev/null 2>&1; then
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis.pid" >/dev/null
    for _ in $(seq 100); do
        [ -s "$dir/redis.pid" ] && redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.05
    done
    redis_url="redis://127.0.0.1:$port/0"
fi

# The PostgreSQL server: BATTEN_TEST_POSTGRES_URL, or one started here (tests/pg_server.py:
# initdb + pg_ctl in a temp directory on a free port).
postgres_url="${BATTEN_TEST_POSTGRES_URL:-}"
if [ -z "$postgres_url" ]; then
    # In the system temp dir, not $dir: the server runs as another account when this is root.
    if started=$(python3 tests/pg_server.py start "${TMPDIR:-/tmp}" 2>"$dir/pg.err"); then
        printf '%s\n' "$started" | head -1 >"$dir/pg"
        postgres_url=$(printf '%s\n' "$started" | tail -1)
    elif required postgres; then
        echo "tests/cargo_test.sh: BATTEN_REQUIRE_SERVICES names postgres, but no PostgreSQL" \
            "server could be started and BATTEN_TEST_POSTGRES_URL is unset: $(cat "$dir/pg.err")" >&2
        exit 1
    else
        echo "tests/cargo_test.sh: no PostgreSQL server ($(cat "$dir/pg.err")): the PostgreSQL" \
            "store's tests are reported as ignored" >&2
    fi
fi
export BATTEN_TEST_REDIS_URL="$redis_url" BATTEN_TEST_POSTGRES_URL="$postgres_url"

cargo_test() {
    cargo test --no-default-features ${cargo_args[@]+"${cargo_args[@]}"} "$@"
}

if [ -n "$redis_url" ] && [ -n "$postgres_url" ]; then
    # The measurements are ignored for a reason of their own (they want --release); keep them out.
    cargo_test -- --include-ignored --skip measure_ ${test_args[@]+"${test_args[@]}"}
    exit
fi
# A service missing: everything, its tests reported as ignored; then the other service's tests.
cargo_test -- ${test_args[@]+"${test_args[@]}"}
if [ -n "$redis_url" ]; then
    cargo_test --test store_redis -- --include-ignored --skip measure_ ${test_args[@]+"${test_args[@]}"}
    cargo_test --test store_conformance -- --include-ignored redis:: ${test_args[@]+"${test_args[@]}"}
fi
if [ -n "$postgres_url" ]; then
    cargo_test --test store_postgres -- --include-ignored --skip measure_ ${test_args[@]+"${test_args[@]}"}
    cargo_test --test store_conformance -- --include-ignored postgres:: ${test_args[@]+"${test_args[@]}"}
fi
