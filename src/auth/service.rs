//! [`AuthService`]: issues access tokens at the token endpoint and authenticates every API request.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::access_token::{self, AccessTokenClaims, TokenCache, TokenError};
use crate::auth::assertion::{self, AssertionError};
use crate::auth::clock::Clock;
use crate::auth::directory::UserDirectory;
use crate::auth::iua::{ActingUser, IuaError};
use crate::auth::jti::JtiStore;
use crate::auth::keys::{KeyError, KeyRing};
use crate::auth::principal::Principal;
use crate::auth::registry::Registry;
use crate::auth::scopes::{Interaction, Scopes};

/// RFC 7523 §2.2: the only client assertion type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How many verified tokens [`AuthService::authenticate`] remembers. A few hundred clients each holding one
/// or two live tokens fit many times over; an entry is about 200 bytes plus the caller's strings.
pub const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// The URLs navet names itself by, all derived from the configured public base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    /// The public base URL without a trailing slash, e.g. `https://navet.example.se`. Also the FHIR base and
    /// the access tokens' `aud`.
    pub base: String,
    /// `{base}/auth/token`: the `aud` client assertions must carry.
    pub token: String,
    /// `{base}/auth`: the access tokens' `iss`.
    pub issuer: String,
    /// `{base}/auth/jwks`.
    pub jwks: String,
}

impl Urls {
    pub fn new(base: &str) -> Urls {
        let base = base.trim_end_matches('/').to_owned();
        Urls {
            token: format!("{base}/auth/token"),
            issuer: format!("{base}/auth"),
            jwks: format!("{base}/auth/jwks"),
            base,
        }
    }
}

/// The token request form (RFC 6749 §4.4.2 with RFC 7521 §4.2 client authentication). Every field is
/// optional here so a missing one gets an RFC 6749 error body rather than a generic form rejection.
#[derive(Default, Clone, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    pub client_id: Option<String>,
}

impl std::fmt::Debug for TokenRequest {
    // The assertion is a credential for its lifetime: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("scope", &self.scope)
            .field("client_assertion_type", &self.client_assertion_type)
            .field(
                "client_assertion",
                &self.client_assertion.as_ref().map(|_| "[redacted]"),
            )
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// The successful token response (RFC 6749 §5.1).
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
    /// The requested scopes the client may not have, left out of `scope` (SMART v2 grants the allowed
    /// subset rather than refusing the request); absent when every requested scope was granted as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_dropped: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// RFC 6749 §5.2 error codes (plus `server_error` for a failing replay store: navet fails closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    UnsupportedGrantType,
    ServerError,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::ServerError => "server_error",
        }
    }
}

/// A refused token request: the RFC 6749 §5.2 body and its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl std::fmt::Display) -> Self {
        OAuthError {
            code,
            description: description_text(&description.to_string()),
        }
    }

    /// 401 for a failed client authentication (RFC 6749 §5.2 allows it and spec/auth.md asks for it), 500 for
    /// `server_error`, 400 for the rest.
    pub fn status(&self) -> StatusCode {
        match self.code {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.code.as_str(), "error_description": self.description })
    }
}

/// A refusal reason as logged: printable ASCII only (no line breaks from attacker-chosen text) and bounded.
pub(crate) fn log_text(s: &str) -> String {
    description_text(s).chars().take(300).collect()
}

/// RFC 6749 §5.2 and RFC 6750 §3 limit `error_description` to printable ASCII without `"` and `\`.
pub(crate) fn description_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// Who is calling: what the extractor hands a handler. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: Arc<str>,
    pub principal: Arc<Principal>,
    pub scopes: Scopes,
    /// The acting user from the IUA extension, checked against the principal.
    pub user: Option<Arc<ActingUser>>,
    /// The client is registered as a system integration (may act without a user).
    pub system_integration: bool,
    /// The client is the registered population-register integration (see `population_register` in the
    /// configuration): it may set and remove a Patient's security labels.
    pub population_register: bool,
    /// The access token's `jti`, for the audit record.
    pub token_id: Arc<str>,
    /// The access token's `exp` (unix seconds).
    pub expires_at: i64,
}

impl Caller {
    /// Whether the granted scopes allow `interaction` on `resource_type`; a 403 when they do not. Which
    /// records inside the scope the principal may see is the store's decision, not this one.
    pub fn require(&self, resource_type: &str, interaction: Interaction) -> Result<(), AuthError> {
        if self.scopes.permits(resource_type, interaction) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                resource_type: resource_type.to_owned(),
                interaction,
            })
        }
    }

    /// spec/auth.md: reading patient data without a user is allowed only for registered system
    /// integrations. Returns the user (None for an integration acting on its own).
    pub fn require_patient_data_access(&self) -> Result<Option<&ActingUser>, AuthError> {
        match (&self.user, self.system_integration) {
            (Some(user), _) => Ok(Some(user)),
            (None, true) => Ok(None),
            (None, false) => Err(AuthError::UserRequired),
        }
    }
}

