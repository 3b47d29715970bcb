//! The JOSE header gate and the public keys signatures are checked with, on top of jsonwebtoken 11.
//!
//! jsonwebtoken does the JWS work: splitting and base64url-decoding the compact form, the header, the
//! signature (with aws-lc-rs), `iss`/`aud` (one [`jsonwebtoken::Validation`] per token kind, built in
//! `assertion` and `access_token`) and the JWK (de)serialisation and RFC 7638 thumbprints. What is navet's
//! own here is only what the crate does not do:
//! - a size cap ([`MAX_TOKEN_BYTES`]) before anything is decoded: a bound on work for unauthenticated input;
//! - `crit` refused (RFC 7515 §4.1.11: navet understands no critical extension; the crate ignores `crit`);
//! - the algorithm gate, naming what it refuses: `none` (RFC 7518 §3.6) and every HMAC algorithm are refused
//!   by name before any key is looked at, so neither "unsigned" nor "HMAC keyed with the public key" (the
//!   algorithm-confusion attack) reaches a verifier. Which asymmetric algorithm is acceptable is fixed by
//!   the *key*, never by the token: an ES384 key verifies only ES384, an RSA key only RS384
//!   ([`VerifyingKey::alg`]);
//! - checking key material when it is loaded (curve, RSA size), so a bad key is a start-up error that names
//!   the file rather than a refused request later.
//!
//! Nothing here slices a string or does arithmetic on a value from the token (issue 8 item 4: a header
//! `{"alg":"€"}` once panicked a byte-indexed slice in the old hand-written gate).

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
    ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use rustls_pki_types::pem::{PemObject, SectionKind};

/// Longest token or assertion navet decodes: a bound on work done for unauthenticated input. A 3072-bit RSA
/// signature plus a large IUA extension stays far below it.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The signature algorithms navet accepts anywhere (RFC 7518 §3.1).
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

    /// The jsonwebtoken algorithm.
    pub fn algorithm(self) -> Algorithm {
        match self {
            JwsAlg::Es256 => Algorithm::ES256,
            JwsAlg::Es384 => Algorithm::ES384,
            JwsAlg::Rs384 => Algorithm::RS384,
        }
    }

    fn key_algorithm(self) -> KeyAlgorithm {
        match self {
            JwsAlg::Es256 => KeyAlgorithm::ES256,
            JwsAlg::Es384 => KeyAlgorithm::ES384,
            JwsAlg::Rs384 => KeyAlgorithm::RS384,
        }
    }
}

impl std::fmt::Display for JwsAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a compact JWS was refused before its signature was checked.
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

/// Decodes the JOSE header of `token` (jsonwebtoken) and passes it through the gate: size first, then
/// `none` and `HS*` by name, then anything outside `accepted`, then `crit`. Nothing in the header is
/// trusted beyond choosing which key to try; `jku`, `x5u`, `jwk`, `x5c` are never used (keys come from
/// navet's configuration, not from the token).
pub fn header(token: &str, accepted: &[JwsAlg]) -> Result<(Header, JwsAlg), JwsError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwsError::TooLong);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| unparsable_header(token, &e))?;
    let alg = gate(header.alg, accepted)?;
    if let Some(crit) = &header.crit {
        // RFC 7515 §4.1.11: a recipient that does not understand a listed extension must refuse the JWS.
        return Err(JwsError::Critical(crit.join(",")));
    }
    Ok((header, alg))
}

fn gate(alg: Algorithm, accepted: &[JwsAlg]) -> Result<JwsAlg, JwsError> {
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(JwsError::AlgHmac(format!("{alg:?}")));
    }
    accepted
        .iter()
        .copied()
        .find(|a| a.algorithm() == alg)
        .ok_or_else(|| JwsError::AlgNotAccepted {
            found: format!("{alg:?}"),
            accepted: accepted_list(accepted),
        })
}

