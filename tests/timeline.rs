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
    assert_eq!(entry_list(&page), expected);
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
    assert_eq!(entry_list(&same), expected);
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
        seen.extend(entry_list(&page));
        pages += 1;
        // Written between pages: one newer than everything (already paged past) and one later in the list's
        // future would only shift an offset; the keyset is unaffected.
        app.create(
            &json!({"resourceType": "Task", "status": "requested", "intent": "order",
            "for": {"reference": format!("Patient/{patient}")},
            "executionPeriod": {"start": format!("2026-12-02T0{pages}:00:00+01:00")}}),
        )
        .await;
        match next_link(&page) {
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
    assert_eq!(entry_list(&page), [tasks[2].clone(), tasks[1].clone()]);
    let (_, page) = get(&app.client, &format!("{base}?_type=Encounter")).await;
    assert_eq!(entry_list(&page), Vec::<String>::new());
    let (_, page) = get(&app.client, &format!("{base}?_type=Task&end=2026-12-01")).await;
    assert_eq!(
        entry_list(&page).len(),
        4,
        "an end date covers its whole day"
    );
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
    assert_eq!(entry_list(&vc_page), std::slice::from_ref(&sr));
    assert_eq!(vc_page["total"], 1, "hidden entries are not counted");
    assert_eq!(next_link(&vc_page), None, "nor do they make a next page");
    let (_, mtn_page) = get(&app.client, &url.replace("_count=1", "_count=10")).await;
    // The team's own tasks; the vårdcentral's referral is hidden from it (no consent yet).
    let mine: BTreeSet<String> = tasks.iter().cloned().collect();
    assert_eq!(
        entry_list(&mtn_page).into_iter().collect::<BTreeSet<_>>(),
        mine
    );

    // With consent, the vårdcentral (which now has a care relationship) sees the team's tasks too.
    create_with(
        &vc,
        &app.fhir,
        &json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}], "policyRule": {"text": "Lag 2022:913"},
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
    assert_eq!(entry_list(&after), expected);

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

/// The access log's records, straight from the databases (both chains, in recorded order).
fn log_records(app: &TestApp) -> Vec<Value> {
    common::logged_events(app)
        .into_iter()
        .map(|(_, j)| serde_json::from_str(&j).unwrap())
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
    assert_eq!(entry_list(&everything), expected);
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

const KOMMUN: (&str, &str) = ("demo-kommun-kristianstad", "SE2120000999-P1290A");

/// Every entry of a timeline, following `next` links to the end (bounded), with `_count` per page.
async fn all_pages(c: &reqwest::Client, first: &str) -> Vec<String> {
    let mut url = first.to_owned();
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let (status, page) = get(c, &url).await;
        assert_eq!(status, 200, "{url}: {page}");
        seen.extend(entry_list(&page));
        match next_link(&page) {
            Some(n) => url = n,
            None => return seen,
        }
    }
    panic!("more than 1000 pages from {first}");
}

fn id_of(prefix: &str, v: &Value) -> String {
    format!("{prefix}/{}", v["id"].as_str().unwrap())
}

fn consent_body(patient: &str, provision: Value, date_time: &str) -> Value {
    json!({"resourceType": "Consent", "status": "active", "dateTime": date_time,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}], "policyRule": {"text": "Lag 2022:913"},
        "patient": {"reference": format!("Patient/{patient}")}, "provision": provision})
}

