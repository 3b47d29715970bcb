//! The access log (issue 4, second part): one AuditEvent per request touching patient data, in the same
//! transaction as a write, refused requests included; append-only; hash-chained with offline verification.

mod common;

use common::*;
use serde_json::{Value, json};

const AUDITOR: &str = "demo-auditor";
const AUDITOR_USER: &str = "SE2321000255-P0900";

/// Every stored record's AuditEvent view, oldest first, read straight from the databases (not through the
/// API): both chains, in recorded order.
fn audit_events(app: &TestApp) -> Vec<Value> {
    common::logged_events(app)
        .into_iter()
        .map(|(_, json)| serde_json::from_str(&json).expect("json"))
        .collect()
}

/// The databases holding a chain on SQLite: `navet.db` (the change chain) and `audit.db` (the access chain).
/// On PostgreSQL both chains are one table set, told apart by its `chain` column ('c', 'a').
const LOG_DATABASES: [(&str, &str); 2] = [("navet.db", "c"), ("audit.db", "a")];

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
    let cfg = settings_on(std::path::PathBuf::from("unused"), None, false).auth;
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
    // Simulate a failing audit write (full disk, corrupt table): the next insert into either chain aborts.
    // On PostgreSQL one table holds both chains: one trigger does it (the file names are SQLite's).
    let files = if app.database_url.is_some() {
        &LOG_DATABASES[..1]
    } else {
        &LOG_DATABASES[..]
    };
    for (file, _) in files {
        sql(
            &app,
            file,
            "CREATE TRIGGER test_fail BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            "CREATE OR REPLACE FUNCTION test_fail() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'disk full'; END $$; \
             CREATE TRIGGER test_fail BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION test_fail();",
        )
        .unwrap();
    }
    let r = app
        .post("Patient", &patient("19400512-1233", "Nilsson"))
        .await;
    assert_eq!(r.status(), 500);
    let read = app.get(&format!("Patient/{pid}")).await;
    assert_eq!(read.status(), 500, "no data leaves without its record");
    assert!(!read.text().await.unwrap().contains("Tolvansson"));
    for (file, _) in files {
        sql(
            &app,
            file,
            "DROP TRIGGER test_fail;",
            "DROP TRIGGER test_fail ON audit_log; DROP FUNCTION test_fail();",
        )
        .unwrap();
    }
    let count_patients = "SELECT count(*) FROM resources_current WHERE type = 'Patient'";
    let count = query_i64(&app, "navet.db", count_patients, count_patients);
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
    // A create (change chain) and the refused API calls (access chain): both chains hold records.
    for (file, chain) in LOG_DATABASES {
        let n = query_i64(
            &app,
            file,
            "SELECT count(*) FROM audit_log",
            &format!("SELECT count(*) FROM audit_log WHERE chain = '{chain}'"),
        );
        assert!(n >= 1, "{file}");
        let keys = query_i64(
            &app,
            file,
            "SELECT count(*) FROM audit_key",
            &format!("SELECT count(*) FROM audit_key WHERE chain = '{chain}'"),
        );
        assert!(
            keys >= 1,
            "{file}: a DELETE of no row would not reach the trigger"
        );
        for (sqlite, postgres) in [
            (
                "UPDATE audit_log SET record = x'00' WHERE seq = 1".to_owned(),
                format!(
                    "UPDATE audit_log SET record = '\\x00'::bytea WHERE chain = '{chain}' AND seq = 1"
                ),
            ),
            (
                "DELETE FROM audit_log".to_owned(),
                format!("DELETE FROM audit_log WHERE chain = '{chain}'"),
            ),
            (
                "DELETE FROM audit_key".to_owned(),
                format!("DELETE FROM audit_key WHERE chain = '{chain}'"),
            ),
        ] {
            let refused = sql(&app, file, &sqlite, &postgres).expect_err(&postgres);
            assert!(refused.contains("append-only"), "{refused}");
        }
    }
    if app.database_url.is_some() {
        // PostgreSQL also empties a table without deleting its rows one by one: refused as well.
        for table in ["audit_log", "audit_key", "audit_checkpoint"] {
            let truncate = format!("TRUNCATE {table}");
            let refused = sql(&app, "", "", &truncate).expect_err(&truncate);
            assert!(refused.contains("append-only"), "{refused}");
        }
    }
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

