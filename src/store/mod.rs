//! Storage: resource versions, the search index, unique keys, in one transactional store behind a trait.
//!
//! Every call takes the acting principal ([`Actor`]); there is no call without one. Writes run as jobs on
//! the store's writer, each job inside one database transaction shared with other jobs of the same batch
//! (group commit: one fsync for many requests, each response waits for its batch, DESIGN.md "Storage").
//! A job is a closure over [`WriteTx`], so a FHIR transaction Bundle, a conditional create or (later) a
//! write plus its audit record and outbox rows are all-or-nothing.

pub mod appender;
pub mod arg;
pub mod audit_sql;
pub mod dump;
pub mod dump_sqlite;
pub mod inbound;
pub mod inbound_sql;
pub mod outbox;
pub mod outbox_sql;
pub mod postgres;
mod read_sql;
pub mod schema;
pub mod search_sql;
pub mod sqlite;

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;

use crate::fhir::visibility::Visibility;
use crate::search::index::IndexRow;
use crate::search::query::SearchQuery;
use outbox::{
    AttemptOutcome, Claim, ClaimRequest, DestinationStats, NewMessage, OutboxFilter, OutboxMessage,
    Replay,
};

/// Who is acting: the authenticated caller's principal (and client and user), or navet itself. The store
/// knows actors, not tokens: the HTTP layer turns a caller into an actor (`crate::http::actor_of`), and the
/// store renders the actor's [`Visibility`] into its queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// HSA-id of the principal the client belongs to.
    pub principal: Arc<str>,
    /// The registered client, `None` for navet itself.
    pub client_id: Option<Arc<str>>,
    /// The acting user's HSA-id (IUA `subject_id`), when the token names one.
    pub user: Option<Arc<str>>,
    /// What this actor may see ([`crate::fhir::visibility`]).
    pub visibility: Visibility,
    /// The client is the registered population-register integration: it may set and remove a Patient's
    /// security labels and its withheld address and contact data (`fhir/protected.rs`).
    pub population_register: bool,
}

impl Actor {
    /// navet itself (start-up seeding, internal jobs).
    pub fn system() -> Self {
        Actor {
            principal: Arc::from(SYSTEM_PRINCIPAL),
            client_id: None,
            user: None,
            visibility: Visibility::Everything,
            population_register: false,
        }
    }

    /// Whether this is navet itself rather than a client.
    pub fn is_system(&self) -> bool {
        self.client_id.is_none() && &*self.principal == SYSTEM_PRINCIPAL
    }
}

/// The principal navet acts as for its own writes (demo seeding, token replay bookkeeping).
pub const SYSTEM_PRINCIPAL: &str = "navet-system";

/// What went wrong in the database, in terms every backend can state (each backend's module classifies its
/// driver's errors into it): callers decide on the kind, never on a driver's error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A unique or primary-key constraint refused the write (two writers raced for one key).
    UniqueViolation,
    /// The database could not serialise the transaction (a deadlock or serialisation failure on PostgreSQL,
    /// a lock timeout on SQLite): safe to retry.
    Contention,
    /// The database could not be reached or the connection broke.
    Unavailable,
    Other,
}

/// A database error: its kind, and the driver's message (for the log; never shown to callers).
#[derive(Debug, Clone)]
pub struct DbError {
    pub kind: DbErrorKind,
    pub message: String,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(DbError),
    #[error("the store is overloaded or shutting down")]
    Busy,
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("version conflict on {0}")]
    VersionConflict(String),
    #[error("could not open the data directory: {0}")]
    Open(String),
    /// The actor's visibility rule does not cover what was asked (the access log for a care principal).
    #[error("{0}")]
    NotPermitted(String),
    /// A write job panicked; its changes were rolled back.
    #[error("a write job panicked")]
    JobPanicked,
}

impl StoreError {
    /// A database error of `kind` with the driver's `message`.
    pub fn database(kind: DbErrorKind, message: impl Into<String>) -> Self {
        StoreError::Database(DbError {
            kind,
            message: message.into(),
        })
    }
}

/// One stored version of a resource, as read back.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    /// FHIR instant (UTC, millisecond precision).
    pub last_updated: String,
    pub owner: String,
    pub deleted: bool,
    /// The stored JSON text; `None` for a deletion version.
    pub json: Option<String>,
    /// The resource's current version withholds data from other principals (protected identity): every
    /// version of it is then served redacted to them (`fhir/protected.rs`).
    pub protected: bool,
}

/// The current version of a resource as a read by id needs it: the version, and the patients it is about (its
/// patient links, [`crate::fhir::sharing`]) for the read's access-log record.
#[derive(Debug, Clone)]
pub struct Current {
    pub version: StoredVersion,
    /// `Patient/{id}` of each patient the resource is about (a Patient: itself).
    pub patients: Vec<String>,
}

