//! Criterion benchmarks of story 2: ordinations per second from the transaction Bundle to the committed plan
//! (ServiceRequest, MedicationRequest, a Task and an outbox row per visit, the Communication, the access-log
//! record), many orders in flight as from many hospital clients; and the itACiH drain rate (visits/s) of the
//! pusher against the simulator on loopback, with the access-log record of each delivery.
//!
//! Run: `cargo bench --bench ordination -- --warm-up-time 1 --measurement-time 3`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use navet::fhir::visibility::Visibility;
use navet::state::AppState;
use navet::store::Actor;
use serde_json::json;

const CSK: &str = "SE2321000255-CSK01";
/// Orders in flight at once.
const IN_FLIGHT: usize = 256;

fn csk() -> Actor {
    Actor {
        principal: CSK.into(),
        client_id: Some("demo-csk".into()),
        user: Some("SE2321000255-P0001".into()),
        visibility: Visibility::Care {
            sees: vec![CSK.to_owned()].into(),
            emergency: false,
        },
        population_register: false,
    }
}

/// A two-day ×3 antibiotics order (6 visits) for Tolvan, or a one-visit blood test.
fn order(n: u64, one_visit: bool) -> Vec<u8> {
    // The demo patients (in both teams' areas), in turn: one patient's visits go to itACiH one at a time.
    const PATIENTS: [&str; 6] = [
        "191212121212",
        "194005121233",
        "193803032451",
        "194508223577",
        "193301154682",
        "195009722397",
    ];
    let patient = format!(
        "Patient?identifier=http://electronichealth.se/identifier/{}|{}",
        if n % 6 == 5 {
            "samordningsnummer"
        } else {
            "personnummer"
        },
        PATIENTS[(n % 6) as usize]
    );
    let patient = patient.as_str();
    let hsa = |v: &str| json!({"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": v}});
    let sr = |code: &str, mr: Option<&str>| {
        let mut sr = json!({
            "resourceType": "ServiceRequest",
            "identifier": [{"system": "http://csk.example/identifier/ordination", "value": format!("bench-{n}")}],
            "status": "active", "intent": "order",
            "category": [{"coding": [{"system": "http://navet.example/CodeSystem/ordination-category", "code": "punktinsats"}]}],
            "code": {"coding": [{"system": "http://navet.example/CodeSystem/intervention", "code": code}]},
            "subject": {"reference": patient},
            "requester": hsa("SE2321000255-P0001"),
            "occurrencePeriod": {"start": "2026-11-24", "end": "2026-11-25"}
        });
        if let Some(m) = mr {
            sr["supportingInfo"] = json!([{"reference": m}]);
        }
        sr
    };
    let entries = if one_visit {
        vec![
            json!({"resource": sr("provtagning", None), "request": {"method": "POST", "url": "ServiceRequest"}}),
        ]
    } else {
        let mr_url = format!("urn:uuid:00000000-0000-4000-8000-{n:012}");
        vec![
            json!({"fullUrl": mr_url, "resource": {
                "resourceType": "MedicationRequest",
                "identifier": [{"system": "http://csk.example/identifier/ordination", "value": format!("bench-{n}-mr")}],
                "status": "active", "intent": "order",
                "medicationCodeableConcept": {"text": "Piperacillin/Tazobactam"},
                "subject": {"reference": patient},
                "dosageInstruction": [{"timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                                       "doseAndRate": [{"doseQuantity": {"value": 4, "unit": "g"}}]}]
            }, "request": {"method": "POST", "url": "MedicationRequest"}}),
            json!({"resource": sr("iv-antibiotika", Some(&mr_url)), "request": {"method": "POST", "url": "ServiceRequest"}}),
        ]
    };
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        .to_string()
        .into_bytes()
}

/// `NAVET_BENCH_DATABASE_URL` runs the bench on PostgreSQL (a fresh schema of that database per store,
/// `tests/load/backends.sh`); unset, on SQLite.
async fn database_url() -> Option<String> {
    let base = std::env::var("NAVET_BENCH_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let url = tokio::task::spawn_blocking(move || {
        navet::store::postgres::migrate::create_schema(&base, &schema)
    })
    .await
    .expect("schema thread")
    .expect("NAVET_BENCH_DATABASE_URL is set but unusable");
    Some(url)
}

async fn state(dir: &std::path::Path, sim: reqwest::Url) -> AppState {
    let mut s = navet::config::Settings::load(&navet::config::Overrides {
        data_dir: Some(dir.to_path_buf()),
        database_url: database_url().await,
        ..Default::default()
    })
    .expect("demo configuration");
    s.seed_demo = true;
    let care = navet::caremap::CareMap::demo();
    s.ordination = Arc::new(navet::ordination::Ordination {
        rules: navet::ordination::rules::Rules::embedded(),
        itacih: Some(navet::itacih::Link::for_tests(sim, &care)),
        care,
        care_map_configured: false,
    });
    navet::startup::build_state(&s).await.expect("state")
}

async fn submit(state: &AppState, first: u64, count: u64, one_visit: bool) {
    let allow = |_: &str, _: navet::auth::Interaction| Ok(());
    let actor = csk();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    use futures_util::StreamExt;
    for n in first..first + count {
        let (ctx, store, actor) = (state.fhir.clone(), state.store.clone(), actor.clone());
        pending.push(async move {
            let bytes = order(n, one_visit);
            navet::fhir::bundle::process(ctx, store.as_ref(), &actor, &allow, None, &bytes)
                .await
                .expect("the order is planned")
        });
        if pending.len() >= IN_FLIGHT {
            pending.next().await;
        }
    }
    while pending.next().await.is_some() {}
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim_url, sim) = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url: reqwest::Url = format!("http://{}/", l.local_addr().expect("addr"))
            .parse()
            .expect("url");
        (url, navet::itacih::sim::spawn(l))
    });
    let state = rt.block_on(state(dir.path(), sim_url));
    let next = Arc::new(AtomicU64::new(0));

    let mut group = c.benchmark_group("ordination");
    group.throughput(Throughput::Elements(1));
    group.bench_function("intake_to_committed_plan_6_visits", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (state, next) = (state.clone(), next.clone());
            async move {
                let first = next.fetch_add(iters, Ordering::Relaxed);
                let start = Instant::now();
                submit(&state, first, iters, false).await;
                start.elapsed()
            }
        })
    });

    // The drain: visits waiting in the outbox, delivered by the pusher's rounds.
    let link = state.fhir.ordination.itacih.clone().expect("link");
    let http = navet::itacih::push::client(&link).expect("client");
    group.bench_function("itacih_drain_per_visit", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (state, next, link, http) =
                (state.clone(), next.clone(), link.clone(), http.clone());
            async move {
                // Drain what earlier benchmarks queued, untimed; then queue `iters` one-visit orders.
                while navet::itacih::push::round(&http, state.store.as_ref(), &link)
                    .await
                    .expect("round")
                    > 0
                {}
                let first = next.fetch_add(iters, Ordering::Relaxed);
                submit(&state, first, iters, true).await;
                let start = Instant::now();
                while navet::itacih::push::round(&http, state.store.as_ref(), &link)
                    .await
                    .expect("round")
                    > 0
                {}
                start.elapsed()
            }
        })
    });
    group.finish();
    let received = sim.lock().map(|s| s.insatser.len()).unwrap_or(0);
    eprintln!("itACiH (simulated) received {received} visits");
    rt.block_on(state.store.close());
}

criterion_group!(ordination, benches);
criterion_main!(ordination);
