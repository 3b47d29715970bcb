//! Criterion benchmarks of validation (structure, required bindings, invariants, Swedish rules:
//! `navet::fhir::validate::check`) per resource type, and of FHIR XML encode/decode (`navet::fhir::xml`).
//! With the shared FHIR data present (`NAVET_SHARED_FHIR` or `../shared/fhir`), also the whole set of
//! official examples, for the resources-per-second figure.
//!
//! Run: `cargo bench --bench validation -- --warm-up-time 1 --measurement-time 3`.

use std::io::Read;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

use navet::fhir::FhirContext;
use navet::fhir::validate::check;
use navet::fhir::xml::{json_to_xml, xml_to_json};

fn patient(i: usize) -> Value {
    json!({
        "resourceType": "Patient",
        "id": format!("p{i}"),
        "meta": {"versionId": "1", "lastUpdated": "2024-05-01T10:00:00.123+02:00"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Anna Andersson</div>"},
        "identifier": [{"system": "http://electronichealth.se/identifier/personnummer", "value": "191212121212"}],
        "active": true,
        "name": [{"use": "official", "family": "Andersson", "given": ["Anna", "Maria"],
            "period": {"start": "1912-12-12"}}],
        "telecom": [{"system": "phone", "value": "+46 8 123 456", "use": "home"}],
        "gender": "female",
        "birthDate": "1912-12-12",
        "address": [{"use": "home", "line": ["Storgatan 1"], "city": "Kristianstad", "postalCode": "291 31"}],
        "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
            "name": {"family": "Andersson"}, "telecom": [{"system": "phone", "value": "+46 70 000 00 00"}]}],
        "generalPractitioner": [{"reference": "Organization/vc1"}]
    })
}

fn resources() -> Vec<(&'static str, Value)> {
    let task = json!({"resourceType": "Task", "status": "requested", "intent": "order", "priority": "routine",
        "code": {"text": "IV antibiotika"}, "for": {"reference": "Patient/p1"},
        "executionPeriod": {"start": "2024-05-01T08:00:00+02:00", "end": "2024-05-01T09:00:00+02:00"},
        "requester": {"reference": "Organization/h1"}, "owner": {"reference": "Organization/mtn1"},
        "restriction": {"repetitions": 4, "period": {"start": "2024-05-01", "end": "2024-05-05"}}});
    let service_request = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "category": [{"text": "punktinsats"}], "code": {"text": "Blodtransfusion"},
        "subject": {"reference": "Patient/p1"}, "requester": {"reference": "Organization/h1"},
        "performer": [{"reference": "Organization/mtn1"}],
        "occurrenceTiming": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d", "boundsDuration":
            {"value": 5, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}}}});
    let encounter = json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2024-05-01T08:00:00+02:00", "end": "2024-05-01T08:30:00+02:00"},
        "reasonCode": [{"text": "IV antibiotika"}]});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": (0..100).map(|i| json!({
        "fullUrl": format!("urn:uuid:00000000-0000-4000-8000-{i:012}"),
        "resource": patient(i), "request": {"method": "POST", "url": "Patient"}})).collect::<Vec<_>>()});
    vec![
        ("Patient", patient(1)),
        ("Task", task),
        ("ServiceRequest", service_request),
        ("Encounter", encounter),
        ("Bundle-100-patients", bundle),
    ]
}

fn official_examples() -> Option<Vec<Value>> {
    let dir = std::env::var_os("NAVET_SHARED_FHIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir"));
    let file = std::fs::File::open(dir.join("hl7.fhir.r4.examples-4.0.1.tgz")).ok()?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let name = entry.path().ok()?.to_string_lossy().into_owned();
        if !name.ends_with(".json")
            || name.ends_with("package.json")
            || name.ends_with(".index.json")
        {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).ok()?;
        if let Ok(v) = serde_json::from_str::<Value>(&text)
            && v.get("resourceType").is_some()
        {
            out.push(v);
        }
    }
    Some(out)
}

fn bench(c: &mut Criterion) {
    let ctx = FhirContext::embedded();
    let mut group = c.benchmark_group("validate");
    for (name, value) in resources() {
        assert!(
            check(&ctx, &value)
                .iter()
                .all(|f| f.level != navet::fhir::validate::Level::Error),
            "{name} must be valid"
        );
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| check(&ctx, std::hint::black_box(&value)))
        });
    }
    if let Some(examples) = official_examples() {
        group.throughput(Throughput::Elements(examples.len() as u64));
        group.sample_size(10);
        group.bench_function("all-official-examples", |b| {
            b.iter(|| examples.iter().map(|v| check(&ctx, v).len()).sum::<usize>())
        });
    } else {
        eprintln!("no shared FHIR data: the official-examples figure is not measured");
    }
    group.finish();

    let mut group = c.benchmark_group("xml");
    for (name, value) in resources() {
        let json_text = value.to_string();
        let xml = json_to_xml(&ctx.structure, &json_text).expect("encodes");
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| json_to_xml(&ctx.structure, std::hint::black_box(&json_text)))
        });
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| xml_to_json(&ctx.structure, std::hint::black_box(xml.as_bytes())))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
