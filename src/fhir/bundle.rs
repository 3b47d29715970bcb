//! `transaction` and `batch` Bundles (FHIR R4 4.0.1 §3.1.0.11 and bundle.html#transaction).
//!
//! A transaction runs as one store job: every entry succeeds or nothing is stored. Entries are processed
//! in the order the spec gives (DELETE, POST, PUT, GET) and answered in the order they came. `urn:uuid:`
//! full URLs and conditional references (`Patient?identifier=…`) are rewritten to the ids they resolve to.
//! A batch runs each entry as its own job; one entry's failure is its own response.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::audit::{AuditRecord, Outcome};
use crate::auth::Interaction;
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::fhir::json::IncomingResource;
use crate::fhir::ops::{self, Condition, Prepared, WriteOutcome, WriteStatus};
use crate::http::audit::note_version;
use crate::store::{Actor, Store, StoredVersion, WriteTx};

/// A Bundle as navet reads it: its type and its entries (everything else in it is not looked at).
#[derive(Debug)]
struct BundleIn {
    kind: BundleKind,
    entry: Vec<EntryIn>,
}

#[derive(Debug, Deserialize)]
struct EntryIn {
    #[serde(rename = "fullUrl")]
    full_url: Option<String>,
    resource: Option<Box<RawValue>>,
    request: Option<RequestIn>,
}

#[derive(Debug, Deserialize)]
struct RequestIn {
    method: String,
    url: String,
    #[serde(rename = "ifNoneExist")]
    if_none_exist: Option<String>,
    #[serde(rename = "ifMatch")]
    if_match: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Transaction,
    Batch,
}

/// One entry, checked and prepared before the store job runs (parsing and validation stay off the writer).
#[derive(Debug, Clone)]
enum Op {
    Create {
        prepared: Prepared,
        condition: Option<Condition>,
        full_url: Option<String>,
    },
    Update {
        prepared: Prepared,
        id: String,
        if_match: Option<i64>,
        full_url: Option<String>,
    },
    ConditionalUpdate {
        prepared: Prepared,
        condition: Condition,
        if_match: Option<i64>,
        full_url: Option<String>,
        /// The id a create gets when nothing matches, chosen up front so `fullUrl` references resolve.
        new_id: Option<String>,
        /// Whether the caller's scopes allow the create a non-matching condition leads to.
        may_create: bool,
    },
    Delete {
        ty: String,
        id: String,
        if_match: Option<i64>,
    },
    ConditionalDelete {
        ty: String,
        condition: Condition,
    },
    Read {
        ty: String,
        id: String,
    },
}

impl Op {
    /// The resource type and the scope interactions the entry needs (a conditional update may also create;
    /// that is checked when it runs, see [`Op::ConditionalUpdate`]'s `may_create`).
    fn needs(&self) -> (&str, Interaction) {
        match self {
            Op::Create { prepared, .. } => (prepared.resource.resource_type(), Interaction::Create),
            Op::Update { prepared, .. } | Op::ConditionalUpdate { prepared, .. } => {
                (prepared.resource.resource_type(), Interaction::Update)
            }
            Op::Delete { ty, .. } | Op::ConditionalDelete { ty, .. } => (ty, Interaction::Delete),
            Op::Read { ty, .. } => (ty, Interaction::Read),
        }
    }

    /// FHIR's processing order for a transaction (bundle.html#transaction, "Processing Rules").
    fn rank(&self) -> u8 {
        match self {
            Op::Delete { .. } | Op::ConditionalDelete { .. } => 0,
            Op::Create { .. } => 1,
            Op::Update { .. } | Op::ConditionalUpdate { .. } => 2,
            Op::Read { .. } => 3,
        }
    }
}

/// The answer to one entry: HTTP-like status, location, and the version (for etag/lastModified/resource).
#[derive(Debug, Clone)]
pub struct EntryResult {
    pub status: u16,
    pub outcome: Option<WriteOutcome>,
    pub read: Option<StoredVersion>,
    pub error: Option<ApiErrorSummary>,
    /// Warnings to answer with the entry (`response.outcome`), e.g. an order of more than 4 doses a day.
    pub warnings: Vec<String>,
}

