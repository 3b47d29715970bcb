//! The authentication sections of `navet.toml` and [`build`], which turns them into an [`AuthService`],
//! reporting every error at once (DESIGN.md: mapping files deserialize into config structs; `build()` makes
//! them runnable).
//!
//! ```toml
//! [auth]
//! token_lifetime_secs = 300               # 60..=3600; default 300
//! signing_key_dir = "auth/keys"           # default <data_dir>/auth/keys; relative paths are under data_dir
//!
//! [[principals]]
//! hsa_id = "SE2321000255-MTN01"
//! kind = "mtn"                            # kommun vardcentral sjukhus mtn asih ambulans lakarbil auditor admin system
//! name = "MTN Kristianstad"
//! municipalities = ["1290", "1256"]       # kommunkoder, 4 digits
//! units = ["SE2321000255-MTN01A"]         # care units under it; its own HSA-id always counts
//!
//! [[clients]]
//! client_id = "demo-mtn-kristianstad"     # 1..=128 of A-Z a-z 0-9 . _ -
//! principal = "SE2321000255-MTN01"
//! public_keys = ["keys/mtn.pub.pem"]      # PEM, relative to the config file's folder; and/or
//! jwks_file = "keys/mtn.jwks.json"        # a JWKS file (kid used for matching)
//! scopes = ["system/*.cruds"]             # what it may be granted at most
//! system_integration = false              # may read patient data without an acting user
//! population_register = false             # the population-register feed: may change a Patient's
//!                                         # security labels and protected address and contact data
//!
//! [[users]]                               # known users: `navet token --user` fills the IUA claims from here
//! hsa_id = "SE2321000255-P0101"
//! name = "Sara Sjöberg"
//! role = "SSK"                            # LAK SSK KUR SEK USK FYS ARB ANNAN
//! care_unit = "SE2321000255-MTN01"        # a principal or one of its units
//! ```

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::auth::clock::{Clock, SystemClock};
use crate::auth::directory::UserDirectory;
use crate::auth::iua::Role;
use crate::auth::jti::JtiStore;
use crate::auth::jws::VerifyingKey;
use crate::auth::keys::KeyRing;
use crate::auth::principal::{Principal, PrincipalKind};
use crate::auth::registry::{Client, KnownUser, Registry};
use crate::auth::scopes::Scopes;
use crate::auth::service::{AuthService, Stores, Urls};
use crate::domain::HsaId;

/// Everything authentication reads from `navet.toml`. Meant to be `#[serde(flatten)]`ed into the top-level
/// configuration (or parsed from its own file with [`AuthConfig::from_toml`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub auth: AuthSection,
    pub principals: Vec<PrincipalConfig>,
    pub clients: Vec<ClientConfig>,
    pub users: Vec<UserConfig>,
}

impl AuthConfig {
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    pub token_lifetime_secs: i64,
    pub signing_key_dir: Option<PathBuf>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            token_lifetime_secs: 300,
            signing_key_dir: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    pub hsa_id: String,
    pub kind: PrincipalKind,
    pub name: String,
    #[serde(default)]
    pub municipalities: Vec<String>,
    #[serde(default)]
    pub units: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    pub principal: String,
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub system_integration: bool,
    #[serde(default)]
    pub population_register: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub hsa_id: String,
    pub name: String,
    pub role: String,
    pub care_unit: String,
}

/// Where key files named in the configuration are read from.
#[derive(Clone)]
pub enum FileSource {
    /// Relative paths are under this folder (the configuration file's).
    Dir(PathBuf),
    /// Files compiled into the binary, looked up by their configured path: the built-in demo configuration
    /// ([`crate::auth::demo::embedded_file`]), so `navet serve` works from any directory.
    Embedded(fn(&str) -> Option<&'static str>),
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileSource::Dir(dir) => f.debug_tuple("Dir").field(dir).finish(),
            FileSource::Embedded(_) => f.write_str("Embedded"),
        }
    }
}

