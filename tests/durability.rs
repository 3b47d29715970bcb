//! `kill -9` of the real binary while clients write: every acknowledged write is there after a restart.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

mod common;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The real binary on the embedded demo configuration (its clients, keys and seed).
fn start(data_dir: &std::path::Path, port: u16) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_navet"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .env("NAVET_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    common::on_test_database(&mut command, data_dir);
    command.spawn().expect("navet starts")
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "navet did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The real binary on a fresh data directory, ready, with a token of the hospital's integration (Organizations
/// are master data: it needs no acting user to write them).
struct Running {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    port: u16,
    base: String,
    child: Child,
    token: String,
}

async fn run_fresh() -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = start(&data, port);
    wait_ready(&reqwest::Client::new(), &base).await;
    let key = navet::auth::cli::demo_private_key("demo-csk").expect("demo key");
    let token =
        navet::auth::cli::fetch_token(&base, "demo-csk", key, "system/Organization.cruds", None)
            .await
            .expect("token");
    Running {
        _dir: dir,
        data,
        port,
        base,
        child,
        token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9() {
    let Running {
        _dir,
        data,
        port,
        base,
        mut child,
        token,
    } = run_fresh().await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client");

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = json!({"resourceType": "Organization", "name": format!("w{w}-{n}")});
                let sent = client
                    .post(format!("{base}/fhir/Organization"))
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => {
                        let v: serde_json::Value = match r.json().await {
                            Ok(v) => v,
                            Err(_) => break,
                        };
                        acknowledged
                            .push((v["id"].as_str().unwrap().to_owned(), format!("w{w}-{n}")));
                    }
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix: no shutdown handler runs.
    child.wait().expect("reaped");
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.expect("writer"));
    }
    assert!(
        acknowledged.len() > 50,
        "too few writes to prove anything: {}",
        acknowledged.len()
    );

    // The token stays valid across the restart: the signing key is in the data directory.
    let mut child = start(&data, port);
    wait_ready(&client, &base).await;
    let mut missing = 0;
    for (id, name) in &acknowledged {
        let r = client
            .get(format!("{base}/fhir/Organization/{id}"))
            .send()
            .await
            .expect("read");
        if r.status() != 200 {
            missing += 1;
            continue;
        }
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["name"], name.as_str());
    }
    child.kill().ok();
    child.wait().ok();
    println!(
        "acknowledged {} writes before kill -9, missing after restart {missing}",
        acknowledged.len()
    );
    assert_eq!(missing, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_writes_finish_and_exits_cleanly() {
    let Running {
        _dir,
        data,
        port,
        base,
        mut child,
        token,
    } = run_fresh().await;
    let client = reqwest::Client::new();
    // A burst of writes in flight when the signal arrives: each either completes (201) or is never accepted
    // (connection refused/closed); none gets a 5xx.
    let mut writes = Vec::new();
    for n in 0..40 {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        writes.push(tokio::spawn(async move {
            let body = json!({"resourceType": "Organization", "name": format!("t{n}")});
            client
                .post(format!("{base}/fhir/Organization"))
                .bearer_auth(token)
                .header("content-type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut created = 0;
    for w in writes {
        if let Ok(code) = w.await.expect("task") {
            assert!(code == 201, "an in-flight write answered {code}");
            created += 1;
        }
    }
    let exit = child.wait().expect("exit");
    assert!(exit.success(), "navet exits 0 after SIGTERM: {exit:?}");
    // Restart: every acknowledged write is there.
    let mut child = start(&data, port);
    wait_ready(&client, &base).await;
    let total: serde_json::Value = client
        .get(format!("{base}/fhir/Organization?_summary=count"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("count")
        .json()
        .await
        .expect("json");
    child.kill().ok();
    child.wait().ok();
    // The demo seed's 12 organisations plus exactly the writes that were answered 201.
    assert_eq!(
        total["total"].as_u64().expect("total"),
        12 + created as u64,
        "{total}"
    );
}
