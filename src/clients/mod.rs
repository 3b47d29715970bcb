//! Typed outbound clients the outbox delivers through, each with its destination's timeouts. For now one
//! generic client (a JSON or XML POST), which also answers the receiver's reply (SVPL reads the `Kvittens` in
//! it, `crate::svpl::delivery`).

pub mod http_post;

pub use http_post::{HttpPostClient, Reply};

/// Every delivery carries its outbox message id in this header, the same on every attempt, so a receiver can
/// answer a repeated message without acting on it twice.
pub const MESSAGE_ID_HEADER: &str = "X-Navet-Message-Id";

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: no connection, a timeout, a 5xx, 408 or 429.
    #[error("{0}")]
    Retryable(String),
    /// The receiver refused the message itself (other 4xx): retrying the same bytes will not help.
    #[error("{0}")]
    Rejected(String),
}
