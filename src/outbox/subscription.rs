//! The outbox side of FHIR Subscriptions (`crate::fhir::subscription` enqueues): a destination
//! `subscription:<id>` has no configuration of its own; its endpoint and headers are the stored
//! Subscription's, read again before every round, and each message's body is made at send time, as the
//! subscriber may see the resource then. A notification the subscriber may no longer see (consent withdrawn,
//! participation removed) is not sent and not retried: its row becomes `dropped`.
//!
//! The worker (worker.rs) is the one every destination has: same backoff, breaker, budget, dead letters and
//! access-log record per delivery. Persistent failure (breaker open, a dead letter) sets the Subscription's
//! `status` to `error` with the `error` text; the next success sets it back to `active` (new versions
//! written by navet itself, owner kept).

use std::sync::Arc;

use serde_json::{Value, json};

use super::config::{AllowRule, Destination, check_endpoint};
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::fhir::json::IncomingResource;
use crate::fhir::subscription::{Channel, DESTINATION_PREFIX, subscriber};
use crate::store::outbox::{AttemptOutcome, OutboxMessage};
use crate::store::{Actor, Store};

/// What a round needs of the Subscription, read at its start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Live {
    owner: String,
    channel: Channel,
    status: String,
    /// The endpoint fails the SSRF rule now (the configuration changed): nothing is sent.
    refused: Option<String>,
    private_allowed: bool,
}

/// One subscription's destination, resolved from the stored Subscription.
pub struct Target {
    pub id: String,
    fhir: Arc<FhirContext>,
    allow: Vec<AllowRule>,
    live: Option<Live>,
}

/// Stands in for the URL of a Subscription that is gone: nothing is sent there, every row is dropped.
const NO_ENDPOINT: &str = "http://invalid.invalid/";

impl Target {
    /// The target of destination `subscription:<id>`, `None` for any other destination name.
    pub fn for_destination(
        destination: &str,
        fhir: Arc<FhirContext>,
        allow: Vec<AllowRule>,
    ) -> Option<Self> {
        let id = destination.strip_prefix(DESTINATION_PREFIX)?;
        Some(Target {
            id: id.to_owned(),
            fhir,
            allow,
            live: None,
        })
    }

    /// Reads the Subscription again and points `destination` at its endpoint. `true` when the endpoint (or
    /// whether it may be private) changed, so the worker builds a new client.
    pub async fn refresh(
        &mut self,
        store: &dyn Store,
        destination: &mut Destination,
    ) -> Result<bool, ApiError> {
        let stored = store
            .read(&Actor::system(), "Subscription", &self.id, None)
            .await?;
        let live = stored.and_then(|v| {
            let value: Value = serde_json::from_str(v.json.as_deref()?).ok()?;
            let status = value.get("status").and_then(Value::as_str)?.to_owned();
            if status == "off" {
                return None;
            }
            let channel = Channel::of(&value).ok()?;
            let (refused, private_allowed) =
                match check_endpoint(&channel.endpoint, &v.owner, &self.allow) {
                    Ok(allowed) => (None, allowed),
                    Err(e) => (Some(e), false),
                };
            Some(Live {
                owner: v.owner,
                channel,
                status,
                refused,
                private_allowed,
            })
        });
        let url = match &live {
            Some(l) => l.channel.endpoint.clone(),
            None => reqwest::Url::parse(NO_ENDPOINT).map_err(ApiError::internal)?,
        };
        let private_allowed = live.as_ref().is_some_and(|l| l.private_allowed);
        let changed = destination.url != url || destination.private_allowed != private_allowed;
        destination.url = url;
        destination.private_allowed = private_allowed;
        if let Some(l) = &live {
            destination.principal = l.owner.clone();
        }
        self.live = live;
        Ok(changed)
    }

    /// The message as it is to be sent now, or the outcome that replaces sending it.
    pub async fn render(
        &self,
        store: &dyn Store,
        message: &OutboxMessage,
    ) -> Result<OutboxMessage, AttemptOutcome> {
        let Some(live) = &self.live else {
            return Err(AttemptOutcome::Dropped {
                reason: "not sent: the Subscription was deleted or switched off".into(),
            });
        };
        if let Some(error) = &live.refused {
            return Err(AttemptOutcome::Dead {
                error: error.clone(),
            });
        }
        let reference: Value = serde_json::from_str(&message.payload).unwrap_or_default();
        let target = reference["resource"]
            .as_str()
            .and_then(|r| r.split_once('/'))
            .zip(reference["version"].as_i64());
        let Some(((ty, id), version)) = target else {
            return Err(AttemptOutcome::Dead {
                error: "the notification names no resource version".into(),
            });
        };
        let actor = subscriber(&live.owner);
        // The visibility recheck: the subscriber must see the resource now, not only when it changed.
        let version = match store.read(&actor, ty, id, Some(version)).await {
            Ok(Some(v)) if v.json.is_some() => v,
            Ok(_) => {
                return Err(AttemptOutcome::Dropped {
                    reason: "dropped-not-visible: the subscriber may no longer see the resource"
                        .into(),
                });
            }
            Err(e) => {
                return Err(AttemptOutcome::Retry {
                    error: format!("the resource could not be read: {e}"),
                    next_attempt_ms: jiff::Timestamp::now().as_millisecond().saturating_add(1000),
                });
            }
        };
        // R4 rest-hook: no payload is an empty POST (the subscriber then reads what changed); a payload is the
        // resource, as the subscriber may see it (protected identity withheld).
        let body = if live.channel.full {
            crate::fhir::protected::outgoing(&actor, &version)
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(OutboxMessage {
            payload: body,
            headers: live.channel.headers.clone(),
            ..message.clone()
        })
    }

    /// After a round: `error` (with its text) on persistent failure, `active` again after a success.
    pub async fn record_health(
        &mut self,
        store: &dyn Store,
        failure: Option<String>,
        success: bool,
    ) -> Result<(), ApiError> {
        let Some(live) = &self.live else {
            return Ok(());
        };
        // Only a change of status writes a version: a Subscription in error is not rewritten per failure.
        let (status, error) = match (failure, live.status.as_str()) {
            (Some(e), s) if s != "error" => ("error", Some(e)),
            (None, "error") if success => ("active", None),
            _ => return Ok(()),
        };
        let (id, fhir) = (self.id.clone(), self.fhir.clone());
        let written = store
            .transact(&Actor::system(), move |tx| {
                let Some(current) = tx.current("Subscription", &id)? else {
                    return Ok(false);
                };
                let Some(mut value) = current
                    .json
                    .as_deref()
                    .and_then(|j| serde_json::from_str::<Value>(j).ok())
                else {
                    return Ok(false);
                };
                if value["status"] == json!(status) {
                    return Ok(false);
                }
                value["status"] = json!(status);
                match &error {
                    Some(e) => value["error"] = json!(e),
                    None => {
                        if let Some(m) = value.as_object_mut() {
                            m.remove("error");
                        }
                    }
                }
                let bytes = serde_json::to_vec(&value).map_err(ApiError::internal)?;
                let prepared = crate::fhir::ops::prepare_parsed(
                    &fhir,
                    IncomingResource::parse(&bytes)?,
                    Some("Subscription"),
                )?;
                crate::fhir::ops::update(&fhir, tx, &prepared, &id, Some(current.version))?;
                Ok(true)
            })
            .await?;
        if written {
            tracing::info!(subscription = %self.id, status, "subscription status changed");
            if let Some(l) = &mut self.live {
                l.status = status.to_owned();
            }
        }
        Ok(())
    }
}
