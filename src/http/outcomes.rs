//! Every error answer carries an OperationOutcome (FHIR R4 4.0.1 http.html: "the server SHOULD return an
//! OperationOutcome"). navet's own errors already do (`error.rs`); this fills in the answers the router
//! makes by itself without a body, such as 405 for a method a path does not serve (PATCH on a type, OPTIONS,
//! GET on the base), which clients otherwise show as "Unknown error". Headers (`Allow`) are kept.

use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::fhir::outcome::{Issue, IssueCode, OperationOutcome};

/// `map_response` hook: an error status without a body gets an OperationOutcome naming the status.
pub async fn fill_empty_errors(method: Method, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(CONTENT_TYPE)
    {
        return response;
    }
    let text = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = response
                .headers()
                .get(axum::http::header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(|v| format!("; this endpoint serves {v}"))
                .unwrap_or_default();
            format!("{method} is not served on this endpoint{allowed} (see /fhir/metadata)")
        }
        other => format!(
            "{} {}",
            other.as_u16(),
            other.canonical_reason().unwrap_or("error")
        ),
    };
    let code = if status == StatusCode::METHOD_NOT_ALLOWED {
        IssueCode::NotSupported
    } else if status.is_server_error() {
        IssueCode::Exception
    } else {
        IssueCode::Processing
    };
    let (mut parts, _) = response.into_parts();
    let outcome = OperationOutcome::new(vec![Issue::error(code, &text)]).into_response();
    let (outcome_parts, body) = outcome.into_parts();
    if let Some(ct) = outcome_parts.headers.get(CONTENT_TYPE) {
        parts.headers.insert(CONTENT_TYPE, ct.clone());
    } else {
        parts.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(crate::fhir::FHIR_JSON),
        );
    }
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, body)
}
