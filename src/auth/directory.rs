//! The user directory: whether the acting user a client names (IUA `subject_id`) is known to navet, i.e.
//! holds an active PractitionerRole at the care unit the client claims (`subject_organization_id`, which
//! [`crate::auth::iua::ActingUser::parse`] has already checked is a unit of the client's principal).
//!
//! Without this the access log would record whatever HSA-id a client names (issue 8). The directory is the
//! PractitionerRole resources navet stores (the demo region seeds one per demo user,
//! `src/demo/demo-seed.json`). A role is at the unit when its `organization` is a literal reference to an
//! Organization with that HSA-id, or a logical reference by the HSA-id itself (`Reference.identifier`), and
//! its practitioner likewise is a Practitioner with the user's HSA-id or a logical reference to it. Only
//! roles with `active` = true count. `PractitionerRole.period` is not checked (an ended commission is set
//! inactive by the directory's owner).
//!
//! The check runs when a token is issued, not on every request: a role removed from the directory stops
//! new tokens at once, and tokens already issued within their (short) lifetime.

use std::collections::HashSet;

use async_trait::async_trait;

use crate::auth::jti::{DatabaseJtiStore, MemoryJtiStore};
use crate::domain::{HSA_ID_SYSTEM as HSA_SYSTEM, HsaId};
use crate::search::params::SearchParams;
use crate::search::query::parse_query;
use crate::store::Actor;

/// The most roles (and practitioners, and units) one lookup reads: a bound on work, far above what one
/// person holds.
const MAX_MATCHES: usize = 100;

#[derive(Debug, thiserror::Error)]
#[error("the user directory failed: {0}")]
pub struct DirectoryError(pub String);

#[async_trait]
pub trait UserDirectory: Send + Sync {
    /// Whether `user` holds an active PractitionerRole at `care_unit`.
    async fn holds_role(&self, user: &HsaId, care_unit: &HsaId) -> Result<bool, DirectoryError>;
}

/// The in-memory directory of a [`MemoryJtiStore`] (tests and tools): exactly the pairs it was given.
#[async_trait]
impl UserDirectory for MemoryJtiStore {
    async fn holds_role(&self, user: &HsaId, care_unit: &HsaId) -> Result<bool, DirectoryError> {
        Ok(self.has_role(user, care_unit))
    }
}

/// The production directory: the stored PractitionerRole resources, read through the [`crate::store::Store`]
/// trait (never SQLite directly).
#[async_trait]
impl UserDirectory for DatabaseJtiStore {
    async fn holds_role(&self, user: &HsaId, care_unit: &HsaId) -> Result<bool, DirectoryError> {
        let practitioner_refs: Vec<String> = self
            .directory_search(
                "Practitioner",
                "identifier",
                &format!("{HSA_SYSTEM}|{user}"),
            )
            .await?
            .into_iter()
            .map(|id| format!("Practitioner/{id}"))
            .collect();
        let unit_refs: HashSet<String> = self
            .directory_search(
                "Organization",
                "identifier",
                &format!("{HSA_SYSTEM}|{care_unit}"),
            )
            .await?
            .into_iter()
            .map(|id| format!("Organization/{id}"))
            .collect();
        let mut roles = self
            .directory_roles("practitioner:identifier", &format!("{HSA_SYSTEM}|{user}"))
            .await?;
        if !practitioner_refs.is_empty() {
            roles.extend(
                self.directory_roles("practitioner", &practitioner_refs.join(","))
                    .await?,
            );
        }
        Ok(roles
            .iter()
            .any(|json| role_is_at(json, &unit_refs, care_unit)))
    }
}

impl DatabaseJtiStore {
    /// The ids of `resource_type` matching `param=value`.
    async fn directory_search(
        &self,
        resource_type: &str,
        param: &str,
        value: &str,
    ) -> Result<Vec<String>, DirectoryError> {
        Ok(self
            .directory_query(resource_type, &[(param, value)])
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// The JSON of the active PractitionerRoles matching `param=value`.
    async fn directory_roles(
        &self,
        param: &str,
        value: &str,
    ) -> Result<Vec<String>, DirectoryError> {
        Ok(self
            .directory_query("PractitionerRole", &[(param, value), ("active", "true")])
            .await?
            .into_iter()
            .filter_map(|(_, json)| json)
            .collect())
    }

    async fn directory_query(
        &self,
        resource_type: &str,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<(String, Option<String>)>, DirectoryError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        // The message leaves the values out: they hold the user's HSA-id, which is never logged.
        let query = parse_query(self.search_params(), resource_type, &pairs, false)
            .map_err(|_| DirectoryError(format!("the {resource_type} query could not be built")))?;
        // Actor::system(): this lookup decides whether a token is issued at all, so there is no caller yet
        // to act as; it reads shared master data (practitioners, roles, organisations) and returns nothing
        // of it to the client.
        let page = self
            .store()
            .search(&Actor::system(), resource_type, query, 0, MAX_MATCHES)
            .await
            .map_err(|e| DirectoryError(e.to_string()))?;
        Ok(page
            .matches
            .into_iter()
            .filter(|v| !v.deleted)
            .map(|v| (v.id, v.json))
            .collect())
    }

    fn search_params(&self) -> &SearchParams {
        self.params.get_or_init(SearchParams::embedded)
    }
}

/// Whether a PractitionerRole (JSON) is active and at the care unit: its `organization` references one of
/// `unit_refs` or names the unit's HSA-id.
fn role_is_at(json: &str, unit_refs: &HashSet<String>, care_unit: &HsaId) -> bool {
    let Ok(role) = serde_json::from_str::<serde_json::Value>(json) else {
        return false;
    };
    if role["active"] != serde_json::Value::Bool(true) {
        return false;
    }
    let organization = &role["organization"];
    let literal = organization["reference"]
        .as_str()
        .is_some_and(|r| unit_refs.contains(r));
    let logical = organization["identifier"]["system"] == HSA_SYSTEM
        && organization["identifier"]["value"] == care_unit.as_str();
    literal || logical
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> HsaId {
        HsaId::parse("SE2321000255-MTN01").unwrap()
    }

    #[test]
    fn a_role_counts_only_when_active_and_at_the_unit() {
        let refs: HashSet<String> = ["Organization/o1".to_owned()].into();
        let at = |json: serde_json::Value| role_is_at(&json.to_string(), &refs, &unit());
        assert!(at(
            serde_json::json!({"active": true, "organization": {"reference": "Organization/o1"}})
        ));
        assert!(at(
            serde_json::json!({"active": true, "organization": {"identifier":
            {"system": HSA_SYSTEM, "value": "SE2321000255-MTN01"}}})
        ));
        assert!(!at(
            serde_json::json!({"active": false, "organization": {"reference": "Organization/o1"}})
        ));
        assert!(!at(
            serde_json::json!({"organization": {"reference": "Organization/o1"}})
        ));
        assert!(!at(
            serde_json::json!({"active": true, "organization": {"reference": "Organization/o2"}})
        ));
        assert!(!at(
            serde_json::json!({"active": true, "organization": {"identifier":
            {"system": "urn:other", "value": "SE2321000255-MTN01"}}})
        ));
        assert!(!role_is_at("not json", &refs, &unit()));
    }
}
