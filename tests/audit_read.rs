//! The read path around the access log (issue 13): a read by id's record names the patients the store links
//! to the resource, for every type; and auditors list the log as a FHIR history.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{Value, json};

const AUDITOR: &str = "demo-auditor";
const AUDITOR_USER: &str = "SE2321000255-P0900";

/// Every stored record's (id, AuditEvent view), oldest first, read straight from the databases.
fn log(app: &TestApp) -> Vec<(String, Value)> {
    common::logged_events(app)
        .into_iter()
        .map(|(id, text)| (id, serde_json::from_str(&text).expect("json")))
        .collect()
}

/// The `Patient/…` references an AuditEvent names.
fn patients(event: &Value) -> BTreeSet<String> {
    event["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["what"]["reference"].as_str())
        .filter(|r| r.starts_with("Patient/") && !r.contains("/_history"))
        .map(str::to_owned)
        .collect()
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

async fn auditor(app: &TestApp) -> reqwest::Client {
    let key = navet::auth::cli::demo_private_key(AUDITOR).unwrap();
    let cfg = settings(std::path::PathBuf::from("unused"), false).auth;
    let user =
        navet::auth::cli::user_claims(&cfg, AUDITOR_USER, navet::auth::PurposeOfUse::Hoperat)
            .unwrap();
    let token = navet::auth::cli::fetch_token(
        &app.base,
        AUDITOR,
        key,
        "system/AuditEvent.rs system/Patient.rs",
        Some(&user),
    )
    .await
    .unwrap();
    authorized_client(&token)
}

#[tokio::test]
async fn a_read_by_id_names_exactly_the_patients_the_resource_is_about_whatever_its_type() {
    let app = spawn_app().await;
    let a = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let b = app.create(&patient("19400512-1233", "Berg")).await;
    let (a, b) = (
        format!("Patient/{}", a["id"].as_str().unwrap()),
        format!("Patient/{}", b["id"].as_str().unwrap()),
    );
    let observation = app
        .create(&json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "puls"}, "subject": {"reference": a}}))
        .await;
    // An Appointment is about every patient among its participants (the R4 Patient compartment).
    let appointment = app
        .create(&json!({"resourceType": "Appointment", "status": "booked",
            "start": "2026-12-07T09:00:00Z", "end": "2026-12-07T10:00:00Z",
            "participant": [{"actor": {"reference": a}, "status": "accepted"},
                            {"actor": {"reference": b}, "status": "accepted"}]}))
        .await;
    let organization = app
        .create(&json!({"resourceType": "Organization", "name": "Hemsjukvården"}))
        .await;
    let reads = [
        (a.clone(), set(std::slice::from_ref(&a))),
        (
            format!("Observation/{}", observation["id"].as_str().unwrap()),
            set(std::slice::from_ref(&a)),
        ),
        (
            format!("Appointment/{}", appointment["id"].as_str().unwrap()),
            set(&[a.clone(), b.clone()]),
        ),
    ];
    for (path, expected) in &reads {
        let before = log(&app).len();
        let r = app.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let body = json(r).await;
        assert_eq!(
            format!(
                "{}/{}",
                body["resourceType"].as_str().unwrap(),
                body["id"].as_str().unwrap()
            ),
            *path
        );
        let after = log(&app);
        assert_eq!(after.len(), before + 1, "one record for GET {path}");
        let event = &after[before].1;
        assert_eq!(patients(event), *expected, "GET {path}: {event}");
        assert_eq!(event["subtype"][0]["code"], "read");
    }
    // The directory is not patient data: read, but not logged.
    let before = log(&app).len();
    let path = format!("Organization/{}", organization["id"].as_str().unwrap());
    assert_eq!(app.get(&path).await.status(), 200);
    assert_eq!(log(&app).len(), before, "no record for GET {path}");
}

#[tokio::test]
async fn an_access_log_records_history_is_its_one_version_and_reading_it_is_logged() {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let pid = created["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("Patient/{pid}")).await.status(), 200);
    let (id, _) = log(&app).pop().unwrap();

    let au = auditor(&app).await;
    let read = json(
        au.get(format!("{}/AuditEvent/{id}", app.fhir))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let r = au
        .get(format!("{}/AuditEvent/{id}/_history", app.fhir))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let history = json(r).await;
    assert_eq!(history["type"], "history");
    let entries = history["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{history}");
    assert_eq!(
        entries[0]["resource"], read,
        "the version is the record as read"
    );
    assert_eq!(
        entries[0]["request"],
        json!({"method": "POST", "url": "AuditEvent"})
    );
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    assert_eq!(entries[0]["response"]["etag"], "W/\"1\"");
    assert!(
        entries[0]["fullUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/AuditEvent/{id}"))
    );
    // Reading it is logged: the auditor, audit work, the record's patient.
    let (_, last) = log(&app).pop().unwrap();
    assert_eq!(last["subtype"][0]["code"], "history-instance");
    assert_eq!(last["purposeOfEvent"][0]["coding"][0]["code"], "HOPERAT");
    assert_eq!(patients(&last), set(&[format!("Patient/{pid}")]));

    // A record recorded before `_since` has no version since; an id that is no record's is a 404.
    let later = json(
        au.get(format!(
            "{}/AuditEvent/{id}/_history?_since=2999-01-01T00:00:00Z",
            app.fhir
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert!(later.get("entry").is_none(), "{later}");
    for missing in ["a-999999", "nonsense"] {
        let r = au
            .get(format!("{}/AuditEvent/{missing}/_history", app.fhir))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }
    // Parameters a history does not take are refused, not ignored.
    let r = au
        .get(format!(
            "{}/AuditEvent/_history?patient=Patient/{pid}",
            app.fhir
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn the_type_history_lists_the_log_newest_first() {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let pid = created["id"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(app.get(&format!("Patient/{pid}")).await.status(), 200);
    }
    let expected: Vec<String> = log(&app).into_iter().rev().map(|(id, _)| id).collect();
    let au = auditor(&app).await;
    let page = json(
        au.get(format!("{}/AuditEvent/_history?_count=100", app.fhir))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let listed: Vec<String> = page["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, expected, "newest first: {page}");
    assert_eq!(expected.len(), 4, "the create and three reads");
}

#[tokio::test]
async fn the_edge_checks_the_token_once_but_two_authorization_headers_are_still_refused() {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let path = format!("{}/Patient/{}", app.fhir, created["id"].as_str().unwrap());
    let token = token_for(
        &app.base,
        DEFAULT_CLIENT,
        Some(DEFAULT_USER),
        "system/*.cruds",
    )
    .await;
    let plain = reqwest::Client::new();
    let one = plain
        .get(&path)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    // The first of the two is valid: the edge's rate limiter verifies it, but which one the client meant is
    // ambiguous, so the handler refuses the request as before (no verified caller is handed on).
    let two = plain
        .get(&path)
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", "Bearer another")
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), 400);
}