/// Why a request was not authenticated (401/400) or not authorized by its scopes (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("an Authorization: Bearer <access token> header is required")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    MalformedHeader(&'static str),
    #[error("invalid access token: {0}")]
    InvalidToken(#[from] TokenError),
    #[error("invalid access token: its client is no longer registered")]
    ClientGone,
    #[error("invalid access token: its principal no longer matches the client's registration")]
    PrincipalChanged,
    #[error("invalid access token: its acting user is no longer valid: {0}")]
    UserRefused(IuaError),
    #[error("the access token's scopes do not allow {interaction} on {resource_type}")]
    InsufficientScope {
        resource_type: String,
        interaction: Interaction,
    },
    #[error(
        "patient data needs an acting user (extensions.ihe_iua) unless the client is registered as a \
         system integration"
    )]
    UserRequired,
}

impl AuthError {
    /// RFC 6750 §3.1: 401 for missing or invalid tokens, 400 for a malformed request, 403 for scope.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MalformedHeader(_) => StatusCode::BAD_REQUEST,
            AuthError::InsufficientScope { .. } | AuthError::UserRequired => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 §3 challenge.
    pub fn www_authenticate(&self) -> String {
        let error = match self {
            // §3.1: a request without any authentication gets no error code.
            AuthError::Missing => return r#"Bearer realm="navet""#.to_owned(),
            AuthError::MalformedHeader(_) => "invalid_request",
            AuthError::InsufficientScope { .. } | AuthError::UserRequired => "insufficient_scope",
            _ => "invalid_token",
        };
        format!(
            r#"Bearer realm="navet", error="{error}", error_description="{}""#,
            description_text(&self.to_string())
        )
    }

    /// The OperationOutcome issue code (FHIR R4 4.0.1 value set issue-type).
    pub fn issue_code(&self) -> &'static str {
        match self.status() {
            StatusCode::FORBIDDEN => "forbidden",
            _ => "login",
        }
    }
}

/// What authentication reads and writes in navet's persistent state: the replay set and the user directory.
pub(crate) struct Stores {
    pub jti: Arc<dyn JtiStore>,
    pub directory: Arc<dyn UserDirectory>,
}

/// Authentication: the registry, the signing keys, the replay store, the user directory and the
/// verified-token cache.
pub struct AuthService {
    registry: Registry,
    keys: RwLock<Arc<KeyRing>>,
    key_dir: Option<PathBuf>,
    jti_store: Arc<dyn JtiStore>,
    directory: Arc<dyn UserDirectory>,
    cache: TokenCache<Caller>,
    clock: Arc<dyn Clock>,
    urls: Urls,
    token_lifetime: i64,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("urls", &self.urls)
            .field("clients", &self.registry.clients.len())
            .field("token_lifetime", &self.token_lifetime)
            .finish_non_exhaustive()
    }
}

