//! FHIR R4 Subscriptions, rest-hook channel (R4 4.0.1 subscription.html): a principal subscribes to a search
//! on one of [`SUBSCRIBABLE`] types; every write of a matching resource enqueues one notification in the
//! same transaction (`crate::outbox`), to the destination `subscription:<id>`. The worker resolves that
//! destination from the stored Subscription and rechecks visibility at send time (`outbox/subscription.rs`).
//!
//! - Matching runs as the subscriber: the criteria plus `_id` of the written resource, searched under the
//!   subscriber principal's visibility, so a subscription never matches what its owner may not read.
//! - The endpoint must pass the same SSRF rule as a configured destination (`[[outbox.allow]]`), checked
//!   for the owning principal when the Subscription is written and again when a notification is sent.
//! - Limits: the subscriber is its principal without its care units (navet's configuration is not at hand
//!   inside the write; narrower, never wider). Active Subscriptions are listed in navet's settings area (one
//!   key, rewritten by the single writer), so every write of a subscribable type reads them all: fine for
//!   tens, not for thousands (then a table of its own).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Value, json};

use super::FhirContext;
use super::ops::Prepared;
use super::visibility::Visibility;
use crate::error::ApiError;
use crate::search::query::{SearchQuery, parse_query};
use crate::store::outbox::NewMessage;
use crate::store::{Actor, WriteTx};

/// The types a Subscription's criteria may search (issue 9).
pub const SUBSCRIBABLE: [&str; 6] = [
    "Task",
    "ServiceRequest",
    "CarePlan",
    "Communication",
    "Appointment",
    "Encounter",
];

/// Outbox destination names of subscriptions start with this, followed by the Subscription's id.
pub const DESTINATION_PREFIX: &str = "subscription:";

/// The settings key listing the ids of every Subscription ever accepted (pruned when one is deleted).
const REGISTRY_KEY: &str = "subscriptions";

/// The `channel.payload` that asks for the full resource; absent means an id-only (empty) notification.
pub const FULL_PAYLOAD: &str = "application/fhir+json";

/// The parsed criteria: the type and the query pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criteria {
    pub resource_type: String,
    pub pairs: Vec<(String, String)>,
}

impl Criteria {
    /// `Type?name=value&…`, the type one of [`SUBSCRIBABLE`], the query one the search API would accept.
    pub fn parse(ctx: &FhirContext, text: &str) -> Result<Self, ApiError> {
        let (ty, query) = text.split_once('?').unwrap_or((text, ""));
        if !SUBSCRIBABLE.contains(&ty) {
            return Err(ApiError::invalid(
                "Subscription.criteria",
                format!(
                    "'{ty}' cannot be subscribed to; the criteria must be a search on one of {}",
                    SUBSCRIBABLE.join(", ")
                ),
            ));
        }
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some((name, _)) = pairs.iter().find(|(k, _)| k.starts_with('_')) {
            return Err(ApiError::invalid(
                "Subscription.criteria",
                format!(
                    "'{name}' is not allowed in criteria: they select resources, not a page of them"
                ),
            ));
        }
        Self::query_of(ctx, ty, &pairs)?;
        Ok(Criteria {
            resource_type: ty.to_owned(),
            pairs,
        })
    }

    fn query_of(
        ctx: &FhirContext,
        ty: &str,
        pairs: &[(String, String)],
    ) -> Result<SearchQuery, ApiError> {
        parse_query(&ctx.params, ty, pairs, false).map_err(|errors| {
            ApiError::invalid(
                "Subscription.criteria",
                errors
                    .into_iter()
                    .map(|e| format!("{}: {}", e.param, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
    }

    /// The criteria narrowed to one resource.
    fn for_id(&self, ctx: &FhirContext, id: &str) -> Result<SearchQuery, ApiError> {
        let mut pairs = self.pairs.clone();
        pairs.push(("_id".to_owned(), id.to_owned()));
        Self::query_of(ctx, &self.resource_type, &pairs)
    }
}

/// The stored Subscription's channel, as the worker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub endpoint: reqwest::Url,
    /// Whether the full resource is sent (`channel.payload` = [`FULL_PAYLOAD`]).
    pub full: bool,
    /// `channel.header`, each `Name: value`.
    pub headers: Vec<(String, String)>,
}

impl Channel {
    /// The rest-hook channel of a Subscription; `path`-named errors for the element at fault.
    pub fn of(value: &Value) -> Result<Self, ApiError> {
        let channel = value.get("channel").unwrap_or(&Value::Null);
        let kind = channel.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "rest-hook" {
            return Err(ApiError::invalid(
                "Subscription.channel.type",
                format!("'{kind}' is not supported; navet delivers rest-hook only"),
            ));
        }
        let endpoint = channel
            .get("endpoint")
            .and_then(Value::as_str)
            .and_then(|e| reqwest::Url::parse(e).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                ApiError::invalid(
                    "Subscription.channel.endpoint",
                    "a rest-hook needs an absolute http(s) endpoint",
                )
            })?;
        let full = match channel.get("payload").and_then(Value::as_str) {
            None => false,
            Some(FULL_PAYLOAD) | Some("application/json") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "Subscription.channel.payload",
                    format!(
                        "'{other}' is not supported: leave it out (id-only) or give {FULL_PAYLOAD}"
                    ),
                ));
            }
        };
        let mut headers = Vec::new();
        for (i, h) in channel
            .get("header")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let parsed = h
                .as_str()
                .and_then(|h| h.split_once(':'))
                .and_then(|(n, v)| {
                    let (n, v) = (n.trim(), v.trim());
                    let ok = reqwest::header::HeaderName::from_bytes(n.as_bytes()).is_ok()
                        && reqwest::header::HeaderValue::from_str(v).is_ok();
                    ok.then(|| (n.to_owned(), v.to_owned()))
                });
            match parsed {
                Some(pair) => headers.push(pair),
                None => {
                    return Err(ApiError::invalid(
                        format!("Subscription.channel.header[{i}]"),
                        "a header is 'Name: value' with a valid HTTP name and value",
                    ));
                }
            }
        }
        Ok(Channel {
            endpoint,
            full,
            headers,
        })
    }
}

