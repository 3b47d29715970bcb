//! The outbox end to end: a fake receiver on loopback that is down, fails, times out and accepts; dead letters
//! and their replay through the admin API; a destination that is down delays no other; enqueue commits with
//! the change or not at all.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use navet::fhir::visibility::Visibility;
use navet::outbox::config::{Destination, OutboxSettings, Secret};
use navet::outbox::worker;
use navet::store::outbox::{MessageStatus, NewMessage, OutboxFilter};
use navet::store::{Actor, Store};
use serde_json::{Value, json};

/// What the fake receiver does with the next requests; after the script it accepts everything.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Fail500,
    /// Takes the message, then answers too late (the sender's timeout fires: a lost answer).
    Hang,
}

#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
    accepted: bool,
    authorization: Option<String>,
}

#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Behaviour>>>,
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.log.lock().expect("log").clone()
    }

    fn accepted_ids(&self) -> BTreeSet<String> {
        self.received()
            .into_iter()
            .filter(|r| r.accepted)
            .map(|r| r.id)
            .collect()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let next = r.script.lock().expect("script").pop_front();
    let received = Received {
        id: headers
            .get("x-navet-message-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        accepted: next.is_none(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    r.log.lock().expect("log").push(received);
    match next {
        Some(Behaviour::Fail500) => StatusCode::INTERNAL_SERVER_ERROR,
        Some(Behaviour::Hang) => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            StatusCode::OK
        }
        None => StatusCode::OK,
    }
}

/// A loopback port with nothing listening on it (yet).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts the receiver on `port` (binding again until the port is free).
async fn serve_receiver(port: u16, receiver: Receiver) {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver);
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
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
}

/// A fast destination for tests: short timeouts and backoff, loopback allowed.
fn destination(name: &str, port: u16) -> Destination {
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/hook")).expect("url");
    let mut d = Destination::new(name, "SE2321000255-ITACIH", url);
    d.private_allowed = true;
    d.connect_timeout = Duration::from_millis(200);
    d.request_timeout = Duration::from_millis(300);
    d.initial_backoff = Duration::from_millis(20);
    d.max_backoff = Duration::from_millis(100);
    d.breaker_threshold = 3;
    d.breaker_pause = Duration::from_millis(150);
    d.retry_budget = Duration::from_secs(60);
    d.concurrency = 4;
    d
}

fn settings(destinations: Vec<Destination>) -> OutboxSettings {
    OutboxSettings {
        poll_interval: Duration::from_millis(20),
        destinations,
        allow: Vec::new(),
    }
}

fn message(destination: &str, patient: &str, n: usize) -> NewMessage {
    NewMessage::new(
        destination,
        Some(format!("Patient/{patient}")),
        "application/json",
        json!({"patient": patient, "n": n}).to_string(),
    )
}

/// Enqueues `messages` in one transaction; answers their ids in order.
async fn enqueue(store: &dyn Store, messages: Vec<NewMessage>) -> Vec<String> {
    let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    store
        .transact(&Actor::system(), move |tx| {
            for m in messages {
                tx.enqueue(m)?;
            }
            Ok(())
        })
        .await
        .expect("enqueue");
    ids
}

async fn rows(store: &dyn Store, status: MessageStatus, destination: &str) -> Vec<String> {
    store
        .outbox_list(
            &Actor::system(),
            OutboxFilter {
                status: Some(status),
                destination: Some(destination.to_owned()),
                after_seq: 0,
                limit: 1000,
            },
        )
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.id)
        .collect()
}

/// Waits (bounded) until `check` holds.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn open_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::open_store(dir.path()).await;
    (dir, store)
}

fn auditor() -> Actor {
    Actor {
        principal: Arc::from("SE2321000255-LOG01"),
        client_id: Some(Arc::from("demo-auditor")),
        user: None,
        visibility: Visibility::Auditor { reads_log: true },
        population_register: false,
    }
}

/// The AuditEvents of the access log whose subtype is `operation`.
async fn logged(store: &dyn Store, operation: &str) -> Vec<Value> {
    store
        .audit_page(&auditor(), 0, i64::MAX, 0, 10_000)
        .await
        .expect("log")
        .into_iter()
        .map(|(_, json)| serde_json::from_str::<Value>(&json).expect("json"))
        .filter(|e| e["subtype"][0]["code"] == operation)
        .collect()
}