/// An entry's error, kept as status and OperationOutcome JSON (ApiError is not Clone).
#[derive(Debug, Clone)]
pub struct ApiErrorSummary {
    pub status: u16,
    pub outcome: serde_json::Value,
}

impl From<&ApiError> for ApiErrorSummary {
    fn from(e: &ApiError) -> Self {
        ApiErrorSummary {
            status: e.status().as_u16(),
            outcome: e.to_outcome().to_json(),
        }
    }
}

/// Parses a Bundle and tells transaction from batch; anything else is 400 (or 422 for another type).
///
/// More than `max_entries` entries is refused with 413 as soon as entry `max_entries + 1` is reached: an
/// oversized Bundle costs reading up to the limit, not building all of its entries (issue 8). Then one more
/// pass over the text refuses a member name given twice anywhere in the Bundle, entries' resources included
/// (see [`crate::fhir::json::check_unique_names`]).
fn parse_bundle(bytes: &[u8], max_entries: usize) -> Result<BundleIn, ApiError> {
    let over = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = BundleSeed {
        max_entries,
        over: &over,
    }
    .deserialize(&mut de)
    .and_then(|b| de.end().map(|()| b));
    let (resource_type, kind, entry) = match parsed {
        Err(_) if over.get() => {
            return Err(ApiError::OverLimit(format!(
                "the Bundle has more than {max_entries} entries, the most navet processes in one request \
                 ([limits] max_bundle_entries); send the entries in several Bundles"
            )));
        }
        Err(e) => {
            return Err(ApiError::BadRequest(format!(
                "the body is not a valid Bundle: {e}"
            )));
        }
        Ok(parts) => parts,
    };
    if resource_type != "Bundle" {
        return Err(ApiError::BadRequest(format!(
            "POST to the base URL takes a Bundle, not a {resource_type}"
        )));
    }
    let kind = match kind.as_deref() {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        other => {
            return Err(ApiError::Invalid(vec![crate::error::ElementIssue {
                path: "Bundle.type".into(),
                message: format!(
                    "the base URL processes Bundles of type transaction or batch, not {}",
                    other.unwrap_or("(missing)")
                ),
            }]));
        }
    };
    crate::fhir::json::check_unique_names(bytes)?;
    Ok(BundleIn { kind, entry })
}

/// `resourceType`, `type` and `entry` of a Bundle, with `entry` counted while it is read.
struct BundleSeed<'a> {
    max_entries: usize,
    over: &'a Cell<bool>,
}

type BundleParts = (String, Option<String>, Vec<EntryIn>);

