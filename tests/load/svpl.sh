#!/usr/bin/env bash
# HTTP load test of POST /svpl (release build, durable SQLite in a temp dir) with wrk: SipBegaran messages from
# Kristianstad's kommun, each with a fresh id (so each is stored: CarePlan, Consent, CareTeam, two Tasks,
# Communication, Provenance, the kept message and its access-log record in one transaction).
#   tests/load/svpl.sh [seconds] [connections]
# Needs wrk (`apt-get install wrk`). Traffic goes to 127.0.0.1 only; the server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-15}
conns=${2:-32}
port=${NAVET_LOAD_PORT:-18081}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
NAVET_LOG=warn target/release/navet serve --listen 127.0.0.1:$port --data-dir "$dir/data" &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
NAVET_TOKEN=$(target/release/navet token --server http://127.0.0.1:$port --client demo-kommun-kristianstad --user SE2120000999-P1290A)
export NAVET_TOKEN
echo "== POST /svpl SipBegaran (${secs}s, $conns connections, 2 wrk threads)"
wrk -t2 -c"$conns" -d"${secs}s" --latency -s tests/load/svpl.lua "http://127.0.0.1:$port/svpl"
