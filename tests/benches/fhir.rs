//! Criterion benchmarks of the FHIR core, in process through the real router (no sockets), in one run:
//! read by id as served (authentication + access log), with authentication but without the access-log
//! middleware, and with neither (the handler body alone); search by identifier with and without the log;
//! create (durable commit, its AuditEvent in the same transaction); 32 concurrent reads of a Patient (logged)
//! and of an Organization (not logged), the load script's pair; and read by id through the full router
//! with and without the edge layers (request id, tracing, metrics, rate and concurrency limits, timeout,
//! panic catcher: `http::edge`). The HTTP load figures come from
//! `tests/load/run.sh` (wrk).
//!
//! Run: `cargo bench --bench fhir`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, Request};
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;

use navet::auth::TokenRequest;
use navet::auth::service::JWT_BEARER;
use navet::config::{Overrides, Settings};
use navet::http::audit::RequestContext;
use navet::state::AppState;
use navet::store::Actor;

const BASE: &str = "http://bench";
const CLIENT: &str = "demo-mtn-kristianstad";
const USER: &str = "SE2321000255-P0101";

fn settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::load(&Overrides {
        data_dir: Some(dir.to_path_buf()),
        base_url: Some(BASE.into()),
        ..Overrides::default()
    })
    .expect("demo configuration");
    // The demo seed gives the bench's user its role in navet's directory (required for its token).
    s.seed_demo = true;
    // The bench reads as fast as it can with one client: lift its rate limit (the check still runs).
    s.limits.client_requests_per_second = navet::config::MAX_RATE;
    s
}

/// A token issued by the app's own auth service, as `POST /auth/token` would.
async fn token(state: &AppState, settings: &Settings) -> String {
    let user =
        navet::auth::cli::user_claims(&settings.auth, USER, navet::auth::PurposeOfUse::Treat)
            .expect("user");
    let key = navet::auth::cli::demo_private_key(CLIENT).expect("key");
    let now = jiff::Timestamp::now().as_second();
    let assertion = navet::auth::cli::client_assertion(
        CLIENT,
        &format!("{BASE}/auth/token"),
        key,
        Some(&user),
        now,
    )
    .expect("assertion");
    state
        .auth
        .issue_token(TokenRequest {
            grant_type: Some("client_credentials".into()),
            scope: Some("system/*.cruds".into()),
            client_assertion_type: Some(JWT_BEARER.into()),
            client_assertion: Some(assertion),
            client_id: None,
        })
        .await
        .expect("token")
        .access_token
}

/// What the create benchmark posts: no identifier, so the search benchmark's identifier stays unique.
const NEW_PATIENT: &str = r#"{"resourceType":"Patient","name":[{"family":"Last","given":["Load"]}],"gender":"female","birthDate":"1940-05-12"}"#;

const PATIENT: &str = r#"{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.752.29.4.19","value":"SE2321000255-X1"}],
  "name":[{"family":"Tolvansson","given":["Tolvan"]}],"gender":"male","birthDate":"1912-12-12",
  "address":[{"line":["Storgatan 1"],"postalCode":"29131","city":"Kristianstad"}]}"#;

