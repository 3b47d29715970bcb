//! Criterion benchmark of transaction Bundles by size (issue 8: 30,000 entries took 432 s, quadratic):
//! one transaction of N Organizations, each with a `urn:uuid` fullUrl and a reference to the one before,
//! so every entry is rewritten. Time per transaction should grow linearly with N (a tenth of the entries,
//! about a tenth of the time). In process: `bundle::process`, what `POST /fhir` runs after authentication,
//! against a durable SQLite store in a temp directory.
//!
//! Run: `cargo bench --bench bundles -- --warm-up-time 1 --measurement-time 3`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

use navet::config::{Overrides, Settings};
use navet::store::Actor;

fn transaction(n: usize) -> String {
    let entries: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let mut org = json!({"resourceType": "Organization", "name": format!("org {i}")});
            if i > 0 {
                org["partOf"] =
                    json!({"reference": format!("urn:uuid:00000000-0000-4000-8000-{:012}", i - 1)});
            }
            json!({"fullUrl": format!("urn:uuid:00000000-0000-4000-8000-{i:012}"),
                   "resource": org, "request": {"method": "POST", "url": "Organization"}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::load(&Overrides {
        data_dir: Some(dir.path().to_path_buf()),
        ..Overrides::default()
    })
    .expect("demo configuration");
    settings.seed_demo = false;
    let state = rt
        .block_on(navet::startup::build_state(&settings))
        .expect("state");
    let unrestricted = |_: &str, _: navet::auth::Interaction| Ok(());
    let mut group = c.benchmark_group("transaction");
    group.sample_size(10);
    for n in [100, 300, 1_000] {
        let body = transaction(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("entries", n), &body, |b, body| {
            b.to_async(&rt).iter(|| async {
                let (_, results) = navet::fhir::bundle::process(
                    state.fhir.clone(),
                    state.store.as_ref(),
                    &Actor::system(),
                    &unrestricted,
                    None,
                    body.as_bytes(),
                )
                .await
                .expect("the transaction runs");
                assert_eq!(results.len(), n);
            })
        });
    }
    group.finish();
}

criterion_group!(bundles, benches);
criterion_main!(bundles);
