//! The patient timeline (issue 12): newest first by clinical time, keyset pages that neither skip nor repeat
//! while entries are written, filters, exactly what each principal may see, 404 for a patient that does not
//! exist, one access-log record per call, and `$everything` under the same rules.

mod common;

use std::collections::BTreeSet;

use common::*;
use navet::auth::PurposeOfUse;
use serde_json::{Value, json};

const VC: (&str, &str) = ("demo-vc-nasby", "SE2321000255-P0301");

async fn get(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null),
    )
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

fn next(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_owned())
}

/// A patient and, owned by the mobile team, one Task per hour of 2026-12-01 (08:00 … 08:00+n-1), newest last.
async fn patient_with_tasks(app: &TestApp, n: usize) -> (String, Vec<String>) {
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let patient = id(app.create(&patient("19121212-1212", "Tolvansson")).await);
    let mut tasks = Vec::new();
    for h in 0..n {
        let t = app
            .create(
                &json!({"resourceType": "Task", "status": "requested", "intent": "order",
                "for": {"reference": format!("Patient/{patient}")},
                "executionPeriod": {"start": format!("2026-12-01T{:02}:00:00+01:00", 8 + h)}}),
            )
            .await;
        tasks.push(format!("Task/{}", id(t)));
    }
    (patient, tasks)
}

#[tokio::test]
async fn entries_come_newest_first_by_clinical_time_with_owner_source_and_time() {
    let app = spawn_app().await;
    let (patient, tasks) = patient_with_tasks(&app, 3).await;
    // An Encounter whose clinical time is earlier than every Task, though written last.
    let enc = app
        .create(&json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
            "subject": {"reference": format!("Patient/{patient}")},
            "period": {"start": "2026-11-30T10:00:00+01:00"}}))
        .await;
    let url = format!("{}/Patient/{patient}/$timeline?_total=accurate", app.fhir);
    let (status, page) = get(&app.client, &url).await;
    assert_eq!(status, 200, "{page}");
    let mut expected: Vec<String> = tasks.iter().rev().cloned().collect();
    expected.push(format!("Encounter/{}", enc["id"].as_str().unwrap()));
    assert_eq!(ids(&page), expected);
    assert_eq!(page["total"], 4);
    let search = &page["entry"][0]["search"];
    assert_eq!(search["mode"], "match");
    let ext: Vec<&Value> = search["extension"].as_array().unwrap().iter().collect();
    assert_eq!(ext[0]["valueIdentifier"]["value"], DEFAULT_PRINCIPAL);
    assert_eq!(ext[1]["valueCode"], "fhir");
    assert_eq!(ext[2]["valueInstant"], "2026-12-01T09:00:00.000Z");
    // By identifier, the same timeline.
    let by_identifier = format!(
        "{}/Patient/$timeline?identifier=http://electronichealth.se/identifier/personnummer|191212121212",
        app.fhir
    );
    let (_, same) = get(&app.client, &by_identifier).await;
    assert_eq!(ids(&same), expected);
}

