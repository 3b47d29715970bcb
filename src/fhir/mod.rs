//! FHIR R4 (4.0.1): lossless resource handling, structural validation, Swedish rules, the REST operations
//! and Bundles. HTTP specifics stay in `http/`; this module knows nothing of axum beyond response types.

pub mod bundle;
pub mod capability;
pub mod json;
pub mod ops;
pub mod outcome;
pub mod participants;
pub mod patch;
pub mod protected;
pub mod relink;
pub mod rules;
pub mod sharing;
pub mod structure;
pub mod subscription;
pub mod typed;
pub mod validate;
pub mod visibility;
pub mod xml;

use std::sync::Arc;

use crate::search::params::SearchParams;
use structure::Structure;

/// `Content-Type` of every FHIR JSON answer (FHIR R4 §3.1.0.1.2).
pub const FHIR_JSON: &str = "application/fhir+json;charset=utf-8";

/// The read-only FHIR knowledge navet loads once at start-up and shares.
pub struct FhirContext {
    pub structure: Structure,
    /// The R4 invariants navet evaluates (`validate`), compiled against `structure`.
    pub invariants: validate::Invariants,
    pub params: SearchParams,
    /// `[[outbox.allow]]`: which principals may have private or plain-http endpoints; a Subscription's
    /// endpoint is checked against them when it is written ([`subscription`]).
    pub outbox_allow: Vec<crate::outbox::config::AllowRule>,
    /// Ordination rules, the care map and the itACiH link (`crate::ordination`).
    pub ordination: Arc<crate::ordination::Ordination>,
    /// Outbound SVPL (`crate::svpl::outbound`): `None` when no principal has an SVPL endpoint.
    pub svpl_outbound: Option<Arc<crate::svpl::outbound::Outbound>>,
}

impl FhirContext {
    pub fn embedded() -> Arc<Self> {
        Self::embedded_with(Vec::new())
    }

    /// The embedded tables with the configuration's outbound allow rules.
    pub fn embedded_with(outbox_allow: Vec<crate::outbox::config::AllowRule>) -> Arc<Self> {
        Self::configured(
            outbox_allow,
            Arc::new(crate::ordination::Ordination::demo()),
        )
    }

    /// The embedded tables with the configuration's allow rules and ordination (care map, itACiH link).
    pub fn configured(
        outbox_allow: Vec<crate::outbox::config::AllowRule>,
        ordination: Arc<crate::ordination::Ordination>,
    ) -> Arc<Self> {
        Self::configured_with_svpl(outbox_allow, ordination, None)
    }

    /// [`Self::configured`] with the outbound SVPL endpoints (`crate::svpl::outbound`).
    pub fn configured_with_svpl(
        outbox_allow: Vec<crate::outbox::config::AllowRule>,
        ordination: Arc<crate::ordination::Ordination>,
        svpl_outbound: Option<Arc<crate::svpl::outbound::Outbound>>,
    ) -> Arc<Self> {
        let structure = Structure::embedded();
        Arc::new(FhirContext {
            invariants: validate::Invariants::embedded(&structure),
            structure,
            params: SearchParams::embedded(),
            outbox_allow,
            ordination,
            svpl_outbound,
        })
    }

    /// The resource types the search API serves: every type of the search-parameter table, which is every
    /// concrete R4 type (issue 14).
    pub fn is_searchable(&self, resource_type: &str) -> bool {
        self.params.params_for(resource_type).next().is_some()
    }
}

pub use visibility::{DIRECTORY_TYPES, SHARED_MASTER_DATA, is_shared_master_data};

/// `meta.tag` system of the owner coding navet puts on every stored version: the code is the owner
/// principal's HSA-id (`navet-system` for what navet loaded itself). Clients cannot set or change it.
pub const OWNER_TAG_SYSTEM: &str = "urn:navet:owner";
