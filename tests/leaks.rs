//! Issue 8, the leaks found by trying the core as an attacker would: the access log served to care principals,
//! protected identity through conditional create, history and contact elements, security labels dropped by
//! anyone, update as create telling hidden ids from unknown ones, and a server that started on a broken log.
//! Every access assertion is an allow-list: the exact set (or exact members) a principal gets.

mod common;

use std::collections::BTreeSet;

use common::*;
use navet::auth::PurposeOfUse;
use serde_json::{Value, json};

const VC: (&str, &str) = ("demo-vc-nasby", "SE2321000255-P0301");
const CSK: (&str, &str) = ("demo-csk", "SE2321000255-P0001");
const AUDITOR: (&str, &str) = ("demo-auditor", "SE2321000255-P0900");
const GRETA_PNR: &str = "192711248829";
const PNR_SYSTEM: &str = "http://electronichealth.se/identifier/personnummer";

async fn client(
    app: &TestApp,
    who: (&str, &str),
    purpose: PurposeOfUse,
    scope: &str,
) -> reqwest::Client {
    user_client(app, who.0, who.1, purpose, scope).await
}

async fn care(app: &TestApp, who: (&str, &str)) -> reqwest::Client {
    client(app, who, PurposeOfUse::Treat, "system/*.cruds").await
}

async fn auditor(app: &TestApp) -> reqwest::Client {
    client(
        app,
        AUDITOR,
        PurposeOfUse::Hoperat,
        "system/AuditEvent.rs system/Patient.rs",
    )
    .await
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn send(c: &reqwest::RequestBuilder, body: &Value) -> (u16, Value) {
    let r = c
        .try_clone()
        .unwrap()
        .header("content-type", FHIR_JSON)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The entries of a history Bundle as `Type/id`.
fn history_ids(bundle: &Value) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let url = e["fullUrl"].as_str()?;
            let mut parts = url.rsplit('/');
            let id = parts.next()?;
            let ty = parts.next()?;
            Some(format!("{ty}/{id}"))
        })
        .collect()
}

/// A patient and the mobile team's Task about them (naming no one else): (patient id, task id).
async fn patient_and_task(app: &TestApp) -> (String, String) {
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let pid = id(app.create(&patient("19121212-1212", "Tolvansson")).await);
    let task = id(app
        .create(
            &json!({"resourceType": "Task", "status": "requested", "intent": "order",
                         "for": {"reference": format!("Patient/{pid}")}}),
        )
        .await);
    (pid, task)
}

/// Every access-log record id, straight from the databases (both chains).
fn chain_ids(app: &TestApp) -> BTreeSet<String> {
    common::logged_events(app)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test]
