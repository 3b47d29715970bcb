//! The SQLite schema. PostgreSQL will get the same tables (DESIGN.md "Storage").

/// Applied at every open; every statement is idempotent.
pub const SQLITE_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS resource_versions (
    seq          INTEGER PRIMARY KEY,          -- global write order, for system and type history
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated TEXT    NOT NULL,             -- FHIR instant as served
    lu_ms        INTEGER NOT NULL,             -- the same instant, for ordering and _since/_lastUpdated
    owner        TEXT    NOT NULL,             -- HSA-id of the principal that wrote this version
    deleted      INTEGER NOT NULL DEFAULT 0,
    json         TEXT,                          -- the stored resource; NULL for a deletion version
    UNIQUE (type, id, version)
);
CREATE INDEX IF NOT EXISTS resource_versions_type_seq ON resource_versions (type, seq);

CREATE TABLE IF NOT EXISTS resources_current (
    type    TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    owner   TEXT    NOT NULL,
    lu_ms   INTEGER NOT NULL,
    protected INTEGER NOT NULL DEFAULT 0,   -- the current version withholds data (protected identity)
    PRIMARY KEY (type, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS resources_current_lu ON resources_current (type, lu_ms, id);

-- One row per indexed value of the current version of a resource (search/index.rs says the encoding).
CREATE TABLE IF NOT EXISTS search_index (
    type   TEXT NOT NULL,
    id     TEXT NOT NULL,
    param  TEXT NOT NULL,
    system TEXT,
    value  TEXT NOT NULL,
    lo     INTEGER,
    hi     INTEGER
);
CREATE INDEX IF NOT EXISTS search_index_value ON search_index (type, param, value);
-- Only date rows have `lo`; a partial index keeps every other insert from paying for it (a range
-- condition on lo implies lo IS NOT NULL, so the planner still uses it).
DROP INDEX IF EXISTS search_index_date;
CREATE INDEX IF NOT EXISTS search_index_date_lo ON search_index (type, param, lo) WHERE lo IS NOT NULL;
CREATE INDEX IF NOT EXISTS search_index_resource ON search_index (type, id);

-- Who takes part in a resource (fhir/participants.rs): HSA-ids of principals or care units. With the owner
-- column, what decides whether another principal sees the resource (search_sql::visibility_sql).
CREATE TABLE IF NOT EXISTS participants (
    type TEXT NOT NULL,
    id   TEXT NOT NULL,
    hsa  TEXT NOT NULL,
    PRIMARY KEY (type, id, hsa)
) WITHOUT ROWID;

-- Sammanhållen dokumentation (fhir/sharing.rs): the patient a resource is about, the care relationships an
-- active Task/ServiceRequest/CarePlan/EpisodeOfCare establishes, and the decisions of active Consents.
CREATE TABLE IF NOT EXISTS patient_links (
    type    TEXT NOT NULL,
    id      TEXT NOT NULL,
    patient TEXT NOT NULL,             -- Patient/{id}
    PRIMARY KEY (type, id, patient)
) WITHOUT ROWID;
-- Compartment search (Patient/{id}/Type, search_sql.rs) finds a patient's resources of one type.
CREATE INDEX IF NOT EXISTS patient_links_patient ON patient_links (patient, type);
CREATE TABLE IF NOT EXISTS care_relations (
    type    TEXT NOT NULL,
    id      TEXT NOT NULL,
    patient TEXT NOT NULL,
    hsa     TEXT NOT NULL,
    PRIMARY KEY (type, id, patient, hsa)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS care_relations_patient ON care_relations (patient, hsa);
CREATE TABLE IF NOT EXISTS consents (
    type      TEXT NOT NULL,           -- always Consent
    id        TEXT NOT NULL,
    patient   TEXT NOT NULL,
    kind      TEXT NOT NULL,           -- permit | block
    principal TEXT NOT NULL,           -- HSA-id, or * (a permit for all)
    PRIMARY KEY (type, id, patient, kind, principal)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS consents_patient ON consents (patient, kind, principal);

-- The patient timeline (timeline/mod.rs): one row per (patient, current resource about them), keyed for
-- newest-first keyset paging on (time, type, id).
CREATE TABLE IF NOT EXISTS timeline (
    patient TEXT    NOT NULL,          -- Patient/{id}
    t_ms    INTEGER NOT NULL,          -- clinical time, epoch ms
    type    TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    PRIMARY KEY (patient, t_ms, type, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS timeline_resource ON timeline (type, id);

-- Uniqueness the database guarantees: conditional-create keys and national identity numbers.
CREATE TABLE IF NOT EXISTS unique_keys (
    scope TEXT NOT NULL,
    key   TEXT NOT NULL,
    type  TEXT NOT NULL,
    id    TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS unique_keys_resource ON unique_keys (type, id);

-- Values that may be used once until they expire: client assertion `jti`s (replay protection survives restarts).
CREATE TABLE IF NOT EXISTS seen_once (
    scope      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,              -- unix seconds; the row may go after this
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_once_expiry ON seen_once (expires_at);

-- The access log's tables are store/audit_sql.rs AUDIT_SCHEMA (applied to this file and to audit.db).

-- The outbox (outbox/mod.rs): deliveries written in the same transaction as the change that causes them,
-- claimed and sent by the outbox workers. `id` is the stable message id every attempt carries, so receivers
-- can be idempotent. Order is kept per (destination, patient): only the oldest pending row of a pair is due.
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY,      -- enqueue order
    id              TEXT    NOT NULL UNIQUE,  -- stable message id (X-Navet-Message-Id)
    destination     TEXT    NOT NULL,         -- configured destination name
    patient         TEXT    NOT NULL,         -- ordering key: Patient/{id}, or '' for no patient
    content_type    TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    headers         TEXT    NOT NULL,         -- JSON array of [name, value]
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    budget_start_ms INTEGER NOT NULL,         -- the retry budget runs from here (enqueue, or the last replay)
    next_attempt_ms INTEGER NOT NULL,
    claimed_until_ms INTEGER,                 -- a worker holds the row until then; NULL when unclaimed
    status          TEXT    NOT NULL,         -- pending | delivered | dead
    last_error      TEXT,
    done_ms         INTEGER                   -- when it was delivered or became a dead letter
);
CREATE INDEX IF NOT EXISTS outbox_queue ON outbox (destination, status, patient, seq);
CREATE INDEX IF NOT EXISTS outbox_status ON outbox (status, seq);

-- Messages received in other formats than FHIR (store/inbound.rs), as they arrived, with the receipt answered.
-- The primary key is the idempotency key: a repeat finds the first row and its receipt.
CREATE TABLE IF NOT EXISTS inbound_messages (
    seq         INTEGER PRIMARY KEY,
    format      TEXT    NOT NULL,             -- svpl
    sender      TEXT    NOT NULL,             -- HSA-id of the sending principal
    message_id  TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    received_ms INTEGER NOT NULL,
    body        BLOB    NOT NULL,             -- the message as it arrived
    receipt     TEXT    NOT NULL,             -- the receipt as answered
    patient     TEXT,
    case_ref    TEXT,
    parties     TEXT    NOT NULL,             -- JSON array of HSA-ids
    created     TEXT    NOT NULL,             -- JSON array of Type/id
    updated     TEXT    NOT NULL,
    UNIQUE (format, sender, message_id)
);
CREATE INDEX IF NOT EXISTS inbound_messages_id ON inbound_messages (format, message_id);
CREATE INDEX IF NOT EXISTS inbound_messages_case ON inbound_messages (format, case_ref);

-- Each receiver's receipt for an SVPL message navet sent on a principal's behalf (store/inbound.rs): one row per
-- receiver from the moment the message is enqueued (receipt NULL until the receiver answers).
CREATE TABLE IF NOT EXISTS inbound_receipts (
    format      TEXT    NOT NULL,
    sender      TEXT    NOT NULL,             -- the kept message's sender (the principal navet sent for)
    message_id  TEXT    NOT NULL,
    receiver    TEXT    NOT NULL,             -- HSA-id of the receiving principal
    receipt     TEXT,                         -- its Kvittens as answered
    answered_ms INTEGER,
    PRIMARY KEY (format, sender, message_id, receiver)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#;
