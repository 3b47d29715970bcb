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
//! Signing and verifying are jsonwebtoken's ([`jsonwebtoken::encode`], [`jsonwebtoken::decode`] with the
//! access-token [`Validation`]: ES256 only, `iss` and `aud` required and equal to this navet's). navet adds
//! what the crate does not check, each refusal with its own reason: the header gate
//! ([`crate::auth::jws::header`]: size, `none`/HMAC by name, `crit`), `typ` = `at+jwt`, the key by `kid`
//! (another navet instance's key, or a retired key, is unknown), and the times against navet's clock with
//! saturating arithmetic: expired, not valid yet (`iat` or `nbf` in the future beyond the leeway), and a
//! lifetime (`exp - iat`) longer than navet issues plus the leeway, so even a token signed with navet's key
//! but with `exp` near `i64::MAX` does not verify.
//!
//! [`TokenCache`] remembers verified tokens by their SHA-256 until they expire, so a client that reuses its
//! token costs one hash and one map lookup instead of an ECDSA verification.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
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
    #[error("the token was not issued by this navet ({expected})")]
    WrongIssuer { expected: String },
    #[error("the token is not for this server ({expected})")]
    WrongAudience { expected: String },
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lives longer than the {0} seconds navet issues tokens for")]
    TooLongLived(i64),
    #[error("could not sign the token")]
    Signing,
}

/// Signs `claims` with the ring's current key (jsonwebtoken, ES256).
pub fn mint(keys: &KeyRing, claims: &AccessTokenClaims) -> Result<String, TokenError> {
    let key = keys.signing_key();
    let mut header = Header::new(JwsAlg::Es256.algorithm());
    header.typ = Some(TOKEN_TYPE.to_owned());
    header.kid = Some(key.kid().to_owned());
    jsonwebtoken::encode(&header, claims, key.encoding_key()).map_err(|_| TokenError::Signing)
}

/// The jsonwebtoken validation of an access token: ES256, `iss` and `aud` present and this navet's. Times
/// are checked by [`verify`] against navet's clock (the crate reads the system clock, and its own
/// arithmetic is unsigned).
fn validation(issuer: &str, audience: &str) -> Validation {
    let mut v = Validation::new(JwsAlg::Es256.algorithm());
    v.required_spec_claims = HashSet::from(["iss".to_owned(), "aud".to_owned()]);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = 0;
    v
}

