//! navet's access tokens: JWTs in the RFC 9068 profile ("JWT Profile for OAuth 2.0 Access Tokens"), signed
//! ES256 with the current key of [`KeyRing`].
//!
//! Header: `{"alg":"ES256","typ":"at+jwt","kid":<RFC 7638 thumbprint>}` (RFC 9068 §2.1).
//! Claims (RFC 9068 §2.2 plus navet's):
//! - `iss` = `{base_url}/auth`: the authorization server, where `/auth/jwks` lives;
//! - `aud` = `{base_url}`: the FHIR base URL the token is good for (the FHIR API is served at the root:
//!   `GET {base_url}/metadata`), SMART's convention for `aud`;
//! - `sub` and `client_id` = the client id (Backend Services tokens have no end-user subject; the user, if any,
//!   is in `extensions.ihe_iua`, as in the client's assertion);
//! - `principal` (HSA-id) and `principal_kind`; `scope` (granted, space separated); `system_integration`;
//! - `jti` (random, for the audit log), `iat`, `nbf` = `iat`, `exp` = `iat + token_lifetime`.
//!
//! Verification refuses, each with its own reason: malformed tokens, `alg` none or HMAC or anything but ES256,
//! `typ` other than `at+jwt`, an unknown `kid` (another navet instance's key, or a retired key), a bad
//! signature (tampering), wrong `iss`/`aud`, expired and not-yet-valid tokens.
//!
//! [`TokenCache`] remembers verified tokens by their SHA-256 until they expire, so a client that reuses its
//! token costs one hash and one map lookup instead of an ECDSA verification.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::jws::{self, JwsAlg, JwsError};
use crate::auth::keys::{KeyRing, LEEWAY_SECS};

/// The `typ` header of navet's access tokens (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub client_id: String,
    pub principal: String,
    pub principal_kind: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system_integration: bool,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Jws(#[from] JwsError),
    #[error("the token's typ is not \"at+jwt\"; it is not a navet access token")]
    WrongType,
    #[error("the token names no signing key (kid)")]
    NoKid,
    #[error(
        "the token was signed by a key this navet does not know (another instance, or a key retired after \
         its tokens expired)"
    )]
    UnknownKey,
    #[error("the token's signature does not verify; it was altered or forged")]
    BadSignature,
    #[error("the token's claims are malformed: {0}")]
    Claims(String),
    #[error("the token was issued by {found:?}, not by this navet ({expected})")]
    WrongIssuer { found: String, expected: String },
    #[error("the token is for audience {found:?}, not for this server ({expected})")]
    WrongAudience { found: String, expected: String },
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("could not sign the token")]
    Signing,
}

/// Signs `claims` with the ring's current key.
pub fn mint(keys: &KeyRing, claims: &AccessTokenClaims) -> Result<String, TokenError> {
    let key = keys.signing_key();
    let header =
        serde_json::json!({ "alg": JwsAlg::Es256.as_str(), "typ": TOKEN_TYPE, "kid": key.kid() });
    let header = serde_json::to_vec(&header).map_err(|_| TokenError::Signing)?;
    let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Signing)?;
    let mut token = jws::b64url_encode(&header);
    token.push('.');
    token.push_str(&jws::b64url_encode(&payload));
    let signature = key.sign(token.as_bytes()).ok_or(TokenError::Signing)?;
    token.push('.');
    token.push_str(&jws::b64url_encode(&signature));
    Ok(token)
}

