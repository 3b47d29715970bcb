//! Two navet processes on one PostgreSQL database (issue 16): what must stay exact when nodes race is decided
//! by the database. Needs `NAVET_TEST_DATABASE_URL` (`.ci/run` sets it); without it there is no second node to
//! race, and each test says so and returns (the README's `cargo test` runs SQLite only).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt;
use navet::store::Actor;
use navet::store::outbox::NewMessage;
use serde_json::{Value, json};

mod common;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One node: the real binary on `config`, its own listen port, the shared data directory (the nodes share
/// the token signing keys and the checkpoint key, as a region's nodes must) and the shared database.
struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base URL every node is started with: behind a region's load balancer all nodes answer to one address,
/// which is the audience of the tokens (a token issued by one node is taken by the other).
const BASE_URL: &str = "http://navet.region.test";

fn start(config: Option<&std::path::Path>, data: &std::path::Path, url: &str) -> Node {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_navet"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--base-url", BASE_URL])
        .arg("--data-dir")
        .arg(data)
        .env("NAVET_DATABASE_URL", url)
        .env("NAVET_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    Node {
        child: command.spawn().expect("navet starts"),
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_ready(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/readyz", node.base)).await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "navet did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two nodes on a fresh schema: the first starts alone (it makes the keys), then the second on the same
/// data directory. `None` when the suite does not run on PostgreSQL.
async fn two_nodes(
    config: Option<&std::path::Path>,
) -> Option<(tempfile::TempDir, String, Node, Node)> {
    let Some(url) = common::test_database_url() else {
        eprintln!("two_nodes: NAVET_TEST_DATABASE_URL is not set; two nodes need PostgreSQL");
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let a = start(config, &data, &url);
    wait_ready(&a).await;
    let b = start(config, &data, &url);
    wait_ready(&b).await;
    Some((dir, url, a, b))
}

/// A client sending the hospital integration's token (it writes Organizations, master data, without a user),
/// got from the node at `base` for the region's address.
async fn hospital(base: &str) -> reqwest::Client {
    client_for(base, "demo-csk", None, "system/Organization.cruds").await
}

/// A client sending `client`'s token (for `user`, if given), got from the node at `base` for the region's
/// address: the assertion is addressed to the region's token endpoint (the audience every node checks) and
/// sent to one node directly (the test has no load balancer).
async fn client_for(base: &str, client: &str, user: Option<&str>, scope: &str) -> reqwest::Client {
    let key = navet::auth::cli::demo_private_key(client).expect("demo key");
    let claims = user.map(|u| {
        let config = common::settings(std::path::PathBuf::from("unused"), false).auth;
        navet::auth::cli::user_claims(&config, u, navet::auth::PurposeOfUse::Treat)
            .expect("demo user")
    });
    let assertion = navet::auth::cli::client_assertion(
        client,
        &format!("{BASE_URL}/auth/token"),
        key,
        claims.as_ref(),
        jiff::Timestamp::now().as_second(),
    )
    .expect("assertion");
    let answer: Value = reqwest::Client::new()
        .post(format!("{base}/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token answer");
    let token = answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {answer}"))
        .to_owned();
    common::authorized_client(&token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_identical_conditional_creates_on_two_nodes_make_one_resource() {
    let Some((_dir, _url, a, b)) = two_nodes(None).await else {
        return;
    };
    let client = hospital(&a.base).await;
    let body = json!({
        "resourceType": "Organization",
        "identifier": [{"system": "urn:oid:1.2.752.29.4.19", "value": "SE2321000255-RACE1"}],
        "name": "Racing unit",
    })
    .to_string();
    let bases = [a.base.clone(), b.base.clone()];
    let answers: Vec<(u16, String)> = futures_util::stream::iter(0..1000)
        .map(|n| {
            let (client, body) = (client.clone(), body.clone());
            let base = bases[n % 2].clone();
            async move {
                let r = client
                    .post(format!("{base}/fhir/Organization"))
                    .header("content-type", "application/fhir+json")
                    .header(
                        "if-none-exist",
                        "identifier=urn:oid:1.2.752.29.4.19|SE2321000255-RACE1",
                    )
                    .body(body)
                    .send()
                    .await
                    .expect("send");
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                (status, v["id"].as_str().unwrap_or_default().to_owned())
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let existing = answers.iter().filter(|(s, _)| *s == 200).count();
    let ids: BTreeSet<&str> = answers.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(
        (created, existing),
        (1, 999),
        "one create, every other answer the existing resource: {:?}",
        answers
            .iter()
            .filter(|(s, _)| *s != 200 && *s != 201)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        ids.len(),
        1,
        "every answer names the same resource: {ids:?}"
    );
    let found: Value = client
        .get(format!(
            "{}/fhir/Organization?identifier=urn:oid:1.2.752.29.4.19|SE2321000255-RACE1",
            b.base
        ))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(1), "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_if_match_updates_on_two_nodes_let_exactly_one_win() {
    let Some((_dir, _url, a, b)) = two_nodes(None).await else {
        return;
    };
    let client = hospital(&a.base).await;
    let created: Value = client
        .post(format!("{}/fhir/Organization", a.base))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Organization", "name": "v1"}).to_string())
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    let bases = [a.base.clone(), b.base.clone()];
    let statuses: Vec<u16> = futures_util::future::join_all((0..30).map(|n| {
        let (client, id) = (client.clone(), id.clone());
        let base = bases[n % 2].clone();
        async move {
            client
                .put(format!("{base}/fhir/Organization/{id}"))
                .header("content-type", "application/fhir+json")
                .header("if-match", "W/\"1\"")
                .body(
                    json!({"resourceType": "Organization", "id": id, "name": format!("writer {n}")})
                        .to_string(),
                )
                .send()
                .await
                .expect("put")
                .status()
                .as_u16()
        }
    }))
    .await;
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for s in &statuses {
        *by_status.entry(*s).or_default() += 1;
    }
    assert_eq!(
        by_status.get(&200),
        Some(&1),
        "exactly one update wins: {by_status:?}"
    );
    assert_eq!(
        by_status.get(&412).copied().unwrap_or(0) + by_status.get(&409).copied().unwrap_or(0),
        29,
        "every other update is refused as a lost race (412, or 409 when it met the winner mid-write): {by_status:?}"
    );
    let now: Value = client
        .get(format!("{}/fhir/Organization/{id}", b.base))
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(now["meta"]["versionId"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_of_one_svpl_message_on_two_nodes_store_it_once_and_get_one_receipt() {
    let Some((_dir, _url, a, b)) = two_nodes(None).await else {
        return;
    };
    let kommun = client_for(
        &a.base,
        "demo-kommun-kristianstad",
        Some("SE2120000999-P1290A"),
        "system/*.cruds",
    )
    .await;
    let message = std::fs::read_to_string(format!(
        "{}/tests/golden/svpl/sip-01-begaran.in.xml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("golden input");
    let bases = [a.base.clone(), b.base.clone()];
    let answers: Vec<(u16, String)> = futures_util::future::join_all((0..16).map(|n| {
        let (kommun, message) = (kommun.clone(), message.clone());
        let base = bases[n % 2].clone();
        async move {
            let r = kommun
                .post(format!("{base}/svpl"))
                .header("content-type", "application/xml")
                .body(message)
                .send()
                .await
                .expect("post");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    }))
    .await;
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "every repeat, on either node, gets the first receipt byte for byte: {answers:?}"
    );
    let plans: Value = kommun
        .get(format!(
            "{}/fhir/CarePlan?patient.identifier=http://electronichealth.se/identifier/personnummer|191212121212",
            b.base
        ))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!(
        plans["entry"].as_array().map(Vec::len),
        Some(1),
        "one SIP plan stored: {plans}"
    );
}

/// A receiver counting each message id it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<BTreeMap<String, usize>>>);

async fn receive(State(r): State<Receiver>, headers: HeaderMap) -> StatusCode {
    let id = headers
        .get("x-navet-message-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    *r.0.lock().expect("log").entry(id).or_default() += 1;
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rows_are_delivered_once_with_both_nodes_workers_running() {
    let Some(url) = common::test_database_url() else {
        eprintln!("two_nodes: NAVET_TEST_DATABASE_URL is not set; two nodes need PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver_port = free_port();
    let config = common::config_with_destination(dir.path(), receiver_port);
    let data = dir.path().join("data");

    // The rows, committed before either node starts: 8 patients × 40 messages.
    let mut settings = common::settings(data.clone(), false);
    settings.database_url = Some(url.clone());
    let store = navet::startup::open_store(&settings).await.expect("store");
    let messages: Vec<NewMessage> = (0..40)
        .flat_map(|n| {
            (0..8).map(move |p| {
                NewMessage::new(
                    "itacih",
                    Some(format!("Patient/p{p}")),
                    "application/json",
                    json!({"patient": p, "n": n}).to_string(),
                )
            })
        })
        .collect();
    let ids: BTreeSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    store
        .transact(&Actor::system(), move |tx| {
            for m in messages {
                tx.enqueue(m)?;
            }
            Ok(())
        })
        .await
        .expect("enqueue");
    store.close().await;
    drop(store);

    let receiver = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", receiver_port))
        .await
        .expect("bind");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });

    let a = start(Some(&config), &data, &url);
    wait_ready(&a).await;
    let b = start(Some(&config), &data, &url);
    wait_ready(&b).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: BTreeSet<String> = receiver.0.lock().expect("log").keys().cloned().collect();
        if seen == ids {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every message arrived: {} of {}",
            seen.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A little longer, so a second delivery of any row would have arrived too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = receiver.0.lock().expect("log").clone();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(counts.len(), ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_node_under_write_load_loses_nothing_acknowledged() {
    let Some((_dir, _url, mut a, b)) = two_nodes(None).await else {
        return;
    };
    let client = hospital(&a.base).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, stop) = (client.clone(), stop.clone());
        let base = if w % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let name = format!("w{w}-{n}");
                let sent = client
                    .post(format!("{base}/fhir/Organization"))
                    .header("content-type", "application/fhir+json")
                    .body(json!({"resourceType": "Organization", "name": name}).to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => match r.json::<Value>().await {
                        Ok(v) => acknowledged
                            .push((v["id"].as_str().unwrap_or_default().to_owned(), name)),
                        Err(_) => break,
                    },
                    // The killed node's writers stop at their first failure; the other node's go on.
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.child.kill().expect("SIGKILL");
    a.child.wait().expect("reaped");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.expect("writer"));
    }
    assert!(
        acknowledged.len() > 50,
        "too few writes to prove anything: {}",
        acknowledged.len()
    );
    let mut missing = Vec::new();
    for (id, name) in &acknowledged {
        let r = client
            .get(format!("{}/fhir/Organization/{id}", b.base))
            .send()
            .await
            .expect("read");
        if r.status() != 200 {
            missing.push(id.clone());
            continue;
        }
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["name"], name.as_str());
    }
    println!(
        "acknowledged {} writes on two nodes before kill -9 of one; missing on the other: {}",
        acknowledged.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "{missing:?}");
}
