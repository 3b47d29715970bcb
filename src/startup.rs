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

use crate::auth::{AuthSettings, Clock, DatabaseJtiStore, SystemClock};
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
    let fhir = crate::http::fhir::routes().route_layer(middleware::from_fn_with_state(
        state.clone(),
        crate::http::audit::audit_requests,
    ));
    Router::new()
        .merge(fhir)
        .merge(crate::auth::router())
        .merge(crate::http::auditor::routes())
        .merge(crate::http::admin::routes())
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
    build_state_with(settings, Arc::new(SystemClock)).await
}

/// [`build_state`] with a given clock for token times (tests move time forward to expire tokens).
pub async fn build_state_with(settings: &Settings, clock: Arc<dyn Clock>) -> StartResult<AppState> {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&settings.data_dir).map_err(|e| e.to_string())?);
    let auth_settings = AuthSettings::new(
        settings.base_url.clone(),
        settings.data_dir.clone(),
        settings.auth_files.clone(),
    )
    .with_clock(clock);
    let jti = Arc::new(DatabaseJtiStore::new(store.clone()));
    let auth = crate::auth::build(&settings.auth, auth_settings, jti).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("configuration errors:\n  - {}", lines.join("\n  - "))
    })?;
    let fhir = FhirContext::embedded();
    let state = AppState {
        store,
        fhir,
        base_url: Arc::from(settings.base_url.as_str()),
        max_body_bytes: settings.max_body_bytes,
        capability: Arc::from(capability::render(&settings.base_url)),
        auth: Arc::new(auth),
    };
    if settings.seed_demo {
        seed_demo(&state).await?;
    }
    Ok(state)
}

/// Loads the demo seed once per data directory (a setting marks it done, in the same transaction).
async fn seed_demo(state: &AppState) -> StartResult<()> {
    if state
        .store
        .get_setting(SEEDED_KEY)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    // navet itself loads the seed: no caller, nothing to authorize.
    let unrestricted = |_: &str, _: crate::auth::Interaction| Ok(());
    // The seed file is pretty-printed for people; stored resources are kept as written, so it is compacted
    // first (it holds no decimals whose written precision a re-serialisation could change).
    let seed: serde_json::Value = serde_json::from_str(DEMO_SEED)
        .map_err(|e| format!("the embedded demo seed is not JSON: {e}"))?;
    let seed = seed.to_string();
    let (_, results) = crate::fhir::bundle::process(
        state.fhir.clone(),
        state.store.as_ref(),
        &Actor::system(),
        &unrestricted,
        None,
        seed.as_bytes(),
    )
    .await
    .map_err(|e| format!("the demo seed failed: {e}"))?;
    state
        .store
        .transact(&Actor::system(), |tx| Ok(tx.set_setting(SEEDED_KEY, "1")?))
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        resources = results.len(),
        "demo region loaded into the data directory"
    );
    Ok(())
}

/// Runs the server until SIGTERM/Ctrl-C: HTTP, or HTTPS (optionally requiring client certificates) when the
/// settings name a certificate and key.
pub async fn run(settings: Settings) -> StartResult<()> {
    // Read the TLS files before opening anything, so a bad file stops start-up cleanly.
    let tls = settings
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()?;
    // Bind before touching the data directory: a busy port must not leave a half-initialised one behind.
    let listener = std::net::TcpListener::bind(settings.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let state = build_state(&settings).await?;
    let store = state.store.clone();
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        address = %local,
        base_url = %settings.base_url,
        data_dir = %settings.data_dir.display(),
        tls = tls.is_some(),
        client_certificates = settings.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        "navet is serving FHIR R4 at {}/fhir",
        settings.base_url
    );
    // Deliveries left by the previous run (also after kill -9) resume now.
    let outbox = crate::outbox::worker::start(state.store.clone(), &settings.outbox).await?;
    reload_keys_on_hangup(state.auth.clone());
    index_audit_in_background(&state);
    let app = app(state);
    match tls {
        None => {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
            // Connect info gives the access log each request's source address.
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| e.to_string())?;
        }
        Some(config) => {
            let handle = axum_server::Handle::new();
            let on_signal = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                // In-flight requests get this long to finish; new connections are refused at once.
                on_signal.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
            });
            axum_server::from_tcp_rustls(
                listener,
                axum_server::tls_rustls::RustlsConfig::from_config(config),
            )
            .map_err(|e| e.to_string())?
            .handle(handle)
            .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .await
            .map_err(|e| e.to_string())?;
        }
    }
    outbox.stop().await;
    store.close().await;
    tracing::info!("navet stopped; every acknowledged write is committed");
    Ok(())
}

/// Keeps the AuditEvent search index close behind the chain (auditor reads catch up fully themselves).
fn index_audit_in_background(state: &AppState) {
    let (ctx, store) = (state.fhir.clone(), state.store.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            if let Err(e) = crate::audit::catch_up(&ctx, store.as_ref()).await {
                tracing::warn!(error = %e, "indexing the access log failed; retrying");
            }
        }
    });
}

/// `navet rotate-key` writes a new signing key; SIGHUP makes the running server sign with it.
fn reload_keys_on_hangup(auth: Arc<crate::auth::AuthService>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangups.recv().await.is_some() {
            match auth.reload_signing_keys() {
                Ok(()) => tracing::info!("signing keys reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "reloading the signing keys failed; the old keys stay in use")
                }
            }
        }
    });
    #[cfg(not(unix))]
    drop(auth);
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