impl AuthService {
    pub(crate) fn new(
        registry: Registry,
        keys: KeyRing,
        key_dir: Option<PathBuf>,
        stores: Stores,
        clock: Arc<dyn Clock>,
        urls: Urls,
        token_lifetime: i64,
    ) -> Self {
        AuthService {
            registry,
            keys: RwLock::new(Arc::new(keys)),
            key_dir,
            jti_store: stores.jti,
            directory: stores.directory,
            cache: TokenCache::new(TOKEN_CACHE_CAPACITY),
            clock,
            urls,
            token_lifetime,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn urls(&self) -> &Urls {
        &self.urls
    }

    pub fn token_lifetime_secs(&self) -> i64 {
        self.token_lifetime
    }

    fn key_ring(&self) -> Arc<KeyRing> {
        // A poisoned lock only means a writer panicked between two whole-Arc swaps; the ring is intact.
        match self.keys.read() {
            Ok(ring) => Arc::clone(&ring),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn set_key_ring(&self, ring: KeyRing) {
        let ring = Arc::new(ring);
        match self.keys.write() {
            Ok(mut slot) => *slot = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
    }

    /// `POST /auth/token`: client credentials with a JWT client assertion.
    pub async fn issue_token(&self, form: TokenRequest) -> Result<TokenResponse, OAuthError> {
        let result = self.issue_token_inner(form).await;
        if let Err(e) = &result {
            tracing::warn!(error = e.code.as_str(), reason = %e.description, "token request refused");
        }
        result
    }

    async fn issue_token_inner(&self, form: TokenRequest) -> Result<TokenResponse, OAuthError> {
        use OAuthErrorCode::*;
        let now = self.clock.now_unix();
        match form.grant_type.as_deref() {
            None => return Err(OAuthError::new(InvalidRequest, "grant_type is required")),
            Some("client_credentials") => {}
            Some(_) => {
                return Err(OAuthError::new(
                    UnsupportedGrantType,
                    "only grant_type=client_credentials is supported",
                ));
            }
        }
        match form.client_assertion_type.as_deref() {
            None => {
                return Err(OAuthError::new(
                    InvalidRequest,
                    "client_assertion_type is required (private_key_jwt client authentication)",
                ));
            }
            Some(JWT_BEARER) => {}
            Some(_) => {
                return Err(OAuthError::new(
                    InvalidClient,
                    format!("client_assertion_type must be {JWT_BEARER}"),
                ));
            }
        }
        let Some(assertion) = form.client_assertion.as_deref().filter(|a| !a.is_empty()) else {
            return Err(OAuthError::new(
                InvalidRequest,
                "client_assertion is required",
            ));
        };
        let Some(scope) = form.scope.as_deref().filter(|s| !s.trim().is_empty()) else {
            return Err(OAuthError::new(
                InvalidScope,
                "scope is required, e.g. scope=system/Patient.rs",
            ));
        };

        let verified = assertion::verify(
            assertion,
            |id| self.registry.client(id),
            form.client_id.as_deref(),
            &self.urls.token,
            now,
        )
        .map_err(|e| OAuthError::new(InvalidClient, e))?;
        let client = &verified.client;

        let requested = Scopes::parse(scope).map_err(|e| OAuthError::new(InvalidScope, e))?;
        let granted = requested.intersect(&client.allowed);
        let granted_text: Vec<String> = granted.iter().map(ToString::to_string).collect();
        let dropped: Vec<String> = requested
            .iter()
            .map(ToString::to_string)
            .filter(|s| !granted_text.contains(s))
            .collect();
        if granted.is_empty() {
            return Err(OAuthError::new(
                InvalidScope,
                format!(
                    "none of the requested scopes is allowed for this client; it may request: {}",
                    client.allowed
                ),
            ));
        }

        let user = ActingUser::from_extensions(verified.extensions.as_ref(), &client.principal)
            .map_err(|e| {
                let code = if e.is_authorization_failure() {
                    InvalidGrant
                } else {
                    InvalidRequest
                };
                OAuthError::new(code, e)
            })?;
        if let Some(user) = &user {
            self.check_directory(user).await?;
        }

        // Last, so only a fully valid assertion consumes its jti. Kept until the assertion could no longer
        // pass the `exp` check anyway.
        let keep_until = verified.exp.saturating_add(assertion::LEEWAY_SECS);
        match self
            .jti_store
            .remember(&client.client_id, &verified.jti, keep_until)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Err(OAuthError::new(InvalidClient, AssertionError::Replayed));
            }
            Err(e) => {
                tracing::error!(error = %e, "the jti store failed; refusing the token request");
                return Err(OAuthError::new(
                    ServerError,
                    "navet could not record the assertion's jti; try again",
                ));
            }
        }

        let claims = AccessTokenClaims {
            iss: self.urls.issuer.clone(),
            aud: self.urls.base.clone(),
            sub: client.client_id.to_string(),
            client_id: client.client_id.to_string(),
            principal: client.principal.hsa_id.to_string(),
            principal_kind: client.principal.kind.as_str().to_owned(),
            scope: granted.to_string(),
            system_integration: client.system_integration,
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(self.token_lifetime),
            extensions: user
                .as_ref()
                .map(|u| serde_json::json!({ "ihe_iua": u.to_claims() })),
        };
        let access_token = access_token::mint(&self.key_ring(), &claims).map_err(|e| {
            tracing::error!(error = %e, "minting an access token failed");
            OAuthError::new(ServerError, "navet could not sign the access token")
        })?;
        tracing::info!(
            client_id = %client.client_id,
            scope = %claims.scope,
            with_user = user.is_some(),
            "access token issued"
        );
        Ok(TokenResponse {
            access_token,
            token_type: "bearer".to_owned(),
            expires_in: self.token_lifetime,
            scope: claims.scope,
            scope_dropped: (!dropped.is_empty()).then(|| dropped.join(" ")),
        })
    }

    /// The acting user must hold an active PractitionerRole at the claimed care unit in navet's directory
    /// ([`crate::auth::directory`]), or the access log would name whoever the client says. Fails closed.
    async fn check_directory(&self, user: &ActingUser) -> Result<(), OAuthError> {
        match self
            .directory
            .holds_role(&user.hsa_id, &user.care_unit)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(OAuthError::new(
                OAuthErrorCode::InvalidGrant,
                IuaError::NotInDirectory {
                    care_unit: user.care_unit.clone(),
                },
            )),
            Err(e) => {
                tracing::error!(error = %e, "the user directory failed; refusing the token request");
                Err(OAuthError::new(
                    OAuthErrorCode::ServerError,
                    "navet could not look up the acting user in its directory; try again",
                ))
            }
        }
    }

    /// Authenticates a request from its `Authorization` header value. Verified tokens are cached until they
    /// expire, so repeated use costs a SHA-256 and a map lookup.
    pub fn authenticate(&self, authorization_header: Option<&str>) -> Result<Caller, AuthError> {
        let result = self.authenticate_inner(authorization_header);
        if let Err(e) = &result {
            // The reason only: never the token, never the user's HSA-id (IuaError messages omit it).
            tracing::warn!(reason = %log_text(&e.to_string()), "request not authenticated");
        }
        result
    }

    fn authenticate_inner(&self, authorization_header: Option<&str>) -> Result<Caller, AuthError> {
        let token = bearer_token(authorization_header)?;
        let now = self.clock.now_unix();
        let cache_key = TokenCache::<Caller>::key(token);
        if let Some(caller) = self.cache.get(&cache_key, now) {
            return Ok(caller);
        }
        let caller = self.verify_uncached(token, now)?;
        self.cache
            .insert(cache_key, caller.expires_at, caller.clone(), now);
        Ok(caller)
    }

    /// Full verification without the cache (also what the benchmark's cold path measures).
    pub fn verify_uncached(&self, token: &str, now: i64) -> Result<Caller, AuthError> {
        let claims = access_token::verify(
            token,
            &self.key_ring(),
            &self.urls.issuer,
            &self.urls.base,
            self.token_lifetime,
            now,
        )?;
        let client = self
            .registry
            .client(&claims.client_id)
            .ok_or(AuthError::ClientGone)?;
        if claims.sub != claims.client_id {
            return Err(TokenError::Claims("sub differs from client_id".into()).into());
        }
        if client.principal.hsa_id.as_str() != claims.principal {
            return Err(AuthError::PrincipalChanged);
        }
        // Re-intersected with the current registration, so narrowing a client's allowance takes effect at
        // once for tokens already issued.
        let scopes = Scopes::parse(&claims.scope)
            .map_err(|e| TokenError::Claims(e.to_string()))?
            .intersect(&client.allowed);
        let user = ActingUser::from_extensions(claims.extensions.as_ref(), &client.principal)
            .map_err(AuthError::UserRefused)?;
        Ok(Caller {
            client_id: Arc::clone(&client.client_id),
            principal: Arc::clone(&client.principal),
            scopes,
            user: user.map(Arc::new),
            system_integration: client.system_integration,
            population_register: client.population_register,
            token_id: Arc::from(claims.jti),
            expires_at: claims.exp,
        })
    }

    /// `GET /auth/jwks`.
    pub fn jwks(&self) -> serde_json::Value {
        self.key_ring().jwks(self.clock.now_unix())
    }

    /// `GET /.well-known/smart-configuration` (SMART App Launch 2.x §"Metadata").
    pub fn smart_configuration(&self) -> serde_json::Value {
        serde_json::json!({
            "issuer": self.urls.issuer,
            "jwks_uri": self.urls.jwks,
            "token_endpoint": self.urls.token,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write"],
            "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        })
    }

    /// Writes a new signing key into the signing key directory and signs with it from now on; the previous
    /// key keeps verifying until its tokens have expired (see [`crate::auth::keys`]).
    pub fn rotate_signing_key(&self) -> Result<(), KeyError> {
        let Some(dir) = &self.key_dir else {
            return Err(KeyError::NoKey(PathBuf::from("(no signing key directory)")));
        };
        let ring = KeyRing::rotate(dir, self.clock.now_unix(), self.token_lifetime)?;
        self.set_key_ring(ring);
        Ok(())
    }

    /// Re-reads the signing key directory (after another process or node rotated the keys).
    pub fn reload_signing_keys(&self) -> Result<(), KeyError> {
        let Some(dir) = &self.key_dir else {
            return Ok(());
        };
        let ring = KeyRing::load_or_generate(dir, self.clock.now_unix(), self.token_lifetime)?;
        self.set_key_ring(ring);
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn key_ring_for_tests(&self) -> Arc<KeyRing> {
        self.key_ring()
    }

    #[cfg(test)]
    pub(crate) fn cached_tokens(&self) -> usize {
        self.cache.len()
    }
}

/// The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1; the scheme is case-insensitive,
/// RFC 9110 §11.1).
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = header
        .split_once(' ')
        .ok_or(AuthError::MalformedHeader("expected 'Bearer <token>'"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MalformedHeader("the scheme must be Bearer"));
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err(AuthError::MalformedHeader("the token is empty"));
    }
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
    {
        return Err(AuthError::MalformedHeader(
            "the token holds characters a bearer token cannot have",
        ));
    }
    Ok(token)
}
