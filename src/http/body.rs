//! Request bodies read with bounded memory, and the per-request bounds of the FHIR API (issue 8).
//!
//! A large body costs far more than its size while it is processed: the bytes, the parsed JSON (several
//! times the text for many small objects), the raw members kept for storage, the stored text. 32 concurrent
//! 10 MB POSTs took the process to 1.9–2.2 GB. So a body over [`BigBodies::threshold`] is read and processed
//! only while its request holds one of a few permits: at most [`BigBodies::permits`] big bodies are in
//! memory at once, whatever the number of clients. A request that cannot get a permit within
//! [`BigBodies::wait`] is answered 503 with `Retry-After` (load shedding) instead of queueing without bound.
//! Small bodies, the everyday case, never wait. When the client declares `Content-Length`, the permit is
//! taken before anything is read, so a waiting request holds no body at all (its bytes stay in the socket).

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_LENGTH;
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// The bounds on one request's work that the FHIR handlers apply.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// `[limits] max_bundle_entries`.
    pub max_bundle_entries: usize,
    pub big_bodies: BigBodies,
}

impl Bounds {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Bounds {
            max_bundle_entries: settings.max_bundle_entries,
            big_bodies: BigBodies::new(
                settings.big_body_bytes,
                settings.big_body_concurrency,
                Duration::from_millis(settings.big_body_wait_ms),
            ),
        }
    }
}

/// The gate big bodies pass: `permits` at a time, each waiting at most `wait` for its turn.
#[derive(Clone, Debug)]
pub struct BigBodies {
    pub threshold: usize,
    pub permits: usize,
    pub wait: Duration,
    semaphore: Arc<Semaphore>,
}

impl BigBodies {
    pub fn new(threshold: usize, permits: usize, wait: Duration) -> Self {
        BigBodies {
            threshold,
            permits,
            wait,
            semaphore: Arc::new(Semaphore::new(permits)),
        }
    }

    /// How many big bodies are being read or processed now (for tests and metrics).
    pub fn in_use(&self) -> usize {
        self.permits
            .saturating_sub(self.semaphore.available_permits())
    }

    async fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(self.wait, self.semaphore.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or the semaphore was closed (it never is): shed the request.
            _ => {
                tracing::debug!(
                    permits = self.permits,
                    "a large request body was refused: every large-body permit is in use"
                );
                Err(ApiError::Unavailable)
            }
        }
    }

    /// Reads `body` up to `limit` bytes, taking a permit first when it is (or turns out to be) big.
    pub async fn read(
        &self,
        headers: &HeaderMap,
        body: Body,
        limit: usize,
    ) -> Result<BoundedBody, ApiError> {
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        let mut permit = None;
        if declared.is_some_and(|n| n > self.threshold) {
            permit = Some(self.admit().await?);
        }
        // The declared length (bounded by the limit) is reserved at once, so the buffer is not regrown
        // (growing doubles: a moment with two copies).
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::BadRequest(format!("could not read the request body: {e}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let total = buf.len().saturating_add(data.len());
            if total > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            if total > self.threshold && permit.is_none() {
                // A body without Content-Length that grew big: it waits for a permit like the others.
                permit = Some(self.admit().await?);
            }
            buf.extend_from_slice(&data);
        }
        Ok(BoundedBody {
            bytes: buf.freeze(),
            permit: Permit(permit),
        })
    }
}

/// A body as read, with the permit a big one holds. Keep it (or its [`Permit`]) until the request's work
/// is done: the permit bounds the memory of the processing, not only of the reading.
#[derive(Debug)]
pub struct BoundedBody {
    bytes: Bytes,
    permit: Permit,
}

/// A big body's place among the permitted ones (none for a small body); released when dropped.
#[derive(Debug)]
#[must_use = "the permit must be held while the body is processed"]
pub struct Permit(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl BoundedBody {
    /// The bytes and the permit apart, to let the bytes go early and keep the permit.
    pub fn into_parts(self) -> (Bytes, Permit) {
        (self.bytes, self.permit)
    }
}

impl Deref for BoundedBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(len: Option<usize>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(n) = len {
            h.insert(CONTENT_LENGTH, n.to_string().parse().expect("header"));
        }
        h
    }

    #[tokio::test]
    async fn a_small_body_needs_no_permit_and_a_big_one_waits_for_one() {
        let gate = BigBodies::new(10, 1, Duration::from_millis(50));
        let big = gate
            .read(&headers(Some(20)), Body::from(vec![b'x'; 20]), 100)
            .await
            .expect("the only permit is free");
        assert_eq!(big.len(), 20);
        // The permit is held: a second big body (declared, or found while reading) is shed ...
        let declared = gate
            .read(&headers(Some(20)), Body::from(vec![b'x'; 20]), 100)
            .await;
        assert!(
            matches!(declared, Err(ApiError::Unavailable)),
            "{declared:?}"
        );
        let undeclared = gate
            .read(&headers(None), Body::from(vec![b'x'; 20]), 100)
            .await;
        assert!(matches!(undeclared, Err(ApiError::Unavailable)));
        // ... while a small one passes.
        let small = gate
            .read(&headers(None), Body::from(vec![b'x'; 5]), 100)
            .await
            .expect("small bodies never wait");
        assert_eq!(&*small, b"xxxxx");
        let (_, permit) = big.into_parts();
        drop(permit);
        let again = gate
            .read(&headers(Some(20)), Body::from(vec![b'x'; 20]), 100)
            .await;
        assert!(again.is_ok(), "the released permit is taken again");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_too_large_declared_or_not() {
        let gate = BigBodies::new(10, 1, Duration::from_millis(50));
        for declared in [Some(200), None] {
            let r = gate
                .read(&headers(declared), Body::from(vec![b'x'; 200]), 100)
                .await;
            assert!(
                matches!(r, Err(ApiError::PayloadTooLarge(100))),
                "{declared:?}: {r:?}"
            );
        }
    }
}
