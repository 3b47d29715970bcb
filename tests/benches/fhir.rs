//! Criterion benchmarks of the FHIR core, in process through the real router (no sockets): read by id,
//! create, search by identifier. The HTTP load figures come from `tests/load/run.sh` (wrk).
//!
//! Run: `cargo bench --bench fhir`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;

use navet::config::{LogFormat, Settings};

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        base_url: "http://bench".into(),
        max_body_bytes: 10 << 20,
        log_format: LogFormat::Text,
        seed_demo: false,
        config_dir: None,
        config_text: navet::config::DEMO_CONFIG.to_owned(),
    }
}

const PATIENT: &str = r#"{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.752.29.4.19","value":"SE2321000255-X1"}],
  "name":[{"family":"Tolvansson","given":["Tolvan"]}],"gender":"male","birthDate":"1912-12-12",
  "address":[{"line":["Storgatan 1"],"postalCode":"29131","city":"Kristianstad"}]}"#;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = rt.block_on(navet::startup::build_state(&settings(dir.path()))).expect("state");
    let app = navet::startup::app(state);
    let post = |app: axum::Router| async move {
        let r = app
            .oneshot(
                Request::post("/fhir/Patient")
                    .header("content-type", "application/fhir+json")
                    .body(Body::from(PATIENT))
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(r.status(), 201);
        r.headers()["location"].to_str().expect("location").to_owned()
    };
    let location = rt.block_on(post(app.clone()));
    let path = location.trim_start_matches("http://bench").trim_end_matches("/_history/1").to_owned();
    let path = Arc::new(path);

    c.bench_function("read by id", |b| {
        b.to_async(&rt).iter(|| {
            let (app, path) = (app.clone(), path.clone());
            async move {
                let r = app.oneshot(Request::get(path.as_str()).body(Body::empty()).expect("request")).await.expect("response");
                assert_eq!(r.status(), 200);
            }
        })
    });
    c.bench_function("create (durable commit)", |b| b.to_async(&rt).iter(|| post(app.clone())));
    c.bench_function("search by identifier", |b| {
        b.to_async(&rt).iter(|| {
            let app = app.clone();
            async move {
                let r = app
                    .oneshot(
                        Request::get("/fhir/Patient?identifier=urn:oid:1.2.752.29.4.19|SE2321000255-X1&_count=1")
                            .body(Body::empty())
                            .expect("request"),
                    )
                    .await
                    .expect("response");
                assert_eq!(r.status(), 200);
            }
        })
    });
}

criterion_group!(fhir, benches);
criterion_main!(fhir);
