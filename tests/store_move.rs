//! Moving a store (`navet export` / `navet import`, issue 16): a SQLite store with resources, history, sharing
//! facts and both access-log chains goes through the other backend and back, and nothing changes: every row
//! of the three dumps is the same, the moved store serves the same resources, and its log verifies. The other
//! backend is PostgreSQL when `NAVET_TEST_DATABASE_URL` is set (`.ci/run`), else a second SQLite store.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

mod common;

/// `navet <args>` on the data directory, on PostgreSQL when `url` is given (SQLite otherwise); its stderr.
fn navet(args: &[&str], data: &Path, url: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_navet"));
    command.args(args).arg("--data-dir").arg(data);
    match url {
        Some(url) => command.env("NAVET_DATABASE_URL", url),
        None => command.env_remove("NAVET_DATABASE_URL"),
    };
    let out = command.output().expect("navet runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "navet {args:?} failed: {stderr}");
    stderr
}

/// The data directory's keys and checkpoint file (everything but the SQLite databases): what moves with the
/// store so the tokens and the signed checkpoints stay valid.
fn copy_keys(from: &Path, to: &Path) {
    for entry in walk(from) {
        let name = entry.strip_prefix(from).expect("inside");
        let file = name.to_string_lossy();
        if file.starts_with("navet.db") || file.starts_with("audit.db") {
            continue;
        }
        let target = to.join(name);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&entry, &target).expect("copy");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A dump's rows per table, each table's rows sorted (the backends list a table's rows in their own order).
fn rows(path: &Path) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(path).expect("dump");
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let row: Value = serde_json::from_str(line).expect("row");
        let table = row["t"].as_str().expect("table").to_owned();
        tables.entry(table).or_default().push(row["r"].to_string());
    }
    for rows in tables.values_mut() {
        rows.sort();
    }
    tables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moves_to_the_other_backend_and_back_unchanged() {
    // The source: SQLite with the demo region, a patient's record written and read (both chains).
    let app = common::spawn_with(true, |s| s.database_url = None).await;
    let patient = app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "name": [{"family": "Flyttsson"}], "gender": "female"}),
        )
        .await;
    assert_eq!(patient.status(), 201);
    let patient: Value = patient.json().await.expect("json");
    let id = patient["id"].as_str().expect("id").to_owned();
    let updated = app
        .put(
            &format!("Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id, "name": [{"family": "Flyttsson"}], "gender": "other"}),
        )
        .await;
    assert_eq!(updated.status(), 200);
    let before: Value = app
        .get(&format!("Patient/{id}"))
        .await
        .json()
        .await
        .expect("json");
    app.state.store.close().await;

    let work = tempfile::tempdir().expect("tempdir");
    let source = app.data_dir.path();
    let first = work.path().join("first.jsonl");
    navet(
        &["export", "--file", first.to_str().expect("path")],
        source,
        None,
    );

    // Through the other backend.
    let middle_url = common::test_database_url();
    let middle = work.path().join("middle");
    copy_keys(source, &middle);
    navet(
        &["import", "--file", first.to_str().expect("path")],
        &middle,
        middle_url.as_deref(),
    );
    let second = work.path().join("second.jsonl");
    navet(
        &["export", "--file", second.to_str().expect("path")],
        &middle,
        middle_url.as_deref(),
    );

    // And back into a fresh SQLite data directory.
    let last = work.path().join("last");
    copy_keys(source, &last);
    navet(
        &["import", "--file", second.to_str().expect("path")],
        &last,
        None,
    );
    let third = work.path().join("third.jsonl");
    navet(
        &["export", "--file", third.to_str().expect("path")],
        &last,
        None,
    );

    let (a, b, c) = (rows(&first), rows(&second), rows(&third));
    assert!(
        a["resource_versions"].len() > 10,
        "the demo region and the patient's two versions"
    );
    assert!(!a["change.audit_log"].is_empty() && !a["access.audit_log"].is_empty());
    assert!(
        !a["access.audit_checkpoint"].is_empty(),
        "the checkpoint signed at close"
    );
    for table in a.keys().chain(b.keys()) {
        assert_eq!(
            a.get(table),
            b.get(table),
            "{table}: SQLite → other backend"
        );
        assert_eq!(
            b.get(table),
            c.get(table),
            "{table}: other backend → SQLite"
        );
    }

    // The moved store verifies, offline, against the checkpoints it came with.
    let verify = Command::new(env!("CARGO_BIN_EXE_navet"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&last)
        .output()
        .expect("verify runs");
    assert!(verify.status.success(), "{verify:?}");

    // And serves the same patient, with its history.
    let moved = common::spawn_with(true, |s| {
        s.database_url = None;
        s.data_dir = last.clone();
    })
    .await;
    let after: Value = moved
        .get(&format!("Patient/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after, before);
    let history: Value = moved
        .get(&format!("Patient/{id}/_history"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        history["entry"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
}

#[tokio::test]
async fn an_import_into_a_store_that_holds_data_is_refused_and_changes_nothing() {
    let app = common::spawn_with(true, |s| s.database_url = None).await;
    app.state.store.close().await;
    let work = tempfile::tempdir().expect("tempdir");
    let dump = work.path().join("dump.jsonl");
    navet(
        &["export", "--file", dump.to_str().expect("path")],
        app.data_dir.path(),
        None,
    );
    let before = std::fs::read(&dump).expect("dump");
    let out = Command::new(env!("CARGO_BIN_EXE_navet"))
        .args([
            "import",
            "--file",
            dump.to_str().expect("path"),
            "--data-dir",
        ])
        .arg(app.data_dir.path())
        .env_remove("NAVET_DATABASE_URL")
        .output()
        .expect("navet runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds data"),
        "{out:?}"
    );
    let again = work.path().join("again.jsonl");
    navet(
        &["export", "--file", again.to_str().expect("path")],
        app.data_dir.path(),
        None,
    );
    assert_eq!(rows(&dump), rows(&again));
    assert!(!before.is_empty());
}