const ORGANIZATION: &str = r#"{"resourceType":"Organization","identifier":[{"system":"urn:oid:1.2.752.29.4.19","value":"SE2321000255-BENCH1"}],"name":"Bench"}"#;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(dir.path());
    let state = rt
        .block_on(navet::startup::build_state(&settings))
        .expect("state");
    let bearer = Arc::new(format!("Bearer {}", rt.block_on(token(&state, &settings))));
    let app = navet::startup::app(state.clone());
    // The FHIR routes with authentication and the access log but none of the edge's layers: what the edge adds.
    let no_edge: Router = navet::http::fhir::routes()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            navet::http::audit::audit_requests,
        ))
        .with_state(state.clone());
    // The bare FHIR routes: no edge, no access log (for the CapabilityStatement, which is not logged).
    let bare: Router = navet::http::fhir::routes().with_state(state.clone());
    // The same routes without the access-log middleware (reads' records are not written): what the log adds.
    let unaudited: Router = navet::http::fhir::routes()
        .layer(Extension(RequestContext {
            request_id: Arc::from("bench"),
            source_address: None,
        }))
        .with_state(state.clone());
    // The read without the extractor, the scope check and the log: what authentication adds on top of it.
    let unauthenticated: Router = Router::new()
        .route(
            "/fhir/{type}/{id}",
            get(
                |State(s): State<AppState>,
                 Path((ty, id)): Path<(String, String)>,
                 headers: HeaderMap| async move {
                    navet::http::fhir::read_resource(
                        &s,
                        &Actor::system(),
                        &ty,
                        &id,
                        &headers,
                        &None,
                    )
                    .await
                    .map(|(response, _)| response)
                },
            ),
        )
        .with_state(state);

    let post_to = |app: Router, bearer: Arc<String>, ty: &'static str, body: &'static str| async move {
        let r = app
            .oneshot(
                Request::post(format!("/fhir/{ty}"))
                    .header("content-type", "application/fhir+json")
                    .header("authorization", bearer.as_str())
                    .body(Body::from(body))
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(r.status(), 201);
        r.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned()
    };
    // One GET through `app` (with the bearer token, if any) that must answer 200.
    let get = |app: Router, bearer: Option<Arc<String>>, uri: Arc<String>| async move {
        let mut request = Request::get(uri.as_str());
        if let Some(bearer) = &bearer {
            request = request.header("authorization", bearer.as_str());
        }
        let r = app
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(r.status(), 200);
    };
    let post = |app: Router, bearer: Arc<String>, body: &'static str| {
        post_to(app, bearer, "Patient", body)
    };
    let location = rt.block_on(post(app.clone(), bearer.clone(), PATIENT));
    let path = Arc::new(
        location
            .trim_start_matches(BASE)
            .trim_end_matches("/_history/1")
            .to_owned(),
    );

    // The load script's pair in process: 32 reads at once through the full app, a Patient (logged: its
    // records share the appender's commits) and an Organization (directory: not logged). Their ratio is the
    // issue's "logged read ≥ 0.8 × unlogged read" without sockets; one iteration is 32 reads.
    let org = rt.block_on(post_to(
        app.clone(),
        bearer.clone(),
        "Organization",
        ORGANIZATION,
    ));
    let org_path = Arc::new(
        org.trim_start_matches(BASE)
            .trim_end_matches("/_history/1")
            .to_owned(),
    );
    let mut concurrent = c.benchmark_group("32 reads at once");
    for (name, uri) in [
        ("Patient (logged)", path.clone()),
        ("Organization (unlogged)", org_path),
    ] {
        concurrent.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let (app, bearer, uri) = (app.clone(), bearer.clone(), uri.clone());
                async move {
                    let reads: Vec<_> = (0..32)
                        .map(|_| tokio::spawn(get(app.clone(), Some(bearer.clone()), uri.clone())))
                        .collect();
                    for r in reads {
                        r.await.expect("read task");
                    }
                }
            })
        });
    }
    concurrent.finish();

    let mut group = c.benchmark_group("read by id");
    group.bench_function("as served (authentication and access log)", |b| {
        b.to_async(&rt)
            .iter(|| get(app.clone(), Some(bearer.clone()), path.clone()))
    });
    group.bench_function("as served without the edge layers", |b| {
        b.to_async(&rt)
            .iter(|| get(no_edge.clone(), Some(bearer.clone()), path.clone()))
    });
    group.bench_function("authentication, no access log", |b| {
        b.to_async(&rt)
            .iter(|| get(unaudited.clone(), Some(bearer.clone()), path.clone()))
    });
    group.bench_function("neither (handler body only)", |b| {
        b.to_async(&rt)
            .iter(|| get(unauthenticated.clone(), None, path.clone()))
    });
    group.finish();
    // The edge's own cost, without an fsync to hide it: the CapabilityStatement (no access-log record)
    // through the full app and through the bare FHIR routes.
    let metadata = Arc::new("/fhir/metadata".to_owned());
    let mut edge = c.benchmark_group("GET /fhir/metadata");
    for (name, router) in [("with the edge layers", app.clone()), ("without", bare)] {
        edge.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| get(router.clone(), Some(bearer.clone()), metadata.clone()))
        });
    }
    edge.finish();
    c.bench_function("create (durable commit)", |b| {
        b.to_async(&rt)
            .iter(|| post(app.clone(), bearer.clone(), NEW_PATIENT))
    });
    let by_identifier = Arc::new(
        "/fhir/Patient?identifier=urn:oid:1.2.752.29.4.19|SE2321000255-X1&_count=1".to_owned(),
    );
    let mut search = c.benchmark_group("search by identifier");
    for (name, router) in [
        ("as served (access log)", app.clone()),
        ("no access log", unaudited.clone()),
    ] {
        search.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| get(router.clone(), Some(bearer.clone()), by_identifier.clone()))
        });
    }
    search.finish();
}

criterion_group!(fhir, benches);
criterion_main!(fhir);
