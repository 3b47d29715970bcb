//! FHIR R4 Subscriptions (rest-hook) end to end: a fake receiver on loopback in the test process, the real
//! FHIR API and the outbox's subscription workers. Workers are started by each test after the writes it
//! orders, so "changed, then lost visibility, then sent" is deterministic without timing assertions.

mod common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use common::*;
use navet::auth::PurposeOfUse;
use navet::fhir::visibility::Visibility;
use navet::outbox::config::{OutboxSettings, subscription_template};
use navet::outbox::worker;
use navet::store::outbox::{MessageStatus, OutboxFilter, OutboxMessage};
use navet::store::{Actor, Store};
use serde_json::{Value, json};

const HSA: &str = "urn:oid:1.2.752.29.4.19";
const MTN: &str = "SE2321000255-MTN01";
const VC: (&str, &str) = ("demo-vc-nasby", "SE2321000255-P0301");

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Received {
    path: String,
    id: String,
    token: Option<String>,
    authorization: Option<String>,
    body: String,
}

#[derive(Clone)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    /// The status the receiver answers with.
    answer: Arc<AtomicU16>,
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        let mut all = self.log.lock().expect("log").clone();
        all.sort();
        all
    }
}

async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    r.log.lock().expect("log").push(Received {
        path,
        id: header("x-navet-message-id").unwrap_or_default(),
        token: header("x-hook-token"),
        authorization: header("authorization"),
        body,
    });
    StatusCode::from_u16(r.answer.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

async fn receiver() -> (Receiver, u16) {
    let r = Receiver {
        log: Arc::default(),
        answer: Arc::new(AtomicU16::new(200)),
    };
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
    (r, port)
}

/// The subscription workers with fast retries, for the app's store.
async fn start_workers(app: &TestApp) -> worker::Workers {
    let settings = OutboxSettings {
        poll_interval: Duration::from_millis(20),
        destinations: Vec::new(),
        allow: app.state.fhir.outbox_allow.clone(),
    };
    let mut template = subscription_template();
    template.connect_timeout = Duration::from_millis(300);
    template.request_timeout = Duration::from_millis(500);
    template.initial_backoff = Duration::from_millis(20);
    template.max_backoff = Duration::from_millis(60);
    template.breaker_threshold = 2;
    template.breaker_pause = Duration::from_millis(100);
    worker::start_subscriptions(
        app.state.store.clone(),
        app.state.fhir.clone(),
        &settings,
        template,
    )
    .await
}

fn subscription(criteria: &str, endpoint: &str, full: bool, header: &str) -> Value {
    let mut channel = json!({"type": "rest-hook", "endpoint": endpoint, "header": [header]});
    if full {
        channel["payload"] = json!("application/fhir+json");
    }
    json!({"resourceType": "Subscription", "status": "requested", "reason": "test",
           "criteria": criteria, "channel": channel})
}

fn task(patient: &str, status: &str, owner: Option<&str>) -> Value {
    let mut t = json!({"resourceType": "Task", "status": status, "intent": "order",
                       "for": {"reference": format!("Patient/{patient}")}});
    if let Some(o) = owner {
        t["owner"] = json!({"identifier": {"system": HSA, "value": o}});
    }
    t
}

async fn new_patient(app: &TestApp, pnr: &str) -> String {
    app.create(&patient(pnr, "Persson")).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// Every outbox row of subscription destinations.
async fn subscription_rows(store: &dyn Store) -> Vec<OutboxMessage> {
    store
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
        .expect("list")
        .into_iter()
        .filter(|m| m.destination.starts_with("subscription:"))
        .collect()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no subscription row is pending.
async fn drained(store: &dyn Store) {
    eventually("every notification is done", || async {
        subscription_rows(store)
            .await
            .iter()
            .all(|m| m.status != MessageStatus::Pending)
    })
    .await;
}

async fn send_events(store: &dyn Store) -> Vec<Value> {
    let auditor = Actor {
        principal: Arc::from("SE2321000255-LOG01"),
        client_id: Some(Arc::from("demo-auditor")),
        user: None,
        visibility: Visibility::Auditor { reads_log: true },
        population_register: false,
    };
    store
        .audit_page(&auditor, 0, i64::MAX, 0, 10_000)
        .await
        .expect("log")
        .into_iter()
        .map(|(_, json)| serde_json::from_str::<Value>(&json).expect("json"))
        .filter(|e| e["subtype"][0]["code"] == "send")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_write_notifies_each_subscriber_once_with_its_header_and_payload() {
    let app = spawn_app().await;
    let (rx, port) = receiver().await;
    let id_only = app
        .create(&subscription(
            "Task?status=requested",
            &format!("http://127.0.0.1:{port}/a"),
            false,
            "X-Hook-Token: token-a",
        ))
        .await;
    let full = app
        .create(&subscription(
            "Task?status=requested",
            &format!("http://127.0.0.1:{port}/b"),
            true,
            "Authorization: Bearer token-b",
        ))
        .await;
    // navet accepts a requested subscription as active.
    assert_eq!(id_only["status"], "active");
    assert_eq!(full["status"], "active");
    let patient = new_patient(&app, "19360617-2488").await;
    let matching = app.create(&task(&patient, "requested", None)).await;
    // Not matching: another status, another type, and another principal's Task the team may not see.
    app.create(&task(&patient, "completed", None)).await;
    app.create(
        &json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                       "subject": {"reference": format!("Patient/{patient}")}}),
    )
    .await;
    let vc = user_client(&app, VC.0, VC.1, PurposeOfUse::Treat, "system/*.cruds").await;
    create_with(&vc, &app.fhir, &task(&patient, "requested", None)).await;
    // A Subscription is its creator's: another principal does not see it (its headers may hold credentials).
    for sub in [&id_only, &full] {
        let other = vc
            .get(format!("{}/Subscription/{}", app.fhir, id_of(sub)))
            .send()
            .await
            .expect("read");
        assert_eq!(other.status().as_u16(), 404);
    }

    let workers = start_workers(&app).await;
    drained(app.state.store.as_ref()).await;
    workers.stop().await;

    let task_id = id_of(&matching);
    let stored = app
        .client
        .get(format!("{}/Task/{task_id}", app.fhir))
        .send()
        .await
        .expect("read")
        .text()
        .await
        .expect("body");
    let (a, b) = (id_of(&id_only), id_of(&full));
    let mut expected = vec![
        Received {
            path: "a".into(),
            id: format!("sub-{a}-Task-{task_id}-1"),
            token: Some("token-a".into()),
            authorization: None,
            body: String::new(),
        },
        Received {
            path: "b".into(),
            id: format!("sub-{b}-Task-{task_id}-1"),
            token: None,
            authorization: Some("Bearer token-b".into()),
            body: stored,
        },
    ];
    expected.sort();
    assert_eq!(rx.received(), expected);
    let statuses: Vec<MessageStatus> = subscription_rows(app.state.store.as_ref())
        .await
        .iter()
        .map(|m| m.status)
        .collect();
    assert_eq!(
        statuses,
        [MessageStatus::Delivered, MessageStatus::Delivered]
    );
    // Each delivery is in the access log: action E, operation send, the patient, the subscriber.
    let sends = send_events(app.state.store.as_ref()).await;
    assert_eq!(sends.len(), 2, "{sends:?}");
    for e in &sends {
        assert_eq!(e["action"], "E");
        let named: Vec<&Value> = e["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| {
                x["what"]["reference"]
                    .as_str()
                    .map(|_| &x["what"]["reference"])
            })
            .collect();
        assert_eq!(named, [&json!(format!("Patient/{patient}"))], "{e}");
        assert_eq!(e["agent"][1]["who"]["identifier"]["value"], MTN);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_loses_visibility_before_the_send_gets_nothing() {
    let app = spawn_app().await;
    let (rx, port) = receiver().await;
    app.create(&subscription(
        "Task?status=requested",
        &format!("http://127.0.0.1:{port}/hook"),
        true,
        "X-Hook-Token: t",
    ))
    .await;
    let patient = new_patient(&app, "19360617-2488").await;
    // The vårdcentral's Task names the team as owner: the team takes part and sees it when it changes.
    let vc = user_client(&app, VC.0, VC.1, PurposeOfUse::Treat, "system/*.cruds").await;
    let shared = create_with(&vc, &app.fhir, &task(&patient, "requested", Some(MTN))).await;
    let shared_id = id_of(&shared);
    let read = |c: reqwest::Client, url: String| async move {
        c.get(url).send().await.expect("read").status().as_u16()
    };
    let url = format!("{}/Task/{shared_id}", app.fhir);
    assert_eq!(read(app.client.clone(), url.clone()).await, 200);
    let pending = subscription_rows(app.state.store.as_ref()).await;
    assert_eq!(pending.len(), 1, "one notification is queued");
    // Before anything is sent, the vårdcentral takes the team off the Task: it no longer sees it.
    let mut unshared = task(&patient, "requested", None);
    unshared["id"] = json!(shared_id);
    let put = vc
        .put(&url)
        .header("content-type", FHIR_JSON)
        .body(unshared.to_string())
        .send()
        .await
        .expect("update");
    assert_eq!(put.status().as_u16(), 200);
    assert_eq!(read(app.client.clone(), url).await, 404);
    // A later Task of the team's own shows the subscription still delivers.
    let own = app.create(&task(&patient, "requested", None)).await;

    let workers = start_workers(&app).await;
    drained(app.state.store.as_ref()).await;
    workers.stop().await;

    let own_id = id_of(&own);
    let got: Vec<Value> = rx
        .received()
        .iter()
        .map(|r| serde_json::from_str(&r.body).expect("json"))
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["id"], own_id.as_str());
    let rows = subscription_rows(app.state.store.as_ref()).await;
    let by_status: Vec<(MessageStatus, bool)> = rows
        .iter()
        .map(|m| {
            (
                m.status,
                m.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("dropped-not-visible")),
            )
        })
        .collect();
    assert_eq!(
        by_status,
        [
            (MessageStatus::Dropped, true),
            (MessageStatus::Delivered, false)
        ]
    );
    assert_eq!(send_events(app.state.store.as_ref()).await.len(), 1);
}

#[tokio::test]
async fn subscriptions_on_other_types_or_to_endpoints_not_allowed_are_refused_and_nothing_is_stored()
 {
    let app = spawn_app().await;
    for (body, element) in [
        (
            subscription("Patient?name=x", "http://127.0.0.1:9/h", false, "X-A: 1"),
            "Subscription.criteria",
        ),
        (
            subscription(
                "Task?no-such-param=1",
                "http://127.0.0.1:9/h",
                false,
                "X-A: 1",
            ),
            "Subscription.criteria",
        ),
        (
            subscription(
                "Task?status=requested",
                "http://10.1.2.3:80/h",
                false,
                "X-A: 1",
            ),
            "Subscription.channel.endpoint",
        ),
        (
            subscription(
                "Task?status=requested",
                "https://169.254.169.254/x",
                false,
                "X-A: 1",
            ),
            "Subscription.channel.endpoint",
        ),
        (
            subscription(
                "Task?status=requested",
                "http://127.0.0.1:9/h",
                false,
                "no colon",
            ),
            "Subscription.channel.header[0]",
        ),
    ] {
        let response = app.post("Subscription", &body).await;
        assert_eq!(response.status().as_u16(), 422, "{body}");
        let outcome: Value = response.json().await.expect("outcome");
        assert_eq!(outcome["issue"][0]["expression"][0], element, "{outcome}");
    }
    let history: Value = app
        .client
        .get(format!("{}/Subscription/_history", app.fhir))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("bundle");
    assert_eq!(
        history["entry"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_moves_to_error_on_persistent_failure_and_back_to_active_after_a_success() {
    let app = spawn_app().await;
    let (rx, port) = receiver().await;
    rx.answer.store(500, Ordering::SeqCst);
    let sub = app
        .create(&subscription(
            "Task?status=requested",
            &format!("http://127.0.0.1:{port}/hook"),
            false,
            "X-Hook-Token: t",
        ))
        .await;
    let sub_url = format!("{}/Subscription/{}", app.fhir, id_of(&sub));
    let patient = new_patient(&app, "19360617-2488").await;
    app.create(&task(&patient, "requested", None)).await;
    let current = |c: reqwest::Client, url: String| async move {
        c.get(url)
            .send()
            .await
            .expect("read")
            .json::<Value>()
            .await
            .expect("json")
    };
    let workers = start_workers(&app).await;
    eventually("the subscription is in error", || {
        let (c, u) = (app.client.clone(), sub_url.clone());
        async move { current(c, u).await["status"] == "error" }
    })
    .await;
    let failed = current(app.client.clone(), sub_url.clone()).await;
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("500")),
        "{failed}"
    );
    // navet wrote it; the owner stays the team.
    let owner = failed["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["system"] == navet::fhir::OWNER_TAG_SYSTEM)
        .map(|t| t["code"].clone());
    assert_eq!(owner, Some(json!(MTN)), "{failed}");
    rx.answer.store(200, Ordering::SeqCst);
    eventually("the subscription is active again", || {
        let (c, u) = (app.client.clone(), sub_url.clone());
        async move { current(c, u).await["status"] == "active" }
    })
    .await;
    drained(app.state.store.as_ref()).await;
    workers.stop().await;
    let healed = current(app.client.clone(), sub_url).await;
    assert_eq!(healed.get("error"), None, "{healed}");
    // Every attempt carried the one notification's id; the last one was accepted.
    let ids: std::collections::BTreeSet<String> = rx.received().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let rows = subscription_rows(app.state.store.as_ref()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, MessageStatus::Delivered);
}