/// A version to write. `version` must be the current version + 1 (or 1 for a new resource).
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: String,
    pub last_updated_ms: i64,
    pub owner: String,
    pub deleted: bool,
    pub json: Option<String>,
    /// Search index rows for the new current version (empty for a deletion).
    pub index: Vec<IndexRow>,
    /// The new version withholds data from other principals (see [`StoredVersion::protected`]).
    pub protected: bool,
}

/// A page of search results: the matches in order, and whether more follow.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    pub matches: Vec<StoredVersion>,
    pub included: Vec<StoredVersion>,
    pub has_more: bool,
    pub total: Option<u64>,
}

/// One `AuditEvent` search match: its id, its AuditEvent JSON, and the patients it names.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub id: String,
    /// When it was recorded (µs since the epoch; unique, increasing along the log).
    pub recorded_us: i64,
    pub json: String,
    pub patients: Vec<String>,
}

/// A page of `AuditEvent` search matches, oldest first.
#[derive(Debug, Clone, Default)]
pub struct AuditPage {
    pub events: Vec<LoggedEvent>,
    pub has_more: bool,
    pub total: Option<u64>,
}

/// Which history to list: a system, type or instance history, newest first.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub resource_type: Option<String>,
    pub id: Option<String>,
    /// Only versions at or after this instant (epoch ms): `_since`.
    pub since_ms: Option<i64>,
    pub offset: usize,
    pub count: usize,
}

