//! Prometheus metrics: `GET /metrics` in the text exposition format (version 0.0.4), rendered by
//! metrics-exporter-prometheus from what the `metrics` facade recorded.
//!
//! Series (all prefixed `navet_`):
//! - `http_requests_total{route,method,status}` and `http_request_duration_seconds{route}` (histogram): the
//!   route is the matched pattern (`/fhir/{type}/{id}`), never the path, which may hold identity numbers.
//! - `writer_batch_size`, `writer_commit_seconds` (histograms), `writer_queue_depth` (gauge): the store's
//!   single writer (recorded in `store/sqlite.rs`).
//! - `audit_index_lag` (gauge): access-log records not yet searchable as AuditEvent.
//! - `rate_limited_total{key}`, `load_shed_total`: refusals at the edge.
//!
//! Served to admin principals (their bearer token), or without a token on `server.metrics_listen`, an
//! address meant for a private interface.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::auth::{Authenticated, PrincipalKind};
use crate::error::ApiError;
use crate::state::AppState;

/// Seconds: from a cached read (~100 µs) to the request timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Jobs per group commit: 1 to the writer's maximum of 512.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use. The `metrics` facade is process-global by
/// design (the store's writer thread records through it without knowing of HTTP), so there is one registry
/// per process; every app in it (tests start several) renders the same one.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = match builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("navet_writer_batch_size".into()),
                    BATCH_BUCKETS,
                )
            }) {
            Ok(b) => b,
            // Only empty bucket lists fail, and these are not empty; then histograms render as summaries.
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; /metrics shows only its own series"
            );
        }
        describe();
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "navet_http_requests_total",
        "HTTP answers by route pattern, method and status"
    );
    describe_histogram!(
        "navet_http_request_duration_seconds",
        Unit::Seconds,
        "time from request to response head, by route pattern"
    );
    describe_histogram!(
        "navet_writer_batch_size",
        Unit::Count,
        "write jobs per group commit"
    );
    describe_histogram!(
        "navet_writer_commit_seconds",
        Unit::Seconds,
        "time to run and commit one batch"
    );
    describe_gauge!(
        "navet_writer_queue_depth",
        Unit::Count,
        "write jobs waiting for the writer"
    );
    describe_gauge!(
        "navet_audit_index_lag",
        Unit::Count,
        "access-log records not yet searchable as AuditEvent (always 0: indexed with each record)"
    );
    describe_counter!(
        "navet_rate_limited_total",
        "requests refused by a rate limit (key: client or source)"
    );
    describe_counter!(
        "navet_load_shed_total",
        "requests refused by the concurrency limit"
    );
}

/// Histograms keep their samples until the next render; without a scraper they must be drained now and
/// then (the exporter's own upkeep thread comes with its HTTP listener, which navet does not use).
pub fn upkeep_in_background() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            handle().run_upkeep();
        }
    });
}

/// A bounded label for the method: the standard ones, anything else as `other` (extension methods must not
/// create series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times every answer by route pattern.
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("navet_http_request_duration_seconds", "route" => route.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("navet_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// `GET /metrics` on the API address: admin principals only.
pub async fn scrape(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    if caller.principal.kind != PrincipalKind::Admin {
        return Err(ApiError::Forbidden(
            "metrics are served to admin principals".into(),
        ));
    }
    render(&state).await
}

/// `GET /metrics` on `server.metrics_listen`: no token (the address is the protection).
pub async fn scrape_private(State(state): State<AppState>) -> Result<Response, ApiError> {
    render(&state).await
}

async fn render(state: &AppState) -> Result<Response, ApiError> {
    let lag = audit_index_lag(state).await?;
    metrics::gauge!("navet_audit_index_lag").set(lag as f64);
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle().render(),
    )
        .into_response())
}

/// Records not yet searchable: none since access-log format 1, whose auditor indexes are written with each
/// record (`store/audit_sql.rs`); the gauge stays for the dashboards that watch it.
async fn audit_index_lag(_state: &AppState) -> Result<usize, ApiError> {
    Ok(0)
}
