//! Outbound SVPL end to end (src/svpl/outbound.rs, src/svpl/delivery.rs): FHIR changes through the API send
//! SVPL messages to a fake municipal endpoint on loopback that is down, then answers 500, then accepts with a
//! Kvittens `mottagen` (every message arrives exactly once, the receipt is kept for the sender, every
//! delivery is logged); one that answers `avvisad` (a Task for the sender alone, not retried); no echo of a
//! received message; a receiver's follow-up that references a sent message; a change whose message the
//! receiver would refuse is refused. The admission → utskrivningsklar → utskrivning chain to two receivers,
//! with each receiver's receipt, is `svpl_outbound/chain.rs`.

#[path = "svpl_outbound/chain.rs"]
mod chain;
mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use common::*;
use navet::outbox::config::OutboxSettings;
use navet::store::Actor;
use navet::store::outbox::{MessageStatus, OutboxFilter};
use navet::svpl::kvittens::{Fel, FelCode, Kvittens, Status};
use navet::svpl::mapping::Mapping;
use navet::svpl::message::{self, Message};
use serde_json::{Value, json};

const KOMMUN_HSA: &str = "SE2120000999-HSJ1290";
const VC_HSA: &str = "SE2321000255-VC101";
const CSK_HSA: &str = "SE2321000255-CSK01";
const HSA: &str = "urn:oid:1.2.752.29.4.19";
const PNR: &str = "194005121233";

/// Every demo principal that reads patient data, as (client, user).
const PRINCIPALS: [(&str, &str, &str); 9] = [
    (
        "demo-kommun-kristianstad",
        "SE2120000999-P1290A",
        KOMMUN_HSA,
    ),
    (
        "demo-kommun-ystad",
        "SE2120000999-P1286A",
        "SE2120000999-HSJ1286",
    ),
    ("demo-vc-nasby", "SE2321000255-P0301", VC_HSA),
    ("demo-vc-ystad", "SE2321000255-P0401", "SE2321000255-VC201"),
    ("demo-csk", "SE2321000255-P0001", CSK_HSA),
    (
        "demo-lasarettet-ystad",
        "SE2321000255-P0002",
        "SE2321000255-LYS01",
    ),
    (
        "demo-mtn-kristianstad",
        "SE2321000255-P0101",
        "SE2321000255-MTN01",
    ),
    ("demo-mtn-ystad", "SE2321000255-P0201", "SE2321000255-MTN02"),
    ("demo-ambulans", "SE2321000255-P0501", "SE2321000255-AMB01"),
];

fn hsa(value: &str) -> Value {
    json!({"identifier": {"system": HSA, "value": value}})
}

/// What the fake municipal endpoint does with the next requests; after the script, `then`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Fail500,
    Accept,
    Refuse,
}

#[derive(Clone)]
struct Municipality {
    /// (message id, kind, answered with) of every request, in arrival order.
    log: Arc<Mutex<Vec<(String, String, Behaviour)>>>,
    bodies: Arc<Mutex<BTreeMap<String, String>>>,
    script: Arc<Mutex<VecDeque<Behaviour>>>,
    then: Behaviour,
    /// The HSA-id its receipts are signed with (`Avsandare`).
    hsa: &'static str,
}

impl Municipality {
    fn new(script: Vec<Behaviour>, then: Behaviour) -> Self {
        Municipality {
            log: Default::default(),
            bodies: Default::default(),
            script: Arc::new(Mutex::new(script.into())),
            then,
            hsa: KOMMUN_HSA,
        }
    }

    /// The same fake, as the SVPL endpoint of another receiver.
    fn receiving_as(mut self, hsa: &'static str) -> Self {
        self.hsa = hsa;
        self
    }

    fn log(&self) -> Vec<(String, String, Behaviour)> {
        self.log.lock().expect("log").clone()
    }

    /// Message ids answered with a receipt (mottagen or avvisad), with how often.
    fn answered(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (id, _, b) in self.log() {
            if b != Behaviour::Fail500 {
                *out.entry(id).or_insert(0) += 1;
            }
        }
        out
    }
}