impl<'de> DeserializeSeed<'de> for BundleSeed<'_> {
    type Value = BundleParts;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<BundleParts, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BundleSeed<'_> {
    type Value = BundleParts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Bundle (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BundleParts, A::Error> {
        let (mut resource_type, mut kind, mut entry) = (None, None, None);
        while let Some(name) = map.next_key::<String>()? {
            match name.as_str() {
                "resourceType" if resource_type.is_none() => {
                    resource_type = Some(map.next_value::<String>()?)
                }
                "type" if kind.is_none() => kind = Some(map.next_value::<Option<String>>()?),
                "entry" if entry.is_none() => {
                    entry = Some(map.next_value_seed(EntriesSeed {
                        max_entries: self.max_entries,
                        over: self.over,
                    })?)
                }
                "resourceType" | "type" | "entry" => {
                    return Err(de::Error::duplicate_field("resourceType, type or entry"));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let resource_type =
            resource_type.ok_or_else(|| de::Error::missing_field("resourceType"))?;
        Ok((resource_type, kind.flatten(), entry.unwrap_or_default()))
    }
}

/// `Bundle.entry`, refused past `max_entries` (then `over` tells that error from a syntax error).
struct EntriesSeed<'a> {
    max_entries: usize,
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = Vec<EntryIn>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<EntryIn>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = Vec<EntryIn>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<EntryIn>, A::Error> {
        let mut entries = Vec::new();
        loop {
            if entries.len() == self.max_entries {
                // One more entry, skimmed without keeping it, decides whether the list is too long.
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    self.over.set(true);
                    return Err(de::Error::custom("too many entries"));
                }
                return Ok(entries);
            }
            match seq.next_element::<EntryIn>()? {
                Some(e) => entries.push(e),
                None => return Ok(entries),
            }
        }
    }
}

fn prefix_paths(e: ApiError, index: usize) -> ApiError {
    let at = format!("Bundle.entry[{index}]");
    match e {
        ApiError::Invalid(issues) => ApiError::Invalid(
            issues
                .into_iter()
                .map(|mut i| {
                    i.path = if i.path.is_empty() {
                        at.clone()
                    } else {
                        // `Patient.name` inside entry 2 is `Bundle.entry[2].resource.name`.
                        let rest = i.path.split_once('.').map(|(_, r)| r).unwrap_or("");
                        if rest.is_empty() {
                            format!("{at}.resource")
                        } else {
                            format!("{at}.resource.{rest}")
                        }
                    };
                    i
                })
                .collect(),
        ),
        ApiError::BadRequest(m) => ApiError::BadRequest(format!("{at}: {m}")),
        ApiError::NotFound(m) => ApiError::NotFound(format!("{at}: {m}")),
        ApiError::PreconditionFailed(m) => ApiError::PreconditionFailed(format!("{at}: {m}")),
        ApiError::Conflict(m) => ApiError::Conflict(format!("{at}: {m}")),
        ApiError::Gone(m) => ApiError::Gone(format!("{at}: {m}")),
        ApiError::Forbidden(m) => ApiError::Forbidden(format!("{at}: {m}")),
        ApiError::InsufficientScope(m) => ApiError::InsufficientScope(format!("{at}: {m}")),
        other => other,
    }
}

fn parse_if_match(v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(crate::fhir::ops::parse_etag).transpose()
}

fn prepare_entry(ctx: &FhirContext, e: &EntryIn) -> Result<Op, ApiError> {
    let request = e.request.as_ref().ok_or_else(|| {
        ApiError::invalid("request", "every entry needs a request (method and url)")
    })?;
    let url = request.url.trim_start_matches('/');
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let if_match = parse_if_match(request.if_match.as_deref())?;
    let resource = |expected: &str| -> Result<Prepared, ApiError> {
        let raw = e.resource.as_ref().ok_or_else(|| {
            ApiError::invalid(
                "resource",
                format!("a {} entry needs a resource", request.method),
            )
        })?;
        ops::prepare_parsed(ctx, IncomingResource::from_raw(raw)?, Some(expected))
    };
    let known = |ty: &str| -> Result<(), ApiError> {
        if ctx.structure.is_resource_type(ty) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "'{ty}' is not a FHIR R4 resource type"
            )))
        }
    };
    match (request.method.as_str(), segments.as_slice(), query) {
        ("POST", [ty], None) => {
            known(ty)?;
            let condition = request
                .if_none_exist
                .as_deref()
                .map(|q| Condition::parse(ctx, ty, q))
                .transpose()?;
            let prepared = resource(ty)?;
            // An order sent again (same identifier) is stored once (spec/ordination.md v2).
            let condition = match condition {
                Some(c) => Some(c),
                None => crate::ordination::intake::implicit_condition(ctx, &prepared, false)?,
            };
            Ok(Op::Create {
                prepared,
                condition,
                full_url: e.full_url.clone(),
            })
        }
        ("PUT", [ty, id], None) => {
            known(ty)?;
            ops::check_id(id)?;
            let prepared = resource(ty)?;
            ops::check_body_id(&prepared, id)?;
            Ok(Op::Update {
                prepared,
                id: (*id).to_owned(),
                if_match,
                full_url: e.full_url.clone(),
            })
        }
        ("PUT", [ty], Some(q)) => {
            known(ty)?;
            Ok(Op::ConditionalUpdate {
                prepared: resource(ty)?,
                condition: Condition::parse(ctx, ty, q)?,
                if_match,
                full_url: e.full_url.clone(),
                new_id: None,
                may_create: true,
            })
        }
        ("DELETE", [ty, id], None) => {
            known(ty)?;
            Ok(Op::Delete {
                ty: (*ty).to_owned(),
                id: (*id).to_owned(),
                if_match,
            })
        }
        ("DELETE", [ty], Some(q)) => {
            known(ty)?;
            Ok(Op::ConditionalDelete {
                ty: (*ty).to_owned(),
                condition: Condition::parse(ctx, ty, q)?,
            })
        }
        ("GET", [ty, id], None) => {
            known(ty)?;
            Ok(Op::Read {
                ty: (*ty).to_owned(),
                id: (*id).to_owned(),
            })
        }
        (method, _, _) => Err(ApiError::NotSupported(format!(
            "entry request '{method} {}' is not supported in a Bundle (supported: POST Type, PUT Type/id, \
             PUT Type?query, DELETE Type/id, DELETE Type?query, GET Type/id)",
            request.url
        ))),
    }
}

