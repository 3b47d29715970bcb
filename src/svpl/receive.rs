//! Receiving one SVPL message (spec/svpl-messages.md "Transport", "Rules navet enforces"): read it, check the
//! rules, find its case and patient, translate it, write the resources, keep the message and its receipt,
//! and log it, all in one transaction, and answer the `Kvittens`. Knows no HTTP: the handler
//! (`http/svpl.rs`) hands it the bytes, the acting principal and the request's access-log record.
//!
//! - Idempotency: (sender, message id) is the key of the kept message (store/inbound.rs). A repeat answers
//!   the first receipt byte for byte and writes nothing but its access-log record. The check and the insert
//!   run in one job on the store's single writer, so two concurrent repeats cannot both write.
//! - A refusal writes nothing but its access-log record: every check runs before the first write, and a
//!   write that still fails rolls the job back and is logged in a transaction of its own.

use std::sync::Arc;

use serde_json::Value;

use super::kvittens::{Fel, FelCode, Kvittens, NAVET_SENDER, Status, refusal_status};
use super::message::{self, Body, Message, MessageKind, Partial};
use super::translate::{self, Case, Context, Current, Translation};
use super::{FORMAT, MAX_MESSAGE_BYTES, SvplContext};
use crate::audit::{AuditRecord, Outcome};
use crate::auth::Interaction;
use crate::domain::PatientIdentifier;
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::fhir::ops;
use crate::store::inbound::InboundMessage;
use crate::store::{Actor, Store, WriteTx};

/// What navet answers: the HTTP status and the receipt's XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub receipt: String,
    /// The message was stored now (false for a repeat and for a refusal).
    pub stored: bool,
}

/// What the caller's access token allows (its SMART scopes): a message is refused when it would write a
/// resource type the token may not create or update.
pub type Permits = Arc<dyn Fn(&str, Interaction) -> bool + Send + Sync>;

/// The request body: the bytes, or the fact that it passed [`MAX_MESSAGE_BYTES`] (then not read further).
#[derive(Debug, Clone)]
pub enum Incoming {
    Bytes(Vec<u8>),
    TooLarge,
}