/// The municipal system: reads the message as SVPL and answers a Kvittens, or fails.
async fn municipal(State(m): State<Municipality>, body: String) -> (StatusCode, String) {
    let map = Mapping::embedded();
    let read: Message = match message::read(body.as_bytes(), &map) {
        Ok(read) => read,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e:?}")),
    };
    let next = m
        .script
        .lock()
        .expect("script")
        .pop_front()
        .unwrap_or(m.then);
    let id = read.envelope.id.clone();
    m.log
        .lock()
        .expect("log")
        .push((id.clone(), read.envelope.kind.as_str().to_owned(), next));
    m.bodies.lock().expect("bodies").insert(id.clone(), body);
    let receipt = |status, errors| Kvittens {
        id: format!("kvittens-{id}"),
        created: jiff::Timestamp::now().to_string(),
        sender: m.hsa.into(),
        recipient: Some(read.envelope.sender.hsa.to_string()),
        reference: Some(id.clone()),
        status,
        errors,
        resources: Vec::new(),
    };
    match next {
        Behaviour::Fail500 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "down for maintenance".into(),
        ),
        Behaviour::Accept => (
            StatusCode::OK,
            receipt(Status::Mottagen, Vec::new()).to_xml(&map),
        ),
        Behaviour::Refuse => {
            let errors = vec![Fel {
                code: FelCode::ReferensOkand,
                field: "/Meddelande/Referens/@id".into(),
                text: "ärendet är okänt hos kommunen".into(),
            }];
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                receipt(Status::Avvisad, errors).to_xml(&map),
            )
        }
    }
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn serve(port: u16, m: Municipality) {
    let app = axum::Router::new()
        .route("/svpl", axum::routing::post(municipal))
        .with_state(m);
    let deadline = Instant::now() + Duration::from_secs(5);
    let listener = loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => break l,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot bind {port}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::spawn(async move { axum::serve(listener, app).await.expect("municipality") });
}

/// The app with the demo's SVPL endpoint of Kristianstads kommun moved to `port`, with fast retries; and
/// the outbox settings to start its workers with.
async fn app_with_endpoint(port: u16) -> (TestApp, OutboxSettings) {
    let mut outbox = None;
    let app = spawn_with(false, |s| {
        let d = s
            .outbox
            .destinations
            .iter_mut()
            .find(|d| d.svpl && d.principal == KOMMUN_HSA)
            .expect("the demo configures Kristianstads kommun's SVPL endpoint");
        d.url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/svpl")).expect("url");
        assert!(
            d.private_allowed,
            "the demo allows the kommun a local endpoint"
        );
        d.connect_timeout = Duration::from_millis(200);
        d.request_timeout = Duration::from_millis(500);
        d.initial_backoff = Duration::from_millis(20);
        d.max_backoff = Duration::from_millis(100);
        d.breaker_pause = Duration::from_millis(100);
        s.outbox.poll_interval = Duration::from_millis(20);
        outbox = Some(s.outbox.clone());
    })
    .await;
    (app, outbox.expect("settings"))
}

async fn as_(app: &TestApp, client: &str, user: &str) -> reqwest::Client {
    app.client_as(client, Some(user), "system/*.cruds").await
}

async fn create(app: &TestApp, client: &reqwest::Client, body: Value) -> Value {
    create_with(client, &app.fhir, &body).await
}

async fn put(app: &TestApp, client: &reqwest::Client, body: &Value) -> (u16, Value) {
    let path = format!(
        "{}/{}/{}",
        app.fhir,
        body["resourceType"].as_str().expect("type"),
        body["id"].as_str().expect("id")
    );
    let r = client
        .put(path)
        .header("content-type", FHIR_JSON)
        .body(body.to_string())
        .send()
        .await
        .expect("put");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn outbox_rows(app: &TestApp) -> Vec<navet::store::outbox::OutboxMessage> {
    app.state
        .store
        .outbox_list(
            &Actor::system(),
            OutboxFilter {
                status: None,
                destination: None,
                after_seq: 0,
                limit: 1000,
            },
        )
        .await
        .expect("outbox")
}

async fn wait_until<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn admission(patient: &str) -> Value {
    json!({
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": patient},
        "period": {"start": "2026-11-22T21:40:00+01:00"},
        "serviceProvider": hsa(CSK_HSA),
        "participant": [{
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                  "code": "IRCP"}]}],
            "individual": hsa(KOMMUN_HSA)
        }]
    })
}

