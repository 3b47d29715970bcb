//! Thin HTTP handlers: they decode the request, call `fhir/` operations or the store, and encode the answer.

pub mod admin;
pub mod audit;
pub mod auditor;
pub mod body;
pub mod edge;
pub mod fhir;
pub mod health;
pub mod metrics;
pub mod negotiate;
pub mod openapi;
pub mod outcomes;
pub mod patch;
pub mod respond;
pub mod search;
pub mod svpl;
pub mod timeline;
pub mod validate;
pub mod xml;

use std::sync::Arc;

use crate::auth::{Caller, PrincipalKind, PurposeOfUse};
use crate::fhir::visibility::Visibility;
use crate::store::Actor;

/// The store's actor for an authenticated caller: the one place a caller's principal, user and purpose of use
/// become the visibility rule every read path applies (DESIGN.md "One decision, one place").
pub fn actor_of(caller: &Caller) -> Actor {
    Actor {
        principal: Arc::from(caller.principal.hsa_id.as_str()),
        client_id: Some(caller.client_id.clone()),
        user: caller.user.as_ref().map(|u| Arc::from(u.hsa_id.as_str())),
        visibility: visibility_of(caller),
        population_register: caller.population_register,
    }
}

/// The visibility rule of a caller (see [`actor_of`]).
pub fn visibility_of(caller: &Caller) -> Visibility {
    let purpose = caller.user.as_ref().map(|u| u.purpose);
    match caller.principal.kind {
        // spec/timeline-and-audit.md: the log is read by auditor principals doing audit work (HOPERAT).
        PrincipalKind::Auditor => Visibility::Auditor {
            reads_log: purpose == Some(PurposeOfUse::Hoperat),
        },
        _ => Visibility::Care {
            sees: std::iter::once(caller.principal.hsa_id.as_str().to_owned())
                .chain(caller.principal.units.iter().map(|u| u.as_str().to_owned()))
                .collect(),
            emergency: purpose == Some(PurposeOfUse::Etreat),
        },
    }
}