/// The actor a subscription matches and is delivered as: its owning principal, seeing what a care principal
/// sees (no emergency access; no care units, see the module's limits).
pub fn subscriber(owner: &str) -> Actor {
    Actor {
        principal: Arc::from(owner),
        client_id: Some(Arc::from("navet-subscription")),
        user: None,
        visibility: Visibility::Care {
            sees: Arc::from(vec![owner.to_owned()]),
            emergency: false,
        },
        population_register: false,
    }
}

/// Called by `ops::write_version` before a version is rendered: a Subscription is checked (criteria,
/// channel, endpoint for its owner) and, when a client asks for it (`requested`), made `active`; navet's
/// own status writes (`error`, back to `active`) keep what they set. Other types pass unchanged.
pub fn checked<'a>(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    prepared: &'a Prepared,
    id: &str,
    owner: &str,
) -> Result<Cow<'a, Prepared>, ApiError> {
    if prepared.resource.resource_type() != "Subscription" {
        return Ok(Cow::Borrowed(prepared));
    }
    let value = prepared.resource.value();
    let criteria = value.get("criteria").and_then(Value::as_str).unwrap_or("");
    Criteria::parse(ctx, criteria)?;
    let channel = Channel::of(value)?;
    crate::outbox::config::check_endpoint(&channel.endpoint, owner, &ctx.outbox_allow)
        .map_err(|e| ApiError::invalid("Subscription.channel.endpoint", e))?;
    let status = value.get("status").and_then(Value::as_str).unwrap_or("");
    let by_navet = tx.actor().is_system();
    let status = match status {
        "requested" | "active" => "active",
        "off" => "off",
        "error" if by_navet => "error",
        other => {
            return Err(ApiError::invalid(
                "Subscription.status",
                format!("'{other}' cannot be set by a client: give requested (or off)"),
            ));
        }
    };
    register(tx, id)?;
    let mut value = value.clone();
    value["status"] = json!(status);
    if status == "active"
        && let Some(members) = value.as_object_mut()
    {
        members.remove("error");
    }
    let bytes = serde_json::to_vec(&value).map_err(ApiError::internal)?;
    Ok(Cow::Owned(Prepared {
        resource: crate::fhir::json::IncomingResource::parse(&bytes)?,
        from_message: prepared.from_message,
    }))
}

fn registry(tx: &mut dyn WriteTx) -> Result<Vec<String>, ApiError> {
    Ok(tx
        .setting(REGISTRY_KEY)?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default())
}

fn register(tx: &mut dyn WriteTx, id: &str) -> Result<(), ApiError> {
    let mut ids = registry(tx)?;
    if !ids.iter().any(|i| i == id) {
        ids.push(id.to_owned());
        tx.set_setting(
            REGISTRY_KEY,
            &serde_json::to_string(&ids).map_err(ApiError::internal)?,
        )?;
    }
    Ok(())
}

/// The outbox payload of a notification: which version it is about (the body is made at send time, as the
/// subscriber may see it then).
pub fn reference_payload(ty: &str, id: &str, version: i64) -> String {
    json!({"resource": format!("{ty}/{id}"), "version": version}).to_string()
}