fn sip_category() -> Value {
    json!([{"coding": [{"system": "http://navet.example/CodeSystem/careplan-category", "code": "sip"}]}])
}

fn insats(huvudman: &str, performer: &str, text: &str) -> Value {
    json!({"detail": {
        "status": "scheduled",
        "description": text,
        "extension": [{"url": "http://navet.example/StructureDefinition/sip-huvudman",
                       "valueCoding": {"system": "urn:navet:svpl:huvudman", "code": huvudman}}],
        "performer": [hsa(performer)]
    }})
}

/// The vårdcentral's SIP case through FHIR: a CareTeam with the kommun, a draft plan, a booked meeting.
/// Answers the plan as stored.
async fn sip_case(app: &TestApp, vc: &reqwest::Client, patient: &str) -> Value {
    let team = create(
        app,
        vc,
        json!({
            "resourceType": "CareTeam",
            "status": "active",
            "category": sip_category(),
            "subject": {"reference": patient},
            "participant": [{"member": hsa(KOMMUN_HSA)}, {"member": hsa(VC_HSA)}],
            "managingOrganization": [hsa(VC_HSA)]
        }),
    )
    .await;
    let plan = create(
        app,
        vc,
        json!({
            "resourceType": "CarePlan",
            "status": "draft",
            "intent": "plan",
            "category": sip_category(),
            "title": "SIP",
            "subject": {"reference": patient},
            "author": hsa(VC_HSA),
            "careTeam": [{"reference": format!("CareTeam/{}", team["id"].as_str().expect("id"))}]
        }),
    )
    .await;
    create(
        app,
        vc,
        json!({
            "resourceType": "Appointment",
            "status": "booked",
            "start": "2026-11-26T10:00:00+01:00",
            "end": "2026-11-26T11:00:00+01:00",
            "comment": "Näsby vårdcentral, rum 3",
            "supportingInformation": [{"reference": format!("CarePlan/{}", plan["id"].as_str().expect("id"))}],
            "participant": [
                {"actor": {"reference": patient}, "status": "needs-action"},
                {"actor": hsa(KOMMUN_HSA), "status": "needs-action"},
                {"actor": hsa(VC_HSA), "status": "accepted"}
            ]
        }),
    )
    .await;
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_exactly_once_through_down_500_and_a_mottagen_receipt() {
    let port = closed_port();
    let (app, settings) = app_with_endpoint(port).await;
    let csk = as_(&app, "demo-csk", "SE2321000255-P0001").await;
    let vc = as_(&app, "demo-vc-nasby", "SE2321000255-P0301").await;
    let patient = format!(
        "Patient/{}",
        create(&app, &vc, patient(PNR, "Tolvansson")).await["id"]
            .as_str()
            .expect("id")
    );

    // Three FHIR changes the kommun must hear, each enqueued with the change.
    let encounter = create(&app, &csk, admission(&patient)).await;
    let mut plan = sip_case(&app, &vc, &patient).await;
    plan["status"] = json!("active");
    plan["activity"] = json!([
        insats("kommun", KOMMUN_HSA, "Hemtjänst morgon och kväll"),
        insats("region", VC_HSA, "Läkemedelsgenomgång")
    ]);
    let (s, body) = put(&app, &vc, &plan).await;
    assert_eq!(s, 200, "{body}");
    let rows = outbox_rows(&app).await;
    assert_eq!(rows.len(), 3, "one row per message: {rows:?}");
    assert!(
        rows.iter().all(|r| r.destination == "kristianstad-svpl"
            && r.patient.as_deref() == Some(patient.as_str()))
    );

    // Down: the workers try and fail.
    let workers = navet::outbox::worker::start_with(
        app.state.store.clone(),
        &settings,
        Some(app.state.fhir.clone()),
    )
    .await
    .expect("workers");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let first = outbox_rows(&app).await;
        if first.iter().any(|r| r.attempts > 0) {
            assert!(first.iter().all(|r| r.status == MessageStatus::Pending));
            break;
        }
        assert!(Instant::now() < deadline, "no attempt while down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Up, answering 500 once, then accepting.
    let kommun = Municipality::new(vec![Behaviour::Fail500], Behaviour::Accept);
    serve(port, kommun.clone()).await;
    wait_until("all three are answered", || kommun.answered().len() == 3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while outbox_rows(&app)
        .await
        .iter()
        .any(|r| r.status != MessageStatus::Delivered)
    {
        assert!(Instant::now() < deadline, "rows not recorded as delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let a few more rounds pass: nothing is sent again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    workers.stop().await;

    let answered = kommun.answered();
    assert!(answered.values().all(|n| *n == 1), "{:?}", kommun.log());
    assert_eq!(kommun.log()[0].2, Behaviour::Fail500);
    let kinds: Vec<String> = kommun
        .log()
        .into_iter()
        .filter(|(_, _, b)| *b == Behaviour::Accept)
        .map(|(_, k, _)| k)
        .collect();
    // In the order of the changes (one patient: one at a time, oldest first).
    assert_eq!(kinds, ["Inskrivningsmeddelande", "SipKallelse", "SipPlan"]);

    // What arrived says what the FHIR changes said.
    let map = Mapping::embedded();
    let bodies = kommun.bodies.lock().expect("bodies").clone();
    let mut by_kind = BTreeMap::new();
    for text in bodies.values() {
        let m = message::read(text.as_bytes(), &map).expect("reads");
        assert_eq!(m.envelope.patient.id.canonical_value(), PNR);
        assert_eq!(m.envelope.patient.id_type, "personnummer");
        assert_eq!(
            m.envelope
                .recipients
                .iter()
                .map(|r| r.hsa.to_string())
                .collect::<Vec<_>>(),
            [KOMMUN_HSA]
        );
        by_kind.insert(m.envelope.kind.as_str().to_owned(), m);
    }
    let adm = &by_kind["Inskrivningsmeddelande"];
    assert_eq!(adm.envelope.sender.hsa.as_str(), CSK_HSA);
    assert_eq!(adm.envelope.sender.kind.as_deref(), Some("sjukhus"));
    let kallelse = &by_kind["SipKallelse"];
    assert_eq!(kallelse.envelope.sender.hsa.as_str(), VC_HSA);
    assert_eq!(
        kallelse.envelope.reference.as_deref(),
        Some(format!("CarePlan/{}", plan["id"].as_str().expect("id")).as_str())
    );
    match &kallelse.body {
        navet::svpl::message::Body::SipKallelse(k) => {
            assert_eq!(k.time, "2026-11-26T10:00:00+01:00");
            assert_eq!(k.place.as_deref(), Some("Näsby vårdcentral, rum 3"));
        }
        other => panic!("{other:?}"),
    }
    match &by_kind["SipPlan"].body {
        navet::svpl::message::Body::SipPlan(p) => {
            assert_eq!(p.responsible, VC_HSA);
            let insatser: BTreeSet<(String, Option<String>)> = p
                .insatser
                .iter()
                .map(|i| (i.principal.clone(), i.performer.clone()))
                .collect();
            assert_eq!(
                insatser,
                BTreeSet::from([
                    ("kommun".into(), Some(KOMMUN_HSA.into())),
                    ("region".into(), Some(VC_HSA.into()))
                ])
            );
        }
        other => panic!("{other:?}"),
    }

    // The sender fetches what it sent and the kommun's receipt; the kommun does not fetch the sender's copy.
    let kallelse_id = &kallelse.envelope.id;
    let get = |client: &reqwest::Client, path: String| {
        let client = client.clone();
        async move {
            let r = client.get(path).send().await.expect("get");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let (s, sent) = get(
        &vc,
        format!("{}/svpl/messages/{VC_HSA}/{kallelse_id}", app.base),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(&sent, &bodies[kallelse_id]);
    let (s, receipt) = get(
        &vc,
        format!("{}/svpl/messages/{VC_HSA}/{kallelse_id}/kvittens", app.base),
    )
    .await;
    assert_eq!(s, 200);
    let receipt = Kvittens::from_xml(receipt.as_bytes(), &map).expect("a Kvittens");
    assert_eq!(receipt.status, Status::Mottagen);
    assert_eq!(receipt.reference.as_deref(), Some(kallelse_id.as_str()));
    let kommun_client = as_(&app, "demo-kommun-kristianstad", "SE2120000999-P1290A").await;
    let (s, _) = get(
        &kommun_client,
        format!("{}/svpl/messages/{VC_HSA}/{kallelse_id}", app.base),
    )
    .await;
    assert_eq!(s, 404);

    // Every delivery is one access-log record: operation send, the patient, the kommun as recipient.
    let sends: Vec<Value> = app
        .state
        .store
        .audit_page(&Actor::system(), 0, i64::MAX, 0, 100_000)
        .await
        .expect("log")
        .into_iter()
        .filter_map(|(_, j)| serde_json::from_str::<Value>(&j).ok())
        .filter(|e| e["subtype"][0]["code"] == "send")
        .collect();
    assert_eq!(sends.len(), 3, "{sends:?}");
    for e in &sends {
        assert_eq!(e["agent"][1]["who"]["identifier"]["value"], KOMMUN_HSA);
        assert!(e["entity"].to_string().contains(&patient), "{e}");
    }
    let _ = encounter;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_avvisad_receipt_is_a_task_for_the_sender_alone_and_is_not_retried() {
    let port = closed_port();
    let (app, settings) = app_with_endpoint(port).await;
    let kommun = Municipality::new(Vec::new(), Behaviour::Refuse);
    serve(port, kommun.clone()).await;
    let csk = as_(&app, "demo-csk", "SE2321000255-P0001").await;
    let patient = format!(
        "Patient/{}",
        create(&app, &csk, patient(PNR, "Tolvansson")).await["id"]
            .as_str()
            .expect("id")
    );
    let encounter = create(&app, &csk, admission(&patient)).await;
    let workers = navet::outbox::worker::start_with(
        app.state.store.clone(),
        &settings,
        Some(app.state.fhir.clone()),
    )
    .await
    .expect("workers");
    let query = format!(
        "{}/Task?code=http://navet.example/CodeSystem/task-code|svpl-avvisad",
        app.fhir
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let task = loop {
        let found: Value = csk
            .get(&query)
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("json");
        if let Some(t) = found["entry"][0]["resource"].as_object() {
            break Value::Object(t.clone());
        }
        assert!(Instant::now() < deadline, "no Task for the refusal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    workers.stop().await;

    // Final: one request, the row delivered (refused), not retried.
    assert_eq!(kommun.log().len(), 1, "{:?}", kommun.log());
    let rows = outbox_rows(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, MessageStatus::Delivered);
    assert_eq!(rows[0].attempts, 1);

    // The Task names the receiver's Fel code, is owned by the sender and is about the changed Encounter.
    assert_eq!(task["status"], "requested");
    assert_eq!(task["for"]["reference"], patient.as_str());
    assert_eq!(task["owner"]["identifier"]["value"], CSK_HSA);
    assert_eq!(
        task["reasonReference"]["reference"],
        format!("Encounter/{}", encounter["id"].as_str().expect("id"))
    );
    assert_eq!(
        task["input"][0]["type"]["coding"][0]["code"],
        "REFERENS_OKAND"
    );
    assert!(
        task["description"]
            .as_str()
            .expect("description")
            .contains("REFERENS_OKAND"),
        "{task}"
    );

    // Exactly the sender reads it (allow-list over every principal that reads patient data).
    let path = format!("{}/Task/{}", app.fhir, task["id"].as_str().expect("id"));
    let mut readers = BTreeSet::new();
    for (client, user, principal) in PRINCIPALS {
        let c = as_(&app, client, user).await;
        let s = c.get(&path).send().await.expect("get").status().as_u16();
        if s == 200 {
            readers.insert(principal);
        } else {
            assert_eq!(s, 404, "{principal}");
        }
    }
    assert_eq!(readers, BTreeSet::from([CSK_HSA]));

    // The kept message has the avvisad receipt.
    let id = &kommun.log()[0].0;
    let receipt = csk
        .get(format!(
            "{}/svpl/messages/{CSK_HSA}/{id}/kvittens",
            app.base
        ))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    let receipt = Kvittens::from_xml(receipt.as_bytes(), &Mapping::embedded()).expect("Kvittens");
    assert_eq!(receipt.status, Status::Avvisad);
}

#[tokio::test]
async fn a_received_message_is_not_echoed_a_reply_finds_the_sent_message_and_a_plan_the_receiver_would_refuse_is_refused()
 {
    let (app, _) = app_with_endpoint(closed_port()).await;
    let csk = as_(&app, "demo-csk", "SE2321000255-P0001").await;
    let vc = as_(&app, "demo-vc-nasby", "SE2321000255-P0301").await;

    // The admission chain posted as SVPL by the hospital (notice, ready for discharge, discharge): each stored,
    // and none sent back out, though each writes the Encounter a hospital's FHIR change would send it for.
    for case in [
        "adm-01-inskrivning",
        "adm-02-utskrivningsklar",
        "adm-03-utskrivning",
    ] {
        let xml = std::fs::read_to_string(format!(
            "{}/tests/golden/svpl/{case}.in.xml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("golden");
        let r = csk
            .post(format!("{}/svpl", app.base))
            .header("content-type", "application/xml")
            .body(xml)
            .send()
            .await
            .expect("post");
        assert_eq!(
            r.status().as_u16(),
            200,
            "{case}: {}",
            r.text().await.unwrap_or_default()
        );
        assert!(outbox_rows(&app).await.is_empty(), "{case}");
    }

    // A SIP plan made active without an insats of the kommun: the SipPlan would be refused
    // (SIP_OFULLSTANDIG), so the change is refused and nothing is stored or sent.
    let patient = format!(
        "Patient/{}",
        create(&app, &vc, patient("191212121212", "Tolvansson")).await["id"]
            .as_str()
            .expect("id")
    );
    let mut plan = sip_case(&app, &vc, &patient).await;
    let rows = outbox_rows(&app).await;
    assert_eq!(rows.len(), 1, "the kallelse");
    let rows_before = rows.len();

    // The kommun answers the kallelse navet sent for the vårdcentral with a follow-up that references it:
    // navet kept what it sent, so the reference finds the case (and the follow-up is not echoed).
    let kallelse_id = rows[0].id.split('~').next().expect("message id");
    let follow_up = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Meddelande xmlns="urn:navet:svpl:1" typ="SipUppfoljning" id="KOM1290-2026-900001" skapad="2026-11-27T10:00:00+01:00">
  <Avsandare hsaId="{KOMMUN_HSA}" typ="kommun"/>
  <Mottagare hsaId="{VC_HSA}" typ="vardcentral"/>
  <Patient><Id typ="personnummer">191212121212</Id></Patient>
  <Referens id="{kallelse_id}"/>
  <Anteckning>Vi kommer till mötet.</Anteckning>
</Meddelande>"#
    );
    let kommun = as_(&app, "demo-kommun-kristianstad", "SE2120000999-P1290A").await;
    let r = kommun
        .post(format!("{}/svpl", app.base))
        .header("content-type", "application/xml")
        .body(follow_up)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    let receipt = r.text().await.expect("receipt");
    assert_eq!(status, 200, "{receipt}");
    let receipt = Kvittens::from_xml(receipt.as_bytes(), &Mapping::embedded()).expect("Kvittens");
    // Its Communication is about the plan the vårdcentral made through FHIR, and the vårdcentral reads it.
    let (ty, id) = receipt.resources.first().expect("a resource");
    assert_eq!(ty, "Communication");
    let communication: Value = vc
        .get(format!("{}/Communication/{id}", app.fhir))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        communication["about"][0]["reference"],
        format!("CarePlan/{}", plan["id"].as_str().expect("id"))
    );
    assert_eq!(outbox_rows(&app).await.len(), rows_before);
    // The follow-up changed the plan: its current version is what the change below starts from.
    plan = vc
        .get(format!(
            "{}/CarePlan/{}",
            app.fhir,
            plan["id"].as_str().expect("id")
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    plan["status"] = json!("active");
    plan["activity"] = json!([insats("region", VC_HSA, "Läkemedelsgenomgång")]);
    let (s, outcome) = put(&app, &vc, &plan).await;
    assert_eq!(s, 422, "{outcome}");
    assert!(
        outcome.to_string().contains("SIP_OFULLSTANDIG"),
        "{outcome}"
    );
    let stored: Value = vc
        .get(format!(
            "{}/CarePlan/{}",
            app.fhir,
            plan["id"].as_str().expect("id")
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(stored["status"], "draft");
    assert_eq!(outbox_rows(&app).await.len(), rows_before);
}