#[tokio::test]
async fn pages_neither_skip_nor_repeat_while_entries_are_written() {
    let app = spawn_app().await;
    let (patient, tasks) = patient_with_tasks(&app, 7).await;
    let mut url = format!("{}/Patient/{patient}/$timeline?_count=3", app.fhir);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, page) = get(&app.client, &url).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids(&page));
        pages += 1;
        // Written between pages: one newer than everything (already paged past) and one later in the list's
        // future would only shift an offset; the keyset is unaffected.
        app.create(
            &json!({"resourceType": "Task", "status": "requested", "intent": "order",
            "for": {"reference": format!("Patient/{patient}")},
            "executionPeriod": {"start": format!("2026-12-02T0{pages}:00:00+01:00")}}),
        )
        .await;
        match next(&page) {
            Some(n) => url = n,
            None => break,
        }
    }
    let expected: Vec<String> = tasks.iter().rev().cloned().collect();
    assert_eq!(seen, expected, "every entry once, in order");
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn filters_by_type_and_clinical_time() {
    let app = spawn_app().await;
    let (patient, tasks) = patient_with_tasks(&app, 4).await;
    let base = format!("{}/Patient/{patient}/$timeline", app.fhir);
    let (_, page) = get(
        &app.client,
        &format!("{base}?start=2026-12-01T09:00:00%2B01:00&end=2026-12-01T10:00:00%2B01:00"),
    )
    .await;
    assert_eq!(ids(&page), [tasks[2].clone(), tasks[1].clone()]);
    let (_, page) = get(&app.client, &format!("{base}?_type=Encounter")).await;
    assert_eq!(ids(&page), Vec::<String>::new());
    let (_, page) = get(&app.client, &format!("{base}?_type=Task&end=2026-12-01")).await;
    assert_eq!(ids(&page).len(), 4, "an end date covers its whole day");
    for bad in [
        "_type=Nope",
        "start=yesterday",
        "_count=x",
        "_cursor=forged",
        "color=red",
    ] {
        let (status, outcome) = get(&app.client, &format!("{base}?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {outcome}");
    }
}

#[tokio::test]
async fn each_principal_sees_exactly_its_entries_and_no_existence_leaks() {
    let app = spawn_app().await;
    let (patient, tasks) = patient_with_tasks(&app, 2).await;
    let vc = user_client(&app, VC.0, VC.1, PurposeOfUse::Treat, "system/*.cruds").await;
    // The vårdcentral's own referral for the patient: all it may see (no consent for the team's tasks).
    let sr = create_with(
        &vc,
        &app.fhir,
        &json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                "subject": {"reference": format!("Patient/{patient}")}, "authoredOn": "2026-11-01"}),
    )
    .await;
    let sr = format!("ServiceRequest/{}", sr["id"].as_str().unwrap());
    let url = format!(
        "{}/Patient/{patient}/$timeline?_total=accurate&_count=1",
        app.fhir
    );
    let (_, vc_page) = get(&vc, &url).await;
    assert_eq!(ids(&vc_page), std::slice::from_ref(&sr));
    assert_eq!(vc_page["total"], 1, "hidden entries are not counted");
    assert_eq!(next(&vc_page), None, "nor do they make a next page");
    let (_, mtn_page) = get(&app.client, &url.replace("_count=1", "_count=10")).await;
    // The team's own tasks; the vårdcentral's referral is hidden from it (no consent yet).
    let mine: BTreeSet<String> = tasks.iter().cloned().collect();
    assert_eq!(ids(&mtn_page).into_iter().collect::<BTreeSet<_>>(), mine);

    // With consent, the vårdcentral (which now has a care relationship) sees the team's tasks too.
    create_with(
        &vc,
        &app.fhir,
        &json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/{patient}")}, "provision": {"type": "permit"}}),
    )
    .await;
    let (_, after) = get(
        &vc,
        &format!(
            "{}/Patient/{patient}/$timeline?_type=Task,ServiceRequest",
            app.fhir
        ),
    )
    .await;
    let mut expected: Vec<String> = tasks.iter().rev().cloned().collect();
    expected.push(sr);
    assert_eq!(ids(&after), expected);

    // A patient that does not exist, or was deleted: 404, not an empty timeline.
    let (status, _) = get(&vc, &format!("{}/Patient/no-such/$timeline", app.fhir)).await;
    assert_eq!(status, 404);
    let (status, _) = get(
        &vc,
        &format!("{}/Patient/$timeline?identifier=http://electronichealth.se/identifier/personnummer|193606172488", app.fhir),
    )
    .await;
    assert_eq!(status, 404);
    // Auditors read the log, not timelines.
    let auditor = user_client(
        &app,
        "demo-auditor",
        "SE2321000255-P0900",
        PurposeOfUse::Hoperat,
        "system/AuditEvent.rs system/Patient.rs",
    )
    .await;
    let (status, _) = get(
        &auditor,
        &format!("{}/Patient/{patient}/$timeline", app.fhir),
    )
    .await;
    assert_eq!(status, 403);
}

/// The access log's records, straight from the database: (operation subtype, status, patients).
fn log_records(app: &TestApp) -> Vec<Value> {
    let conn = rusqlite::Connection::open(app.data_dir.path().join("navet.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT json FROM audit_log ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|j| serde_json::from_str(&j.unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn each_call_is_one_log_record_naming_the_patient_and_everything_starts_with_the_patient() {
    let app = spawn_app().await;
    let (patient, tasks) = patient_with_tasks(&app, 2).await;
    let before = log_records(&app).len();
    let (status, everything) = get(
        &app.client,
        &format!("{}/Patient/{patient}/$everything", app.fhir),
    )
    .await;
    assert_eq!(status, 200, "{everything}");
    let mut expected = vec![format!("Patient/{patient}")];
    expected.extend(tasks.iter().rev().cloned());
    assert_eq!(ids(&everything), expected);
    let (status, _) = get(
        &app.client,
        &format!("{}/Patient/no-such/$timeline", app.fhir),
    )
    .await;
    assert_eq!(status, 404);
    let records = log_records(&app);
    assert_eq!(
        records.len(),
        before + 2,
        "one record per call, the refused one too"
    );
    let text = records[before].to_string();
    assert!(text.contains(&format!("Patient/{patient}")), "{text}");
    assert!(text.contains("everything"), "{text}");
    assert!(records[before + 1].to_string().contains("Patient/no-such"));
}