fn accepted_list(accepted: &[JwsAlg]) -> String {
    accepted
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The refusal for a header jsonwebtoken could not decode. jsonwebtoken knows no `none` and refuses any
/// `alg` it does not implement as "unknown variant"; to name the classic attacks in the refusal (as
/// `spec/auth.md` asks), the header's `alg` member alone is read again here, as a plain string. It is
/// only compared, never sliced.
fn unparsable_header(token: &str, error: &jsonwebtoken::errors::Error) -> JwsError {
    match error.kind() {
        ErrorKind::InvalidToken => JwsError::Malformed("it does not have three parts"),
        ErrorKind::Base64(_) => JwsError::Malformed("the header is not base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => match named_alg(token) {
            Some(alg) if alg.eq_ignore_ascii_case("none") => JwsError::AlgNone,
            // Lower-case "hs256" is no algorithm jsonwebtoken knows, but it is still HMAC by intent.
            Some(alg) if alg.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("hs")) => {
                JwsError::AlgHmac(alg)
            }
            // An alg jsonwebtoken knows: the error is elsewhere in the header.
            Some(alg) if alg.parse::<Algorithm>().is_err() => JwsError::AlgNotAccepted {
                found: alg,
                accepted: "ES256, ES384, RS384".to_owned(),
            },
            _ => JwsError::Header(error.to_string()),
        },
        _ => JwsError::Header(error.to_string()),
    }
}

fn named_alg(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct AlgOnly {
        alg: String,
    }
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    serde_json::from_slice::<AlgOnly>(&header)
        .ok()
        .map(|h| h.alg)
}

/// Why a public key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyLoadError {
    #[error("{0}")]
    Pem(String),
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

/// A public key that verifies exactly one algorithm, as jsonwebtoken's [`DecodingKey`], with its public
/// JWK (for the JWKS navet publishes and for RFC 7638 thumbprints).
#[derive(Clone)]
pub struct VerifyingKey {
    alg: JwsAlg,
    /// The `kid` a token may name: the JWKS `kid` when the key came with one, else the RFC 7638 thumbprint.
    kid: String,
    key: DecodingKey,
    jwk: Jwk,
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

    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// The public JWK with `kid`, `alg` and `"use": "sig"`.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// From public JWK parameters: checks the key material, names it (`kid`, or the thumbprint) and makes
    /// the decoding key.
    fn from_params(
        alg: JwsAlg,
        params: AlgorithmParameters,
        kid: Option<String>,
    ) -> Result<Self, String> {
        let spki = check_material(alg, &params)?;
        let mut jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: params,
        };
        let kid = match kid {
            Some(kid) => kid,
            None => jwk
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|e| format!("cannot compute the key's thumbprint: {e}"))?,
        };
        jwk.common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(alg.key_algorithm()),
            key_id: Some(kid.clone()),
            ..CommonParameters::default()
        };
        // The key is handed to jsonwebtoken as SubjectPublicKeyInfo DER rather than as the bare point or
        // n/e the JWK gives: aws-lc-rs parses SPKI first, and building the key from the JWK form on every
        // verification measurably slowed it (tests/benches/auth.rs).
        let key = match alg {
            JwsAlg::Rs384 => DecodingKey::from_rsa_der(&spki),
            JwsAlg::Es256 | JwsAlg::Es384 => DecodingKey::from_ec_der(&spki),
        };
        Ok(VerifyingKey { alg, kid, key, jwk })
    }

    /// A key from SubjectPublicKeyInfo DER: EC P-384 becomes ES384, RSA becomes RS384.
    pub fn from_public_der(spki: &[u8]) -> Result<Self, KeyLoadError> {
        let (alg, params) = public_params_of_spki(spki)?;
        Self::from_params(alg, params, None).map_err(|_| KeyLoadError::Unsupported)
    }

    /// A key from a PEM file holding one `PUBLIC KEY` (SubjectPublicKeyInfo) block, read with rustls'
    /// pki-types.
    pub fn from_public_pem(text: &str) -> Result<Self, KeyLoadError> {
        let mut sections = <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(text.as_bytes());
        let first = sections.next();
        if sections.next().is_some() {
            return Err(KeyLoadError::Pem(
                "the file holds more than one PEM block; put one key per file".to_owned(),
            ));
        }
        match first {
            Some(Ok((SectionKind::PublicKey, der))) => Self::from_public_der(&der),
            Some(Ok((kind, _))) => Err(KeyLoadError::Pem(format!(
                "found a PEM block {:?}, expected PUBLIC KEY",
                label_of(kind)
            ))),
            Some(Err(e)) => Err(KeyLoadError::Pem(format!("the PEM is not valid: {e}"))),
            None => Err(KeyLoadError::Pem(
                "no PEM block found (expected a line like -----BEGIN PUBLIC KEY-----; a PKCS#1 \
                 'RSA PUBLIC KEY' converts with openssl rsa -RSAPublicKey_in -pubout)"
                    .to_owned(),
            )),
        }
    }

    /// An ES256 key from its public JWK: navet's own access-token keys.
    pub(crate) fn es256(params: AlgorithmParameters) -> Result<Self, String> {
        Self::from_params(JwsAlg::Es256, params, None)
    }

    /// Every usable key of a JWKS document (RFC 7517 §5), parsed by jsonwebtoken. Keys marked for encryption
    /// (`"use": "enc"`) or with an `alg` other than ES384/RS384 are refused rather than skipped, so a
    /// misconfigured file is noticed at start-up.
    pub fn from_jwks(text: &str) -> Result<Vec<Self>, KeyLoadError> {
        let set: JwkSet =
            serde_json::from_str(text).map_err(|e| KeyLoadError::Jwks(e.to_string()))?;
        let mut keys = Vec::with_capacity(set.keys.len());
        for (index, jwk) in set.keys.into_iter().enumerate() {
            let fail = |reason: String| KeyLoadError::Jwk { index, reason };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                return Err(fail("the key is marked \"use\": \"enc\"".to_owned()));
            }
            let alg = match &jwk.algorithm {
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P384 => {
                    JwsAlg::Es384
                }
                AlgorithmParameters::EllipticCurve(_) => {
                    return Err(fail(
                        "only EC keys on curve P-384 (ES384) are accepted".to_owned(),
                    ));
                }
                AlgorithmParameters::RSA(_) => JwsAlg::Rs384,
                _ => {
                    return Err(fail("only EC P-384 and RSA keys are accepted".to_owned()));
                }
            };
            if let Some(declared) = jwk.common.key_algorithm
                && declared != alg.key_algorithm()
            {
                return Err(fail(format!(
                    "\"alg\": \"{declared}\" does not match the key type, which verifies {alg}"
                )));
            }
            keys.push(Self::from_params(alg, jwk.algorithm, jwk.common.key_id).map_err(fail)?);
        }
        if keys.is_empty() {
            return Err(KeyLoadError::EmptyJwks);
        }
        Ok(keys)
    }
}

