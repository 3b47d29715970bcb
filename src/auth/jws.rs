//! Compact JWS (RFC 7515 §7.1) parsing, the algorithm gate, and the public keys signatures are checked with.
//!
//! Both client assertions and navet's access tokens go through [`parse`] first. It decodes only the header
//! and refuses `alg: none` (RFC 7518 §3.6) and every HMAC algorithm before any key is looked at, so neither
//! "unsigned" nor "HMAC keyed with the public key" (the classic algorithm-confusion attack) can reach a
//! verifier. Which asymmetric algorithm is acceptable is then fixed by the *key*, never by the token: an
//! ES384 key verifies only ES384, an RSA key only RS384 ([`VerifyingKey::alg`]).
//!
//! Signatures are checked with aws-lc-rs `ParsedPublicKey` (the key is parsed and validated once, at
//! configuration time), the same library jsonwebtoken 11 delegates to with its `aws_lc_rs` feature.

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Longest token or assertion navet decodes: a bound on work done for unauthenticated input. A 3072-bit RSA
/// signature plus a large IUA extension stays far below it.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The signature algorithms navet knows (RFC 7518 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlg {
    /// ECDSA P-256 SHA-256: navet's access tokens.
    Es256,
    /// ECDSA P-384 SHA-384: client assertions.
    Es384,
    /// RSASSA-PKCS1-v1_5 SHA-384: client assertions.
    Rs384,
}

impl JwsAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::Es256 => "ES256",
            JwsAlg::Es384 => "ES384",
            JwsAlg::Rs384 => "RS384",
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            // JWS ECDSA signatures are the fixed-width R || S form (RFC 7518 §3.4), not ASN.1.
            JwsAlg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            JwsAlg::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
            // RFC 7518 §3.3 requires 2048 bits or more; aws-lc-rs refuses smaller keys with this algorithm.
            JwsAlg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        }
    }
}

impl std::fmt::Display for JwsAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a compact JWS was refused before (or at) its signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the token is not a compact JWS (three base64url parts separated by '.'): {0}")]
    Malformed(&'static str),
    #[error("the JOSE header is not valid JSON with an \"alg\": {0}")]
    Header(String),
    #[error("unsigned tokens (alg \"none\") are refused")]
    AlgNone,
    #[error("HMAC-signed tokens (alg {0:?}) are refused; only asymmetric signatures are accepted")]
    AlgHmac(String),
    #[error("the signature algorithm {found:?} is not accepted here; accepted: {accepted}")]
    AlgNotAccepted { found: String, accepted: String },
    #[error("the JOSE header marks {0:?} as critical; navet understands no critical extensions")]
    Critical(String),
}

