#!/usr/bin/env bash
# HTTP load test of `navet serve` (release build, durable SQLite in a temp dir) with wrk, logged and unlogged
# side by side in one run:
#   tests/load/run.sh [seconds] [connections]
# (NAVET_LOAD_PROFILE=dev runs a debug build instead: a quick check of the script, not a measurement.)
# Needs wrk (`apt-get install wrk`) and python3 (for the size of the log). Prints one summary line per figure:
#   read  logged   GET /fhir/Patient/{id}                 (patient data: one access-log record per read)
#   read  unlogged GET /fhir/Organization/{id}            (directory: not logged), and the ratio
#   search logged  GET /fhir/Patient?identifier=…         search unlogged GET /fhir/Organization?identifier=…
#   create         POST /fhir/Patient                     (its record in the write's transaction)
#   bytes per access-log record on disk, and the log's growth per million reads
#   the fsync latency of the data directory's disk (what bounds a logged read: each waits for one commit)
# Traffic goes to 127.0.0.1 only, bounded by the duration; the server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-15}
conns=${2:-32}
port=${NAVET_LOAD_PORT:-18080}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 2; }
if [ "${NAVET_LOAD_PROFILE:-release}" = dev ]; then
  cargo build --quiet
  navet=target/debug/navet
else
  cargo build --release --quiet
  navet=target/release/navet
fi
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
# The demo configuration (its clients and keys give the token), as a file with one change: the per-client rate
# limit (default 10,000 requests/s, README "Limits and the edge") is raised, because all of wrk's connections
# are one client and the run measures the server, not the limiter (with the default, the fastest figure is cut
# at 10,000/s by 429s that each wait 100 ms). NAVET_LOAD_CLIENT_RATE=10000 measures with the default.
mkdir -p "$dir/config"
cp -r src/demo/keys-demo-only "$dir/config/"
cat src/demo/navet-demo.toml src/demo/auth-demo.toml > "$dir/config/navet.toml"
printf '\n[limits]\nclient_requests_per_second = %s\n' "${NAVET_LOAD_CLIENT_RATE:-1000000}" >> "$dir/config/navet.toml"
NAVET_LOG=warn "$navet" serve --config "$dir/config/navet.toml" --listen 127.0.0.1:$port --data-dir "$dir/data" &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
base=http://127.0.0.1:$port/fhir
# One token for the whole run (5 minutes), as a real client would reuse it: the verified-token cache is warm.
NAVET_TOKEN=$("$navet" token --server http://127.0.0.1:$port --client demo-mtn-kristianstad --user SE2321000255-P0101)
export NAVET_TOKEN
auth=(-H "authorization: Bearer $NAVET_TOKEN")
post() { # type body -> Location without the version
  curl -sf -D - -o /dev/null -H 'content-type: application/fhir+json' "${auth[@]}" -d "$2" "$base/$1" |
    tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}' | sed 's|/_history/.*||'
}
# The search finds the demo seed's Tolvan Tolvansson (191212121212); the read reads a new Patient.
patient=$(post Patient '{"resourceType":"Patient","name":[{"family":"Tolvansson"}],"gender":"male"}')
org=$(post Organization '{"resourceType":"Organization","identifier":[{"system":"urn:oid:1.2.752.29.4.19","value":"SE2321000255-LOAD1"}],"name":"Lasttest"}')

# wrk, then one line: label, req/s, p50, p99, non-2xx.
run() { # label url [wrk args…]
  local label=$1 url=$2; shift 2
  local out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" "$url")
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  p50=$(awk '$1=="50%"{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses:/{print $5}' <<<"$out")
  printf '%-40s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$label" "$rps" "$p50" "$p99" "${errors:-0}"
  echo "$rps" > "$dir/$(tr -c 'a-z' _ <<<"$label").rps"
}
echo "== navet $(git rev-parse --short HEAD 2>/dev/null || echo '?') (${NAVET_LOAD_PROFILE:-release}): ${secs}s per figure, $conns connections, 2 wrk threads, $(nproc) cores"
records_before=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from audit_log').fetchone()[0])" "$dir/data/audit.db")
run "read-unlogged (Organization/{id})" "$org" -H "authorization: Bearer $NAVET_TOKEN"
run "read-logged (Patient/{id})" "$patient" -H "authorization: Bearer $NAVET_TOKEN"
run "search-unlogged (Organization?identifier=)" "$base/Organization?identifier=urn:oid:1.2.752.29.4.19|SE2321000255-LOAD1" -H "authorization: Bearer $NAVET_TOKEN"
run "search-logged (Patient?identifier=)" "$base/Patient?identifier=http://electronichealth.se/identifier/personnummer|191212121212" -H "authorization: Bearer $NAVET_TOKEN"
run "create (Patient)" "$base/Patient" -s tests/load/create.lua
ratio() { python3 -c "import sys; a,b=(float(open(p).read()) for p in sys.argv[1:3]); print('%.2f' % (a/b))" "$dir/$(tr -c 'a-z' _ <<<"$1").rps" "$dir/$(tr -c 'a-z' _ <<<"$2").rps"; }
printf '%-40s %10s\n' "read logged / unlogged" "$(ratio 'read-logged (Patient/{id})' 'read-unlogged (Organization/{id})')"
printf '%-40s %10s\n' "search logged / unlogged" "$(ratio 'search-logged (Patient?identifier=)' 'search-unlogged (Organization?identifier=)')"
# The access chain's file after the runs: bytes per record (records, index rows and free pages included).
sync
python3 - "$dir/data/audit.db" "$records_before" <<'PY'
import os, sqlite3, sys
path, before = sys.argv[1], int(sys.argv[2])
# The WAL's size after the runs, before it is copied back: it must stay bounded under sustained load.
wal = os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0
print("%-40s %10.1f MB" % ("access-log WAL after the runs", wal / 1e6))
db = sqlite3.connect(path)
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
records = db.execute("select count(*) from audit_log").fetchone()[0]
record_bytes = db.execute("select avg(length(record)) from audit_log").fetchone()[0] or 0
keys = db.execute("select count(*) from audit_key").fetchone()[0]
size = os.path.getsize(path)
per = size / max(records, 1)
print("%-40s %10d records (%d this run), %d index rows" % ("access-log records", records, records - before, keys))
print("%-40s %10.0f bytes (record itself %.0f bytes)" % ("bytes per record on disk", per, record_bytes))
print("%-40s %10.0f MB" % ("log growth per million reads", per * 1e6 / 1e6))
PY
# A logged read is answered after the commit of its record: with N connections at most N reads wait on one
# commit, so the disk's fsync latency bounds the logged read at about N / (1.5 × fsync) req/s.
python3 - "$dir/data" "$conns" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
n, start = 200, time.perf_counter()
for _ in range(n):
    os.pwrite(fd, b"x" * 4096, 0)
    os.fsync(fd)
ms = (time.perf_counter() - start) / n * 1000
os.close(fd)
os.remove(path)
print("%-40s %10.2f ms (logged read bound at %s connections: about %.0f req/s)" % ("fsync latency (data directory)", ms, sys.argv[2], int(sys.argv[2]) / (1.5 * ms / 1000)))
PY
