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
    /// `[store] url`: the database (issue 16). Absent: the embedded SQLite store in the data directory.
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub demo: DemoSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub outbox: crate::outbox::config::OutboxSection,
    #[serde(default)]
    pub destinations: Vec<crate::outbox::config::DestinationConfig>,
    #[serde(default)]
    pub svpl: crate::svpl::SvplSection,
    /// `[caremap] file`: the team directory (default: the embedded demo region's).
    #[serde(default)]
    pub caremap: crate::caremap::config::CareMapSection,
    /// `[itacih]`: the itACiH link (off unless `base_url` is set).
    #[serde(default)]
    pub itacih: crate::itacih::ItacihSection,
}

/// `[limits]`: the edge's timeouts, concurrency and rate limits (README "Limits and the edge"), and bounds on
/// the work one request may ask for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub request_timeout_secs: Option<u64>,
    pub header_read_timeout_secs: Option<u64>,
    pub max_concurrent_requests: Option<usize>,
    pub client_requests_per_second: Option<u32>,
    pub unauthenticated_requests_per_minute: Option<u32>,
    pub unauthenticated_burst: Option<u32>,
    /// Entries in one transaction or batch Bundle; more is refused with 413 (default 1,000).
    pub max_bundle_entries: Option<usize>,
    /// Request bodies over this many bytes are "big" (default 1 MiB) ...
    pub big_body_bytes: Option<usize>,
    /// ... and at most this many of them are read and processed at once (default 4) ...
    pub big_body_concurrency: Option<usize>,
    /// ... the others wait this long for their turn, then get 503 with Retry-After (default 5,000 ms).
    pub big_body_wait_ms: Option<u64>,
}

/// The edge's limits, resolved. Authenticated requests are limited per client (generous: a busy care system
/// makes hundreds of reads a second); requests without a valid token per source address (strict: they can
/// only fetch a token, read the CapabilityStatement or be refused, and each refusal costs an access-log write).
/// The per-client default is above what one node serves (about 1,300 reads a second measured): it stops a
/// runaway client, not a busy one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A request that has not been answered in this time gets 408 (its work is abandoned).
    pub request_timeout: std::time::Duration,
    /// A connection that has not sent a whole request header in this time is closed (half-open requests).
    pub header_read_timeout: std::time::Duration,
    /// Requests being served at once; beyond it navet answers 503 + Retry-After at once (load shedding).
    /// Each request has at most one job in the writer queue, so while this stays below the queue's capacity
    /// requests are shed here, before the queue is full.
    pub max_concurrent_requests: usize,
    /// Per client id; the bucket holds one second's worth.
    pub client_requests_per_second: u32,
    /// Per source address, for requests without a valid token (missing, malformed or failed).
    pub unauthenticated_requests_per_minute: u32,
    pub unauthenticated_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: std::time::Duration::from_secs(30),
            header_read_timeout: std::time::Duration::from_secs(10),
            max_concurrent_requests: 1024,
            client_requests_per_second: 10_000,
            unauthenticated_requests_per_minute: 120,
            unauthenticated_burst: 30,
        }
    }
}

/// `max_concurrent_requests` stays below the writer queue's capacity (4096 jobs), so overload is shed at the
/// edge rather than by a full queue.
pub const MAX_CONCURRENT_REQUESTS: usize = 2048;
/// The largest rate or burst `[limits]` takes.
pub const MAX_RATE: u32 = 1_000_000;

