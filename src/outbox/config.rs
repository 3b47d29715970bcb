//! `[outbox]` and `[[destinations]]` in navet.toml, checked at start-up (every error at once, with the rest of
//! the configuration), and the SSRF rule for outbound endpoints.
//!
//! ```toml
//! [outbox]
//! poll_interval_ms = 500
//! # Plain http, private, loopback and link-local endpoints are refused unless a rule allows them for the
//! # destination's principal. A pattern is scheme://host:port, with `*` for any port.
//! [[outbox.allow]]
//! principals = ["SE2321000255-ITACIH"]
//! urls = ["http://127.0.0.1:*"]
//!
//! [[destinations]]
//! name = "itacih"
//! principal = "SE2321000255-ITACIH"        # the receiving organisation (HSA-id of a configured principal)
//! url = "https://itacih.example.se/api/visits"
//! bearer_token_env = "NAVET_ITACIH_TOKEN"   # or bearer_token_file = "secrets/itacih.token"
//! connect_timeout_ms = 2000                 # defaults as shown
//! request_timeout_ms = 10000
//! retry_budget_secs = 86400
//!
//! # A principal's SVPL endpoint (crate::svpl::outbound): the messages navet sends to it on others' behalf.
//! [[destinations]]
//! name = "kristianstad-svpl"
//! principal = "SE2120000999-HSJ1290"
//! url = "https://svpl.kristianstad.example.se/svpl"
//! svpl = true                               # at most one per principal
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    pub poll_interval_ms: Option<u64>,
    #[serde(default)]
    pub allow: Vec<AllowRuleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRuleConfig {
    pub principals: Vec<String>,
    pub urls: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    pub name: String,
    pub principal: String,
    pub url: String,
    pub bearer_token_env: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    pub connect_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub retry_budget_secs: Option<u64>,
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub breaker_threshold: Option<u32>,
    pub breaker_pause_ms: Option<u64>,
    pub concurrency: Option<usize>,
    /// The principal's SVPL endpoint (`crate::svpl::outbound`); at most one per principal.
    #[serde(default)]
    pub svpl: bool,
}

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A day: long enough to ride out a night's outage of a receiver, after which an admin must look.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
pub const DEFAULT_BREAKER_PAUSE: Duration = Duration::from_secs(30);
pub const DEFAULT_CONCURRENCY: usize = 8;
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A credential read from the environment or a file. Its `Debug` never shows it (settings are logged).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A checked destination.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    /// HSA-id of the receiving principal (named in the access-log record of every delivery).
    pub principal: String,
    pub url: reqwest::Url,
    pub bearer: Option<Secret>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry_budget: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Consecutive failed attempts that pause the destination.
    pub breaker_threshold: u32,
    pub breaker_pause: Duration,
    /// Deliveries in flight at once (to different patients; one patient's go one by one).
    pub concurrency: usize,
    /// An allow rule matched: the endpoint may be private or plain http, so addresses are not filtered.
    pub private_allowed: bool,
    /// The principal's SVPL endpoint: it is sent SVPL messages and answers each with a Kvittens
    /// (`crate::svpl::delivery`).
    pub svpl: bool,
}

impl Destination {
    /// A destination with the default timeouts and budget (tests and code that builds one directly).
    pub fn new(name: &str, principal: &str, url: reqwest::Url) -> Self {
        Destination {
            name: name.to_owned(),
            principal: principal.to_owned(),
            url,
            bearer: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry_budget: DEFAULT_RETRY_BUDGET,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            breaker_pause: DEFAULT_BREAKER_PAUSE,
            concurrency: DEFAULT_CONCURRENCY,
            private_allowed: false,
            svpl: false,
        }
    }
}

/// The delivery settings of every subscription destination (`subscription:<id>`): the defaults of a
/// configured destination; the endpoint, headers and receiving principal come from the Subscription.
pub fn subscription_template() -> Destination {
    let nowhere = reqwest::Url::parse("http://invalid.invalid/").expect("a valid URL");
    Destination::new("subscription", crate::store::SYSTEM_PRINCIPAL, nowhere)
}