/// The PEM label of a section kind (RFC 7468 §4), for error messages.
fn label_of(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::PublicKey => "PUBLIC KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::Crl => "X509 CRL",
        SectionKind::Csr => "CERTIFICATE REQUEST",
        _ => "(another kind)",
    }
}

/// The public JWK parameters of a SubjectPublicKeyInfo. RSA `n`/`e` come from jsonwebtoken. For EC,
/// neither crate extracts the point from an SPKI, so aws-lc-rs validates the key and re-encodes it
/// (always uncompressed), and the point is the SPKI's trailing `04 || X || Y`.
fn public_params_of_spki(spki: &[u8]) -> Result<(JwsAlg, AlgorithmParameters), KeyLoadError> {
    if let Ok(ec) = ParsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, spki) {
        let der: PublicKeyX509Der<'static> = ec.as_der().map_err(|_| KeyLoadError::Unsupported)?;
        let der = der.as_ref();
        let point = der
            .get(der.len().saturating_sub(97)..)
            .ok_or(KeyLoadError::Unsupported)?;
        let jwk = Jwk::from_decoding_key(&DecodingKey::from_ec_der(point), Some(Algorithm::ES384))
            .map_err(|_| KeyLoadError::Unsupported)?;
        return Ok((JwsAlg::Es384, jwk.algorithm));
    }
    let jwk = Jwk::from_decoding_key(&DecodingKey::from_rsa_der(spki), Some(Algorithm::RS384))
        .map_err(|_| KeyLoadError::Unsupported)?;
    check_rsa_size(&jwk.algorithm)?;
    Ok((JwsAlg::Rs384, jwk.algorithm))
}

