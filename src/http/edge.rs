//! The edge (DESIGN.md "How a request flows"): what every request passes before a handler sees it.
//!
//! Outermost first, as `startup::app` stacks them (tower-http and governor do the work; this module holds
//! only the glue they cannot know: navet's keys, answers and access-log rules):
//! 1. [`screen_request_id`] drops an ill-formed `X-Request-ID`; tower-http's `SetRequestId` then keeps the
//!    client's or makes a UUID, `PropagateRequestId` returns it, and `Trace` puts it in every log line's span.
//! 2. `metrics::track` counts every answer by route and status (refusals below included).
//! 3. [`guard`]: the rate limits (per client id with a valid token, per source address without one) and the
//!    concurrency limit (load shedding). Refusals here are counted and logged in aggregate, one access-log
//!    record per source and minute ([`Edge::flush_refusals`]), never one each: a flood cannot grow the log or
//!    queue writes ahead of audited reads.
//! 4. Per route, inside the access-log middleware of `/fhir` (so it records the answer): the request
//!    timeout ([`timeout_outcome`] gives tower-http's bodiless 408 its OperationOutcome) and the panic catcher
//!    ([`panic_response`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use crate::audit::{Action, AuditRecord, Outcome};
use crate::auth::Caller;
use crate::config::Limits;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Actor, Store};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The access-log operation of an aggregated rate-limit record.
pub const RATE_LIMITED: &str = "rate-limited";
/// Sources (and clients) whose refusals are counted apart; beyond this many in one minute (a flood from many
/// addresses) the rest share one record without an address, so the counter's memory stays bounded.
const MAX_REFUSAL_KEYS: usize = 10_000;
/// A refused request is answered after this pause (a tarpit): a client over its limit gains nothing by asking
/// again at once, and a flood is slowed to its connections / this pause, so answering it costs navet a small,
/// bounded share of the CPU that authenticated requests need. The pause holds no concurrency slot; a
/// sleeping request costs a timer and its connection's buffers.
pub const REFUSAL_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// The edge's shared state: limits, rate limiters, the concurrency slots and the refusals not yet logged.
pub struct Edge {
    pub limits: Limits,
    clients: DefaultKeyedRateLimiter<Arc<str>>,
    sources: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    slots: Arc<Semaphore>,
    refused: Mutex<HashMap<RefusalKey, Refusals>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RefusalKey {
    source: Option<IpAddr>,
    client: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
struct Refusals {
    count: u64,
    since: jiff::Timestamp,
    caller: Option<Caller>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("limits", &self.limits)
            .finish()
    }
}

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Edge {
    pub fn new(limits: &Limits) -> Edge {
        // A client's bucket holds one second of its rate: bursts of a busy system pass, a runaway one is slowed.
        let per_client = Quota::per_second(at_least_one(limits.client_requests_per_second));
        let per_source =
            Quota::per_minute(at_least_one(limits.unauthenticated_requests_per_minute))
                .allow_burst(at_least_one(limits.unauthenticated_burst));
        // Register the series at zero, so a scraper sees them before the first refusal.
        for key in ["client", "source"] {
            metrics::counter!("navet_rate_limited_total", "key" => key).increment(0);
        }
        metrics::counter!("navet_load_shed_total").increment(0);
        Edge {
            limits: limits.clone(),
            clients: RateLimiter::keyed(per_client),
            sources: RateLimiter::keyed(per_source),
            clock: DefaultClock::default(),
            slots: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            refused: Mutex::new(HashMap::new()),
        }
    }

    fn count_refusal(&self, source: Option<IpAddr>, caller: Option<Caller>) {
        let Ok(mut refused) = self.refused.lock() else {
            return;
        };
        let mut key = RefusalKey {
            source,
            client: caller.as_ref().map(|c| c.client_id.clone()),
        };
        if refused.len() >= MAX_REFUSAL_KEYS && !refused.contains_key(&key) {
            key = RefusalKey {
                source: None,
                client: None,
            };
        }
        let entry = refused.entry(key).or_insert_with(|| Refusals {
            count: 0,
            since: jiff::Timestamp::now(),
            caller: None,
        });
        entry.count = entry.count.saturating_add(1);
        if entry.caller.is_none() {
            entry.caller = caller;
        }
    }

    /// Writes one access-log record per source (and client) refused since the last flush, with the count, in
    /// one transaction; answers how many records it wrote. Called every minute, and at shutdown.
    pub async fn flush_refusals(&self, store: &dyn Store) -> Result<usize, ApiError> {
        let taken: Vec<(RefusalKey, Refusals)> = match self.refused.lock() {
            Ok(mut refused) => refused.drain().collect(),
            Err(_) => return Ok(0),
        };
        if taken.is_empty() {
            return Ok(0);
        }
        let records: Vec<AuditRecord> = taken
            .iter()
            .map(|(key, refusals)| {
                let mut record = AuditRecord::new(
                    Action::Execute,
                    RATE_LIMITED,
                    uuid::Uuid::new_v4().to_string(),
                );
                record.caller = refusals.caller.clone();
                record.source_address = key.source.map(|ip| ip.to_string());
                record.status = StatusCode::TOO_MANY_REQUESTS.as_u16();
                record.outcome = Outcome::Denied;
                // The count and window travel in the record's query entity: AuditEvent has no count element,
                // and the query entity is where a record says what was asked for.
                record.query = Some(format!(
                    "refused={}&since={}",
                    refusals.count, refusals.since
                ));
                record
            })
            .collect();
        let written = records.len();
        let result = store
            .transact(&Actor::system(), move |tx| {
                records
                    .iter()
                    .try_for_each(|record| crate::audit::append(tx, record))
            })
            .await;
        if let Err(e) = result {
            // Put the counts back: they go out with the next flush.
            if let Ok(mut refused) = self.refused.lock() {
                for (key, refusals) in taken {
                    let entry = refused.entry(key).or_insert(Refusals {
                        count: 0,
                        ..refusals.clone()
                    });
                    entry.count = entry.count.saturating_add(refusals.count);
                }
            }
            return Err(e);
        }
        // The limiters forget keys whose buckets are full again, so their memory follows the active sources.
        self.clients.retain_recent();
        self.sources.retain_recent();
        self.clients.shrink_to_fit();
        self.sources.shrink_to_fit();
        Ok(written)
    }

    fn retry_after(&self, not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> u64 {
        let wait = not_until.wait_time_from(self.clock.now());
        // Whole seconds, rounded up, at least 1 (RFC 9110 §10.2.3 delay-seconds).
        wait.as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0))
            .max(1)
    }
}

