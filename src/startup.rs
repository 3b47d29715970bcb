//! Building the app and running the server: `app(state)` is the whole HTTP surface (tests reuse it),
//! `run` opens the store, seeds the demo data into a fresh data directory, serves, and shuts down
//! gracefully on SIGTERM or Ctrl-C (in-flight requests finish, acknowledged writes are committed).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::auth::{AuthSettings, Clock, DatabaseJtiStore, SystemClock};
use crate::config::{Limits, Settings};
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::fhir::capability;
use crate::http::edge;
use crate::state::AppState;
use crate::store::sqlite::SqliteStore;
use crate::store::{Actor, Store};

/// The demo seed: a transaction Bundle of the demo region's organisations, practitioners, patients and teams.
pub const DEMO_SEED: &str = include_str!("demo/demo-seed.json");
const SEEDED_KEY: &str = "demo_seeded";

/// The whole HTTP surface, behind the edge (`http::edge` describes the layers and their order).
pub fn app(state: AppState) -> Router {
    app_with(state, Router::new())
}

/// [`app`] with `extra` routes served as FHIR routes are: inside the access log, the timeout and the panic
/// catcher (tests add routes that panic or stall; production passes none).
pub fn app_with(state: AppState, extra: Router<AppState>) -> Router {
    let fhir = guarded(crate::http::fhir::routes().merge(extra), &state)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::http::audit::audit_requests,
        ))
        // FHIR XML in and out (src/http/xml.rs): outside the access log, which so sees JSON only.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::http::xml::negotiate_xml,
        ));
    let rest = guarded(
        Router::new()
            .merge(crate::auth::router())
            .merge(crate::http::auditor::routes())
            .merge(crate::http::admin::routes())
            .merge(crate::http::svpl::routes())
            .route("/metrics", get(crate::http::metrics::scrape))
            .route("/healthz", get(crate::http::health::healthz))
            .route("/readyz", get(crate::http::health::readyz)),
        &state,
    );
    // Each `layer` wraps what is above it: the last is the outermost.
    Router::new()
        .merge(fhir)
        .merge(rest)
        .fallback(fallback)
        // Issue 14: the router's own error answers (405) get an OperationOutcome body too.
        .layer(middleware::map_response(
            crate::http::outcomes::fill_empty_errors,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), edge::guard))
        .layer(middleware::from_fn(crate::http::metrics::track))
        // One log line per answer (status, latency) in a span with the request id, method and route pattern:
        // never the query (it may hold identity numbers), no bodies, no headers.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(edge::request_span)
                .on_request(())
                .on_response(
                    DefaultOnResponse::new()
                        .level(tracing::Level::DEBUG)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
        .layer(PropagateRequestIdLayer::new(edge::REQUEST_ID))
        .layer(SetRequestIdLayer::new(edge::REQUEST_ID, MakeRequestUuid))
        .layer(middleware::map_request(edge::screen_request_id))
        .with_state(state)
}

/// The per-route part of the edge: the request timeout (408 with an OperationOutcome) and the panic catcher
/// (500). For `/fhir` it sits inside the access-log middleware, which so records timeouts and panics.
fn guarded(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes
        .layer(CatchPanicLayer::custom(edge::panic_response))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.edge.limits.request_timeout,
        ))
        .layer(middleware::map_response_with_state(
            state.clone(),
            edge::timeout_outcome,
        ))
}

/// Only `/metrics`, without a token: for `server.metrics_listen`, a private interface.
pub fn metrics_app(state: AppState) -> Router {
    guarded(
        Router::new().route("/metrics", get(crate::http::metrics::scrape_private)),
        &state,
    )
    .with_state(state)
}

async fn fallback() -> ApiError {
    ApiError::NotFound("no such endpoint; the FHIR API is under /fhir".into())
}

/// Opens the store and builds the state for `settings`.
pub async fn build_state(settings: &Settings) -> StartResult<AppState> {
    build_state_with(settings, Arc::new(SystemClock)).await
}