/// Checks key material once, at load: the curve point lies on the algorithm's curve, an RSA key has 2048
/// bits or more (aws-lc-rs would only refuse a small key when verifying). Returns the key's
/// SubjectPublicKeyInfo DER.
fn check_material(alg: JwsAlg, params: &AlgorithmParameters) -> Result<Vec<u8>, String> {
    let invalid = || "the key material is not a valid public key for its type".to_owned();
    match (alg, params) {
        (JwsAlg::Es256 | JwsAlg::Es384, AlgorithmParameters::EllipticCurve(ec)) => {
            let (verification, curve): (&'static dyn signature::VerificationAlgorithm, _) =
                match alg {
                    JwsAlg::Es256 => (&signature::ECDSA_P256_SHA256_FIXED, EllipticCurve::P256),
                    _ => (&signature::ECDSA_P384_SHA384_FIXED, EllipticCurve::P384),
                };
            if ec.curve != curve {
                return Err(format!("the key is not on the curve {alg} needs"));
            }
            let x = b64url(&ec.x).ok_or_else(invalid)?;
            let y = b64url(&ec.y).ok_or_else(invalid)?;
            let point = [&[0x04][..], &x, &y].concat();
            let key = ParsedPublicKey::new(verification, &point).map_err(|_| invalid())?;
            let spki: PublicKeyX509Der<'static> = key.as_der().map_err(|_| invalid())?;
            Ok(spki.as_ref().to_vec())
        }
        (JwsAlg::Rs384, AlgorithmParameters::RSA(rsa)) => {
            check_rsa_size(params).map_err(|e| e.to_string())?;
            let n = b64url(&rsa.n).ok_or_else(invalid)?;
            let e = b64url(&rsa.e).ok_or_else(invalid)?;
            let der: PublicKeyX509Der<'static> = signature::RsaPublicKeyComponents { n: &n, e: &e }
                .as_der()
                .map_err(|_| invalid())?;
            ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA384, der.as_ref())
                .map_err(|_| invalid())?;
            Ok(der.as_ref().to_vec())
        }
        _ => Err(invalid()),
    }
}

