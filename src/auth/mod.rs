//! Authentication: SMART Backend Services tokens, principals and the acting user (`spec/auth.md` v1).
//!
//! A client proves who it is with a signed JWT client assertion (`private_key_jwt`, RFC 7523 §2.2 and §3,
//! SMART App Launch 2.x "Backend Services"), may name the acting user with the IHE IUA JWT extension
//! (`extensions.ihe_iua`), and gets a short-lived access token that navet signs itself (RFC 9068 JWT profile,
//! ES256). Every API request carries that token; [`http::Authenticated`] verifies it (with a small cache of
//! already-verified tokens) and hands the handler a [`Caller`].
//!
//! # Layout
//! - [`config`]: the `navet.toml` sections (`[auth]`, `[[principals]]`, `[[clients]]`, `[[users]]`) and
//!   [`config::build`], which reports every configuration error at once.
//! - [`principal`]: principals (huvudmän / vårdgivare) and their care units.
//! - [`scopes`]: SMART v2 `system/` scopes, their intersection and [`scopes::Interaction`] checks.
//! - [`iua`]: the IUA user extension parsed into an [`iua::ActingUser`]; [`directory`]: whether that user
//!   holds a PractitionerRole at the care unit in navet's directory.
//! - [`jws`]: the JOSE header gate shared by assertions and access tokens, and public keys (PEM, JWKS), on
//!   top of jsonwebtoken and rustls' pki-types.
//! - [`assertion`]: client assertion verification; [`jti`]: replay protection behind [`jti::JtiStore`].
//! - [`keys`]: navet's own signing keys, generation, rotation and the JWKS.
//! - [`access_token`]: minting and verifying navet's access tokens, and the verified-token cache.
//! - [`service`]: [`AuthService`], the one object the rest of navet talks to.
//! - [`http`]: `POST /auth/token`, `GET /auth/jwks`, `GET /.well-known/smart-configuration` and the
//!   extractors.
//! - [`cli`]: `navet keygen` and `navet token` helpers; [`demo`]: the demo region's embedded keys.
//!
//! No function here logs a token, an assertion or a user's HSA-id: refusals are logged with their reason and
//! the (registered) client id only.

pub mod access_token;
pub mod assertion;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod directory;
pub mod http;
pub mod iua;
pub mod jti;
pub mod jws;
pub mod keys;
pub mod principal;
pub mod registry;
pub mod scopes;
pub mod service;

#[cfg(test)]
mod tests;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{AuthConfig, AuthSettings, ConfigError, FileSource, build};
pub use directory::{DirectoryError, UserDirectory};
pub use http::{Authenticated, PatientDataCaller, router};
pub use iua::{ActingUser, ActingUserClaims, PurposeOfUse, Role};
pub use jti::{DatabaseJtiStore, JtiStore, JtiStoreError, MemoryJtiStore};
pub use principal::{Principal, PrincipalKind};
pub use scopes::{Interaction, Scopes};
pub use service::{
    AuthError, AuthService, Caller, OAuthError, OAuthErrorCode, TokenRequest, TokenResponse,
};