/// The caller's authorization check for one resource type and interaction (scopes, acting user).
pub type Authorize<'a> = &'a (dyn Fn(&str, Interaction) -> Result<(), ApiError> + Sync);

/// Parses one entry and checks the caller may do what it asks.
fn authorized_entry(
    ctx: &FhirContext,
    e: &EntryIn,
    authorize: Authorize<'_>,
) -> Result<Op, ApiError> {
    let mut op = prepare_entry(ctx, e)?;
    let (ty, interaction) = op.needs();
    authorize(ty, interaction)?;
    if let Op::ConditionalUpdate {
        prepared,
        may_create,
        ..
    } = &mut op
    {
        *may_create = authorize(prepared.resource.resource_type(), Interaction::Create).is_ok();
    }
    Ok(op)
}

/// Processes a transaction or batch Bundle and answers the results in entry order. In a transaction an entry
/// the caller may not do refuses the whole Bundle; in a batch it answers that entry only. Takes at most
/// [`crate::config::DEFAULT_MAX_BUNDLE_ENTRIES`] entries (the API uses [`process_body`] and the configured cap).
pub async fn process(
    ctx: Arc<FhirContext>,
    store: &dyn Store,
    actor: &Actor,
    authorize: Authorize<'_>,
    audit: Option<AuditRecord>,
    bytes: &[u8],
) -> Result<(BundleKind, Vec<EntryResult>), ApiError> {
    let bundle = parse_bundle(bytes, crate::config::DEFAULT_MAX_BUNDLE_ENTRIES)?;
    run(ctx, store, actor, authorize, audit, bundle).await
}

/// [`process`] for a request body: at most `max_entries` entries, and the body's bytes are let go once the
/// entries are read, so a large Bundle is not held twice while it is processed.
pub async fn process_body(
    ctx: Arc<FhirContext>,
    store: &dyn Store,
    actor: &Actor,
    authorize: Authorize<'_>,
    audit: Option<AuditRecord>,
    max_entries: usize,
    body: Bytes,
) -> Result<(BundleKind, Vec<EntryResult>), ApiError> {
    let bundle = parse_bundle(&body, max_entries)?;
    drop(body);
    run(ctx, store, actor, authorize, audit, bundle).await
}