impl LimitsSection {
    fn resolve(&self, errors: &mut Vec<String>) -> Limits {
        let d = Limits::default();
        let secs =
            |v: Option<u64>, key: &str, default: std::time::Duration, errors: &mut Vec<String>| {
                match v {
                    None => default,
                    Some(s @ 1..=3600) => std::time::Duration::from_secs(s),
                    Some(s) => {
                        errors.push(format!("limits.{key} = {s}; must be 1 to 3600"));
                        default
                    }
                }
            };
        // Rates above a million would make the limiters' refill interval round to nothing.
        let positive = |v: Option<u32>, key: &str, default: u32, errors: &mut Vec<String>| match v {
            None => default,
            Some(n @ 1..=MAX_RATE) => n,
            Some(n) => {
                errors.push(format!("limits.{key} = {n}; must be 1 to {MAX_RATE}"));
                default
            }
        };
        let max_concurrent_requests = match self.max_concurrent_requests {
            None => d.max_concurrent_requests,
            Some(n @ 1..=MAX_CONCURRENT_REQUESTS) => n,
            Some(n) => {
                errors.push(format!(
                    "limits.max_concurrent_requests = {n}; must be 1 to {MAX_CONCURRENT_REQUESTS}"
                ));
                d.max_concurrent_requests
            }
        };
        Limits {
            request_timeout: secs(
                self.request_timeout_secs,
                "request_timeout_secs",
                d.request_timeout,
                errors,
            ),
            header_read_timeout: secs(
                self.header_read_timeout_secs,
                "header_read_timeout_secs",
                d.header_read_timeout,
                errors,
            ),
            max_concurrent_requests,
            client_requests_per_second: positive(
                self.client_requests_per_second,
                "client_requests_per_second",
                d.client_requests_per_second,
                errors,
            ),
            unauthenticated_requests_per_minute: positive(
                self.unauthenticated_requests_per_minute,
                "unauthenticated_requests_per_minute",
                d.unauthenticated_requests_per_minute,
                errors,
            ),
            unauthenticated_burst: positive(
                self.unauthenticated_burst,
                "unauthenticated_burst",
                d.unauthenticated_burst,
                errors,
            ),
        }
    }
}

