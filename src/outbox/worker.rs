//! The outbox workers: one task per destination (its own circuit breaker, its own pace, so a destination that
//! is down delays nobody else) and one that publishes the queue figures as metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::{Destination, OutboxSettings};
use super::subscription::Target;
use crate::clients::{HttpPostClient, SendError};
use crate::fhir::FhirContext;
use crate::store::outbox::{AttemptOutcome, ClaimRequest, OutboxMessage};
use crate::store::{Actor, Store};

/// Running workers; [`Workers::stop`] ends them (tests; `navet serve` just exits).
pub struct Workers {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Signals every worker and waits for it: a delivery in flight finishes and is recorded first.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// How often the queue figures are published.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// Starts a worker per configured destination. Claims left by an earlier process (a crash, `kill -9`) are
/// released first: the embedded store has one node, so nobody else can be holding them.
pub async fn start(store: Arc<dyn Store>, settings: &OutboxSettings) -> Result<Workers, String> {
    start_with(store, settings, None).await
}

/// [`start`], with the FHIR context SVPL destinations need (`svpl = true`): their receivers' Kvittens are
/// read, kept and, when `avvisad`, told to the sender as a Task (`crate::svpl::delivery`). Without it (or
/// without outbound SVPL configured) an SVPL destination is a plain POST destination.
pub async fn start_with(
    store: Arc<dyn Store>,
    settings: &OutboxSettings,
    fhir: Option<Arc<FhirContext>>,
) -> Result<Workers, String> {
    let released = store
        .transact(&Actor::system(), |tx| Ok(tx.outbox_release_claims()?))
        .await
        .map_err(|e| format!("the outbox could not be opened: {e}"))?;
    if released > 0 {
        tracing::info!(
            released,
            "outbox rows claimed by the previous run are due again"
        );
    }
    let (stop, stop_rx) = watch::channel(false);
    let mut handles = Vec::new();
    for destination in &settings.destinations {
        let client = HttpPostClient::new(destination)?;
        let worker = DestinationWorker {
            store: store.clone(),
            destination: destination.clone(),
            client,
            poll: settings.poll_interval,
            breaker: Breaker::new(destination.breaker_threshold, destination.breaker_pause),
            subscription: None,
            svpl: fhir
                .clone()
                .filter(|f| destination.svpl && f.svpl_outbound.is_some()),
        };
        handles.push(tokio::spawn(worker.run(stop_rx.clone())));
    }
    let names: Vec<String> = settings
        .destinations
        .iter()
        .map(|d| d.name.clone())
        .collect();
    handles.push(tokio::spawn(publish_metrics(store, names, stop_rx)));
    Ok(Workers { stop, handles })
}

/// Starts the supervisor of subscription deliveries: every poll it looks for `subscription:<id>` destinations
/// with pending rows and starts a worker for each one not running yet, with `template`'s timeouts, backoff,
/// breaker and budget (the endpoint is the Subscription's). Call after [`start`], which releases old claims.
pub async fn start_subscriptions(
    store: Arc<dyn Store>,
    fhir: Arc<FhirContext>,
    settings: &OutboxSettings,
    template: Destination,
) -> Workers {
    let (stop, stop_rx) = watch::channel(false);
    let supervisor = supervise(
        store,
        fhir,
        settings.allow.clone(),
        template,
        settings.poll_interval,
        stop_rx,
    );
    Workers {
        stop,
        handles: vec![tokio::spawn(supervisor)],
    }
}

async fn supervise(
    store: Arc<dyn Store>,
    fhir: Arc<FhirContext>,
    allow: Vec<super::config::AllowRule>,
    template: Destination,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut running: std::collections::HashMap<String, JoinHandle<()>> = Default::default();
    loop {
        if let Ok(stats) = store.outbox_stats(&Actor::system()).await {
            for s in stats.iter().filter(|s| s.pending > 0) {
                if running.contains_key(&s.destination) {
                    continue;
                }
                let Some(target) =
                    Target::for_destination(&s.destination, fhir.clone(), allow.clone())
                else {
                    continue;
                };
                let mut destination = template.clone();
                destination.name = s.destination.clone();
                // Until the first round reads the Subscription, it points nowhere and is never used.
                destination.private_allowed = false;
                let client = match HttpPostClient::new(&destination) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(destination = %s.destination, error = %e, "no client for the subscription");
                        continue;
                    }
                };
                let worker = DestinationWorker {
                    store: store.clone(),
                    breaker: Breaker::new(destination.breaker_threshold, destination.breaker_pause),
                    destination,
                    client,
                    poll,
                    subscription: Some(target),
                    svpl: None,
                };
                running.insert(
                    s.destination.clone(),
                    tokio::spawn(worker.run(stop.clone())),
                );
            }
        }
        if sleep_or_stop(poll, &mut stop).await {
            for (_, handle) in running {
                let _ = handle.await;
            }
            return;
        }
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Sleeps `d`; `true` if asked to stop meanwhile.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Pauses a destination after `threshold` failed attempts in a row; after the pause one attempt probes it
/// (half-open): a success closes the breaker, a failure pauses it again.
#[derive(Debug)]
struct Breaker {
    threshold: u32,
    pause: Duration,
    failures: u32,
    open_until: Option<Instant>,
}

enum BreakerState {
    Closed,
    Open(Duration),
    HalfOpen,
}

impl Breaker {
    fn new(threshold: u32, pause: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            pause,
            failures: 0,
            open_until: None,
        }
    }

    fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if until > now => BreakerState::Open(until - now),
            Some(_) => BreakerState::HalfOpen,
        }
    }

    fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
    }

    fn failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.threshold {
            self.open_until = Some(now + self.pause);
        }
    }
}

struct DestinationWorker {
    store: Arc<dyn Store>,
    destination: Destination,
    client: HttpPostClient,
    poll: Duration,
    breaker: Breaker,
    /// For a `subscription:<id>` destination: where its endpoint and bodies come from (outbox/subscription.rs).
    subscription: Option<Target>,
    /// For an SVPL destination: the context its receipts are recorded with (`crate::svpl::delivery`).
    svpl: Option<Arc<FhirContext>>,
}

impl DestinationWorker {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let name = self.destination.name.clone();
        loop {
            if *stop.borrow() {
                return;
            }
            let limit = match self.breaker.state(Instant::now()) {
                BreakerState::Open(left) => {
                    metrics::gauge!("navet_outbox_breaker_open", "destination" => name.clone())
                        .set(1.0);
                    if sleep_or_stop(left, &mut stop).await {
                        return;
                    }
                    continue;
                }
                BreakerState::HalfOpen => 1,
                BreakerState::Closed => self.destination.concurrency,
            };
            metrics::gauge!("navet_outbox_breaker_open", "destination" => name.clone()).set(0.0);
            let worked = match self.round(limit).await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(destination = %name, error = %e, "outbox round failed; retrying");
                    false
                }
            };
            // A busy queue is drained at once; an empty one is looked at again after the poll interval.
            if !worked && sleep_or_stop(self.poll, &mut stop).await {
                return;
            }
        }
    }

    /// Claims up to `limit` due rows, attempts them concurrently (different patients), records the outcomes
    /// with the deliveries' access-log records in one transaction. Answers how many rows were attempted.
    async fn round(&mut self, limit: usize) -> Result<usize, crate::error::ApiError> {
        if let Some(target) = &mut self.subscription
            && target
                .refresh(self.store.as_ref(), &mut self.destination)
                .await?
        {
            self.client =
                HttpPostClient::new(&self.destination).map_err(crate::error::ApiError::internal)?;
        }
        let d = &self.destination;
        let request = ClaimRequest {
            destination: d.name.clone(),
            now_ms: now_ms(),
            limit,
            // A claim outlives an attempt (connect + request timeout) with room to record it.
            lease_ms: duration_ms(d.connect_timeout + d.request_timeout) + 30_000,
            budget_ms: duration_ms(d.retry_budget),
        };
        let claim = self
            .store
            .transact(&Actor::system(), move |tx| Ok(tx.outbox_claim(&request)?))
            .await?;
        let labels = [("destination", d.name.clone())];
        if !claim.expired.is_empty() {
            metrics::counter!("navet_outbox_dead_letters_total", &labels)
                .increment(claim.expired.len() as u64);
            tracing::warn!(destination = %d.name, count = claim.expired.len(), "outbox rows exhausted their retry budget and are dead letters");
        }
        if claim.due.is_empty() {
            if let Some(target) = &mut self.subscription
                && !claim.expired.is_empty()
            {
                let failure = Some("retry budget exhausted: notifications are dead letters".into());
                target
                    .record_health(self.store.as_ref(), failure, false)
                    .await?;
            }
            return Ok(0);
        }
        // A subscription's message is made now (its body as the subscriber may see it now), or replaced by
        // the outcome that stands for it (dropped: no longer visible); other destinations send rows as stored.
        let mut planned = Vec::with_capacity(claim.due.len());
        for m in &claim.due {
            planned.push(match &self.subscription {
                Some(target) => target.render(self.store.as_ref(), m).await,
                None => Ok(m.clone()),
            });
        }
        let client = &self.client;
        let svpl = self
            .svpl
            .as_ref()
            .and_then(|f| Some((f.clone(), f.svpl_outbound.as_ref()?.mapping.clone())));
        let svpl_ref = svpl.as_ref();
        let attempts = join_all(planned.into_iter().map(|plan| async move {
            let sent = plan?;
            let start = Instant::now();
            // An SVPL receiver answers a Kvittens, read and judged; others are judged by the status alone.
            let result = match svpl_ref {
                Some((_, map)) => client
                    .post(&sent)
                    .await
                    .and_then(|reply| crate::svpl::delivery::judge(map, &sent, &reply))
                    .map(Some),
                None => client.send(&sent).await.map(|()| None),
            };
            Ok::<_, AttemptOutcome>((result, start.elapsed()))
        }))
        .await;
        let now = now_ms();
        let budget_ms = duration_ms(d.retry_budget);
        let mut outcomes: Vec<(OutboxMessage, AttemptOutcome)> = Vec::with_capacity(attempts.len());
        let mut receipts: std::collections::HashMap<String, crate::svpl::delivery::Receipt> =
            Default::default();
        let mut last_error = None;
        for (message, attempt) in claim.due.into_iter().zip(attempts) {
            let (result, took) = match attempt {
                Ok(sent) => sent,
                Err(outcome) => {
                    let result = match &outcome {
                        AttemptOutcome::Dropped { .. } => "dropped_not_visible",
                        AttemptOutcome::Dead { .. } => "rejected",
                        _ => "retry",
                    };
                    metrics::counter!("navet_outbox_attempts_total", "destination" => d.name.clone(), "result" => result).increment(1);
                    outcomes.push((message, outcome));
                    continue;
                }
            };
            metrics::histogram!("navet_outbox_delivery_seconds", &labels)
                .record(took.as_secs_f64());
            if let Err(e) = &result {
                last_error = Some(e.to_string());
            }
            let outcome = match result {
                Ok(receipt) => {
                    if let Some(r) = receipt {
                        receipts.insert(message.id.clone(), r);
                    }
                    self.breaker.success();
                    metrics::counter!("navet_outbox_attempts_total", "destination" => d.name.clone(), "result" => "delivered").increment(1);
                    AttemptOutcome::Delivered
                }
                Err(SendError::Retryable(error)) => {
                    self.breaker.failure(Instant::now());
                    metrics::counter!("navet_outbox_attempts_total", "destination" => d.name.clone(), "result" => "retry").increment(1);
                    let delay = super::backoff(
                        message.attempts.saturating_add(1),
                        d.initial_backoff,
                        d.max_backoff,
                    );
                    let next = now.saturating_add(duration_ms(delay));
                    if next >= message.budget_start_ms.saturating_add(budget_ms) {
                        AttemptOutcome::Dead {
                            error: format!("retry budget exhausted; last error: {error}"),
                        }
                    } else {
                        AttemptOutcome::Retry {
                            error,
                            next_attempt_ms: next,
                        }
                    }
                }
                // The receiver is up and answering: not a reason to pause it for the other messages.
                Err(SendError::Rejected(error)) => {
                    metrics::counter!("navet_outbox_attempts_total", "destination" => d.name.clone(), "result" => "rejected").increment(1);
                    AttemptOutcome::Dead { error }
                }
            };
            outcomes.push((message, outcome));
        }
        let attempted = outcomes.len();
        // Persistent failure (the breaker is open, or a message became a dead letter) and success, for a
        // subscription's status.
        let dead = outcomes.iter().find_map(|(_, o)| match o {
            AttemptOutcome::Dead { error } => Some(error.clone()),
            _ => None,
        });
        let delivered = outcomes
            .iter()
            .any(|(_, o)| *o == AttemptOutcome::Delivered);
        let breaker_open = matches!(self.breaker.state(Instant::now()), BreakerState::Open(_));
        let destination = d.clone();
        let recorded = self
            .store
            .transact(&Actor::system(), move |tx| {
                let mut counts = (0u64, 0u64);
                for (message, outcome) in &outcomes {
                    if !tx.outbox_record(&message.id, outcome)? {
                        continue;
                    }
                    match outcome {
                        AttemptOutcome::Delivered => {
                            counts.0 += 1;
                            if message.patient.is_some() {
                                super::log_delivery(tx, message, &destination)?;
                            }
                            if let (Some((fhir, map)), Some(receipt)) =
                                (&svpl, receipts.get(&message.id))
                            {
                                crate::svpl::delivery::record(
                                    fhir,
                                    map,
                                    tx,
                                    message,
                                    &destination.principal,
                                    receipt,
                                )?;
                            }
                        }
                        AttemptOutcome::Dead { .. } => counts.1 += 1,
                        AttemptOutcome::Retry { .. } | AttemptOutcome::Dropped { .. } => {}
                    }
                }
                Ok(counts)
            })
            .await?;
        metrics::counter!("navet_outbox_delivered_total", &labels).increment(recorded.0);
        metrics::counter!("navet_outbox_dead_letters_total", &labels).increment(recorded.1);
        if let Some(target) = &mut self.subscription {
            let failure = dead.or_else(|| {
                breaker_open.then(|| {
                    format!(
                        "delivery keeps failing; last error: {}",
                        last_error.unwrap_or_default()
                    )
                })
            });
            target
                .record_health(self.store.as_ref(), failure, delivered)
                .await?;
        }
        Ok(attempted)
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Queue depth, oldest pending age and dead letters per destination, every [`METRICS_EVERY`].
async fn publish_metrics(
    store: Arc<dyn Store>,
    configured: Vec<String>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Ok(stats) = store.outbox_stats(&Actor::system()).await {
            let now = now_ms();
            let mut names = configured.clone();
            for s in &stats {
                let labels = [("destination", s.destination.clone())];
                metrics::gauge!("navet_outbox_queue_depth", &labels).set(s.pending as f64);
                metrics::gauge!("navet_outbox_dead_letters", &labels).set(s.dead as f64);
                let age = s
                    .oldest_pending_ms
                    .map(|t| now.saturating_sub(t).max(0))
                    .unwrap_or(0);
                metrics::gauge!("navet_outbox_oldest_pending_seconds", &labels)
                    .set(age as f64 / 1000.0);
                names.retain(|n| n != &s.destination);
            }
            // Configured destinations with nothing queued show 0, not a stale figure.
            for n in names {
                let labels = [("destination", n)];
                metrics::gauge!("navet_outbox_queue_depth", &labels).set(0.0);
                metrics::gauge!("navet_outbox_dead_letters", &labels).set(0.0);
                metrics::gauge!("navet_outbox_oldest_pending_seconds", &labels).set(0.0);
            }
        }
        if sleep_or_stop(METRICS_EVERY, &mut stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_the_threshold_and_a_probe_closes_it() {
        let mut b = Breaker::new(2, Duration::from_secs(10));
        let t = Instant::now();
        assert!(matches!(b.state(t), BreakerState::Closed));
        b.failure(t);
        assert!(matches!(b.state(t), BreakerState::Closed));
        b.failure(t);
        assert!(matches!(b.state(t), BreakerState::Open(_)));
        let later = t + Duration::from_secs(11);
        assert!(matches!(b.state(later), BreakerState::HalfOpen));
        // A failed probe pauses it again; a successful one closes it.
        b.failure(later);
        assert!(matches!(b.state(later), BreakerState::Open(_)));
        b.success();
        assert!(matches!(b.state(later), BreakerState::Closed));
    }
}
