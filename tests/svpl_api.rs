//! `POST /svpl` through the HTTP API (spec/svpl-messages.md): what a message stores, who reads it (allow
//! lists), receipts and their Fel codes, idempotency (repeats, concurrent repeats, a restart), the kept
//! original, the access log, the SIP lifecycle and the admission chain, and arbitrary input.

mod common;

use std::collections::BTreeSet;

use common::*;
use navet::auth::PurposeOfUse;
use navet::svpl::kvittens::{Kvittens, Status};
use navet::svpl::mapping::Mapping;
use serde_json::Value;

const KOMMUN: (&str, &str) = ("demo-kommun-kristianstad", "SE2120000999-P1290A");
const YSTAD: (&str, &str) = ("demo-kommun-ystad", "SE2120000999-P1286A");
const VC: (&str, &str) = ("demo-vc-nasby", "SE2321000255-P0301");
const VC_YSTAD: (&str, &str) = ("demo-vc-ystad", "SE2321000255-P0401");
const MTN: (&str, &str) = ("demo-mtn-kristianstad", "SE2321000255-P0101");
const CSK: (&str, &str) = ("demo-csk", "SE2321000255-P0001");
const KOMMUN_HSA: &str = "SE2120000999-HSJ1290";

fn golden(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/golden/svpl/{name}.in.xml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("golden input")
}

async fn as_(app: &TestApp, who: (&str, &str)) -> reqwest::Client {
    app.client_as(who.0, Some(who.1), "system/*.cruds").await
}