/// Receives a message from `actor` (the token's principal); `record` is the request's access-log record.
pub async fn receive(
    svpl: Arc<SvplContext>,
    fhir: Arc<FhirContext>,
    store: &dyn Store,
    actor: &Actor,
    permits: Permits,
    record: AuditRecord,
    incoming: Incoming,
) -> Result<Answer, ApiError> {
    let bytes = match incoming {
        Incoming::Bytes(b) if b.len() <= MAX_MESSAGE_BYTES => b,
        _ => {
            let fel = Fel {
                code: FelCode::ForStor,
                field: "/".into(),
                text: format!("the message is larger than {MAX_MESSAGE_BYTES} bytes"),
            };
            return refuse(
                &svpl,
                &fhir,
                store,
                actor,
                record,
                Partial::default(),
                vec![fel],
            )
            .await;
        }
    };
    let message = match message::read(&bytes, &svpl.mapping) {
        Ok(m) => m,
        Err(refusal) => {
            return refuse(
                &svpl,
                &fhir,
                store,
                actor,
                record,
                *refusal.partial,
                refusal.errors,
            )
            .await;
        }
    };
    let mut errors = static_checks(&svpl, actor, &message);
    let partial = Partial {
        id: Some(message.envelope.id.clone()),
        sender: Some(message.envelope.sender.hsa.to_string()),
        kind: Some(message.envelope.kind.as_str().to_owned()),
        patient: Some(message.envelope.patient.id.clone()),
    };
    if !errors.is_empty() {
        errors.sort_by_key(|f| f.code);
        return refuse(&svpl, &fhir, store, actor, record, partial, errors).await;
    }
    let job = {
        let (svpl, fhir, record) = (svpl.clone(), fhir.clone(), record.clone());
        move |tx: &mut dyn WriteTx| accept(&svpl, &fhir, tx, &permits, record, message, bytes)
    };
    match store.transact(actor, job).await {
        Ok(answer) => Ok(answer),
        // A resource the translation made that FHIR validation refuses: the message carried a value navet's
        // checks let through (the job rolled back; nothing is stored).
        Err(e @ (ApiError::Invalid(_) | ApiError::BadRequest(_) | ApiError::Conflict(_))) => {
            let text = match &e {
                ApiError::Invalid(issues) => issues
                    .iter()
                    .map(|i| format!("{}: {}", i.path, i.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            };
            let fel = Fel {
                code: FelCode::Schema,
                field: "/".into(),
                text: format!("the message translates to FHIR navet cannot store: {text}"),
            };
            refuse(&svpl, &fhir, store, actor, record, partial, vec![fel]).await
        }
        Err(e) => Err(e),
    }
}

/// The rules that need no stored data: the sender is the caller, the recipients are known principals.
fn static_checks(svpl: &SvplContext, actor: &Actor, m: &Message) -> Vec<Fel> {
    let map = &svpl.mapping;
    let e = &m.envelope;
    let mut errors = Vec::new();
    if e.sender.hsa.as_str() != &*actor.principal {
        errors.push(Fel {
            code: FelCode::Avsandare,
            field: map.xpath("sender.hsa", None),
            text: "Avsandare is not the principal of the access token".into(),
        });
    }
    for (i, r) in e.recipients.iter().enumerate() {
        if !svpl.knows(r.hsa.as_str()) {
            errors.push(Fel {
                code: FelCode::MottagareOkand,
                field: map.xpath("recipient.hsa", Some(("recipient", i))),
                text: "navet knows no principal or care unit with this HSA-id".into(),
            });
        }
    }
    let named_in_body: Vec<(&str, String)> = match &m.body {
        Body::SipKallelse(k) => k
            .participants
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                (
                    h.as_str(),
                    map.xpath(
                        "kallelse.participant.hsa",
                        Some(("kallelse.participant", i)),
                    ),
                )
            })
            .collect(),
        Body::SipPlan(p) => {
            let mut v: Vec<(&str, String)> = p
                .insatser
                .iter()
                .enumerate()
                .filter_map(|(i, x)| {
                    Some((
                        x.performer.as_deref()?,
                        map.xpath("plan.insats.performer", Some(("plan.insats", i))),
                    ))
                })
                .collect();
            v.push((p.responsible.as_str(), map.xpath("plan.responsible", None)));
            v
        }
        _ => Vec::new(),
    };
    for (hsa, field) in named_in_body {
        if !svpl.knows(hsa) {
            errors.push(Fel {
                code: FelCode::MottagareOkand,
                field,
                text: "navet knows no principal or care unit with this HSA-id".into(),
            });
        }
    }
    // The admission notice makes a Task for the listed vårdcentral: it must be someone navet knows.
    if let (MessageKind::Inskrivningsmeddelande | MessageKind::Utskrivningsklar, Some(listed)) =
        (e.kind, &e.patient.listed_at)
        && !svpl.knows(listed.as_str())
    {
        errors.push(Fel {
            code: FelCode::MottagareOkand,
            field: map.xpath("patient.listed_at", None),
            text: "navet knows no vårdcentral with this HSA-id".into(),
        });
    }
    errors
}

