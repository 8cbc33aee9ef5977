#!/usr/bin/env bash
# What `cleanroom up -d` + `down` of the three-service environment costs on
# native beyond the services' own start: the same sequence (redis until
# `ping` answers, migrate, the app until its page answers, probes 100 ms
# apart, first probe at once, as the engine does) run as plain host
# processes is the baseline; the difference is ours. Target: < 100 ms.
#
#   bench/native-overhead.sh [CLEANROOM_BINARY] [RUNS]
set -euo pipefail
bin=${1:-cleanroom}
runs=${2:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/trio" "$work/www"
cat >"$work/trio/cleanroom.toml" <<'EOF'
[services.redis]
image = "host"
command = ["redis-server", "--port", "6390", "--save", "", "--appendonly", "no"]
ports = [6390]
healthcheck = { test = ["CMD", "redis-cli", "-p", "6390", "ping"], interval = "100ms", retries = 50 }

[services.migrate]
image = "host"
command = ["sh", "-c", "redis-cli -h $REDIS_HOST -p $REDIS_PORT set greeting hi && echo migrated"]
depends_on = { redis = "service_healthy" }

[services.app]
image = "host"
command = ["sh", "-c", "mkdir -p /tmp/www && redis-cli -h redis -p 6390 get greeting > /tmp/www/index.html && exec busybox httpd -f -p 8091 -h /tmp/www"]
ports = [8091]
depends_on = { redis = "service_healthy", migrate = "service_completed_successfully" }
healthcheck = { test = ["CMD", "busybox", "wget", "-qO-", "http://127.0.0.1:8091/"], interval = "100ms", retries = 50 }
EOF

ms() { date +%s%3N; }

# Probes `$@` at once, then every 100 ms, until it succeeds.
until_ok() {
    until "$@" >/dev/null 2>&1; do sleep 0.1; done
}

baseline() {
    local t0 redis app
    t0=$(ms)
    redis-server --bind 127.0.0.1 --port 6392 --save "" --appendonly no >/dev/null &
    redis=$!
    until_ok redis-cli -p 6392 ping
    redis-cli -p 6392 set greeting hi >/dev/null && echo migrated >/dev/null
    redis-cli -p 6392 get greeting >"$work/www/index.html"
    busybox httpd -f -p 127.0.0.1:8092 -h "$work/www" &
    app=$!
    until_ok busybox wget -qO- http://127.0.0.1:8092/
    kill "$redis" "$app"
    wait "$redis" "$app" 2>/dev/null || true
    echo $(($(ms) - t0))
}

ours() {
    local t0
    t0=$(ms)
    (cd "$work/trio" && CLEANROOM_STATE_DIR="$work/state" "$bin" up -d --backend native 2>/dev/null)
    (cd "$work/trio" && CLEANROOM_STATE_DIR="$work/state" "$bin" down --backend native >/dev/null)
    echo $(($(ms) - t0))
}

for i in $(seq "$runs"); do
    b=$(baseline)
    o=$(ours)
    echo "run $i: services alone ${b} ms; cleanroom up -d + down ${o} ms; overhead $((o - b)) ms"
done