/// [`build_state`] with a given clock for token times (tests move time forward to expire tokens).
pub async fn build_state_with(settings: &Settings, clock: Arc<dyn Clock>) -> StartResult<AppState> {
    // Before the store: its writer thread records metrics from its first batch on.
    crate::http::metrics::handle();
    let store = open_store(settings).await?;
    // Several nodes may start at once on one PostgreSQL database: one at a time does the start-up writes (the
    // cursor key, the backfills, the seeds), so the second finds the first's work done.
    let startup = store.startup_lock().await.map_err(|e| e.to_string())?;
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
    let svpl_outbound = crate::svpl::outbound::Outbound::configured(
        settings.svpl_mapping.clone(),
        &auth.registry().principals(),
        &settings.outbox.destinations,
    );
    let fhir = FhirContext::configured_with_svpl(
        settings.outbox.allow.clone(),
        settings.ordination.clone(),
        svpl_outbound,
    );
    let cursor_key = crate::search::cursor::load_or_create(store.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let svpl = Arc::new(crate::svpl::SvplContext::for_principals(
        settings.svpl_mapping.clone(),
        &auth.registry().principals(),
    ));
    let state = AppState {
        cursor_key,
        store,
        fhir,
        base_url: Arc::from(settings.base_url.as_str()),
        max_body_bytes: settings.max_body_bytes,
        capability: Arc::from(capability::render(&settings.base_url)),
        auth: Arc::new(auth),
        bounds: crate::http::body::Bounds::from_settings(settings),
        edge: Arc::new(edge::Edge::new(&settings.limits)),
        svpl,
    };
    let relinked = crate::fhir::relink::backfill(&state.fhir, state.store.as_ref())
        .await
        .map_err(|e| format!("updating the stored sharing facts failed: {e}"))?;
    if relinked > 0 {
        tracing::info!(
            resources = relinked,
            "patient links recomputed from the Patient compartment"
        );
    }
    let reindexed = crate::search::reindex::backfill(&state.fhir, state.store.as_ref())
        .await
        .map_err(|e| format!("rebuilding the search index failed: {e}"))?;
    if reindexed > 0 {
        tracing::info!(resources = reindexed, "search index rebuilt");
    }
    if settings.seed_demo {
        seed_demo(&state).await?;
    }
    if settings.seed_demo || settings.ordination.care_map_configured {
        crate::caremap::seed(&state).await?;
    }
    drop(startup);
    Ok(state)
}

/// The configured store: PostgreSQL when `[store] url` names one (its schema migrated first), else the
/// embedded SQLite store in the data directory.
pub async fn open_store(settings: &Settings) -> StartResult<Arc<dyn Store>> {
    let checkpoints = std::time::Duration::from_secs(settings.audit_checkpoint_secs);
    Ok(match &settings.database_url {
        // The synchronous client may not block a runtime thread: connect and migrate on a blocking one.
        Some(url) => {
            let (url, dir) = (url.clone(), settings.data_dir.clone());
            let store = tokio::task::spawn_blocking(move || {
                crate::store::postgres::PgStore::open(&url, &dir, checkpoints)
            })
            .await
            .map_err(|e| format!("opening the PostgreSQL store failed: {e}"))?
            .map_err(|e| format!("opening the PostgreSQL store failed: {e}"))?;
            Arc::new(store)
        }
        None => Arc::new(
            SqliteStore::open_with(&settings.data_dir, checkpoints).map_err(|e| e.to_string())?,
        ),
    })
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
    let metrics_listener = settings
        .metrics_listen
        .map(|address| {
            std::net::TcpListener::bind(address)
                .map_err(|e| format!("cannot listen on {address} (metrics_listen): {e}"))
        })
        .transpose()?;
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
    let outbox = crate::outbox::worker::start_with(
        state.store.clone(),
        &settings.outbox,
        Some(state.fhir.clone()),
    )
    .await?;
    let subscriptions = crate::outbox::worker::start_subscriptions(
        state.store.clone(),
        state.fhir.clone(),
        &settings.outbox,
        crate::outbox::config::subscription_template(),
    )
    .await;
    let itacih = match &settings.ordination.itacih {
        Some(link) => Some(
            crate::itacih::push::start(state.store.clone(), state.fhir.clone(), link.clone())
                .await?,
        ),
        None => None,
    };
    reload_keys_on_hangup(state.auth.clone());
    edge::flush_refusals_every_minute(&state);
    crate::http::metrics::upkeep_in_background();
    if let Some(metrics_listener) = metrics_listener {
        tracing::info!(address = ?metrics_listener.local_addr().ok(), "metrics without a token at /metrics");
        let (app, limits) = (metrics_app(state.clone()), settings.limits.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(metrics_listener, app, &limits, None, shutdown_signal()).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    let edge = state.edge.clone();
    serve(
        listener,
        app(state),
        &settings.limits,
        tls,
        shutdown_signal(),
    )
    .await?;
    // The last minute's rate-limit counts, before the writer stops.
    if let Err(e) = edge.flush_refusals(store.as_ref()).await {
        tracing::warn!(error = %e, "the last rate-limit records could not be written");
    }
    outbox.stop().await;
    subscriptions.stop().await;
    if let Some(itacih) = itacih {
        itacih.stop().await;
    }
    store.close().await;
    tracing::info!("navet stopped; every acknowledged write is committed");
    Ok(())
}

/// Serves `app` on `listener` (HTTPS when `tls` is given) until `shutdown` completes; then in-flight requests
/// get 30 s to finish while new connections are refused. Both paths go through axum-server's hyper builder,
/// because `axum::serve` cannot bound the time a client takes to send its request header: a connection that
/// has not sent a whole header within `limits.header_read_timeout` is closed (half-open requests hold
/// nothing). Connect info gives the edge and the access log each request's source address.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    limits: &Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> StartResult<()> {
    let handle = axum_server::Handle::new();
    let on_signal = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_signal.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let header_read_timeout = limits.header_read_timeout;
    match tls {
        None => {
            let mut server = axum_server::from_tcp(listener)
                .map_err(|e| e.to_string())?
                .handle(handle);
            server
                .http_builder()
                .http1()
                .header_read_timeout(header_read_timeout);
            server.serve(service).await
        }
        Some(config) => {
            let mut server = axum_server::from_tcp_rustls(
                listener,
                axum_server::tls_rustls::RustlsConfig::from_config(config),
            )
            .map_err(|e| e.to_string())?
            .handle(handle);
            server
                .http_builder()
                .http1()
                .header_read_timeout(header_read_timeout);
            server.serve(service).await
        }
    }
    .map_err(|e| e.to_string())
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