#[tokio::test]
async fn each_visibility_rule_gives_exactly_its_entries() {
    let app = spawn_app().await;
    let hsa = |v: &str| json!({"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": v}});
    let patient = app.create(&patient("19121212-1212", "Tolvansson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let subject = json!({"reference": format!("Patient/{patient}")});
    let vc = user_client(&app, VC.0, VC.1, PurposeOfUse::Treat, "system/*.cruds").await;
    let vc_etreat = user_client(&app, VC.0, VC.1, PurposeOfUse::Etreat, "system/*.cruds").await;
    let kommun = user_client(
        &app,
        KOMMUN.0,
        KOMMUN.1,
        PurposeOfUse::Treat,
        "system/*.cruds",
    )
    .await;
    let kommun_etreat = user_client(
        &app,
        KOMMUN.0,
        KOMMUN.1,
        PurposeOfUse::Etreat,
        "system/*.cruds",
    )
    .await;
    // The mobile team: an active task (its care relationship) and an encounter naming the kommun.
    let task = id_of(
        "Task",
        &app.create(
            &json!({"resourceType": "Task", "status": "requested", "intent": "order",
            "for": subject, "executionPeriod": {"start": "2026-12-01T06:00:00Z"}}),
        )
        .await,
    );
    let encounter = id_of(
        "Encounter",
        &app.create(
            &json!({"resourceType": "Encounter", "status": "finished", "subject": subject,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
            "participant": [{"individual": hsa("SE2120000999-HSJ1290")}],
            "period": {"start": "2026-12-01T05:00:00Z"}}),
        )
        .await,
    );
    // The vårdcentral: an active referral (its care relationship).
    let referral = id_of(
        "ServiceRequest",
        &create_with(
            &vc,
            &app.fhir,
            &json!({"resourceType": "ServiceRequest", "status": "active",
            "intent": "order", "subject": subject, "authoredOn": "2026-12-01T04:00:00Z"}),
        )
        .await,
    );
    // The kommun: a message, and no care relationship of its own.
    let message = id_of(
        "Communication",
        &create_with(
            &kommun,
            &app.fhir,
            &json!({"resourceType": "Communication",
            "status": "completed", "subject": subject, "sent": "2026-12-01T03:00:00Z"}),
        )
        .await,
    );
    let url = format!("{}/Patient/{patient}/$timeline?_count=2", app.fhir);
    let list = |v: &[&String]| v.iter().map(|s| (*s).clone()).collect::<Vec<_>>();

    // No consent: owner and participant only; ETREAT opens what a care relationship reaches.
    assert_eq!(
        all_pages(&app.client, &url).await,
        list(&[&task, &encounter]),
        "owner"
    );
    assert_eq!(all_pages(&vc, &url).await, list(&[&referral]), "owner");
    assert_eq!(
        all_pages(&kommun, &url).await,
        list(&[&encounter, &message]),
        "participant and owner"
    );
    assert_eq!(
        all_pages(&vc_etreat, &url).await,
        list(&[&task, &encounter, &referral, &message]),
        "ETREAT with a care relationship"
    );
    assert_eq!(
        all_pages(&kommun_etreat, &url).await,
        list(&[&encounter, &message]),
        "ETREAT without a care relationship opens nothing more"
    );

    // Consent for all: everyone with a care relationship reads the others' records.
    let permit = id_of(
        "Consent",
        &app.create(&consent_body(
            &patient,
            json!({"type": "permit"}),
            "2026-12-01T02:00:00Z",
        ))
        .await,
    );
    assert_eq!(
        all_pages(&app.client, &url).await,
        list(&[&task, &encounter, &referral, &message, &permit]),
        "consent"
    );
    assert_eq!(
        all_pages(&vc, &url).await,
        list(&[&task, &encounter, &referral, &message, &permit]),
        "consent"
    );
    assert_eq!(
        all_pages(&kommun, &url).await,
        list(&[&encounter, &message]),
        "consent without a care relationship"
    );

    // A block on the kommun hides its records from everyone reading through sammanhållen dokumentation.
    let block = id_of(
        "Consent",
        &app.create(&consent_body(
            &patient,
            json!({"type": "deny", "actor": [{"role": {"text": "blocked"}, "reference": hsa("SE2120000999-HSJ1290")}]}),
            "2026-12-01T01:00:00Z",
        ))
        .await,
    );
    let unblocked = list(&[&task, &encounter, &referral, &permit, &block]);
    assert_eq!(all_pages(&app.client, &url).await, unblocked, "block");
    assert_eq!(all_pages(&vc, &url).await, unblocked, "block");
    assert_eq!(
        all_pages(&kommun, &url).await,
        list(&[&encounter, &message]),
        "a block does not hide the blocked principal's own records from it"
    );
    assert_eq!(
        all_pages(&vc_etreat, &url).await,
        list(&[&task, &encounter, &referral, &message, &permit, &block]),
        "ETREAT passes the block"
    );
}

#[tokio::test]
async fn a_reader_paging_while_a_writer_inserts_sees_every_earlier_entry_once_in_order() {
    let app = spawn_app().await;
    let patient = app.create(&patient("19121212-1212", "Tolvansson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let task = |minute: u32| {
        json!({"resourceType": "Task", "status": "requested", "intent": "order",
            "for": {"reference": format!("Patient/{patient}")},
            "executionPeriod": {"start": format!("2026-12-01T{:02}:{:02}:00Z", minute / 60, minute % 60)}})
    };
    // 24 entries every 10 minutes, 2 per clinical time (ties broken by id).
    let mut before = Vec::new();
    for i in 0..24u32 {
        before.push(id_of("Task", &app.create(&task(i / 2 * 10)).await));
    }
    // The writer: 24 more, between and around the earlier ones (some newer than every entry, some in the part
    // the reader has not reached), until the reader is done.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (client, fhir, done, written) = (
            app.client.clone(),
            app.fhir.clone(),
            done.clone(),
            written.clone(),
        );
        let bodies: Vec<Value> = (0..24u32).map(|i| task((23 - i) * 5 + 3)).collect();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            for b in bodies {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                mine.push(id_of("Task", &create_with(&client, &fhir, &b).await));
                written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            mine
        })
    };
    let mut url = format!("{}/Patient/{patient}/$timeline?_count=3", app.fhir);
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut during = 0;
    for _ in 0..100 {
        let (status, page) = get(&app.client, &url).await;
        assert_eq!(status, 200, "{page}");
        for e in page["entry"].as_array().unwrap() {
            let time = e["search"]["extension"][2]["valueInstant"]
                .as_str()
                .unwrap();
            let id = format!("Task/{}", e["resource"]["id"].as_str().unwrap());
            seen.push((time.to_owned(), id));
        }
        // Let the writer in between pages.
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        during = written.load(std::sync::atomic::Ordering::SeqCst);
        match next_link(&page) {
            Some(n) => url = n,
            None => break,
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let inserted: BTreeSet<String> = writer.await.unwrap().into_iter().collect();
    assert!(during > 0, "the writer wrote while the reader paged");
    // Strictly newest first by (time, type, id): no entry twice, none out of order.
    for pair in seen.windows(2) {
        assert!(pair[0] > pair[1], "out of order or repeated: {pair:?}");
    }
    let seen_ids: Vec<String> = seen.into_iter().map(|(_, id)| id).collect();
    // Every entry that existed before, exactly once and in order (ties by id, descending).
    let mut expected: Vec<(u32, String)> = before
        .iter()
        .enumerate()
        .map(|(i, id)| (i as u32 / 2, id.clone()))
        .collect();
    expected.sort_by(|a, b| b.cmp(a));
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    let earlier: Vec<String> = seen_ids
        .iter()
        .filter(|id| !inserted.contains(*id))
        .cloned()
        .collect();
    assert_eq!(earlier, expected);
    assert!(
        seen_ids
            .iter()
            .all(|id| before.contains(id) || inserted.contains(id)),
        "nothing but the patient's entries"
    );
}

#[tokio::test]
async fn type_and_time_filters_page_together() {
    let app = spawn_app().await;
    let patient = app.create(&patient("19121212-1212", "Tolvansson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let subject = json!({"reference": format!("Patient/{patient}")});
    // Hour h: a Task, and for even h an Encounter too.
    let mut tasks = Vec::new();
    let mut encounters = Vec::new();
    for h in 0..10u32 {
        let at = format!("2026-12-01T{h:02}:00:00Z");
        tasks.push(id_of(
            "Task",
            &app.create(&json!({"resourceType": "Task", "status": "requested",
            "intent": "order", "for": subject, "executionPeriod": {"start": at}}))
                .await,
        ));
        if h % 2 == 0 {
            encounters.push(id_of("Encounter", &app.create(&json!({"resourceType": "Encounter",
                "status": "finished", "subject": subject, "period": {"start": at},
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"}})).await));
        }
    }
    let base = format!("{}/Patient/{patient}/$timeline", app.fhir);
    // Tasks from 02:00 up to (not including) 08:00, two per page: 07, 06 | 05, 04 | 03, 02.
    let url = format!(
        "{base}?_type=Task&start=2026-12-01T02:00:00Z&end=2026-12-01T07:59:59.999Z&_count=2&_total=accurate"
    );
    let expected: Vec<String> = (2..8).rev().map(|h| tasks[h].clone()).collect();
    let (_, first) = get(&app.client, &url).await;
    assert_eq!(first["total"], 6);
    assert_eq!(all_pages(&app.client, &url).await, expected);
    let second = next_link(&first).unwrap();
    for kept in [
        "_type=Task",
        "start=",
        "end=",
        "_count=2",
        "_total=accurate",
    ] {
        assert!(
            second.contains(kept),
            "the next link keeps {kept}: {second}"
        );
    }
    // Both types, 04:00 to the end of 06:00, three per page; ties at one time come Task before Encounter
    // (type descending).
    let url = format!(
        "{base}?_type=Encounter,Task&start=2026-12-01T04:00:00Z&end=2026-12-01T06:00:00Z&_count=3"
    );
    assert_eq!(
        all_pages(&app.client, &url).await,
        [
            tasks[6].clone(),
            encounters[3].clone(),
            tasks[5].clone(),
            tasks[4].clone(),
            encounters[2].clone(),
        ]
    );
    // Encounters only, one per page.
    let url = format!("{base}?_type=Encounter&_count=1");
    let mut newest_first = encounters.clone();
    newest_first.reverse();
    assert_eq!(all_pages(&app.client, &url).await, newest_first);
}

/// A Bundle without what differs between any two answers (its id and time).
fn without_bundle_identity(mut v: Value) -> Value {
    let o = v.as_object_mut().unwrap();
    o.remove("id");
    o.remove("meta");
    v
}

#[tokio::test]
async fn hidden_entries_leave_the_same_totals_pages_and_links_as_no_entries() {
    let app = spawn_app().await;
    let patient = app.create(&patient("19121212-1212", "Tolvansson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let subject = json!({"reference": format!("Patient/{patient}")});
    let vc = user_client(&app, VC.0, VC.1, PurposeOfUse::Treat, "system/*.cruds").await;
    for h in [1, 3, 5, 7, 9] {
        create_with(&vc, &app.fhir, &json!({"resourceType": "ServiceRequest", "status": "completed",
            "intent": "order", "subject": subject, "authoredOn": format!("2026-12-01T{h:02}:00:00Z")}))
        .await;
    }
    // Every page the vårdcentral gets, with totals and links, at each page size.
    let pages = |client: reqwest::Client| {
        let fhir = app.fhir.clone();
        let patient = patient.clone();
        async move {
            let mut all = Vec::new();
            for count in [1, 2, 3, 5, 6] {
                let mut url = Some(format!(
                    "{fhir}/Patient/{patient}/$timeline?_total=accurate&_count={count}"
                ));
                while let Some(u) = url.take() {
                    let (status, page) = get(&client, &u).await;
                    assert_eq!(status, 200, "{page}");
                    url = next_link(&page);
                    all.push(without_bundle_identity(page));
                    assert!(all.len() < 100, "bounded");
                }
            }
            all
        }
    };
    let before = pages(vc.clone()).await;
    // The mobile team's entries at the same times (ties), between and around them: hidden from the vårdcentral
    // (no consent, and the team's records are not a care relationship the vårdcentral has).
    for h in 0..11 {
        app.create(
            &json!({"resourceType": "Task", "status": "completed", "intent": "order",
            "for": subject, "executionPeriod": {"start": format!("2026-12-01T{h:02}:00:00Z")}}),
        )
        .await;
        app.create(
            &json!({"resourceType": "ServiceRequest", "status": "completed", "intent": "order",
            "subject": subject, "authoredOn": format!("2026-12-01T{h:02}:00:00Z")}),
        )
        .await;
    }
    let after = pages(vc.clone()).await;
    assert_eq!(before.len(), 5 + 3 + 2 + 1 + 1, "pages at each size");
    assert_eq!(
        after, before,
        "the hidden entries change nothing the vårdcentral gets"
    );
    // They are there: the team sees them.
    let (_, mine) = get(
        &app.client,
        &format!("{}/Patient/{patient}/$timeline?_total=accurate", app.fhir),
    )
    .await;
    assert_eq!(mine["total"], 22);
}
