//! The access log survives a crash (issue 13): `navet serve` is killed with SIGKILL in the middle of a logged
//! read load and started again. Every read that was answered has its record, the start-up check passes, and
//! after a clean stop both chains and the signed checkpoints verify.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A server this test started; killed if the test ends early (a failed assertion), so it never outlives it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `navet serve` (the embedded demo configuration) on `data_dir`; answers the child and its base URL.
async fn serve(data_dir: &std::path::Path) -> (Server, String) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_navet"));
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .env("NAVET_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    common::on_test_database(&mut command, data_dir);
    let child = command.spawn().expect("navet starts");
    let child = Server(child);
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await
            && r.status() == 200
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "navet did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, base)
}

async fn token(base: &str) -> String {
    let key = navet::auth::cli::demo_private_key(DEFAULT_CLIENT).unwrap();
    let cfg = settings(std::path::PathBuf::from("unused"), false).auth;
    let user = navet::auth::cli::user_claims(&cfg, DEFAULT_USER, navet::auth::PurposeOfUse::Treat)
        .unwrap();
    navet::auth::cli::fetch_token(base, DEFAULT_CLIENT, key, "system/*.cruds", Some(&user))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_during_logged_reads_every_answered_read_has_its_record_and_the_log_verifies()
{
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = serve(dir.path()).await;
    let client = authorized_client(&token(&base).await);
    let created: serde_json::Value = client
        .post(format!("{base}/fhir/Patient"))
        .header("content-type", FHIR_JSON)
        .body(
            serde_json::json!({"resourceType": "Patient", "name": [{"family": "Krasch"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!("{base}/fhir/Patient/{}", created["id"].as_str().unwrap());

    // Readers with their own request ids; an id is kept only once its 200 answer has arrived.
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let readers: Vec<_> = (0..16)
        .map(|r| {
            let (client, url, answered) = (client.clone(), url.clone(), answered.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let id = format!("crash-{r}-{i}");
                    match client.get(&url).header("x-request-id", &id).send().await {
                        Ok(resp) if resp.status() == 200 => {
                            if resp.bytes().await.is_ok() {
                                answered.lock().unwrap().push(id);
                            }
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.0.kill().expect("SIGKILL");
    let _ = child.0.wait();
    for r in readers {
        let _ = r.await;
    }
    let answered: BTreeSet<String> = answered.lock().unwrap().iter().cloned().collect();
    assert!(
        answered.len() > 50,
        "the load ran: {} reads",
        answered.len()
    );

    // It starts again on the same data directory (the start-up check of both chains passes) and stops
    // cleanly, signing a checkpoint.
    let (mut child, _) = serve(dir.path()).await;
    // SAFETY: sending SIGTERM to the child this test started.
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");

    // The data directory's files, or (on PostgreSQL) the database the binary ran on, with the data
    // directory's checkpoint file and key.
    let database_url = common::child_database_url(dir.path());
    let report = common::verify_log_at(dir.path(), database_url.as_deref());
    assert_eq!(report.first_broken, None, "{report:?}");
    assert!(report.checkpoints >= 1, "{report:?}");
    let logged: BTreeSet<String> = common::logged_events_at(dir.path(), database_url.as_deref())
        .into_iter()
        .flat_map(|(_, json)| {
            let event: serde_json::Value = serde_json::from_str(&json).unwrap();
            event["entity"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["what"]["identifier"]["system"] == "urn:navet:request-id")
                .filter_map(|e| e["what"]["identifier"]["value"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    let missing: Vec<&String> = answered.difference(&logged).collect();
    assert!(
        missing.is_empty(),
        "answered reads without a record: {missing:?}"
    );
}