/// The synchronous operations a write job may use inside its transaction.
pub trait WriteTx {
    fn actor(&self) -> &Actor;
    /// The timestamp of this transaction: FHIR instant text and epoch milliseconds.
    fn now(&self) -> (String, i64);
    fn current(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredVersion>, StoreError>;
    /// Ids of current, non-deleted resources matching a search (for conditional operations); at most `limit`.
    fn search_ids(
        &mut self,
        resource_type: &str,
        query: &SearchQuery,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// [`WriteTx::search_ids`] under another actor's visibility: what `actor` would find (a subscriber's
    /// criteria evaluated inside the write that may notify it, `crate::fhir::subscription`).
    fn search_ids_as(
        &mut self,
        actor: &Actor,
        resource_type: &str,
        query: &SearchQuery,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    fn put_version(&mut self, version: NewVersion) -> Result<(), StoreError>;
    /// Replaces the search index rows of a resource's current version (the index migration,
    /// `crate::search::reindex`).
    fn set_index(
        &mut self,
        resource_type: &str,
        id: &str,
        rows: &[IndexRow],
    ) -> Result<(), StoreError>;
    /// Claims `key` in `scope` for the resource; answers the id already holding it, if another holds it.
    fn claim_unique(
        &mut self,
        scope: &str,
        key: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Points `key` at the resource even if another held it (that holder no longer qualifies).
    fn reassign_unique(
        &mut self,
        scope: &str,
        key: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<(), StoreError>;
    /// Releases every key the resource holds in `scope`.
    fn release_unique(
        &mut self,
        scope: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<(), StoreError>;
    fn set_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Waits until no other transaction holds `key` in `scope`, then holds it until this transaction ends:
    /// writers of one key (an SVPL message id) take turns, on every node. The embedded store has one writer
    /// already, so there it does nothing.
    fn serialize_on(&mut self, scope: &str, key: &str) -> Result<(), StoreError>;
    /// Records `key` in `scope` until `expires_at_unix`; `true` the first time, `false` while it is remembered.
    /// The primary key makes it atomic: of two concurrent calls exactly one gets `true`.
    fn remember_once(
        &mut self,
        scope: &str,
        key: &str,
        expires_at_unix: i64,
    ) -> Result<bool, StoreError>;
    /// Replaces the participant HSA-ids of a resource ([`crate::fhir::participants`]).
    fn set_participants(
        &mut self,
        resource_type: &str,
        id: &str,
        hsa_ids: &[String],
    ) -> Result<(), StoreError>;
    fn participants_of(&mut self, resource_type: &str, id: &str)
    -> Result<Vec<String>, StoreError>;
    /// Replaces the `Patient/{id}` references a resource is about ([`crate::fhir::sharing`]).
    fn set_patient_links(
        &mut self,
        resource_type: &str,
        id: &str,
        patients: &[String],
    ) -> Result<(), StoreError>;
    /// Replaces the timeline rows of a resource: one per patient it is about, at its clinical time
    /// (`crate::timeline`); no patients removes it from every timeline.
    fn set_timeline(
        &mut self,
        resource_type: &str,
        id: &str,
        patients: &[String],
        time_ms: i64,
    ) -> Result<(), StoreError>;
    /// Replaces the (patient, HSA-id) care relationships a resource establishes.
    fn set_care_relations(
        &mut self,
        resource_type: &str,
        id: &str,
        relations: &[(String, String)],
    ) -> Result<(), StoreError>;
    /// Replaces the (patient, kind, principal) consent decisions a Consent makes.
    fn set_consents(
        &mut self,
        resource_type: &str,
        id: &str,
        decisions: &[(String, String, String)],
    ) -> Result<(), StoreError>;
    /// Whether the transaction's actor may see the resource (owner, participant, or shared master data).
    fn visible(&mut self, resource_type: &str, id: &str) -> Result<bool, StoreError>;
    fn setting(&mut self, key: &str) -> Result<Option<String>, StoreError>;
    /// Current, non-deleted resources in (type, id) order after `after`, at most `limit` (for migrations that
    /// revisit every stored resource).
    fn current_after(
        &mut self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredVersion>, StoreError>;
    /// Appends an access-log record to the change chain, committed (or rolled back) with this transaction
    /// (`crate::audit::append`).
    fn append_audit(&mut self, record: &crate::audit::Encoded) -> Result<(), StoreError>;

    // The outbox (crate::outbox). Its writes are here, not on `Store`, so that they commit with what goes
    // with them: an enqueue with the change that causes it, a delivery with its access-log record.
    /// Adds a delivery to the outbox, committed (or rolled back) with the rest of this transaction.
    fn enqueue(&mut self, message: NewMessage) -> Result<(), StoreError>;
    /// Turns a destination's rows past their budget into dead letters and claims its due rows.
    fn outbox_claim(&mut self, request: &ClaimRequest) -> Result<Claim, StoreError>;
    /// Records an attempt's outcome; `false` when the row was not pending any more.
    fn outbox_record(&mut self, id: &str, outcome: &AttemptOutcome) -> Result<bool, StoreError>;
    /// Puts dead letters back in the queue; answers the (id, patient) of each.
    fn outbox_replay(
        &mut self,
        which: &Replay,
    ) -> Result<Vec<(String, Option<String>)>, StoreError>;
    /// Drops every worker's claim (start-up of the embedded node, after a crash).
    fn outbox_release_claims(&mut self) -> Result<usize, StoreError>;

    // Received messages (store/inbound.rs): kept with their receipt, keyed by (format, sender, message id).
    /// The message `message_id` from `sender`, if received.
    fn inbound_message(
        &mut self,
        format: &str,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<inbound::InboundMessage>, StoreError>;
    /// Every received message with this id (from any sender), oldest first.
    fn inbound_by_id(
        &mut self,
        format: &str,
        message_id: &str,
    ) -> Result<Vec<inbound::InboundMessage>, StoreError>;
    /// Every received message of a case, oldest first.
    fn inbound_by_case(
        &mut self,
        format: &str,
        case_ref: &str,
    ) -> Result<Vec<inbound::InboundMessage>, StoreError>;
    /// Keeps a received message; `false` (nothing written) when (format, sender, message id) is taken.
    fn put_inbound(&mut self, message: &inbound::InboundMessage) -> Result<bool, StoreError>;
    /// Sets the receipt of a kept message: the Kvittens a receiver answered an SVPL message navet sent on
    /// the sender's behalf (`crate::svpl::delivery`). `false` when there is no such message.
    fn set_inbound_receipt(
        &mut self,
        format: &str,
        sender: &str,
        message_id: &str,
        receipt: &str,
    ) -> Result<bool, StoreError>;
    /// Keeps one receiver's receipt row of a kept message: pending (no receipt; added once, when the message
    /// is enqueued for it) or answered (replaces the row).
    fn put_receiver_receipt(
        &mut self,
        format: &str,
        sender: &str,
        message_id: &str,
        receipt: &inbound::ReceiverReceipt,
    ) -> Result<(), StoreError>;
}

/// What a write job answers: its own result, type-erased (the store never looks inside), and whether its
/// changes stand. `commit: false` rolls back this job's changes only.
pub struct JobOutput {
    pub value: Box<dyn Any + Send>,
    pub commit: bool,
}

/// A write job: a closure over the transaction. The store knows nothing of the job's result or error types
/// (`transact` in `error.rs` carries `Result<T, ApiError>` through it), so no HTTP type crosses the trait.
pub type WriteJob = Box<dyn FnOnce(&mut dyn WriteTx) -> JobOutput + Send>;

#[async_trait]
pub trait Store: Send + Sync {
    /// The current version (or a given version) of a resource, deleted or not.
    async fn read(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<StoredVersion>, StoreError>;

    /// The current version of a resource (deleted or not) if `actor` may see it, with the patients it is
    /// about, in one query (a read by id: its answer and its access-log record).
    async fn read_current(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Current>, StoreError>;

    async fn history(
        &self,
        actor: &Actor,
        query: HistoryQuery,
    ) -> Result<(Vec<StoredVersion>, bool), StoreError>;

    async fn search(
        &self,
        actor: &Actor,
        resource_type: &str,
        query: SearchQuery,
        offset: usize,
        count: usize,
    ) -> Result<SearchPage, StoreError>;

    /// Runs a job in a transaction; a job that answers `commit: false` rolls back only its own changes. The
    /// job's output comes back once its changes are durable (or rolled back).
    async fn write_boxed(&self, actor: &Actor, job: WriteJob) -> Result<JobOutput, StoreError>;

    /// A small key/value area for navet's own state (seeding done, schema version, cursors).
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Access-log records (position, AuditEvent JSON) recorded in `[from_ms, to_ms)` after position `after`,
    /// both chains in recorded order, at most `limit`. A record's position is its recorded time in µs
    /// (unique, see `crate::audit::next_time_us`): pass the last one got to read on.
    async fn audit_page(
        &self,
        actor: &Actor,
        from_ms: i64,
        to_ms: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError>;

    /// Appends a record to the access chain (the appender: group commit, never behind the resource writer)
    /// and returns once it is durable (`crate::audit::log`).
    async fn log_access(
        &self,
        actor: &Actor,
        record: crate::audit::Encoded,
    ) -> Result<(), StoreError>;

    /// `AuditEvent` search answered from the auditor indexes: matches in recorded order.
    async fn audit_search(
        &self,
        actor: &Actor,
        query: crate::audit::query::AuditQuery,
        offset: usize,
        count: usize,
        total: bool,
    ) -> Result<AuditPage, StoreError>;

    /// Signs a checkpoint of both chains' heads now (also done at a fixed interval and at close); `false`
    /// when nothing was logged since the last one.
    async fn audit_checkpoint(&self, actor: &Actor) -> Result<bool, StoreError>;

    /// A page of a patient's timeline: what `actor` may see of it, newest first.
    async fn timeline(
        &self,
        actor: &Actor,
        query: crate::timeline::TimelineQuery,
    ) -> Result<crate::timeline::TimelinePage, StoreError>;

    /// The `Patient/{id}` references a stored resource is about (for the access log of a refused request: the
    /// record names the patient even when the caller was not allowed to see the resource).
    async fn patients_of(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// The AuditEvents naming `patient` (`Patient/{id}`), oldest first.
    async fn audit_for_patient(
        &self,
        actor: &Actor,
        patient: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// Walks the access log's hash chain.
    async fn verify_audit(
        &self,
        actor: &Actor,
    ) -> Result<crate::audit::chain::Verification, StoreError>;

    /// Outbox rows, oldest first. The HTTP layer lets only admin principals (and navet) here; the outbox is
    /// navet's own bookkeeping, not a resource with an owner, so there is no per-row visibility.
    async fn outbox_list(
        &self,
        actor: &Actor,
        filter: OutboxFilter,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// One outbox row by its message id.
    async fn outbox_get(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<Option<OutboxMessage>, StoreError>;

    /// Pending and dead counts and the oldest pending row per destination (for the metrics).
    async fn outbox_stats(&self, actor: &Actor) -> Result<Vec<DestinationStats>, StoreError>;

    /// A received message (store/inbound.rs). The caller decides who may see it (its sender, auditors).
    async fn inbound_message(
        &self,
        actor: &Actor,
        format: &str,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<inbound::InboundMessage>, StoreError>;

    /// Each receiver's receipt row of a kept message navet sent (store/inbound.rs), by receiver. The caller
    /// decides who may see them (the sender, auditors, admins).
    async fn receiver_receipts(
        &self,
        actor: &Actor,
        format: &str,
        sender: &str,
        message_id: &str,
    ) -> Result<Vec<inbound::ReceiverReceipt>, StoreError>;

    /// Start-up work that must not run on two nodes at once (the index and sharing backfills, the demo seed,
    /// the care map): on PostgreSQL a database-wide lock held until the answered guard is dropped; nothing on
    /// SQLite (one process per data directory).
    async fn startup_lock(&self) -> Result<Box<dyn Any + Send>, StoreError> {
        Ok(Box::new(()))
    }

    /// Waits until everything acknowledged is durable and stops accepting writes.
    async fn close(&self);
}

/// The access log's own reads (pages, extracts, verification) follow the same rule as `AuditEvent` reads.
pub(crate) fn reads_access_log(actor: &Actor) -> Result<(), StoreError> {
    if actor.visibility.reads_access_log() {
        Ok(())
    } else {
        Err(StoreError::NotPermitted(
            "the access log is read by auditor principals doing audit work (HOPERAT) only".into(),
        ))
    }
}
