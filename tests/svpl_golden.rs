//! The SVPL translation alone (no server): the golden files in tests/golden/svpl/ (README there), a renamed
//! element in a copy of the mappings, round trips, and the reader on arbitrary and mutated input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use navet::svpl::mapping::Mapping;
use navet::svpl::message::{self, Message};
use navet::svpl::translate::{self, Case, Context, Current, Translation};
use serde_json::{Value, json};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/svpl")
}

/// The time of receipt every golden case is translated at.
const RECEIVED: &str = "2026-11-23T09:20:00Z";
const GOLDEN_PATIENT: &str = "Patient/golden-patient";

/// A stand-in for the store along one chain of messages: what each message created and changed, the
/// resources as they are now. It builds the case a follow-up sees the way `receive.rs` does.
#[derive(Default)]
struct Chain {
    resources: BTreeMap<(String, String), Value>,
    messages: Vec<(String, String, String, Vec<String>, Vec<String>)>, // sender, id, case, parties, created
}

impl Chain {
    fn case_for(&self, m: &Message) -> Case {
        let Some(reference) = &m.envelope.reference else {
            return Case::default();
        };
        let Some(row) = self.messages.iter().find(|r| &r.1 == reference) else {
            return Case::default();
        };
        let resources = self
            .resources
            .iter()
            .filter(|((ty, _), _)| ty != "Provenance")
            .map(|((ty, id), v)| Current {
                resource_type: ty.clone(),
                id: id.clone(),
                value: v.clone(),
            })
            .collect();
        Case {
            case_ref: Some(row.2.clone()),
            opened_by: self.messages.first().map(|r| r.0.clone()),
            resources,
            referenced: row.4.clone(),
            referenced_parties: row.3.clone(),
        }
    }

    fn apply(&mut self, m: &Message, t: &Translation) {
        let mut created = Vec::new();
        for w in &t.writes {
            let mut v = w.value.clone();
            v["resourceType"] = json!(w.resource_type);
            v["id"] = json!(w.id);
            self.resources
                .insert((w.resource_type.clone(), w.id.clone()), v);
            if w.create {
                created.push(format!("{}/{}", w.resource_type, w.id));
            }
        }
        self.messages.push((
            m.envelope.sender.hsa.to_string(),
            m.envelope.id.clone(),
            t.case_ref.clone(),
            t.parties.clone(),
            created,
        ));
    }
}

fn context(case: Case) -> Context {
    Context {
        patient: GOLDEN_PATIENT.into(),
        received: RECEIVED.parse().unwrap(),
        case,
    }
}

/// The golden cases in name order, grouped by chain (the name up to the first `-`).
fn cases() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(golden_dir())
        .expect("tests/golden/svpl")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".in.xml")?
                .to_owned();
            Some((name, path))
        })
        .collect();
    out.sort();
    out
}

/// What a golden case's expected file holds: the resources the message becomes, in write order.
fn render(m: &Message, t: &Translation, map: &Mapping) -> Value {
    json!({
        "type": m.envelope.kind.as_str(),
        "case": t.case_ref,
        "parties": t.parties,
        "patientIfNew": navet::svpl::patient::resource(&m.envelope.patient, map),
        "writes": t.writes.iter().map(|w| json!({
            "action": if w.create { "create" } else { "update" },
            "resourceType": w.resource_type,
            "id": w.id,
            "resource": w.value,
        })).collect::<Vec<_>>(),
    })
}

fn run_all(map: &Mapping) -> Vec<(String, Value)> {
    let mut chains: BTreeMap<String, Chain> = BTreeMap::new();
    let mut out = Vec::new();
    for (name, path) in cases() {
        let bytes = std::fs::read(&path).unwrap();
        let m = message::read(&bytes, map).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let chain = chains
            .entry(name.split('-').next().unwrap().to_owned())
            .or_default();
        let t = translate::translate(&m, &context(chain.case_for(&m)), map)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        chain.apply(&m, &t);
        out.push((name, render(&m, &t, map)));
    }
    out
}

#[test]
fn every_golden_message_translates_to_its_expected_fhir_resources() {
    let map = Mapping::embedded();
    let results = run_all(&map);
    assert!(results.len() >= 11, "the golden folder lost its cases");
    for (name, got) in results {
        let path = golden_dir().join(format!("{name}.expected.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run the ignored regenerate test",
                path.display()
            )
        });
        let expected: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            got,
            expected,
            "{name}: the translation differs from {}",
            path.display()
        );
    }
}

/// Rebuilds the expected files: `cargo test --test svpl_golden -- --ignored regenerate`. Review the diff.
#[test]
#[ignore]
fn regenerate_the_golden_expected_files() {
    let map = Mapping::embedded();
    for (name, got) in run_all(&map) {
        let path = golden_dir().join(format!("{name}.expected.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
}
