//! What `navet keygen` and `navet token` do, as library functions.
//!
//! `navet token` builds a client assertion, asks the server's SMART discovery document for the token
//! endpoint (so the assertion's `aud` is exactly the URL the server expects), posts the token request and
//! returns only the access token. Assertions are signed with jsonwebtoken, which the server verifies with
//! too; `src/auth/tests.rs` also signs one with plain aws-lc-rs (and the README's openssl recipe is a
//! third signer), so the wire format does not drift to what only jsonwebtoken accepts.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::auth::config::AuthConfig;
use crate::auth::iua::{ActingUserClaims, PurposeOfUse};
use crate::auth::jws::JwsAlg;
use crate::auth::service::JWT_BEARER;
use crate::domain::HsaId;

/// How long a CLI-made assertion lives: under the server's five-minute limit with room for clock skew.
pub const ASSERTION_LIFETIME_SECS: i64 = 240;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    Es384,
    Rs384,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("generating the key pair failed")]
    Keygen,
    #[error(
        "the private key is not a PKCS#8 PEM (-----BEGIN PRIVATE KEY-----) EC P-384 or RSA key: {0}"
    )]
    PrivateKey(String),
    #[error("signing the assertion failed: {0}")]
    Sign(String),
    #[error("unknown user {0}; known users are the [[users]] of the configuration")]
    UnknownUser(String),
    #[error("{0} is not an HSA-id: {1}")]
    HsaId(String, crate::domain::HsaIdError),
    #[error("no demo key for client {0:?}; pass --key FILE")]
    NoDemoKey(String),
    #[error("cannot reach {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Server {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the token endpoint refused: {error}: {description}")]
    Refused { error: String, description: String },
}

/// A new client key pair and the configuration that registers it.
#[derive(Debug, Clone)]
pub struct KeygenOutput {
    /// PKCS#8 PEM: stays with the client.
    pub private_pem: String,
    /// SubjectPublicKeyInfo PEM: goes to navet.
    pub public_pem: String,
    /// A `[[clients]]` entry for navet.toml, expecting the public key at `<client_id>.pub.pem` next to it.
    pub config_snippet: String,
}

/// Generates a client key pair: ES384 (P-384) or RS384 (RSA 3072, NIST SP 800-57's 128-bit level).
pub fn keygen(client_id: &str, principal_hsa: &str, alg: KeyAlg) -> Result<KeygenOutput, CliError> {
    let (private_der, public_der): (Vec<u8>, Vec<u8>) = match alg {
        KeyAlg::Es384 => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P384_SHA384_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(|_| CliError::Keygen)?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref())
                .map_err(|_| CliError::Keygen)?;
            let public: PublicKeyX509Der<'static> =
                pair.public_key().as_der().map_err(|_| CliError::Keygen)?;
            (pkcs8.as_ref().to_vec(), public.as_ref().to_vec())
        }
        KeyAlg::Rs384 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa3072)
                .map_err(|_| CliError::Keygen)?;
            let private: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| CliError::Keygen)?;
            let public: PublicKeyX509Der<'static> =
                pair.public_key().as_der().map_err(|_| CliError::Keygen)?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
    };
    let config_snippet = format!(
        "[[clients]]\nclient_id = \"{client_id}\"\nprincipal = \"{principal_hsa}\"\n\
         public_keys = [\"{client_id}.pub.pem\"]\nscopes = [\"system/*.rs\"]\nsystem_integration = false\n"
    );
    Ok(KeygenOutput {
        private_pem: pem_of("PRIVATE KEY", private_der),
        public_pem: pem_of("PUBLIC KEY", public_der),
        config_snippet,
    })
}

/// PEM (RFC 7468, LF line ends) with the `pem` crate: rustls' pki-types only reads PEM.
fn pem_of(label: &str, der: Vec<u8>) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// A parsed client private key.
struct ClientKey {
    alg: JwsAlg,
    encoding: jsonwebtoken::EncodingKey,
    kid: String,
}

fn client_key(private_pem: &str) -> Result<ClientKey, CliError> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(private_pem.as_bytes())
        .map_err(|e| CliError::PrivateKey(format!("no PRIVATE KEY PEM block: {e}")))?;
    let ec = jsonwebtoken::EncodingKey::from_ec_der(der.secret_pkcs8_der());
    let (alg, encoding, public) = match Jwk::from_encoding_key(&ec, jsonwebtoken::Algorithm::ES384)
    {
        Ok(public) => (JwsAlg::Es384, ec, public),
        Err(_) => {
            // jsonwebtoken's RSA signer wants PKCS#1; from_rsa_pem unwraps the PKCS#8 PEM to it. (The CLI
            // is the client side: how it reads its own key is not the server's PEM handling.)
            let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes())
                .map_err(|e| CliError::PrivateKey(e.to_string()))?;
            let public = Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::RS384)
                .map_err(|e| CliError::PrivateKey(e.to_string()))?;
            (JwsAlg::Rs384, encoding, public)
        }
    };
    // The kid is the RFC 7638 thumbprint navet computes for a PEM-registered key, so the server tries the
    // right key first.
    let kid = public
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| CliError::PrivateKey(e.to_string()))?;
    Ok(ClientKey { alg, encoding, kid })
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    extensions: Option<serde_json::Value>,
}

