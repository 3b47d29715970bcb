//! Every official FHIR R4 (4.0.1) example must pass navet's structural validation.
//!
//! Needs the shared FHIR data (`hl7.fhir.r4.examples-4.0.1.tgz`), so it only runs with
//! `cargo test --features shared-fhir`; the directory is `NAVET_SHARED_FHIR`, by default `../shared/fhir`
//! next to the repository.
#![cfg(feature = "shared-fhir")]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use navet::fhir::structure::Structure;

const EXAMPLES: &str = "hl7.fhir.r4.examples-4.0.1.tgz";

/// Official examples that break the R4 4.0.1 definitions themselves: file, a path the validator must still
/// report (so an entry cannot outlive the bug it excuses, nor hide a different failure), and why the example,
/// not the validator, is wrong. Each was checked against the R4 definitions by hand.
const KNOWN_INVALID: &[(&str, &str, &str)] = &[
    // The build's own IG resource (two copies): ImplementationGuide.name and .status are 1..1 in R4.
    (
        "ig-r4.json",
        "ImplementationGuide.status",
        "no name and no status (both 1..1)",
    ),
    (
        "ImplementationGuide-fhir.json",
        "ImplementationGuide.status",
        "no name and no status (both 1..1)",
    ),
    // Questionnaire.item.linkId is 1..1; the nested items of this example have none (32 of them).
    (
        "Questionnaire-qs1.json",
        "Questionnaire.item[0].item[0].linkId",
        "nested items without linkId (1..1)",
    ),
    // SearchParameter.base is 1..*; these generated extension search parameters have none.
    (
        "SearchParameter-codesystem-extensions-CodeSystem-author.json",
        "SearchParameter.base",
        NO_BASE,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-effective.json",
        "SearchParameter.base",
        NO_BASE,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-end.json",
        "SearchParameter.base",
        NO_BASE,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-keyword.json",
        "SearchParameter.base",
        NO_BASE,
    ),
    (
        "SearchParameter-codesystem-extensions-CodeSystem-workflow.json",
        "SearchParameter.base",
        NO_BASE,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-author.json",
        "SearchParameter.base",
        NO_BASE,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-effective.json",
        "SearchParameter.base",
        NO_BASE,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-end.json",
        "SearchParameter.base",
        NO_BASE,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-keyword.json",
        "SearchParameter.base",
        NO_BASE,
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-workflow.json",
        "SearchParameter.base",
        NO_BASE,
    ),
    // An id is at most 64 characters (datatypes.html#id); this one has 67.
    (
        "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json",
        "SearchParameter.id",
        "id of 67 characters (max 64)",
    ),
];

const NO_BASE: &str = "no base (1..*)";

fn examples_path() -> PathBuf {
    let dir = match std::env::var_os("NAVET_SHARED_FHIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir"),
    };
    dir.join(EXAMPLES)
}

/// The resources of the package: `package/*.json` except `package/package.json` (the NPM manifest) and
/// `package/.index.json` (the package index), which are not resources; anything else without a
/// `resourceType` is skipped too, and counted so a change in the package shows.
fn official_examples() -> (Vec<(String, serde_json::Value)>, usize) {
    let path = examples_path();
    let file = File::open(&path).unwrap_or_else(|e| {
        panic!(
            "the feature shared-fhir is on but {} cannot be read ({e}); set NAVET_SHARED_FHIR to the directory \
             holding {EXAMPLES}, or test without the feature",
            path.display()
        )
    });
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut examples = Vec::new();
    let mut skipped = 0;
    for entry in archive.entries().expect("the examples archive is a tar.gz") {
        let mut entry = entry.expect("a readable archive entry");
        let name = entry
            .path()
            .expect("an entry path")
            .to_string_lossy()
            .into_owned();
        let Some(file_name) = name.strip_prefix("package/") else {
            continue;
        };
        if file_name.contains('/') || !file_name.ends_with(".json") {
            continue;
        }
        if file_name == "package.json" || file_name == ".index.json" {
            skipped += 1;
            continue;
        }
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if value.get("resourceType").is_none() {
            skipped += 1;
            continue;
        }
        examples.push((file_name.to_owned(), value));
    }
    (examples, skipped)
}

#[test]
fn every_official_r4_example_is_structurally_valid() {
    let structure = Structure::embedded();
    let (examples, skipped) = official_examples();
    assert!(
        examples.len() > 5000,
        "only {} examples found ({skipped} skipped)",
        examples.len()
    );

    let known: BTreeMap<&str, &str> = KNOWN_INVALID
        .iter()
        .map(|&(file, path, _reason)| (file, path))
        .collect();
    let mut clean = 0;
    let mut failures = Vec::new();
    let mut allowed = 0;
    for (file_name, value) in &examples {
        match (structure.validate(value), known.get(file_name.as_str())) {
            (Ok(()), None) => clean += 1,
            (Ok(()), Some(_)) => failures.push(format!(
                "{file_name}: allow-listed but now valid; remove it"
            )),
            (Err(issues), Some(path)) if issues.iter().any(|issue| issue.path == *path) => {
                allowed += 1
            }
            (Err(issues), expected) => {
                if let Some(path) = expected {
                    failures.push(format!(
                        "{file_name}: allow-listed for {path}, but that is no longer reported"
                    ));
                }
                for issue in issues.iter().take(5) {
                    failures.push(format!("{file_name}: {}: {}", issue.path, issue.message));
                }
            }
        }
    }
    println!(
        "validated {} official examples, {clean} without issues",
        examples.len()
    );
    println!("{allowed} allow-listed examples still fail as recorded");
    for file in known.keys() {
        if !examples.iter().any(|(name, _)| name == file) {
            failures.push(format!("{file}: allow-listed but not in the package"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
