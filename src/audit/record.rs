//! One access-log record and its FHIR AuditEvent form (IHE BALP "Basic Audit Log Patterns" shapes; the PDL
//! fields of HSLF-FS 2016:40 4 kap. 9 §: who (user, role, care unit, principal), whom (patients), what, when,
//! why (purpose of use), and the outcome).

use crate::auth::Caller;

pub use super::format::Delivery;
pub use super::view::{CLIENT_SYSTEM, REQUEST_ID_SYSTEM};

/// BALP/FHIR AuditEvent.action: C R U D E.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }

    pub fn from_code(code: u8) -> Option<Action> {
        match code {
            b'C' => Some(Action::Create),
            b'R' => Some(Action::Read),
            b'U' => Some(Action::Update),
            b'D' => Some(Action::Delete),
            b'E' => Some(Action::Execute),
            _ => None,
        }
    }
}

/// AuditEvent.outcome: `0` success, `4` minor failure (refused: 4xx), `8` serious failure (5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Denied,
    Failed,
}

impl Outcome {
    pub fn from_status(status: u16) -> Outcome {
        match status {
            0..=399 => Outcome::Success,
            400..=499 => Outcome::Denied,
            _ => Outcome::Failed,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::Denied => "4",
            Outcome::Failed => "8",
        }
    }
}

/// Everything one request did to patient data.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub action: Action,
    /// The FHIR interaction (restful-interaction code): read, vread, search-type, history-instance, create,
    /// update, delete, transaction, batch.
    pub operation: String,
    pub outcome: Outcome,
    /// The HTTP status answered.
    pub status: u16,
    /// The caller; `None` when the request carried no valid token.
    pub caller: Option<Caller>,
    pub source_address: Option<String>,
    pub request_id: String,
    /// `Patient/{id}` of every patient whose data was touched or returned.
    pub patients: Vec<String>,
    /// `Type/id/_history/version` of every resource touched or returned (or `Type/id` when refused).
    pub entities: Vec<String>,
    /// The search query string, for searches.
    pub query: Option<String>,
    /// A delivery navet made (the outbox): the record then names navet and the receiver, not a caller.
    pub delivery: Option<Delivery>,
}

impl AuditRecord {
    pub fn new(
        action: Action,
        operation: impl Into<String>,
        request_id: impl Into<String>,
    ) -> Self {
        AuditRecord {
            action,
            operation: operation.into(),
            outcome: Outcome::Success,
            status: 200,
            caller: None,
            source_address: None,
            request_id: request_id.into(),
            patients: Vec::new(),
            entities: Vec::new(),
            query: None,
            delivery: None,
        }
    }

    pub fn add_patient(&mut self, reference: String) {
        if !self.patients.contains(&reference) {
            self.patients.push(reference);
        }
    }

    /// The AuditEvent text of this record as it would be served as `AuditEvent/{id}` at `recorded_us`.
    pub fn to_audit_event(&self, id: &str, recorded_us: i64) -> String {
        let mut entry = super::format::Entry::from_record(self);
        entry.time_us = recorded_us;
        super::view::audit_event(&entry, id).to_string()
    }
}
