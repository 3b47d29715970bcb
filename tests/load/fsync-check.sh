#!/usr/bin/env bash
# Durability check: every acknowledged write is synced to disk, not only handed to the page cache.
#   tests/load/fsync-check.sh [writes]
# Runs `navet serve` (debug build, durable SQLite in a temp dir) under strace, makes N sequential creates
# (each its own commit: one at a time, so no group commit joins them) and counts fsync/fdatasync calls.
# Needs strace (`apt-get install strace`). Traffic goes to 127.0.0.1 only; the server is stopped at the end.
# Expect at least one sync per acknowledged write (SQLite in WAL with synchronous=FULL syncs the WAL on
# every commit; checkpoints add a few more).
set -euo pipefail
cd "$(dirname "$0")/../.."
writes=${1:-200}
port=${NAVET_FSYNC_PORT:-18090}
command -v strace >/dev/null || { echo "strace is not installed: apt-get install strace" >&2; exit 2; }
cargo build --quiet
dir=$(mktemp -d)
# navet runs under strace: stopping navet (SIGTERM, a graceful shutdown) ends strace too.
trap 'pkill -TERM -f "navet serve --listen 127.0.0.1:$port" 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
NAVET_LOG=warn strace -f -qq -e trace=fsync,fdatasync -o "$dir/strace.log" \
  target/debug/navet serve --listen 127.0.0.1:$port --data-dir "$dir/data" &
pid=$!
for _ in $(seq 300); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
token=$(target/debug/navet token --server http://127.0.0.1:$port --client demo-mtn-kristianstad --user SE2321000255-P0101)
before=$(grep -cE 'fsync|fdatasync' "$dir/strace.log" || true)
for i in $(seq "$writes"); do
  curl -sf -o /dev/null -H 'content-type: application/fhir+json' -H "authorization: Bearer $token" \
    -d '{"resourceType":"Organization","name":"fsync check '"$i"'"}' http://127.0.0.1:$port/fhir/Organization
done
after=$(grep -cE 'fsync|fdatasync' "$dir/strace.log" || true)
syncs=$((after - before))
echo "acknowledged writes: $writes; fsync+fdatasync during them: $syncs; per write: $(awk "BEGIN{printf \"%.2f\", $syncs/$writes}")"
[ "$syncs" -ge "$writes" ] || { echo "FAILED: fewer syncs than acknowledged writes" >&2; exit 1; }
