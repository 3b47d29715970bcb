//! navet ("the hub"): an interoperability gateway for coordinated care in the patient's home in Sweden.
//! FHIR R4 REST on an embedded SQLite store (PostgreSQL to follow), with SVPL/SIP XML messages and itACiH to come.
//!
//! # Layout
//! - [`audit`]: the access log: AuditEvents in the same transaction, hash-chained.
//! - [`auth`]: SMART Backend Services tokens, principals, clients and the acting user.
//! - [`config`]: flags, environment and `navet.toml`; the embedded demo configuration.
//! - [`startup`]: `app(state) -> Router` (reused by the tests) and the serve loop.
//! - [`state`]: shared services held by the app.
//! - [`error`]: the one table from error to HTTP status and OperationOutcome.
//! - [`domain`]: newtypes parsed once: personnummer, samordningsnummer, reservnummer, HSA-id.
//! - [`fhir`]: lossless resource JSON, structure validation, Swedish rules, the REST operations, Bundles,
//!   the CapabilityStatement, OperationOutcome.
//! - [`search`]: search parameter table, the indexer, query parsing.
//! - [`store`]: the storage trait (every call takes the acting principal) and its SQLite implementation.
//! - [`http`]: thin axum handlers, and the edge in front of them (`http::edge`: request ids, timeouts, panics,
//!   rate and concurrency limits; `http::metrics`: `/metrics`).
//! - [`timeline`]: the patient timeline: clinical times, keyset cursors, the query the store answers.
//! - [`outbox`]: durable outbound delivery: enqueue with the change, workers, retries, dead letters.
//! - [`clients`]: typed outbound clients (a generic HTTP POST for now) with per-destination timeouts.
//! - [`svpl`]: SVPL/SIP XML messages in and out: mapping, message types, translation to FHIR, receipts.
//! - [`tls`]: HTTPS and optional client certificates with rustls.
//! - [`caremap`]: the team directory (care map) from configuration: hours, holidays, coverage, search.
//! - [`ordination`]: orders to the mobile teams: rules, intake, visit planning, the work they create.
//! - [`itacih`]: the itACiH link: visits out through the outbox, the event feed back, the simulator.

pub mod audit;
pub mod auth;
pub mod caremap;
pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod fhir;
pub mod http;
pub mod itacih;
pub mod ordination;
pub mod outbox;
pub mod search;
pub mod startup;
pub mod state;
pub mod store;
pub mod svpl;
pub mod timeline;
pub mod tls;
