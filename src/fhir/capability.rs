//! The CapabilityStatement (FHIR R4 4.0.1 §2.40), generated from what the server really serves: the R4
//! resource types of the structure table, the search parameters of the search table. The generated JSON is
//! kept in `conformance/capability-statement.json`; a test fails when the two differ, and the ignored test
//! `the_committed_capability_statement_is_regenerated` rewrites it.

use serde_json::{Value, json};

use crate::fhir::FhirContext;

/// The canonical URL of navet's `$timeline` OperationDefinition (`conformance/`).
pub const TIMELINE_OPERATION: &str = "http://navet.example/OperationDefinition/Patient-timeline";

/// The statement as committed in `conformance/`.
pub const COMMITTED: &str = include_str!("../../conformance/capability-statement.json");

/// The search result parameters navet serves on every searchable type (search.html#return).
pub const RESULT_PARAMETERS: [&str; 9] = [
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_has",
    "_cursor",
];

/// The interactions navet serves on `ty`: the access log is append-only and written by navet, so it is
/// read, searched and listed in history only (http/fhir.rs refuses the rest).
pub fn interactions(ctx: &FhirContext, ty: &str) -> Vec<&'static str> {
    let mut out = vec!["read", "vread"];
    if ty != crate::fhir::visibility::ACCESS_LOG_TYPE {
        out.extend(["update", "patch", "delete", "create"]);
    }
    out.extend(["history-instance", "history-type"]);
    if ctx.is_searchable(ty) {
        out.push("search-type");
    }
    out
}

/// Generates the statement from the server's tables.
pub fn generate(ctx: &FhirContext) -> Value {
    let mut types: Vec<&str> = ctx.structure.resource_types().collect();
    types.sort_unstable();
    let resources: Vec<Value> = types
        .into_iter()
        .map(|ty| {
            let writable = ty != crate::fhir::visibility::ACCESS_LOG_TYPE;
            let mut r = json!({
                "type": ty,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": false,
                // If-Modified-Since and If-None-Match on read (304).
                "conditionalRead": "full-support",
                // Literal references are resolved for _include and chains; logical ones (identifier) are
                // kept and searchable with :identifier.
                "referencePolicy": ["literal", "logical"],
            });
            if writable {
                r["conditionalCreate"] = json!(true);
                r["conditionalUpdate"] = json!(true);
                r["conditionalDelete"] = json!("single");
            }
            if ctx.is_searchable(ty) {
                let mut params: Vec<Value> = vec![
                    json!({"name": "_id", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id", "type": "token"}),
                    json!({"name": "_lastUpdated", "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated", "type": "date"}),
                ];
                let mut includes = Vec::new();
                for p in ctx.params.params_for(ty).filter(|p| !p.is_column_backed()) {
                    params.push(json!({"name": p.code, "definition": p.url, "type": p.kind.as_str()}));
                    if p.kind.as_str() == "reference" {
                        includes.push(Value::String(format!("{ty}:{}", p.code)));
                    }
                }
                if ty == "HealthcareService" {
                    // The care map's "which team can do this, here, now" (caremap/search.rs).
                    for (name, kind, doc) in crate::caremap::search::CAPABILITY {
                        params.push(json!({
                            "name": name,
                            "definition": format!("http://navet.example/SearchParameter/HealthcareService-{name}"),
                            "type": kind,
                            "documentation": doc
                        }));
                    }
                }
                r["searchParam"] = Value::Array(params);
                if !includes.is_empty() {
                    r["searchInclude"] = Value::Array(includes);
                }
            }
            r["interaction"] = Value::Array(
                interactions(ctx, ty)
                    .into_iter()
                    .map(|c| json!({"code": c}))
                    .collect(),
            );
            if ty == "Patient" {
                // The timeline (spec/timeline-and-audit.md; conformance/OperationDefinition-Patient-timeline.json)
                // and the standard Patient-everything.
                r["operation"] = json!([
                    {"name": "timeline", "definition": TIMELINE_OPERATION},
                    {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}
                ]);
            }
            r
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-01",
        "publisher": "navet",
        "kind": "instance",
        "software": {"name": "navet", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "navet: interoperability gateway for coordinated care in the patient's home"},
        "fhirVersion": "4.0.1",
        "format": ["json", "xml"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": format!(
                "FHIR R4 over JSON and XML (_format=xml or Accept: application/fhir+xml). Search parameters not listed here are refused (Prefer: handling=lenient \
                 ignores, and reports, an unknown parameter name; a known filter that cannot be applied is \
                 always refused). Result parameters on every searchable type: {}. Chained parameters \
                 (param[:Type].param, up to three levels), _has, _include[:iterate] and \
                 _revinclude[:iterate] (any reference parameter as listed in searchInclude), compartment \
                 search on the Patient compartment (Patient/[id]/[type]). _total=estimate is answered \
                 exactly. Paging uses signed _cursor links bound to the query and the caller. PATCH takes \
                 JSON Patch or FHIRPath Patch. The OpenAPI document is at /fhir/openapi.json.",
                RESULT_PARAMETERS.join(", ")
            ),
            "security": {
                "cors": false,
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR"
                }]}],
                "description": "SMART Backend Services: client_credentials with a private_key_jwt client assertion \
                    (RS384 or ES384) at the token endpoint, optionally naming the acting user with the IHE IUA \
                    extension; every request but /metadata needs Authorization: Bearer. Scopes are SMART v2 \
                    (system/Patient.rs, system/*.cruds); the token grants the allowed subset of the requested \
                    scopes. Discovery: /.well-known/smart-configuration and /fhir/.well-known/smart-configuration."
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            // $validate on every type and instance (src/http/validate.rs): base definitions + Swedish rules.
            "operation": [{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
        }],
    })
}

/// The statement served at `/metadata`, with this deployment's base URL filled in.
pub fn render(base_url: &str) -> String {
    let mut v: Value = serde_json::from_str(COMMITTED).unwrap_or_else(|_| json!({}));
    v["implementation"]["url"] = Value::String(format!("{base_url}/fhir"));
    // SMART App Launch 2.x §2.0.2: the OAuth endpoints, also in the CapabilityStatement.
    if let Some(security) = v.pointer_mut("/rest/0/security") {
        security["extension"] = json!([{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": format!("{base_url}/auth/token")}]
        }]);
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_capability_statement_matches_what_is_served() {
        let generated = generate(&FhirContext::embedded());
        let committed: Value =
            serde_json::from_str(COMMITTED).expect("committed statement is JSON");
        assert!(
            generated == committed,
            "conformance/capability-statement.json is stale: run \
             `cargo test -- --ignored the_committed_capability_statement_is_regenerated`"
        );
    }

    #[test]
    #[ignore = "rewrites conformance/capability-statement.json"]
    fn the_committed_capability_statement_is_regenerated() {
        let generated = generate(&FhirContext::embedded());
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/conformance/capability-statement.json"
        );
        let text = serde_json::to_string_pretty(&generated).expect("serialises") + "\n";
        std::fs::write(path, text).expect("writes the statement");
    }
}
