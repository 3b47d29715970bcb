//! The itACiH link (spec/itacih.md v2): planned visits out through the outbox ([`push`]), what happened back
//! from the event feed ([`feed`]), every field name and code from `mappings/itacih/` ([`mapping`]), and a
//! simulated itACiH for tests and the README demo ([`sim`], `navet itacih-sim`).
//!
//! ```toml
//! [itacih]
//! base_url = "http://127.0.0.1:9300"       # itACiH's API base (https, or allowed by [[outbox.allow]])
//! principal = "SE2321000255-ITACIH"        # the integration's principal (named in the access log)
//! poll_interval_ms = 2000                  # the feed poller's pace when there is nothing new
//! connect_timeout_ms = 2000                # defaults as shown (spec: connect 2 s, request 10 s)
//! request_timeout_ms = 10000
//! retry_budget_secs = 86400
//! initial_backoff_ms = 1000
//! max_backoff_ms = 60000
//! # mappings_dir = "mappings/itacih"       # a site's own copy of the mappings (default: the shipped ones)
//! ```

pub mod feed;
pub mod mapping;
pub mod push;
pub mod sim;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::caremap::CareMap;
use crate::outbox::config::{AllowRule, Destination};
pub use mapping::Mapping;

/// The outbox destination of planned visits.
pub const DESTINATION: &str = "itacih";
/// The outbox "destination" of feed events that could not be applied (unknown patient, unit or visit):
/// dead letters listed and replayed by admins at `/admin/outbox`; a replayed one is applied again by the
/// feed poller.
pub const FEED_DEAD_LETTERS: &str = "itacih-feed";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItacihSection {
    pub base_url: Option<String>,
    pub principal: Option<String>,
    pub poll_interval_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub retry_budget_secs: Option<u64>,
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub mappings_dir: Option<PathBuf>,
}

/// The checked link.
#[derive(Debug, Clone)]
pub struct Link {
    pub base: reqwest::Url,
    /// The delivery settings (timeouts, budget, backoff), as an outbox destination.
    pub destination: Destination,
    pub poll_interval: Duration,
    pub mapping: Arc<Mapping>,
}

impl Link {
    /// `base` + a path from the mappings.
    pub fn url(&self, path: &str) -> Option<reqwest::Url> {
        let mut url = self.base.clone();
        let joined = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        Some(url)
    }

    /// A link to `base` with the shipped mappings and short timeouts (tests, the simulator's demo).
    pub fn for_tests(base: reqwest::Url, care: &CareMap) -> Self {
        let mut destination = Destination::new(DESTINATION, "SE2321000255-ITACIH", base.clone());
        destination.private_allowed = true;
        destination.initial_backoff = Duration::from_millis(50);
        destination.max_backoff = Duration::from_millis(200);
        destination.request_timeout = Duration::from_secs(2);
        Link {
            base,
            destination,
            poll_interval: Duration::from_millis(50),
            mapping: Arc::new(
                Mapping::embedded(care)
                    .unwrap_or_else(|e| panic!("the shipped itACiH mappings are invalid: {e:?}")),
            ),
        }
    }
}

/// Builds the link from `[itacih]`, when it names a base URL; errors go to `errors`.
pub fn build(
    section: &ItacihSection,
    care: &CareMap,
    allow: &[AllowRule],
    config_dir: Option<&Path>,
    errors: &mut Vec<String>,
) -> Option<Link> {
    let base_text = section.base_url.as_deref()?;
    let base = match reqwest::Url::parse(base_text) {
        Ok(u) => u,
        Err(e) => {
            errors.push(format!("itacih.base_url '{base_text}': {e}"));
            return None;
        }
    };
    let principal = section
        .principal
        .clone()
        .unwrap_or_else(|| "SE2321000255-ITACIH".into());
    let private_allowed = match crate::outbox::config::check_endpoint(&base, &principal, allow) {
        Ok(p) => p,
        Err(e) => {
            errors.push(format!("itacih.base_url: {e}"));
            false
        }
    };
    let mapping = match &section.mappings_dir {
        Some(dir) => {
            let dir = match config_dir {
                Some(base) if dir.is_relative() => base.join(dir),
                _ => dir.clone(),
            };
            Mapping::from_dir(&dir, care)
        }
        None => Mapping::embedded(care),
    };
    let mapping = match mapping {
        Ok(m) => m,
        Err(mut e) => {
            errors.append(&mut e);
            return None;
        }
    };
    let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
    let mut destination = Destination::new(DESTINATION, &principal, base.clone());
    destination.private_allowed = private_allowed;
    destination.connect_timeout = ms(section.connect_timeout_ms, destination.connect_timeout);
    destination.request_timeout = ms(section.request_timeout_ms, destination.request_timeout);
    destination.initial_backoff = ms(section.initial_backoff_ms, destination.initial_backoff);
    destination.max_backoff = ms(section.max_backoff_ms, Duration::from_secs(60));
    if let Some(secs) = section.retry_budget_secs {
        destination.retry_budget = Duration::from_secs(secs);
    }
    if destination.connect_timeout > Duration::from_secs(60)
        || destination.request_timeout > Duration::from_secs(300)
    {
        errors.push("itacih: timeouts are bounded (connect at most 60 s, request 300 s)".into());
    }
    Some(Link {
        base,
        destination,
        poll_interval: ms(section.poll_interval_ms, Duration::from_secs(2)),
        mapping: Arc::new(mapping),
    })
}