impl FileSource {
    fn read(&self, path: &Path) -> Result<String, String> {
        match self {
            FileSource::Dir(dir) => {
                let full = if path.is_absolute() {
                    path.to_owned()
                } else {
                    dir.join(path)
                };
                std::fs::read_to_string(&full)
                    .map_err(|e| format!("cannot read {}: {e}", full.display()))
            }
            FileSource::Embedded(lookup) => path
                .to_str()
                .and_then(lookup)
                .map(str::to_owned)
                .ok_or_else(|| format!("{} is not one of the embedded demo files", path.display())),
        }
    }
}

/// What [`build`] needs besides the configuration.
#[derive(Clone)]
pub struct AuthSettings {
    /// navet's public base URL (scheme, host, port, optional path), e.g. `https://navet.example.se`.
    pub base_url: String,
    /// The data directory; the signing keys default to `<data_dir>/auth/keys`.
    pub data_dir: PathBuf,
    pub files: FileSource,
    pub clock: Arc<dyn Clock>,
}

impl AuthSettings {
    pub fn new(
        base_url: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        files: FileSource,
    ) -> Self {
        AuthSettings {
            base_url: base_url.into(),
            data_dir: data_dir.into(),
            files,
            clock: Arc::new(SystemClock),
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// One configuration problem, located (`clients[2] "demo-csk"`, `[auth]`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct ConfigError {
    pub at: String,
    pub problem: String,
}

impl ConfigError {
    fn new(at: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        ConfigError {
            at: at.into(),
            problem: problem.to_string(),
        }
    }
}

/// Checks the configuration and builds the registry (no I/O besides reading the clients' key files).
pub fn build_registry(cfg: &AuthConfig, files: &FileSource) -> Result<Registry, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut registry = Registry::default();
    // Every HSA-id that names a principal or unit, with its owner, so a unit cannot belong to two.
    let mut unit_owner: HashMap<HsaId, HsaId> = HashMap::new();

    for (i, p) in cfg.principals.iter().enumerate() {
        let at = format!("principals[{i}] {:?}", p.hsa_id);
        let hsa_id = match HsaId::parse(&p.hsa_id) {
            Ok(id) => id,
            Err(e) => {
                errors.push(ConfigError::new(&at, format_args!("hsa_id: {e}")));
                continue;
            }
        };
        if p.name.trim().is_empty() {
            errors.push(ConfigError::new(&at, "name is empty"));
        }
        for m in &p.municipalities {
            if m.len() != 4 || !m.bytes().all(|b| b.is_ascii_digit()) {
                errors.push(ConfigError::new(
                    &at,
                    format_args!("municipality {m:?} is not a 4-digit kommunkod"),
                ));
            }
        }
        let mut units = Vec::new();
        for u in &p.units {
            match HsaId::parse(u) {
                Ok(unit) if unit == hsa_id => {}
                Ok(unit) => units.push(unit),
                Err(e) => errors.push(ConfigError::new(&at, format_args!("unit {u:?}: {e}"))),
            }
        }
        if registry.principals.contains_key(&hsa_id) {
            errors.push(ConfigError::new(&at, "duplicate principal HSA-id"));
            continue;
        }
        for id in std::iter::once(&hsa_id).chain(units.iter()) {
            if let Some(owner) = unit_owner.insert(id.clone(), hsa_id.clone())
                && owner != hsa_id
            {
                errors.push(ConfigError::new(
                    &at,
                    format_args!("{id} is already a unit of principal {owner}"),
                ));
            }
        }
        registry.principals.insert(
            hsa_id.clone(),
            Arc::new(Principal {
                hsa_id,
                kind: p.kind,
                name: p.name.trim().to_owned(),
                municipalities: p.municipalities.clone(),
                units,
            }),
        );
    }

    for (i, c) in cfg.clients.iter().enumerate() {
        let at = format!("clients[{i}] {:?}", c.client_id);
        let id_ok = !c.client_id.is_empty()
            && c.client_id.len() <= 128
            && c.client_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            errors.push(ConfigError::new(
                &at,
                "client_id must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
            ));
        }
        if registry.clients.contains_key(&c.client_id) {
            errors.push(ConfigError::new(&at, "duplicate client_id"));
        }
        let principal = match HsaId::parse(&c.principal) {
            Ok(id) => match registry.principals.get(&id) {
                Some(p) => Some(Arc::clone(p)),
                None => {
                    errors.push(ConfigError::new(
                        &at,
                        format_args!("principal {id} is not a configured [[principals]] entry"),
                    ));
                    None
                }
            },
            Err(e) => {
                errors.push(ConfigError::new(&at, format_args!("principal: {e}")));
                None
            }
        };
        let allowed = match Scopes::parse_each(&c.scopes) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push(ConfigError::new(&at, format_args!("scopes: {e}")));
                None
            }
        };
        let mut keys = Vec::new();
        for path in &c.public_keys {
            match files.read(path) {
                Ok(text) => match VerifyingKey::from_public_pem(&text) {
                    Ok(key) => keys.push(key),
                    Err(e) => errors.push(ConfigError::new(
                        &at,
                        format_args!("{}: {e}", path.display()),
                    )),
                },
                Err(e) => errors.push(ConfigError::new(&at, e)),
            }
        }
        if let Some(path) = &c.jwks_file {
            match files.read(path) {
                Ok(text) => match VerifyingKey::from_jwks(&text) {
                    Ok(mut more) => keys.append(&mut more),
                    Err(e) => errors.push(ConfigError::new(
                        &at,
                        format_args!("{}: {e}", path.display()),
                    )),
                },
                Err(e) => errors.push(ConfigError::new(&at, e)),
            }
        }
        if c.public_keys.is_empty() && c.jwks_file.is_none() {
            errors.push(ConfigError::new(
                &at,
                "no public_keys and no jwks_file: the client could never authenticate",
            ));
        }
        let mut kids = HashSet::new();
        for key in &keys {
            if !kids.insert(key.kid().to_owned()) {
                errors.push(ConfigError::new(
                    &at,
                    format_args!("two keys share the kid {:?}", key.kid()),
                ));
            }
        }
        if let (Some(principal), Some(allowed), true) = (principal, allowed, id_ok) {
            registry.clients.insert(
                c.client_id.clone(),
                Arc::new(Client {
                    client_id: Arc::from(c.client_id.as_str()),
                    principal,
                    keys,
                    allowed,
                    system_integration: c.system_integration,
                    population_register: c.population_register,
                }),
            );
        }
    }

    for (i, u) in cfg.users.iter().enumerate() {
        let at = format!("users[{i}] {:?}", u.hsa_id);
        let hsa_id =
            HsaId::parse(&u.hsa_id).map_err(|e| ConfigError::new(&at, format_args!("hsa_id: {e}")));
        let role = Role::parse(&u.role).map_err(|_| {
            ConfigError::new(
                &at,
                format_args!(
                    "role {:?} is not one of LAK, SSK, KUR, SEK, USK, FYS, ARB, ANNAN",
                    u.role
                ),
            )
        });
        let care_unit = HsaId::parse(&u.care_unit)
            .map_err(|e| ConfigError::new(&at, format_args!("care_unit: {e}")))
            .and_then(|unit| {
                if unit_owner.contains_key(&unit) {
                    Ok(unit)
                } else {
                    Err(ConfigError::new(
                        &at,
                        format_args!("care_unit {unit} is no configured principal or unit"),
                    ))
                }
            });
        if u.name.trim().is_empty() {
            errors.push(ConfigError::new(&at, "name is empty"));
        }
        match (hsa_id, role, care_unit) {
            (Ok(hsa_id), Ok(role), Ok(care_unit)) => {
                if registry.users.contains_key(&hsa_id) {
                    errors.push(ConfigError::new(&at, "duplicate user HSA-id"));
                    continue;
                }
                registry.users.insert(
                    hsa_id.clone(),
                    KnownUser {
                        hsa_id,
                        name: u.name.trim().to_owned(),
                        role,
                        care_unit,
                    },
                );
            }
            (a, b, c) => errors.extend([a.err(), b.err(), c.err()].into_iter().flatten()),
        }
    }

    if errors.is_empty() {
        Ok(registry)
    } else {
        Err(errors)
    }
}

