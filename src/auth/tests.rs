//! Service-level tests: the happy path for every demo client, every attack of issue 3 against the client
//! assertion and the access token (each asserting its specific refusal), key rotation, the cache, and the
//! HTTP surface.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::auth::access_token::{self, AccessTokenClaims, TokenError};
use crate::auth::cli;
use crate::auth::config::{AuthConfig, AuthSettings, FileSource, build};
use crate::auth::demo::{self, AUTH_DEMO_TOML};
use crate::auth::iua::{ActingUserClaims, PurposeOfUse};
use crate::auth::jws::JwsError;
use crate::auth::keys::{KeyRing, LEEWAY_SECS};
use crate::auth::scopes::Interaction;
use crate::auth::service::{
    AuthError, AuthService, JWT_BEARER, OAuthError, OAuthErrorCode, TokenRequest,
};
use crate::auth::{ManualClock, MemoryJtiStore};

const BASE: &str = "https://navet.test";
const TOKEN_URL: &str = "https://navet.test/auth/token";
const NOW: i64 = 1_750_000_000;

struct Fixture {
    service: AuthService,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn demo_config() -> AuthConfig {
    AuthConfig::from_toml(AUTH_DEMO_TOML).unwrap()
}

fn b64url_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A replay store whose directory holds every demo user's role at their care unit, as the demo seed's
/// PractitionerRoles do.
fn demo_store() -> Arc<MemoryJtiStore> {
    let roles = demo_config().users.into_iter().map(|u| {
        (
            crate::domain::HsaId::parse(&u.hsa_id).unwrap(),
            crate::domain::HsaId::parse(&u.care_unit).unwrap(),
        )
    });
    Arc::new(MemoryJtiStore::with_roles(roles))
}

fn fixture() -> Fixture {
    fixture_at(BASE)
}

fn fixture_at(base: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let settings = AuthSettings::new(base, dir.path(), FileSource::Embedded(demo::embedded_file))
        .with_clock(clock.clone());
    let service = build(&demo_config(), settings, demo_store()).unwrap();
    Fixture {
        service,
        clock,
        _dir: dir,
    }
}

fn user(hsa: &str, purpose: PurposeOfUse) -> ActingUserClaims {
    cli::user_claims(&demo_config(), hsa, purpose).unwrap()
}

fn private_key(client_id: &str) -> &'static str {
    demo::demo_key(client_id).unwrap().private_pem
}

fn assertion(client_id: &str, user: Option<&ActingUserClaims>) -> String {
    cli::client_assertion(client_id, TOKEN_URL, private_key(client_id), user, NOW).unwrap()
}

fn request(assertion: String, scope: &str) -> TokenRequest {
    TokenRequest {
        grant_type: Some("client_credentials".into()),
        scope: Some(scope.into()),
        client_assertion_type: Some(JWT_BEARER.into()),
        client_assertion: Some(assertion),
        client_id: None,
    }
}

