//! `GET /fhir/openapi.json`: an OpenAPI 3.0 document generated from the CapabilityStatement, so it says
//! exactly what the statement says (and the statement is generated from what navet serves): one path per
//! type and interaction, the search parameters as query parameters, bearer authentication, FHIR JSON bodies
//! and an OperationOutcome for every error.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::http::respond;
use crate::state::AppState;

/// The OpenAPI document for the served CapabilityStatement (no token needed, like `/metadata`).
pub async fn document(State(state): State<AppState>) -> Response {
    let capability: Value = serde_json::from_str(&state.capability).unwrap_or_else(|_| json!({}));
    let mut r = respond::json_response(
        StatusCode::OK,
        generate(&capability, &state.fhir_base()).to_string(),
    );
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

fn outcome_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}})
}

fn resource_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/Resource"}}}})
}

fn bundle_response() -> Value {
    json!({"description": "A Bundle", "content": {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/Bundle"}}}})
}

fn errors(mut ok: Map<String, Value>) -> Value {
    ok.insert(
        "default".into(),
        outcome_response("An error, with an OperationOutcome"),
    );
    Value::Object(ok)
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"}})
}

fn body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/fhir+json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// The document for `capability`, served at `fhir_base`.
pub fn generate(capability: &Value, fhir_base: &str) -> Value {
    let mut paths = Map::new();
    paths.insert(
        "/metadata".into(),
        json!({"get": {"operationId": "capabilities", "summary": "The CapabilityStatement", "security": [],
            "responses": errors(Map::from_iter([("200".to_owned(), resource_response("The CapabilityStatement"))]))}}),
    );
    let resources = capability
        .pointer("/rest/0/resource")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in &resources {
        let Some(ty) = r.get("type").and_then(Value::as_str) else {
            continue;
        };
        let served: Vec<&str> = r
            .get("interaction")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("code").and_then(Value::as_str))
            .collect();
        let has = |code: &str| served.contains(&code);
        let mut type_path = Map::new();
        if has("search-type") {
            let mut params: Vec<Value> = r
                .get("searchParam")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let name = p.get("name")?.as_str()?;
                    Some(json!({"name": name, "in": "query", "required": false,
                        "description": format!("{} search parameter", p.get("type").and_then(Value::as_str).unwrap_or("")),
                        "schema": {"type": "string"}}))
                })
                .collect();
            params.push(json!({"name": "_count", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}}));
            type_path.insert(
                "get".into(),
                json!({"operationId": format!("search{ty}"), "summary": format!("Search {ty}"), "parameters": params,
                    "responses": errors(Map::from_iter([("200".to_owned(), bundle_response())]))}),
            );
        }
        if has("create") {
            type_path.insert(
                "post".into(),
                json!({"operationId": format!("create{ty}"), "summary": format!("Create a {ty}"), "requestBody": body("Resource"),
                    "responses": errors(Map::from_iter([
                        ("201".to_owned(), resource_response("Created")),
                        ("200".to_owned(), resource_response("An existing match (If-None-Exist)"))]))}),
            );
        }
        if !type_path.is_empty() {
            paths.insert(format!("/{ty}"), Value::Object(type_path));
        }
        let mut instance = Map::new();
        if has("read") {
            instance.insert(
                "get".into(),
                json!({"operationId": format!("read{ty}"), "summary": format!("Read a {ty}"), "parameters": [id_param()],
                    "responses": errors(Map::from_iter([
                        ("200".to_owned(), resource_response("The resource")),
                        ("304".to_owned(), json!({"description": "Not modified"}))]))}),
            );
        }
        if has("update") {
            instance.insert(
                "put".into(),
                json!({"operationId": format!("update{ty}"), "summary": format!("Update a {ty}"), "parameters": [id_param()],
                    "requestBody": body("Resource"),
                    "responses": errors(Map::from_iter([("200".to_owned(), resource_response("Updated"))]))}),
            );
        }
        if has("patch") {
            instance.insert(
                "patch".into(),
                json!({"operationId": format!("patch{ty}"), "summary": format!("Patch a {ty} (JSON Patch or FHIRPath Patch)"),
                    "parameters": [id_param()],
                    "requestBody": {"required": true, "content": {
                        "application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}},
                        "application/fhir+json": {"schema": {"$ref": "#/components/schemas/Resource"}}}},
                    "responses": errors(Map::from_iter([("200".to_owned(), resource_response("Patched"))]))}),
            );
        }
        if has("delete") {
            instance.insert(
                "delete".into(),
                json!({"operationId": format!("delete{ty}"), "summary": format!("Delete a {ty}"), "parameters": [id_param()],
                    "responses": errors(Map::from_iter([("204".to_owned(), json!({"description": "Deleted"}))]))}),
            );
        }
        if !instance.is_empty() {
            paths.insert(format!("/{ty}/{{id}}"), Value::Object(instance));
        }
        if has("history-instance") {
            paths.insert(
                format!("/{ty}/{{id}}/_history"),
                json!({"get": {"operationId": format!("history{ty}Instance"), "parameters": [id_param()],
                    "responses": errors(Map::from_iter([("200".to_owned(), bundle_response())]))}}),
            );
        }
        if has("history-type") {
            paths.insert(
                format!("/{ty}/_history"),
                json!({"get": {"operationId": format!("history{ty}"),
                    "responses": errors(Map::from_iter([("200".to_owned(), bundle_response())]))}}),
            );
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "navet FHIR R4 API",
            "version": capability.pointer("/software/version").cloned().unwrap_or(json!("0")),
            "description": "Generated from navet's CapabilityStatement (/fhir/metadata)."
        },
        "servers": [{"url": fhir_base}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A SMART Backend Services access token from /auth/token"}},
            "schemas": {
                "Resource": {"type": "object", "required": ["resourceType"],
                    "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}}},
                "Bundle": {"type": "object", "required": ["resourceType", "type"],
                    "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]}, "type": {"type": "string"}}},
                "OperationOutcome": {"type": "object", "required": ["resourceType", "issue"],
                    "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                        "issue": {"type": "array", "minItems": 1, "items": {"type": "object"}}}}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_follows_the_capability_statement() {
        let capability: Value =
            serde_json::from_str(&crate::fhir::capability::render("http://x")).expect("statement");
        let doc = generate(&capability, "http://x/fhir");
        assert_eq!(doc["openapi"], "3.0.3");
        let paths = doc["paths"].as_object().expect("paths");
        // Every type is searchable; the access log is not writable.
        assert!(
            paths["/Observation"]["get"]["parameters"]
                .as_array()
                .expect("params")
                .iter()
                .any(|p| p["name"] == "code-value-quantity")
        );
        assert!(paths["/Observation/{id}"].get("patch").is_some());
        assert!(paths["/AuditEvent"].get("post").is_none());
        assert!(paths["/AuditEvent/{id}"].get("put").is_none());
        assert!(paths["/AuditEvent/{id}"].get("get").is_some());
    }
}
