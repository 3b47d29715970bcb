#!/usr/bin/env bash
# Load test of the patient timeline (issue 12) with wrk against `navet serve` on a generated store.
#   tests/load/timeline.sh [seconds] [connections] [patients] [resources]
# defaults: 10 s per run, 64 connections, 100,000 patients, 2,000,000 resources (the issue's figures), plus
# one bench patient each with 100, 1,000 and 10,000 entries. For each bench patient: its first page and a deep
# page (the last page of 50, by the `_cursor` the generator wrote). Prints wrk's report per run and the
# store's size on disk.
# NAVET_BUILD=debug measures a debug build (no 16-minute release build); default release.
# NAVET_TIMELINE_DIR=DIR keeps the generated store in DIR and reuses it on the next run (delete it yourself).
# Needs wrk (`apt-get install wrk`). Traffic goes to 127.0.0.1 only, bounded by the duration; the server is
# stopped and the generated data (a few GB at the default size) removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-64}
patients=${3:-100000}
resources=${4:-2000000}
port=${NAVET_LOAD_PORT:-18081}
build=${NAVET_BUILD:-release}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 2; }
if [ "$build" = release ]; then
  cargo build --release --quiet --bin navet
  bin=target/release/navet
else
  cargo build --quiet --bin navet
  bin=target/debug/navet
fi
# The generator writes through navet's store; a debug build of it is fast enough (minutes for 2M resources).
cargo build --quiet --example timeline_data
keep=${NAVET_TIMELINE_DIR:-}
if [ -n "$keep" ]; then dir=$keep; mkdir -p "$dir"; else dir=$(mktemp -d "${TMPDIR:-/tmp}/navet-timeline.XXXXXX"); fi
pid=
trap '[ -n "$pid" ] && { kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; }; [ -n "$keep" ] || rm -rf "$dir"' EXIT
if [ ! -f "$dir/bench.env" ]; then
  echo "== generating $patients patients, $resources resources and the bench patients in $dir"
  NAVET_LOG=warn target/debug/examples/timeline_data --data-dir "$dir/data" \
    --patients "$patients" --resources "$resources" --bench 100,1000,10000 --out "$dir/bench.env.part"
  mv "$dir/bench.env.part" "$dir/bench.env"
fi
# shellcheck disable=SC1091
. "$dir/bench.env"
echo "== store on disk: $(du -sh "$dir/data" | cut -f1)"
NAVET_LOG=warn $bin serve --listen 127.0.0.1:$port --data-dir "$dir/data" &
pid=$!
for _ in $(seq 300); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
base=http://127.0.0.1:$port/fhir
# One token for the whole run (5 minutes), as a real client would reuse it: the verified-token cache is warm.
NAVET_TOKEN=$($bin token --server http://127.0.0.1:$port --client demo-mtn-kristianstad --user SE2321000255-P0101)
run() {
  echo "== $1 (${secs}s, $conns connections, 2 wrk threads)"
  # A wrong URL would measure fast 4xx answers: check one request first.
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $NAVET_TOKEN" "$2")
  [ "$status" = 200 ] || { echo "$2 answered $status" >&2; exit 1; }
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "authorization: Bearer $NAVET_TOKEN" "$2"
}
for n in 100 1000 10000; do
  p=PATIENT_$n c=CURSOR_$n
  run "first page, $n entries" "$base/Patient/${!p}/\$timeline"
  run "deep page (the last of 50), $n entries" "$base/Patient/${!p}/\$timeline?_cursor=${!c}"
done
echo "== store on disk after the runs (access log included): $(du -sh "$dir/data" | cut -f1)"