/// The job of an accepted (or repeated) message.
fn accept(
    svpl: &SvplContext,
    fhir: &FhirContext,
    tx: &mut dyn WriteTx,
    permits: &Permits,
    mut record: AuditRecord,
    message: Message,
    bytes: Vec<u8>,
) -> Result<Answer, ApiError> {
    let map = &svpl.mapping;
    let e = &message.envelope;
    let sender = e.sender.hsa.as_str().to_owned();
    // Repeats of one message take turns (on PostgreSQL two nodes may receive them at once): the second finds
    // the first stored and answers its receipt.
    tx.serialize_on("svpl-message", &format!("{sender}|{}", e.id))?;
    if let Some(first) = tx.inbound_message(FORMAT, &sender, &e.id)? {
        // A repeat: the first receipt, and nothing stored.
        if let Some(p) = &first.patient {
            record.add_patient(p.clone());
        }
        record.entities.extend(first.created.iter().cloned());
        log(tx, record, 200)?;
        return Ok(Answer {
            status: 200,
            receipt: first.receipt,
            stored: false,
        });
    }
    let (now_text, now_ms) = tx.now();
    let received =
        jiff::Timestamp::from_millisecond(now_ms).unwrap_or_else(|_| jiff::Timestamp::now());
    let existing_patient = find_patient(fhir, tx, &e.patient.id)?;
    let case = match find_case(tx, &message, existing_patient.as_deref(), map) {
        Ok(case) => case,
        Err(errors) => {
            return refusal_in(
                svpl,
                tx,
                record,
                &message,
                existing_patient,
                errors,
                &now_text,
            );
        }
    };
    let patient_id = existing_patient
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut cx = Context {
        patient: format!("Patient/{patient_id}"),
        received,
        case,
    };
    let translation = match translate::translate(&message, &cx, map) {
        Ok(t) => t,
        Err(errors) => {
            return refusal_in(
                svpl,
                tx,
                record,
                &message,
                existing_patient,
                errors,
                &now_text,
            );
        }
    };
    let denied: Vec<Fel> = translation
        .writes
        .iter()
        .map(|w| {
            (
                w.resource_type.as_str(),
                if w.create {
                    Interaction::Create
                } else {
                    Interaction::Update
                },
            )
        })
        .chain(
            existing_patient
                .is_none()
                .then_some(("Patient", Interaction::Create)),
        )
        .filter(|(ty, i)| !permits(ty, *i))
        .map(|(ty, i)| Fel {
            code: FelCode::Avsandare,
            field: "/".into(),
            text: format!("the access token's scopes do not allow {i:?} on {ty}"),
        })
        .collect();
    if !denied.is_empty() {
        return refusal_in(
            svpl,
            tx,
            record,
            &message,
            existing_patient,
            denied,
            &now_text,
        );
    }
    let translation = if existing_patient.is_some() {
        translation
    } else {
        // Created as shared master data; another writer's Patient with the same number is used instead.
        let holder = create_patient(fhir, tx, &message, &patient_id, map)?;
        if holder == patient_id {
            translation
        } else {
            cx.patient = format!("Patient/{holder}");
            translate::translate(&message, &cx, map)
                .map_err(|_| ApiError::internal("the translation changed with the patient's id"))?
        }
    };
    let patient = cx.patient.clone();
    let (created, updated, versions) = apply(fhir, tx, &translation)?;
    let resources: Vec<(String, String)> = translation
        .writes
        .iter()
        .filter(|w| w.resource_type != "Provenance")
        .map(|w| (w.resource_type.clone(), w.id.clone()))
        .collect();
    let receipt = Kvittens {
        id: receipt_id(&sender, &e.id),
        created: now_text.clone(),
        sender: NAVET_SENDER.into(),
        recipient: Some(sender.clone()),
        reference: Some(e.id.clone()),
        status: Status::Mottagen,
        errors: Vec::new(),
        resources,
    }
    .to_xml(map);
    let kept = InboundMessage {
        format: FORMAT.into(),
        sender: sender.clone(),
        message_id: e.id.clone(),
        kind: e.kind.as_str().into(),
        received_ms: now_ms,
        body: bytes,
        receipt: receipt.clone(),
        patient: Some(patient.clone()),
        case_ref: Some(translation.case_ref.clone()),
        parties: translation.parties.clone(),
        created,
        updated,
    };
    if !tx.put_inbound(&kept)? {
        // Unreachable while one writer runs one job at a time (checked above); a second node's writer
        // (PostgreSQL) may get here, and then the job rolls back and the client repeats.
        return Err(ApiError::Conflict(
            "the message was received concurrently; repeat it".into(),
        ));
    }
    record.add_patient(patient);
    record.entities.extend(versions);
    log(tx, record, 200)?;
    Ok(Answer {
        status: 200,
        receipt,
        stored: true,
    })
}

/// The id of navet's receipt for a message: stable, so it is the same for every repeat.
fn receipt_id(sender: &str, id: &str) -> String {
    format!("kvittens-{}", translate::id_for(sender, id, "Kvittens"))
}

/// `Patient/{id}` → id of the Patient with this identifier, if navet has one.
fn find_patient(
    fhir: &FhirContext,
    tx: &mut dyn WriteTx,
    id: &PatientIdentifier,
) -> Result<Option<String>, ApiError> {
    let pairs = [(
        "identifier".to_owned(),
        format!("{}|{}", id.canonical_system(), id.canonical_value()),
    )];
    let query = crate::search::query::parse_query(&fhir.params, "Patient", &pairs, false)
        .map_err(|_| ApiError::internal("the patient identifier query does not parse"))?;
    Ok(tx.search_ids("Patient", &query, 1)?.into_iter().next())
}

