//! Messages received in another format than FHIR (SVPL today), kept as they arrived with the receipt navet
//! answered, keyed by (format, sender, message id): the key makes a repeat find the first receipt, durably and
//! race-free (the writer runs one job at a time, and the primary key refuses a second row).
//!
//! The SVPL messages navet sends on a principal's behalf (`crate::svpl::outbound`) are kept here too, with
//! that principal as their sender and the receiver's Kvittens as their receipt (empty until it answers): so
//! the sender fetches them like its own, and a receiver's follow-up can reference them. A message sent to
//! several receivers has one [`ReceiverReceipt`] per receiver; the message's own `receipt` is the last one
//! answered (what a single-receiver message always had).

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// `svpl`.
    pub format: String,
    /// HSA-id of the sending principal.
    pub sender: String,
    /// The sender's message id.
    pub message_id: String,
    /// The message type (`SipBegaran`, …).
    pub kind: String,
    pub received_ms: i64,
    /// The message exactly as it arrived.
    pub body: Vec<u8>,
    /// The receipt navet answered, exactly as sent.
    pub receipt: String,
    /// `Patient/{id}`.
    pub patient: Option<String>,
    /// The case the message opened or follows (`CarePlan/{id}`, `Encounter/{id}`).
    pub case_ref: Option<String>,
    /// HSA-ids the message names (sender, recipients, …).
    pub parties: Vec<String>,
    /// `Type/id` of every resource the message created.
    pub created: Vec<String>,
    /// `Type/id` of every resource the message changed.
    pub updated: Vec<String>,
}

/// One receiver's receipt for a message navet sent (keyed by the kept message and the receiver's HSA-id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReceipt {
    /// HSA-id of the receiving principal.
    pub receiver: String,
    /// Its Kvittens exactly as answered; `None` until it answers.
    pub receipt: Option<String>,
    /// When the answer was recorded.
    pub answered_ms: Option<i64>,
}
