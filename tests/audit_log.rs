//! The access log (issue 4, second part): one AuditEvent per request touching patient data, in the same
//! transaction as a write, refused requests included; append-only; hash-chained with offline verification.

mod common;

use common::*;
use serde_json::{Value, json};

const AUDITOR: &str = "demo-auditor";
const AUDITOR_USER: &str = "SE2321000255-P0900";

/// Every stored AuditEvent, oldest first, read straight from the database (not through the API).
fn audit_events(app: &TestApp) -> Vec<Value> {
    let conn = rusqlite::Connection::open(app.data_dir.path().join("navet.db")).expect("open");
    let mut stmt = conn
        .prepare("SELECT json FROM audit_log ORDER BY seq")
        .expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|j| serde_json::from_str(&j.expect("row")).expect("json"))
        .collect()
}

fn references(event: &Value) -> Vec<String> {
    event["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["what"]["reference"].as_str().map(str::to_owned))
        .collect()
}

fn agent_ids(event: &Value) -> Vec<String> {
    event["agent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["who"]["identifier"]["value"].as_str().map(str::to_owned))
        .collect()
}

async fn auditor_token(app: &TestApp) -> String {
    let key = navet::auth::cli::demo_private_key(AUDITOR).unwrap();
    let cfg = settings(std::path::PathBuf::from("unused"), false).auth;
    let user =
        navet::auth::cli::user_claims(&cfg, AUDITOR_USER, navet::auth::PurposeOfUse::Hoperat)
            .unwrap();
    navet::auth::cli::fetch_token(
        &app.base,
        AUDITOR,
        key,
        "system/AuditEvent.rs system/Patient.rs",
        Some(&user),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_read_a_search_and_a_write_each_leave_one_record_naming_user_principal_patient_and_purpose()
 {
    let app = spawn_app().await;
    let patient = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let pid = patient["id"].as_str().unwrap();
    let sr = app
        .create(
            &json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                         "subject": {"reference": format!("Patient/{pid}")}}),
        )
        .await;
    assert_eq!(app.get(&format!("Patient/{pid}")).await.status(), 200);
    assert_eq!(
        app.get(&format!("ServiceRequest?patient={pid}"))
            .await
            .status(),
        200
    );

    let events = audit_events(&app);
    assert_eq!(events.len(), 4, "create, create, read, search: {events:#?}");
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["C", "C", "R", "R"]);
    for e in &events {
        assert_eq!(e["outcome"], "0");
        assert!(
            references(e).contains(&format!("Patient/{pid}")),
            "the patient is named: {e}"
        );
        let agents = agent_ids(e);
        assert!(
            agents.contains(&DEFAULT_USER.to_owned())
                && agents.contains(&DEFAULT_PRINCIPAL.to_owned()),
            "{agents:?}"
        );
        assert_eq!(e["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
        let addresses: Vec<&Value> = e["agent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["network"]["address"])
            .collect();
        assert!(
            addresses.contains(&&json!("127.0.0.1")),
            "the source address is logged: {e}"
        );
    }
    let sr_id = sr["id"].as_str().unwrap();
    assert!(
        references(&events[3]).contains(&format!("ServiceRequest/{sr_id}/_history/1")),
        "the search lists what it returned"
    );
    assert_eq!(events[3]["subtype"][0]["code"], "search-type");
}

#[tokio::test]
async fn directory_reads_are_not_logged_but_refused_requests_are() {
    let app = spawn_app().await;
    assert_eq!(app.get("Organization").await.status(), 200);
    assert!(
        audit_events(&app).is_empty(),
        "directory reads are not patient data"
    );

    let r = app
        .anonymous
        .get(format!("{}/Patient/nobody", app.fhir))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let limited = app
        .client_as(DEFAULT_CLIENT, Some(DEFAULT_USER), "system/Organization.rs")
        .await;
    assert_eq!(
        limited
            .get(format!("{}/Patient/someone", app.fhir))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(app.get("Patient/missing").await.status(), 404);
    let events = audit_events(&app);
    assert_eq!(events.len(), 3, "{events:#?}");
    assert!(
        events.iter().all(|e| e["outcome"] == "4"),
        "refused: minor failure"
    );
    assert_eq!(
        events[0]["agent"][0]["who"]["display"],
        "unauthenticated caller"
    );
    assert!(
        agent_ids(&events[1]).contains(&DEFAULT_USER.to_owned()),
        "a refused caller is still named"
    );
    assert!(references(&events[2]).contains(&"Patient/missing".to_owned()));
}

#[tokio::test]
async fn when_the_log_cannot_be_written_the_request_fails_and_nothing_is_stored() {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let pid = created["id"].as_str().unwrap();
    // Simulate a failing audit write (full disk, corrupt table): the next insert into the log aborts.
    let conn = rusqlite::Connection::open(app.data_dir.path().join("navet.db")).unwrap();
    conn.execute_batch("CREATE TRIGGER test_fail BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END;")
        .unwrap();
    let r = app
        .post("Patient", &patient("19400512-1233", "Nilsson"))
        .await;
    assert_eq!(r.status(), 500);
    let read = app.get(&format!("Patient/{pid}")).await;
    assert_eq!(read.status(), 500, "no data leaves without its record");
    assert!(!read.text().await.unwrap().contains("Tolvansson"));
    conn.execute_batch("DROP TRIGGER test_fail;").unwrap();
    let count: i64 = conn
        .query_row(
            "SELECT count(*) FROM resources_current WHERE type = 'Patient'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 1, "the write whose record failed stored nothing");
}

#[tokio::test]
async fn the_log_cannot_be_changed_through_the_api_or_the_database() {
    let app = spawn_app().await;
    app.create(&patient("19121212-1212", "Tolvansson")).await;
    let event = &audit_events(&app)[0];
    let id = event["id"].as_str().unwrap();
    let body = json!({"resourceType": "AuditEvent", "id": id});
    assert_eq!(
        app.put(&format!("AuditEvent/{id}"), &body).await.status(),
        405
    );
    assert_eq!(app.delete(&format!("AuditEvent/{id}")).await.status(), 405);
    assert_eq!(app.post("AuditEvent", &body).await.status(), 405);
    let conn = rusqlite::Connection::open(app.data_dir.path().join("navet.db")).unwrap();
    assert!(
        conn.execute("UPDATE audit_log SET json = '{}' WHERE seq = 1", [])
            .is_err()
    );
    assert!(conn.execute("DELETE FROM audit_log", []).is_err());
}

#[tokio::test]
async fn only_auditors_doing_audit_work_read_the_log_and_they_read_no_clinical_records() {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let pid = created["id"].as_str().unwrap();
    assert_eq!(
        app.get("AuditEvent").await.status(),
        403,
        "a care principal does not read the log"
    );

    let auditor = authorized_client(&auditor_token(&app).await);
    let r = auditor
        .get(format!(
            "{}/AuditEvent?patient=Patient/{pid}&_total=accurate",
            app.fhir
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bundle = json(r).await;
    assert_eq!(bundle["total"], 1, "the create: {bundle}");
    let by_user = auditor
        .get(format!(
            "{}/AuditEvent?agent:identifier=urn:oid:1.2.752.29.4.19|{DEFAULT_USER}&_total=accurate",
            app.fhir
        ))
        .send()
        .await
        .unwrap();
    let by_user = json(by_user).await;
    assert_eq!(
        by_user["total"], 2,
        "the create and the refused log read: {by_user}"
    );
    let refused = auditor
        .get(format!("{}/AuditEvent?outcome=4&_total=accurate", app.fhir))
        .send()
        .await
        .unwrap();
    let refused = json(refused).await;
    assert_eq!(refused["total"], 1, "{refused}");
    let r = auditor
        .get(format!("{}/ServiceRequest", app.fhir))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let verify = json(
        auditor
            .get(format!("{}/audit/verify", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(verify["intact"], true, "{verify}");
    // Reading the log is itself logged.
    let last = audit_events(&app).pop().unwrap();
    assert!(
        agent_ids(&last).contains(&AUDITOR_USER.to_owned()),
        "{last}"
    );
    assert_eq!(last["purposeOfEvent"][0]["coding"][0]["code"], "HOPERAT");
}

// ------------------------------------------------------------------------------------------------ tamper

async fn app_with_five_records() -> TestApp {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let pid = created["id"].as_str().unwrap().to_owned();
    for _ in 0..4 {
        assert_eq!(app.get(&format!("Patient/{pid}")).await.status(), 200);
    }
    assert_eq!(audit_events(&app).len(), 5);
    app
}

/// What an attacker with write access to the file can do: the append-only triggers are dropped first.
fn tamper(app: &TestApp, sql: &str) {
    let conn = rusqlite::Connection::open(app.data_dir.path().join("navet.db")).unwrap();
    conn.execute_batch(&format!(
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; {sql}"
    ))
    .unwrap();
}

fn verify(app: &TestApp) -> navet::audit::chain::Verification {
    navet::audit::chain::verify_data_dir(app.data_dir.path()).expect("verify")
}

#[tokio::test]
async fn an_intact_log_verifies() {
    let app = app_with_five_records().await;
    let report = verify(&app);
    assert_eq!(report.records, 5);
    assert_eq!(report.first_broken, None);
}

#[tokio::test]
async fn editing_one_byte_of_a_record_is_named() {
    let app = app_with_five_records().await;
    tamper(
        &app,
        "UPDATE audit_log SET json = replace(json, '\"outcome\":\"0\"', '\"outcome\":\"4\"') WHERE seq = 3;",
    );
    let broken = verify(&app).first_broken.expect("broken");
    assert_eq!(broken.seq, 3);
    assert!(broken.reason.contains("changed"), "{broken:?}");
}

#[tokio::test]
async fn deleting_a_record_is_named() {
    let app = app_with_five_records().await;
    tamper(&app, "DELETE FROM audit_log WHERE seq = 2;");
    let broken = verify(&app).first_broken.expect("broken");
    assert_eq!(broken.seq, 3, "the record after the gap");
    assert!(broken.reason.contains("missing"), "{broken:?}");
}

#[tokio::test]
async fn swapping_two_records_is_named() {
    let app = app_with_five_records().await;
    tamper(
        &app,
        "UPDATE audit_log SET seq = -2 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 4; \
         UPDATE audit_log SET seq = 4 WHERE seq = -2;",
    );
    let broken = verify(&app).first_broken.expect("broken");
    assert_eq!(broken.seq, 2);
}

#[tokio::test]
async fn navet_audit_verify_works_offline_and_fails_on_a_broken_chain() {
    let app = app_with_five_records().await;
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_navet"))
            .args(["audit", "verify", "--data-dir"])
            .arg(app.data_dir.path())
            .output()
            .expect("runs")
    };
    let ok = run();
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("intact: 5 records"));
    tamper(
        &app,
        "UPDATE audit_log SET json = json || ' ' WHERE seq = 5;",
    );
    let bad = run();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("record 5"),
        "{bad:?}"
    );
}

#[tokio::test]
async fn the_auditor_gets_the_patients_log_extract_a_reproducible_sample_and_an_ndjson_export() {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let pid = created["id"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        assert_eq!(app.get(&format!("Patient/{pid}")).await.status(), 200);
    }
    let auditor = authorized_client(&auditor_token(&app).await);
    // A care principal may not use the auditor API.
    let r = app
        .client
        .get(format!("{}/audit/extract?patient=191212121212", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let extract = json(
        auditor
            .get(format!("{}/audit/extract?patient=19121212-1212", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let accesses = extract["accesses"].as_array().expect("accesses");
    assert_eq!(accesses.len(), 6, "the create and five reads: {extract}");
    assert!(accesses.iter().all(
        |a| a["careUnit"] == DEFAULT_PRINCIPAL && a["principal"]["hsaId"] == DEFAULT_PRINCIPAL
    ));
    assert!(
        !extract.to_string().contains(DEFAULT_USER),
        "staff are named by role, not identity"
    );

    let sample = |seed: u32| {
        let auditor = auditor.clone();
        let url = format!("{}/audit/sample?n=3&seed={seed}&from=2020-01-01", app.base);
        async move { json(auditor.get(url).send().await.unwrap()).await }
    };
    let (a, b) = (sample(7).await, sample(7).await);
    let ids = |s: &Value| -> Vec<String> {
        s["sample"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&a).len(), 3);
    assert_eq!(ids(&a), ids(&b), "the same seed gives the same sample");

    let export = auditor
        .get(format!("{}/audit/export?from=2020-01-01", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let text = export.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one AuditEvent per line"))
        .collect();
    assert!(lines.len() >= 8, "{}", lines.len());
    assert!(lines.iter().all(|l| l["resourceType"] == "AuditEvent"));
    let empty = auditor
        .get(format!(
            "{}/audit/export?from=2020-01-01&to=2020-01-02",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.text().await.unwrap(), "");
}
