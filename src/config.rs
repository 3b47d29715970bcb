//! Configuration: command-line flags and environment (clap) over `navet.toml` over defaults.
//!
//! Without `--config`, navet runs on the embedded Skåne demo configuration (spec/demo-region.md), so
//! `navet serve` needs nothing else. Every configuration error is collected and reported at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::{AuthConfig, FileSource};

/// The demo configuration shipped inside the binary: server settings plus the demo region's principals,
/// clients and users (their public keys are embedded too, see [`crate::auth::demo`]).
pub const DEMO_CONFIG: &str = concat!(
    include_str!("demo/navet-demo.toml"),
    "\n",
    include_str!("demo/auth-demo.toml")
);

/// `navet.toml` as written. Unknown keys are errors: a typo must not silently fall back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub demo: DemoSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub outbox: crate::outbox::config::OutboxSection,
    #[serde(default)]
    pub destinations: Vec<crate::outbox::config::DestinationConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// How long access-log records are kept, in years. At least 5 (spec/timeline-and-audit.md); default 10.
    pub retention_years: Option<u32>,
}

/// The access log is kept at least this long (HSLF-FS 2016:40 practice, spec/timeline-and-audit.md).
pub const MIN_AUDIT_RETENTION_YEARS: u32 = 5;
pub const DEFAULT_AUDIT_RETENTION_YEARS: u32 = 10;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub base_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// `text` (default) or `json` log lines.
    pub log_format: Option<String>,
    /// PEM certificate chain and private key: serve HTTPS (rustls) instead of HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: with it, a client certificate signed by one of them is required (mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSection {
    /// Load the demo patients, organisations and practitioners into a fresh data directory.
    #[serde(default)]
    pub seed: bool,
}

/// What the command line and environment gave (clap reads both).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub base_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The resolved settings navet runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub base_url: String,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    pub seed_demo: bool,
    /// The folder relative paths in the configuration are resolved against (None for the embedded demo).
    pub config_dir: Option<PathBuf>,
    /// The configuration text, for the sections other modules read.
    pub config_text: String,
    /// `[auth]`, `[[principals]]`, `[[clients]]`, `[[users]]`: already checked by [`crate::auth::config`].
    pub auth: AuthConfig,
    /// Where the clients' key files are read from (the config file's folder, or the embedded demo files).
    pub auth_files: FileSource,
    pub tls: Option<TlsFiles>,
    /// Access-log retention in years (nothing is purged yet: records are only ever appended).
    pub audit_retention_years: u32,
    /// `[outbox]` and `[[destinations]]`: checked, with their credentials read.
    pub outbox: crate::outbox::config::OutboxSettings,
}

