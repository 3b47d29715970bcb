//! Liveness and readiness probes (no authentication, no patient data).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::state::AppState;

pub async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// Ready when the store answers a read.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.get_setting("schema").await {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n"),
    }
}