fn patients_named(event: &Value) -> Vec<String> {
    event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["what"]["reference"].as_str())
        .filter(|r| r.starts_with("Patient/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_in_order_per_patient_through_down_failing_and_timing_out() {
    let (_dir, store) = open_store().await;
    let port = closed_port();
    let mut dest = destination("itacih", port);
    dest.bearer = Some(Secret::new("test-credential"));
    let workers = worker::start(store.clone(), &settings(vec![dest]))
        .await
        .expect("workers");
    let mut messages = Vec::new();
    for n in 0..5 {
        for patient in ["p1", "p2"] {
            messages.push(message("itacih", patient, n));
        }
    }
    let ids = enqueue(store.as_ref(), messages).await;

    // Down: nothing listens. The first message is tried and its error recorded.
    let first = ids[0].clone();
    let s = store.clone();
    eventually(
        "an attempt failed to connect",
        Duration::from_secs(10),
        || {
            let (s, first) = (s.clone(), first.clone());
            async move {
                let m = s
                    .outbox_get(&Actor::system(), &first)
                    .await
                    .expect("get")
                    .expect("row");
                m.attempts >= 1 && m.last_error.is_some_and(|e| e.contains("connect"))
            }
        },
    )
    .await;

    // Up, but the next answers are two 500s, then two that take the message and answer too late.
    let receiver = Receiver::default();
    receiver.script.lock().expect("script").extend([
        Behaviour::Fail500,
        Behaviour::Fail500,
        Behaviour::Hang,
        Behaviour::Hang,
    ]);
    serve_receiver(port, receiver.clone()).await;
    let s = store.clone();
    eventually(
        "every message is delivered",
        Duration::from_secs(30),
        || {
            let s = s.clone();
            async move {
                rows(s.as_ref(), MessageStatus::Delivered, "itacih")
                    .await
                    .len()
                    == 10
            }
        },
    )
    .await;
    workers.stop().await;

    let got = receiver.received();
    assert_eq!(
        receiver.accepted_ids(),
        ids.iter().cloned().collect::<BTreeSet<_>>()
    );
    // In order per patient: every request the receiver saw (failed, lost and accepted ones) goes 0, 1, 2, …
    // without ever going back, and the accepted ones are exactly 0..5.
    for patient in ["p1", "p2"] {
        let seen: Vec<u64> = got
            .iter()
            .filter(|r| r.body["patient"] == patient)
            .map(|r| r.body["n"].as_u64().expect("n"))
            .collect();
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{patient}: {seen:?}");
        let accepted: Vec<u64> = got
            .iter()
            .filter(|r| r.accepted && r.body["patient"] == patient)
            .map(|r| r.body["n"].as_u64().expect("n"))
            .collect();
        assert_eq!(accepted, vec![0, 1, 2, 3, 4], "{patient}");
    }
    // The lost answers made duplicates: each carries the same id and the same body as its original.
    let mut by_id: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for r in &got {
        by_id.entry(&r.id).or_default().push(r);
    }
    let duplicates: Vec<_> = by_id.values().filter(|v| v.len() > 1).collect();
    assert!(
        duplicates.len() >= 2,
        "the two lost answers were retried: {by_id:?}"
    );
    for copies in &duplicates {
        assert!(copies.iter().all(|c| c.body == copies[0].body));
    }
    println!(
        "receiver saw {} requests for 10 messages ({} ids more than once)",
        got.len(),
        duplicates.len()
    );
    assert!(
        got.iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer test-credential"))
    );

    // Every delivery is one access-log record: action E, operation send, the patient, the destination.
    let sends = logged(store.as_ref(), "send").await;
    assert_eq!(sends.len(), 10);
    let mut per_patient = BTreeMap::new();
    for e in &sends {
        assert_eq!(e["action"], "E");
        assert_eq!(
            e["agent"][1]["who"]["identifier"]["value"],
            "SE2321000255-ITACIH"
        );
        for p in patients_named(e) {
            *per_patient.entry(p).or_insert(0) += 1;
        }
    }
    assert_eq!(
        per_patient,
        BTreeMap::from([("Patient/p1".to_owned(), 5), ("Patient/p2".to_owned(), 5)])
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_is_down_does_not_delay_another() {
    let (_dir, store) = open_store().await;
    let (down, up) = (closed_port(), closed_port());
    let receiver = Receiver::default();
    serve_receiver(up, receiver.clone()).await;
    let workers = worker::start(
        store.clone(),
        &settings(vec![destination("down", down), destination("up", up)]),
    )
    .await
    .expect("workers");
    let mut messages = Vec::new();
    for n in 0..5 {
        messages.push(message("down", "p1", n));
        messages.push(message("up", "p1", n));
    }
    let ids = enqueue(store.as_ref(), messages).await;
    let up_ids: BTreeSet<String> = ids.iter().skip(1).step_by(2).cloned().collect();
    let r = receiver.clone();
    eventually(
        "the live destination has everything",
        Duration::from_secs(10),
        || {
            let r = r.clone();
            let want = up_ids.clone();
            async move { r.accepted_ids() == want }
        },
    )
    .await;
    workers.stop().await;
    // The other is still trying: all five pending, the first attempted.
    assert_eq!(
        rows(store.as_ref(), MessageStatus::Pending, "down")
            .await
            .len(),
        5
    );
    let first = store
        .outbox_get(&Actor::system(), &ids[0])
        .await
        .expect("get")
        .expect("row");
    assert!(first.attempts >= 1, "{first:?}");
    let order: Vec<u64> = receiver
        .received()
        .iter()
        .map(|r| r.body["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4]);
    store.close().await;
}

#[tokio::test]
async fn an_enqueue_commits_with_its_change_or_not_at_all() {
    let (_dir, store) = open_store().await;
    let kept = message("itacih", "p1", 0);
    let dropped = message("itacih", "p1", 1);
    let conflicting = message("itacih", "p1", 2);
    let (kept_id, dropped_id, conflicting_id) =
        (kept.id.clone(), dropped.id.clone(), conflicting.id.clone());
    store
        .transact(&Actor::system(), move |tx| Ok(tx.enqueue(kept)?))
        .await
        .expect("commits");
    // The job fails after its enqueue: neither survives.
    let failed = store
        .transact(&Actor::system(), move |tx| {
            tx.enqueue(dropped)?;
            Err::<(), _>(navet::error::ApiError::Conflict(
                "the change was refused".into(),
            ))
        })
        .await;
    assert!(failed.is_err());
    // A write that fails in the store (a version that does not follow the current one) takes its enqueue along.
    let failed = store
        .transact(&Actor::system(), move |tx| {
            tx.enqueue(conflicting)?;
            tx.put_version(navet::store::NewVersion {
                resource_type: "Task".into(),
                id: "t1".into(),
                version: 7,
                last_updated: "2026-01-01T00:00:00.000Z".into(),
                last_updated_ms: 0,
                owner: "SE2321000255-MTN01".into(),
                deleted: false,
                json: Some("{}".into()),
                index: Vec::new(),
                protected: false,
            })?;
            Ok(())
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(
        rows(store.as_ref(), MessageStatus::Pending, "itacih").await,
        vec![kept_id]
    );
    for id in [dropped_id, conflicting_id] {
        assert!(
            store
                .outbox_get(&Actor::system(), &id)
                .await
                .expect("get")
                .is_none()
        );
    }
    store.close().await;
}

async fn admin_client(base: &str) -> reqwest::Client {
    // The demo region's admin principal (spec/demo-region.md v2): its client has one directory scope.
    let key = navet::auth::cli::demo_private_key("demo-admin").expect("key");
    let token =
        navet::auth::cli::fetch_token(base, "demo-admin", key, "system/Organization.rs", None)
            .await
            .expect("admin token");
    common::authorized_client(&token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_inspected_and_replayed_by_admins_only() {
    let app = common::spawn_app().await;
    let store = app.state.store.clone();
    let port = closed_port();
    let mut dest = destination("dead-end", port);
    // Down longer than its budget.
    dest.retry_budget = Duration::from_millis(400);
    let workers = worker::start(store.clone(), &settings(vec![dest]))
        .await
        .expect("workers");
    let ids = enqueue(
        store.as_ref(),
        vec![
            message("dead-end", "p1", 0),
            message("dead-end", "p1", 1),
            message("dead-end", "p2", 0),
            message("dead-end", "p1", 2),
        ],
    )
    .await;
    let s = store.clone();
    eventually("all four are dead letters", Duration::from_secs(10), || {
        let s = s.clone();
        async move {
            rows(s.as_ref(), MessageStatus::Dead, "dead-end")
                .await
                .len()
                == 4
        }
    })
    .await;

    let admin = admin_client(&app.base).await;
    let list = format!("{}/admin/outbox?status=dead", app.base);
    // Nobody but an admin: a care principal is refused, no token is 401.
    let r = app.client.get(&list).send().await.expect("send");
    assert_eq!(r.status(), 403);
    assert!(common::outcome_text(&common::json(r).await).contains("admin principals"));
    assert_eq!(
        app.anonymous
            .get(&list)
            .send()
            .await
            .expect("send")
            .status(),
        401
    );

    let body = common::json(admin.get(&list).send().await.expect("send")).await;
    let listed: Vec<&str> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    for m in body["messages"].as_array().expect("messages") {
        assert_eq!(m["status"], "dead");
        assert!(
            m["lastError"]
                .as_str()
                .expect("error")
                .contains("retry budget exhausted"),
            "{m}"
        );
        assert!(m.get("payload").is_none(), "a list shows no payloads");
    }
    // Paging: one at a time, with a link to the next.
    let page = common::json(
        admin
            .get(format!("{list}&limit=1"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1));
    assert!(page["next"].as_str().expect("next").contains("after="));

    let one = common::json(
        admin
            .get(format!("{}/admin/outbox/{}", app.base, ids[0]))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(one["patient"], "Patient/p1");
    assert_eq!(
        serde_json::from_str::<Value>(one["payload"].as_str().expect("payload")).expect("json"),
        json!({"patient": "p1", "n": 0})
    );
    // Bad input gets an OperationOutcome that says what is wrong.
    for (path, status, says) in [
        ("/admin/outbox/no%20such", 400, "not an outbox message id"),
        (
            "/admin/outbox/unknown-id",
            404,
            "no outbox message unknown-id",
        ),
        ("/admin/outbox?status=lost", 400, "status 'lost'"),
    ] {
        let r = admin
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), status, "{path}");
        let outcome = common::json(r).await;
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(
            common::outcome_text(&outcome).contains(says),
            "{path}: {outcome}"
        );
    }
    let r = admin
        .post(format!("{}/admin/outbox/$replay", app.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400, "the destination is required");

    // The receiver is back: replay one, then the rest of the destination.
    let receiver = Receiver::default();
    serve_receiver(port, receiver.clone()).await;
    let r = admin
        .post(format!("{}/admin/outbox/{}/$replay", app.base, ids[0]))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(
        common::json(r).await,
        json!({"replayed": 1, "ids": [ids[0]]})
    );
    let r = receiver.clone();
    let first = ids[0].clone();
    eventually("the replayed one arrives", Duration::from_secs(10), || {
        let (r, first) = (r.clone(), first.clone());
        async move { r.accepted_ids().contains(&first) }
    })
    .await;
    // Delivered now: not a dead letter to replay.
    let s = store.clone();
    let first = ids[0].clone();
    eventually(
        "it is recorded as delivered",
        Duration::from_secs(5),
        || {
            let (s, first) = (s.clone(), first.clone());
            async move {
                s.outbox_get(&Actor::system(), &first)
                    .await
                    .expect("get")
                    .expect("row")
                    .status
                    == MessageStatus::Delivered
            }
        },
    )
    .await;
    let r = admin
        .post(format!("{}/admin/outbox/{}/$replay", app.base, ids[0]))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 409);
    assert!(
        app.client
            .post(format!(
                "{}/admin/outbox/$replay?destination=dead-end",
                app.base
            ))
            .send()
            .await
            .expect("send")
            .status()
            == 403
    );
    let r = admin
        .post(format!(
            "{}/admin/outbox/$replay?destination=dead-end",
            app.base
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(common::json(r).await["replayed"], 3);
    let r = receiver.clone();
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    eventually(
        "every replayed message arrives",
        Duration::from_secs(10),
        || {
            let (r, all) = (r.clone(), all.clone());
            async move { r.accepted_ids() == all }
        },
    )
    .await;
    workers.stop().await;
    let p1: Vec<u64> = receiver
        .received()
        .iter()
        .filter(|r| r.body["patient"] == "p1")
        .map(|r| r.body["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(p1, vec![0, 1, 2]);

    // The admin's reads and replays are in the access log with the patients they showed.
    let replays = logged(store.as_ref(), "outbox-replay").await;
    assert_eq!(replays.len(), 2);
    let mut replayed: Vec<String> = replays.iter().flat_map(patients_named).collect();
    replayed.sort();
    assert_eq!(replayed, vec!["Patient/p1", "Patient/p1", "Patient/p2"]);
    let reads = logged(store.as_ref(), "outbox-read").await;
    assert_eq!(reads.len(), 1);
    assert_eq!(patients_named(&reads[0]), vec!["Patient/p1"]);
    assert!(!logged(store.as_ref(), "outbox-list").await.is_empty());
}

/// The real binary on a configuration file: the demo configuration (its keys copied next to it) plus a
/// destination on the test's receiver.
fn start_binary(
    config: &std::path::Path,
    data: &std::path::Path,
    port: u16,
) -> std::process::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_navet"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("NAVET_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    common::on_test_database(&mut command, data);
    command.spawn().expect("navet starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_delivery_burst_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver_port = closed_port();
    let config = common::config_with_destination(dir.path(), receiver_port);
    let data = dir.path().join("data");

    // The burst: committed before navet starts (nothing in navet enqueues yet; the store is the same).
    const PATIENTS: usize = 8;
    const PER_PATIENT: usize = 40;
    let store = common::open_store(&data).await;
    let mut messages = Vec::new();
    for n in 0..PER_PATIENT {
        for p in 0..PATIENTS {
            messages.push(message("itacih", &format!("p{p}"), n));
        }
    }
    let ids: BTreeSet<String> = enqueue(store.as_ref(), messages)
        .await
        .into_iter()
        .collect();
    store.close().await;
    drop(store);

    let receiver = Receiver::default();
    serve_receiver(receiver_port, receiver.clone()).await;
    let port = closed_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start_binary(&config, &data, port);
    let r = receiver.clone();
    eventually("deliveries are under way", Duration::from_secs(60), || {
        let r = r.clone();
        async move { r.accepted_ids().len() >= 40 }
    })
    .await;
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    let at_kill = receiver.accepted_ids().len();
    assert!(
        at_kill < ids.len(),
        "the burst was still going when navet was killed ({at_kill})"
    );

    let mut child = start_binary(&config, &data, port);
    let r = receiver.clone();
    let want = ids.clone();
    eventually(
        "every committed message is delivered after the restart",
        Duration::from_secs(60),
        || {
            let (r, want) = (r.clone(), want.clone());
            async move { r.accepted_ids() == want }
        },
    )
    .await;
    // navet answers again (it is the same process that resumed the deliveries).
    let ready = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    child.kill().expect("kill");
    child.wait().expect("wait");

    let got = receiver.received();
    let mut copies: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for r in &got {
        copies.entry(&r.id).or_default().push(r);
    }
    let duplicates = copies.values().filter(|c| c.len() > 1).count();
    println!(
        "kill -9 after {at_kill} of {} deliveries: {} requests, {duplicates} ids delivered more than once",
        ids.len(),
        got.len()
    );
    // Every duplicate is the same message under the same id; one patient's messages never go backwards
    // except to repeat the one in flight at the kill.
    for c in copies.values() {
        assert!(c.iter().all(|x| x.body == c[0].body));
    }
    assert!(
        duplicates <= 4,
        "at most one in flight per concurrent slot: {duplicates}"
    );
    for p in 0..PATIENTS {
        let seen: Vec<u64> = got
            .iter()
            .filter(|r| r.body["patient"] == format!("p{p}"))
            .map(|r| r.body["n"].as_u64().expect("n"))
            .collect();
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "p{p}: {seen:?}");
    }
}
