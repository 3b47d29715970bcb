//! HTTP: the token endpoint, the JWKS, SMART discovery, and the extractors handlers authenticate with.
//!
//! Wiring: the application state must provide `Arc<AuthService>` through `FromRef`; then
//! `app.merge(auth::router())` serves the three public endpoints, and a handler taking [`Authenticated`]
//! (any authenticated caller) or [`PatientDataCaller`] (a caller with an acting user, or a system
//! integration) is protected.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, FromRef, FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::auth::service::{
    AuthError, AuthService, Caller, OAuthError, OAuthErrorCode, TokenRequest,
};

/// `POST /auth/token`, `GET /auth/jwks`, `GET /.well-known/smart-configuration`. None needs a token.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<AuthService>: FromRef<S>,
{
    Router::new()
        // An assertion is at most 8 KiB; the whole form needs little more.
        .route(
            "/auth/token",
            post(token).layer(DefaultBodyLimit::max(32 * 1024)),
        )
        .route("/auth/jwks", get(jwks))
        .route("/.well-known/smart-configuration", get(smart_configuration))
        // SMART App Launch 2.x §2.0.2: clients look for it under the FHIR base too.
        .route(
            "/fhir/.well-known/smart-configuration",
            get(smart_configuration),
        )
}

async fn token(
    State(service): State<Arc<AuthService>>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            let error = OAuthError::new(
                OAuthErrorCode::InvalidRequest,
                format!(
                    "the body must be application/x-www-form-urlencoded with each parameter once: {}",
                    rejection.body_text()
                ),
            );
            tracing::warn!(reason = %error.description, "token request refused");
            return oauth_error_response(&error);
        }
    };
    match service.issue_token(form).await {
        Ok(answer) => no_store(axum::Json(answer).into_response()),
        Err(error) => oauth_error_response(&error),
    }
}

fn oauth_error_response(error: &OAuthError) -> Response {
    // No WWW-Authenticate on a 401 here: RFC 6749 §5.2 wants the challenge of the HTTP scheme the client
    // used, and private_key_jwt clients use none.
    no_store((error.status(), axum::Json(error.body())).into_response())
}

/// RFC 6749 §5.1: token responses must not be cached.
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn jwks(State(service): State<Arc<AuthService>>) -> Response {
    let mut response = axum::Json(service.jwks()).into_response();
    // Short, so a rotated-in key is seen quickly by anyone caching the set.
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    response
}

async fn smart_configuration(State(service): State<Arc<AuthService>>) -> Response {
    let mut response = axum::Json(service.smart_configuration()).into_response();
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// An authenticated caller: any valid access token. Rejection: 401 (400 for a malformed header) with a
/// `WWW-Authenticate: Bearer` challenge and an OperationOutcome.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl std::ops::Deref for Authenticated {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl<S> FromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    Arc<AuthService>: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let service = Arc::<AuthService>::from_ref(state);
        let header = authorization_header(&parts.headers)?;
        service.authenticate(header).map(Authenticated)
    }
}

/// A caller allowed to read patient data: one with an acting user, or a registered system integration
/// (spec/auth.md). Rejection as [`Authenticated`], or 403 when there is no user.
#[derive(Debug, Clone)]
pub struct PatientDataCaller(pub Caller);

impl std::ops::Deref for PatientDataCaller {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl<S> FromRequestParts<S> for PatientDataCaller
where
    S: Send + Sync,
    Arc<AuthService>: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
        if let Err(e) = caller.require_patient_data_access() {
            tracing::warn!(client_id = %caller.client_id, reason = %e, "patient data refused");
            return Err(e);
        }
        Ok(PatientDataCaller(caller))
    }
}

fn authorization_header(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::MalformedHeader(
            "more than one Authorization header",
        ));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| AuthError::MalformedHeader("the header is not visible ASCII"))
}

impl IntoResponse for AuthError {
    /// 401/400/403 with the RFC 6750 challenge and a FHIR OperationOutcome (code `login`, or `forbidden`
    /// for a missing scope).
    fn into_response(self) -> Response {
        let outcome = serde_json::json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": self.issue_code(),
                "diagnostics": self.to_string(),
            }],
        });
        let mut response = (self.status(), axum::Json(outcome)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(crate::fhir::FHIR_JSON),
        );
        if let Ok(challenge) = HeaderValue::from_str(&self.www_authenticate()) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        response
    }
}