/// Claims of a valid assertion for `client_id`, to be altered by a test.
fn claims(client_id: &str) -> Value {
    json!({
        "iss": client_id, "sub": client_id, "aud": TOKEN_URL,
        "exp": NOW + 240, "iat": NOW, "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// Signs `claims` as an assertion with the demo key of `key_owner` (ES384 or RS384 as that key is).
fn sign_with(key_owner: &str, claims: &Value) -> String {
    let pem = private_key(key_owner);
    let (alg, key) = match EncodingKey::from_ec_pem(pem.as_bytes()) {
        Ok(key) => (Algorithm::ES384, key),
        Err(_) => (
            Algorithm::RS384,
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        ),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &key).unwrap()
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    )
}

/// Replaces the payload of a compact JWS, keeping header and signature.
fn with_payload(token: &str, claims: &Value) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let payload = b64url_encode(claims.to_string().as_bytes());
    parts[1] = &payload;
    parts.join(".")
}

fn payload_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn refused(f: &Fixture, req: TokenRequest) -> OAuthError {
    f.service.issue_token(req).await.unwrap_err()
}

fn assert_refusal(err: &OAuthError, code: OAuthErrorCode, phrase: &str) {
    assert_eq!(err.code, code, "{err}");
    assert!(err.description.contains(phrase), "{phrase:?} not in {err}");
}

async fn token_for(
    f: &Fixture,
    client_id: &str,
    user: Option<&ActingUserClaims>,
    scope: &str,
) -> String {
    f.service
        .issue_token(request(assertion(client_id, user), scope))
        .await
        .unwrap()
        .access_token
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn access_claims(token: &str) -> AccessTokenClaims {
    serde_json::from_value(payload_of(token)).unwrap()
}

// ------------------------------------------------------------------------------------------ happy paths

#[tokio::test]
async fn every_demo_client_gets_a_token_that_authenticates_as_its_principal() {
    let f = fixture();
    let cfg = demo_config();
    for client in f.service.registry().clients() {
        // A user of the client's own principal where the demo region has one; itACiH acts without a user.
        let user = cfg
            .users
            .iter()
            .find(|u| u.care_unit == client.principal.hsa_id.as_str())
            .map(|u| self::user(&u.hsa_id, PurposeOfUse::Treat));
        let answer = f
            .service
            .issue_token(request(
                assertion(&client.client_id, user.as_ref()),
                "system/*.rs",
            ))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", client.client_id));
        assert_eq!(answer.token_type, "bearer");
        assert_eq!(answer.expires_in, 300);
        let caller = f
            .service
            .authenticate(Some(&bearer(&answer.access_token)))
            .unwrap();
        assert_eq!(&*caller.client_id, &*client.client_id);
        assert_eq!(caller.principal.hsa_id, client.principal.hsa_id);
        assert_eq!(caller.scopes.to_string(), answer.scope);
        assert_eq!(
            caller.user.as_ref().map(|u| u.hsa_id.to_string()),
            user.as_ref().map(|u| u.subject_id.clone()),
            "{}",
            client.client_id
        );
        assert_eq!(
            caller.system_integration,
            client.client_id.as_ref() == "demo-itacih"
        );
        // Patient data needs a user, except for the registered integration.
        assert_eq!(
            caller.require_patient_data_access().is_ok(),
            user.is_some() || caller.system_integration,
            "{}",
            client.client_id
        );
    }
    assert_eq!(f.service.registry().clients().len(), 13);
}

#[tokio::test]
async fn both_assertion_algorithms_are_exercised_by_the_demo_clients() {
    let f = fixture();
    for (client, alg) in [
        ("demo-csk", "ES384"),
        ("demo-lasarettet-ystad", "RS384"),
        ("demo-itacih", "RS384"),
    ] {
        let a = assertion(client, None);
        let header = jsonwebtoken::decode_header(&a).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);
        f.service
            .issue_token(request(a, "system/Patient.rs"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_access_token_carries_principal_scope_and_acting_user() {
    let f = fixture();
    let sara = user("SE2321000255-P0101", PurposeOfUse::Etreat);
    let token = token_for(
        &f,
        "demo-mtn-kristianstad",
        Some(&sara),
        "system/Task.cruds system/Patient.rs",
    )
    .await;
    let c = access_claims(&token);
    assert_eq!(c.iss, "https://navet.test/auth");
    assert_eq!(c.aud, BASE);
    assert_eq!(c.sub, "demo-mtn-kristianstad");
    assert_eq!(c.principal, "SE2321000255-MTN01");
    assert_eq!(c.principal_kind, "mtn");
    assert_eq!(c.scope, "system/Patient.rs system/Task.cruds");
    assert_eq!(c.exp - c.iat, 300);
    assert_eq!(
        c.extensions.unwrap()["ihe_iua"],
        serde_json::to_value(&sara).unwrap()
    );
    let caller = f.service.authenticate(Some(&bearer(&token))).unwrap();
    let acting = caller.user.unwrap();
    assert_eq!(acting.purpose, PurposeOfUse::Etreat);
    assert_eq!(acting.care_unit.as_str(), "SE2321000255-MTN01");
    assert_eq!(acting.name.as_deref(), Some("Sara Sjöberg"));
}

#[tokio::test]
async fn a_kid_naming_a_registered_key_and_an_assertion_without_kid_both_verify() {
    let f = fixture();
    // cli::client_assertion sends the RFC 7638 thumbprint as kid; sign_with sends none.
    f.service
        .issue_token(request(assertion("demo-csk", None), "system/*.rs"))
        .await
        .unwrap();
    let a = sign_with("demo-csk", &claims("demo-csk"));
    assert!(jsonwebtoken::decode_header(&a).unwrap().kid.is_none());
    f.service
        .issue_token(request(a, "system/*.rs"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_assertion_signed_without_jsonwebtoken_verifies() {
    // Interop: a client that builds the compact JWS itself (aws-lc-rs, ES384 R||S) is accepted.
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject;
    let f = fixture();
    let der = PrivatePkcs8KeyDer::from_pem_slice(private_key("demo-csk").as_bytes()).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der.secret_pkcs8_der()).unwrap();
    let input = format!(
        "{}.{}",
        b64url_encode(br#"{"alg":"ES384","typ":"JWT"}"#),
        b64url_encode(claims("demo-csk").to_string().as_bytes())
    );
    let signature = pair
        .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
        .unwrap();
    let a = format!("{input}.{}", b64url_encode(signature.as_ref()));
    f.service
        .issue_token(request(a, "system/*.rs"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_audience_array_holding_the_token_url_is_accepted() {
    let f = fixture();
    let mut c = claims("demo-csk");
    c["aud"] = json!(["https://elsewhere", TOKEN_URL]);
    f.service
        .issue_token(request(sign_with("demo-csk", &c), "system/*.rs"))
        .await
        .unwrap();
}

// --------------------------------------------------------------------------------- the token request form

#[tokio::test]
async fn a_grant_type_other_than_client_credentials_is_unsupported() {
    let f = fixture();
    let mut req = request(assertion("demo-csk", None), "system/*.rs");
    req.grant_type = Some("password".into());
    assert_refusal(
        &refused(&f, req).await,
        OAuthErrorCode::UnsupportedGrantType,
        "client_credentials",
    );
}

#[tokio::test]
async fn missing_parameters_are_invalid_requests_and_a_missing_scope_is_invalid_scope() {
    let f = fixture();
    let mut req = request(assertion("demo-csk", None), "system/*.rs");
    req.grant_type = None;
    assert_refusal(
        &refused(&f, req).await,
        OAuthErrorCode::InvalidRequest,
        "grant_type is required",
    );
    let mut req = request(assertion("demo-csk", None), "system/*.rs");
    req.client_assertion = None;
    assert_refusal(
        &refused(&f, req).await,
        OAuthErrorCode::InvalidRequest,
        "client_assertion is required",
    );
    let mut req = request(assertion("demo-csk", None), "system/*.rs");
    req.client_assertion_type = None;
    assert_refusal(
        &refused(&f, req).await,
        OAuthErrorCode::InvalidRequest,
        "client_assertion_type",
    );
    let mut req = request(assertion("demo-csk", None), "system/*.rs");
    req.scope = None;
    assert_refusal(
        &refused(&f, req).await,
        OAuthErrorCode::InvalidScope,
        "scope is required",
    );
}

#[tokio::test]
async fn another_client_assertion_type_is_an_invalid_client() {
    let f = fixture();
    let mut req = request(assertion("demo-csk", None), "system/*.rs");
    req.client_assertion_type =
        Some("urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into());
    assert_refusal(
        &refused(&f, req).await,
        OAuthErrorCode::InvalidClient,
        "client_assertion_type must be",
    );
}

#[tokio::test]
async fn a_client_id_parameter_that_differs_from_the_assertion_is_refused() {
    let f = fixture();
    let mut req = request(assertion("demo-csk", None), "system/*.rs");
    req.client_id = Some("demo-asih".into());
    assert_refusal(
        &refused(&f, req).await,
        OAuthErrorCode::InvalidClient,
        "differ from the client_id",
    );
}

// --------------------------------------------------------------------------- attacks on the client assertion

#[tokio::test]
async fn an_unsigned_assertion_with_alg_none_is_refused() {
    let f = fixture();
    let a = unsigned(&json!({"alg": "none", "typ": "JWT"}), &claims("demo-csk"));
    let err = refused(&f, request(a, "system/*.rs")).await;
    assert_refusal(
        &err,
        OAuthErrorCode::InvalidClient,
        "unsigned tokens (alg 'none') are refused",
    );
    assert_eq!(err.status(), axum::http::StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_assertion_hmac_signed_with_the_clients_public_key_as_secret_is_refused() {
    let f = fixture();
    let public_pem = demo::demo_key("demo-csk").unwrap().public_pem;
    let a = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("demo-csk"),
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap();
    assert_refusal(
        &refused(&f, request(a, "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "HMAC-signed tokens (alg 'HS256') are refused",
    );
}

#[tokio::test]
async fn an_assertion_for_another_audience_is_refused() {
    let f = fixture();
    let mut c = claims("demo-csk");
    c["aud"] = json!("https://other-navet.test/auth/token");
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "aud must be the token URL https://navet.test/auth/token",
    );
    let mut c = claims("demo-csk");
    c.as_object_mut().unwrap().remove("aud");
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "aud must be the token URL",
    );
}

#[tokio::test]
async fn an_assertion_whose_issuer_is_not_its_subject_is_refused() {
    let f = fixture();
    let mut c = claims("demo-csk");
    c["iss"] = json!("demo-asih");
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "iss and sub must both be present and equal the client_id",
    );
    let mut c = claims("demo-csk");
    c.as_object_mut().unwrap().remove("iss");
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "iss and sub must both",
    );
}

#[tokio::test]
async fn an_expired_assertion_is_refused() {
    let f = fixture();
    let mut c = claims("demo-csk");
    c["exp"] = json!(NOW - 31);
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "client_assertion: expired",
    );
}

#[tokio::test]
async fn an_assertion_without_exp_or_living_longer_than_five_minutes_is_refused() {
    let f = fixture();
    let mut c = claims("demo-csk");
    c.as_object_mut().unwrap().remove("exp");
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "exp is required",
    );
    let mut c = claims("demo-csk");
    c["exp"] = json!(NOW + 300 + 31);
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "more than 300 seconds in the future",
    );
}

#[tokio::test]
async fn an_assertion_that_is_not_valid_yet_is_refused() {
    let f = fixture();
    let mut c = claims("demo-csk");
    c["nbf"] = json!(NOW + 31);
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "not valid yet",
    );
    let mut c = claims("demo-csk");
    c["iat"] = json!(NOW + 31);
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "iat is in the future",
    );
}

#[tokio::test]
async fn clock_skew_within_the_leeway_is_tolerated() {
    let f = fixture();
    let mut c = claims("demo-csk");
    c["nbf"] = json!(NOW + 30);
    c["iat"] = json!(NOW + 30);
    c["exp"] = json!(NOW + 330);
    f.service
        .issue_token(request(sign_with("demo-csk", &c), "system/*.rs"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_replayed_assertion_is_refused() {
    let f = fixture();
    let a = assertion("demo-csk", None);
    f.service
        .issue_token(request(a.clone(), "system/*.rs"))
        .await
        .unwrap();
    assert_refusal(
        &refused(&f, request(a, "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "jti was already used (replay)",
    );
}

#[tokio::test]
async fn a_replay_is_refused_by_a_service_that_shares_the_jti_store_as_after_a_restart() {
    let store = demo_store();
    let make = || {
        let dir = tempfile::tempdir().unwrap();
        let settings =
            AuthSettings::new(BASE, dir.path(), FileSource::Embedded(demo::embedded_file))
                .with_clock(Arc::new(ManualClock::new(NOW)));
        (build(&demo_config(), settings, store.clone()).unwrap(), dir)
    };
    let a = assertion("demo-csk", None);
    let (first, _d1) = make();
    first
        .issue_token(request(a.clone(), "system/*.rs"))
        .await
        .unwrap();
    let (restarted, _d2) = make();
    let err = restarted
        .issue_token(request(a, "system/*.rs"))
        .await
        .unwrap_err();
    assert_refusal(&err, OAuthErrorCode::InvalidClient, "replay");
}

#[tokio::test]
async fn an_assertion_without_jti_is_refused() {
    let f = fixture();
    let mut c = claims("demo-csk");
    c.as_object_mut().unwrap().remove("jti");
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "jti is required",
    );
}

#[tokio::test]
async fn an_unknown_client_is_refused() {
    let f = fixture();
    let a = sign_with("demo-csk", &claims("demo-unknown"));
    assert_refusal(
        &refused(&f, request(a, "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "unknown client",
    );
}

#[tokio::test]
async fn an_assertion_signed_with_another_clients_key_is_refused() {
    let f = fixture();
    // demo-vc-nasby's ES384 key signing for demo-csk.
    let a = sign_with("demo-vc-nasby", &claims("demo-csk"));
    assert_refusal(
        &refused(&f, request(a, "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "signature does not verify with any registered key of the client",
    );
    // An RS384 assertion for a client that has only an ES384 key.
    let a = sign_with("demo-itacih", &claims("demo-csk"));
    assert_refusal(
        &refused(&f, request(a, "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "the client has no registered RS384 key",
    );
}

#[tokio::test]
async fn a_tampered_assertion_payload_is_refused() {
    let f = fixture();
    let signed = sign_with("demo-auditor", &claims("demo-auditor"));
    // Swap in another principal's client id, keeping the auditor's signature.
    let mut c = payload_of(&signed);
    c["iss"] = json!("demo-csk");
    c["sub"] = json!("demo-csk");
    assert_refusal(
        &refused(&f, request(with_payload(&signed, &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "signature does not verify",
    );
    // Or just stretch the lifetime.
    let mut c = payload_of(&signed);
    c["exp"] = json!(NOW + 200);
    assert_refusal(
        &refused(&f, request(with_payload(&signed, &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidClient,
        "signature does not verify",
    );
}

#[tokio::test]
async fn scope_beyond_the_clients_allowance_is_refused_when_nothing_is_left() {
    let f = fixture();
    let err = refused(
        &f,
        request(
            assertion("demo-auditor", None),
            "system/Patient.d system/Task.cruds",
        ),
    )
    .await;
    assert_refusal(
        &err,
        OAuthErrorCode::InvalidScope,
        "none of the requested scopes is allowed",
    );
    assert!(
        err.description
            .contains("system/AuditEvent.rs system/Patient.rs")
    );
    assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn scope_escalation_is_narrowed_to_the_allowance_and_the_rest_is_forbidden() {
    let f = fixture();
    let log = user("SE2321000255-P0900", PurposeOfUse::Hoperat);
    let answer = f
        .service
        .issue_token(request(
            assertion("demo-auditor", Some(&log)),
            "system/*.cruds",
        ))
        .await
        .unwrap();
    assert_eq!(answer.scope, "system/AuditEvent.rs system/Patient.rs");
    let caller = f
        .service
        .authenticate(Some(&bearer(&answer.access_token)))
        .unwrap();
    caller.require("AuditEvent", Interaction::Search).unwrap();
    let denied = caller.require("Patient", Interaction::Delete).unwrap_err();
    assert_eq!(
        denied,
        AuthError::InsufficientScope {
            resource_type: "Patient".into(),
            interaction: Interaction::Delete
        }
    );
    assert_eq!(denied.status(), axum::http::StatusCode::FORBIDDEN);
    assert_eq!(denied.issue_code(), "forbidden");
    assert!(caller.require("ServiceRequest", Interaction::Read).is_err());
}

#[tokio::test]
async fn malformed_scopes_are_invalid_scope() {
    let f = fixture();
    assert_refusal(
        &refused(&f, request(assertion("demo-csk", None), "patient/*.rs")).await,
        OAuthErrorCode::InvalidScope,
        "not a SMART system scope",
    );
}

#[tokio::test]
async fn a_user_whose_care_unit_belongs_to_another_principal_is_refused() {
    let f = fixture();
    // P0201 works at MTN Ystad; the MTN Kristianstad client may not claim that unit.
    let ida = user("SE2321000255-P0201", PurposeOfUse::Treat);
    let err = refused(
        &f,
        request(
            assertion("demo-mtn-kristianstad", Some(&ida)),
            "system/*.rs",
        ),
    )
    .await;
    assert_refusal(
        &err,
        OAuthErrorCode::InvalidGrant,
        "SE2321000255-MTN02 is not a care unit of the client's principal SE2321000255-MTN01",
    );
    assert!(
        !err.description.contains("P0201"),
        "the user's HSA-id must not be echoed"
    );
}

#[tokio::test]
async fn a_malformed_user_extension_is_an_invalid_request() {
    let f = fixture();
    let mut c = claims("demo-csk");
    c["extensions"] = json!({"ihe_iua": {
        "subject_id": "SE2321000255-P0001", "subject_role": "CEO",
        "subject_organization_id": "SE2321000255-CSK01", "purpose_of_use": "TREAT"}});
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidRequest,
        "subject_role 'CEO' is not a known role",
    );
    let mut c = claims("demo-csk");
    c["extensions"] = json!({"ihe_iua": {
        "subject_id": "SE2321000255-P0001", "subject_role": "LAK",
        "subject_organization_id": "SE2321000255-CSK01", "purpose_of_use": "RESEARCH"}});
    assert_refusal(
        &refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await,
        OAuthErrorCode::InvalidRequest,
        "purpose_of_use 'RESEARCH'",
    );
}

#[tokio::test]
async fn a_refused_assertion_does_not_consume_its_jti() {
    let f = fixture();
    let ida = user("SE2321000255-P0201", PurposeOfUse::Treat);
    let mut c = claims("demo-mtn-kristianstad");
    c["extensions"] = json!({"ihe_iua": ida});
    let bad = sign_with("demo-mtn-kristianstad", &c);
    refused(&f, request(bad, "system/*.rs")).await;
    // The same jti in a corrected assertion is still accepted.
    c.as_object_mut().unwrap().remove("extensions");
    f.service
        .issue_token(request(
            sign_with("demo-mtn-kristianstad", &c),
            "system/*.rs",
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_non_ascii_algorithm_is_refused_at_the_token_endpoint_and_on_the_bearer_path() {
    // Issue 8 item 4: {"alg":"€"} sliced a string on a non-character boundary and panicked the request.
    let f = fixture();
    for alg in ["€", "H€", "ñ", "ЕS384"] {
        let a = unsigned(&json!({"alg": alg}), &claims("demo-csk")) + "c2ln";
        let err = refused(&f, request(a.clone(), "system/*.rs")).await;
        assert_refusal(
            &err,
            OAuthErrorCode::InvalidClient,
            "is not accepted here; accepted: ES256, ES384, RS384",
        );
        assert_eq!(
            invalid_token(&f, &a),
            AuthError::InvalidToken(TokenError::Jws(JwsError::AlgNotAccepted {
                found: alg.into(),
                accepted: "ES256, ES384, RS384".into()
            }))
        );
    }
    // Non-ASCII kid and typ on an otherwise well-formed header reach the signature check and fail there.
    let a = sign_with_header(
        "demo-csk",
        json!({"alg": "ES384", "kid": "€", "typ": "ÄT+JWT"}),
        &claims("demo-csk"),
    );
    f.service
        .issue_token(request(a, "system/*.rs"))
        .await
        .unwrap();
}

#[tokio::test]
async fn assertion_times_at_the_integer_limits_are_refused_without_overflow() {
    let f = fixture();
    let cases: [(&str, Value, &str); 9] = [
        (
            "exp",
            json!(i64::MAX),
            "more than 300 seconds in the future",
        ),
        ("exp", json!(i64::MIN), "client_assertion: expired"),
        (
            "exp",
            json!(i64::MAX - 29),
            "more than 300 seconds in the future",
        ),
        ("exp", json!(u64::MAX), "claims are malformed"),
        ("exp", json!(1.5e300), "claims are malformed"),
        ("exp", json!("soon"), "claims are malformed"),
        ("nbf", json!(i64::MAX), "not valid yet"),
        ("iat", json!(i64::MAX), "iat is in the future"),
        // An iat of i64::MIN is merely old: the checks pass it without overflow and refuse the missing jti.
        ("iat", json!(i64::MIN), "jti is required"),
    ];
    for (claim, value, phrase) in cases {
        let mut c = claims("demo-csk");
        c[claim] = value.clone();
        if phrase == "jti is required" {
            c.as_object_mut().unwrap().remove("jti");
        }
        let err = refused(&f, request(sign_with("demo-csk", &c), "system/*.rs")).await;
        assert_refusal(&err, OAuthErrorCode::InvalidClient, phrase);
    }
}

/// Signs `claims` with the demo key of `key_owner` under a header given as JSON (non-ASCII members
/// included), which jsonwebtoken's `Header` type would not let a test write.
fn sign_with_header(key_owner: &str, header: Value, claims: &Value) -> String {
    let pem = private_key(key_owner);
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::ES384).unwrap();
    format!("{input}.{signature}")
}

#[tokio::test]
async fn a_user_without_a_role_at_the_care_unit_in_the_directory_is_refused() {
    let f = fixture();
    // A well-formed user of MTN Kristianstad's own unit, but not in the directory.
    let unknown = ActingUserClaims {
        subject_id: "SE2321000255-P9999".into(),
        subject_name: Some("Okänd Person".into()),
        subject_role: "SSK".into(),
        subject_organization_id: "SE2321000255-MTN01".into(),
        purpose_of_use: "TREAT".into(),
    };
    // And a known user claiming a unit of the same principal where they hold no role: P0101's role is at
    // MTN01, not at the hospital's unit CSK01, which demo-csk's principal owns.
    let mut elsewhere = user("SE2321000255-P0101", PurposeOfUse::Treat);
    elsewhere.subject_organization_id = "SE2321000255-CSK01".into();
    for (client, claims) in [
        ("demo-mtn-kristianstad", &unknown),
        ("demo-csk", &elsewhere),
    ] {
        let mut c = self::claims(client);
        c["extensions"] = json!({ "ihe_iua": claims });
        let err = refused(&f, request(sign_with(client, &c), "system/*.rs")).await;
        assert_refusal(
            &err,
            OAuthErrorCode::InvalidGrant,
            &format!(
                "subject_id holds no active PractitionerRole at care unit {} in navet's directory",
                claims.subject_organization_id
            ),
        );
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        assert!(
            !err.description.contains(&claims.subject_id),
            "the user's HSA-id must not be echoed"
        );
        // The refusal did not consume the jti: the same assertion without the user is accepted.
        c.as_object_mut().unwrap().remove("extensions");
        f.service
            .issue_token(request(sign_with(client, &c), "system/*.rs"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_failing_directory_refuses_the_token_request() {
    struct Broken;
    #[async_trait::async_trait]
    impl crate::auth::JtiStore for Broken {
        async fn remember(
            &self,
            _: &str,
            _: &str,
            _: i64,
        ) -> Result<bool, crate::auth::JtiStoreError> {
            Ok(true)
        }
    }
    #[async_trait::async_trait]
    impl crate::auth::UserDirectory for Broken {
        async fn holds_role(
            &self,
            _: &crate::domain::HsaId,
            _: &crate::domain::HsaId,
        ) -> Result<bool, crate::auth::DirectoryError> {
            Err(crate::auth::DirectoryError("down".into()))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let settings = AuthSettings::new(BASE, dir.path(), FileSource::Embedded(demo::embedded_file))
        .with_clock(Arc::new(ManualClock::new(NOW)));
    let service = build(&demo_config(), settings, Arc::new(Broken)).unwrap();
    let sara = user("SE2321000255-P0101", PurposeOfUse::Treat);
    let err = service
        .issue_token(request(
            assertion("demo-mtn-kristianstad", Some(&sara)),
            "system/*.rs",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code, OAuthErrorCode::ServerError);
    assert!(err.description.contains("directory"), "{err}");
    // Without a user there is nothing to look up.
    service
        .issue_token(request(
            assertion("demo-mtn-kristianstad", None),
            "system/*.rs",
        ))
        .await
        .unwrap();
}

// ------------------------------------------------------------------------------ attacks on the access token

fn mint_with_service_key(f: &Fixture, claims: &AccessTokenClaims) -> String {
    access_token::mint(&f.service.key_ring_for_tests(), claims).unwrap()
}

async fn valid_claims(f: &Fixture) -> (String, AccessTokenClaims) {
    let token = token_for(f, "demo-auditor", None, "system/AuditEvent.rs").await;
    let claims = access_claims(&token);
    (token, claims)
}

fn invalid_token(f: &Fixture, token: &str) -> AuthError {
    f.service.authenticate(Some(&bearer(token))).unwrap_err()
}

#[tokio::test]
async fn an_access_token_with_alg_none_is_refused() {
    let f = fixture();
    let (token, claims) = valid_claims(&f).await;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let forged = unsigned(
        &json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
        &serde_json::to_value(&claims).unwrap(),
    );
    let err = invalid_token(&f, &forged);
    assert_eq!(
        err,
        AuthError::InvalidToken(TokenError::Jws(JwsError::AlgNone))
    );
    assert_eq!(err.status(), axum::http::StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_access_token_hmac_signed_with_navets_public_key_is_refused() {
    let f = fixture();
    let (token, mut claims) = valid_claims(&f).await;
    claims.scope = "system/*.cruds".into();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid);
    // The published JWKS is what an attacker has; try both it and the bare JWK as the HMAC secret.
    let jwks = f.service.jwks();
    for secret in [jwks.to_string(), jwks["keys"][0].to_string()] {
        let forged = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            invalid_token(&f, &forged),
            AuthError::InvalidToken(TokenError::Jws(JwsError::AlgHmac("HS256".into())))
        );
    }
}

#[tokio::test]
async fn an_access_token_for_another_audience_is_refused() {
    let f = fixture();
    let (_, mut claims) = valid_claims(&f).await;
    claims.aud = "https://other.test".into();
    assert!(matches!(
        invalid_token(&f, &mint_with_service_key(&f, &claims)),
        AuthError::InvalidToken(TokenError::WrongAudience { .. })
    ));
}

#[tokio::test]
async fn an_access_token_from_another_issuer_is_refused() {
    let f = fixture();
    let (_, mut claims) = valid_claims(&f).await;
    claims.iss = "https://evil.test/auth".into();
    assert!(matches!(
        invalid_token(&f, &mint_with_service_key(&f, &claims)),
        AuthError::InvalidToken(TokenError::WrongIssuer { .. })
    ));
}

#[tokio::test]
async fn an_expired_access_token_is_refused_even_after_it_was_cached() {
    let f = fixture();
    let (token, _) = valid_claims(&f).await;
    f.service.authenticate(Some(&bearer(&token))).unwrap();
    f.clock.advance(299);
    f.service.authenticate(Some(&bearer(&token))).unwrap();
    f.clock.advance(1);
    assert_eq!(
        invalid_token(&f, &token),
        AuthError::InvalidToken(TokenError::Expired)
    );
}

#[tokio::test]
async fn an_access_token_that_is_not_valid_yet_is_refused() {
    let f = fixture();
    let (_, mut claims) = valid_claims(&f).await;
    claims.iat = NOW + LEEWAY_SECS + 1;
    claims.nbf = NOW + LEEWAY_SECS + 1;
    claims.exp = NOW + 600;
    assert_eq!(
        invalid_token(&f, &mint_with_service_key(&f, &claims)),
        AuthError::InvalidToken(TokenError::NotYetValid)
    );
}

#[tokio::test]
async fn an_access_token_signed_by_navet_with_exp_near_i64_max_is_refused() {
    let f = fixture();
    let (_, claims) = valid_claims(&f).await;
    for (iat, exp, expected) in [
        (NOW, i64::MAX, TokenError::TooLongLived(300)),
        (
            NOW,
            NOW + 300 + LEEWAY_SECS + 1,
            TokenError::TooLongLived(300),
        ),
        (i64::MIN, NOW + 10, TokenError::TooLongLived(300)),
        (i64::MAX, i64::MAX, TokenError::NotYetValid),
        (i64::MIN, i64::MIN, TokenError::Expired),
    ] {
        let mut c = claims.clone();
        c.iat = iat;
        c.nbf = iat;
        c.exp = exp;
        let token = mint_with_service_key(&f, &c);
        assert_eq!(
            invalid_token(&f, &token),
            AuthError::InvalidToken(expected),
            "iat {iat} exp {exp}"
        );
        // Refused tokens never enter the cache.
        assert_eq!(f.service.cached_tokens(), 0);
    }
}

#[tokio::test]
async fn a_tampered_access_token_is_refused() {
    let f = fixture();
    let (token, claims) = valid_claims(&f).await;
    let mut escalated = serde_json::to_value(&claims).unwrap();
    escalated["scope"] = json!("system/*.cruds");
    assert_eq!(
        invalid_token(&f, &with_payload(&token, &escalated)),
        AuthError::InvalidToken(TokenError::BadSignature)
    );
    // A flipped signature bit too.
    let mut bytes = token.into_bytes();
    let last = bytes.len() - 3;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).unwrap();
    assert_eq!(
        invalid_token(&f, &flipped),
        AuthError::InvalidToken(TokenError::BadSignature)
    );
}

#[tokio::test]
async fn an_access_token_minted_by_another_navet_instance_is_refused() {
    let f = fixture();
    let other = fixture();
    let token = token_for(&other, "demo-csk", None, "system/*.rs").await;
    // Same base URL, same clients, same claims shape: only the signing key differs.
    assert_eq!(
        invalid_token(&f, &token),
        AuthError::InvalidToken(TokenError::UnknownKey)
    );
    let (_, claims) = valid_claims(&f).await;
    let foreign = access_token::mint(&KeyRing::ephemeral(NOW).unwrap(), &claims).unwrap();
    assert_eq!(
        invalid_token(&f, &foreign),
        AuthError::InvalidToken(TokenError::UnknownKey)
    );
}

#[tokio::test]
async fn a_client_assertion_is_not_accepted_as_an_access_token() {
    let f = fixture();
    let err = invalid_token(&f, &assertion("demo-csk", None));
    assert!(
        matches!(
            err,
            AuthError::InvalidToken(TokenError::Jws(JwsError::AlgNotAccepted { .. }))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_token_of_another_type_signed_by_navet_is_refused() {
    let f = fixture();
    let (token, _) = valid_claims(&f).await;
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": jsonwebtoken::decode_header(&token).unwrap().kid});
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0] = b64url_encode(header.to_string().as_bytes());
    assert_eq!(
        invalid_token(&f, &parts.join(".")),
        AuthError::InvalidToken(TokenError::WrongType)
    );
}

#[tokio::test]
async fn a_token_for_a_client_no_longer_registered_is_refused() {
    let f = fixture();
    let (_, mut claims) = valid_claims(&f).await;
    claims.client_id = "demo-removed".into();
    claims.sub = "demo-removed".into();
    assert_eq!(
        invalid_token(&f, &mint_with_service_key(&f, &claims)),
        AuthError::ClientGone
    );
}

#[test]
fn malformed_authorization_headers_are_refused_with_400() {
    let f = fixture();
    assert_eq!(
        f.service.authenticate(None).unwrap_err(),
        AuthError::Missing
    );
    assert_eq!(
        AuthError::Missing.status(),
        axum::http::StatusCode::UNAUTHORIZED
    );
    for header in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer tök.en.x",
        "Token abc",
    ] {
        let err = f.service.authenticate(Some(header)).unwrap_err();
        assert!(
            matches!(err, AuthError::MalformedHeader(_)),
            "{header:?}: {err}"
        );
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        assert!(err.www_authenticate().contains("error=\"invalid_request\""));
    }
    // A well-formed header with garbage in it is an invalid token.
    assert!(matches!(
        f.service.authenticate(Some("Bearer abc")).unwrap_err(),
        AuthError::InvalidToken(TokenError::Jws(JwsError::Malformed(_)))
    ));
    // The scheme is case-insensitive.
    assert!(matches!(
        f.service.authenticate(Some("bearer abc")).unwrap_err(),
        AuthError::InvalidToken(_)
    ));
}

#[tokio::test]
async fn a_token_without_a_user_may_not_read_patient_data_unless_the_client_is_an_integration() {
    let f = fixture();
    let csk = f.service.authenticate(Some(&bearer(
        &token_for(&f, "demo-csk", None, "system/*.rs").await,
    )));
    assert_eq!(
        csk.unwrap().require_patient_data_access().unwrap_err(),
        AuthError::UserRequired
    );
    let itacih = f
        .service
        .authenticate(Some(&bearer(
            &token_for(&f, "demo-itacih", None, "system/*.rs").await,
        )))
        .unwrap();
    assert!(itacih.system_integration);
    assert_eq!(itacih.require_patient_data_access().unwrap(), None);
}

// ------------------------------------------------------------------------------------------- rotation, cache

#[tokio::test]
async fn a_token_signed_by_the_previous_key_verifies_until_it_expires_and_the_jwks_lists_both_keys()
{
    let f = fixture();
    let old_token = token_for(&f, "demo-csk", None, "system/*.rs").await;
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .unwrap()
        .kid
        .unwrap();
    f.clock.advance(100);
    f.service.rotate_signing_key().unwrap();

    let new_token = token_for_at(&f, "demo-csk", NOW + 100).await;
    let new_kid = jsonwebtoken::decode_header(&new_token)
        .unwrap()
        .kid
        .unwrap();
    assert_ne!(old_kid, new_kid);
    let kids: Vec<String> = f.service.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, vec![new_kid, old_kid]);

    // Uncached, so the signature really is checked with the retired key.
    f.service.verify_uncached(&old_token, NOW + 299).unwrap();
    f.service.verify_uncached(&new_token, NOW + 299).unwrap();
    assert_eq!(
        f.service
            .verify_uncached(&old_token, NOW + 300)
            .unwrap_err(),
        AuthError::InvalidToken(TokenError::Expired)
    );
    // Once no token of the old key can be valid any more, it leaves the JWKS.
    f.clock.set(NOW + 100 + 300 + LEEWAY_SECS);
    assert_eq!(f.service.jwks()["keys"].as_array().unwrap().len(), 1);
}

async fn token_for_at(f: &Fixture, client_id: &str, now: i64) -> String {
    let a = cli::client_assertion(client_id, TOKEN_URL, private_key(client_id), None, now).unwrap();
    f.service
        .issue_token(request(a, "system/*.rs"))
        .await
        .unwrap()
        .access_token
}

#[tokio::test]
async fn a_rotated_key_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let make = || {
        let settings =
            AuthSettings::new(BASE, dir.path(), FileSource::Embedded(demo::embedded_file))
                .with_clock(clock.clone());
        build(&demo_config(), settings, demo_store()).unwrap()
    };
    let before = make();
    let token = before
        .issue_token(request(assertion("demo-csk", None), "system/*.rs"))
        .await
        .unwrap()
        .access_token;
    clock.advance(10);
    before.rotate_signing_key().unwrap();
    let restarted = make();
    restarted.verify_uncached(&token, NOW + 20).unwrap();
    assert_eq!(restarted.jwks()["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_reused_token_is_answered_from_the_cache() {
    let f = fixture();
    let token = token_for(&f, "demo-csk", None, "system/*.rs").await;
    assert_eq!(f.service.cached_tokens(), 0);
    let first = f.service.authenticate(Some(&bearer(&token))).unwrap();
    assert_eq!(f.service.cached_tokens(), 1);
    let second = f.service.authenticate(Some(&bearer(&token))).unwrap();
    assert_eq!(f.service.cached_tokens(), 1);
    assert!(Arc::ptr_eq(&first.principal, &second.principal));
    assert_eq!(first.token_id, second.token_id);
}

#[tokio::test]
async fn refused_tokens_are_not_cached() {
    let f = fixture();
    let (token, claims) = valid_claims(&f).await;
    let mut c = serde_json::to_value(&claims).unwrap();
    c["scope"] = json!("system/*.cruds");
    let _ = f
        .service
        .authenticate(Some(&bearer(&with_payload(&token, &c))));
    assert_eq!(f.service.cached_tokens(), 0);
}

#[test]
fn errors_never_carry_the_token_and_descriptions_are_rfc_6749_safe() {
    let err = OAuthError::new(OAuthErrorCode::InvalidClient, "alg \"none\" \\ åäö");
    assert_eq!(err.description, "alg 'none' / ???");
    let debug = format!(
        "{:?}",
        request("secret.assertion.value".into(), "system/*.rs")
    );
    assert!(!debug.contains("secret.assertion.value"));
}

// ----------------------------------------------------------------------------------------------------- HTTP

mod over_http {
    use super::*;
    use axum::Router;
    use axum::extract::FromRef;
    use axum::routing::get;

    use crate::auth::http::{Authenticated, PatientDataCaller, router};

    #[derive(Clone)]
    struct AppState {
        auth: Arc<AuthService>,
    }

    impl FromRef<AppState> for Arc<AuthService> {
        fn from_ref(state: &AppState) -> Self {
            state.auth.clone()
        }
    }

    async fn whoami(Authenticated(caller): Authenticated) -> String {
        format!("{} {}", caller.client_id, caller.principal.hsa_id)
    }

    async fn patient_data(caller: PatientDataCaller) -> String {
        caller.client_id.to_string()
    }

    /// Serves the auth router plus two protected routes on a random port; returns the base URL.
    async fn serve() -> (String, Arc<AuthService>, tempfile::TempDir) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        // Real time: the CLI signs with the system clock.
        let settings =
            AuthSettings::new(&base, dir.path(), FileSource::Embedded(demo::embedded_file));
        let auth = Arc::new(build(&demo_config(), settings, demo_store()).unwrap());
        let app = Router::new()
            .route("/whoami", get(whoami))
            .route("/Patient", get(patient_data))
            .merge(router())
            .with_state(AppState { auth: auth.clone() });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, auth, dir)
    }

    #[tokio::test]
    async fn navet_token_fetches_a_token_that_opens_a_protected_route() {
        let (base, _auth, _dir) = serve().await;
        let sara = user("SE2321000255-P0101", PurposeOfUse::Treat);
        let key = cli::demo_private_key("demo-mtn-kristianstad").unwrap();
        let token = cli::fetch_token(
            &base,
            "demo-mtn-kristianstad",
            key,
            "system/*.cruds",
            Some(&sara),
        )
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let answer = http
            .get(format!("{base}/whoami"))
            .header("Authorization", bearer(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.text().await.unwrap(),
            "demo-mtn-kristianstad SE2321000255-MTN01"
        );
        let answer = http
            .get(format!("{base}/Patient"))
            .header("Authorization", bearer(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }

    #[tokio::test]
    async fn the_token_endpoint_answers_with_no_store_and_rfc_6749_errors() {
        let (base, _auth, _dir) = serve().await;
        let http = reqwest::Client::new();
        let now = jiff::Timestamp::now().as_second();
        let a = cli::client_assertion(
            "demo-csk",
            &format!("{base}/auth/token"),
            private_key("demo-csk"),
            None,
            now,
        )
        .unwrap();
        let ok = http
            .post(format!("{base}/auth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", a.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["cache-control"], "no-store");
        let body: Value = ok.json().await.unwrap();
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 300);
        assert_eq!(body["scope"], "system/Patient.rs");

        // The same assertion again: a replay.
        let replay = http
            .post(format!("{base}/auth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", a.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status(), 401);
        assert_eq!(replay.headers()["cache-control"], "no-store");
        let body: Value = replay.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("replay")
        );

        // Not a form at all.
        let not_form = http
            .post(format!("{base}/auth/token"))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(not_form.status(), 400);
        let body: Value = not_form.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");

        // A parameter given twice (RFC 6749 §3.2).
        let twice = http
            .post(format!("{base}/auth/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        assert_eq!(twice.status(), 400);
        let body: Value = twice.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }

    #[tokio::test]
    async fn a_request_without_a_valid_token_gets_401_with_a_challenge_and_an_operation_outcome() {
        let (base, _auth, _dir) = serve().await;
        let http = reqwest::Client::new();
        let missing = http.get(format!("{base}/whoami")).send().await.unwrap();
        assert_eq!(missing.status(), 401);
        assert_eq!(
            missing.headers()["www-authenticate"],
            r#"Bearer realm="navet""#
        );
        assert_eq!(missing.headers()["content-type"], crate::fhir::FHIR_JSON);
        let outcome: Value = missing.json().await.unwrap();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["code"], "login");

        let forged = unsigned(&json!({"alg": "none"}), &json!({"sub": "demo-csk"}));
        let invalid = http
            .get(format!("{base}/whoami"))
            .header("Authorization", bearer(&forged))
            .send()
            .await
            .unwrap();
        assert_eq!(invalid.status(), 401);
        let challenge = invalid.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge
                .starts_with(r#"Bearer realm="navet", error="invalid_token", error_description=""#)
        );
        assert!(challenge.contains("unsigned tokens"));
        let outcome: Value = invalid.json().await.unwrap();
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(diagnostics.contains("alg \"none\""), "{diagnostics}");
        assert!(!diagnostics.contains(&forged));

        let two_headers = http
            .get(format!("{base}/whoami"))
            .header("Authorization", "Bearer a.b.c")
            .header("Authorization", "Bearer d.e.f")
            .send()
            .await
            .unwrap();
        assert_eq!(two_headers.status(), 400);
    }

    #[tokio::test]
    async fn patient_data_routes_refuse_a_token_without_a_user_with_403() {
        let (base, _auth, _dir) = serve().await;
        let key = cli::demo_private_key("demo-csk").unwrap();
        let token = cli::fetch_token(&base, "demo-csk", key, "system/*.rs", None)
            .await
            .unwrap();
        let answer = reqwest::Client::new()
            .get(format!("{base}/Patient"))
            .header("Authorization", bearer(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 403);
        let outcome: Value = answer.json().await.unwrap();
        assert_eq!(outcome["issue"][0]["code"], "forbidden");
    }

    #[tokio::test]
    async fn discovery_and_jwks_are_public() {
        let (base, _auth, _dir) = serve().await;
        let http = reqwest::Client::new();
        let smart: Value = http
            .get(format!("{base}/.well-known/smart-configuration"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(smart["token_endpoint"], format!("{base}/auth/token"));
        assert_eq!(smart["jwks_uri"], format!("{base}/auth/jwks"));
        assert_eq!(
            smart["grant_types_supported"],
            json!(["client_credentials"])
        );
        assert_eq!(
            smart["token_endpoint_auth_methods_supported"],
            json!(["private_key_jwt"])
        );
        assert_eq!(
            smart["token_endpoint_auth_signing_alg_values_supported"],
            json!(["RS384", "ES384"])
        );
        assert_eq!(
            smart["capabilities"],
            json!(["client-confidential-asymmetric", "permission-v2"])
        );
        let jwks = http.get(format!("{base}/auth/jwks")).send().await.unwrap();
        assert_eq!(jwks.status(), 200);
        let jwks: Value = jwks.json().await.unwrap();
        assert_eq!(jwks["keys"][0]["alg"], "ES256");
    }

    #[tokio::test]
    async fn the_cli_reports_the_servers_refusal() {
        let (base, _auth, _dir) = serve().await;
        let err = cli::fetch_token(
            &base,
            "demo-csk",
            private_key("demo-vc-nasby"),
            "system/*.rs",
            None,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("invalid_client"), "{err}");
    }
}