/// Where navet's own signing keys live: `[auth] signing_key_dir` (relative to the data directory) or
/// `<data_dir>/auth/keys`. `navet rotate-key` writes there too.
pub fn signing_key_dir(cfg: &AuthConfig, data_dir: &Path) -> PathBuf {
    match &cfg.auth.signing_key_dir {
        Some(dir) if dir.is_absolute() => dir.clone(),
        Some(dir) => data_dir.join(dir),
        None => data_dir.join("auth").join("keys"),
    }
}

/// Checks the whole configuration, loads (or on first start generates) the signing keys and builds the
/// service. Every problem is reported, not just the first.
///
/// `store` is navet's persistent state as authentication sees it: the `jti` replay set and the user
/// directory (in production one [`crate::auth::DatabaseJtiStore`] over the store serves both).
pub fn build<S>(
    cfg: &AuthConfig,
    settings: AuthSettings,
    store: Arc<S>,
) -> Result<AuthService, Vec<ConfigError>>
where
    S: JtiStore + UserDirectory + 'static,
{
    let mut errors = Vec::new();
    let lifetime = cfg.auth.token_lifetime_secs;
    if !(60..=3600).contains(&lifetime) {
        errors.push(ConfigError::new(
            "[auth]",
            format_args!("token_lifetime_secs = {lifetime}; must be 60 to 3600"),
        ));
    }
    match reqwest::Url::parse(&settings.base_url) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.query().is_none()
                && url.fragment().is_none()
                && url.host().is_some() => {}
        _ => errors.push(ConfigError::new(
            "base_url",
            format_args!(
                "{:?} is not an http(s) URL without query or fragment",
                settings.base_url
            ),
        )),
    }
    let registry = build_registry(cfg, &settings.files).map_err(|mut e| errors.append(&mut e));
    if !errors.is_empty() {
        return Err(errors);
    }
    let Ok(registry) = registry else {
        return Err(errors);
    };
    let key_dir = signing_key_dir(cfg, &settings.data_dir);
    let keys = KeyRing::load_or_generate(&key_dir, settings.clock.now_unix(), lifetime)
        .map_err(|e| vec![ConfigError::new("[auth] signing keys", e)])?;
    let stores = Stores {
        jti: store.clone(),
        directory: store,
    };
    Ok(AuthService::new(
        registry,
        keys,
        Some(key_dir),
        stores,
        settings.clock,
        Urls::new(&settings.base_url),
        lifetime,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> FileSource {
        FileSource::Embedded(crate::auth::demo::embedded_file)
    }

    #[test]
    fn the_demo_configuration_builds() {
        let cfg = AuthConfig::from_toml(crate::auth::demo::AUTH_DEMO_TOML).unwrap();
        let registry = build_registry(&cfg, &files()).unwrap();
        // spec/demo-region.md v2: 13 principals and clients with the ambulance and the admin; 13 users (v2 adds
        // MTN Ystad's physician and the ambulance nurse; the admin's none).
        assert_eq!(registry.clients().len(), 13);
        assert_eq!(registry.principals().len(), 13);
        assert_eq!(registry.users().len(), 13);
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let cfg = AuthConfig::from_toml(
            r#"
            [auth]
            token_lifetime_secs = 5

            [[principals]]
            hsa_id = "SE2321000255-MTN01"
            kind = "mtn"
            name = "MTN"
            municipalities = ["12"]

            [[principals]]
            hsa_id = "not-an-hsa-id"
            kind = "mtn"
            name = "Bad"

            [[principals]]
            hsa_id = "SE2321000255-MTN01"
            kind = "mtn"
            name = "Duplicate"

            [[clients]]
            client_id = "a"
            principal = "SE2321000255-NOPE1"
            public_keys = ["missing.pub.pem"]
            scopes = ["system/Patient.xyz", "user/*.rs"]

            [[clients]]
            client_id = "b"
            principal = "SE2321000255-MTN01"
            scopes = ["system/*.rs"]

            [[clients]]
            client_id = "b"
            principal = "SE2321000255-MTN01"
            public_keys = ["private.pem", "garbage.pem"]
            jwks_file = "empty.jwks.json"
            scopes = ["system/*.rs"]

            [[users]]
            hsa_id = "SE2321000255-P1"
            name = "N"
            role = "BOSS"
            care_unit = "SE2321000255-ELSE1"
            "#,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("private.pem"),
            crate::auth::demo::demo_key("demo-csk").unwrap().private_pem,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("garbage.pem"),
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("empty.jwks.json"), r#"{"keys": []}"#).unwrap();
        let settings = AuthSettings::new(
            "ftp://x",
            dir.path(),
            FileSource::Dir(dir.path().to_owned()),
        );
        let errors =
            build(&cfg, settings, Arc::new(crate::auth::MemoryJtiStore::new())).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let all = text.join("\n");
        for expected in [
            "token_lifetime_secs = 5",
            "base_url",
            "kommunkod",
            "principals[1]",
            "duplicate principal",
            "is not a configured [[principals]] entry",
            "cannot read",
            "missing.pub.pem",
            "scope \"system/Patient.xyz\"",
            "no public_keys and no jwks_file",
            "duplicate client_id",
            "private.pem: found a PEM block \"PRIVATE KEY\", expected PUBLIC KEY",
            "garbage.pem: the key is neither an EC P-384 key",
            "empty.jwks.json: the JWKS holds no usable key",
            "role \"BOSS\" is not one of",
            "care_unit SE2321000255-ELSE1 is no configured principal or unit",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn a_unit_cannot_belong_to_two_principals() {
        let cfg = AuthConfig::from_toml(
            r#"
            [[principals]]
            hsa_id = "SE2321000255-A1"
            kind = "mtn"
            name = "A"
            units = ["SE2321000255-U1"]

            [[principals]]
            hsa_id = "SE2321000255-B1"
            kind = "asih"
            name = "B"
            units = ["SE2321000255-U1"]
            "#,
        )
        .unwrap();
        let errors = build_registry(&cfg, &files()).unwrap_err();
        assert!(
            errors[0]
                .to_string()
                .contains("already a unit of principal SE2321000255-A1")
        );
    }

    #[test]
    fn keys_are_read_relative_to_the_configuration_folder_and_jwks_files_work() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::auth::cli::keygen("x", "SE2321000255-A1", crate::auth::cli::KeyAlg::Es384)
            .unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/x.pub.pem"), &key.public_pem).unwrap();
        let rsa = crate::auth::demo::demo_key("demo-itacih").unwrap();
        let rsa_key = VerifyingKey::from_public_pem(rsa.public_pem).unwrap();
        let mut jwk = serde_json::to_value(rsa_key.jwk()).unwrap();
        jwk["kid"] = "rsa-1".into();
        let jwks = serde_json::json!({ "keys": [jwk] });
        std::fs::write(dir.path().join("keys/x.jwks.json"), jwks.to_string()).unwrap();
        let cfg = AuthConfig::from_toml(
            r#"
            [[principals]]
            hsa_id = "SE2321000255-A1"
            kind = "mtn"
            name = "A"

            [[clients]]
            client_id = "x"
            principal = "SE2321000255-A1"
            public_keys = ["keys/x.pub.pem"]
            jwks_file = "keys/x.jwks.json"
            scopes = ["system/*.rs"]
            "#,
        )
        .unwrap();
        let registry = build_registry(&cfg, &FileSource::Dir(dir.path().to_owned())).unwrap();
        let client = registry.client("x").unwrap();
        assert_eq!(client.keys.len(), 2);
        assert_eq!(client.keys[1].kid(), "rsa-1");
    }
}
