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
pub const MESSAGE_ID_SYSTEM: &str = crate::audit::view::MESSAGE_ID_SYSTEM;

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
    // AuditRecord describes a caller of navet's API; a delivery has none: navet sends, a principal receives.
    record.delivery = Some(crate::audit::Delivery {
        principal: destination.principal.to_string(),
        name: destination.name.to_string(),
        address: destination.url.host_str().unwrap_or_default().to_owned(),
        message_id: message.id.clone(),
    });
    crate::audit::append(tx, &record)
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