async fn run(
    ctx: Arc<FhirContext>,
    store: &dyn Store,
    actor: &Actor,
    authorize: Authorize<'_>,
    audit: Option<AuditRecord>,
    bundle: BundleIn,
) -> Result<(BundleKind, Vec<EntryResult>), ApiError> {
    let kind = bundle.kind;
    match kind {
        BundleKind::Transaction => {
            let mut ops_list = Vec::with_capacity(bundle.entry.len());
            let mut refused: Vec<ApiError> = Vec::new();
            // Each entry's raw text is dropped as soon as it is prepared. Every entry is checked, so one 422
            // names the failing elements of all of them (issue 11), not only the first entry's.
            for (i, e) in bundle.entry.into_iter().enumerate() {
                match authorized_entry(&ctx, &e, authorize) {
                    Ok(op) => ops_list.push(op),
                    Err(err) => refused.push(prefix_paths(err, i)),
                }
            }
            if let Some(err) = merge_refusals(refused) {
                return Err(err);
            }
            // An order's MedicationRequests sent again are stored once too (spec/ordination.md v2).
            let with_order = ops_list.iter().any(|op| {
                matches!(op, Op::Create { prepared, .. } if crate::ordination::intake::is_order_resource(&ctx, prepared))
            });
            if with_order {
                for op in ops_list.iter_mut() {
                    if let Op::Create {
                        prepared,
                        condition: condition @ None,
                        ..
                    } = op
                    {
                        *condition =
                            crate::ordination::intake::implicit_condition(&ctx, prepared, true)?;
                    }
                }
            }
            // Ids, reference rewriting and re-validation happen here, before the job reaches the single
            // writer; the writer only resolves what needs the store (conditional entries and references).
            let plan = plan_transaction(&ctx, ops_list)?;
            let job_ctx = ctx.clone();
            let results = store
                .transact(actor, move |tx| {
                    let mut results = run_transaction(&job_ctx, tx, plan)?;
                    // Orders: checked, planned and their work created in this transaction.
                    let made =
                        crate::ordination::intake::after_entries(&job_ctx, tx, &mut results, true)?;
                    // One record for the whole transaction, in its transaction.
                    if let Some(mut record) = audit {
                        for version in results
                            .iter()
                            .filter_map(|r| {
                                r.outcome.as_ref().map(|o| &o.version).or(r.read.as_ref())
                            })
                            .chain(made.iter())
                        {
                            note_version(&job_ctx.params, &mut record, version);
                        }
                        crate::audit::append(tx, &record)?;
                    }
                    Ok(results)
                })
                .await?;
            Ok((kind, results))
        }
        BundleKind::Batch => {
            let mut results = Vec::with_capacity(bundle.entry.len());
            for e in bundle.entry {
                // Each entry is its own transaction, with its own record (batch entries are independent).
                let mut record = audit.clone().map(|mut r| {
                    r.operation = "batch".into();
                    r
                });
                let result = match authorized_entry(&ctx, &e, authorize) {
                    Err(err) => error_result(&err),
                    Ok(op) => {
                        let job_ctx = ctx.clone();
                        let entry_record = record.take();
                        let run = store
                            .transact(actor, move |tx| {
                                let mut map = HashMap::new();
                                let mut result = run_op(&job_ctx, tx, op, &mut map)?;
                                let made = crate::ordination::intake::after_entries(
                                    &job_ctx,
                                    tx,
                                    std::slice::from_mut(&mut result),
                                    false,
                                )?;
                                if let Some(mut record) = entry_record {
                                    if let Some(v) = result
                                        .outcome
                                        .as_ref()
                                        .map(|o| &o.version)
                                        .or(result.read.as_ref())
                                    {
                                        note_version(&job_ctx.params, &mut record, v);
                                    }
                                    for v in &made {
                                        note_version(&job_ctx.params, &mut record, v);
                                    }
                                    record.status = result.status;
                                    crate::audit::append(tx, &record)?;
                                }
                                Ok(result)
                            })
                            .await;
                        if run.is_err() {
                            record = audit.clone().map(|mut r| {
                                r.operation = "batch".into();
                                r
                            });
                        }
                        run.unwrap_or_else(|err| error_result(&err))
                    }
                };
                // A refused or failed entry changed nothing; its record is written on its own.
                if let (Some(mut record), Some(error)) = (record, result.error.as_ref()) {
                    record.status = error.status;
                    record.outcome = Outcome::from_status(error.status);
                    // It changed nothing, so it goes to the access chain (no writer transaction needed).
                    crate::audit::log(store, actor, &record).await?;
                }
                results.push(result);
            }
            Ok((kind, results))
        }
    }
}

/// The one answer to a transaction whose entries were refused (none when none was): when every refusal is a
/// 422, one 422 with all their located issues; otherwise the first refusal that is not a 422 (a 400, 403 or
/// 404 says what to fix first).
fn merge_refusals(mut refused: Vec<ApiError>) -> Option<ApiError> {
    if refused.is_empty() {
        return None;
    }
    if let Some(first) = refused
        .iter()
        .position(|e| !matches!(e, ApiError::Invalid(_)))
    {
        return Some(refused.swap_remove(first));
    }
    let issues = refused
        .into_iter()
        .flat_map(|e| match e {
            ApiError::Invalid(issues) => issues,
            _ => Vec::new(),
        })
        .collect();
    Some(ApiError::Invalid(issues))
}

