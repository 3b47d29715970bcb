//! PostgreSQL's errors in the store's neutral terms (`StoreError::Database`), classified by SQLSTATE.

use postgres::error::SqlState;

use crate::store::{DbErrorKind, StoreError};

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        let kind = match e.code() {
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => DbErrorKind::UniqueViolation,
            Some(c)
                if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::LOCK_NOT_AVAILABLE =>
            {
                DbErrorKind::Contention
            }
            Some(c)
                if *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
                    || *c == SqlState::TOO_MANY_CONNECTIONS =>
            {
                DbErrorKind::Unavailable
            }
            None if e.is_closed() => DbErrorKind::Unavailable,
            _ => DbErrorKind::Other,
        };
        // `postgres::Error`'s Display is only "db error" for a server error: keep the server's code and message
        // (for the log; callers never see it).
        let message = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        };
        StoreError::database(kind, message)
    }
}

/// No connection could be had from the pool (the database is down or every connection is busy).
pub(super) fn pool(e: r2d2::Error) -> StoreError {
    StoreError::database(
        DbErrorKind::Unavailable,
        format!("no PostgreSQL connection: {e}"),
    )
}
