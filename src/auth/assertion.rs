//! Client assertion verification: `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, RFC 7521
//! §4.2, SMART App Launch 2.x Backend Services "Authenticating to the token endpoint").
//!
//! Checks, in this order, each refusal with its own reason:
//! 1. the JOSE header: compact form, `alg` not `none` and not HMAC (refused before any key is touched), then
//!    ES384 or RS384 ([`jws::parse`]);
//! 2. `iss` = `sub` = a registered client_id (and = the form's `client_id` when the form has one);
//! 3. the signature, with each of the client's registered keys for that algorithm — only the key whose `kid`
//!    matches when the header names one that is registered, otherwise every key of the algorithm;
//! 4. `aud` = the token URL exactly (a string, or an array holding it);
//! 5. `exp` present, in the future, and at most [`MAX_LIFETIME_SECS`] ahead (+ leeway);
//!    `nbf` and `iat`, when present, not in the future beyond [`LEEWAY_SECS`];
//! 6. `jti` present (1 to 256 characters). Whether it was seen before is the caller's next step, against
//!    the [`crate::auth::jti::JtiStore`], after everything here has passed (so a forged assertion cannot burn
//!    a client's jti).

use std::sync::Arc;

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
    aud: Option<Audience>,
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

/// RFC 7519 §4.1.3: `aud` is a string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
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
    let parsed = jws::parse(assertion, ACCEPTED_ALGS)?;
    // Nothing in the payload is trusted yet: it is read only to find whose keys to try.
    let claims: AssertionClaims = serde_json::from_slice(&parsed.payload)
        .map_err(|e| AssertionError::Claims(e.to_string()))?;
    let client_id = match (&claims.iss, &claims.sub) {
        (Some(iss), Some(sub)) if iss == sub && !iss.is_empty() => iss.as_str(),
        _ => return Err(AssertionError::IssSub),
    };
    if form_client_id.is_some_and(|id| id != client_id) {
        return Err(AssertionError::ClientIdMismatch);
    }
    let client = lookup(client_id).ok_or(AssertionError::UnknownClient)?;

    let of_alg: Vec<_> = client
        .keys
        .iter()
        .filter(|k| k.alg() == parsed.alg)
        .collect();
    if of_alg.is_empty() {
        return Err(AssertionError::NoKeyForAlg(parsed.alg));
    }
    let named: Vec<_> = match parsed.header.kid.as_deref() {
        Some(kid) if of_alg.iter().any(|k| k.kid() == kid) => {
            of_alg.iter().copied().filter(|k| k.kid() == kid).collect()
        }
        _ => of_alg,
    };
    if !named
        .iter()
        .any(|k| k.verify(parsed.signing_input.as_bytes(), &parsed.signature))
    {
        return Err(AssertionError::BadSignature);
    }

    if !claims.aud.as_ref().is_some_and(|a| a.contains(token_url)) {
        return Err(AssertionError::WrongAudience {
            expected: token_url.to_owned(),
        });
    }
    let exp = claims.exp.ok_or(AssertionError::MissingExp)?;
    if now >= exp + LEEWAY_SECS {
        return Err(AssertionError::Expired);
    }
    if exp > now + MAX_LIFETIME_SECS + LEEWAY_SECS {
        return Err(AssertionError::TooLongLived);
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
        return Err(AssertionError::NotYetValid);
    }
    if claims.iat.is_some_and(|iat| iat > now + LEEWAY_SECS) {
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