/// Creates the Patient (shared master data) with `id`; answers the id of the Patient that holds the national
/// identity number (another one when it was stored under another written form meanwhile).
fn create_patient(
    fhir: &FhirContext,
    tx: &mut dyn WriteTx,
    message: &Message,
    id: &str,
    map: &super::mapping::Mapping,
) -> Result<String, ApiError> {
    let p = &message.envelope.patient;
    if let PatientIdentifier::National(_) = &p.id {
        let key = format!("{}|{}", p.id.canonical_system(), p.id.canonical_value());
        if let Some(holder) = tx.claim_unique(
            crate::fhir::rules::PATIENT_IDENTIFIER_SCOPE,
            &key,
            "Patient",
            id,
        )? {
            return Ok(holder);
        }
    }
    let value = super::patient::resource(p, map);
    let prepared = ops::prepare(fhir, value.to_string().as_bytes(), Some("Patient"))?;
    ops::create(fhir, tx, &prepared, Some(id.to_owned()), None)?;
    Ok(id.to_owned())
}

/// Finds the case a message follows (`Referens/@id`): a message of a case the sender takes part in. A
/// `Makulering` must name the sender's own message.
fn find_case(
    tx: &mut dyn WriteTx,
    message: &Message,
    patient: Option<&str>,
    map: &super::mapping::Mapping,
) -> Result<Case, Vec<Fel>> {
    let e = &message.envelope;
    let Some(reference) = &e.reference else {
        return Ok(Case::default());
    };
    let unknown = |text: &str| {
        vec![Fel {
            code: FelCode::ReferensOkand,
            field: map.xpath("reference", None),
            text: text.to_owned(),
        }]
    };
    let db = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "reading the SVPL case failed");
        unknown("the referenced message could not be read")
    };
    let sender = e.sender.hsa.as_str();
    let candidates = tx.inbound_by_id(FORMAT, reference).map_err(db)?;
    let mut found: Option<(InboundMessage, Vec<InboundMessage>)> = None;
    let mut foreign_sender = false;
    for row in candidates {
        let Some(case_ref) = row.case_ref.clone() else {
            continue;
        };
        let rows = tx.inbound_by_case(FORMAT, &case_ref).map_err(db)?;
        let takes_part = rows.iter().any(|r| r.parties.iter().any(|p| p == sender));
        if !takes_part {
            continue;
        }
        if e.kind == MessageKind::Makulering && row.sender != sender {
            foreign_sender = true;
            continue;
        }
        found = Some((row, rows));
        break;
    }
    let Some((row, rows)) = found else {
        if foreign_sender {
            return Err(vec![Fel {
                code: FelCode::Avsandare,
                field: map.xpath("sender.hsa", None),
                text: "only the original sender of a message may withdraw it (Makulering)".into(),
            }]);
        }
        return Err(unknown(
            "the referenced message is not a message of a case the sender takes part in",
        ));
    };
    // The case is about one patient: a follow-up about another is a wrong reference, not a new case.
    if row.patient.as_deref() != patient.map(|p| format!("Patient/{p}")).as_deref() {
        return Err(unknown("the referenced message is about another patient"));
    }
    let mut refs: Vec<String> = Vec::new();
    for r in &rows {
        for x in r.created.iter().chain(&r.updated) {
            if !refs.contains(x) {
                refs.push(x.clone());
            }
        }
    }
    let mut resources = Vec::new();
    for reference in &refs {
        let Some((ty, id)) = translate::split_ref(reference) else {
            continue;
        };
        if ty == "Provenance" {
            continue;
        }
        let current = tx.current(ty, id).map_err(db)?;
        if let Some(json) = current.and_then(|c| c.json) {
            let value: Value =
                serde_json::from_str(&json).map_err(|_| unknown("a case resource is not JSON"))?;
            resources.push(Current {
                resource_type: ty.to_owned(),
                id: id.to_owned(),
                value,
            });
        }
    }
    Ok(Case {
        case_ref: row.case_ref.clone(),
        opened_by: rows.first().map(|r| r.sender.clone()),
        resources,
        referenced: row.created.clone(),
        referenced_parties: row.parties.clone(),
    })
}

/// The created and updated `Type/id`s and the versions for the access log.
type Applied = (Vec<String>, Vec<String>, Vec<String>);

