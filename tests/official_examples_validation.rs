//! Every official FHIR R4 (4.0.1) example validates as the R4 definitions say (structure, required bindings,
//! the invariants navet evaluates), and mutation tests: every required binding the examples use, and the
//! invariants navet claims, refuse a mutated example at the right FHIRPath location.
//!
//! Switch: `cargo test --features shared-fhir` (data: `NAVET_SHARED_FHIR`, default `../shared/fhir`).
#![cfg(feature = "shared-fhir")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use navet::fhir::FhirContext;
use navet::fhir::validate::{Finding, Kind, Level, check};
use serde_json::{Value, json};

const EXAMPLES: &str = "hl7.fhir.r4.examples-4.0.1.tgz";

/// Official examples that break the R4 definitions beyond structure (official_examples_structure.rs pins the
/// structural ones): file, a path navet must still report, and why the example, not navet, is wrong. Each
/// was checked against the R4 definitions by hand.
const KNOWN_INVALID: &[(&str, &str, &str)] = &[
    // bdl-7: a collection Bundle whose entries repeat fullUrls (de-Quantity.value, ...) without versionIds.
    (
        "Bundle-dataelements.json",
        "Bundle",
        "bdl-7: repeated fullUrl without meta.versionId",
    ),
    // sdf-4: the R4 build's logical models are not abstract and have no baseDefinition.
    (
        "StructureDefinition-Definition.json",
        "StructureDefinition",
        SDF_4,
    ),
    (
        "StructureDefinition-Event.json",
        "StructureDefinition",
        SDF_4,
    ),
    (
        "StructureDefinition-FiveWs.json",
        "StructureDefinition",
        SDF_4,
    ),
    (
        "StructureDefinition-Request.json",
        "StructureDefinition",
        SDF_4,
    ),
];

const SDF_4: &str = "sdf-4: abstract false and no baseDefinition (a logical model of the R4 build)";

fn examples() -> Vec<(String, Value)> {
    let dir = match std::env::var_os("NAVET_SHARED_FHIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir"),
    };
    let path = dir.join(EXAMPLES);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!(
            "the feature shared-fhir is on but {} cannot be read ({e}); set NAVET_SHARED_FHIR",
            path.display()
        )
    });
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries().expect("a tar.gz") {
        let mut entry = entry.expect("an entry");
        let name = entry.path().expect("a path").to_string_lossy().into_owned();
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
        entry.read_to_string(&mut text).expect("text");
        let value: Value = serde_json::from_str(&text).expect("JSON");
        if value.get("resourceType").is_some() {
            out.push((file.to_owned(), value));
        }
    }
    assert!(out.len() > 5000, "only {} examples", out.len());
    out
}

/// The structurally invalid examples, pinned by official_examples_structure.rs.
fn structurally_invalid(ctx: &FhirContext, value: &Value) -> bool {
    ctx.structure.validate(value).is_err_and(|issues| {
        issues
            .iter()
            .any(|i| i.kind == navet::fhir::structure::IssueKind::Structure)
    })
}

fn errors(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.level == Level::Error)
        .collect()
}

