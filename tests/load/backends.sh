#!/usr/bin/env bash
# SQLite against PostgreSQL, one node against two, in one run (issue 16):
#   tests/load/backends.sh [seconds] [connections] [postgres-url]
# For each of: SQLite (one node), PostgreSQL one node, PostgreSQL two nodes (wrk's connections split over
# both, their req/s summed), it measures with wrk
#   read  logged   GET /fhir/Patient/{id}    (one access-log record per read)
#   create         POST /fhir/Patient        (a version, its index rows and its change-chain record)
# then ordination intake in process (`cargo bench --bench ordination`, one node) on SQLite and PostgreSQL.
# The PostgreSQL database defaults to the CI machine's (postgres://postgres@127.0.0.1:5432/test); each run
# uses fresh schemas. Needs wrk (`apt-get install wrk`). Everything shares this machine's cores: PostgreSQL,
# the nodes and wrk compete, so two nodes on one machine show the cost of coordination, not the gain of a
# second machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-32}
pg=${3:-${NAVET_LOAD_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet
navet=target/release/navet
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
mkdir -p "$dir/config"
cp -r src/demo/keys-demo-only "$dir/config/"
cat src/demo/navet-demo.toml src/demo/auth-demo.toml > "$dir/config/navet.toml"
printf '\n[limits]\nclient_requests_per_second = 1000000\n' >> "$dir/config/navet.toml"

schema_url() { # a fresh schema of $pg
  local s="bench_$(date +%s%N)"
  psql "$pg" -qc "CREATE SCHEMA $s" >/dev/null
  local sep='?'; [[ "$pg" == *\?* ]] && sep='&'
  echo "${pg}${sep}options=-csearch_path%3D$s"
}
start() { # port data-dir [database-url] [base-url]
  # Nodes of one region answer to one address (the tokens' audience): the second node takes the first's URL.
  NAVET_LOG=error NAVET_DATABASE_URL="${3:-}" "$navet" serve --config "$dir/config/navet.toml" \
    --listen 127.0.0.1:$1 --data-dir "$2" --base-url "${4:-http://127.0.0.1:$1}" 2>>"$dir/navet.log" &
  pids+=($!)
  for _ in $(seq 300); do curl -sf http://127.0.0.1:$1/readyz >/dev/null && return; sleep 0.1; done
  echo "navet on port $1 did not start" >&2; exit 1
}
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; pids=(); }
wrk_rps() { # url [args] -> req/s p99
  local out; out=$(wrk -t2 -c"$1" -d"${secs}s" --latency "${@:2}")
  echo "$(awk '/^Requests\/sec:/{print $2}' <<<"$out") $(awk '$1=="99%"{print $2}' <<<"$out") $(awk '/Non-2xx or 3xx responses:/{print $5}' <<<"$out")"
}
measure() { # label port [port2]
  local label=$1 a=$2 b=${3:-}
  local base=http://127.0.0.1:$a/fhir
  export NAVET_TOKEN
  NAVET_TOKEN=$("$navet" token --server http://127.0.0.1:$a --client demo-mtn-kristianstad --user SE2321000255-P0101)
  local patient
  patient=$(curl -sf -D - -o /dev/null -H 'content-type: application/fhir+json' -H "authorization: Bearer $NAVET_TOKEN" \
    -d '{"resourceType":"Patient","name":[{"family":"Bench"}]}' "$base/Patient" | tr -d '\r' |
    awk -F': ' 'tolower($1)=="location"{print $2}' | sed 's|/_history/.*||')
  local id=${patient##*/}
  for what in read create; do
    # create.lua sets the Authorization header itself (a second one would be refused with 400).
    local args=(-H "authorization: Bearer $NAVET_TOKEN"); [ "$what" = create ] && args=(-s tests/load/create.lua)
    if [ -z "$b" ]; then
      local url=$base/Patient; [ "$what" = read ] && url=$base/Patient/$id
      read -r rps p99 errs < <(wrk_rps "$conns" "$url" "${args[@]}")
    else
      local half=$((conns / 2)) ua=$base/Patient ub=http://127.0.0.1:$b/fhir/Patient
      [ "$what" = read ] && ua=$ua/$id && ub=$ub/$id
      wrk_rps "$half" "$ua" "${args[@]}" > "$dir/a.out" &
      local w=$!
      wrk_rps "$half" "$ub" "${args[@]}" > "$dir/b.out"
      wait $w
      read -r ra pa ea < "$dir/a.out"; read -r rb pb eb < "$dir/b.out"
      rps=$(python3 -c "print('%.2f' % ($ra + $rb))"); p99="$pa/$pb"; errs=$(( ${ea:-0} + ${eb:-0} ))
    fi
    printf '%-28s %-8s %10s req/s   p99 %-16s non-2xx %s\n' "$label" "$what" "$rps" "$p99" "${errs:-0}"
  done
}
echo "== navet $(git rev-parse --short HEAD 2>/dev/null || echo '?') release: ${secs}s per figure, $conns connections, $(nproc) cores"
start 18181 "$dir/sqlite"
measure "SQLite, one node" 18181
stop_all
url=$(schema_url)
start 18182 "$dir/pg1" "$url"
measure "PostgreSQL, one node" 18182
stop_all
url=$(schema_url)
start 18183 "$dir/pg2" "$url"
start 18184 "$dir/pg2" "$url" http://127.0.0.1:18183
measure "PostgreSQL, two nodes" 18183 18184
stop_all
echo "== ordination intake (cargo bench --bench ordination, one node in process)"
cargo bench --quiet --bench ordination -- --noplot 2>&1 | grep -E "time:|thrpt:|^ordination" | sed 's/^/SQLite      /'
NAVET_BENCH_DATABASE_URL="$pg" cargo bench --quiet --bench ordination -- --noplot 2>&1 | grep -E "time:|thrpt:|^ordination" | sed 's/^/PostgreSQL  /'