/// Verifies `token` and returns its claims. `issuer` and `audience` are this navet's; `lifetime` is the
/// token lifetime navet issues (`[auth] token_lifetime_secs`).
pub fn verify(
    token: &str,
    keys: &KeyRing,
    issuer: &str,
    audience: &str,
    lifetime: i64,
    now: i64,
) -> Result<AccessTokenClaims, TokenError> {
    let (header, _) = jws::header(token, &[JwsAlg::Es256])?;
    if header.typ.as_deref() != Some(TOKEN_TYPE) {
        return Err(TokenError::WrongType);
    }
    let kid = header.kid.as_deref().ok_or(TokenError::NoKid)?;
    let key = keys.verifying_key(kid, now).ok_or(TokenError::UnknownKey)?;
    let claims = jsonwebtoken::decode::<AccessTokenClaims>(
        token,
        key.verifier().decoding_key(),
        &validation(issuer, audience),
    )
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer {
            expected: issuer.to_owned(),
        },
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => TokenError::WrongIssuer {
            expected: issuer.to_owned(),
        },
        ErrorKind::InvalidAudience | ErrorKind::MissingRequiredClaim(_) => {
            TokenError::WrongAudience {
                expected: audience.to_owned(),
            }
        }
        ErrorKind::Base64(_) | ErrorKind::InvalidToken => TokenError::Jws(JwsError::Malformed(
            "the payload or signature is not base64url",
        )),
        _ => TokenError::Claims(e.to_string()),
    })?
    .claims;
    // RFC 7519 §4.1.4: not accepted on or after `exp`. Leeway only for the start of validity, where another
    // node's clock running slightly ahead would otherwise refuse a fresh token. Saturating: the claims are
    // signed, but a bug or a leaked key must not turn into an overflow.
    if now >= claims.exp {
        return Err(TokenError::Expired);
    }
    let latest_start = now.saturating_add(LEEWAY_SECS);
    if claims.nbf > latest_start || claims.iat > latest_start {
        return Err(TokenError::NotYetValid);
    }
    if claims.exp.saturating_sub(claims.iat) > lifetime.saturating_add(LEEWAY_SECS) {
        return Err(TokenError::TooLongLived(lifetime));
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
    const LIFETIME: i64 = 300;

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
        assert_eq!(
            verify(&token, &keys, ISS, AUD, LIFETIME, NOW + 1).unwrap(),
            claims()
        );
    }

    #[test]
    fn a_verifier_without_jsonwebtoken_accepts_navets_tokens() {
        // Interop, now that navet both signs and verifies with jsonwebtoken: plain aws-lc-rs and base64,
        // from the published JWKS alone, accept the format (header, ES256 R||S signature, claims).
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let keys = KeyRing::ephemeral(NOW).unwrap();
        let token = mint(&keys, &claims()).unwrap();
        let jwk = &keys.jwks(NOW)["keys"][0];
        let point = [
            vec![0x04],
            b64.decode(jwk["x"].as_str().unwrap()).unwrap(),
            b64.decode(jwk["y"].as_str().unwrap()).unwrap(),
        ]
        .concat();
        let (signing_input, signature) = token.rsplit_once('.').unwrap();
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            &point,
        )
        .verify(signing_input.as_bytes(), &b64.decode(signature).unwrap())
        .unwrap();
        let (header, payload) = signing_input.split_once('.').unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(header).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": keys.signing_key().kid()})
        );
        let payload: AccessTokenClaims =
            serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
        assert_eq!(payload, claims());
    }

    #[test]
    fn the_token_stops_verifying_at_exp() {
        let keys = KeyRing::ephemeral(NOW).unwrap();
        let token = mint(&keys, &claims()).unwrap();
        assert!(verify(&token, &keys, ISS, AUD, LIFETIME, NOW + 299).is_ok());
        assert_eq!(
            verify(&token, &keys, ISS, AUD, LIFETIME, NOW + 300),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_token_from_the_future_beyond_the_leeway_is_not_valid_yet() {
        let keys = KeyRing::ephemeral(NOW).unwrap();
        let token = mint(&keys, &claims()).unwrap();
        assert!(verify(&token, &keys, ISS, AUD, LIFETIME, NOW - LEEWAY_SECS).is_ok());
        assert_eq!(
            verify(&token, &keys, ISS, AUD, LIFETIME, NOW - LEEWAY_SECS - 1),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn a_token_signed_by_navet_that_lives_longer_than_navet_issues_is_refused() {
        // Issue 8: exp near i64::MAX once verified. Every one of these is signed with navet's own key.
        let keys = KeyRing::ephemeral(NOW).unwrap();
        let cases = [
            (NOW, i64::MAX, TokenError::TooLongLived(LIFETIME)),
            (
                NOW,
                NOW + LIFETIME + LEEWAY_SECS + 1,
                TokenError::TooLongLived(LIFETIME),
            ),
            // An old iat with an exp still ahead: the lifetime gives it away.
            (NOW - 10_000, NOW + 10, TokenError::TooLongLived(LIFETIME)),
            (i64::MIN, NOW + 10, TokenError::TooLongLived(LIFETIME)),
            (i64::MIN, i64::MAX, TokenError::TooLongLived(LIFETIME)),
            // iat in the future (an exp beyond it does not help).
            (i64::MAX, i64::MAX, TokenError::NotYetValid),
            (NOW + LEEWAY_SECS + 1, NOW + 100, TokenError::NotYetValid),
            // Expiry comes first, whatever else is wrong.
            (i64::MIN, i64::MIN, TokenError::Expired),
            (NOW, NOW, TokenError::Expired),
        ];
        for (iat, exp, expected) in cases {
            let mut c = claims();
            c.iat = iat;
            c.nbf = iat;
            c.exp = exp;
            let token = mint(&keys, &c).unwrap();
            assert_eq!(
                verify(&token, &keys, ISS, AUD, LIFETIME, NOW),
                Err(expected),
                "iat {iat} exp {exp}"
            );
        }
        // The lifetime navet issues, plus the leeway, still verifies.
        let mut c = claims();
        c.exp = NOW + LIFETIME + LEEWAY_SECS;
        assert!(verify(&mint(&keys, &c).unwrap(), &keys, ISS, AUD, LIFETIME, NOW).is_ok());
        // And nbf far ahead is not valid yet even with a normal iat.
        let mut c = claims();
        c.nbf = i64::MAX;
        assert_eq!(
            verify(&mint(&keys, &c).unwrap(), &keys, ISS, AUD, LIFETIME, NOW),
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