/// The JOSE header fields navet reads. Others (`jku`, `x5u`, `jwk`, `x5c`, …) are never used: keys come from
/// navet's configuration, not from the token.
#[derive(Debug, Clone, Deserialize)]
pub struct JoseHeader {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// A compact JWS split into its parts; nothing in it is trusted until [`VerifyingKey::verify`] passes.
#[derive(Debug)]
pub struct CompactJws<'a> {
    pub header: JoseHeader,
    /// The checked algorithm: one of those the caller accepts.
    pub alg: JwsAlg,
    /// `BASE64URL(header) '.' BASE64URL(payload)`, what the signature covers (RFC 7515 §5.2).
    pub signing_input: &'a str,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Splits `token`, decodes the header and passes it through the algorithm gate: `none` and `HS*` are refused
/// first and by name, then anything outside `accepted`.
pub fn parse<'a>(token: &'a str, accepted: &[JwsAlg]) -> Result<CompactJws<'a>, JwsError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwsError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("it does not have exactly three parts"));
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| JwsError::Malformed("the header is not base64url"))?;
    let header: JoseHeader =
        serde_json::from_slice(&header_json).map_err(|e| JwsError::Header(e.to_string()))?;

    let alg = gate(&header.alg, accepted)?;
    if let Some(crit) = &header.crit {
        // RFC 7515 §4.1.11: a recipient that does not understand a listed extension must refuse the JWS.
        return Err(JwsError::Critical(crit.to_string()));
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| JwsError::Malformed("the payload is not base64url"))?;
    if signature_b64.is_empty() {
        return Err(JwsError::Malformed("the signature is empty"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| JwsError::Malformed("the signature is not base64url"))?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    Ok(CompactJws {
        header,
        alg,
        signing_input,
        payload,
        signature,
    })
}

/// The algorithm gate. Case-insensitive for the refused names so `"None"` or `"hs256"` cannot slip past a
/// case-sensitive comparison somewhere else.
fn gate(alg: &str, accepted: &[JwsAlg]) -> Result<JwsAlg, JwsError> {
    if alg.eq_ignore_ascii_case("none") {
        return Err(JwsError::AlgNone);
    }
    if alg.len() >= 2 && alg[..2].eq_ignore_ascii_case("HS") {
        return Err(JwsError::AlgHmac(alg.to_owned()));
    }
    accepted
        .iter()
        .copied()
        .find(|a| a.as_str() == alg)
        .ok_or_else(|| JwsError::AlgNotAccepted {
            found: alg.to_owned(),
            accepted: accepted
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Why a public key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyLoadError {
    #[error(transparent)]
    Pem(#[from] crate::auth::pem::PemError),
    #[error(
        "the key is neither an EC P-384 key (for ES384) nor an RSA key of 2048 to 8192 bits (for RS384)"
    )]
    Unsupported,
    #[error("the RSA key has {0} bits; RS384 needs at least 2048 (RFC 7518 §3.3)")]
    RsaTooSmall(usize),
    #[error("the JWKS is not valid JSON: {0}")]
    Jwks(String),
    #[error("JWKS key {index}: {reason}")]
    Jwk { index: usize, reason: String },
    #[error("the JWKS holds no usable key")]
    EmptyJwks,
}

/// A public key that verifies exactly one algorithm.
pub struct VerifyingKey {
    alg: JwsAlg,
    /// The `kid` a token may name: the JWKS `kid` when the key came with one, else the RFC 7638 thumbprint.
    kid: String,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    pub fn alg(&self) -> JwsAlg {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Checks `signature` over `signing_input`. The algorithm is the key's own; the caller has already made
    /// sure the token's `alg` names it.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(signing_input, signature).is_ok()
    }

    /// A key from SubjectPublicKeyInfo DER (or PKCS#1 for RSA): EC P-384 becomes ES384, RSA becomes RS384.
    pub fn from_public_der(der: &[u8]) -> Result<Self, KeyLoadError> {
        for alg in [JwsAlg::Es384, JwsAlg::Rs384] {
            if let Ok(key) = ParsedPublicKey::new(alg.verification(), der) {
                let jwk = public_jwk_of(alg, &key).ok_or(KeyLoadError::Unsupported)?;
                check_rsa_size(&jwk)?;
                let kid = jwk.thumbprint();
                return Ok(VerifyingKey { alg, kid, key });
            }
        }
        Err(KeyLoadError::Unsupported)
    }

    /// A key from a PEM file: `PUBLIC KEY` (SubjectPublicKeyInfo) or `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_public_pem(text: &str) -> Result<Self, KeyLoadError> {
        let block = crate::auth::pem::decode_one(text)?;
        match block.label.as_str() {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Self::from_public_der(&block.der),
            other => Err(crate::auth::pem::PemError::WrongLabel {
                found: other.to_owned(),
                expected: "PUBLIC KEY".to_owned(),
            }
            .into()),
        }
    }

    /// An ES256 key from an uncompressed P-256 point: navet's own access-token keys.
    pub(crate) fn es256_from_point(point: &[u8]) -> Option<Self> {
        let key = ParsedPublicKey::new(JwsAlg::Es256.verification(), point).ok()?;
        let kid = thumbprint_of(JwsAlg::Es256, &key)?;
        Some(VerifyingKey {
            alg: JwsAlg::Es256,
            kid,
            key,
        })
    }

    /// Every usable key of a JWKS document (RFC 7517 §5). Keys marked for encryption (`"use": "enc"`) or
    /// with an `alg` other than ES384/RS384 are refused rather than skipped, so a misconfigured file is
    /// noticed at start-up.
    pub fn from_jwks(text: &str) -> Result<Vec<Self>, KeyLoadError> {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};

        let set: JwkSet =
            serde_json::from_str(text).map_err(|e| KeyLoadError::Jwks(e.to_string()))?;
        let mut keys = Vec::with_capacity(set.keys.len());
        for (index, jwk) in set.keys.iter().enumerate() {
            let fail = |reason: &str| KeyLoadError::Jwk {
                index,
                reason: reason.to_owned(),
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                return Err(fail("the key is marked \"use\": \"enc\""));
            }
            let (alg, der_or_point): (JwsAlg, Vec<u8>) = match &jwk.algorithm {
                AlgorithmParameters::EllipticCurve(ec) => {
                    if ec.curve != EllipticCurve::P384 {
                        return Err(fail("only EC keys on curve P-384 (ES384) are accepted"));
                    }
                    let x = b64url(&ec.x).ok_or_else(|| fail("x is not base64url"))?;
                    let y = b64url(&ec.y).ok_or_else(|| fail("y is not base64url"))?;
                    let mut point = Vec::with_capacity(1 + x.len() + y.len());
                    point.push(0x04);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    (JwsAlg::Es384, point)
                }
                AlgorithmParameters::RSA(rsa) => {
                    let n = b64url(&rsa.n).ok_or_else(|| fail("n is not base64url"))?;
                    let e = b64url(&rsa.e).ok_or_else(|| fail("e is not base64url"))?;
                    let components = signature::RsaPublicKeyComponents { n: &n, e: &e };
                    let der: PublicKeyX509Der<'static> = components
                        .as_der()
                        .map_err(|_| fail("n and e do not form an RSA public key"))?;
                    (JwsAlg::Rs384, der.as_ref().to_vec())
                }
                _ => return Err(fail("only EC P-384 and RSA keys are accepted")),
            };
            if let Some(declared) = &jwk.common.key_algorithm {
                let declared = declared.to_string();
                if declared != alg.as_str() {
                    return Err(fail(&format!(
                        "\"alg\": {declared:?} does not match the key type, which verifies {alg}"
                    )));
                }
            }
            let key = ParsedPublicKey::new(alg.verification(), &der_or_point)
                .map_err(|_| fail("the key material is not a valid public key for its type"))?;
            if let Some(jwk) = public_jwk_of(alg, &key) {
                check_rsa_size(&jwk).map_err(|e| fail(&e.to_string()))?;
            }
            let kid = match &jwk.common.key_id {
                Some(kid) => kid.clone(),
                None => {
                    thumbprint_of(alg, &key).ok_or_else(|| fail("cannot compute a thumbprint"))?
                }
            };
            keys.push(VerifyingKey { alg, kid, key });
        }
        if keys.is_empty() {
            return Err(KeyLoadError::EmptyJwks);
        }
        Ok(keys)
    }
}

/// aws-lc-rs parses small RSA keys and only refuses them when verifying; refuse them when loading instead,
/// so the configuration error names the key.
fn check_rsa_size(jwk: &PublicJwk) -> Result<(), KeyLoadError> {
    let PublicJwk::Rsa { n, .. } = jwk else {
        return Ok(());
    };
    let n = b64url(n).unwrap_or_default();
    let significant: Vec<u8> = n.into_iter().skip_while(|b| *b == 0).collect();
    let bits = match significant.first() {
        Some(first) => significant.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    };
    if bits < 2048 {
        return Err(KeyLoadError::RsaTooSmall(bits));
    }
    Ok(())
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWK members of a key (RFC 7518 §6.2.1 and §6.3.1), in the lexicographic order RFC 7638 §3.2
/// hashes them in.
pub enum PublicJwk {
    Ec {
        crv: &'static str,
        x: String,
        y: String,
    },
    Rsa {
        n: String,
        e: String,
    },
}

impl PublicJwk {
    /// From an uncompressed EC point `04 || X || Y`.
    pub(crate) fn ec_from_point(crv: &'static str, point: &[u8]) -> Option<Self> {
        let coordinate = match crv {
            "P-256" => 32,
            "P-384" => 48,
            _ => return None,
        };
        if point.len() != 1 + 2 * coordinate || point[0] != 0x04 {
            return None;
        }
        let (x, y) = point[1..].split_at(coordinate);
        Some(PublicJwk::Ec {
            crv,
            x: b64url_encode(x),
            y: b64url_encode(y),
        })
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): navet's `kid` for keys that come without one.
    pub(crate) fn thumbprint(&self) -> String {
        let canonical = match self {
            PublicJwk::Ec { crv, x, y } => {
                format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            PublicJwk::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        b64url_encode(&Sha256::digest(canonical.as_bytes()))
    }

    pub(crate) fn to_json(&self, kid: &str, alg: JwsAlg) -> serde_json::Value {
        match self {
            PublicJwk::Ec { crv, x, y } => serde_json::json!({
                "kty": "EC", "crv": crv, "x": x, "y": y, "kid": kid, "alg": alg.as_str(), "use": "sig",
            }),
            PublicJwk::Rsa { n, e } => serde_json::json!({
                "kty": "RSA", "n": n, "e": e, "kid": kid, "alg": alg.as_str(), "use": "sig",
            }),
        }
    }
}

/// The public JWK of a parsed key: the EC point sits at the end of the SubjectPublicKeyInfo aws-lc-rs
/// marshals (always uncompressed), RSA `n` and `e` come from its PKCS#1 form.
pub(crate) fn public_jwk_of(alg: JwsAlg, key: &ParsedPublicKey) -> Option<PublicJwk> {
    let spki: PublicKeyX509Der<'static> = key.as_der().ok()?;
    let spki = spki.as_ref();
    match alg {
        JwsAlg::Es256 => {
            PublicJwk::ec_from_point("P-256", spki.get(spki.len().checked_sub(65)?..)?)
        }
        JwsAlg::Es384 => {
            PublicJwk::ec_from_point("P-384", spki.get(spki.len().checked_sub(97)?..)?)
        }
        JwsAlg::Rs384 => {
            let public = aws_lc_rs::rsa::PublicKey::from_der(spki).ok()?;
            let components = signature::RsaPublicKeyComponents::<Vec<u8>>::from(&public);
            Some(PublicJwk::Rsa {
                n: b64url_encode(&components.n),
                e: b64url_encode(&components.e),
            })
        }
    }
}

/// The public JWK of a loaded key (for writing JWKS files).
pub fn public_jwk_of_key(key: &VerifyingKey) -> Option<PublicJwk> {
    public_jwk_of(key.alg, &key.key)
}

fn thumbprint_of(alg: JwsAlg, key: &ParsedPublicKey) -> Option<String> {
    public_jwk_of(alg, key).map(|jwk| jwk.thumbprint())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str, signature: &str) -> String {
        format!(
            "{}.{}.{}",
            b64url_encode(header.as_bytes()),
            b64url_encode(payload.as_bytes()),
            signature
        )
    }

    const ALL: &[JwsAlg] = &[JwsAlg::Es384, JwsAlg::Rs384];

    #[test]
    fn alg_none_is_refused_in_any_letter_case_even_without_a_signature() {
        for alg in ["none", "None", "NONE"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}", "");
            assert_eq!(parse(&t, ALL).unwrap_err(), JwsError::AlgNone);
        }
    }

    #[test]
    fn every_hmac_algorithm_is_refused_by_name() {
        for alg in ["HS256", "HS384", "HS512", "hs256"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}", "c2ln");
            assert_eq!(parse(&t, ALL).unwrap_err(), JwsError::AlgHmac(alg.into()));
        }
    }

    #[test]
    fn an_algorithm_outside_the_accepted_list_is_refused() {
        let t = token(r#"{"alg":"ES256"}"#, "{}", "c2ln");
        assert!(matches!(
            parse(&t, ALL).unwrap_err(),
            JwsError::AlgNotAccepted { found, .. } if found == "ES256"
        ));
    }

    #[test]
    fn a_critical_header_is_refused() {
        let t = token(r#"{"alg":"ES384","crit":["exp"]}"#, "{}", "c2ln");
        assert!(matches!(parse(&t, ALL).unwrap_err(), JwsError::Critical(_)));
    }

    #[test]
    fn wrong_part_counts_bad_base64_and_empty_signatures_are_malformed() {
        assert!(matches!(parse("a.b", ALL), Err(JwsError::Malformed(_))));
        assert!(matches!(parse("a.b.c.d", ALL), Err(JwsError::Malformed(_))));
        assert!(matches!(parse("***.b.c", ALL), Err(JwsError::Malformed(_))));
        let t = token(r#"{"alg":"ES384"}"#, "{}", "");
        assert!(matches!(parse(&t, ALL), Err(JwsError::Malformed(_))));
        let not_json = format!("{}.e30.c2ln", b64url_encode(b"not json"));
        assert!(matches!(parse(&not_json, ALL), Err(JwsError::Header(_))));
    }

    #[test]
    fn an_oversized_token_is_refused_before_decoding() {
        let t = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(parse(&t, ALL).unwrap_err(), JwsError::TooLong);
    }

    #[test]
    fn the_signing_input_is_the_first_two_parts() {
        let t = token(r#"{"alg":"ES384"}"#, r#"{"a":1}"#, "c2ln");
        let jws = parse(&t, ALL).unwrap();
        assert_eq!(jws.signing_input, t.rsplit_once('.').unwrap().0);
        assert_eq!(jws.payload, br#"{"a":1}"#);
        assert_eq!(jws.signature, b"sig");
    }

    #[test]
    fn an_rsa_key_under_2048_bits_is_refused_when_loaded() {
        const RSA_1024: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCxAiOmzSxmbQ7T8TZJdmEcWngd
K/QPDkJO4SwJ14KzIHBkQYPD8VnszFepQKwQQFiYKaW5LeQE22D0kMT2H1HWKdV9
fQljuq1AiJPOlCzqGauHK/8n9Osw3/NiFVeNCgHSTDY2WPEtMIx/bAdNYSl3aKvh
20hKK7rI8r54WGAZNQIDAQAB
-----END PUBLIC KEY-----
";
        assert_eq!(
            VerifyingKey::from_public_pem(RSA_1024).unwrap_err(),
            KeyLoadError::RsaTooSmall(1024)
        );
    }

    #[test]
    fn a_p256_client_key_is_refused_because_assertions_use_es384() {
        let ring = crate::auth::keys::KeyRing::ephemeral(0).unwrap();
        let point = ring.jwks(0)["keys"][0].clone();
        let jwks = serde_json::json!({ "keys": [point] }).to_string();
        assert!(matches!(
            VerifyingKey::from_jwks(&jwks).unwrap_err(),
            KeyLoadError::Jwk { index: 0, reason } if reason.contains("P-384")
        ));
    }

    #[test]
    fn the_thumbprint_matches_the_rfc_7638_example() {
        // RFC 7638 §3.1: the example RSA key and its thumbprint.
        let jwk = PublicJwk::Rsa {
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
            e: "AQAB".into(),
        };
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
