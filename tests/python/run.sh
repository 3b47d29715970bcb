#!/usr/bin/env bash
# The Python client suites (issue 14): fhirpy against a live navet, every answer validated with fhir.resources,
# and schemathesis against /fhir/openapi.json. Needs the network for pip (the first time) and a built
# target/debug/navet; .ci/run calls it after `cargo test`. Any failure to install or start is a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=$ROOT/target/py-venv
BIN=$ROOT/target/debug/navet
[ -x "$BIN" ] || { echo "run.sh: $BIN missing (cargo build first)" >&2; exit 1; }

# A venv under target/ (not committed), reinstalled when requirements.txt changes.
REQ=$ROOT/tests/python/requirements.txt
if [ ! -f "$VENV/.req" ] || ! cmp -s "$REQ" "$VENV/.req"; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$VENV/.req"
fi

DATA=$(mktemp -d)
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA/server.log" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "$BASE/fhir/metadata" >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || { echo "run.sh: navet exited:" >&2; cat "$DATA/server.log" >&2; exit 1; }
  sleep 0.2
done
curl -sf "$BASE/fhir/metadata" >/dev/null || { echo "run.sh: navet did not answer on $BASE" >&2; cat "$DATA/server.log" >&2; exit 1; }

export NAVET_BASE=$BASE NAVET_BIN=$BIN
# Tokens live 5 minutes: each suite gets its own, just before it starts.
export NAVET_TOKEN_CSK; NAVET_TOKEN_CSK=$("$BIN" token --server "$BASE" --client demo-csk --user SE2321000255-P0001)
export NAVET_TOKEN_MTN; NAVET_TOKEN_MTN=$("$BIN" token --server "$BASE" --client demo-mtn-kristianstad --user SE2321000255-P0101)

start=$SECONDS
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/tests/python/test_fhirpy.py"
echo "fhirpy suite: $((SECONDS - start)) s"

start=$SECONDS
TOKEN=$("$BIN" token --server "$BASE" --client demo-csk --user SE2321000255-P0001)
AUDITOR=$("$BIN" token --server "$BASE" --client demo-auditor --user SE2321000255-P0900 \
  --purpose HOPERAT --scope "system/AuditEvent.rs system/Patient.rs")
"$ROOT/tests/python/schemathesis.sh" "$VENV" "$BASE" "$TOKEN" "$AUDITOR"
echo "schemathesis: $((SECONDS - start)) s"