fn error_result(err: &ApiError) -> EntryResult {
    EntryResult {
        status: err.status().as_u16(),
        outcome: None,
        read: None,
        error: Some(err.into()),
        warnings: Vec::new(),
    }
}

/// A transaction made ready for the writer: entries in processing order, each flagged when it mentions a
/// key only the store can resolve; the ids chosen so far; the conditional references to resolve.
struct Plan {
    ordered: Vec<(usize, Op, bool)>,
    map: HashMap<String, String>,
    conditional_refs: Vec<(String, Condition)>,
}

/// Everything about a transaction that needs no store, done before it is queued for the writer: ids for
/// creates and updates that name their target, every reference to them rewritten, conditional references
/// parsed, re-validation. Each step is one pass over the entries with hash lookups, so the work grows
/// linearly with the Bundle (issue 8: trying every `fullUrl` on every resource was quadratic).
fn plan_transaction(ctx: &Arc<FhirContext>, ops_list: Vec<Op>) -> Result<Plan, ApiError> {
    let mut map: HashMap<String, String> = HashMap::new();
    // Keys resolved only in the writer: the full URLs of conditional creates and updates, and conditional
    // references (`Type?query`), which depend on what is stored when the transaction runs.
    let mut late_keys: HashSet<String> = HashSet::new();
    let mut conditional_refs: Vec<String> = Vec::new();
    for op in &ops_list {
        match op {
            // An update's target is known (PUT Type/id), so a `urn:uuid` fullUrl on it resolves like a
            // create's.
            Op::Update {
                prepared,
                id,
                full_url: Some(full_url),
                ..
            } => {
                map.insert(
                    full_url.clone(),
                    format!("{}/{id}", prepared.resource.resource_type()),
                );
            }
            Op::Create {
                prepared,
                condition: None,
                full_url: Some(full_url),
            } => {
                map.insert(
                    full_url.clone(),
                    format!(
                        "{}/{}",
                        prepared.resource.resource_type(),
                        uuid::Uuid::new_v4()
                    ),
                );
            }
            Op::Create {
                condition: Some(_),
                full_url: Some(full_url),
                ..
            }
            | Op::ConditionalUpdate {
                full_url: Some(full_url),
                ..
            } => {
                late_keys.insert(full_url.clone());
            }
            _ => {}
        }
        if let Some(p) = op_prepared(op) {
            collect_conditional_refs(p.resource.value(), &mut conditional_refs);
        }
    }
    conditional_refs.sort();
    conditional_refs.dedup();
    let conditional_refs = conditional_refs
        .into_iter()
        .map(|reference| {
            let (ty, q) = reference.split_once('?').unwrap_or((&reference, ""));
            let cond = Condition::parse(ctx, ty, q)?;
            Ok((reference, cond))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    late_keys.extend(conditional_refs.iter().map(|(r, _)| r.clone()));
    // A key the writer resolves wins over one chosen here (a fullUrl given twice).
    map.retain(|k, _| !late_keys.contains(k));
    let mut ordered = Vec::with_capacity(ops_list.len());
    for (i, mut op) in ops_list.into_iter().enumerate() {
        let mut late = false;
        if let Some(p) = op_prepared_mut(&mut op) {
            unresolved_uuids(p, &map, &late_keys).map_err(|e| prefix_paths(e, i))?;
            if p.resource.rewrite_references(&map) {
                ops::revalidate(ctx, p).map_err(|e| prefix_paths(e, i))?;
            }
            late = p.resource.mentions_any(&late_keys);
        }
        ordered.push((i, op, late));
    }
    ordered.sort_by_key(|(i, op, _)| (op.rank(), *i));
    Ok(Plan {
        ordered,
        map,
        conditional_refs,
    })
}

/// The writer's part of a transaction: resolve conditional entries and references against the store,
/// rewrite the entries that mention them, and store every entry in processing order; answer in entry order.
fn run_transaction(
    ctx: &Arc<FhirContext>,
    tx: &mut dyn WriteTx,
    plan: Plan,
) -> Result<Vec<EntryResult>, ApiError> {
    let Plan {
        mut ordered,
        mut map,
        conditional_refs,
    } = plan;
    // 1. Conditional creates and updates with a fullUrl: find (or choose) their ids.
    for (i, op, _) in ordered.iter_mut() {
        if let Op::ConditionalUpdate {
            prepared,
            condition,
            full_url: Some(full_url),
            new_id,
            ..
        } = op
        {
            let ty = prepared.resource.resource_type().to_owned();
            let ids = tx.search_ids(&ty, &condition.query, 2)?;
            let id = match ids.as_slice() {
                [one] => one.clone(),
                [] => {
                    let id = prepared
                        .resource
                        .body_id()
                        .map(str::to_owned)
                        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                    *new_id = Some(id.clone());
                    id
                }
                // More than one match: the entry itself answers 412 when it runs.
                _ => continue,
            };
            map.insert(full_url.clone(), format!("{ty}/{id}"));
            continue;
        }
        if let Op::Create {
            prepared,
            full_url: Some(full_url),
            condition: Some(c),
        } = op
        {
            let ty = prepared.resource.resource_type().to_owned();
            let ids = tx.search_ids(&ty, &c.query, 2)?;
            if ids.len() > 1 {
                return Err(prefix_paths(
                    ApiError::PreconditionFailed(format!(
                        "ifNoneExist '{}' matches more than one {ty}",
                        c.key
                    )),
                    *i,
                ));
            }
            let id = ids
                .into_iter()
                .next()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            map.insert(full_url.clone(), format!("{ty}/{id}"));
        }
    }
    // 2. Conditional references: `Type?query` strings in references resolve to exactly one resource.
    for (reference, cond) in &conditional_refs {
        let ty = reference
            .split_once('?')
            .map_or(reference.as_str(), |(t, _)| t);
        let ids = tx.search_ids(ty, &cond.query, 2)?;
        match ids.as_slice() {
            [id] => {
                map.insert(reference.clone(), format!("{ty}/{id}"));
            }
            [] => {
                return Err(ApiError::PreconditionFailed(format!(
                    "the conditional reference '{reference}' matches no resource"
                )));
            }
            _ => {
                return Err(ApiError::PreconditionFailed(format!(
                    "the conditional reference '{reference}' matches more than one resource"
                )));
            }
        }
    }
    // 3. Rewrite what mentions the keys just resolved, re-check it, run in processing order.
    let mut results: Vec<(usize, EntryResult)> = Vec::with_capacity(ordered.len());
    for (i, mut op, late) in ordered {
        if late && let Some(p) = op_prepared_mut(&mut op) {
            p.resource.rewrite_references(&map);
            ops::revalidate(ctx, p).map_err(|e| prefix_paths(e, i))?;
        }
        let result = run_op(ctx, tx, op, &mut map).map_err(|e| prefix_paths(e, i))?;
        results.push((i, result));
    }
    results.sort_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

/// A `urn:uuid:` reference in a transaction names another entry's `fullUrl` (FHIR R4 4.0.1 bundle.html
/// #references): one that names none would be stored pointing nowhere, so the transaction is refused (422,
/// naming each such reference).
fn unresolved_uuids(
    prepared: &Prepared,
    map: &HashMap<String, String>,
    late_keys: &HashSet<String>,
) -> Result<(), ApiError> {
    fn walk(
        value: &serde_json::Value,
        path: &mut String,
        map: &HashMap<String, String>,
        late_keys: &HashSet<String>,
        out: &mut Vec<crate::error::ElementIssue>,
    ) {
        match value {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let mark = path.len();
                    path.push('.');
                    path.push_str(k);
                    if k == "reference"
                        && let serde_json::Value::String(s) = v
                        && s.starts_with("urn:uuid:")
                        && !map.contains_key(s)
                        && !late_keys.contains(s)
                    {
                        out.push(crate::error::ElementIssue {
                            path: path.clone(),
                            message: format!(
                                "'{s}' is the fullUrl of no entry in this transaction: a urn:uuid reference \
                                 must name an entry of the Bundle"
                            ),
                        });
                    } else {
                        walk(v, path, map, late_keys, out);
                    }
                    path.truncate(mark);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let mark = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, path, map, late_keys, out);
                    path.truncate(mark);
                }
            }
            _ => {}
        }
    }
    let mut path = prepared.resource.resource_type().to_owned();
    let mut issues = Vec::new();
    walk(
        prepared.resource.value(),
        &mut path,
        map,
        late_keys,
        &mut issues,
    );
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(issues))
    }
}

