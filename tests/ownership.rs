//! Ownership (issue 4, first part): every version names its owner principal in `meta.tag`, only the owner changes
//! or deletes a clinical record, shared master data any principal may change without taking it over.

mod common;

use common::*;
use serde_json::{Value, json};

const OWNER_SYSTEM: &str = "urn:navet:owner";
const VC_NASBY: &str = "demo-vc-nasby";
const VC_NASBY_USER: &str = "SE2321000255-P0301";

fn owner_of(resource: &Value) -> Vec<String> {
    resource["meta"]["tag"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .filter(|t| t["system"] == OWNER_SYSTEM)
                .map(|t| t["code"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn service_request(patient_id: &str) -> Value {
    json!({
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": format!("Patient/{patient_id}")},
        // Addressed to Vårdcentralen Näsby, which therefore takes part in it (and may read it).
        "performer": [{"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": "SE2321000255-VC101"}}],
        "meta": {"tag": [
            {"system": OWNER_SYSTEM, "code": "SE2321000255-VC101"},
            {"system": "http://example.org/own-tags", "code": "kept"}
        ]}
    })
}

#[tokio::test]
async fn every_version_names_its_owner_and_a_client_cannot_forge_it() {
    let app = spawn_app().await;
    let patient = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let sr = app
        .create(&service_request(patient["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        owner_of(&sr),
        [DEFAULT_PRINCIPAL],
        "the forged owner tag was replaced: {sr}"
    );
    assert!(
        sr["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["code"] == "kept"),
        "other tags stay"
    );
    let read = json(
        app.get(&format!("ServiceRequest/{}", sr["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(owner_of(&read), [DEFAULT_PRINCIPAL]);
}

#[tokio::test]
async fn only_the_owner_changes_or_deletes_a_clinical_record() {
    let app = spawn_app().await;
    let patient = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let sr = app
        .create(&service_request(patient["id"].as_str().unwrap()))
        .await;
    let path = format!("{}/ServiceRequest/{}", app.fhir, sr["id"].as_str().unwrap());
    let other = app
        .client_as(VC_NASBY, Some(VC_NASBY_USER), "system/*.cruds")
        .await;

    let mut changed = sr.clone();
    changed["status"] = json!("revoked");
    let r = other
        .put(&path)
        .header("content-type", FHIR_JSON)
        .body(changed.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let text = outcome_text(&json(r).await);
    assert!(text.contains("only its owner"), "{text}");
    let r = other.delete(&path).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let current = json(app.client.get(&path).send().await.unwrap()).await;
    assert_eq!(current["meta"]["versionId"], "1", "nothing changed");

    let r = app
        .client
        .put(&path)
        .header("content-type", FHIR_JSON)
        .body(changed.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the owner may");
    assert_eq!(app.client.delete(&path).send().await.unwrap().status(), 204);
}

#[tokio::test]
async fn shared_master_data_may_be_changed_by_another_principal_and_keeps_its_owner() {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let path = format!("{}/Patient/{}", app.fhir, created["id"].as_str().unwrap());
    let other = app
        .client_as(VC_NASBY, Some(VC_NASBY_USER), "system/*.cruds")
        .await;
    let mut changed = created.clone();
    changed["name"] = json!([{"family": "Tolvansson", "given": ["Tolvan", "Tolvsson"]}]);
    let r = other
        .put(&path)
        .header("content-type", FHIR_JSON)
        .body(changed.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(owner_of(&json(r).await), [DEFAULT_PRINCIPAL]);
}