async fn the_access_log_is_read_by_auditors_only_on_every_path() {
    let app = spawn_app().await;
    let vc = care(&app, VC).await;
    let (pid, task) = patient_and_task(&app).await;
    assert_eq!(app.get(&format!("Patient/{pid}")).await.status(), 200);
    assert_eq!(app.get(&format!("Task/{task}")).await.status(), 200);
    let log = chain_ids(&app);
    assert!(log.len() >= 4, "the creates and reads were logged: {log:?}");
    let event = log.iter().next().unwrap().clone();

    // System history: exactly what each care principal may see, and no AuditEvent.
    for (who, c, expected) in [
        (
            "the mobile team",
            &app.client,
            set(&[&format!("Patient/{pid}"), &format!("Task/{task}")]),
        ),
        ("the vårdcentral", &vc, set(&[&format!("Patient/{pid}")])),
    ] {
        let (status, history) = get(c, format!("{}/_history?_count=500", app.fhir)).await;
        assert_eq!(status, 200, "{who}: {history}");
        // Plus the directory entries of the demo users the test setup stored (shared master data).
        let expected: BTreeSet<String> = expected.union(&app.directory).cloned().collect();
        assert_eq!(history_ids(&history), expected, "{who}: system history");
        for path in [
            format!("AuditEvent/{event}"),
            format!("AuditEvent/{event}/_history/1"),
            format!("AuditEvent/{event}/_history"),
            "AuditEvent/_history".to_owned(),
            "AuditEvent".to_owned(),
            format!("AuditEvent?_id={event}"),
        ] {
            let (status, body) = get(c, format!("{}/{path}", app.fhir)).await;
            assert_eq!(status, 403, "{who} GET {path}: {body}");
        }
        let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": format!("AuditEvent/{event}")}},
            {"request": {"method": "GET", "url": format!("Patient/{pid}")}}]});
        let (status, answer) = send(&c.post(&app.fhir), &batch).await;
        assert_eq!(status, 200, "{answer}");
        let statuses: Vec<&str> = answer["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["response"]["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["403 Forbidden", "200 OK"], "{who}: batch");
        // Nor may a conditional write touch the log.
        let (status, _) = send(
            &c.put(format!("{}/AuditEvent?_id={event}", app.fhir)),
            &json!({"resourceType": "AuditEvent"}),
        )
        .await;
        assert_eq!(status, 405, "{who}: conditional update of the log");
    }

    // The auditor reads the whole log, the patient, and nothing clinical.
    let au = auditor(&app).await;
    let before = chain_ids(&app);
    let (status, page) = get(&au, format!("{}/AuditEvent?_count=1000", app.fhir)).await;
    assert_eq!(status, 200, "{page}");
    let found: BTreeSet<String> = entry_ids(&page)
        .into_iter()
        .map(|r| r.trim_start_matches("AuditEvent/").to_owned())
        .collect();
    assert_eq!(found, before, "the auditor's search is the whole log");
    // And its history is the same log, newest first, in pages that neither skip nor repeat a record although
    // each page's own read of the log adds one.
    let before = chain_ids(&app);
    let mut listed: Vec<String> = Vec::new();
    let mut url = Some(format!("{}/AuditEvent/_history?_count=3", app.fhir));
    while let Some(next) = url.take() {
        let (status, page) = get(&au, next).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["type"], "history");
        listed.extend(
            entry_ids(&page)
                .into_iter()
                .map(|r| r.trim_start_matches("AuditEvent/").to_owned()),
        );
        url = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
    }
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "no record twice: {listed:?}");
    assert_eq!(unique, before, "the auditor's history is the whole log");
    assert_eq!(get(&au, format!("{}/Patient/{pid}", app.fhir)).await.0, 200);
    assert_eq!(get(&au, format!("{}/Task/{task}", app.fhir)).await.0, 403);
    assert_eq!(get(&au, format!("{}/Task", app.fhir)).await.0, 403);
}

/// Greta Berg (demo seed) has skyddad folkbokföring. What every other principal gets of her record.
fn greta_as_others_see_her() -> BTreeSet<String> {
    set(&[
        "resourceType",
        "id",
        "meta",
        "extension",
        "identifier",
        "active",
        "name",
        "gender",
        "birthDate",
        "generalPractitioner",
    ])
}

async fn greta_id(app: &TestApp) -> String {
    let (_, page) = get(
        &app.client,
        format!("{}/Patient?identifier={PNR_SYSTEM}|{GRETA_PNR}", app.fhir),
    )
    .await;
    page["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("Greta is in the demo seed: {page}"))
        .to_owned()
}

#[tokio::test]
async fn protected_identity_leaves_through_no_path_conditional_create_included() {
    let app = spawn_app_with_demo().await;
    let id = greta_id(&app).await;
    let greta = json!({"resourceType": "Patient",
        "identifier": [{"system": PNR_SYSTEM, "value": GRETA_PNR}], "name": [{"family": "Berg"}]});

    // Conditional create that finds her answers the existing record: redacted like a read.
    let (status, found) = send(
        &app.client
            .post(format!("{}/Patient", app.fhir))
            .header(
                "if-none-exist",
                format!("identifier={PNR_SYSTEM}|{GRETA_PNR}"),
            )
            .header("prefer", "return=representation"),
        &greta,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        keys(&found),
        greta_as_others_see_her(),
        "conditional create"
    );

    let mut views = vec![(
        "read",
        get(&app.client, format!("{}/Patient/{id}", app.fhir))
            .await
            .1,
    )];
    views.push((
        "vread",
        get(&app.client, format!("{}/Patient/{id}/_history/1", app.fhir))
            .await
            .1,
    ));
    for (name, url) in [
        ("search", format!("{}/Patient?_id={id}", app.fhir)),
        (
            "instance history",
            format!("{}/Patient/{id}/_history", app.fhir),
        ),
        (
            "type history",
            format!("{}/Patient/_history?_count=500", app.fhir),
        ),
        (
            "system history",
            format!("{}/_history?_count=500", app.fhir),
        ),
    ] {
        let (_, bundle) = get(&app.client, url).await;
        let entry = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{name} lists her"))
            .clone();
        views.push((name, entry["resource"].clone()));
    }
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("Patient/{id}")}}]});
    let (_, answer) = send(&app.client.post(&app.fhir), &batch).await;
    views.push(("batch read", answer["entry"][0]["resource"].clone()));
    // Patient/$everything starts with the Patient itself.
    let (status, everything) = get(
        &app.client,
        format!("{}/Patient/{id}/$everything", app.fhir),
    )
    .await;
    assert_eq!(status, 200, "{everything}");
    views.push(("$everything", everything["entry"][0]["resource"].clone()));
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:9d7a1c52-4f0e-4a7e-9d9b-1f7f6f0b0c11", "resource": greta,
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": format!("identifier={PNR_SYSTEM}|{GRETA_PNR}")}}]});
    let (_, answer) = send(
        &app.client
            .post(&app.fhir)
            .header("prefer", "return=representation"),
        &transaction,
    )
    .await;
    views.push((
        "transaction conditional create",
        answer["entry"][0]["resource"].clone(),
    ));
    for (name, view) in views {
        assert_eq!(keys(&view), greta_as_others_see_her(), "{name}: {view}");
        assert!(!view.to_string().contains("Syrénvägen"), "{name}: {view}");
        let labels: Vec<&str> = view["meta"]["security"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["code"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["skyddadFolkbokforing", "R", "REDACTED"], "{name}");
    }
    // Searching by her address finds nobody.
    let (_, page) = get(
        &app.client,
        format!("{}/Patient?address=Syrénvägen", app.fhir),
    )
    .await;
    assert_eq!(entry_ids(&page), BTreeSet::new());
}

