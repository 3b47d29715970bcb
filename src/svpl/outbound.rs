//! Outbound SVPL (spec/svpl-messages.md "Transport", last point): when a principal changes through the FHIR
//! API something a municipal system must hear, navet renders the SVPL message and enqueues it, in the same
//! transaction as the change, through the outbox to every addressed principal that has an SVPL endpoint
//! (`[[destinations]]` with `svpl = true`). The receiver's `Kvittens` is handled in [`super::delivery`].
//!
//! | FHIR change (by a principal, through the API) | message | to |
//! |---|---|---|
//! | Appointment created, `supportingInformation` → a SIP CarePlan | `SipKallelse` | its participants by HSA-id |
//! | Encounter created or changed into class `IMP`, status `in-progress`, by a sjukhus | `Inskrivningsmeddelande` | its participants by HSA-id |
//! | such an admission Encounter given the `discharge-ready` extension (as a received `Utskrivningsklar` sets it), by a sjukhus | `Utskrivningsklar` | its participants by HSA-id |
//! | an `IMP` Encounter changed into status `finished`, by a sjukhus | `Utskrivningsmeddelande` (`period.end`, else the change's time) | its participants by HSA-id |
//! | SIP CarePlan created or changed into status `active` | `SipPlan` | its CareTeam's members |
//! | SIP CarePlan changed into status `completed` by its overall responsible principal (the CareTeam's managing organisation; before a plan named one, the owner) | `SipAvslut` (`Orsak`: the closer's last `note`) | its CareTeam's members |
//!
//! One write sends at most one message: an Encounter marked ready and finished in the same write sends the
//! `Utskrivningsmeddelande` (the later fact). A message about an admission references (`Referens`) the
//! Inskrivningsmeddelande it follows: the received one's id when the Encounter came as one, else the one navet
//! sent for it (its kept copy, [`Change::case_message`]).
//!
//! - No echo: what navet writes as the translation of a received message (`Prepared::from_message`), and what
//!   navet writes itself (the system actor), sends nothing.
//! - The message navet sends is kept with the received ones (store/inbound.rs, format `svpl`, the acting
//!   principal as its sender), with one receipt row per receiver (pending until it answers), so the sender
//!   fetches it and each receiver's Kvittens at `GET /svpl/messages/{sender}/{id}[/kvittens[?mottagare=]]`,
//!   and a receiver's follow-up may reference it (`Referens`).
//! - A message navet's own reader would refuse (a plan without its four parts, an HSA-id that is none) is
//!   not sent: the FHIR change is refused with the `Fel` codes and nothing is stored.
//! - The translation is pure ([`render`]): the golden files and the round-trip property tests run it alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::FORMAT;
use super::mapping::Mapping;
use super::message::{self, Body, Envelope, Message, MessageKind, Party};
use super::messages::{
    Inskrivningsmeddelande, SipAvslut, SipKallelse, SipPlan, Utskrivningsklar,
    Utskrivningsmeddelande,
};
use super::translate::{CS_CAREPLAN_CATEGORY, message_system};
use super::translate::{EXT_DISCHARGE_READY, extension};
use crate::auth::PrincipalKind;
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::store::WriteTx;
use crate::store::inbound::{InboundMessage, ReceiverReceipt};
use crate::store::outbox::NewMessage;

/// What outbound SVPL needs at run time: the mapping, each principal's SVPL destination, and the principals'
/// kinds and names for the envelope.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub mapping: Mapping,
    /// Principal HSA-id → the name of its SVPL destination.
    endpoints: BTreeMap<String, String>,
    /// Principal HSA-id → (`Avsandare/@typ` code, name).
    parties: BTreeMap<String, (Option<String>, String)>,
}

impl Outbound {
    /// From the configured principals and the destinations marked `svpl = true` (one per principal, checked
    /// with the configuration). `None` when no principal has an SVPL endpoint: then no write looks further.
    pub fn configured(
        mapping: Mapping,
        principals: &[Arc<crate::auth::Principal>],
        destinations: &[crate::outbox::config::Destination],
    ) -> Option<Arc<Self>> {
        let endpoints: BTreeMap<String, String> = destinations
            .iter()
            .filter(|d| d.svpl)
            .map(|d| (d.principal.clone(), d.name.clone()))
            .collect();
        if endpoints.is_empty() {
            return None;
        }
        let parties = principals
            .iter()
            .map(|p| {
                let code = kind_code(&mapping, p.kind);
                (p.hsa_id.to_string(), (code, p.name.clone()))
            })
            .collect();
        Some(Arc::new(Outbound {
            mapping,
            endpoints,
            parties,
        }))
    }

