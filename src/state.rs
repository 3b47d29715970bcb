//! Shared state of the HTTP app: services as `Arc`s, no global statics.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::auth::AuthService;
use crate::fhir::FhirContext;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub fhir: Arc<FhirContext>,
    /// Public base URL without a trailing slash (`http://127.0.0.1:8080`); FHIR base is `{base_url}/fhir`.
    pub base_url: Arc<str>,
    pub max_body_bytes: usize,
    /// The CapabilityStatement, rendered once at start-up.
    pub capability: Arc<str>,
    /// Tokens and callers: every FHIR handler authenticates through it.
    pub auth: Arc<AuthService>,
    /// Bounded work per request: Bundle entries, big request bodies (`http/body.rs`).
    pub bounds: crate::http::body::Bounds,
    /// The edge's limits and counters (`http::edge`).
    pub edge: Arc<crate::http::edge::Edge>,
    /// Signs and checks search and history `_cursor`s (`search::cursor`).
    pub cursor_key: crate::search::cursor::CursorKey,
    /// SVPL/SIP messages: the mapping and the known HSA-ids (`crate::svpl`).
    pub svpl: Arc<crate::svpl::SvplContext>,
}

impl AppState {
    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.base_url)
    }
}

impl FromRef<AppState> for Arc<dyn Store> {
    fn from_ref(s: &AppState) -> Self {
        s.store.clone()
    }
}

impl FromRef<AppState> for Arc<AuthService> {
    fn from_ref(s: &AppState) -> Self {
        s.auth.clone()
    }
}
