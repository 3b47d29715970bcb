#!/usr/bin/env bash
# Peak memory of `navet serve` under 32 concurrent ~10 MB POSTs (issue 8, item 6).
#   tests/load/big_bodies.sh [binary] [concurrency] [megabytes]
# Starts navet (default target/debug/navet: memory does not depend on the optimisation level) on 127.0.0.1
# with a temp data directory, posts `concurrency` Patients of about `megabytes` MB at once with curl, and
# prints the statuses and the server's peak resident set (VmHWM from /proc/<pid>/status) and what it still
# holds afterwards (VmRSS). Traffic goes to 127.0.0.1 only; the server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/debug/navet}
n=${2:-32}
mb=${3:-10}
port=${NAVET_LOAD_PORT:-18081}
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
# 10 MB stays under the default body limit of 10 MiB, so the embedded demo configuration serves as is.
NAVET_LOG=warn "$bin" serve --listen 127.0.0.1:$port --data-dir "$dir/data" &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
token=$("$bin" token --server http://127.0.0.1:$port --client demo-mtn-kristianstad --user SE2321000255-P0101)
# A Patient with about `mb` MB of small extensions: many small JSON objects, the costliest shape to parse.
python3 - "$mb" >"$dir/body.json" <<'PY'
import json, sys
target = int(sys.argv[1]) * 1_000_000
one = {"url": "http://navet.example/ext", "valueString": "abcdefghij"}
n = target // (len(json.dumps(one, separators=(",", ":"))) + 1)
print(json.dumps({"resourceType": "Patient", "gender": "female", "extension": [one] * n}, separators=(",", ":")))
PY
echo "body: $(stat -c %s "$dir/body.json") bytes; $n concurrent POSTs; server RSS before: $(awk '/VmRSS/{print $2, $3}' /proc/$pid/status)"
start=$(date +%s.%N)
for i in $(seq "$n"); do
  curl -s -o /dev/null -w '%{http_code}\n' --max-time 300 -H 'content-type: application/fhir+json' \
    -H "authorization: Bearer $token" --data-binary @"$dir/body.json" http://127.0.0.1:$port/fhir/Patient &
done | sort | uniq -c | sed 's/^/status: /'
end=$(date +%s.%N)
sleep 1
echo "elapsed: $(echo "$end - $start" | bc) s"
echo "peak RSS (VmHWM): $(awk '/VmHWM/{print $2, $3}' /proc/$pid/status); RSS after: $(awk '/VmRSS/{print $2, $3}' /proc/$pid/status)"