/// HTTPS: the server's certificate chain and key, and optionally the CAs client certificates must chain to.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./navet-data";
pub const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("configuration errors:\n  - {}", .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

impl Settings {
    pub fn load(o: &Overrides) -> Result<Settings, ConfigErrors> {
        let mut errors = Vec::new();
        let (text, config_dir) = match &o.config {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(t) => (
                    t,
                    Some(path.parent().map(Path::to_path_buf).unwrap_or_default()),
                ),
                Err(e) => {
                    return Err(ConfigErrors(vec![format!(
                        "cannot read {}: {e}",
                        path.display()
                    )]));
                }
            },
            None => (DEMO_CONFIG.to_owned(), None),
        };
        let (file, auth): (FileConfig, AuthConfig) = match toml::from_str::<toml::Table>(&text) {
            Err(e) => {
                return Err(ConfigErrors(vec![format!(
                    "navet.toml is not valid TOML: {e}"
                )]));
            }
            Ok(mut table) => {
                // Sections owned by other modules are checked there.
                let mut auth_table = toml::Table::new();
                for section in ["auth", "principals", "clients", "users"] {
                    if let Some(value) = table.remove(section) {
                        auth_table.insert(section.to_owned(), value);
                    }
                }
                for section in ["teams", "patients"] {
                    table.remove(section);
                }
                let file = table.try_into().unwrap_or_else(|e| {
                    errors.push(format!("navet.toml: {e}"));
                    FileConfig::default()
                });
                let auth = auth_table.try_into().unwrap_or_else(|e| {
                    errors.push(format!("navet.toml (authentication): {e}"));
                    AuthConfig::default()
                });
                (file, auth)
            }
        };
        let auth_files = match &config_dir {
            Some(dir) => FileSource::Dir(dir.clone()),
            None => FileSource::Embedded(crate::auth::demo::embedded_file),
        };
        // Principals, clients, users and key files are checked now, so their errors join the others.
        if let Err(auth_errors) = crate::auth::config::build_registry(&auth, &auth_files) {
            errors.extend(auth_errors.iter().map(ToString::to_string));
        }
        let lifetime = auth.auth.token_lifetime_secs;
        if !(60..=3600).contains(&lifetime) {
            errors.push(format!(
                "[auth] token_lifetime_secs = {lifetime}; must be 60 to 3600"
            ));
        }
        let resolve = |p: &PathBuf| match &config_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.clone(),
        };
        let tls_cert = o
            .tls_cert
            .clone()
            .or(file.server.tls_cert.as_ref().map(resolve));
        let tls_key = o
            .tls_key
            .clone()
            .or(file.server.tls_key.as_ref().map(resolve));
        let tls_client_ca =
            o.tls_client_ca
                .clone()
                .or(file.server.tls_client_ca.as_ref().map(resolve));
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: tls_client_ca,
            }),
            (None, None) => {
                if tls_client_ca.is_some() {
                    errors.push(
                        "tls_client_ca needs tls_cert and tls_key (mutual TLS is on top of HTTPS)"
                            .into(),
                    );
                }
                None
            }
            _ => {
                errors.push("tls_cert and tls_key go together: give both or neither".into());
                None
            }
        };
        let listen_text = o
            .listen
            .clone()
            .or(file.server.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
            errors.push(format!(
                "listen address '{listen_text}' is not host:port (e.g. 127.0.0.1:8080)"
            ));
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        let data_dir = o
            .data_dir
            .clone()
            .or(file.storage.data_dir.clone().map(|d| match &config_dir {
                Some(base) if d.is_relative() => base.join(d),
                _ => d,
            }))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let base_url = o
            .base_url
            .clone()
            .or(file.server.base_url.clone())
            .unwrap_or_else(|| {
                let scheme = if tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{listen}")
            })
            .trim_end_matches('/')
            .to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            errors.push(format!(
                "base_url '{base_url}' must start with http:// or https://"
            ));
        }
        let audit_retention_years = file
            .audit
            .retention_years
            .unwrap_or(DEFAULT_AUDIT_RETENTION_YEARS);
        if audit_retention_years < MIN_AUDIT_RETENTION_YEARS {
            errors.push(format!(
                "audit.retention_years = {audit_retention_years}; the access log is kept at least \
                 {MIN_AUDIT_RETENTION_YEARS} years"
            ));
        }
        let max_body_bytes = file.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if max_body_bytes < 1024 {
            errors.push(format!(
                "server.max_body_bytes {max_body_bytes} is below the minimum of 1024"
            ));
        }
        let log_format = match file.server.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                errors.push(format!("server.log_format '{other}' is not text or json"));
                LogFormat::Text
            }
        };
        let principals: Vec<String> = auth.principals.iter().map(|p| p.hsa_id.clone()).collect();
        let outbox = crate::outbox::config::build(
            &file.outbox,
            &file.destinations,
            &principals,
            config_dir.as_deref(),
            &|var| std::env::var(var).ok(),
            &mut errors,
        );
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Settings {
            listen,
            data_dir,
            base_url,
            max_body_bytes,
            log_format,
            seed_demo: file.demo.seed,
            config_dir,
            config_text: text,
            auth,
            auth_files,
            tls,
            audit_retention_years,
            outbox,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_demo_configuration_loads_with_defaults() {
        let s = Settings::load(&Overrides::default()).expect("demo config is valid");
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.base_url, "http://127.0.0.1:8080");
        assert!(s.seed_demo);
        assert_eq!(s.auth.clients.len(), 11, "every demo client is registered");
    }

    #[test]
    fn every_configuration_error_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("navet.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"nowhere\"\nbase_url = \"ftp://x\"\nlog_format = \"xml\"\nmax_body_bytes = 1\n\
             [audit]\nretention_years = 2\n",
        )
        .expect("write");
        let err = Settings::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        assert_eq!(err.0.len(), 5, "{err}");
        assert!(err.to_string().contains("retention_years"), "{err}");
    }

    #[test]
    fn authentication_errors_are_reported_with_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("navet.toml");
        std::fs::write(
            &path,
            "[server]\nlog_format = \"xml\"\n\n[auth]\ntoken_lifetime_secs = 5\n\n[[clients]]\nclient_id = \"c\"\n\
             principal = \"SE0000000000-NOPE\"\npublic_keys = [\"missing.pem\"]\nscopes = [\"system/*.rs\"]\n",
        )
        .expect("write");
        let err = Settings::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("log_format"), "{text}");
        assert!(text.contains("token_lifetime_secs"), "{text}");
        assert!(text.contains("missing.pem"), "{text}");
        assert!(text.contains("SE0000000000-NOPE"), "{text}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let s = Settings::load(&Overrides {
            listen: Some("127.0.0.1:9999".into()),
            ..Overrides::default()
        })
        .expect("valid");
        assert_eq!(s.listen.port(), 9999);
    }
}
