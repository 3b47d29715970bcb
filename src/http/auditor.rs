//! The auditor API outside `/fhir` (spec/timeline-and-audit.md "Auditor API"). So far: `GET /audit/verify`.
//! Searching the log is the ordinary FHIR search on `/fhir/AuditEvent`, restricted to auditors.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use crate::auth::{Authenticated, PrincipalKind, PurposeOfUse};
use crate::error::ApiError;
use crate::http::respond;
use crate::state::AppState;
use crate::store::Actor;

pub fn routes() -> Router<AppState> {
    Router::new().route("/audit/verify", get(verify))
}

/// Walks the hash chain: `{"records": n, "intact": true}` or the first broken record.
async fn verify(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    let hoperat = caller
        .user
        .as_ref()
        .is_some_and(|u| u.purpose == PurposeOfUse::Hoperat);
    if caller.principal.kind != PrincipalKind::Auditor || !hoperat {
        return Err(ApiError::Forbidden(
            "the access log is verified by auditor principals with purpose of use HOPERAT".into(),
        ));
    }
    let report = state
        .store
        .verify_audit(&Actor::from_caller(&caller))
        .await?;
    let body = serde_json::json!({
        "records": report.records,
        "intact": report.first_broken.is_none(),
        "firstBroken": report.first_broken,
    });
    Ok(respond::json_response(StatusCode::OK, body.to_string()))
}
