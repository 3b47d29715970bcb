//! One table from every error navet can answer with to its HTTP status and FHIR OperationOutcome.
//!
//! Handlers and operations return [`ApiError`]; module errors (store, search, structure) convert into it.
//! [`ApiError::status`] and [`ApiError::issue_code`] are the only places a status or an issue code is chosen,
//! so the rules of DESIGN.md ("400 malformed, 422 invalid, 415 media type, 403 denied, 409/412 conflicts, 5xx
//! generic") live in one spot.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::fhir::outcome::{Issue, IssueCode, OperationOutcome};

/// An element-level problem: a FHIRPath-style location and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementIssue {
    pub path: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is not well-formed (bad JSON, bad query syntax, wrong resource type for the URL).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed but not valid for its type or navet's rules; every failing element is named.
    #[error("the resource is not valid")]
    Invalid(Vec<ElementIssue>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The request asks for more work than one request may (e.g. too many Bundle entries): 413, the
    /// message names the limit.
    #[error("{0}")]
    OverLimit(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A 403 because the access token lacks a scope or an acting user: RFC 6750 §3.1 `insufficient_scope`.
    #[error("{0}")]
    InsufficientScope(String),
    #[error("{0}")]
    NotSupported(String),
    /// Something broke inside navet. The detail is logged, never sent: 5xx bodies stay generic.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("the service is shutting down or overloaded; try again")]
    Unavailable,
    /// The edge's rate limit refused the request (429 + Retry-After).
    #[error("too many requests; retry after {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// The edge's concurrency limit shed the request (503 + Retry-After) before the writer queue filled.
    #[error("navet is serving as many requests as it may; retry after {retry_after_secs} s")]
    Overloaded { retry_after_secs: u64 },
    /// The request was not answered within the configured time (its work was abandoned).
    #[error("the request was not completed within {0} s")]
    Timeout(u64),
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![ElementIssue {
            path: path.into(),
            message: message.into(),
        }])
    }

    /// The status table (FHIR R4 4.0.1 §3.1.0.4 and http.html#2.21.0.x).
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) | ApiError::OverLimit(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::NotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable | ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The OperationOutcome issue code (value set issue-type, FHIR R4 4.0.1).
    pub fn issue_code(&self) -> IssueCode {
        match self {
            ApiError::BadRequest(_) => IssueCode::Structure,
            ApiError::Invalid(_) => IssueCode::Invalid,
            ApiError::NotFound(_) => IssueCode::NotFound,
            ApiError::Gone(_) => IssueCode::Deleted,
            ApiError::MethodNotAllowed(_) | ApiError::NotSupported(_) => IssueCode::NotSupported,
            ApiError::NotAcceptable(_) | ApiError::UnsupportedMediaType(_) => {
                IssueCode::NotSupported
            }
            ApiError::PayloadTooLarge(_) | ApiError::OverLimit(_) => IssueCode::TooLong,
            ApiError::PreconditionFailed(_) | ApiError::Conflict(_) => IssueCode::Conflict,
            ApiError::Unauthorized(_) => IssueCode::Login,
            ApiError::Forbidden(_) | ApiError::InsufficientScope(_) => IssueCode::Forbidden,
            ApiError::Internal(_) => IssueCode::Exception,
            // issue-type "throttled" and "timeout" specialise "transient": the client may retry.
            ApiError::Unavailable
            | ApiError::TooManyRequests { .. }
            | ApiError::Overloaded { .. }
            | ApiError::Timeout(_) => IssueCode::Transient,
        }
    }

    pub fn to_outcome(&self) -> OperationOutcome {
        let code = self.issue_code();
        match self {
            ApiError::Invalid(issues) => OperationOutcome::new(
                issues
                    .iter()
                    .map(|i| Issue::error(code, &i.message).at(&i.path))
                    .collect(),
            ),
            // Never leak internals: the detail goes to the log, the client gets a generic text.
            ApiError::Internal(_) => OperationOutcome::new(vec![Issue::error(
                code,
                "navet could not complete the request; it has been logged",
            )]),
            other => OperationOutcome::new(vec![Issue::error(code, &other.to_string())]),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match self {
            ApiError::TooManyRequests { retry_after_secs }
            | ApiError::Overloaded { retry_after_secs } => Some(retry_after_secs),
            // Overload is brief by design (bounded queues and waits): a client may try again in a second.
            ApiError::Unavailable => Some(1),
            _ => None,
        };
        if retry_after.is_some() {
            // Refusals under load are counted in metrics; a line each would flood the log too.
            tracing::trace!(status = status.as_u16(), "request refused at the edge");
        } else if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), "request refused");
        }
        let mut response = self.to_outcome().into_response();
        *response.status_mut() = status;
        let challenge = match self {
            ApiError::Unauthorized(_) => Some(r#"Bearer realm="navet""#),
            ApiError::InsufficientScope(_) => {
                Some(r#"Bearer realm="navet", error="insufficient_scope""#)
            }
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Busy => ApiError::Unavailable,
            // Two writers raced for the same version: the loser retries after reading the new one.
            crate::store::StoreError::VersionConflict(what) => ApiError::Conflict(format!(
                "{what} was changed by another request at the same time; read it and retry"
            )),
            crate::store::StoreError::NotPermitted(why) => ApiError::Forbidden(why),
            // Another node held the same rows (PostgreSQL) or the database is unreachable: retry later.
            crate::store::StoreError::Database(crate::store::DbError {
                kind: crate::store::DbErrorKind::Contention | crate::store::DbErrorKind::Unavailable,
                ..
            }) => ApiError::Unavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The FHIR logic's way through the store: its write jobs answer `Result<T, ApiError>`, which the store carries
/// type-erased (it knows no `ApiError`, `store::WriteJob`).
impl dyn crate::store::Store + '_ {
    /// Runs `job` in one transaction and returns its typed result: `Ok` commits, `Err` rolls back this job.
    pub async fn transact<T, F>(&self, actor: &crate::store::Actor, job: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn crate::store::WriteTx) -> Result<T, ApiError> + Send + 'static,
    {
        let out = self
            .write_boxed(
                actor,
                Box::new(move |tx| {
                    let result = job(tx);
                    crate::store::JobOutput {
                        commit: result.is_ok(),
                        value: Box::new(result),
                    }
                }),
            )
            .await?;
        match out.value.downcast::<Result<T, ApiError>>() {
            Ok(result) => *result,
            Err(_) => Err(ApiError::internal(
                "a write job answered an unexpected type",
            )),
        }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    /// Authorization checks inside handlers (scopes, the acting user) answer through the same table. The
    /// extractors answer token problems themselves, with the RFC 6750 challenge.
    fn from(e: crate::auth::AuthError) -> Self {
        match e.status() {
            StatusCode::FORBIDDEN => ApiError::InsufficientScope(e.to_string()),
            StatusCode::BAD_REQUEST => ApiError::BadRequest(e.to_string()),
            _ => ApiError::Unauthorized(e.to_string()),
        }
    }
}

impl From<Vec<crate::search::query::QueryError>> for ApiError {
    /// Every problem of a search query, in one 400.
    fn from(errors: Vec<crate::search::query::QueryError>) -> Self {
        ApiError::BadRequest(
            errors
                .into_iter()
                .map(|e| format!("{}: {}", e.param, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}
