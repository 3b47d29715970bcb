//! Criterion benchmarks of the outbox: the cost an enqueue adds to a durable write (the same write with and
//! without one outbox row in its transaction), and the drain rate of one destination's worker against a local
//! receiver that answers 200 at once (messages/s, access-log record per delivery included).
//!
//! Run: `cargo bench --bench outbox -- --warm-up-time 1 --measurement-time 3`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use navet::outbox::config::{Destination, OutboxSettings};
use navet::store::outbox::NewMessage;
use navet::store::sqlite::SqliteStore;
use navet::store::{Actor, NewVersion, Store};

const PAYLOAD_BYTES: usize = 1024;

fn task_version(n: u64) -> NewVersion {
    let json = format!(
        r#"{{"resourceType":"Task","id":"t{n}","status":"requested","intent":"order","for":{{"reference":"Patient/p{}"}},"note":[{{"text":"{}"}}]}}"#,
        n % 50,
        "x".repeat(PAYLOAD_BYTES)
    );
    NewVersion {
        resource_type: "Task".into(),
        id: format!("t{n}"),
        version: 1,
        last_updated: "2026-12-01T00:00:00.000Z".into(),
        last_updated_ms: 0,
        owner: "SE2321000255-MTN01".into(),
        deleted: false,
        json: Some(json),
        index: Vec::new(),
        protected: false,
    }
}

fn message(n: u64, patients: u64) -> NewMessage {
    NewMessage::new(
        "bench",
        Some(format!("Patient/p{}", n % patients)),
        "application/json",
        format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(PAYLOAD_BYTES)),
    )
}

fn enqueue_cost(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("outbox_enqueue");
    for with in [false, true] {
        let name = if with {
            "write_with_enqueue"
        } else {
            "write_without_enqueue"
        };
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let (store, n) = (store.clone(), next.fetch_add(1, Ordering::Relaxed));
                async move {
                    store
                        .transact(&Actor::system(), move |tx| {
                            tx.put_version(task_version(n))?;
                            if with {
                                tx.enqueue(message(n, 50))?;
                            }
                            Ok(())
                        })
                        .await
                        .expect("write");
                }
            })
        });
    }
    group.finish();
    rt.block_on(store.close());
}

async fn receiver() -> u16 {
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    port
}

fn drain_rate(c: &mut Criterion) {
    const BATCH: u64 = 400;
    const PATIENTS: u64 = 40;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let port = rt.block_on(receiver());
    let mut group = c.benchmark_group("outbox_drain");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("400_messages_40_patients_concurrency_8", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("tempdir");
                let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
                store
                    .transact(&Actor::system(), |tx| {
                        for n in 0..BATCH {
                            tx.enqueue(message(n, PATIENTS))?;
                        }
                        Ok(())
                    })
                    .await
                    .expect("enqueue");
                let url =
                    reqwest::Url::parse(&format!("http://127.0.0.1:{port}/hook")).expect("url");
                let mut d = Destination::new("bench", "SE2321000255-ITACIH", url);
                d.private_allowed = true;
                let settings = OutboxSettings {
                    poll_interval: Duration::from_millis(5),
                    destinations: vec![d],
                    allow: Vec::new(),
                };
                let start = Instant::now();
                let workers = navet::outbox::worker::start(store.clone(), &settings)
                    .await
                    .expect("workers");
                loop {
                    let stats = store.outbox_stats(&Actor::system()).await.expect("stats");
                    if stats.iter().all(|s| s.pending == 0) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                total += start.elapsed();
                workers.stop().await;
                store.close().await;
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, enqueue_cost, drain_rate);
criterion_main!(benches);