fn op_prepared(op: &Op) -> Option<&Prepared> {
    match op {
        Op::Create { prepared, .. }
        | Op::Update { prepared, .. }
        | Op::ConditionalUpdate { prepared, .. } => Some(prepared),
        _ => None,
    }
}

fn op_prepared_mut(op: &mut Op) -> Option<&mut Prepared> {
    match op {
        Op::Create { prepared, .. }
        | Op::Update { prepared, .. }
        | Op::ConditionalUpdate { prepared, .. } => Some(prepared),
        _ => None,
    }
}

/// `reference` strings of the form `Type?query` (FHIR R4 §3.1.0.11.2 conditional references).
fn collect_conditional_refs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if k == "reference"
                    && let serde_json::Value::String(s) = v
                    && let Some((ty, _)) = s.split_once('?')
                    && !ty.is_empty()
                    && ty.chars().all(|c| c.is_ascii_alphabetic())
                    && ty.starts_with(|c: char| c.is_ascii_uppercase())
                {
                    out.push(s.clone());
                } else {
                    collect_conditional_refs(v, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|v| collect_conditional_refs(v, out))
        }
        _ => {}
    }
}

fn written(outcome: WriteOutcome) -> EntryResult {
    let status = match outcome.status {
        WriteStatus::Created => 201,
        WriteStatus::Updated | WriteStatus::Existing => 200,
        WriteStatus::Deleted | WriteStatus::AlreadyDeleted => 204,
    };
    EntryResult {
        status,
        outcome: Some(outcome),
        read: None,
        error: None,
        warnings: Vec::new(),
    }
}

