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

use std::sync::{Arc, OnceLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::{AuthError, Authenticated, Caller, PrincipalKind, PurposeOfUse};
use crate::fhir::visibility::Visibility;
use crate::state::AppState;
use crate::store::Actor;

/// The authenticated caller of a request and the store actor made from it, once per request: the handler's
/// extractor authenticates and builds the actor, and the access-log middleware ([`audit::audit_requests`])
/// finds the same pair in the request's [`ActingSlot`] for the record (no second token check, no second
/// actor). Rejection: as [`Authenticated`] (401/400 with a `WWW-Authenticate: Bearer` challenge).
#[derive(Debug, Clone)]
pub struct Acting {
    pub caller: Caller,
    pub actor: Actor,
}

impl Acting {
    pub fn of(caller: Caller) -> Acting {
        let actor = actor_of(&caller);
        Acting { caller, actor }
    }
}

/// The caller the edge's rate limiter verified the request's token as (`edge::guard`): the extractor takes it
/// instead of checking the same token again.
#[derive(Debug, Clone)]
pub struct Verified(pub Caller);

/// Where the access-log middleware keeps the request's [`Acting`] once the handler's extractor made it.
#[derive(Debug, Clone, Default)]
pub struct ActingSlot(pub Arc<OnceLock<Acting>>);

impl FromRequestParts<AppState> for Acting {
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let slot = parts.extensions.get::<ActingSlot>().cloned();
        if let Some(acting) = slot.as_ref().and_then(|s| s.0.get()) {
            return Ok(acting.clone());
        }
        let caller = match parts.extensions.remove::<Verified>() {
            Some(Verified(caller)) => caller,
            None => Authenticated::from_request_parts(parts, state).await?.0,
        };
        let acting = Acting::of(caller);
        if let Some(slot) = slot {
            let _ = slot.0.set(acting.clone());
        }
        Ok(acting)
    }
}

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