async fn post_xml(
    app: &TestApp,
    client: &reqwest::Client,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let r = client
        .post(format!("{}/svpl", app.base))
        .header("content-type", "application/xml")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

fn kvittens(text: &str) -> Kvittens {
    Kvittens::from_xml(text.as_bytes(), &Mapping::embedded())
        .unwrap_or_else(|| panic!("not a Kvittens: {text}"))
}

fn codes(text: &str) -> Vec<String> {
    kvittens(text)
        .errors
        .iter()
        .map(|f| f.code.as_str().to_owned())
        .collect()
}

/// `Type/id` of the resources a receipt lists.
fn listed(text: &str) -> Vec<String> {
    kvittens(text)
        .resources
        .iter()
        .map(|(t, i)| format!("{t}/{i}"))
        .collect()
}

async fn get_json(app: &TestApp, client: &reqwest::Client, path: &str) -> (u16, Value) {
    let r = client
        .get(format!("{}/{path}", app.fhir))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Which of `refs` `client` can read.
async fn readable(app: &TestApp, client: &reqwest::Client, refs: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in refs {
        if get_json(app, client, r).await.0 == 200 {
            out.insert(r.clone());
        }
    }
    out
}

fn of_type(refs: &[String], types: &[&str]) -> BTreeSet<String> {
    refs.iter()
        .filter(|r| types.iter().any(|t| r.starts_with(&format!("{t}/"))))
        .cloned()
        .collect()
}

async fn patient_id(app: &TestApp, pnr: &str) -> String {
    let (_, b) = get_json(
        app,
        &app.client,
        &format!("Patient?identifier=http://electronichealth.se/identifier/personnummer|{pnr}"),
    )
    .await;
    b["entry"][0]["resource"]["id"]
        .as_str()
        .expect("demo patient")
        .to_owned()
}

/// The access-log records of operation translate-in: (outcome, patients).
async fn translate_records(app: &TestApp) -> Vec<(String, Vec<String>)> {
    let rows = app
        .state
        .store
        .audit_page(&navet::store::Actor::system(), 0, i64::MAX, 0, 100_000)
        .await
        .expect("log");
    rows.into_iter()
        .filter_map(|(_, json)| {
            let v: Value = serde_json::from_str(&json).ok()?;
            (v["subtype"][0]["code"] == "translate-in").then(|| {
                let patients = v["entity"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["what"]["reference"].as_str())
                    .filter(|r| r.starts_with("Patient/"))
                    .map(str::to_owned)
                    .collect();
                (v["outcome"].as_str().unwrap_or("").to_owned(), patients)
            })
        })
        .collect()
}

#[tokio::test]
async fn a_sip_request_is_stored_as_the_spec_says_and_each_principal_reads_exactly_what_was_addressed_to_it()
 {
    let app = spawn_app_with_demo().await;
    let kommun = as_(&app, KOMMUN).await;
    let (status, receipt) = post_xml(&app, &kommun, golden("sip-01-begaran")).await;
    assert_eq!(status, 200, "{receipt}");
    let k = kvittens(&receipt);
    assert_eq!(k.status, Status::Mottagen);
    assert_eq!(k.reference.as_deref(), Some("KOM1290-2026-000123"));
    let refs = listed(&receipt);
    let types: Vec<&str> = refs.iter().map(|r| r.split('/').next().unwrap()).collect();
    assert_eq!(
        types,
        [
            "CareTeam",
            "Consent",
            "CarePlan",
            "Task",
            "Task",
            "Communication"
        ]
    );

    let tolvan = patient_id(&app, "191212121212").await;
    let (_, plan) = get_json(&app, &kommun, &refs[2]).await;
    assert_eq!(plan["status"], "draft");
    assert_eq!(plan["category"][0]["coding"][0]["code"], "sip");
    assert_eq!(plan["subject"]["reference"], format!("Patient/{tolvan}"));
    let owner = plan["meta"]["tag"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["system"] == "urn:navet:owner")
        .unwrap()["code"]
        .clone();
    assert_eq!(owner, KOMMUN_HSA);
    let (_, consent) = get_json(&app, &kommun, &refs[1]).await;
    assert_eq!(consent["status"], "active");
    let mut owners = BTreeSet::new();
    for task in &refs[3..5] {
        let (_, t) = get_json(&app, &kommun, task).await;
        assert_eq!(t["status"], "requested");
        assert_eq!(t["code"]["coding"][0]["code"], "sip-kallelse");
        owners.insert(
            t["owner"]["identifier"]["value"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        owners,
        BTreeSet::from(["SE2321000255-VC101".into(), "SE2321000255-MTN01".into()])
    );

    // Allow lists: the sender reads everything; each recipient the plan, its team, the invitations and the
    // notification, not the consent; principals not addressed read nothing.
    let all: BTreeSet<String> = refs.iter().cloned().collect();
    let addressed = of_type(&refs, &["CareTeam", "CarePlan", "Task", "Communication"]);
    assert_eq!(readable(&app, &kommun, &refs).await, all);
    for who in [VC, MTN] {
        assert_eq!(
            readable(&app, &as_(&app, who).await, &refs).await,
            addressed,
            "{}",
            who.0
        );
    }
    for who in [YSTAD, CSK, VC_YSTAD] {
        let c = as_(&app, who).await;
        assert_eq!(
            readable(&app, &c, &refs).await,
            BTreeSet::new(),
            "{}",
            who.0
        );
        let (_, found) = get_json(&app, &c, &format!("CarePlan?patient={tolvan}")).await;
        assert!(
            found["entry"].as_array().is_none_or(|e| e.is_empty()),
            "{}: {found}",
            who.0
        );
    }

    // The Provenance links every resource to the message; the kept original is the sender's and auditors'.
    let prov_id = navet::svpl::translate::id_for(KOMMUN_HSA, "KOM1290-2026-000123", "Provenance");
    let (s, p) = get_json(&app, &kommun, &format!("Provenance/{prov_id}")).await;
    assert_eq!(s, 200);
    let targets: BTreeSet<String> = p["target"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reference"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(targets, all);
    assert_eq!(
        p["entity"][0]["what"]["identifier"]["value"],
        "KOM1290-2026-000123"
    );

    let original = format!(
        "{}/svpl/messages/{KOMMUN_HSA}/KOM1290-2026-000123",
        app.base
    );
    let r = kommun.get(&original).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), golden("sip-01-begaran"));
    let r = kommun
        .get(format!("{original}/kvittens"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), receipt);
    let auditor = user_client(
        &app,
        "demo-auditor",
        "SE2321000255-P0900",
        PurposeOfUse::Hoperat,
        "system/AuditEvent.rs",
    )
    .await;
    assert_eq!(auditor.get(&original).send().await.unwrap().status(), 200);
    for who in [VC, YSTAD] {
        let c = as_(&app, who).await;
        assert_eq!(
            c.get(&original).send().await.unwrap().status(),
            404,
            "{}",
            who.0
        );
    }

    // One access-log record for the message, naming the patient.
    let records = translate_records(&app).await;
    assert_eq!(
        records,
        vec![("0".to_owned(), vec![format!("Patient/{tolvan}")])]
    );
}

#[tokio::test]
async fn a_repeat_gets_the_first_receipt_byte_for_byte_and_concurrent_repeats_store_one_message() {
    let app = spawn_app_with_demo().await;
    let kommun = as_(&app, KOMMUN).await;
    let (s1, first) = post_xml(&app, &kommun, golden("sip-01-begaran")).await;
    assert_eq!(s1, 200);
    let (s2, again) = post_xml(&app, &kommun, golden("sip-01-begaran")).await;
    assert_eq!((s2, &again), (200, &first));
    let tolvan = patient_id(&app, "191212121212").await;
    let (_, plans) = get_json(&app, &kommun, &format!("CarePlan?patient={tolvan}")).await;
    assert_eq!(plans["entry"].as_array().map(Vec::len), Some(1));

    let fresh = golden("sip-01-begaran").replace("KOM1290-2026-000123", "KOM1290-2026-000999");
    let posts = (0..8).map(|_| post_xml(&app, &kommun, fresh.clone()));
    let answers = futures_util::future::join_all(posts).await;
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 200);
    let (_, plans) = get_json(&app, &kommun, &format!("CarePlan?patient={tolvan}")).await;
    assert_eq!(plans["entry"].as_array().map(Vec::len), Some(2));
    // Every post, repeats included, is one record.
    assert_eq!(translate_records(&app).await.len(), 10);
}

#[tokio::test]
async fn a_repeat_after_a_restart_still_gets_the_first_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let settings = common::settings(dir.path().to_path_buf(), false);
    let actor = navet::store::Actor {
        principal: KOMMUN_HSA.into(),
        client_id: Some("demo-kommun-kristianstad".into()),
        user: None,
        visibility: navet::fhir::visibility::Visibility::Care {
            sees: std::sync::Arc::from(vec![KOMMUN_HSA.to_owned()]),
            emergency: false,
        },
        population_register: false,
    };
    let permits: navet::svpl::receive::Permits = std::sync::Arc::new(|_: &str, _| true);
    let mut receipts = Vec::new();
    for _ in 0..2 {
        let state = navet::startup::build_state(&settings).await.unwrap();
        let answer = navet::svpl::receive::receive(
            state.svpl.clone(),
            state.fhir.clone(),
            state.store.as_ref(),
            &actor,
            permits.clone(),
            navet::audit::AuditRecord::new(navet::audit::Action::Create, "translate-in", "r"),
            navet::svpl::receive::Incoming::Bytes(golden("sip-01-begaran").into_bytes()),
        )
        .await
        .unwrap();
        receipts.push(answer);
        state.store.close().await;
    }
    assert!(receipts[0].stored && !receipts[1].stored);
    assert_eq!(receipts[0].receipt, receipts[1].receipt);
}

#[tokio::test]
async fn each_bad_message_gets_the_spec_s_fel_code_stores_nothing_and_is_logged() {
    let app = spawn_app_with_demo().await;
    let kommun = as_(&app, KOMMUN).await;
    let begaran = golden("sip-01-begaran");
    let plan = golden("sip-03-plan");
    let with = |from: &str, to: &str| begaran.replacen(from, to, 1);
    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]>{}",
        begaran
            .replacen("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "", 1)
            .replacen("<Anledning>", "<Anledning>&lol2;", 1)
    );
    let xxe = with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        "<?xml version=\"1.0\"?><!DOCTYPE m [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>",
    );
    let huge = with(
        "<Anledning>",
        &format!("<!-- {} --><Anledning>", "x".repeat(1024 * 1024)),
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed XML", begaran.as_bytes()[..begaran.len() / 2].to_vec(), 400, "SCHEMA"),
        ("wrong namespace", with("urn:navet:svpl:1", "urn:navet:svpl:2").into_bytes(), 400, "SCHEMA"),
        ("unknown typ", with("typ=\"SipBegaran\"", "typ=\"SipFraga\"").into_bytes(), 400, "SCHEMA"),
        ("missing element", with("<Anledning>Behov av samordning efter utskrivning: hemsjukvård och läkarinsatser</Anledning>", "").into_bytes(), 400, "SCHEMA"),
        ("missing attribute", with(" id=\"KOM1290-2026-000123\"", "").into_bytes(), 400, "SCHEMA"),
        ("bad personnummer", with("19121212-1212", "19121212-1213").into_bytes(), 422, "PATIENT_ID"),
        ("bad samordningsnummer", with("<Id typ=\"personnummer\">19121212-1212", "<Id typ=\"samordningsnummer\">19500972-2398").into_bytes(), 422, "PATIENT_ID"),
        ("sender is not the token's", with("Avsandare hsaId=\"SE2120000999-HSJ1290\"", "Avsandare hsaId=\"SE2120000999-HSJ1286\"").into_bytes(), 422, "AVSANDARE"),
        ("unknown recipient", with("SE2321000255-MTN01", "SE2321000255-NOPE9").into_bytes(), 422, "MOTTAGARE_OKAND"),
        ("no consent", with("lamnat=\"true\"", "lamnat=\"false\"").into_bytes(), 422, "SAMTYCKE_SAKNAS"),
        ("unknown reference", golden("sip-02-kallelse").replace("KOM1290-2026-000123", "KOM1290-0000-000000").replace("Avsandare hsaId=\"SE2321000255-VC101\"", "Avsandare hsaId=\"SE2120000999-HSJ1290\"").into_bytes(), 422, "REFERENS_OKAND"),
        ("incomplete plan", plan.replace("huvudman=\"region\"", "huvudman=\"kommun\"").into_bytes(), 422, "SIP_OFULLSTANDIG"),
        ("no overall responsibility", plan.replace("<OvergripandeAnsvar hsaId=\"SE2120000999-HSJ1290\"/>", "").into_bytes(), 422, "SIP_OFULLSTANDIG"),
        ("over 1 MiB", huge.into_bytes(), 400, "FOR_STOR"),
        ("XXE", xxe.into_bytes(), 400, "DTD"),
        ("billion laughs", laughs.into_bytes(), 400, "DTD"),
        ("invalid UTF-8", [&begaran.as_bytes()[..100], b"\xff\xfe", &begaran.as_bytes()[100..]].concat(), 400, "SCHEMA"),
    ];
    let n = cases.len();
    for (what, body, status, code) in cases {
        let (s, text) = post_xml(&app, &kommun, body).await;
        assert_eq!(s, status, "{what}: {text}");
        let k = kvittens(&text);
        assert_eq!(k.status, Status::Avvisad, "{what}");
        assert!(codes(&text).contains(&code.to_owned()), "{what}: {text}");
        assert!(k.resources.is_empty(), "{what}");
    }
    // A wrong media type: 415, a receipt all the same.
    let r = kommun
        .post(format!("{}/svpl", app.base))
        .header("content-type", "application/json")
        .body(begaran.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(codes(&r.text().await.unwrap()), ["SCHEMA"]);
    // Without a token: 401 and a receipt.
    let r = app
        .anonymous
        .post(format!("{}/svpl", app.base))
        .header("content-type", "text/xml")
        .body(begaran.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(kvittens(&r.text().await.unwrap()).status, Status::Avvisad);

    // Nothing was stored: no plan for the patient, no kept message.
    let tolvan = patient_id(&app, "191212121212").await;
    let (_, plans) = get_json(&app, &kommun, &format!("CarePlan?patient={tolvan}")).await;
    assert!(
        plans["entry"].as_array().is_none_or(|e| e.is_empty()),
        "{plans}"
    );
    let kept = app
        .state
        .store
        .inbound_message(
            &navet::store::Actor::system(),
            "svpl",
            KOMMUN_HSA,
            "KOM1290-2026-000123",
        )
        .await
        .unwrap();
    assert!(kept.is_none());
    // Every refusal is one record (the 415 and the 401 included), all refused.
    let records = translate_records(&app).await;
    assert_eq!(records.len(), n + 2);
    assert!(
        records.iter().all(|(outcome, _)| outcome == "4"),
        "{records:?}"
    );
    // A refusal that named a known patient names it in the log.
    assert!(
        records
            .iter()
            .any(|(_, p)| p == &vec![format!("Patient/{tolvan}")])
    );
}

#[tokio::test]
async fn only_the_original_sender_may_withdraw_a_message_and_its_resources_become_entered_in_error()
{
    let app = spawn_app_with_demo().await;
    let kommun = as_(&app, KOMMUN).await;
    let vc = as_(&app, VC).await;
    let (_, receipt) = post_xml(&app, &kommun, golden("sip-01-begaran")).await;
    let refs = listed(&receipt);
    let makulering = |sender: &str, id: &str| {
        format!(
            r#"<Meddelande xmlns="urn:navet:svpl:1" typ="Makulering" id="{id}" skapad="2026-11-23T10:00:00+01:00">
  <Avsandare hsaId="{sender}"/><Mottagare hsaId="SE2321000255-MTN01"/>
  <Patient><Id typ="personnummer">191212121212</Id></Patient>
  <Referens id="KOM1290-2026-000123"/><Orsak>Fel patient</Orsak></Meddelande>"#
        )
    };
    let (s, text) = post_xml(&app, &vc, makulering("SE2321000255-VC101", "VC101-M1")).await;
    assert_eq!(
        (s, codes(&text)),
        (422, vec!["AVSANDARE".to_owned()]),
        "{text}"
    );
    let (_, plan) = get_json(&app, &kommun, &refs[2]).await;
    assert_eq!(plan["status"], "draft");

    let (s, text) = post_xml(&app, &kommun, makulering(KOMMUN_HSA, "KOM1290-M1")).await;
    assert_eq!(s, 200, "{text}");
    for r in &refs {
        let (_, v) = get_json(&app, &kommun, r).await;
        assert_eq!(v["status"], "entered-in-error", "{r}");
    }
    // The recipients are told.
    let notice = listed(&text)
        .into_iter()
        .rfind(|r| r.starts_with("Communication/"))
        .unwrap();
    for who in [VC, MTN] {
        let (s, c) = get_json(&app, &as_(&app, who).await, &notice).await;
        assert_eq!(s, 200, "{}", who.0);
        assert_eq!(c["category"][0]["coding"][0]["code"], "makulering");
    }
}

/// Replaces the golden message's times with times relative to now (the deadlines are checked at receipt).
fn retimed(text: &str, pairs: &[(&str, jiff::Timestamp)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in pairs {
        out = out.replace(from, &to.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string());
    }
    out
}

#[tokio::test]
async fn the_sip_lifecycle_runs_end_to_end_and_each_step_is_seen_by_the_other_participants() {
    let app = spawn_app_with_demo().await;
    let (kommun, vc, mtn, ystad) = (
        as_(&app, KOMMUN).await,
        as_(&app, VC).await,
        as_(&app, MTN).await,
        as_(&app, YSTAD).await,
    );
    let (s, begaran) = post_xml(&app, &kommun, golden("sip-01-begaran")).await;
    assert_eq!(s, 200, "{begaran}");
    let begaran = listed(&begaran);
    let plan_ref = begaran[2].clone();
    let tasks: Vec<String> = of_type(&begaran, &["Task"]).into_iter().collect();

    // Kallelse from the vårdcentral: an Appointment everyone invited reads, the invitations done.
    let (s, kallelse) = post_xml(&app, &vc, golden("sip-02-kallelse")).await;
    assert_eq!(s, 200, "{kallelse}");
    let appointment = listed(&kallelse)
        .into_iter()
        .find(|r| r.starts_with("Appointment/"))
        .unwrap();
    for c in [&kommun, &vc, &mtn] {
        let (s, a) = get_json(&app, c, &appointment).await;
        assert_eq!(s, 200);
        assert_eq!(a["start"], "2026-11-26T10:00:00+01:00");
    }
    assert_eq!(get_json(&app, &ystad, &appointment).await.0, 404);
    for t in &tasks {
        let (_, task) = get_json(&app, &mtn, t).await;
        assert_eq!(task["status"], "completed", "{t}");
    }

    // The plan from the kommun: active, one activity per insats and other measure, seen by the performers.
    let (s, plan) = post_xml(&app, &kommun, golden("sip-03-plan")).await;
    assert_eq!(s, 200, "{plan}");
    for c in [&vc, &mtn] {
        let (_, p) = get_json(&app, c, &plan_ref).await;
        assert_eq!(p["status"], "active");
        assert_eq!(p["activity"].as_array().unwrap().len(), 4);
    }
    let (_, team) = get_json(&app, &vc, &begaran[0]).await;
    assert_eq!(
        team["managingOrganization"][0]["identifier"]["value"],
        KOMMUN_HSA
    );

    // Follow-up from the mobile team, referencing the plan message: a Communication the kommun reads.
    let (s, follow) = post_xml(&app, &mtn, golden("sip-04-uppfoljning")).await;
    assert_eq!(s, 200, "{follow}");
    let note = listed(&follow)
        .into_iter()
        .find(|r| r.starts_with("Communication/"))
        .unwrap();
    let (_, c) = get_json(&app, &kommun, &note).await;
    assert_eq!(
        c["payload"][0]["contentString"],
        "Såren läker; punktinsatser har inte behövts."
    );
    let (_, p) = get_json(&app, &kommun, &plan_ref).await;
    assert!(p["extension"].to_string().contains("2027-03-01"), "{p}");

    // Only the overall responsible principal closes it.
    let not_theirs = golden("sip-05-avslut")
        .replace(
            "Avsandare hsaId=\"SE2120000999-HSJ1290\"",
            "Avsandare hsaId=\"SE2321000255-VC101\"",
        )
        .replace(
            "<Mottagare hsaId=\"SE2321000255-VC101\" typ=\"vardcentral\"/>",
            "<Mottagare hsaId=\"SE2120000999-HSJ1290\"/>",
        );
    let (s, refused) = post_xml(&app, &vc, not_theirs).await;
    assert_eq!((s, codes(&refused)), (422, vec!["AVSANDARE".to_owned()]));
    let (s, done) = post_xml(&app, &kommun, golden("sip-05-avslut")).await;
    assert_eq!(s, 200, "{done}");
    for c in [&kommun, &vc, &mtn] {
        let (_, p) = get_json(&app, c, &plan_ref).await;
        assert_eq!(p["status"], "completed");
    }
    // Ystad's kommun, never addressed, saw none of it.
    let tolvan = patient_id(&app, "191212121212").await;
    for ty in [
        "CarePlan",
        "Task",
        "Appointment",
        "Communication",
        "CareTeam",
    ] {
        let (_, b) = get_json(&app, &ystad, &format!("{ty}?patient={tolvan}")).await;
        assert!(
            b["entry"].as_array().is_none_or(|e| e.is_empty()),
            "{ty}: {b}"
        );
    }
}

#[tokio::test]
async fn the_admission_chain_tracks_the_lag_2017_612_deadlines_and_overdue_work_is_searchable() {
    let app = spawn_app_with_demo().await;
    let (csk, kommun, vc, ystad) = (
        as_(&app, CSK).await,
        as_(&app, KOMMUN).await,
        as_(&app, VC).await,
        as_(&app, YSTAD).await,
    );
    let now = jiff::Timestamp::now();
    let hours = |h: i64| now - jiff::SignedDuration::from_hours(h);
    // Admitted 2 hours ago: on time. Ready for discharge 4 days ago would be odd; 80 hours after a ready
    // time is what makes the kallelse overdue, so the chain is told as if admitted long ago.
    let on_time = retimed(
        &golden("adm-01-inskrivning"),
        &[("2026-11-22T21:40:00+01:00", hours(2))],
    );
    let (s, admitted) = post_xml(&app, &csk, on_time).await;
    assert_eq!(s, 200, "{admitted}");
    let encounter = listed(&admitted)[0].clone();
    for c in [&csk, &kommun, &vc] {
        let (s, e) = get_json(&app, c, &encounter).await;
        assert_eq!(s, 200);
        assert_eq!(e["status"], "in-progress");
        assert!(!e["meta"].to_string().contains("late"), "{e}");
    }
    assert_eq!(get_json(&app, &ystad, &encounter).await.0, 404);

    // A notice 30 hours after the admission is stored and tagged late.
    let late = retimed(
        &golden("late-01-inskrivning"),
        &[("2026-11-21T18:00:00+01:00", hours(30))],
    );
    let ystad_lasarett = app
        .client_as(
            "demo-lasarettet-ystad",
            Some("SE2321000255-P0002"),
            "system/*.cruds",
        )
        .await;
    let (s, late) = post_xml(&app, &ystad_lasarett, late).await;
    assert_eq!(s, 200, "{late}");
    let (_, found) = get_json(
        &app,
        &ystad_lasarett,
        "Encounter?_tag=http://navet.example/CodeSystem/deadline|late",
    )
    .await;
    let tagged: Vec<String> = entry_list(&found);
    assert_eq!(tagged, vec![listed(&late)[0].clone()]);

    // Ready for discharge 80 hours ago: the listed vårdcentral's kallelse Task was due 3 calendar days later.
    let ready = retimed(
        &golden("adm-02-utskrivningsklar"),
        &[("2026-11-27T14:30:00+01:00", hours(80))],
    );
    let (s, ready) = post_xml(&app, &csk, ready).await;
    assert_eq!(s, 200, "{ready}");
    let task = listed(&ready)
        .into_iter()
        .find(|r| r.starts_with("Task/"))
        .unwrap();
    let (_, t) = get_json(&app, &vc, &task).await;
    assert_eq!(t["owner"]["identifier"]["value"], "SE2321000255-VC101");
    assert_eq!(
        t["restriction"]["period"]["end"],
        navet::svpl::messages::kallelse_due(hours(80))
    );
    let overdue = format!(
        "Task?status=requested&code=sip-kallelse&due=lt{}",
        now.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    let (_, b) = get_json(&app, &vc, &overdue).await;
    assert_eq!(entry_list(&b), vec![task.clone()]);
    // Overdue work is per principal: the kommun has none of its own, Ystad sees nothing.
    let (_, b) = get_json(&app, &ystad, &overdue).await;
    assert_eq!(entry_list(&b), Vec::<String>::new());

    // Discharged now: after the admission (R4's per-1 refuses an Encounter that ends before it starts).
    let discharged = retimed(
        &golden("adm-03-utskrivning"),
        &[("2026-11-29T10:30:00+01:00", hours(0))],
    );
    let (s, out) = post_xml(&app, &csk, discharged).await;
    assert_eq!(s, 200, "{out}");
    let (_, e) = get_json(&app, &kommun, &encounter).await;
    assert_eq!(e["status"], "finished");
    let end: jiff::Timestamp = e["period"]["end"].as_str().unwrap().parse().unwrap();
    assert_eq!(end.as_second(), hours(0).as_second());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Arbitrary bytes and mutated messages through the HTTP API: always a Kvittens, mottagen (200) or
    /// avvisad (400/422), never a 500.
    #[test]
    fn any_body_gets_a_kvittens_and_never_a_500() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (app, kommun) = rt.block_on(async {
            let app = spawn_app_with_demo().await;
            let kommun = as_(&app, KOMMUN).await;
            (app, kommun)
        });
        let begaran = golden("sip-01-begaran");
        let config = ProptestConfig {
            cases: 48,
            ..ProptestConfig::default()
        };
        let strategy = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            (
                any::<prop::sample::Index>(),
                0usize..30,
                "[<>&/=\" a-zA-Z0-9;#-]{0,10}"
            )
                .prop_map(move |(at, len, ins)| {
                    let b = begaran.as_bytes();
                    let i = at.index(b.len());
                    [&b[..i], ins.as_bytes(), &b[(i + len).min(b.len())..]].concat()
                }),
        ];
        proptest::test_runner::TestRunner::new(config)
            .run(&strategy, |body| {
                let (status, text) = rt.block_on(post_xml(&app, &kommun, body));
                prop_assert!(matches!(status, 200 | 400 | 422), "{status}: {text}");
                let k = Kvittens::from_xml(text.as_bytes(), &Mapping::embedded());
                prop_assert!(k.is_some(), "not a Kvittens: {text}");
                prop_assert_eq!(k.unwrap().status == Status::Mottagen, status == 200);
                Ok(())
            })
            .unwrap();
    }
}