/// A protected Patient the mobile team entered, with address and contact data in every place FHIR allows.
fn protected_patient() -> Value {
    json!({"resourceType": "Patient",
        "meta": {"security": [{"system": "http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel", "code": "sekretessmarkering"}]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ingrid, Ekgatan 3, Åhus</div>"},
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": "Hemliga Byn"}},
            {"url": "http://example.org/weight-unit", "valueString": "kg"}],
        "identifier": [{"system": PNR_SYSTEM, "value": "193606172488"}],
        "name": [{"family": "Svensson", "given": ["Ingrid"]}],
        "telecom": [{"system": "phone", "value": "070-1234567"}],
        "address": [{"line": ["Ekgatan 3"], "city": "Åhus"}],
        "contact": [{"name": {"family": "Svensson"}, "telecom": [{"system": "phone", "value": "070-7654321"}],
                     "address": {"city": "Ystad"}}]})
}

const SECRETS: [&str; 6] = [
    "Ekgatan",
    "Åhus",
    "Hemliga Byn",
    "070-1234567",
    "070-7654321",
    "Ystad",
];

#[tokio::test]
async fn contacts_narrative_extensions_and_earlier_versions_are_withheld_too() {
    let app = spawn_app().await;
    let vc = care(&app, VC).await;
    // First entered without the label, then labelled: the first version holds the address unprotected.
    let mut body = protected_patient();
    body.as_object_mut().unwrap().remove("meta");
    let created = app.create(&body).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut labelled = protected_patient();
    labelled["id"] = json!(id);
    let (status, _) = send(
        &app.client.put(format!("{}/Patient/{id}", app.fhir)),
        &labelled,
    )
    .await;
    assert_eq!(status, 200);

    let (_, read) = get(&vc, format!("{}/Patient/{id}", app.fhir)).await;
    assert_eq!(
        keys(&read),
        set(&[
            "resourceType",
            "id",
            "meta",
            "extension",
            "identifier",
            "name"
        ])
    );
    assert_eq!(
        read["extension"],
        json!([{"url": "http://example.org/weight-unit", "valueString": "kg"}])
    );
    let (_, v1) = get(&vc, format!("{}/Patient/{id}/_history/1", app.fhir)).await;
    let (_, history) = get(&vc, format!("{}/Patient/{id}/_history", app.fhir)).await;
    for (name, view) in [
        ("read", &read),
        ("vread of version 1", &v1),
        ("history", &history),
    ] {
        for secret in SECRETS {
            assert!(
                !view.to_string().contains(secret),
                "{name} shows {secret}: {view}"
            );
        }
    }
    // The principal that entered her sees everything.
    let (_, own) = get(&app.client, format!("{}/Patient/{id}", app.fhir)).await;
    for secret in SECRETS {
        assert!(own.to_string().contains(secret), "the owner sees {secret}");
    }
}