/// A seeded patient's id, looked up as navet (no record).
async fn seeded_patient(app: &TestApp) -> String {
    let page = app
        .state
        .store
        .search(
            &navet::store::Actor::system(),
            "Patient",
            Default::default(),
            0,
            1,
        )
        .await
        .unwrap();
    page.matches[0].id.clone()
}

/// Five reads of a seeded patient: records 1 to 5 of the access chain, and nothing else in the log.
async fn app_with_five_records() -> TestApp {
    let app = spawn_app_with_demo().await;
    let pid = seeded_patient(&app).await;
    for _ in 0..5 {
        assert_eq!(app.get(&format!("Patient/{pid}")).await.status(), 200);
    }
    assert_eq!(audit_events(&app).len(), 5);
    app
}

/// What an attacker with write access to the database can do to the access chain: on SQLite, `sqlite` on
/// `audit.db` after dropping the append-only triggers; on PostgreSQL, `postgres` on the one table set (the
/// access chain is `chain = 'a'`) as the superuser in replication mode, which the triggers do not stop.
fn tamper(app: &TestApp, sqlite: &str, postgres: &str) {
    common::sql(
        app,
        "audit.db",
        &format!("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; {sqlite}"),
        &bypassing_triggers(postgres),
    )
    .unwrap();
}

/// SQL setting the outcome byte (FORMAT.md: byte 11, 1-based) of a record to `4`.
const SET_OUTCOME_4: &str =
    "record = CAST(substr(record, 1, 10) || x'04' || substr(record, 12) AS BLOB)";
/// [`SET_OUTCOME_4`] in PostgreSQL.
const SET_OUTCOME_4_PG: &str = "record = overlay(record placing '\\x04'::bytea from 11 for 1)";

fn verify(app: &TestApp) -> navet::audit::chain::Verification {
    verify_log(app)
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
        &format!("UPDATE audit_log SET {SET_OUTCOME_4} WHERE seq = 3;"),
        &format!("UPDATE audit_log SET {SET_OUTCOME_4_PG} WHERE chain = 'a' AND seq = 3"),
    );
    let broken = verify(&app).first_broken.expect("broken");
    assert_eq!(broken.seq, 3);
    assert!(broken.reason.contains("changed"), "{broken:?}");
}

#[tokio::test]
async fn deleting_a_record_is_named() {
    let app = app_with_five_records().await;
    tamper(
        &app,
        "DELETE FROM audit_log WHERE seq = 2;",
        "DELETE FROM audit_log WHERE chain = 'a' AND seq = 2",
    );
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
        "UPDATE audit_log SET seq = -2 WHERE chain = 'a' AND seq = 2; \
         UPDATE audit_log SET seq = 2 WHERE chain = 'a' AND seq = 4; \
         UPDATE audit_log SET seq = 4 WHERE chain = 'a' AND seq = -2",
    );
    let broken = verify(&app).first_broken.expect("broken");
    assert_eq!(broken.seq, 2);
}