/// A signed client assertion for `client_id`, valid for [`ASSERTION_LIFETIME_SECS`] from `now`.
pub fn client_assertion(
    client_id: &str,
    token_url: &str,
    key_pem: &str,
    user: Option<&ActingUserClaims>,
    now: i64,
) -> Result<String, CliError> {
    let key = client_key(key_pem)?;
    let alg = match key.alg {
        JwsAlg::Rs384 => jsonwebtoken::Algorithm::RS384,
        _ => jsonwebtoken::Algorithm::ES384,
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.typ = Some("JWT".to_owned());
    header.kid = Some(key.kid);
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud: token_url,
        exp: now.saturating_add(ASSERTION_LIFETIME_SECS),
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        extensions: user.map(|u| serde_json::json!({ "ihe_iua": u })),
    };
    jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| CliError::Sign(e.to_string()))
}

/// The IUA claims for a known user (`[[users]]`) acting with `purpose`.
pub fn user_claims(
    cfg: &AuthConfig,
    user_hsa: &str,
    purpose: PurposeOfUse,
) -> Result<ActingUserClaims, CliError> {
    let wanted = HsaId::parse(user_hsa).map_err(|e| CliError::HsaId(user_hsa.to_owned(), e))?;
    let user = cfg
        .users
        .iter()
        .find(|u| HsaId::parse(&u.hsa_id).is_ok_and(|id| id == wanted))
        .ok_or_else(|| CliError::UnknownUser(wanted.to_string()))?;
    Ok(ActingUserClaims {
        subject_id: wanted.to_string(),
        subject_name: Some(user.name.clone()),
        subject_role: user.role.clone(),
        subject_organization_id: user.care_unit.clone(),
        purpose_of_use: purpose.as_str().to_owned(),
    })
}

/// The private key `navet token` uses: the given file's text, else the client's demo key.
pub fn demo_private_key(client_id: &str) -> Result<&'static str, CliError> {
    crate::auth::demo::demo_key(client_id)
        .map(|k| k.private_pem)
        .ok_or_else(|| CliError::NoDemoKey(client_id.to_owned()))
}

#[derive(Deserialize)]
struct Discovery {
    token_endpoint: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Fetches an access token from the navet at `server_base_url` and returns it (and nothing else).
pub async fn fetch_token(
    server_base_url: &str,
    client_id: &str,
    key_pem: &str,
    scope: &str,
    user: Option<&ActingUserClaims>,
) -> Result<String, CliError> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|source| CliError::Http {
            url: server_base_url.to_owned(),
            source,
        })?;
    fetch_token_with(&http, server_base_url, client_id, key_pem, scope, user).await
}

/// [`fetch_token`] over a given HTTP client: one that trusts a private CA or presents a client certificate
/// (a navet that requires mutual TLS).
pub async fn fetch_token_with(
    http: &reqwest::Client,
    server_base_url: &str,
    client_id: &str,
    key_pem: &str,
    scope: &str,
    user: Option<&ActingUserClaims>,
) -> Result<String, CliError> {
    let discovery_url = format!(
        "{}/.well-known/smart-configuration",
        server_base_url.trim_end_matches('/')
    );
    let discovery: Discovery = get_json(http, &discovery_url).await?;
    let now = jiff::Timestamp::now().as_second();
    let assertion = client_assertion(client_id, &discovery.token_endpoint, key_pem, user, now)?;
    let url = discovery.token_endpoint;
    let response = http
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .map_err(|source| CliError::Http {
            url: url.clone(),
            source,
        })?;
    let status = response.status();
    let body = response.text().await.map_err(|source| CliError::Http {
        url: url.clone(),
        source,
    })?;
    if status.is_success() {
        let answer: TokenAnswer = serde_json::from_str(&body).map_err(|_| CliError::Server {
            url,
            status: status.as_u16(),
            body: "a token response without access_token".to_owned(),
        })?;
        return Ok(answer.access_token);
    }
    match serde_json::from_str::<ErrorAnswer>(&body) {
        Ok(e) => Err(CliError::Refused {
            error: e.error,
            description: e.error_description,
        }),
        Err(_) => Err(CliError::Server {
            url,
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        }),
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, CliError> {
    let http_error = |source| CliError::Http {
        url: url.to_owned(),
        source,
    };
    let response = http.get(url).send().await.map_err(http_error)?;
    let status = response.status();
    let body = response.text().await.map_err(http_error)?;
    if !status.is_success() {
        return Err(CliError::Server {
            url: url.to_owned(),
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        });
    }
    serde_json::from_str(&body).map_err(|e| CliError::Server {
        url: url.to_owned(),
        status: status.as_u16(),
        body: format!("not the expected JSON: {e}"),
    })
}
