//! Durable outbound delivery (DESIGN.md "How a request flows"): a change and the deliveries it causes commit
//! in one transaction ([`crate::store::WriteTx::enqueue`]); workers ([`worker`]) claim due rows, send them
//! through the typed clients of [`crate::clients`] and record the outcome. Nothing is sent inside a request.
//!
//! - At least once: a row is marked delivered only after the receiver's 2xx, so a crash or a lost answer
//!   means another attempt with the same message id (`X-Navet-Message-Id`) for the receiver to recognise.
//! - Order per (destination, patient): only the oldest pending row of a pair is ever claimed.
//! - Retries back off exponentially with jitter; a destination that keeps failing is paused (circuit breaker)
//!   in its own worker, so the others go on. After the retry budget a row is a dead letter, listed and
//!   replayed by admins (`/admin/outbox`, src/http/admin.rs). Nothing is dropped.
//! - Every delivery of patient data is one access-log record (action E, operation `send`), committed with the
//!   row's "delivered".

pub mod config;
pub mod subscription;
pub mod worker;

use std::time::Duration;

use serde_json::{Value, json};

use crate::audit::{Action, AuditRecord};
use crate::error::ApiError;
use crate::store::WriteTx;
pub use crate::store::outbox::{MessageStatus, NewMessage, OutboxMessage};

/// The delay before attempt `attempt + 1` after `attempt` failed ones: `initial · 2^(attempt-1)`, capped at
/// `max`, of which a random half is jitter (so receivers coming back are not hit by every sender at once).
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let full = initial.saturating_mul(1u32 << exponent).min(max);
    let half = full / 2;
    let jitter_ms = fastrand::u64(0..=u64::try_from(half.as_millis()).unwrap_or(u64::MAX));
    half + Duration::from_millis(jitter_ms)
}

/// Identifier system of outbox message ids in access-log records.
pub const MESSAGE_ID_SYSTEM: &str = "urn:navet:outbox-message";

/// Appends the access-log record of one delivery (action E, operation `send`): navet as the sender, the
/// destination's principal as the recipient, the patient, the message id.
pub fn log_delivery(
    tx: &mut dyn WriteTx,
    message: &OutboxMessage,
    destination: &config::Destination,
) -> Result<(), ApiError> {
    let mut record = AuditRecord::new(Action::Execute, "send", message.id.clone());
    if let Some(patient) = &message.patient {
        record.add_patient(patient.clone());
    }
    let id = uuid::Uuid::new_v4().to_string();
    let (now, now_ms) = tx.now();
    let mut event: Value = serde_json::from_str(&record.to_audit_event(&id, &now))
        .map_err(|e| ApiError::internal(format!("audit event JSON: {e}")))?;
    // AuditRecord describes a caller of navet's API; a delivery has none: navet sends, a principal receives.
    event["agent"] = json!([
        {
            "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                  "code": "110153", "display": "Source Role ID"}]},
            "who": {"display": "navet"},
            "requestor": true
        },
        {
            "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                  "code": "110152", "display": "Destination Role ID"}]},
            "who": {
                "identifier": {"system": crate::domain::HSA_ID_SYSTEM, "value": destination.principal},
                "display": destination.name
            },
            "requestor": false,
            "network": {"address": destination.url.host_str().unwrap_or_default(), "type": "1"}
        }
    ]);
    if let Some(entities) = event["entity"].as_array_mut() {
        entities.push(json!({
            "what": {"identifier": {"system": MESSAGE_ID_SYSTEM, "value": message.id}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4"}
        }));
    }
    tx.append_chain(&id, now_ms, &event.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_at_most_half_jitter() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        for _ in 0..50 {
            let first = backoff(1, initial, max);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let third = backoff(3, initial, max);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
            let late = backoff(u32::MAX, initial, max);
            assert!((Duration::from_millis(500)..=max).contains(&late));
        }
        assert_eq!(backoff(0, Duration::ZERO, Duration::ZERO), Duration::ZERO);
    }
}