/// The stored record as navet itself holds it.
async fn stored(app: &TestApp, id: &str) -> Value {
    let v = app
        .state
        .store
        .read(&navet::store::Actor::system(), "Patient", id, None)
        .await
        .unwrap()
        .unwrap();
    serde_json::from_str(v.json.as_deref().unwrap()).unwrap()
}

fn label_codes(v: &Value) -> Vec<String> {
    v["meta"]["security"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn only_the_entering_principal_or_the_population_register_changes_labels_or_withheld_data() {
    let app = spawn_with(true, |s| {
        let csk = s
            .auth
            .clients
            .iter_mut()
            .find(|c| c.client_id == CSK.0)
            .unwrap();
        csk.population_register = true;
    })
    .await;
    let id = greta_id(&app).await;
    let vc = care(&app, VC).await;
    let url = format!("{}/Patient/{id}", app.fhir);
    let (_, view) = get(&vc, url.clone()).await;
    let original = stored(&app, &id).await;

    // Without the labels, with another label, or with an address of its own: refused, nothing written.
    let mut unlabelled = view.clone();
    unlabelled["meta"]
        .as_object_mut()
        .unwrap()
        .remove("security");
    let mut relabelled = view.clone();
    relabelled["meta"]["security"] = json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]);
    let mut moved = view.clone();
    moved["address"] = json!([{"city": "Malmö"}]);
    let mut narrated = view.clone();
    narrated["text"] = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"});
    for (name, body) in [
        ("without labels", &unlabelled),
        ("with another label", &relabelled),
        ("with an address", &moved),
        ("with a narrative", &narrated),
    ] {
        let (status, outcome) = send(&vc.put(&url), body).await;
        assert_eq!(status, 403, "{name}: {outcome}");
        assert!(!outcome_text(&outcome).is_empty());
    }
    assert_eq!(stored(&app, &id).await, original, "nothing was written");

    // What the vårdcentral read, sent back with a change of its own: the withheld address is kept.
    let mut edited = view.clone();
    edited["active"] = json!(false);
    let (status, answer) = send(
        &vc.put(&url).header("prefer", "return=representation"),
        &edited,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        !answer.to_string().contains("Syrénvägen"),
        "the answer is redacted too"
    );
    let now = stored(&app, &id).await;
    assert_eq!(now["active"], false);
    assert_eq!(now["address"], original["address"], "the address is kept");
    assert_eq!(
        label_codes(&now),
        ["skyddadFolkbokforing", "R"],
        "REDACTED is never stored"
    );

    // The population register may lift the protection.
    let register = care(&app, CSK).await;
    let mut lifted = now.clone();
    lifted["meta"].as_object_mut().unwrap().remove("security");
    let (status, answer) = send(&register.put(&url), &lifted).await;
    assert_eq!(status, 200, "{answer}");
    let (_, read) = get(&vc, url.clone()).await;
    assert!(
        read.to_string().contains("Syrénvägen"),
        "no longer protected: {read}"
    );

    // A principal that entered a Patient may label and unlabel it.
    let own = app.create(&protected_patient()).await;
    let own_id = own["id"].as_str().unwrap();
    let mut unlabelled = own.clone();
    unlabelled["meta"]
        .as_object_mut()
        .unwrap()
        .remove("security");
    let (status, answer) = send(
        &app.client.put(format!("{}/Patient/{own_id}", app.fhir)),
        &unlabelled,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        label_codes(&stored(&app, own_id).await),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_put_to_an_unknown_id_and_to_a_hidden_one_answer_alike() {
    let app = spawn_app().await;
    let vc = care(&app, VC).await;
    let (pid, hidden) = patient_and_task(&app).await;
    let mut answers = Vec::new();
    for id in [hidden.as_str(), "no-such-task"] {
        let body = json!({"resourceType": "Task", "id": id, "status": "requested", "intent": "order",
                          "for": {"reference": format!("Patient/{pid}")}});
        let (status, outcome) = send(&vc.put(format!("{}/Task/{id}", app.fhir)), &body).await;
        answers.push((status, outcome_text(&outcome).replace(id, "{id}")));
    }
    assert_eq!(answers[0], answers[1], "hidden and unknown look the same");
    assert_eq!(answers[0].0, 404);
    // Nothing was created under the client's id.
    assert_eq!(app.get("Task/no-such-task").await.status(), 404);
    let (_, capability) = get(&app.anonymous, format!("{}/metadata", app.fhir)).await;
    let task = capability["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Task")
        .unwrap()
        .clone();
    assert_eq!(task["updateCreate"], false);
    // A conditional update that matches nothing may create, but not under an id the client chose.
    let body = json!({"resourceType": "Task", "id": "chosen", "status": "requested", "intent": "order",
                      "for": {"reference": format!("Patient/{pid}")}});
    let (status, outcome) = send(
        &app.client.put(format!("{}/Task?_id=chosen", app.fhir)),
        &body,
    )
    .await;
    assert_eq!(status, 400, "{outcome}");
    assert!(outcome_text(&outcome).contains("update as create"));
}

async fn start_error(app: TestApp) -> String {
    let (dir, url) = (app.data_dir, app.database_url);
    app.state.store.close().await;
    let s = restart_settings_at(dir.path(), url);
    match navet::startup::build_state(&s).await {
        Ok(_) => panic!("navet started on a tampered data directory"),
        Err(e) => e,
    }
}

async fn app_with_records() -> TestApp {
    let app = spawn_app().await;
    let pid = app.create(&patient("19121212-1212", "Tolvansson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        assert_eq!(app.get(&format!("Patient/{pid}")).await.status(), 200);
    }
    app
}

/// Runs `sqlite` on one of the log's databases, `navet.db` (the change chain) or `audit.db` (the access
/// chain); on PostgreSQL `postgres` on the test's schema, where both chains are one table set (`chain` 'c'
/// or 'a').
fn tamper(app: &TestApp, file: &str, sqlite: &str, postgres: &str) {
    common::sql(app, file, sqlite, postgres).unwrap();
}

#[tokio::test]
async fn navet_refuses_to_start_on_a_broken_access_log_and_names_the_command_that_reports_it() {
    let app = app_with_records().await;
    let postgres = app.database_url.is_some();
    tamper(
        &app,
        "audit.db",
        "DROP TRIGGER audit_log_no_update; \
         UPDATE audit_log SET record = record || x'20' WHERE seq = (SELECT MAX(seq) FROM audit_log); \
         CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;",
        // The superuser in replication mode passes the triggers, which stay in place.
        &bypassing_triggers(
            "UPDATE audit_log SET record = record || '\\x20'::bytea \
             WHERE chain = 'a' AND seq = (SELECT max(seq) FROM audit_log WHERE chain = 'a')",
        ),
    );
    let error = start_error(app).await;
    assert!(error.contains("broken"), "{error}");
    assert!(error.contains("navet audit verify --data-dir"), "{error}");
    if postgres {
        assert!(error.contains("--database-url"), "{error}");
    }
}

#[tokio::test]
async fn navet_refuses_to_start_when_the_append_only_triggers_were_dropped() {
    let app = app_with_records().await;
    let Some(url) = app.database_url.clone() else {
        tamper(&app, "navet.db", "DROP TRIGGER audit_log_no_delete;", "");
        let error = start_error(app).await;
        assert!(error.contains("audit_log_no_delete"), "{error}");
        assert!(error.contains("navet audit verify --data-dir"), "{error}");
        return;
    };
    // PostgreSQL: one trigger refuses UPDATE and DELETE on the log of both chains. A disabled trigger is as
    // good as none, so that is refused first; then the dropped one.
    tamper(
        &app,
        "",
        "",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
    );
    let error = navet::startup::build_state(&restart_settings_at(app.data_dir.path(), Some(url)))
        .await
        .err()
        .expect("navet started with a disabled append-only trigger");
    assert!(error.contains("audit_log_append_only"), "{error}");
    assert!(error.contains("navet audit verify --data-dir"), "{error}");
    tamper(
        &app,
        "",
        "",
        "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only; \
         DROP TRIGGER audit_log_append_only ON audit_log",
    );
    let error = start_error(app).await;
    assert!(error.contains("audit_log_append_only"), "{error}");
    assert!(error.contains("navet audit verify --data-dir"), "{error}");
    assert!(error.contains("--database-url"), "{error}");
}

#[tokio::test]
async fn an_intact_data_directory_starts_again() {
    let app = app_with_records().await;
    let (dir, url) = (app.data_dir, app.database_url);
    app.state.store.close().await;
    let s = restart_settings_at(dir.path(), url);
    let restarted = navet::startup::build_state(&s).await;
    assert!(restarted.is_ok(), "{:?}", restarted.err());
}
