//! FHIR XML is lossless in the same sense as JSON, proven on the official FHIR R4 examples
//! (switch: `--features shared-fhir`).
//!
//! 1. Codec: every example, JSON → XML → JSON, is the same JSON (members in any order, numbers as written).
//! 2. API: every example navet accepts, POSTed as XML and read back with `_format=xml`, decodes to the
//!    example as posted (only `id`, `meta.versionId`, `meta.lastUpdated` and navet's owner tag differ).
#![cfg(feature = "shared-fhir")]

mod common;

use std::io::Read;

use navet::fhir::structure::Structure;
use navet::fhir::xml::{Json, json_to_xml, xml_to_json};

fn examples() -> Vec<(String, String)> {
    let dir = std::env::var("NAVET_SHARED_FHIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir")
        });
    let path = dir.join("hl7.fhir.r4.examples-4.0.1.tgz");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!(
            "the shared-fhir suite is switched on but {} cannot be read: {e}",
            path.display()
        )
    });
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let Some(file) = name.strip_prefix("package/") else {
            continue;
        };
        if file.contains('/')
            || !file.ends_with(".json")
            || file == "package.json"
            || file == ".index.json"
        {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("read");
        let is_resource = serde_json::from_str::<serde_json::Value>(&text)
            .is_ok_and(|v| v.get("resourceType").is_some());
        if is_resource {
            out.push((file.to_owned(), text));
        }
    }
    assert!(out.len() > 5000);
    out
}

/// Examples that are not valid R4 structure (official_examples_structure.rs pins them): XML needs the
/// structure to know each element's type, so these cannot be encoded and are counted apart.
fn encodable(structure: &Structure, text: &str) -> bool {
    let value: serde_json::Value = serde_json::from_str(text).expect("JSON");
    structure.validate(&value).is_ok_or_codes_only()
}

trait CodesOnly {
    fn is_ok_or_codes_only(&self) -> bool;
}

impl CodesOnly for Result<(), Vec<navet::fhir::structure::StructureIssue>> {
    fn is_ok_or_codes_only(&self) -> bool {
        match self {
            Ok(()) => true,
            Err(issues) => issues
                .iter()
                .all(|i| i.kind == navet::fhir::structure::IssueKind::Code),
        }
    }
}

#[test]
fn every_official_example_survives_json_to_xml_to_json() {
    let structure = Structure::embedded();
    let (mut converted, mut identical, mut skipped) = (0, 0, 0);
    let mut failures = Vec::new();
    for (file, text) in examples() {
        if !encodable(&structure, &text) {
            skipped += 1;
            continue;
        }
        converted += 1;
        let xml = match json_to_xml(&structure, &text) {
            Ok(xml) => xml,
            Err(e) => {
                failures.push(format!("{file}: encode: {e}"));
                continue;
            }
        };
        let back = match xml_to_json(&structure, xml.as_bytes()) {
            Ok(back) => back,
            Err(e) => {
                failures.push(format!("{file}: decode: {e}"));
                continue;
            }
        };
        if Json::parse(&text)
            .expect("json")
            .same(&Json::parse(&back).expect("json"))
        {
            identical += 1;
        } else {
            failures.push(format!("{file}: differs after the round trip"));
        }
    }
    println!(
        "converted {converted}, identical {identical}, not encodable (invalid structure) {skipped}"
    );
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(converted, identical);
    assert!(skipped <= 14, "{skipped} examples not encodable");
}

/// The example without the members navet sets, for comparison.
fn comparable(mut v: Json) -> Json {
    if let Json::Obj(members) = &mut v {
        members.retain(|(k, _)| k != "id");
        for (k, m) in members.iter_mut() {
            if k == "meta"
                && let Json::Obj(meta) = m
            {
                meta.retain(|(k, _)| k != "versionId" && k != "lastUpdated");
                for (k, tags) in meta.iter_mut() {
                    if k == "tag"
                        && let Json::Arr(tags) = tags
                    {
                        tags.retain(|t| {
                            !matches!(t, Json::Obj(c) if c.iter().any(|(k, v)| k == "system" && *v == Json::Str("urn:navet:owner".into())))
                        });
                    }
                }
                meta.retain(|(k, v)| !(k == "tag" && *v == Json::Arr(Vec::new())));
            }
        }
        members.retain(|(k, v)| !(k == "meta" && *v == Json::Obj(Vec::new())));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_official_example_posted_as_xml_reads_back_identical_as_xml() {
    let app = common::spawn_with(false, |s| {
        s.max_body_bytes = navet::config::DEFAULT_MAX_BODY
    })
    .await;
    let structure = Structure::embedded();
    let (mut posted, mut identical, mut refused) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    let mut refusals: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
    for (file, text) in examples() {
        if !encodable(&structure, &text) {
            continue;
        }
        let ty = serde_json::from_str::<serde_json::Value>(&text).expect("json")["resourceType"]
            .as_str()
            .expect("type")
            .to_owned();
        let xml = json_to_xml(&structure, &text).expect("encodes (see the codec test)");
        if xml.len() > app.state.max_body_bytes {
            refused += 1;
            continue;
        }
        let r = app
            .client
            .post(format!("{}/{ty}", app.fhir))
            .header("content-type", "application/fhir+xml")
            .header("accept", "application/fhir+xml")
            .body(xml)
            .send()
            .await
            .expect("post");
        if r.status() != 201 {
            // The refusals are the JSON suite's (official_examples_roundtrip.rs pins each with its reason).
            refused += 1;
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            let list = refusals.entry(status).or_default();
            if list.len() < 3 {
                list.push(format!("{file}: {}", &body[..body.len().min(300)]));
            }
            continue;
        }
        posted += 1;
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let back = app
            .client
            .get(format!(
                "{}?_format=xml",
                location.trim_end_matches("/_history/1")
            ))
            .send()
            .await
            .expect("read");
        let back = back.text().await.expect("text");
        let json = match xml_to_json(&structure, back.as_bytes()) {
            Ok(json) => json,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        let want = comparable(Json::parse(&text).expect("json"));
        let got = comparable(Json::parse(&json).expect("json"));
        if want.same(&got) {
            identical += 1;
        } else {
            let mut a = String::new();
            want.write(&mut a);
            let mut b = String::new();
            got.write(&mut b);
            let at = a
                .bytes()
                .zip(b.bytes())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            failures.push(format!(
                "{file}: differs at {at}: {} | {}",
                a.get(at.saturating_sub(80)..(at + 80).min(a.len()))
                    .unwrap_or(""),
                b.get(at.saturating_sub(80)..(at + 80).min(b.len()))
                    .unwrap_or("")
            ));
        }
    }
    println!("posted {posted} as XML, identical {identical}, refused {refused}: {refusals:#?}");
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(posted, identical);
    assert!(posted > 5000, "only {posted} posted");
}
