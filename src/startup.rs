//! Building the app and running the server: `app(state)` is the whole HTTP surface (tests reuse it),
//! `run` opens the store, seeds the demo data into a fresh data directory, serves, and shuts down
//! gracefully on SIGTERM or Ctrl-C (in-flight requests finish, acknowledged writes are committed).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;

use crate::config::Settings;
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::fhir::capability;
use crate::state::AppState;
use crate::store::sqlite::SqliteStore;
use crate::store::{Actor, Store};

/// The demo seed: a transaction Bundle of the demo region's organisations, practitioners, patients and teams.
pub const DEMO_SEED: &str = include_str!("demo/demo-seed.json");
const SEEDED_KEY: &str = "demo_seeded";

pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(crate::http::fhir::routes())
        .route("/healthz", get(crate::http::health::healthz))
        .route("/readyz", get(crate::http::health::readyz))
        .fallback(fallback)
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn fallback() -> ApiError {
    ApiError::NotFound("no such endpoint; the FHIR API is under /fhir".into())
}

/// One log line per request: method, route pattern (never the query, which may hold identity numbers),
/// status and time. No bodies, no headers.
async fn log_request(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".into());
    let response = next.run(request).await;
    tracing::debug!(%method, route, status = response.status().as_u16(), micros = start.elapsed().as_micros() as u64, "request");
    response
}

/// Opens the store and builds the state for `settings`.
pub async fn build_state(settings: &Settings) -> StartResult<AppState> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&settings.data_dir).map_err(|e| e.to_string())?);
    let fhir = FhirContext::embedded();
    let state = AppState {
        store,
        fhir,
        base_url: Arc::from(settings.base_url.as_str()),
        max_body_bytes: settings.max_body_bytes,
        capability: Arc::from(capability::render(&settings.base_url)),
    };
    if settings.seed_demo {
        seed_demo(&state).await?;
    }
    Ok(state)
}

/// Loads the demo seed once per data directory (a setting marks it done, in the same transaction).
async fn seed_demo(state: &AppState) -> StartResult<()> {
    if state.store.get_setting(SEEDED_KEY).await.map_err(|e| e.to_string())?.is_some() {
        return Ok(());
    }
    let (_, results) = crate::fhir::bundle::process(state.fhir.clone(), state.store.as_ref(), &Actor::system(), DEMO_SEED.as_bytes())
        .await
        .map_err(|e| format!("the demo seed failed: {e}"))?;
    state
        .store
        .transact(&Actor::system(), |tx| Ok(tx.set_setting(SEEDED_KEY, "1")?))
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(resources = results.len(), "demo region loaded into the data directory");
    Ok(())
}

/// Runs the server until SIGTERM/Ctrl-C.
pub async fn run(settings: Settings) -> StartResult<()> {
    let state = build_state(&settings).await?;
    let store = state.store.clone();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(address = %local, base_url = %settings.base_url, data_dir = %settings.data_dir.display(), "navet is serving FHIR R4 at {}/fhir", settings.base_url);
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    tracing::info!("navet stopped; every acknowledged write is committed");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

/// Start-up errors are plain messages for the operator, printed once before exiting.
pub type StartResult<T> = std::result::Result<T, String>;
