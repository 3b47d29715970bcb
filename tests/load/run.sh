#!/usr/bin/env bash
# HTTP load test of `navet serve` (release build, durable SQLite in a temp dir) with wrk.
#   tests/load/run.sh [seconds] [connections]
# Needs wrk (`apt-get install wrk`). Prints wrk's report for read-by-id and for create.
# Traffic goes to 127.0.0.1 only, bounded by the duration; the server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-15}
conns=${2:-32}
port=${NAVET_LOAD_PORT:-18080}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
# The embedded demo configuration: its clients and keys give the token.
NAVET_LOG=warn target/release/navet serve --listen 127.0.0.1:$port --data-dir "$dir/data" &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
base=http://127.0.0.1:$port/fhir
# One token for the whole run (5 minutes), as a real client would reuse it: the verified-token cache is warm.
NAVET_TOKEN=$(target/release/navet token --server http://127.0.0.1:$port --client demo-mtn-kristianstad --user SE2321000255-P0101)
export NAVET_TOKEN
loc=$(curl -sf -D - -o /dev/null -H 'content-type: application/fhir+json' -H "authorization: Bearer $NAVET_TOKEN" \
  -d '{"resourceType":"Patient","name":[{"family":"Tolvansson"}],"gender":"male"}' $base/Patient |
  tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
read_url=${loc%/_history/1}
echo "== read by id: $read_url (${secs}s, $conns connections, 2 wrk threads)"
wrk -t2 -c"$conns" -d"${secs}s" --latency -H "authorization: Bearer $NAVET_TOKEN" "$read_url"
echo "== create Patient (${secs}s, $conns connections)"
wrk -t2 -c"$conns" -d"${secs}s" --latency -s tests/load/create.lua "$base/Patient"
