//! Validation on write and `$validate`, over HTTP: required bindings, invariants, the Swedish rules,
//! transaction references, PUT ids and unchanged updates, FHIR XML in and out.

mod common;

use common::*;
use serde_json::{Value, json};

/// The expressions of an OperationOutcome's issues with the given severity.
fn expressions(outcome: &Value, severity: &str) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .filter(|i| i["severity"] == severity)
        .filter_map(|i| i["expression"][0].as_str().map(str::to_owned))
        .collect()
}

async fn history_total(app: &TestApp, path: &str) -> usize {
    let r = app.get(&format!("{path}/_history")).await;
    assert_eq!(r.status(), 200);
    entry_list(&json(r).await).len()
}

#[tokio::test]
async fn codes_outside_required_value_sets_are_refused_with_422_at_their_path_and_not_stored() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"resourceType": "Patient", "gender": "bogus"}),
            "Patient.gender",
        ),
        (
            json!({"resourceType": "Task", "status": "bogus", "intent": "order"}),
            "Task.status",
        ),
        (
            json!({"resourceType": "ServiceRequest", "status": "not-a-status", "intent": "order",
                "subject": {"reference": "Patient/x"}}),
            "ServiceRequest.status",
        ),
    ];
    for (body, path) in cases {
        let ty = body["resourceType"].as_str().unwrap().to_owned();
        let r = app.post(&ty, &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let outcome = json(r).await;
        assert_eq!(
            expressions(&outcome, "error"),
            [path],
            "{}",
            outcome_text(&outcome)
        );
        let search = json(app.get(&ty).await).await;
        assert_eq!(entry_list(&search).len(), 0, "nothing stored for {ty}");
    }
}

#[tokio::test]
async fn a_broken_invariant_is_refused_with_its_key_and_location() {
    let app = spawn_app().await;
    let r = app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "contact": [{"gender": "male"}]}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let outcome = json(r).await;
    assert_eq!(expressions(&outcome, "error"), ["Patient.contact[0]"]);
    assert!(outcome_text(&outcome).contains("pat-1"));
}

#[tokio::test]
async fn a_transaction_with_an_unresolved_urn_uuid_is_refused_and_stores_nothing() {
    let app = spawn_app().await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
         "resource": patient("19121212-1212", "Tolvansson"),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Encounter", "status": "planned", "class": {"code": "HH"},
            "subject": {"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"}},
         "request": {"method": "POST", "url": "Encounter"}}
    ]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status(), 422);
    let outcome = json(r).await;
    assert_eq!(
        expressions(&outcome, "error"),
        ["Bundle.entry[1].resource.subject.reference"]
    );
    assert_eq!(entry_list(&json(app.get("Patient").await).await).len(), 0);
    assert_eq!(entry_list(&json(app.get("Encounter").await).await).len(), 0);

    // The same Bundle pointing at the entry it has goes through.
    let mut ok = bundle.clone();
    ok["entry"][1]["resource"]["subject"]["reference"] =
        json!("urn:uuid:11111111-1111-4111-8111-111111111111");
    assert_eq!(app.post("", &ok).await.status(), 200);
}

