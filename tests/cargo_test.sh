#!/usr/bin/env bash
# `cargo test` of the pure-Rust engine and stores. Arguments go to `cargo test`; those after a `--`
# go to the test binaries.
#
# The Redis store's tests need a server, so they are `#[ignore]`d: a plain `cargo test` reports
# them as ignored, never as passed untested. This script runs them (`--include-ignored`) against
# BATTEN_TEST_REDIS_URL when set, else against a redis-server it starts on a free local port when
# one is installed. With neither, they stay ignored and the summary says so, unless
# BATTEN_REQUIRE_SERVICES names `redis` (as `.ci/run` does): then a missing server is a failure.
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

with_redis() {
    # The measurements are ignored for a reason of their own (they want --release); keep them out.
    BATTEN_TEST_REDIS_URL="$1" cargo test --no-default-features ${cargo_args[@]+"${cargo_args[@]}"} \
        -- --include-ignored --skip measure_ ${test_args[@]+"${test_args[@]}"}
}

if [ -n "${BATTEN_TEST_REDIS_URL:-}" ]; then
    with_redis "$BATTEN_TEST_REDIS_URL"
    exit
fi
if ! command -v redis-server >/dev/null 2>&1; then
    case ",${BATTEN_REQUIRE_SERVICES:-}," in
    *,redis,*)
        echo "tests/cargo_test.sh: BATTEN_REQUIRE_SERVICES names redis, but redis-server is not" \
            "installed and BATTEN_TEST_REDIS_URL is unset" >&2
        exit 1
        ;;
    esac
    echo "tests/cargo_test.sh: no redis-server: the Redis store's tests are reported as ignored" >&2
    if [ ${#test_args[@]} -eq 0 ]; then
        exec cargo test --no-default-features ${cargo_args[@]+"${cargo_args[@]}"}
    fi
    exec cargo test --no-default-features ${cargo_args[@]+"${cargo_args[@]}"} -- "${test_args[@]}"
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" >/dev/null
trap 'kill "$(cat "$dir/redis.pid")" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    [ -s "$dir/redis.pid" ] && redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
done
with_redis "redis://127.0.0.1:$port/0"