/// 1,000 entries: well above what clients send in one Bundle (the demo region's seed is 51 entries; bulk
/// loaders page at a few hundred), and a transaction at the cap holds the single writer for well under a
/// second (tests/benches/bundles.rs), so one request cannot stall every other client for long.
pub const DEFAULT_MAX_BUNDLE_ENTRIES: usize = 1_000;
/// A higher cap brings back the stalls the cap exists to prevent.
pub const MAX_MAX_BUNDLE_ENTRIES: usize = 100_000;
/// Big bodies (see `src/http/body.rs`): everyday resources are a few KB, so 1 MiB marks the unusual ones;
/// two per core (this machine has 2) keeps the CPU busy while one waits for the writer, and bounds their
/// memory to a few hundred MB (measured: tests/load/big_bodies.sh); 5 s of waiting absorbs a burst.
pub const DEFAULT_BIG_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_BIG_BODY_CONCURRENCY: usize = 4;
pub const DEFAULT_BIG_BODY_WAIT_MS: u64 = 5_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// How long access-log records are kept, in years. At least 5 (spec/timeline-and-audit.md); default 10.
    pub retention_years: Option<u32>,
    /// Seconds between signed checkpoints of the access log (default 60; one is also made at shutdown).
    pub checkpoint_secs: Option<u64>,
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
    /// A second listen address serving only `/metrics`, without a token, for a Prometheus scraper on a
    /// private interface. Off by default.
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `postgres://user@host:5432/db`: run on PostgreSQL (several nodes may share it). Unset: SQLite.
    pub url: Option<String>,
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
    /// `--database-url` / `NAVET_DATABASE_URL`: overrides `[store] url`.
    pub database_url: Option<String>,
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
    /// The PostgreSQL database (`[store] url`, `NAVET_DATABASE_URL`); `None`: SQLite in `data_dir`. The data
    /// directory still holds this node's keys either way.
    pub database_url: Option<String>,
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
    /// `[audit] checkpoint_secs`.
    pub audit_checkpoint_secs: u64,
    /// `[limits] max_bundle_entries`.
    pub max_bundle_entries: usize,
    /// `[limits] big_body_bytes`, `big_body_concurrency`, `big_body_wait_ms`.
    pub big_body_bytes: usize,
    pub big_body_concurrency: usize,
    pub big_body_wait_ms: u64,
    /// `[limits]`: timeouts, concurrency and rate limits at the edge.
    pub limits: Limits,
    /// `server.metrics_listen`: serve `/metrics` without a token on this address too.
    pub metrics_listen: Option<SocketAddr>,
    /// `[outbox]` and `[[destinations]]`: checked, with their credentials read.
    pub outbox: crate::outbox::config::OutboxSettings,
    /// `[svpl]`: the checked SVPL mapping (`mappings/svpl/`, or the files `mappings_dir` names).
    pub svpl_mapping: crate::svpl::mapping::Mapping,
    /// The ordination rules, the care map (`[caremap]`) and the itACiH link (`[itacih]`), checked.
    pub ordination: std::sync::Arc<crate::ordination::Ordination>,
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
        let database_url = o
            .database_url
            .clone()
            .or(file.store.url.clone())
            .filter(|u| !u.trim().is_empty());
        if let Some(url) = &database_url
            && !crate::store::postgres::is_postgres_url(url)
        {
            // Never echo the URL: it may carry a password.
            errors.push(
                "[store] url must be a postgres:// or postgresql:// URL (leave it out for the embedded SQLite store)"
                    .into(),
            );
        }
        let audit_checkpoint_secs = file.audit.checkpoint_secs.unwrap_or(60);
        if audit_checkpoint_secs == 0 {
            errors.push("audit.checkpoint_secs must be at least 1".into());
        }
        let max_body_bytes = file.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if max_body_bytes < 1024 {
            errors.push(format!(
                "server.max_body_bytes {max_body_bytes} is below the minimum of 1024"
            ));
        }
        let max_bundle_entries = file
            .limits
            .max_bundle_entries
            .unwrap_or(DEFAULT_MAX_BUNDLE_ENTRIES);
        if !(1..=MAX_MAX_BUNDLE_ENTRIES).contains(&max_bundle_entries) {
            errors.push(format!(
                "limits.max_bundle_entries = {max_bundle_entries}; must be 1 to {MAX_MAX_BUNDLE_ENTRIES}"
            ));
        }
        let big_body_bytes = file.limits.big_body_bytes.unwrap_or(DEFAULT_BIG_BODY_BYTES);
        let big_body_concurrency = file
            .limits
            .big_body_concurrency
            .unwrap_or(DEFAULT_BIG_BODY_CONCURRENCY);
        let big_body_wait_ms = file
            .limits
            .big_body_wait_ms
            .unwrap_or(DEFAULT_BIG_BODY_WAIT_MS);
        if big_body_concurrency == 0 {
            errors.push("limits.big_body_concurrency must be at least 1".into());
        }
        if big_body_wait_ms > 60_000 {
            errors.push(format!(
                "limits.big_body_wait_ms = {big_body_wait_ms}; must be at most 60000 (a minute)"
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
        let limits = file.limits.resolve(&mut errors);
        let metrics_listen = file.server.metrics_listen.as_deref().and_then(|text| {
            text.parse::<SocketAddr>()
                .map_err(|_| {
                    errors.push(format!(
                        "server.metrics_listen '{text}' is not host:port (e.g. 127.0.0.1:9090)"
                    ))
                })
                .ok()
        });
        let principals: Vec<String> = auth.principals.iter().map(|p| p.hsa_id.clone()).collect();
        let outbox = crate::outbox::config::build(
            &file.outbox,
            &file.destinations,
            &principals,
            config_dir.as_deref(),
            &|var| std::env::var(var).ok(),
            &mut errors,
        );
        let svpl_mapping = crate::svpl::load_mapping(&file.svpl, config_dir.as_deref())
            .map_err(|e| errors.push(e))
            .ok();
        let ordination = crate::ordination::load(
            &file.caremap,
            &file.itacih,
            &outbox.allow,
            config_dir.as_deref(),
            &mut errors,
        );
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Settings {
            listen,
            data_dir,
            database_url,
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
            audit_checkpoint_secs,
            max_bundle_entries,
            big_body_bytes,
            big_body_concurrency,
            big_body_wait_ms,
            limits,
            metrics_listen,
            outbox,
            svpl_mapping: svpl_mapping.unwrap_or_else(crate::svpl::mapping::Mapping::embedded),
            ordination,
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
        assert_eq!(s.auth.clients.len(), 13, "every demo client is registered");
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.metrics_listen, None);
    }

    #[test]
    fn limits_are_read_from_their_section_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("navet.toml");
        std::fs::write(
            &path,
            "[server]\nmetrics_listen = \"127.0.0.1:9090\"\n[limits]\nrequest_timeout_secs = 5\n\
             header_read_timeout_secs = 2\nmax_concurrent_requests = 64\nclient_requests_per_second = 50\n\
             unauthenticated_requests_per_minute = 10\nunauthenticated_burst = 4\n",
        )
        .expect("write");
        let s = Settings::load(&Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        })
        .expect("valid");
        assert_eq!(
            s.limits,
            Limits {
                request_timeout: std::time::Duration::from_secs(5),
                header_read_timeout: std::time::Duration::from_secs(2),
                max_concurrent_requests: 64,
                client_requests_per_second: 50,
                unauthenticated_requests_per_minute: 10,
                unauthenticated_burst: 4,
            }
        );
        assert_eq!(
            s.metrics_listen,
            Some("127.0.0.1:9090".parse().expect("addr"))
        );

        std::fs::write(
            &path,
            "[server]\nmetrics_listen = \"private\"\n[limits]\nrequest_timeout_secs = 0\n\
             max_concurrent_requests = 5000\nunauthenticated_burst = 0\nrequests = 1\n",
        )
        .expect("write");
        let err = Settings::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        // An unknown key is a TOML error that stops the section (reported alone).
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(err.0[0].contains("unknown field `requests`"), "{err}");
    }

    #[test]
    fn out_of_range_limits_are_each_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("navet.toml");
        std::fs::write(
            &path,
            "[server]\nmetrics_listen = \"private\"\n[limits]\nrequest_timeout_secs = 0\n\
             max_concurrent_requests = 5000\nunauthenticated_burst = 0\n",
        )
        .expect("write");
        let err = Settings::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        let mut found: Vec<&str> = err
            .0
            .iter()
            .map(|e| {
                e.split([' ', '\''])
                    .find(|w| w.starts_with("limits.") || w.starts_with("server."))
                    .unwrap_or(e)
            })
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                "limits.max_concurrent_requests",
                "limits.request_timeout_secs",
                "limits.unauthenticated_burst",
                "server.metrics_listen",
            ],
            "{err}"
        );
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
    fn limits_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("navet.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).expect("write");
            Settings::load(&Overrides {
                config: Some(path.clone()),
                ..Overrides::default()
            })
        };
        let s = load(
            "[limits]\nmax_bundle_entries = 20\nbig_body_bytes = 4096\nbig_body_concurrency = 2\n\
             big_body_wait_ms = 100\n",
        )
        .expect("valid limits");
        assert_eq!(
            (
                s.max_bundle_entries,
                s.big_body_bytes,
                s.big_body_concurrency,
                s.big_body_wait_ms
            ),
            (20, 4096, 2, 100)
        );
        let defaults = load("").expect("no limits given");
        assert_eq!(defaults.max_bundle_entries, DEFAULT_MAX_BUNDLE_ENTRIES);
        let err = load(
            "[limits]\nmax_bundle_entries = 0\nbig_body_concurrency = 0\nbig_body_wait_ms = 600000\n",
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(err.to_string().contains("max_bundle_entries"), "{err}");
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