#[tokio::test]
async fn navet_audit_verify_works_offline_and_fails_on_a_broken_chain() {
    let app = app_with_five_records().await;
    let run = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_navet"));
        command
            .args(["audit", "verify", "--data-dir"])
            .arg(app.data_dir.path())
            .env_remove("NAVET_DATABASE_URL");
        // On PostgreSQL the log is in the database; the data directory has the node's key and checkpoints.
        if let Some(url) = &app.database_url {
            command.args(["--database-url", url]);
        }
        command.output().expect("runs")
    };
    let ok = run();
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("intact: 5 records"));
    tamper(
        &app,
        "UPDATE audit_log SET record = CAST(record || x'20' AS BLOB) WHERE seq = 5;",
        "UPDATE audit_log SET record = record || '\\x20'::bytea WHERE chain = 'a' AND seq = 5",
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

// ------------------------------------------------------------------------------------- checkpoints (issue 13)

async fn checkpoint(app: &TestApp) {
    assert!(
        app.state
            .store
            .audit_checkpoint(&navet::store::Actor::system())
            .await
            .expect("checkpoint"),
        "records were added since the last checkpoint"
    );
}

/// The access chain's (seq, record, hash) rows.
fn access_rows(app: &TestApp) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    if let Some(url) = &app.database_url {
        return on_postgres(url, |c| {
            c.query(
                "SELECT seq, record, hash FROM audit_log WHERE chain = 'a' ORDER BY seq",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
        });
    }
    let conn = rusqlite::Connection::open(app.data_dir.path().join("audit.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT seq, record, hash FROM audit_log ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn cutting_off_the_end_of_the_chain_is_named_by_the_checkpoints_even_without_the_databases_own()
 {
    let app = app_with_five_records().await;
    checkpoint(&app).await;
    assert_eq!(verify(&app).checkpoints, 1);
    assert_eq!(verify(&app).first_broken, None);
    // Records 4 and 5 go, with their index rows and the database's checkpoints: only the file remains. On
    // PostgreSQL the attacker also moves the chain's head row back to record 3, so that nothing in the
    // database tells of the cut.
    tamper(
        &app,
        "DROP TRIGGER audit_key_no_delete; DROP TRIGGER audit_checkpoint_no_delete; \
         DELETE FROM audit_log WHERE seq >= 4; DELETE FROM audit_key WHERE seq >= 4; \
         DELETE FROM audit_checkpoint;",
        "DELETE FROM audit_log WHERE chain = 'a' AND seq >= 4; \
         DELETE FROM audit_key WHERE chain = 'a' AND seq >= 4; \
         DELETE FROM audit_checkpoint; \
         UPDATE audit_head h SET seq = l.seq, hash = l.hash, t_us = l.t_us \
         FROM audit_log l WHERE h.chain = 'a' AND l.chain = 'a' AND l.seq = 3",
    );
    let broken = verify(&app).first_broken.expect("broken");
    assert_eq!(broken.seq, 4, "{broken:?}");
    assert!(broken.reason.contains("truncated"), "{broken:?}");
    // navet refuses to start on it (even with the append-only triggers put back: on PostgreSQL they never
    // went, the attacker bypassed them).
    if app.database_url.is_none() {
        rusqlite::Connection::open(app.data_dir.path().join("audit.db"))
            .unwrap()
            .execute_batch(navet::store::audit_sql::AUDIT_SCHEMA)
            .unwrap();
    }
    let error = navet::startup::build_state(&restart_settings(&app))
        .await
        .err()
        .expect("refused");
    assert!(error.contains("truncated"), "{error}");
    assert!(error.contains("navet audit verify --data-dir"), "{error}");
    if app.database_url.is_some() {
        assert!(error.contains("--database-url"), "{error}");
    }
}

#[tokio::test]
async fn a_chain_recomputed_after_an_edit_is_named_from_the_first_record_no_checkpoint_vouches_for()
{
    let app = spawn_app_with_demo().await;
    let pid = seeded_patient(&app).await;
    for round in 0..2 {
        for _ in 0..(2 + round) {
            assert_eq!(app.get(&format!("Patient/{pid}")).await.status(), 200);
        }
        checkpoint(&app).await;
    }
    // Checkpoint 1 covers records 1–2, checkpoint 2 records 1–5. The attacker edits record 3 and
    // recomputes every hash from there, so the chain is internally consistent again.
    let rows = access_rows(&app);
    assert_eq!(rows.len(), 5);
    let mut prev: [u8; 32] = rows[1].2.clone().try_into().unwrap();
    let (mut updates, mut updates_pg) = (String::new(), String::new());
    for (seq, record, _) in &rows[2..] {
        let mut record = record.clone();
        if *seq == 3 {
            record[10] = 4; // the outcome byte
        }
        let hash = navet::audit::chain::link_hash(
            &prev,
            navet::audit::chain::Chain::Access,
            *seq,
            &record,
        );
        let (record_hex, hash_hex) = (
            navet::audit::chain::hex(&record),
            navet::audit::chain::hex(&hash),
        );
        updates.push_str(&format!(
            "UPDATE audit_log SET record = x'{record_hex}', hash = x'{hash_hex}' WHERE seq = {seq};"
        ));
        updates_pg.push_str(&format!(
            "UPDATE audit_log SET record = '\\x{record_hex}'::bytea, hash = '\\x{hash_hex}'::bytea \
             WHERE chain = 'a' AND seq = {seq};"
        ));
        prev = hash;
    }
    // On PostgreSQL the chain's head row gets the recomputed last hash too, as the head would have been.
    updates_pg.push_str(&format!(
        "UPDATE audit_head SET hash = '\\x{}'::bytea WHERE chain = 'a'",
        navet::audit::chain::hex(&prev)
    ));
    tamper(&app, &updates, &updates_pg);
    let broken = verify(&app).first_broken.expect("broken");
    assert_eq!(broken.seq, 3, "{broken:?}");
    assert!(broken.reason.contains("recomputed"), "{broken:?}");
}

#[tokio::test]
async fn a_forged_checkpoint_and_a_checkpoint_copy_that_disagrees_are_named() {
    let app = app_with_five_records().await;
    checkpoint(&app).await;
    let file = app.data_dir.path().join(navet::audit::checkpoint::FILE);
    let line = std::fs::read_to_string(&file).unwrap();
    // A checkpoint claiming fewer records, with the old signature: the signature no longer verifies.
    let forged = line.replacen("access=5:", "access=4:", 1);
    std::fs::write(&file, &forged).unwrap();
    let broken = verify(&app).first_broken.expect("broken");
    assert!(broken.reason.contains("not validly signed"), "{broken:?}");
    // A copy shipped elsewhere that holds another checkpoint 1 than the database does.
    std::fs::write(&file, &line).unwrap();
    assert_eq!(verify(&app).first_broken, None);
    let other = spawn_app_with_demo().await;
    let other_pid = seeded_patient(&other).await;
    assert_eq!(
        other.get(&format!("Patient/{other_pid}")).await.status(),
        200
    );
    checkpoint(&other).await;
    let copy = other.data_dir.path().join(navet::audit::checkpoint::FILE);
    let report = match &app.database_url {
        None => navet::audit::chain::verify_data_dir_with(app.data_dir.path(), &[copy]).unwrap(),
        // On PostgreSQL the database holds every node's checkpoints and `navet audit verify` takes no
        // `--checkpoints` copies (it refuses them rather than ignore them); the copy it compares with the
        // database is the node's own file, here replaced by the other node's.
        Some(url) => {
            let refused = std::process::Command::new(env!("CARGO_BIN_EXE_navet"))
                .args(["audit", "verify", "--database-url", url, "--data-dir"])
                .arg(app.data_dir.path())
                .arg("--checkpoints")
                .arg(&copy)
                .output()
                .expect("runs");
            assert_eq!(refused.status.code(), Some(2), "{refused:?}");
            std::fs::copy(&copy, &file).unwrap();
            let report = verify(&app);
            let broken = report.first_broken.clone().expect("broken");
            // The other node's key is accepted (no trusted-keys file), so the disagreement is what breaks.
            assert!(
                broken
                    .reason
                    .contains("checkpoint 1 differs between the database"),
                "{broken:?}"
            );
            report
        }
    };
    let broken = report.first_broken.expect("broken");
    assert!(
        broken.reason.contains("not navet's") || broken.reason.contains("differs"),
        "{broken:?}"
    );
}

#[tokio::test]
async fn an_auditor_finds_accesses_by_personnummer_and_by_hsa_id_and_a_search_navet_cannot_answer_is_refused()
 {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let pid = created["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(app.get(&format!("Patient/{pid}")).await.status(), 200);
    }
    let auditor = authorized_client(&auditor_token(&app).await);
    let total = |query: String| {
        let auditor = auditor.clone();
        let url = format!("{}/AuditEvent?{query}&_total=accurate", app.fhir);
        async move {
            let r = auditor.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, json(r).await)
        }
    };
    // The create and the three reads name the patient (and so will the auditor's own searches that return
    // them: `agent=` keeps to the mobile team's accesses).
    for query in [
        format!("patient=Patient/{pid}"),
        format!("patient={pid}"),
        "patient:identifier=http://electronichealth.se/identifier/personnummer|191212121212"
            .to_owned(),
        "patient.identifier=http://electronichealth.se/identifier/personnummer|191212121212"
            .to_owned(),
    ] {
        let query = format!("{query}&agent={DEFAULT_PRINCIPAL}");
        let (status, bundle) = total(query.clone()).await;
        assert_eq!(
            (status, bundle["total"].as_u64()),
            (200, Some(4)),
            "{query}: {bundle}"
        );
    }
    let (_, nobody) = total(
        "patient:identifier=http://electronichealth.se/identifier/personnummer|194005121233"
            .to_owned(),
    )
    .await;
    assert_eq!(
        nobody["total"], 0,
        "a patient navet does not know has no records: {nobody}"
    );
    // The user by bare HSA-id, by identifier, and the care unit (the mobile team's own HSA-id here).
    for query in [
        format!("agent={DEFAULT_USER}"),
        format!("agent:identifier=urn:oid:1.2.752.29.4.19|{DEFAULT_USER}"),
        format!("agent:identifier={DEFAULT_USER}"),
        format!("agent={DEFAULT_PRINCIPAL}&action=R"),
    ] {
        let (status, bundle) = total(query.clone()).await;
        let expected = if query.contains("action=R") { 3 } else { 4 };
        assert_eq!(
            (status, bundle["total"].as_u64()),
            (200, Some(expected)),
            "{query}: {bundle}"
        );
    }
    let (_, reads) = total(format!(
        "agent={DEFAULT_USER}&date=ge2020-01-01&outcome=0&purpose=TREAT&action=R"
    ))
    .await;
    assert_eq!(reads["total"], 3, "{reads}");
    let (_, none) = total(format!("agent={DEFAULT_USER}&date=lt2020-01-01")).await;
    assert_eq!(none["total"], 0, "{none}");
    // Each match is the AuditEvent by its id.
    let first = reads["entry"][0]["resource"].clone();
    let id = first["id"].as_str().unwrap();
    let one = json(
        auditor
            .get(format!("{}/AuditEvent/{id}", app.fhir))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(one, first);
    for refused in [
        "agent=Practitioner/abc".to_owned(),
        "entity-type=1".to_owned(),
        "patient:missing=true".to_owned(),
        "outcome=2".to_owned(),
    ] {
        let (status, body) = total(refused.clone()).await;
        assert_eq!(status, 400, "{refused}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{refused}");
    }
}

#[tokio::test]
async fn verifying_the_log_through_the_api_is_logged_and_reports_what_broke() {
    let app = app_with_five_records().await;
    checkpoint(&app).await;
    let auditor = authorized_client(&auditor_token(&app).await);
    let report = json(
        auditor
            .get(format!("{}/audit/verify", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["checkpoints"], 1, "{report}");
    let last = audit_events(&app).pop().unwrap();
    assert_eq!(last["subtype"][0]["code"], "verify", "{last}");
    assert!(agent_ids(&last).contains(&AUDITOR_USER.to_owned()));
    tamper(
        &app,
        "DELETE FROM audit_log WHERE seq = 2;",
        "DELETE FROM audit_log WHERE chain = 'a' AND seq = 2",
    );
    let report = json(
        auditor
            .get(format!("{}/audit/verify", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["firstBroken"]["seq"], 3, "{report}");
    assert_eq!(report["firstBroken"]["chain"], "access", "{report}");
}

#[tokio::test]
async fn an_independent_verifier_checks_the_export_and_the_checkpoints_from_the_documented_format_alone()
 {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let pid = created["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(app.get(&format!("Patient/{pid}")).await.status(), 200);
    }
    assert_eq!(
        app.get("Patient?identifier=191212121212").await.status(),
        200
    );
    assert_eq!(app.get("Patient/missing").await.status(), 404);
    checkpoint(&app).await;
    let auditor = authorized_client(&auditor_token(&app).await);
    let export = auditor
        .get(format!("{}/audit/export", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let export_path = dir.path().join("export.ndjson");
    let checkpoints = app.data_dir.path().join(navet::audit::checkpoint::FILE);
    let run = |export: &str| {
        std::fs::write(&export_path, export).unwrap();
        let out = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/audit_verify.py"
            ))
            .arg(&export_path)
            .arg(&checkpoints)
            .output()
            .expect("python3 runs (it is needed by this test)");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = run(&export);
    assert_eq!(code, Some(0), "{text}");
    // Five accesses and the export itself (logged before it streams); the create.
    assert!(
        text.contains("ok: 6 access records, 1 change records, 1 checkpoints"),
        "{text}"
    );

    // A view that says something its record does not.
    let lines: Vec<&str> = export.lines().collect();
    let mut changed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    changed[2]["outcome"] = json!("4");
    let text_of = |events: &[Value]| {
        events
            .iter()
            .map(|e| e.to_string() + "\n")
            .collect::<String>()
    };
    let (code, text) = run(&text_of(&changed));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("outcome"), "{text}");
    // A record changed by one byte.
    let mut changed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let carried = changed[1]["meta"]["extension"][0]["valueString"]
        .as_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = carried.split(':').collect();
    use base64::Engine;
    let mut record = base64::engine::general_purpose::STANDARD
        .decode(parts[2])
        .unwrap();
    record[10] = 8;
    let forged = format!(
        "{}:{}:{}:{}",
        parts[0],
        parts[1],
        base64::engine::general_purpose::STANDARD.encode(&record),
        parts[3]
    );
    changed[1]["meta"]["extension"][0]["valueString"] = json!(forged);
    let (code, text) = run(&text_of(&changed));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("does not match its hash"), "{text}");
    // An export missing its last records: the checkpoint names the truncation.
    let (code, text) = run(&text_of(&changed[..0]));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("truncated"), "{text}");
}