/// Keeps the aggregated rate-limit records flowing: one flush a minute.
pub fn flush_refusals_every_minute(state: &AppState) {
    let (edge, store) = (state.edge.clone(), state.store.clone());
    tokio::spawn(async move {
        let mut minute = tokio::time::interval(std::time::Duration::from_secs(60));
        minute.tick().await;
        loop {
            minute.tick().await;
            if let Err(e) = edge.flush_refusals(store.as_ref()).await {
                tracing::warn!(error = %e, "writing the rate-limit records failed; retrying next minute");
            }
        }
    });
}

/// The address a source is limited by: IPv4 as it is, IPv6 by its /64 (one subscriber's network: an attacker
/// holding a /64 must not get 2^64 separate buckets, nor grow the limiter's memory by them).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Probes are answered whatever the limits: a load balancer must see an overloaded node as alive.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// The rate and concurrency limits. See the module documentation.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if exempt(request.uri().path()) {
        return next.run(request).await;
    }
    let edge = &state.edge;
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| source_key(a.ip()));
    // Only a verified token names a client: a forged one must not spend (or escape) another client's quota.
    // Verified tokens are cached by the auth service, so the handler's own check costs nothing more.
    let caller = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| state.auth.authenticate(Some(h)).ok());
    let verdict = match (&caller, source) {
        (Some(c), _) => edge
            .clients
            .check_key(&c.client_id)
            .map_err(|n| ("client", n)),
        (None, Some(ip)) => edge.sources.check_key(&ip).map_err(|n| ("source", n)),
        // No connect info (an in-process caller): nothing to key on.
        (None, None) => Ok(()),
    };
    if let Err((key, not_until)) = verdict {
        metrics::counter!("navet_rate_limited_total", "key" => key).increment(1);
        let retry_after_secs = edge.retry_after(&not_until);
        edge.count_refusal(source, caller);
        tokio::time::sleep(REFUSAL_DELAY).await;
        return ApiError::TooManyRequests { retry_after_secs }.into_response();
    }
    let Ok(slot) = edge.slots.clone().try_acquire_owned() else {
        metrics::counter!("navet_load_shed_total").increment(1);
        return ApiError::Overloaded {
            retry_after_secs: 1,
        }
        .into_response();
    };
    // The handler's extractor takes the verified caller from here rather than checking the token again; a
    // request with more than one Authorization header is left to the extractor, which refuses it (400).
    if let Some(caller) = caller
        && request.headers().get_all(AUTHORIZATION).iter().count() == 1
    {
        request
            .extensions_mut()
            .insert(crate::http::Verified(caller));
    }
    let response = next.run(request).await;
    drop(slot);
    response
}

