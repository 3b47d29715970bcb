//! The checked registry of principals, clients and known users that [`crate::auth::config::build`] makes
//! from configuration.

use std::collections::HashMap;
use std::sync::Arc;

use crate::auth::iua::Role;
use crate::auth::jws::VerifyingKey;
use crate::auth::principal::Principal;
use crate::auth::scopes::Scopes;
use crate::domain::HsaId;

/// A registered API client.
#[derive(Debug)]
pub struct Client {
    pub client_id: Arc<str>,
    pub principal: Arc<Principal>,
    /// The keys its assertions may be signed with; each verifies exactly one algorithm.
    pub keys: Vec<VerifyingKey>,
    /// The most it may be granted.
    pub allowed: Scopes,
    /// Registered as a system integration: may read patient data without an acting user (spec/auth.md).
    pub system_integration: bool,
    /// The population-register integration: may change security labels and protected contact data.
    pub population_register: bool,
}

/// A known user (`[[users]]`): the demo users, and what `navet token --user` fills the IUA claims from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownUser {
    pub hsa_id: HsaId,
    pub name: String,
    pub role: Role,
    pub care_unit: HsaId,
}

#[derive(Debug, Default)]
pub struct Registry {
    pub(crate) principals: HashMap<HsaId, Arc<Principal>>,
    pub(crate) clients: HashMap<String, Arc<Client>>,
    pub(crate) users: HashMap<HsaId, KnownUser>,
}

impl Registry {
    pub fn client(&self, client_id: &str) -> Option<&Arc<Client>> {
        self.clients.get(client_id)
    }

    pub fn principal(&self, hsa_id: &HsaId) -> Option<&Arc<Principal>> {
        self.principals.get(hsa_id)
    }

    pub fn user(&self, hsa_id: &HsaId) -> Option<&KnownUser> {
        self.users.get(hsa_id)
    }

    /// Every principal, sorted by HSA-id (for seeding Organization resources, listings).
    pub fn principals(&self) -> Vec<Arc<Principal>> {
        let mut all: Vec<_> = self.principals.values().cloned().collect();
        all.sort_by(|a, b| a.hsa_id.cmp(&b.hsa_id));
        all
    }

    /// Every client, sorted by id.
    pub fn clients(&self) -> Vec<Arc<Client>> {
        let mut all: Vec<_> = self.clients.values().cloned().collect();
        all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        all
    }

    /// Every known user, sorted by HSA-id.
    pub fn users(&self) -> Vec<KnownUser> {
        let mut all: Vec<_> = self.users.values().cloned().collect();
        all.sort_by(|a, b| a.hsa_id.cmp(&b.hsa_id));
        all
    }
}