/// One allow rule: these principals may have endpoints matching these patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    pub principals: Vec<String>,
    pub patterns: Vec<UrlPattern>,
}

/// `scheme://host:port`, `*` as the port for any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl UrlPattern {
    pub fn parse(s: &str) -> Option<Self> {
        let (scheme, rest) = s.split_once("://")?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':')?;
        if !(scheme == "http" || scheme == "https") || host.is_empty() || host.contains('/') {
            return None;
        }
        let port = match port {
            "*" => None,
            p => Some(p.parse().ok()?),
        };
        Some(UrlPattern {
            scheme: scheme.to_owned(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    pub fn matches(&self, url: &reqwest::Url) -> bool {
        url.scheme() == self.scheme
            && url
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
            && self
                .port
                .is_none_or(|p| url.port_or_known_default() == Some(p))
    }
}

#[derive(Debug, Clone, Default)]
pub struct OutboxSettings {
    pub poll_interval: Duration,
    pub destinations: Vec<Destination>,
    pub allow: Vec<AllowRule>,
}

impl OutboxSettings {
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }
}

/// Whether `principal` may have an endpoint at `url`: public `https`, or matching an allow rule. `Ok(true)`
/// when a rule allowed it (the endpoint may then be private).
pub fn check_endpoint(
    url: &reqwest::Url,
    principal: &str,
    rules: &[AllowRule],
) -> Result<bool, String> {
    if rules.iter().any(|r| {
        r.principals.iter().any(|p| p == principal) && r.patterns.iter().any(|p| p.matches(url))
    }) {
        return Ok(true);
    }
    if url.scheme() != "https" {
        return Err(format!(
            "{url} is not https (patient data leaves navet only encrypted, unless [[outbox.allow]] allows it \
             for {principal})"
        ));
    }
    // IPv6 hosts come bracketed ("[::1]"); anything else that parses as an address is a literal address.
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let private = match host.parse::<IpAddr>() {
        Ok(ip) => !is_public(ip),
        Err(_) => host.is_empty() || host == "localhost" || host.ends_with(".localhost"),
    };
    if private {
        return Err(format!(
            "{url} is a private, loopback or link-local address; [[outbox.allow]] must allow it for {principal}"
        ));
    }
    Ok(false)
}

/// Whether an address is on the public internet (SSRF: navet must not be made to call into its own network).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        // 100.64.0.0/10 carrier-grade NAT, 0.0.0.0/8, 198.18.0.0/15 benchmarking, 240.0.0.0/4 reserved.
        || (a == 100 && (64..128).contains(&b))
        || a == 0
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

/// Checks the sections; pushes every problem onto `errors`.
pub fn build(
    section: &OutboxSection,
    destinations: &[DestinationConfig],
    principals: &[String],
    config_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> OutboxSettings {
    let mut allow = Vec::new();
    for (i, rule) in section.allow.iter().enumerate() {
        let mut patterns = Vec::new();
        for p in &rule.principals {
            if !principals.contains(p) {
                errors.push(format!(
                    "[[outbox.allow]] #{}: principal {p} is not configured",
                    i + 1
                ));
            }
        }
        for u in &rule.urls {
            match UrlPattern::parse(u) {
                Some(p) => patterns.push(p),
                None => errors.push(format!(
                    "[[outbox.allow]] #{}: '{u}' is not scheme://host:port (port may be *)",
                    i + 1
                )),
            }
        }
        allow.push(AllowRule {
            principals: rule.principals.clone(),
            patterns,
        });
    }
    let mut out = Vec::new();
    for (i, d) in destinations.iter().enumerate() {
        let at = format!("[[destinations]] #{} ({})", i + 1, d.name);
        if d.name.is_empty()
            || !d
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errors.push(format!("{at}: name must be letters, digits, - and _"));
        }
        if destinations[..i].iter().any(|o| o.name == d.name) {
            errors.push(format!("{at}: the name is used twice"));
        }
        if !principals.contains(&d.principal) {
            errors.push(format!("{at}: principal {} is not configured", d.principal));
        }
        let url = match reqwest::Url::parse(&d.url) {
            Ok(u) => u,
            Err(e) => {
                errors.push(format!("{at}: url '{}' is not a URL: {e}", d.url));
                continue;
            }
        };
        let private_allowed = match check_endpoint(&url, &d.principal, &allow) {
            Ok(allowed) => allowed,
            Err(e) => {
                errors.push(format!("{at}: {e}"));
                false
            }
        };
        let bearer = match (&d.bearer_token_env, &d.bearer_token_file) {
            (Some(_), Some(_)) => {
                errors.push(format!(
                    "{at}: give bearer_token_env or bearer_token_file, not both"
                ));
                None
            }
            (Some(var), None) => match env(var).filter(|v| !v.trim().is_empty()) {
                Some(v) => Some(Secret::new(v.trim())),
                None => {
                    errors.push(format!("{at}: environment variable {var} is not set"));
                    None
                }
            },
            (None, Some(file)) => {
                let path = match config_dir {
                    Some(base) if file.is_relative() => base.join(file),
                    _ => file.clone(),
                };
                match std::fs::read_to_string(&path) {
                    Ok(v) if !v.trim().is_empty() => Some(Secret::new(v.trim())),
                    Ok(_) => {
                        errors.push(format!("{at}: {} is empty", path.display()));
                        None
                    }
                    Err(e) => {
                        errors.push(format!("{at}: cannot read {}: {e}", path.display()));
                        None
                    }
                }
            }
            (None, None) => None,
        };
        let ms =
            |v: Option<u64>, default: Duration| v.map(Duration::from_millis).unwrap_or(default);
        let dest = Destination {
            name: d.name.clone(),
            principal: d.principal.clone(),
            url,
            bearer,
            connect_timeout: ms(d.connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT),
            request_timeout: ms(d.request_timeout_ms, DEFAULT_REQUEST_TIMEOUT),
            retry_budget: d
                .retry_budget_secs
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_RETRY_BUDGET),
            initial_backoff: ms(d.initial_backoff_ms, DEFAULT_INITIAL_BACKOFF),
            max_backoff: ms(d.max_backoff_ms, DEFAULT_MAX_BACKOFF),
            breaker_threshold: d.breaker_threshold.unwrap_or(DEFAULT_BREAKER_THRESHOLD),
            breaker_pause: ms(d.breaker_pause_ms, DEFAULT_BREAKER_PAUSE),
            concurrency: d.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
            private_allowed,
            svpl: d.svpl,
        };
        if d.svpl
            && destinations[..i]
                .iter()
                .any(|o| o.svpl && o.principal == d.principal)
        {
            errors.push(format!(
                "{at}: principal {} has an SVPL endpoint already (svpl = true once per principal)",
                d.principal
            ));
        }
        if dest.connect_timeout.is_zero() || dest.request_timeout.is_zero() {
            errors.push(format!("{at}: timeouts must be above 0"));
        }
        if dest.retry_budget < Duration::from_secs(60) {
            errors.push(format!("{at}: retry_budget_secs must be at least 60"));
        }
        if dest.initial_backoff.is_zero() || dest.max_backoff < dest.initial_backoff {
            errors.push(format!(
                "{at}: need 0 < initial_backoff_ms <= max_backoff_ms"
            ));
        }
        if dest.breaker_threshold == 0 {
            errors.push(format!("{at}: breaker_threshold must be at least 1"));
        }
        if !(1..=256).contains(&dest.concurrency) {
            errors.push(format!("{at}: concurrency must be 1 to 256"));
        }
        out.push(dest);
    }
    let poll_interval = section
        .poll_interval_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_POLL_INTERVAL);
    if poll_interval.is_zero() || poll_interval > Duration::from_secs(60) {
        errors.push("[outbox] poll_interval_ms must be 1 to 60000".into());
    }
    OutboxSettings {
        poll_interval,
        destinations: out,
        allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<AllowRule> {
        vec![AllowRule {
            principals: vec!["P1".into()],
            patterns: vec![UrlPattern::parse("http://127.0.0.1:*").expect("pattern")],
        }]
    }

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).expect("url")
    }

    #[test]
    fn endpoints_are_public_https_or_allowed_for_the_principal() {
        let r = rules();
        assert_eq!(
            check_endpoint(&url("https://itacih.example.se/x"), "P2", &r),
            Ok(false)
        );
        assert_eq!(
            check_endpoint(&url("http://127.0.0.1:9000/x"), "P1", &r),
            Ok(true)
        );
        for refused in [
            "http://127.0.0.1:9000/x",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://192.168.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://localhost/x",
            "https://api.localhost/x",
            "http://itacih.example.se/x",
        ] {
            assert!(
                check_endpoint(&url(refused), "P2", &r).is_err(),
                "{refused}"
            );
        }
        // The rule is for P1's loopback http only.
        assert!(check_endpoint(&url("http://10.0.0.1:80/"), "P1", &r).is_err());
        assert!(check_endpoint(&url("https://127.0.0.1:9000/"), "P1", &r).is_err());
    }

    #[test]
    fn patterns_need_scheme_host_and_port() {
        for bad in [
            "127.0.0.1:*",
            "ftp://h:1",
            "http://h",
            "http://h:x",
            "http://:1",
            "http://a/b:1",
        ] {
            assert_eq!(UrlPattern::parse(bad), None, "{bad}");
        }
        let p = UrlPattern::parse("https://Hook.example.se:8443").expect("pattern");
        assert!(p.matches(&url("https://hook.example.se:8443/a")));
        assert!(!p.matches(&url("https://hook.example.se/a")));
    }

    #[test]
    fn every_destination_error_is_reported_and_secrets_are_never_shown() {
        let section = OutboxSection {
            poll_interval_ms: Some(0),
            allow: vec![AllowRuleConfig {
                principals: vec!["NOPE".into()],
                urls: vec!["bad".into()],
            }],
        };
        let parse = |s: &str| -> DestinationConfig { toml::from_str(s).expect("toml") };
        let dests = vec![
            parse(
                "name = \"a\"\nprincipal = \"P1\"\nurl = \"http://127.0.0.1:1/\"\nbearer_token_env = \"TOKEN\"\nsvpl = true",
            ),
            parse("name = \"a\"\nprincipal = \"P9\"\nurl = \"not a url\""),
            parse(
                "name = \"b c\"\nprincipal = \"P1\"\nurl = \"https://10.0.0.1/\"\nretry_budget_secs = 5\nbearer_token_env = \"MISSING\"\nsvpl = true",
            ),
        ];
        let mut errors = Vec::new();
        let env = |k: &str| (k == "TOKEN").then(|| "s3cret".to_owned());
        let built = build(&section, &dests, &["P1".into()], None, &env, &mut errors);
        let text = errors.join("\n");
        for expected in [
            "principal NOPE is not configured",
            "'bad' is not scheme://host:port",
            "#2 (a): the name is used twice",
            "principal P9 is not configured",
            "is not a URL",
            "name must be letters",
            "private, loopback or link-local",
            "retry_budget_secs must be at least 60",
            "MISSING is not set",
            "poll_interval_ms",
            "#3 (b c): principal P1 has an SVPL endpoint already",
        ] {
            assert!(text.contains(expected), "missing '{expected}' in:\n{text}");
        }
        // a: loopback http is not allowed for P1 here, since the only rule failed to parse.
        assert!(
            text.contains("#1 (a): http://127.0.0.1:1/ is not https"),
            "{text}"
        );
        assert_eq!(errors.len(), 12, "{text}");
        let a = &built.destinations[0];
        assert_eq!(a.bearer.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(!format!("{built:?}").contains("s3cret"));
    }
}
