#!/usr/bin/env bash
# `cargo test` of the pure-Rust engine and stores. The Redis store's tests need a server: when
# BATTEN_TEST_REDIS_URL is unset and redis-server is installed, start one on a free local port for
# the duration of the tests (without either, those tests print a skip note).
set -euo pipefail
if [ -n "${BATTEN_TEST_REDIS_URL:-}" ] || ! command -v redis-server >/dev/null 2>&1; then
    exec cargo test --no-default-features "$@"
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
BATTEN_TEST_REDIS_URL="redis://127.0.0.1:$port/0" cargo test --no-default-features "$@"
