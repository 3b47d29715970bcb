//! Client assertion verification: `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, RFC 7521
//! §4.2, SMART App Launch 2.x Backend Services "Authenticating to the token endpoint").
//!
//! jsonwebtoken checks the signature and `aud` (the assertion [`Validation`]: the key's one algorithm, `aud`
//! required and = the token URL, a string or an array holding it). navet checks, in this order, each
//! refusal with its own reason:
//! 1. the JOSE header gate ([`jws::header`]: size, `none` and HMAC refused before any key is touched, then
//!    ES384 or RS384, `crit` refused);
//! 2. `iss` = `sub` = a registered client_id (and = the form's `client_id` when the form has one), read
//!    from the not-yet-verified payload only to find whose keys to try;
//! 3. the signature (and `aud`), with each of the client's registered keys for that algorithm — only the key
//!    whose `kid` matches when the header names one that is registered, otherwise every key of the
//!    algorithm;
//! 4. `exp` present, in the future, and at most [`MAX_LIFETIME_SECS`] ahead (+ leeway); `nbf` and `iat`,
//!    when present, not in the future beyond [`LEEWAY_SECS`] (saturating arithmetic throughout: `exp` near
//!    `i64::MAX` or `MIN` is refused, never an overflow);
//! 5. `jti` present (1 to 256 characters). Whether it was seen before is the caller's next step, against
//!    the [`crate::auth::jti::JtiStore`], after everything here has passed (so a forged assertion cannot burn
//!    a client's jti).

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

use crate::auth::jws::{self, JwsAlg, JwsError};
use crate::auth::registry::Client;

/// `exp` may be at most this far in the future (SMART Backend Services: "no more than five minutes").
pub const MAX_LIFETIME_SECS: i64 = 300;

/// Clock leeway for client clocks.
pub const LEEWAY_SECS: i64 = 30;

/// The assertion algorithms `spec/auth.md` accepts.
pub const ACCEPTED_ALGS: &[JwsAlg] = &[JwsAlg::Es384, JwsAlg::Rs384];

/// Why an assertion was refused. All of these are RFC 6749 `invalid_client`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("client_assertion: {0}")]
    Jws(#[from] JwsError),
    #[error("client_assertion claims are malformed: {0}")]
    Claims(String),
    #[error("client_assertion: iss and sub must both be present and equal the client_id")]
    IssSub,
    #[error("client_assertion: unknown client")]
    UnknownClient,
    #[error("client_assertion: iss/sub differ from the client_id form parameter")]
    ClientIdMismatch,
    #[error("client_assertion: the client has no registered {0} key")]
    NoKeyForAlg(JwsAlg),
    #[error(
        "client_assertion: the signature does not verify with any registered key of the client"
    )]
    BadSignature,
    #[error("client_assertion: aud must be the token URL {expected}")]
    WrongAudience { expected: String },
    #[error("client_assertion: exp is required")]
    MissingExp,
    #[error("client_assertion: expired")]
    Expired,
    #[error("client_assertion: exp is more than {MAX_LIFETIME_SECS} seconds in the future")]
    TooLongLived,
    #[error("client_assertion: not valid yet (nbf in the future)")]
    NotYetValid,
    #[error("client_assertion: iat is in the future")]
    IssuedInFuture,
    #[error("client_assertion: jti is required (1 to 256 characters)")]
    MissingJti,
    #[error("client_assertion: jti was already used (replay)")]
    Replayed,
}

/// The registered claims navet reads; everything else is ignored except `extensions` (the IUA user).
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    extensions: Option<serde_json::Value>,
}

/// A verified assertion, before the replay check.
#[derive(Debug)]
pub struct VerifiedAssertion {
    pub client: Arc<Client>,
    pub jti: String,
    pub exp: i64,
    /// The raw `extensions` claim, for [`crate::auth::iua::ActingUser::from_extensions`].
    pub extensions: Option<serde_json::Value>,
}

