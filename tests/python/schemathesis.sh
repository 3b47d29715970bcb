#!/usr/bin/env bash
# schemathesis against navet's OpenAPI document: schemathesis.sh VENV BASE TOKEN AUDITOR_TOKEN.
# AuditEvent runs with the auditor's token (only auditors read the access log), the rest with a hospital's.
# Bounded to a couple of minutes on 2 shared cores: the coverage and fuzzing phases (the stateful phase needs
# links the document does not declare) on the system endpoints and the types the care flows use; every one of
# the 146 types has the same generated operations and handlers. NAVET_ST_ALL=1 runs all 1,165 operations
# (about 7 minutes; clean on 2026-12-02).
set -euo pipefail
VENV=$1 BASE=$2 TOKEN=$3 AUDITOR=$4
# schemathesis keeps its example database in ./.schemathesis: keep it in the venv, out of the repository.
cd "$VENV"
SELECT=(--include-path-regex '^/(metadata|_history|Patient|Observation|Task|ServiceRequest|Parameters)?([/?].*)?$')
[ "${NAVET_ST_ALL:-0}" = 1 ] && SELECT=(--exclude-path-regex '^/AuditEvent')
# One worker: with two, schemathesis 4.32 on CPython 3.11 sometimes failed inside the tool itself
# ("SystemError: AST constructor recursion depth mismatch" in its coverage phase), not in navet.
st() {
  "$VENV/bin/schemathesis" run "$BASE/fhir/openapi.json" \
  --url "$BASE/fhir" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance \
  --phases coverage,fuzzing \
  --max-examples "${NAVET_ST_EXAMPLES:-60}" \
  --workers 1 \
  --no-color \
  "$@"
}
st -H "Authorization: Bearer $TOKEN" "${SELECT[@]}"
st -H "Authorization: Bearer $AUDITOR" --include-path-regex '^/AuditEvent'