fn check_rsa_size(params: &AlgorithmParameters) -> Result<(), KeyLoadError> {
    let AlgorithmParameters::RSA(rsa) = params else {
        return Ok(());
    };
    let n = b64url(&rsa.n).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str, signature: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload),
            signature
        )
    }

    const ALL: &[JwsAlg] = &[JwsAlg::Es384, JwsAlg::Rs384];

    #[test]
    fn alg_none_is_refused_in_any_letter_case_even_without_a_signature() {
        for alg in ["none", "None", "NONE"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}", "");
            assert_eq!(header(&t, ALL).unwrap_err(), JwsError::AlgNone);
        }
    }

    #[test]
    fn every_hmac_algorithm_is_refused_by_name() {
        for alg in ["HS256", "HS384", "HS512", "hs256"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}", "c2ln");
            assert_eq!(header(&t, ALL).unwrap_err(), JwsError::AlgHmac(alg.into()));
        }
    }

    #[test]
    fn an_algorithm_outside_the_accepted_list_is_refused() {
        let t = token(r#"{"alg":"ES256"}"#, "{}", "c2ln");
        assert!(matches!(
            header(&t, ALL).unwrap_err(),
            JwsError::AlgNotAccepted { found, .. } if found == "ES256"
        ));
    }

    #[test]
    fn a_non_ascii_algorithm_is_refused_without_a_panic() {
        // Issue 8 item 4: a two-byte slice of "€" (three bytes) panicked the old gate.
        for alg in ["€", "H€", "é", "ÅÄÖ", "h"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}", "c2ln");
            assert_eq!(
                header(&t, ALL).unwrap_err(),
                JwsError::AlgNotAccepted {
                    found: alg.into(),
                    accepted: "ES256, ES384, RS384".into()
                },
                "{alg}"
            );
        }
    }

    #[test]
    fn a_critical_header_is_refused() {
        let t = token(r#"{"alg":"ES384","crit":["exp"]}"#, "{}", "c2ln");
        assert_eq!(
            header(&t, ALL).unwrap_err(),
            JwsError::Critical("exp".into())
        );
        let t = token(r#"{"alg":"ES384","crit":[]}"#, "{}", "c2ln");
        assert!(matches!(
            header(&t, ALL).unwrap_err(),
            JwsError::Critical(_)
        ));
    }

    #[test]
    fn wrong_part_counts_bad_base64_and_bad_json_are_refused() {
        assert!(matches!(header("a.b", ALL), Err(JwsError::Malformed(_))));
        assert!(matches!(header("abc", ALL), Err(JwsError::Malformed(_))));
        assert!(matches!(
            header("***.b.c", ALL),
            Err(JwsError::Malformed(_))
        ));
        let not_json = format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(b"not json"));
        assert!(matches!(header(&not_json, ALL), Err(JwsError::Header(_))));
        // A known alg with a malformed member elsewhere is a header error, not an algorithm refusal.
        let bad_kid = token(r#"{"alg":"ES384","kid":5}"#, "{}", "c2ln");
        assert!(matches!(header(&bad_kid, ALL), Err(JwsError::Header(_))));
    }

    #[test]
    fn an_oversized_token_is_refused_before_decoding() {
        let t = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(header(&t, ALL).unwrap_err(), JwsError::TooLong);
    }

    #[test]
    fn an_accepted_header_hands_back_its_kid_and_the_gated_algorithm() {
        let t = token(r#"{"alg":"RS384","kid":"k1","typ":"JWT"}"#, "{}", "c2ln");
        let (h, alg) = header(&t, ALL).unwrap();
        assert_eq!(alg, JwsAlg::Rs384);
        assert_eq!(h.kid.as_deref(), Some("k1"));
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
    fn pem_files_with_the_wrong_block_several_blocks_or_none_are_named() {
        let public = crate::auth::demo::demo_key("demo-csk").unwrap().public_pem;
        let private = crate::auth::demo::demo_key("demo-csk").unwrap().private_pem;
        assert_eq!(
            VerifyingKey::from_public_pem(private).unwrap_err(),
            KeyLoadError::Pem("found a PEM block \"PRIVATE KEY\", expected PUBLIC KEY".into())
        );
        assert!(matches!(
            VerifyingKey::from_public_pem(&format!("{public}{public}")).unwrap_err(),
            KeyLoadError::Pem(m) if m.contains("more than one PEM block")
        ));
        assert!(matches!(
            VerifyingKey::from_public_pem("nothing").unwrap_err(),
            KeyLoadError::Pem(m) if m.contains("no PEM block")
        ));
        // Text around the block is ignored (RFC 7468 §2).
        let commented = format!("a comment\n{public}trailing\n");
        assert_eq!(
            VerifyingKey::from_public_pem(&commented).unwrap().kid(),
            VerifyingKey::from_public_pem(public).unwrap().kid()
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
    fn a_jwks_key_off_its_curve_or_with_a_mismatched_alg_is_refused() {
        let public = crate::auth::demo::demo_key("demo-csk").unwrap().public_pem;
        let mut jwk =
            serde_json::to_value(VerifyingKey::from_public_pem(public).unwrap().jwk()).unwrap();
        jwk["alg"] = "RS384".into();
        let jwks = serde_json::json!({ "keys": [jwk.clone()] }).to_string();
        assert!(matches!(
            VerifyingKey::from_jwks(&jwks).unwrap_err(),
            KeyLoadError::Jwk { reason, .. } if reason.contains("does not match the key type")
        ));
        jwk["alg"] = "ES384".into();
        jwk["y"] = jwk["x"].clone();
        let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
        assert!(matches!(
            VerifyingKey::from_jwks(&jwks).unwrap_err(),
            KeyLoadError::Jwk { reason, .. } if reason.contains("not a valid public key")
        ));
    }

    #[test]
    fn the_kid_of_a_pem_key_is_its_rfc_7638_thumbprint() {
        // RFC 7638 §3.1: the example RSA key and its thumbprint, through jsonwebtoken.
        let params: AlgorithmParameters = serde_json::from_value(serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
        }))
        .unwrap();
        let key = VerifyingKey::from_params(JwsAlg::Rs384, params, None).unwrap();
        assert_eq!(key.kid(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