    /// A context for the pure translation alone (tests, golden files): these principals, no endpoints.
    pub fn for_parties(mapping: Mapping, parties: &[(&str, PrincipalKind, &str)]) -> Self {
        let parties = parties
            .iter()
            .map(|(h, k, n)| ((*h).to_owned(), (kind_code(&mapping, *k), (*n).to_owned())))
            .collect();
        Outbound {
            mapping,
            endpoints: BTreeMap::new(),
            parties,
        }
    }

    /// The SVPL destination of a principal, if it has one.
    pub fn endpoint(&self, hsa: &str) -> Option<&str> {
        self.endpoints.get(hsa).map(String::as_str)
    }

    fn party(&self, hsa: &str, with_name: bool) -> Option<Party> {
        let (kind, name) = match self.parties.get(hsa) {
            Some((k, n)) => (k.clone(), with_name.then(|| n.clone())),
            None => (None, None),
        };
        Some(Party {
            hsa: crate::domain::HsaId::parse(hsa).ok()?,
            kind,
            name,
        })
    }

    fn is_hospital(&self, hsa: &str) -> bool {
        self.parties.get(hsa).and_then(|(k, _)| k.as_deref()) == Some("sjukhus")
    }
}

/// The `party_kinds` code of a principal kind (`codes.toml`), if the mapping has one.
fn kind_code(map: &Mapping, kind: PrincipalKind) -> Option<String> {
    map.party_kinds
        .iter()
        .find(|(_, k)| **k == kind)
        .map(|(c, _)| c.clone())
}

/// The types whose writes may send a message.
const TRIGGER_TYPES: [&str; 3] = ["Appointment", "Encounter", "CarePlan"];

/// A FHIR change and what the message about it needs to know: the pure input of [`render`].
#[derive(Debug, Clone)]
pub struct Change {
    /// HSA-id of the principal that made the change (the `Avsandare`).
    pub sender: String,
    pub resource_type: String,
    pub id: String,
    /// The resource as written.
    pub value: Value,
    /// The version before this write (`None` for a create).
    pub previous: Option<Value>,
    /// The Patient the resource is about.
    pub patient: Value,
    /// For an Appointment: the SIP CarePlan it supports (id, resource).
    pub plan: Option<(String, Value)>,
    /// The CareTeam of the SIP CarePlan.
    pub team: Option<Value>,
    /// For an Encounter: the id of the Inskrivningsmeddelande kept for it (sent by navet, or received), the
    /// `Referens` of its later messages when the Encounter carries no message identifier.
    pub case_message: Option<String>,
    /// The id the message gets, and its `skapad` (RFC 3339).
    pub message_id: String,
    pub created: String,
}

/// A message to send: the message, the case it belongs to (`CarePlan/{id}`, `Encounter/{id}`), the
/// resources it is about, and the HSA-ids it is addressed to (`Mottagare` and `Deltagare`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub message: Message,
    pub case_ref: String,
    pub about: Vec<String>,
    pub addressed: Vec<String>,
}

fn is_sip_plan(plan: &Value) -> bool {
    plan.get("category")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .any(|c| {
            c.get("system").and_then(Value::as_str) == Some(CS_CAREPLAN_CATEGORY)
                && c.get("code").and_then(Value::as_str) == Some("sip")
        })
}

fn status(v: Option<&Value>) -> Option<&str> {
    v?.get("status")?.as_str()
}

fn is_inpatient(v: Option<&Value>) -> bool {
    v.and_then(|v| v.pointer("/class/code"))
        .and_then(Value::as_str)
        == Some("IMP")
}

fn is_admission(v: Option<&Value>) -> bool {
    status(v) == Some("in-progress") && is_inpatient(v)
}

