//! The outbox's stored shape: what a write job enqueues, what workers claim and record, what admins list.
//! The SQL is in `outbox_sql.rs`; the delivery machinery that uses these is `crate::outbox`.

/// A delivery to enqueue inside a write job ([`super::WriteTx::enqueue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The stable message id every attempt carries (itACiH `externtId`, SVPL message id, notification id).
    pub id: String,
    /// The configured destination's name.
    pub destination: String,
    /// `Patient/{id}`: the ordering key (deliveries for one patient on one destination go in enqueue order).
    pub patient: Option<String>,
    pub content_type: String,
    pub payload: String,
    /// Extra request headers (never credentials: those come from the destination's configuration).
    pub headers: Vec<(String, String)>,
}

impl NewMessage {
    /// A message with a fresh random id.
    pub fn new(
        destination: impl Into<String>,
        patient: Option<String>,
        content_type: impl Into<String>,
        payload: impl Into<String>,
    ) -> Self {
        NewMessage {
            id: uuid::Uuid::new_v4().to_string(),
            destination: destination.into(),
            patient,
            content_type: content_type.into(),
            payload: payload.into(),
            headers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Waiting for its (next) attempt, or being attempted.
    Pending,
    Delivered,
    /// The retry budget ran out, or the receiver refused it for good: waits for an admin's replay.
    Dead,
    /// Not sent, on purpose: a subscription notification whose subscriber may no longer see the resource (or
    /// whose Subscription is gone). Sending it later would leak it, so it is neither retried nor replayed.
    Dropped,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Dead => "dead",
            MessageStatus::Dropped => "dropped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(MessageStatus::Pending),
            "delivered" => Some(MessageStatus::Delivered),
            "dead" => Some(MessageStatus::Dead),
            "dropped" => Some(MessageStatus::Dropped),
            _ => None,
        }
    }
}

/// One stored outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub seq: i64,
    pub id: String,
    pub destination: String,
    pub patient: Option<String>,
    pub content_type: String,
    pub payload: String,
    pub headers: Vec<(String, String)>,
    pub attempts: u32,
    pub created_ms: i64,
    pub budget_start_ms: i64,
    pub next_attempt_ms: i64,
    pub status: MessageStatus,
    pub last_error: Option<String>,
    /// When it was delivered or became a dead letter.
    pub done_ms: Option<i64>,
}

/// What a worker asks for: the due rows of one destination (oldest pending per patient only).
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub destination: String,
    pub now_ms: i64,
    pub limit: usize,
    /// The claim lapses after this long, so a crashed worker's rows become due again.
    pub lease_ms: i64,
    /// Pending rows whose budget started this long ago become dead letters first.
    pub budget_ms: i64,
}

/// What a claim gave: the rows to attempt now, and the rows that just became dead letters.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    pub due: Vec<OutboxMessage>,
    pub expired: Vec<String>,
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    Retry {
        error: String,
        next_attempt_ms: i64,
    },
    Dead {
        error: String,
    },
    /// Not sent and never to be ([`MessageStatus::Dropped`]).
    Dropped {
        reason: String,
    },
}

/// Which dead letters to put back in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    One(String),
    Destination(String),
}

/// Which rows an admin lists, oldest first, after `after_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxFilter {
    pub status: Option<MessageStatus>,
    pub destination: Option<String>,
    pub after_seq: i64,
    pub limit: usize,
}

/// Queue figures of one destination, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationStats {
    pub destination: String,
    pub pending: u64,
    pub dead: u64,
    /// `created_ms` of the oldest pending row.
    pub oldest_pending_ms: Option<i64>,
}