/// Verifies `token` and returns its claims. `issuer` and `audience` are this navet's.
pub fn verify(
    token: &str,
    keys: &KeyRing,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Result<AccessTokenClaims, TokenError> {
    let parsed = jws::parse(token, &[JwsAlg::Es256])?;
    if parsed.header.typ.as_deref() != Some(TOKEN_TYPE) {
        return Err(TokenError::WrongType);
    }
    let kid = parsed.header.kid.as_deref().ok_or(TokenError::NoKid)?;
    let key = keys.verifying_key(kid, now).ok_or(TokenError::UnknownKey)?;
    if !key
        .verifier()
        .verify(parsed.signing_input.as_bytes(), &parsed.signature)
    {
        return Err(TokenError::BadSignature);
    }
    let claims: AccessTokenClaims =
        serde_json::from_slice(&parsed.payload).map_err(|e| TokenError::Claims(e.to_string()))?;
    if claims.iss != issuer {
        return Err(TokenError::WrongIssuer {
            found: claims.iss,
            expected: issuer.to_owned(),
        });
    }
    if claims.aud != audience {
        return Err(TokenError::WrongAudience {
            found: claims.aud,
            expected: audience.to_owned(),
        });
    }
    // RFC 7519 §4.1.4: not accepted on or after `exp`. Leeway only for the start of validity, where another
    // node's clock running slightly ahead would otherwise refuse a fresh token.
    if now >= claims.exp {
        return Err(TokenError::Expired);
    }
    if claims.nbf > now + LEEWAY_SECS || claims.iat > now + LEEWAY_SECS {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

/// A bounded map from SHA-256(token) to what verifying it produced, each entry valid until the token's `exp`.
///
/// Keyed by the hash, not the token, so the map never holds a usable credential. Bounded: when full, expired
/// entries are swept and, if that frees too little, an arbitrary eighth of the entries is evicted (amortised
/// O(1) per insert), so a flood of distinct tokens costs verification time but never unbounded memory.
#[derive(Debug)]
pub struct TokenCache<T> {
    entries: RwLock<HashMap<[u8; 32], (i64, T)>>,
    capacity: usize,
}

impl<T: Clone> TokenCache<T> {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            entries: RwLock::new(HashMap::with_capacity(capacity.min(1024))),
            capacity,
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The cached value for `key` if its token has not expired at `now`.
    pub fn get(&self, key: &[u8; 32], now: i64) -> Option<T> {
        let entries = self.entries.read().ok()?;
        match entries.get(key) {
            Some((exp, value)) if now < *exp => Some(value.clone()),
            _ => None,
        }
    }

    pub fn insert(&self, key: [u8; 32], expires_at: i64, value: T, now: i64) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (exp, _)| now < *exp);
            if entries.len() >= self.capacity {
                let evict: Vec<[u8; 32]> = entries
                    .keys()
                    .take((self.capacity / 8).max(1))
                    .copied()
                    .collect();
                for victim in evict {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(key, (expires_at, value));
    }

    /// Forgets everything (after a key rotation or a configuration reload, to be safe).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://navet.example/auth";
    const AUD: &str = "https://navet.example";
    const NOW: i64 = 1_700_000_000;

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: ISS.into(),
            aud: AUD.into(),
            sub: "demo-csk".into(),
            client_id: "demo-csk".into(),
            principal: "SE2321000255-CSK01".into(),
            principal_kind: "sjukhus".into(),
            scope: "system/*.cruds".into(),
            system_integration: false,
            jti: "j".into(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 300,
            extensions: None,
        }
    }

    #[test]
    fn a_minted_token_verifies_and_round_trips_its_claims() {
        let keys = KeyRing::ephemeral(NOW).unwrap();
        let token = mint(&keys, &claims()).unwrap();
        assert_eq!(verify(&token, &keys, ISS, AUD, NOW + 1).unwrap(), claims());
    }

    #[test]
    fn jsonwebtoken_verifies_navets_tokens_too() {
        // Interop: an independent implementation accepts the format (header, ES256 R||S signature, claims).
        let keys = KeyRing::ephemeral(NOW).unwrap();
        let token = mint(&keys, &claims()).unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(keys.jwks(NOW)).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&[AUD]);
        validation.set_issuer(&[ISS]);
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<AccessTokenClaims>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims, claims());
        assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
    }

    #[test]
    fn the_token_stops_verifying_at_exp() {
        let keys = KeyRing::ephemeral(NOW).unwrap();
        let token = mint(&keys, &claims()).unwrap();
        assert!(verify(&token, &keys, ISS, AUD, NOW + 299).is_ok());
        assert_eq!(
            verify(&token, &keys, ISS, AUD, NOW + 300),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_token_from_the_future_beyond_the_leeway_is_not_valid_yet() {
        let keys = KeyRing::ephemeral(NOW).unwrap();
        let token = mint(&keys, &claims()).unwrap();
        assert!(verify(&token, &keys, ISS, AUD, NOW - LEEWAY_SECS).is_ok());
        assert_eq!(
            verify(&token, &keys, ISS, AUD, NOW - LEEWAY_SECS - 1),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn the_cache_returns_a_value_until_its_token_expires() {
        let cache = TokenCache::new(2);
        let k = TokenCache::<u8>::key("t");
        cache.insert(k, 100, 7u8, 0);
        assert_eq!(cache.get(&k, 99), Some(7));
        assert_eq!(cache.get(&k, 100), None);
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let cache = TokenCache::new(16);
        for i in 0..100 {
            cache.insert(TokenCache::<u8>::key(&i.to_string()), 100, 1u8, 0);
            assert!(cache.len() <= 16);
        }
        // The newest entry always makes it in.
        assert_eq!(cache.get(&TokenCache::<u8>::key("99"), 0), Some(1));
        // Expired entries go first.
        let cache = TokenCache::new(2);
        cache.insert(TokenCache::<u8>::key("old"), 10, 1u8, 0);
        cache.insert(TokenCache::<u8>::key("live"), 100, 2u8, 0);
        cache.insert(TokenCache::<u8>::key("new"), 100, 3u8, 50);
        assert_eq!(cache.get(&TokenCache::<u8>::key("live"), 50), Some(2));
        assert_eq!(cache.get(&TokenCache::<u8>::key("new"), 50), Some(3));
    }
}