fn run_op(
    ctx: &Arc<FhirContext>,
    tx: &mut dyn WriteTx,
    op: Op,
    map: &mut HashMap<String, String>,
) -> Result<EntryResult, ApiError> {
    match op {
        Op::Create {
            prepared,
            condition,
            full_url,
        } => {
            // The id chosen while resolving references, so what points at it stays right.
            let id = full_url
                .as_ref()
                .and_then(|u| map.get(u))
                .and_then(|r| r.split_once('/').map(|(_, id)| id.to_owned()));
            let outcome = ops::create(ctx, tx, &prepared, id, condition.as_ref())?;
            Ok(written(outcome))
        }
        Op::Update {
            prepared,
            id,
            if_match,
            ..
        } => Ok(written(ops::update(ctx, tx, &prepared, &id, if_match)?)),
        Op::ConditionalUpdate {
            prepared,
            condition,
            if_match,
            new_id,
            may_create,
            ..
        } => Ok(written(ops::conditional_update(
            ctx,
            tx,
            &prepared,
            &condition,
            ops::IfNew {
                if_match,
                id: new_id,
                may_create,
            },
        )?)),
        Op::Delete { ty, id, if_match } => Ok(written(ops::delete(tx, &ty, &id, if_match)?)),
        Op::ConditionalDelete { ty, condition } => {
            match ops::conditional_delete(tx, &ty, &condition)? {
                Some(outcome) => Ok(written(outcome)),
                None => Ok(EntryResult {
                    status: 204,
                    outcome: None,
                    read: None,
                    error: None,
                    warnings: Vec::new(),
                }),
            }
        }
        Op::Read { ty, id } => match tx.current(&ty, &id)? {
            Some(_) if !tx.visible(&ty, &id)? => {
                Err(ApiError::NotFound(format!("{ty}/{id} does not exist")))
            }
            None => Err(ApiError::NotFound(format!("{ty}/{id} does not exist"))),
            Some(v) if v.deleted => Err(ApiError::Gone(format!("{ty}/{id} was deleted"))),
            // Redacted where it leaves navet (http/fhir.rs), like every other answer.
            Some(v) => Ok(EntryResult {
                status: 200,
                outcome: None,
                read: Some(v),
                error: None,
                warnings: Vec::new(),
            }),
        },
    }
}
