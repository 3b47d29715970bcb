//! Thin HTTP handlers: they decode the request, call `fhir/` operations or the store, and encode the answer.

pub mod audit;
pub mod auditor;
pub mod edge;
pub mod fhir;
pub mod health;
pub mod metrics;
pub mod negotiate;
pub mod respond;
pub mod search;
