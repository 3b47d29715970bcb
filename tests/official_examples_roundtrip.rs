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

/// The examples navet refuses, each with the status it answers and why. Any other refusal, or one of these
/// accepted, fails the test.
const KNOWN_REFUSED: &[(&str, &str, &str)] = &[
    ("AuditEvent-example-disclosure.json", "405", LOG),
    ("AuditEvent-example-error.json", "405", LOG),
    ("AuditEvent-example-login.json", "405", LOG),
    ("AuditEvent-example-logout.json", "405", LOG),
    ("AuditEvent-example-media.json", "405", LOG),
    ("AuditEvent-example-pixQuery.json", "405", LOG),
    ("AuditEvent-example-rest.json", "405", LOG),
    ("AuditEvent-example-search.json", "405", LOG),
    ("AuditEvent-example.json", "405", LOG),
    ("Bundle-dataelements.json", "413", TOO_BIG),
    ("Bundle-resources.json", "413", TOO_BIG),
    ("Bundle-valueset-expansions.json", "413", TOO_BIG),
    // Structurally invalid against R4 itself; official_examples_structure.rs pins each one's issue.
    ("ig-r4.json", "422", INVALID),
    ("ImplementationGuide-fhir.json", "422", INVALID),
    ("Questionnaire-qs1.json", "422", INVALID),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-author.json",
        "422",
        INVALID,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-effective.json",
        "422",
        INVALID,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-end.json",
        "422",
        INVALID,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-keyword.json",
        "422",
        INVALID,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-workflow.json",
        "422",
        INVALID,
    ),
    (
        "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json",
        "422",
        INVALID,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-author.json",
        "422",
        INVALID,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-effective.json",
        "422",
        INVALID,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-end.json",
        "422",
        INVALID,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-keyword.json",
        "422",
        INVALID,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-workflow.json",
        "422",
        INVALID,
    ),
    // Break an R4 invariant (official_examples_validation.rs pins each one's reason).
    ("StructureDefinition-Definition.json", "422", INVARIANT),
    ("StructureDefinition-Event.json", "422", INVARIANT),
    ("StructureDefinition-FiveWs.json", "422", INVARIANT),
    ("StructureDefinition-Request.json", "422", INVARIANT),
    ("Subscription-example.json", "422", SUBSCRIPTION),
    ("Subscription-example-error.json", "422", SUBSCRIPTION),
];
const SUBSCRIPTION: &str = "criteria on Observation and a public endpoint navet would deliver to: subscriptions are \
     checked (issue 9: Task, ServiceRequest, CarePlan, Communication, Appointment, Encounter only)";
const LOG: &str = "the access log is written by navet only: AuditEvent cannot be created";
const TOO_BIG: &str = "over the 10 MiB body limit of `navet serve`";
const INVALID: &str = "structurally invalid";
const INVARIANT: &str = "sdf-4: a logical model without baseDefinition";

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
        let file = name.trim_start_matches("package/").to_owned();
        if text.len() > app.state.max_body_bytes {
            refused.push((file, "413".to_owned()));
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
            refused.push((file, r.status().as_str().to_owned()));
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
    println!("refused {}: {refused:?}", refused.len());
    assert!(
        differences.is_empty(),
        "{} examples changed: {:?}",
        differences.len(),
        &differences[..differences.len().min(10)]
    );
    let mut expected: Vec<(String, String)> = KNOWN_REFUSED
        .iter()
        .map(|(file, status, _)| (file.to_string(), status.to_string()))
        .collect();
    expected.sort();
    refused.sort();
    assert_eq!(refused, expected, "the refused examples and their statuses");
    assert_eq!(posted, identical);
}