/// Writes the translation: creates with their ids, updates keeping each resource's owner (the message is
/// the authority for the consequences it has on the case's resources, e.g. a kallelse completing the
/// requester's Task). Answers the created and updated `Type/id`s and the versions for the access log.
fn apply(fhir: &FhirContext, tx: &mut dyn WriteTx, t: &Translation) -> Result<Applied, ApiError> {
    let (mut created, mut updated, mut versions) = (Vec::new(), Vec::new(), Vec::new());
    for w in &t.writes {
        let mut value = w.value.clone();
        value["resourceType"] = Value::String(w.resource_type.clone());
        if !w.create {
            value["id"] = Value::String(w.id.clone());
        }
        let mut prepared =
            ops::prepare(fhir, value.to_string().as_bytes(), Some(&w.resource_type))?;
        prepared.from_message = true;
        let outcome = if w.create {
            ops::create(fhir, tx, &prepared, Some(w.id.clone()), None)?
        } else {
            ops::update_as_consequence(fhir, tx, &prepared, &w.id)?
        };
        let reference = format!("{}/{}", w.resource_type, w.id);
        let list = if w.create { &mut created } else { &mut updated };
        if !list.contains(&reference) {
            list.push(reference);
        }
        versions.push(format!(
            "{}/{}/_history/{}",
            outcome.version.resource_type, outcome.version.id, outcome.version.version
        ));
    }
    Ok((created, updated, versions))
}

/// Appends the message's access-log record (operation `translate-in`) with its status.
fn log(tx: &mut dyn WriteTx, mut record: AuditRecord, status: u16) -> Result<(), ApiError> {
    record.status = status;
    record.outcome = Outcome::from_status(status);
    crate::audit::append(tx, &record)
}

fn refusal_receipt(svpl: &SvplContext, partial: &Partial, errors: Vec<Fel>, now: &str) -> String {
    // The receipt's own id: stable for one message, fresh for an unreadable one.
    let id = match (&partial.sender, &partial.id) {
        (Some(s), Some(i)) => receipt_id(s, i),
        _ => format!("kvittens-{}", uuid::Uuid::new_v4()),
    };
    Kvittens {
        id,
        created: now.to_owned(),
        sender: NAVET_SENDER.into(),
        recipient: partial.sender.clone(),
        reference: partial.id.clone(),
        status: Status::Avvisad,
        errors,
        resources: Vec::new(),
    }
    .to_xml(&svpl.mapping)
}

/// A refusal found inside the job: nothing was written yet; only the record is.
fn refusal_in(
    svpl: &SvplContext,
    tx: &mut dyn WriteTx,
    mut record: AuditRecord,
    message: &Message,
    patient: Option<String>,
    errors: Vec<Fel>,
    now: &str,
) -> Result<Answer, ApiError> {
    let status = refusal_status(&errors);
    let partial = Partial {
        id: Some(message.envelope.id.clone()),
        sender: Some(message.envelope.sender.hsa.to_string()),
        kind: Some(message.envelope.kind.as_str().to_owned()),
        patient: None,
    };
    if let Some(p) = patient {
        record.add_patient(format!("Patient/{p}"));
    }
    log(tx, record, status)?;
    Ok(Answer {
        status,
        receipt: refusal_receipt(svpl, &partial, errors, now),
        stored: false,
    })
}

/// Answers a refusal and logs it (naming the patient when the message named one navet knows).
async fn refuse(
    svpl: &Arc<SvplContext>,
    fhir: &Arc<FhirContext>,
    store: &dyn Store,
    actor: &Actor,
    mut record: AuditRecord,
    partial: Partial,
    errors: Vec<Fel>,
) -> Result<Answer, ApiError> {
    let status = refusal_status(&errors);
    let (svpl, fhir) = (svpl.clone(), fhir.clone());
    store
        .transact(actor, move |tx| {
            if let Some(id) = &partial.patient
                && let Some(p) = find_patient(&fhir, tx, id)?
            {
                record.add_patient(format!("Patient/{p}"));
            }
            let (now, _) = tx.now();
            log(tx, record, status)?;
            Ok(Answer {
                status,
                receipt: refusal_receipt(&svpl, &partial, errors, &now),
                stored: false,
            })
        })
        .await
}