#[tokio::test]
async fn a_put_without_an_id_in_the_body_is_a_400() {
    let app = spawn_app().await;
    let created = app
        .create(&json!({"resourceType": "Organization", "name": "A"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let r = app
        .put(
            &format!("Organization/{id}"),
            &json!({"resourceType": "Organization", "name": "B"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(outcome_text(&json(r).await).contains("id"));
    assert_eq!(
        json(app.get(&format!("Organization/{id}")).await).await["name"],
        "A"
    );
}

#[tokio::test]
async fn an_unchanged_put_makes_no_new_version() {
    let app = spawn_app().await;
    let created = app
        .create(&json!({"resourceType": "Organization", "name": "A"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("Organization/{id}");
    let r = app.put(&path, &created).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert_eq!(history_total(&app, &path).await, 1);
    // A real change still makes version 2.
    let mut changed = created.clone();
    changed["name"] = json!("B");
    let r = app.put(&path, &changed).await;
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    assert_eq!(history_total(&app, &path).await, 2);
}

async fn validate(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let r = app.post(path, body).await;
    let status = r.status().as_u16();
    (status, json(r).await)
}

#[tokio::test]
async fn validate_lists_every_issue_with_its_location_and_stores_nothing() {
    let app = spawn_app().await;
    let (status, outcome) = validate(
        &app,
        "Patient/$validate",
        &json!({"resourceType": "Patient", "gender": "bogus", "contact": [{"gender": "male"}],
            "identifier": [{"system": "http://electronichealth.se/identifier/personnummer",
                "value": "191212121213"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        expressions(&outcome, "error"),
        [
            "Patient.gender",
            "Patient.contact[0]",
            "Patient.identifier[0].value"
        ],
        "{}",
        outcome_text(&outcome)
    );
    let codes: Vec<&str> = outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["code-invalid", "invariant", "business-rule"]);
    // dom-6 is reported as a warning.
    assert_eq!(expressions(&outcome, "warning"), ["Patient"]);
    assert_eq!(entry_list(&json(app.get("Patient").await).await).len(), 0);
}

#[tokio::test]
async fn validate_of_a_valid_resource_says_so_and_takes_parameters() {
    let app = spawn_app().await;
    let resource = patient("19121212-1212", "Tolvansson");
    let (status, outcome) = validate(
        &app,
        "Patient/$validate",
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": resource},
            {"name": "mode", "valueCode": "create"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        expressions(&outcome, "error").is_empty(),
        "{}",
        outcome_text(&outcome)
    );
    let (_, wrong_type) = validate(&app, "Organization/$validate", &resource).await;
    assert_eq!(expressions(&wrong_type, "error"), ["resourceType"]);
}

#[tokio::test]
async fn validate_in_update_mode_checks_that_the_target_exists() {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let id = created["id"].as_str().unwrap();
    let (status, outcome) = validate(
        &app,
        &format!("Patient/{id}/$validate?mode=update"),
        &created,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        expressions(&outcome, "error").is_empty(),
        "{}",
        outcome_text(&outcome)
    );
    let (_, missing) = validate(
        &app,
        "Patient/nope/$validate?mode=update",
        &json!({"resourceType": "Patient", "id": "nope"}),
    )
    .await;
    assert!(outcome_text(&missing).contains("does not exist"));
    let (status, _) = validate(&app, "Patient/$validate?mode=delete", &created).await;
    assert_eq!(status, 501);
}

#[tokio::test]
async fn validate_needs_a_token_and_the_scope_of_the_write() {
    let app = spawn_app().await;
    let anonymous = app
        .anonymous
        .post(format!("{}/Patient/$validate", app.fhir))
        .header("content-type", FHIR_JSON)
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let reader = app
        .client_as(DEFAULT_CLIENT, Some(DEFAULT_USER), "system/Patient.rs")
        .await;
    let r = reader
        .post(format!("{}/Patient/$validate", app.fhir))
        .header("content-type", FHIR_JSON)
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_capability_statement_lists_validate_and_xml() {
    let app = spawn_app().await;
    let cs = json(app.get("metadata").await).await;
    assert_eq!(cs["format"], json!(["json", "xml"]));
    assert_eq!(cs["rest"][0]["operation"][0]["name"], "validate");
}

const FHIR_XML: &str = "application/fhir+xml";

#[tokio::test]
async fn a_resource_posted_as_xml_is_stored_and_read_back_as_xml_or_json() {
    let app = spawn_app().await;
    let xml = r#"<Organization xmlns="http://hl7.org/fhir"><active value="true"/><name value="Vårdcentral Öst"/></Organization>"#;
    let r = app
        .client
        .post(format!("{}/Organization", app.fhir))
        .header("content-type", FHIR_XML)
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let created = json(r).await;
    assert_eq!(created["name"], "Vårdcentral Öst");
    let id = created["id"].as_str().unwrap();
    assert!(location.contains(id));

    let r = app.get(&format!("Organization/{id}?_format=xml")).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(FHIR_XML)
    );
    let text = r.text().await.unwrap();
    assert!(text.contains(&format!("<id value=\"{id}\"/>")), "{text}");
    assert!(text.contains("<name value=\"Vårdcentral Öst\"/>"), "{text}");

    let r = app
        .client
        .get(format!("{}/Organization/{id}", app.fhir))
        .header("accept", FHIR_XML)
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(FHIR_XML)
    );

    // Errors come back as XML OperationOutcomes too.
    let r = app.get("Organization/does-not-exist?_format=xml").await;
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("<OperationOutcome xmlns=\"http://hl7.org/fhir\">")
    );
}

#[tokio::test]
async fn malformed_xml_is_a_400_and_invalid_xml_content_a_422() {
    let app = spawn_app().await;
    let send = |body: &'static str| {
        app.client
            .post(format!("{}/Patient", app.fhir))
            .header("content-type", FHIR_XML)
            .body(body)
            .send()
    };
    let r = send("<Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"male\">")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = send("<Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"bogus\"/></Patient>")
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(expressions(&json(r).await, "error"), ["Patient.gender"]);
    assert_eq!(entry_list(&json(app.get("Patient").await).await).len(), 0);
}