/// Verifies everything about `assertion` except replay. `lookup` finds a registered client by id;
/// `form_client_id` is the optional `client_id` form parameter (RFC 7521 §4.2).
pub fn verify<'c>(
    assertion: &str,
    lookup: impl Fn(&str) -> Option<&'c Arc<Client>>,
    form_client_id: Option<&str>,
    token_url: &str,
    now: i64,
) -> Result<VerifiedAssertion, AssertionError> {
    let (header, alg) = jws::header(assertion, ACCEPTED_ALGS)?;
    // Nothing in the payload is trusted yet: it is read only to find whose keys to try (RFC 7523 §3: `iss`
    // names the client). The verified claims below are decoded again, from the signed bytes.
    let unverified: AssertionClaims =
        jsonwebtoken::dangerous::insecure_decode_claims(assertion).map_err(claims_error)?;
    let client_id = match (&unverified.iss, &unverified.sub) {
        (Some(iss), Some(sub)) if iss == sub && !iss.is_empty() => iss.as_str(),
        _ => return Err(AssertionError::IssSub),
    };
    if form_client_id.is_some_and(|id| id != client_id) {
        return Err(AssertionError::ClientIdMismatch);
    }
    let client = lookup(client_id).ok_or(AssertionError::UnknownClient)?;

    let of_alg: Vec<_> = client.keys.iter().filter(|k| k.alg() == alg).collect();
    if of_alg.is_empty() {
        return Err(AssertionError::NoKeyForAlg(alg));
    }
    let named: Vec<_> = match header.kid.as_deref() {
        Some(kid) if of_alg.iter().any(|k| k.kid() == kid) => {
            of_alg.iter().copied().filter(|k| k.kid() == kid).collect()
        }
        _ => of_alg,
    };
    let validation = validation(alg, token_url);
    let mut verified = Err(AssertionError::BadSignature);
    for key in named {
        match jsonwebtoken::decode::<AssertionClaims>(assertion, key.decoding_key(), &validation) {
            Ok(data) => {
                verified = Ok(data.claims);
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
            // Anything else comes after the signature verified: the claims are this client's.
            Err(e) => {
                verified = Err(match e.kind() {
                    ErrorKind::InvalidAudience | ErrorKind::MissingRequiredClaim(_) => {
                        AssertionError::WrongAudience {
                            expected: token_url.to_owned(),
                        }
                    }
                    _ => claims_error(e),
                });
                break;
            }
        }
    }
    let claims = verified?;

    let exp = claims.exp.ok_or(AssertionError::MissingExp)?;
    if now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(AssertionError::Expired);
    }
    if exp > now.saturating_add(MAX_LIFETIME_SECS + LEEWAY_SECS) {
        return Err(AssertionError::TooLongLived);
    }
    let latest_start = now.saturating_add(LEEWAY_SECS);
    if claims.nbf.is_some_and(|nbf| nbf > latest_start) {
        return Err(AssertionError::NotYetValid);
    }
    if claims.iat.is_some_and(|iat| iat > latest_start) {
        return Err(AssertionError::IssuedInFuture);
    }
    let jti = match claims.jti {
        Some(jti) if !jti.is_empty() && jti.chars().count() <= 256 => jti,
        _ => return Err(AssertionError::MissingJti),
    };
    Ok(VerifiedAssertion {
        client: Arc::clone(client),
        jti,
        exp,
        extensions: claims.extensions,
    })
}

/// The jsonwebtoken validation of a client assertion signed with `alg`: `aud` required and = the token
/// URL. Times are checked against navet's clock by [`verify`] (the crate reads the system clock).
fn validation(alg: JwsAlg, token_url: &str) -> Validation {
    let mut v = Validation::new(alg.algorithm());
    v.required_spec_claims = HashSet::from(["aud".to_owned()]);
    v.set_audience(&[token_url]);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = 0;
    v
}

fn claims_error(e: jsonwebtoken::errors::Error) -> AssertionError {
    match e.kind() {
        ErrorKind::Base64(_) | ErrorKind::InvalidToken => AssertionError::Jws(JwsError::Malformed(
            "the payload or signature is not base64url",
        )),
        _ => AssertionError::Claims(e.to_string()),
    }
}
