//! Replay protection for client assertions: a `jti` may be used once (RFC 7523 §3 item 7, SMART Backend
//! Services "replay protection").
//!
//! The production store lives in the database so a replay is refused after a restart too, and every navet
//! node sharing that database sees the same set; [`MemoryJtiStore`] is for tests and single-process tools.
//! Both also serve as the user directory ([`crate::auth::directory`]): they are authentication's view of
//! navet's persistent state.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use crate::domain::HsaId;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
#[error("the jti store failed: {0}")]
pub struct JtiStoreError(pub String);

#[async_trait]
pub trait JtiStore: Send + Sync {
    /// Records that `client_id` used `jti`; the record may be forgotten after `expires_at_unix` (the
    /// assertion's `exp`: after that the assertion is refused as expired anyway).
    ///
    /// Returns `true` the first time the pair is seen and `false` for a replay. It must be atomic: of two
    /// concurrent calls with the same pair exactly one gets `true`.
    async fn remember(
        &self,
        client_id: &str,
        jti: &str,
        expires_at_unix: i64,
    ) -> Result<bool, JtiStoreError>;
}

/// An in-memory [`JtiStore`]. Forgets expired entries as it goes; lost on restart. As a
/// [`crate::auth::UserDirectory`] it knows exactly the (user, care unit) roles it was made with.
#[derive(Debug, Default)]
pub struct MemoryJtiStore {
    state: Mutex<MemoryState>,
    roles: HashSet<(HsaId, HsaId)>,
}

#[derive(Debug, Default)]
struct MemoryState {
    seen: HashMap<(String, String), i64>,
    /// Sweep expired entries when the map reaches this size; doubles with the live set so sweeping stays
    /// amortised O(1) per insert.
    sweep_at: usize,
}

impl MemoryJtiStore {
    /// A store whose directory is empty: no user holds a role.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose directory holds these (user, care unit) roles.
    pub fn with_roles(roles: impl IntoIterator<Item = (HsaId, HsaId)>) -> Self {
        MemoryJtiStore {
            roles: roles.into_iter().collect(),
            ..Self::default()
        }
    }

    pub(crate) fn has_role(&self, user: &HsaId, care_unit: &HsaId) -> bool {
        self.roles.contains(&(user.clone(), care_unit.clone()))
    }

    const MIN_SWEEP_AT: usize = 4096;
}

#[async_trait]
impl JtiStore for MemoryJtiStore {
    async fn remember(
        &self,
        client_id: &str,
        jti: &str,
        expires_at_unix: i64,
    ) -> Result<bool, JtiStoreError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| JtiStoreError("the in-memory jti store is poisoned".into()))?;
        if state.seen.len() >= state.sweep_at.max(Self::MIN_SWEEP_AT) {
            // Only entries whose own expiry has passed are forgotten, so a replay inside an assertion's
            // lifetime is always caught. The clock here is the system's.
            let now = jiff::Timestamp::now().as_second();
            state.seen.retain(|_, exp| *exp >= now);
            state.sweep_at = state.seen.len() * 2;
        }
        let key = (client_id.to_owned(), jti.to_owned());
        if state.seen.contains_key(&key) {
            return Ok(false);
        }
        state.seen.insert(key, expires_at_unix);
        Ok(true)
    }
}

/// The production [`JtiStore`]: the `seen_once` table of navet's database, written through the store's
/// writer, so a replay is refused after a restart and the record is durable before the token is issued.
/// Also the production [`crate::auth::UserDirectory`] (the stored PractitionerRoles).
pub struct DatabaseJtiStore {
    store: std::sync::Arc<dyn crate::store::Store>,
    /// The search parameter table the directory queries are parsed with, loaded on first use.
    pub(crate) params: OnceLock<crate::search::params::SearchParams>,
}

impl DatabaseJtiStore {
    pub fn new(store: std::sync::Arc<dyn crate::store::Store>) -> Self {
        DatabaseJtiStore {
            store,
            params: OnceLock::new(),
        }
    }

    pub(crate) fn store(&self) -> &dyn crate::store::Store {
        self.store.as_ref()
    }
}

#[async_trait]
impl JtiStore for DatabaseJtiStore {
    async fn remember(
        &self,
        client_id: &str,
        jti: &str,
        expires_at_unix: i64,
    ) -> Result<bool, JtiStoreError> {
        let scope = format!("jti:{client_id}");
        let jti = jti.to_owned();
        // Before authentication there is no caller yet: navet records the assertion itself.
        self.store
            .transact(&crate::store::Actor::system(), move |tx| {
                Ok(tx.remember_once(&scope, &jti, expires_at_unix)?)
            })
            .await
            .map_err(|e| JtiStoreError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_jti_is_accepted_once_and_refused_the_second_time() {
        let store = MemoryJtiStore::new();
        assert!(store.remember("c1", "j1", 100).await.unwrap());
        assert!(!store.remember("c1", "j1", 100).await.unwrap());
    }

    #[tokio::test]
    async fn the_same_jti_from_two_clients_is_two_different_records() {
        let store = MemoryJtiStore::new();
        assert!(store.remember("c1", "j1", 100).await.unwrap());
        assert!(store.remember("c2", "j1", 100).await.unwrap());
    }
}
