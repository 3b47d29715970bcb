//! Criterion benchmarks of search on a generated store (issue 14): `Observation?patient=&date=` and the
//! chained `Observation?patient.identifier=`, through the query parser and the SQLite store as a care
//! principal sees them (its visibility rule rendered into the query), without HTTP and authentication
//! (tests/benches/fhir.rs measures those).
//!
//! The store holds patients with 19 Observations each, written through navet's write path (validation,
//! index, sharing facts). Size and reuse:
//!
//! ```sh
//! cargo bench --bench search                                   # 20,000 resources, a fresh temp store
//! NAVET_SEARCH_BENCH_RESOURCES=1000000 NAVET_SEARCH_BENCH_DIR=/tmp/navet-search-1m \
//!   cargo bench --bench search -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! With `NAVET_SEARCH_BENCH_DIR` the store is kept and reused when it already holds that many resources.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

use navet::config::{Overrides, Settings};
use navet::fhir::visibility::Visibility;
use navet::search::query::parse_query;
use navet::state::AppState;
use navet::store::Actor;

const PRINCIPAL: &str = "SE2321000255-MTN01";
const PER_PATIENT: usize = 20; // the patient and 19 Observations
const BATCH: usize = 500;
const GENERATED_KEY: &str = "search_bench_resources";

fn actor() -> Actor {
    Actor {
        principal: Arc::from(PRINCIPAL),
        client_id: Some(Arc::from("demo-mtn-kristianstad")),
        user: Some(Arc::from("SE2321000255-P0101")),
        visibility: Visibility::Care {
            sees: vec![PRINCIPAL.to_owned()].into(),
            emergency: false,
        },
        population_register: false,
    }
}

fn patient(i: usize) -> serde_json::Value {
    json!({"resourceType": "Patient",
           "identifier": [{"system": "http://electronichealth.se/identifier/nationelltReservnummer",
                           "value": format!("BENCH-{i}")}],
           "name": [{"family": format!("Bench{i}"), "given": ["Test"]}], "gender": "female"})
}

fn observation(patient_id: &str, k: usize) -> serde_json::Value {
    json!({"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": if k.is_multiple_of(2) { "1988-5" } else { "718-7" }}]},
           "subject": {"reference": format!("Patient/{patient_id}")},
           "effectiveDateTime": format!("2026-{:02}-{:02}T08:00:00Z", 1 + k % 12, 1 + k % 28),
           "valueQuantity": {"value": k, "unit": "mg/L", "system": "http://unitsofmeasure.org", "code": "mg/L"}})
}

/// Writes patients and their Observations until the store holds `total` resources.
async fn generate(state: &AppState, total: usize) {
    let patients = total.div_ceil(PER_PATIENT);
    let mut i = 0;
    while i < patients {
        let ctx = state.fhir.clone();
        let from = i;
        let to = (i + BATCH / PER_PATIENT).min(patients);
        state
            .store
            .transact(&actor(), move |tx| {
                for p in from..to {
                    let prepared =
                        navet::fhir::ops::prepare(&ctx, patient(p).to_string().as_bytes(), None)?;
                    let created = navet::fhir::ops::create(&ctx, tx, &prepared, None, None)?;
                    for k in 0..PER_PATIENT - 1 {
                        let body = observation(&created.version.id, k).to_string();
                        let prepared = navet::fhir::ops::prepare(&ctx, body.as_bytes(), None)?;
                        navet::fhir::ops::create(&ctx, tx, &prepared, None, None)?;
                    }
                }
                Ok(())
            })
            .await
            .expect("generate");
        i = to;
    }
    let n = total.to_string();
    state
        .store
        .transact(&Actor::system(), move |tx| {
            tx.set_setting(GENERATED_KEY, &n)?;
            Ok(())
        })
        .await
        .expect("mark");
}

fn bench(c: &mut Criterion) {
    let total: usize = std::env::var("NAVET_SEARCH_BENCH_RESOURCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = std::env::var("NAVET_SEARCH_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| temp.path().to_path_buf());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let state = rt.block_on(async {
        let mut s = Settings::load(&Overrides {
            data_dir: Some(dir.clone()),
            ..Overrides::default()
        })
        .expect("demo configuration");
        s.seed_demo = false;
        let state = navet::startup::build_state(&s).await.expect("state");
        let have = state
            .store
            .get_setting(GENERATED_KEY)
            .await
            .expect("setting");
        if have.as_deref() != Some(total.to_string().as_str()) {
            let started = std::time::Instant::now();
            generate(&state, total).await;
            eprintln!(
                "generated {total} resources in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        state
    });
    // A patient in the middle of the store, and its id.
    let middle = total.div_ceil(PER_PATIENT) / 2;
    let patient_id = rt.block_on(async {
        let pairs = vec![(
            "identifier".to_owned(),
            format!("http://electronichealth.se/identifier/nationelltReservnummer|BENCH-{middle}"),
        )];
        let q = parse_query(&state.fhir.params, "Patient", &pairs, false).expect("query");
        let page = state
            .store
            .search(&actor(), "Patient", q, 0, 1)
            .await
            .expect("search");
        page.matches[0].id.clone()
    });
    let run = |pairs: Vec<(String, String)>, expect: usize| {
        let q = parse_query(&state.fhir.params, "Observation", &pairs, false).expect("query");
        let page = rt
            .block_on(state.store.search(&actor(), "Observation", q, 0, 50))
            .expect("search");
        assert_eq!(page.matches.len(), expect, "{pairs:?}");
    };
    let by_patient_date = vec![
        ("patient".to_owned(), patient_id.clone()),
        ("date".to_owned(), "ge2026-07-01".to_owned()),
    ];
    let chained = vec![(
        "patient.identifier".to_owned(),
        format!("http://electronichealth.se/identifier/nationelltReservnummer|BENCH-{middle}"),
    )];
    // 19 Observations a patient; 7 of them dated July to December.
    let mut group = c.benchmark_group(format!("search_{total}"));
    group.bench_function("observation_patient_date", |b| {
        b.iter(|| run(by_patient_date.clone(), 7))
    });
    group.bench_function("observation_chained_patient_identifier", |b| {
        b.iter(|| run(chained.clone(), PER_PATIENT - 1))
    });
    group.finish();
    rt.block_on(state.store.close());
}

criterion_group!(benches, bench);
criterion_main!(benches);