#[test]
fn every_official_example_passes_bindings_and_invariants_except_the_pinned_ones() {
    let ctx = FhirContext::embedded();
    let known: BTreeMap<&str, &str> = KNOWN_INVALID.iter().map(|&(f, p, _)| (f, p)).collect();
    let (mut clean, mut warned, mut allowed) = (0, 0, 0);
    let mut problems = Vec::new();
    let all = examples();
    for (file, value) in &all {
        if structurally_invalid(&ctx, value) {
            continue;
        }
        let findings = check(&ctx, value);
        let errs = errors(&findings);
        match (errs.is_empty(), known.get(file.as_str())) {
            (true, None) => {
                clean += 1;
                if !findings.is_empty() {
                    warned += 1;
                }
            }
            (true, Some(_)) => problems.push(format!("{file}: pinned but now valid; unpin it")),
            (false, Some(path)) if errs.iter().any(|f| f.path == *path) => allowed += 1,
            (false, _) => {
                for f in errs.iter().take(3) {
                    problems.push(format!("{file}: {} @ {}", f.message, f.path));
                }
            }
        }
    }
    println!(
        "{} examples: {clean} without errors ({warned} with warnings only), {allowed} pinned as invalid",
        all.len()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_required_binding_the_examples_use_refuses_a_mutated_code_at_its_path() {
    let ctx: Arc<FhirContext> = FhirContext::embedded();
    let mut exercised: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    // Small examples first: three sites per binding are then found in small resources, and each mutated
    // copy validates quickly.
    let mut all = examples();
    all.sort_by_key(|(_, v)| v.to_string().len());
    for (file, value) in all {
        // Three sites per binding are enough to show it; more would only repeat the same check.
        let needed: Vec<_> = ctx
            .structure
            .bound_codes(&value)
            .into_iter()
            .filter(|site| exercised.get(&site.binding).is_none_or(|&n| n < 3))
            .collect();
        if needed.is_empty()
            || structurally_invalid(&ctx, &value)
            || !errors(&check(&ctx, &value)).is_empty()
        {
            continue;
        }
        for site in needed {
            let count = exercised.entry(site.binding.clone()).or_default();
            if *count >= 3 {
                continue;
            }
            *count += 1;
            let mut mutated = value.clone();
            *mutated.pointer_mut(&site.pointer).expect("the site exists") =
                json!("navet-not-a-code");
            let found = check(&ctx, &mutated);
            let hit = found.iter().any(|f| {
                f.level == Level::Error
                    && f.kind == Kind::Code
                    && f.path == site.path
                    && f.message.contains(&site.value_set)
            });
            if !hit {
                failures.push(format!(
                    "{file}: {} ({}) not refused: {found:?}",
                    site.path, site.binding
                ));
            }
        }
    }
    println!(
        "{} of the {} required code bindings navet checks are used by the examples; each refused a mutation",
        exercised.len(),
        ctx.structure.checked_bindings()
    );
    assert!(
        exercised.len() > 150,
        "only {} bindings exercised",
        exercised.len()
    );
    assert!(
        failures.is_empty(),
        "{}",
        failures[..failures.len().min(10)].join("\n")
    );
}

/// An official example by file name.
fn example(all: &[(String, Value)], file: &str) -> Value {
    all.iter()
        .find(|(f, _)| f == file)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{file} is in the package"))
}

fn assert_refused(ctx: &FhirContext, value: &Value, key: &str, path: &str) {
    let found = check(ctx, value);
    assert!(
        found.iter().any(|f| f.level == Level::Error
            && f.kind == Kind::Invariant
            && f.message.starts_with(key)
            && f.path == path),
        "{key} at {path} not reported: {found:?}"
    );
}

#[test]
fn the_invariants_navet_claims_refuse_mutated_official_examples() {
    let ctx = FhirContext::embedded();
    let all = examples();
    let patient = example(&all, "Patient-example.json");
    assert!(errors(&check(&ctx, &patient)).is_empty());

    // pat-1: a contact with nothing but a gender.
    let mut m = patient.clone();
    m["contact"][0] = json!({"gender": "female"});
    assert_refused(&ctx, &m, "pat-1", "Patient.contact[0]");

    // per-1: a period that ends before it starts.
    let mut m = patient.clone();
    m["name"][0]["period"] = json!({"start": "2020-01-02", "end": "2020-01-01"});
    assert_refused(&ctx, &m, "per-1", "Patient.name[0].period");

    // ref-1: a local reference to nothing contained.
    let mut m = patient.clone();
    m["managingOrganization"]["reference"] = json!("#nowhere");
    assert_refused(&ctx, &m, "ref-1", "Patient.managingOrganization");

    // dom-2 .. dom-5 on an example with a contained resource.
    let with_contained = all
        .iter()
        .map(|(_, v)| v)
        .find(|v| {
            v["resourceType"] != "Bundle"
                && v["contained"].as_array().is_some_and(|c| c.len() == 1)
                && errors(&check(&ctx, v)).is_empty()
        })
        .expect("an example with one contained resource")
        .clone();
    let ty = with_contained["resourceType"].as_str().unwrap().to_owned();
    let mut m = with_contained.clone();
    m["contained"][0]["contained"] = json!([{"resourceType": "Basic", "code": {"text": "x"}}]);
    assert_refused(&ctx, &m, "dom-2", &ty);
    let mut m = with_contained.clone();
    m["contained"][0]["id"] = json!("navet-unreferenced");
    assert_refused(&ctx, &m, "dom-3", &ty);
    let mut m = with_contained.clone();
    m["contained"][0]["meta"] = json!({"versionId": "1"});
    assert_refused(&ctx, &m, "dom-4", &ty);
    let mut m = with_contained.clone();
    m["contained"][0]["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]});
    assert_refused(&ctx, &m, "dom-5", &ty);

    // ext-1: an extension with neither value nor extensions.
    let mut m = patient.clone();
    m["extension"] = json!([{"url": "http://example.org/empty"}]);
    assert_refused(&ctx, &m, "ext-1", "Patient.extension[0]");

    // dom-6 is a warning, never an error.
    let mut m = patient.clone();
    m.as_object_mut().unwrap().remove("text");
    let found = check(&ctx, &m);
    assert!(
        found
            .iter()
            .any(|f| f.level == Level::Warning && f.message.starts_with("dom-6"))
    );
    assert!(errors(&found).is_empty());

    // Every invariant key navet evaluates is named once in the report below, for the final figures.
    let keys: BTreeSet<&str> = ctx
        .invariants
        .skipped()
        .iter()
        .map(|(k, _, _)| k.as_str())
        .collect();
    println!(
        "{} invariants evaluated, {} places skipped ({} keys): {keys:?}",
        ctx.invariants.evaluated(),
        ctx.invariants.skipped().len(),
        keys.len()
    );
}
