//! Lossless storage, proven on the official FHIR R4 examples (switch: `--features shared-fhir`).
//!
//! Every example in `hl7.fhir.r4.examples-4.0.1.tgz` that is a resource is POSTed, read back and compared
//! leaf by leaf by JSON path, with numbers compared as written (so `1.50` vs `1.5` is a difference).
//! Only `id`, `meta.versionId` and `meta.lastUpdated` may differ.
#![cfg(feature = "shared-fhir")]

mod common;

use std::io::Read;

use indexmap::IndexMap;
use serde_json::value::RawValue;

fn examples_path() -> std::path::PathBuf {
    let dir = std::env::var("NAVET_SHARED_FHIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir")
        });
    let path = dir.join("hl7.fhir.r4.examples-4.0.1.tgz");
    assert!(
        path.exists(),
        "the shared-fhir suite is switched on but {} is missing; set NAVET_SHARED_FHIR to the folder holding it",
        path.display()
    );
    path
}

/// Path → leaf text, numbers and strings as written.
fn flatten(raw: &str, path: String, out: &mut Vec<(String, String)>) {
    let t = raw.trim_start();
    if t.starts_with('{') {
        let members: IndexMap<String, Box<RawValue>> = serde_json::from_str(raw).expect("object");
        for (k, v) in members {
            flatten(v.get(), format!("{path}.{k}"), out);
        }
    } else if t.starts_with('[') {
        let items: Vec<Box<RawValue>> = serde_json::from_str(raw).expect("array");
        for (i, v) in items.into_iter().enumerate() {
            flatten(v.get(), format!("{path}[{i}]"), out);
        }
    } else {
        out.push((path, t.trim_end().to_owned()));
    }
}

fn leaves(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    flatten(text, String::new(), &mut out);
    out.retain(|(p, _)| !matches!(p.as_str(), ".id" | ".meta.versionId" | ".meta.lastUpdated"));
    out.sort();
    out
}

/// The read-back leaves without navet's owner tag (appended after the client's tags, so their indices stay),
/// checking that it is there.
fn leaves_without_owner_tag(text: &str, name: &str) -> Vec<(String, String)> {
    let mut out = leaves(text);
    let owner = out
        .iter()
        .find(|(p, v)| {
            p.starts_with(".meta.tag[") && p.ends_with("].system") && v == "\"urn:navet:owner\""
        })
        .map(|(p, _)| p.trim_end_matches("system").to_owned())
        .unwrap_or_else(|| panic!("{name}: the stored version has no owner tag"));
    out.retain(|(p, _)| !p.starts_with(&owner));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_official_example_reads_back_identical() {
    // The default 10 MiB body limit, as `navet serve` runs.
    let app = common::spawn_with(false, |s| {
        s.max_body_bytes = navet::config::DEFAULT_MAX_BODY
    })
    .await;
    let file = std::fs::File::open(examples_path()).expect("open tgz");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut posted, mut identical, mut refused) = (0usize, 0usize, Vec::new());
    let mut differences = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        // package.json and .index.json describe the package, they are not resources.
        if !name.ends_with(".json")
            || name.ends_with("package.json")
            || name.ends_with(".index.json")
        {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("read");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(ty) = v["resourceType"].as_str() else {
            continue;
        };
        // A body over the server's limit is refused with 413 before it is read; sending it only to watch the
        // connection close would test the HTTP client, not navet.
        if text.len() > app.state.max_body_bytes {
            refused.push(format!(
                "{name}: over the {} byte body limit",
                app.state.max_body_bytes
            ));
            continue;
        }
        let r = app
            .client
            .post(format!("{}/{ty}", app.fhir))
            .header("content-type", "application/fhir+json")
            .body(text.clone())
            .send()
            .await
            .expect("post");
        if r.status() != 201 {
            refused.push(format!("{name}: {}", r.status()));
            continue;
        }
        posted += 1;
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let back = app
            .client
            .get(location.trim_end_matches("/_history/1"))
            .send()
            .await
            .expect("read")
            .text()
            .await
            .expect("text");
        let (want, got) = (leaves(&text), leaves_without_owner_tag(&back, &name));
        if want == got {
            identical += 1;
        } else {
            let first = want
                .iter()
                .zip(got.iter())
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("{a:?} vs {b:?}"));
            differences.push(format!(
                "{name}: {}",
                first.unwrap_or_else(|| "different number of leaves".into())
            ));
        }
    }
    println!("posted {posted}, identical {identical}");
    println!(
        "refused {}: {:?}",
        refused.len(),
        refused.iter().take(20).collect::<Vec<_>>()
    );
    assert!(
        differences.is_empty(),
        "{} examples changed: {:?}",
        differences.len(),
        &differences[..differences.len().min(10)]
    );
    assert!(
        posted > 2500,
        "suspiciously few examples accepted: {posted}"
    );
    assert_eq!(posted, identical);
}