/// Called by `ops::write_version` after the version is stored: one outbox message per Subscription (active,
/// or in error and still retried) whose criteria match the resource as its subscriber sees it.
pub fn notify(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    ty: &str,
    id: &str,
    version: i64,
    patients: &[String],
) -> Result<(), ApiError> {
    if !SUBSCRIBABLE.contains(&ty) {
        return Ok(());
    }
    let ids = registry(tx)?;
    let mut kept = Vec::with_capacity(ids.len());
    for sid in &ids {
        let Some(sub) = tx.current("Subscription", sid)? else {
            continue;
        };
        let Some(value) = sub
            .json
            .as_deref()
            .and_then(|j| serde_json::from_str::<Value>(j).ok())
        else {
            continue; // deleted: dropped from the registry below
        };
        kept.push(sid.clone());
        if !matches!(
            value.get("status").and_then(Value::as_str),
            Some("active" | "error")
        ) {
            continue;
        }
        // Checked when the Subscription was written; one that no longer parses matches nothing.
        let Some(criteria) = value
            .get("criteria")
            .and_then(Value::as_str)
            .and_then(|c| Criteria::parse(ctx, c).ok())
        else {
            continue;
        };
        if criteria.resource_type != ty {
            continue;
        }
        // A query that cannot be narrowed matches nothing: a subscriber's criteria never fail a clinical write.
        let Ok(query) = criteria.for_id(ctx, id) else {
            continue;
        };
        if tx
            .search_ids_as(&subscriber(&sub.owner), ty, &query, 1)?
            .is_empty()
        {
            continue;
        }
        let mut message = NewMessage::new(
            format!("{DESTINATION_PREFIX}{sid}"),
            patients.first().cloned(),
            FULL_PAYLOAD,
            reference_payload(ty, id, version),
        );
        // Stable: one notification per (subscription, version); a retry carries the same id.
        message.id = format!("sub-{sid}-{ty}-{id}-{version}");
        tx.enqueue(message)?;
    }
    if kept.len() != ids.len() {
        tx.set_setting(
            REGISTRY_KEY,
            &serde_json::to_string(&kept).map_err(ApiError::internal)?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx() -> Arc<FhirContext> {
        static CTX: std::sync::OnceLock<Arc<FhirContext>> = std::sync::OnceLock::new();
        CTX.get_or_init(FhirContext::embedded).clone()
    }

    #[test]
    fn criteria_are_a_search_on_a_subscribable_type() {
        let ctx = ctx();
        let c = Criteria::parse(&ctx, "Task?status=requested").expect("criteria");
        assert_eq!(c.resource_type, "Task");
        assert_eq!(c.pairs, [("status".to_owned(), "requested".to_owned())]);
        assert_eq!(Criteria::parse(&ctx, "Encounter").expect("all").pairs, []);
        for bad in [
            "Patient?name=x",
            "Task?nonsense=1",
            "Task?_count=5",
            "",
            "?status=x",
        ] {
            let e = Criteria::parse(&ctx, bad).expect_err(bad);
            assert!(
                matches!(e, ApiError::Invalid(ref i) if i[0].path == "Subscription.criteria"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_channel_is_a_rest_hook_with_valid_headers() {
        let sub = |channel: Value| json!({"channel": channel});
        let ch = Channel::of(&sub(
            json!({"type": "rest-hook", "endpoint": "https://h.example/x",
            "payload": "application/fhir+json", "header": ["Authorization: Bearer abc", "X-A:1"]}),
        ))
        .expect("channel");
        assert!(ch.full);
        assert_eq!(
            ch.headers,
            [
                ("Authorization".into(), "Bearer abc".into()),
                ("X-A".into(), "1".into())
            ]
        );
        for (bad, path) in [
            (
                json!({"type": "websocket", "endpoint": "https://h/x"}),
                "Subscription.channel.type",
            ),
            (
                json!({"type": "rest-hook", "endpoint": "ftp://h/x"}),
                "Subscription.channel.endpoint",
            ),
            (
                json!({"type": "rest-hook", "endpoint": "https://h/x", "payload": "text/xml"}),
                "Subscription.channel.payload",
            ),
            (
                json!({"type": "rest-hook", "endpoint": "https://h/x", "header": ["no colon"]}),
                "Subscription.channel.header[0]",
            ),
        ] {
            let e = Channel::of(&sub(bad)).expect_err(path);
            assert!(
                matches!(e, ApiError::Invalid(ref i) if i[0].path == path),
                "{path}"
            );
        }
    }

    proptest! {
        #[test]
        fn criteria_and_channels_never_panic(text in ".{0,200}", header in ".{0,80}") {
            let ctx = ctx();
            let _ = Criteria::parse(&ctx, &text);
            let _ = Channel::of(&json!({"channel": {"type": "rest-hook", "endpoint": text, "header": [header]}}));
        }
    }
}