/// `X-Request-ID` as a client may set it: 1 to 64 characters of `A-Z a-z 0-9 . _ : -` (a UUID, a trace id).
/// Anything else is dropped here and replaced by a fresh UUID, so log lines and AuditEvents only ever carry
/// a short, harmless id.
pub fn well_formed_request_id(value: &[u8]) -> bool {
    (1..=64).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

pub async fn screen_request_id(mut request: Request) -> Request {
    let headers = request.headers_mut();
    let ok = {
        let mut values = headers.get_all(&REQUEST_ID).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => well_formed_request_id(v.as_bytes()),
            (None, _) => true,
            // Two ids: which one would the client mean? Neither.
            (Some(_), Some(_)) => false,
        }
    };
    if !ok {
        headers.remove(&REQUEST_ID);
    }
    request
}

/// The request id tower-http's `SetRequestId` gave the request.
pub fn request_id_of<B>(request: &axum::http::Request<B>) -> Option<&str> {
    request
        .extensions()
        .get::<tower_http::request_id::RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
}

/// The tracing span of a request: its id, method and route pattern. Never the path or query (they may hold
/// identity numbers), never headers or bodies.
pub fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("(unmatched)");
    tracing::info_span!(
        "request",
        request_id = %request_id_of(request).unwrap_or("-"),
        method = %request.method(),
        route = %route,
    )
}

/// A handler panicked: the client gets a generic 500 OperationOutcome (never the panic text), and the
/// access-log middleware outside records it like any other answer.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    ApiError::internal("a request handler panicked").into_response()
}

/// tower-http's timeout answers 408 without a body; navet answers with an OperationOutcome. No handler
/// answers 408 itself, so a bodiless 408 is the timeout's.
pub async fn timeout_outcome(State(state): State<AppState>, response: Response) -> Response {
    if response.status() == StatusCode::REQUEST_TIMEOUT
        && !response.headers().contains_key(CONTENT_TYPE)
    {
        return ApiError::Timeout(state.edge.limits.request_timeout.as_secs()).into_response();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_ids_are_short_and_of_safe_characters() {
        for ok in [
            "a",
            "550e8400-e29b-41d4-a716-446655440000",
            "trace.1:span_2",
            &"x".repeat(64),
        ] {
            assert!(well_formed_request_id(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "with space",
            "semi;colon",
            "19121212-1212\n",
            "åäö",
            "<script>",
        ] {
            assert!(!well_formed_request_id(bad.as_bytes()), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_are_judged_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let ok = well_formed_request_id(&bytes);
            prop_assert_eq!(ok, !bytes.is_empty() && bytes.len() <= 64
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b)));
        }
    }

    #[test]
    fn refusals_of_one_source_are_counted_together_and_bounded_in_keys() {
        let edge = Edge::new(&Limits::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..5 {
            edge.count_refusal(Some(ip), None);
        }
        for i in 0..(MAX_REFUSAL_KEYS as u32 + 10) {
            edge.count_refusal(Some(IpAddr::from(i.to_be_bytes())), None);
        }
        let refused = edge.refused.lock().unwrap();
        assert_eq!(
            refused.len(),
            MAX_REFUSAL_KEYS + 1,
            "the overflow shares one key"
        );
        let key = RefusalKey {
            source: Some(ip),
            client: None,
        };
        assert_eq!(refused[&key].count, 5);
        let overflow = RefusalKey {
            source: None,
            client: None,
        };
        // 0.0.0.0 … : the first MAX_REFUSAL_KEYS - 1 new addresses got keys, the other 11 share the overflow.
        assert_eq!(refused[&overflow].count, 11);
    }

    #[test]
    fn ipv6_sources_are_limited_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let key = |s: &str| source_key(s.parse().unwrap()).to_string();
        assert_eq!(key("127.0.0.1"), "127.0.0.1");
        assert_eq!(key("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let limits = Limits {
            unauthenticated_requests_per_minute: 1,
            unauthenticated_burst: 1,
            ..Limits::default()
        };
        let edge = Edge::new(&limits);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(edge.sources.check_key(&ip).is_ok());
        let not_until = edge.sources.check_key(&ip).unwrap_err();
        let secs = edge.retry_after(&not_until);
        assert!((59..=60).contains(&secs), "{secs}");
    }
}