fn is_discharge_ready(v: Option<&Value>) -> bool {
    v.is_some_and(|v| extension(v, EXT_DISCHARGE_READY).is_some())
}

/// The `Referens/@id` of a message about a case: the id of the SVPL message that opened it when it came as
/// one (the resource's `urn:navet:svpl:message:…` identifier), else the message navet sent that opened it
/// (`kept`), else `{Type}/{id}`, the case in navet.
fn case_reference(ty: &str, id: &str, resource: &Value, kept: Option<&str>) -> String {
    resource
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|i| {
            i.get("system")
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with(&message_system("")))
        })
        .and_then(|i| i.get("value").and_then(Value::as_str))
        .or(kept)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{ty}/{id}"))
}

/// Which message a change sends, if any (the table at the top), rendered. Pure.
pub fn render(change: &Change, out: &Outbound) -> Option<Rendered> {
    let map = &out.mapping;
    let c = change;
    let (body, recipients, reference, case_ref, mut about): (Body, Vec<String>, _, _, Vec<String>) =
        match c.resource_type.as_str() {
            "Appointment" => {
                let (plan_id, plan) = c.plan.as_ref()?;
                if c.previous.is_some()
                    || !is_sip_plan(plan)
                    || !matches!(
                        status(Some(&c.value)),
                        Some("proposed" | "pending" | "booked")
                    )
                {
                    return None;
                }
                let (body, recipients) = SipKallelse::render(&c.value, &c.sender, map)?;
                (
                    Body::SipKallelse(body),
                    recipients,
                    Some(case_reference("CarePlan", plan_id, plan, None)),
                    format!("CarePlan/{plan_id}"),
                    vec![format!("CarePlan/{plan_id}")],
                )
            }
            "Encounter" => {
                if !out.is_hospital(&c.sender) || !is_inpatient(Some(&c.value)) {
                    return None;
                }
                let before = c.previous.as_ref();
                let reference = || {
                    Some(case_reference(
                        "Encounter",
                        &c.id,
                        &c.value,
                        c.case_message.as_deref(),
                    ))
                };
                let (body, recipients, reference) = if status(Some(&c.value)) == Some("finished")
                    && before.is_some_and(|b| status(Some(b)) != Some("finished"))
                {
                    let (body, recipients) =
                        Utskrivningsmeddelande::render(&c.value, &c.sender, &c.created);
                    (Body::Utskrivningsmeddelande(body), recipients, reference())
                } else if is_admission(Some(&c.value)) && !is_admission(before) {
                    let (body, recipients) =
                        Inskrivningsmeddelande::render(&c.value, &c.sender, map)?;
                    (Body::Inskrivningsmeddelande(body), recipients, None)
                } else if is_admission(Some(&c.value))
                    && is_discharge_ready(Some(&c.value))
                    && !is_discharge_ready(before)
                {
                    let (body, recipients) = Utskrivningsklar::render(&c.value, &c.sender)?;
                    (Body::Utskrivningsklar(body), recipients, reference())
                } else {
                    return None;
                };
                (
                    body,
                    recipients,
                    reference,
                    format!("Encounter/{}", c.id),
                    Vec::new(),
                )
            }
            "CarePlan" => {
                let before = status(c.previous.as_ref());
                let (body, recipients) = match status(Some(&c.value)) {
                    _ if !is_sip_plan(&c.value) => return None,
                    Some("active") if before != Some("active") => {
                        let (body, recipients) =
                            SipPlan::render(&c.value, c.team.as_ref(), &c.sender, map)?;
                        (Body::SipPlan(body), recipients)
                    }
                    Some("completed") if before.is_some_and(|b| b != "completed") => {
                        let (body, recipients) =
                            SipAvslut::render(&c.value, c.team.as_ref(), &c.sender)?;
                        (Body::SipAvslut(body), recipients)
                    }
                    _ => return None,
                };
                (
                    body,
                    recipients,
                    Some(case_reference("CarePlan", &c.id, &c.value, None)),
                    format!("CarePlan/{}", c.id),
                    Vec::new(),
                )
            }
            _ => return None,
        };
    about.insert(0, format!("{}/{}", c.resource_type, c.id));
    if let Some(team) = c
        .team
        .as_ref()
        .and_then(|t| t.get("id"))
        .and_then(Value::as_str)
    {
        about.push(format!("CareTeam/{team}"));
    }
    let recipients: Vec<Party> = recipients
        .iter()
        .filter_map(|h| out.party(h, false))
        .collect();
    let mut addressed: Vec<String> = recipients.iter().map(|p| p.hsa.to_string()).collect();
    if let Body::SipKallelse(k) = &body {
        for (h, _) in &k.participants {
            if !addressed.contains(h) {
                addressed.push(h.clone());
            }
        }
    }
    let envelope = Envelope {
        kind: body.kind(),
        id: c.message_id.clone(),
        created: c.created.parse().ok()?,
        created_text: c.created.clone(),
        sender: out.party(&c.sender, true)?,
        recipients,
        patient: patient_block(&c.patient, map)?,
        reference,
    };
    Some(Rendered {
        message: Message { envelope, body },
        case_ref,
        about,
        addressed,
    })
}

