//! What a caller may see: the one rule behind every path that returns data (DESIGN.md "Record ownership and
//! sharing": "One decision, one place"). The HTTP layer derives it from the caller once
//! ([`Visibility::for_caller`]); the store renders it into its queries (`store/search_sql.rs`), so read, vread,
//! search, totals, `_include`, history at every level, Bundle reads and conditional matching all answer
//! from the same predicate; protected identity is applied where data leaves navet
//! ([`crate::fhir::protected::outgoing`]) with [`Visibility::entered`] deciding who sees it whole.

use std::sync::Arc;

/// The resource types of the access log: readable by auditor principals doing audit work, by nobody else.
pub const ACCESS_LOG_TYPE: &str = "AuditEvent";

/// Directory records (DESIGN.md): shared master data that is not patient data, so a client without an acting
/// user may use them, and their reads are not logged.
pub const DIRECTORY_TYPES: [&str; 6] = [
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "HealthcareService",
    "Location",
    "Endpoint",
];

/// Shared master data: Patient and the directory. Every principal reads it, any care principal may change it
/// (the change is recorded with the changing principal). The one list; SQL is rendered from it.
pub const SHARED_MASTER_DATA: [&str; 1 + DIRECTORY_TYPES.len()] = {
    let mut all = ["Patient"; 1 + DIRECTORY_TYPES.len()];
    let mut i = 0;
    while i < DIRECTORY_TYPES.len() {
        all[i + 1] = DIRECTORY_TYPES[i];
        i += 1;
    }
    all
};

/// Whether `resource_type` is shared master data ([`SHARED_MASTER_DATA`]).
pub fn is_shared_master_data(resource_type: &str) -> bool {
    SHARED_MASTER_DATA.contains(&resource_type)
}

/// Whether `resource_type` is a directory record ([`DIRECTORY_TYPES`]).
pub fn is_directory(resource_type: &str) -> bool {
    DIRECTORY_TYPES.contains(&resource_type)
}

/// The visibility rule of one caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// navet itself (start-up seeding, internal jobs): everything, whole.
    Everything,
    /// An auditor principal: Patient and the directory, and the access log when doing audit work (purpose of
    /// use HOPERAT). No clinical records (spec/timeline-and-audit.md).
    Auditor { reads_log: bool },
    /// Any other principal (care providers, admin): shared master data; what a principal among `sees` (the
    /// principal and its care units) owns or takes part in; sammanhållen dokumentation (a care relationship,
    /// the patient's consent, no block on the owner; `emergency` (ETREAT) passes consent and blocks). Never
    /// the access log.
    Care {
        sees: Arc<[String]>,
        emergency: bool,
    },
}

impl Visibility {
    /// Whether any resource of `resource_type` can be visible under this rule (a cheap pre-check; which ones
    /// is the store's query).
    pub fn may_see_type(&self, resource_type: &str) -> bool {
        match self {
            Visibility::Everything => true,
            Visibility::Auditor { reads_log } => {
                is_shared_master_data(resource_type)
                    || (*reads_log && resource_type == ACCESS_LOG_TYPE)
            }
            Visibility::Care { .. } => resource_type != ACCESS_LOG_TYPE,
        }
    }

    /// Whether the access log (chain, extracts, exports) is readable under this rule.
    pub fn reads_access_log(&self) -> bool {
        self.may_see_type(ACCESS_LOG_TYPE)
    }

    /// Whether this caller is the principal that entered a record owned by `owner` (its principal or one of
    /// its care units), or navet itself. Protected identity is shown whole to that principal only.
    pub fn entered(&self, owner: &str) -> bool {
        match self {
            Visibility::Everything => true,
            Visibility::Auditor { .. } => false,
            Visibility::Care { sees, .. } => sees.iter().any(|h| h == owner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn care() -> Visibility {
        Visibility::Care {
            sees: Arc::from(vec!["SE1".to_owned(), "SE1-U".to_owned()]),
            emergency: false,
        }
    }

    #[test]
    fn only_an_auditor_doing_audit_work_reads_the_access_log() {
        assert!(Visibility::Auditor { reads_log: true }.reads_access_log());
        assert!(!Visibility::Auditor { reads_log: false }.reads_access_log());
        assert!(!care().reads_access_log());
        assert!(Visibility::Everything.reads_access_log());
    }

    #[test]
    fn auditors_see_master_data_and_the_log_only() {
        let auditor = Visibility::Auditor { reads_log: true };
        let seen: Vec<&str> = ["Patient", "Organization", "AuditEvent", "Task", "Consent"]
            .into_iter()
            .filter(|t| auditor.may_see_type(t))
            .collect();
        assert_eq!(seen, ["Patient", "Organization", "AuditEvent"]);
    }

    #[test]
    fn the_entering_principal_is_the_owner_or_one_of_its_units() {
        assert!(care().entered("SE1"));
        assert!(care().entered("SE1-U"));
        assert!(!care().entered("SE2"));
        assert!(!Visibility::Auditor { reads_log: true }.entered("SE1"));
    }

    #[test]
    fn the_directory_is_shared_master_data_and_the_log_is_not() {
        assert!(DIRECTORY_TYPES.iter().all(|t| is_shared_master_data(t)));
        assert!(is_shared_master_data("Patient"));
        assert!(!is_shared_master_data(ACCESS_LOG_TYPE));
    }
}
