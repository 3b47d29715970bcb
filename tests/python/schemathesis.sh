#!/usr/bin/env bash
# schemathesis against navet's OpenAPI document: schemathesis.sh VENV BASE TOKEN.
# Bounded to a couple of minutes on 2 shared cores: the coverage and fuzzing phases (the stateful phase needs
# links the document does not declare) on the system endpoints and the types the care flows use; every one of
# the 146 types has the same generated operations and handlers. NAVET_ST_ALL=1 runs all 1,165 operations
# (about 7 minutes; clean on 2026-12-02).
set -euo pipefail
VENV=$1 BASE=$2 TOKEN=$3
SELECT=(--include-path-regex '^/(metadata|_history|Patient|Observation|Task|ServiceRequest|AuditEvent|Parameters)?([/?].*)?$')
[ "${NAVET_ST_ALL:-0}" = 1 ] && SELECT=()
exec "$VENV/bin/schemathesis" run "$BASE/fhir/openapi.json" \
  --url "$BASE/fhir" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance \
  --phases coverage,fuzzing \
  --max-examples "${NAVET_ST_EXAMPLES:-60}" \
  --workers 2 \
  --no-color \
  "${SELECT[@]}"