/// The patient block of a message about `patient`. A protected identity's address leaves navet to nobody but
/// the principal that entered it (fhir/protected.rs), and a message goes to others: it carries none.
fn patient_block(patient: &Value, map: &Mapping) -> Option<super::message::PatientData> {
    let mut data = super::patient::data(patient, map)?;
    if crate::fhir::protected::is_protected(patient) {
        data.street = None;
        data.postal_code = None;
        data.city = None;
    }
    Some(data)
}

/// The hook in every FHIR write (`fhir/ops.rs` `write_version`, beside the Subscriptions' one): renders and
/// enqueues the message the change sends, if any, and keeps it. `value` is the resource as written.
pub fn on_write(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    from_message: bool,
    ty: &str,
    id: &str,
    value: &Value,
) -> Result<(), ApiError> {
    let Some(out) = &ctx.svpl_outbound else {
        return Ok(());
    };
    if from_message || !TRIGGER_TYPES.contains(&ty) || tx.actor().is_system() {
        return Ok(());
    }
    // Cheap checks first: most writes of these types send nothing and read nothing more.
    let worth_a_look = match ty {
        "Appointment" => value.get("supportingInformation").is_some(),
        "Encounter" => {
            is_inpatient(Some(value))
                && matches!(status(Some(value)), Some("in-progress" | "finished"))
        }
        _ => matches!(status(Some(value)), Some("active" | "completed")) && is_sip_plan(value),
    };
    if !worth_a_look {
        return Ok(());
    }
    let sender = tx.actor().principal.to_string();
    let previous = current_json(tx, ty, id)?;
    let plan = match ty {
        "Appointment" => value
            .get("supportingInformation")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("reference").and_then(Value::as_str))
            .find_map(|r| r.strip_prefix("CarePlan/"))
            .map(str::to_owned),
        "CarePlan" => Some(id.to_owned()),
        _ => None,
    };
    let plan = match plan {
        Some(pid) if ty == "CarePlan" => Some((pid, value.clone())),
        Some(pid) => current_json(tx, "CarePlan", &pid)?.map(|v| (pid, v)),
        None => None,
    };
    let team = match plan.as_ref().and_then(|(_, p)| {
        p.pointer("/careTeam/0/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("CareTeam/"))
            .map(str::to_owned)
    }) {
        Some(tid) => current_json(tx, "CareTeam", &tid)?.map(|mut v| {
            v["id"] = Value::String(tid);
            v
        }),
        None => None,
    };
    let patient_ref = patient_of(ty, value);
    let Some(patient_id) = patient_ref
        .as_deref()
        .and_then(|r| r.strip_prefix("Patient/"))
    else {
        return Ok(());
    };
    let Some(patient) = current_json(tx, "Patient", patient_id)? else {
        return Ok(());
    };
    // The admission notice a later message about the Encounter references (see `case_reference`).
    let case_message = match (ty, &previous) {
        ("Encounter", Some(_)) => tx
            .inbound_by_case(FORMAT, &format!("Encounter/{id}"))?
            .into_iter()
            .find(|m| m.kind == MessageKind::Inskrivningsmeddelande.as_str())
            .map(|m| m.message_id),
        _ => None,
    };
    let (now, _) = tx.now();
    let change = Change {
        sender: sender.clone(),
        resource_type: ty.to_owned(),
        id: id.to_owned(),
        value: value.clone(),
        previous,
        patient,
        plan,
        team,
        case_message,
        message_id: format!("navet-{}", uuid::Uuid::new_v4()),
        created: now,
    };
    let Some(rendered) = render(&change, out) else {
        return Ok(());
    };
    let destinations: Vec<(&str, &str)> = rendered
        .addressed
        .iter()
        .filter(|h| **h != sender)
        .filter_map(|h| Some((h.as_str(), out.endpoint(h)?)))
        .collect();
    if destinations.is_empty() {
        // Nobody addressed speaks SVPL: they read the change through FHIR.
        return Ok(());
    }
    let xml = message::write(&rendered.message, &out.mapping);
    if let Err(refusal) = message::read(xml.as_bytes(), &out.mapping) {
        let problems: Vec<String> = refusal
            .errors
            .iter()
            .map(|f| format!("{} {}: {}", f.code.as_str(), f.field, f.text))
            .collect();
        return Err(ApiError::invalid(
            ty,
            format!(
                "this change sends an SVPL {} to {} that its receiver would refuse: {}",
                rendered.message.envelope.kind.as_str(),
                destinations
                    .iter()
                    .map(|(h, _)| *h)
                    .collect::<Vec<_>>()
                    .join(", "),
                problems.join("; ")
            ),
        ));
    }
    let e = &rendered.message.envelope;
    let mut parties = vec![sender.clone()];
    parties.extend(rendered.addressed.iter().cloned());
    let (_, now_ms) = tx.now();
    let kept = InboundMessage {
        format: FORMAT.into(),
        sender: sender.clone(),
        message_id: e.id.clone(),
        kind: e.kind.as_str().into(),
        received_ms: now_ms,
        body: xml.clone().into_bytes(),
        // The receiver's Kvittens, once it answers (super::delivery).
        receipt: String::new(),
        patient: patient_ref.clone(),
        case_ref: Some(rendered.case_ref.clone()),
        parties,
        created: rendered.about[..1].to_vec(),
        // The case's other resources, so a receiver's follow-up that references this message finds them.
        updated: rendered.about[1..].to_vec(),
    };
    if !tx.put_inbound(&kept)? {
        return Err(ApiError::Conflict(
            "the SVPL message id is taken; repeat the request".into(),
        ));
    }
    for (hsa, destination) in destinations {
        // Each receiver's receipt row exists from now on, so the sender sees who has not answered yet.
        tx.put_receiver_receipt(
            FORMAT,
            &sender,
            &e.id,
            &ReceiverReceipt {
                receiver: hsa.to_owned(),
                receipt: None,
                answered_ms: None,
            },
        )?;
        tx.enqueue(NewMessage {
            id: outbox_id(&e.id, hsa),
            destination: destination.to_owned(),
            patient: patient_ref.clone(),
            content_type: super::XML_CONTENT_TYPE.into(),
            payload: xml.clone(),
            headers: Vec::new(),
        })?;
    }
    Ok(())
}

/// The outbox id of a message to one receiver (one message, one row per receiving principal).
pub fn outbox_id(message_id: &str, receiver: &str) -> String {
    format!("{message_id}~{receiver}")
}

fn current_json(tx: &mut dyn WriteTx, ty: &str, id: &str) -> Result<Option<Value>, ApiError> {
    Ok(tx
        .current(ty, id)?
        .and_then(|v| v.json)
        .and_then(|j| serde_json::from_str(&j).ok()))
}

/// `Patient/{id}` a trigger resource is about.
fn patient_of(ty: &str, value: &Value) -> Option<String> {
    let literal = |v: &Value| {
        v.get("reference")
            .and_then(Value::as_str)
            .filter(|r| r.starts_with("Patient/"))
            .map(str::to_owned)
    };
    match ty {
        "Appointment" => value
            .get("participant")?
            .as_array()?
            .iter()
            .find_map(|p| literal(p.get("actor")?)),
        _ => literal(value.get("subject")?),
    }
}
