//! What happened, from itACiH's event feed (spec/itacih.md v2 "Inbound"): navet polls
//! `GET {base}/api/v1/handelser?efter={cursor}&max=100`, translates each event into FHIR and commits the page's
//! resources, its dead letters and the new cursor in ONE transaction, so a restart resumes where it stopped.
//! Each event's `sekvens` is also remembered in that transaction, so a page served twice (or out of order)
//! applies nothing twice.
//!
//! Translations, every resource owned by the team's principal (the event's `enhet`):
//! - every event: its `kontaktId` is the EpisodeOfCare it belongs to (found or created);
//! - `INSKRIVNING` / `UTSKRIVNING`: the EpisodeOfCare starts / ends, with `uppdrag`, the referrer (`remittent`,
//!   `remittentHsaId`, `remittentKommun`), `kontaktorsak`, and `vidare` as the discharge disposition; the
//!   listed vårdcentral and the referrer get a Communication (an ambulance or läkarbil gets the outcome);
//! - `BESOK_UTFORT`: Encounter (class HH, finished, participants by staff category, reasonCode from
//!   kontaktorsak, location type from boende); for a planned visit its Task completes and, for a dose, a
//!   MedicationAdministration records it; the order completes after its last visit;
//! - `BESOK_INSTALLT`: Encounter cancelled; the Task goes back to the planner and a DetectedIssue (with a
//!   Communication to the orderer and the principal with medical responsibility) says a dose was missed;
//! - `TELEFONKONTAKT`: Encounter (class VR).
//!
//! A value given as `null` is recorded as not given (data-absent-reason), never as `ANNAN`. An event for an
//! unknown patient, unit or visit is a dead letter (`/admin/outbox?destination=itacih-feed`); the rest of the
//! page is applied.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{FEED_DEAD_LETTERS, Link};
use crate::domain::HSA_ID_SYSTEM;
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::fhir::ops::{self, Prepared};
use crate::store::outbox::{AttemptOutcome, ClaimRequest, NewMessage};
use crate::store::{Actor, Store, StoredVersion, WriteTx};

/// The setting holding the feed cursor (the last `nasta` committed).
pub const CURSOR_KEY: &str = "itacih_feed_cursor";
/// Events remembered as applied (`remember_once` scope).
const APPLIED_SCOPE: &str = "itacih-event";
/// Unique-key scope mapping a `kontaktId` to its EpisodeOfCare.
const KONTAKT_SCOPE: &str = "itacih-kontakt";
/// The largest feed page navet reads.
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// At most this many events per page are looked at (the request asks for 100).
const MAX_EVENTS: usize = 1000;
pub const PAGE_SIZE: u32 = 100;
const DAR: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";

/// One feed page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub events: Vec<Value>,
    pub nasta: i64,
}

/// Parses a feed page; anything unexpected is an error (never a panic).
pub fn parse_page(bytes: &[u8], link: &Link) -> Result<Page, String> {
    if bytes.len() > MAX_PAGE_BYTES {
        return Err(format!("the page is larger than {MAX_PAGE_BYTES} bytes"));
    }
    let f = &link.mapping.fields.inbound;
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the page is not JSON: {e}"))?;
    let events = v
        .get(&f.handelser)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("the page has no '{}' list", f.handelser))?;
    if events.len() > MAX_EVENTS {
        return Err(format!("the page has more than {MAX_EVENTS} events"));
    }
    let nasta = match v.get(&f.nasta) {
        Some(n) => n
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("'{}' is not a sequence number", f.nasta))?,
        None => 0,
    };
    Ok(Page {
        events: events.clone(),
        nasta,
    })
}

/// Why an event is a dead letter.
#[derive(Debug)]
enum Unusable {
    Dead(String),
    Api(ApiError),
}

impl From<ApiError> for Unusable {
    fn from(e: ApiError) -> Self {
        Unusable::Api(e)
    }
}

impl From<crate::store::StoreError> for Unusable {
    fn from(e: crate::store::StoreError) -> Self {
        Unusable::Api(e.into())
    }
}

fn dead(reason: impl Into<String>) -> Unusable {
    Unusable::Dead(reason.into())
}

/// What applying a page did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The cursor moved forward.
    pub moved: bool,
    pub applied: usize,
    pub skipped: usize,
    pub dead: usize,
}

/// Applies a page in the transaction, with the cursor.
pub fn apply_page(
    ctx: &FhirContext,
    link: &Link,
    tx: &mut dyn WriteTx,
    page: &Page,
) -> Result<Applied, ApiError> {
    let f = &link.mapping.fields.inbound;
    let mut out = Applied::default();
    let before = tx
        .setting(CURSOR_KEY)?
        .and_then(|c| c.parse::<i64>().ok())
        .unwrap_or(0);
    let mut highest = before;
    for event in &page.events {
        let Some(seq) = event.get(&f.sekvens).and_then(Value::as_i64) else {
            dead_letter(
                tx,
                &format!("no-sekvens-{}", uuid::Uuid::new_v4()),
                event,
                "the event has no sekvens",
            )?;
            out.dead += 1;
            continue;
        };
        highest = highest.max(seq);
        if !tx.remember_once(APPLIED_SCOPE, &seq.to_string(), i64::MAX / 2)? {
            out.skipped += 1;
            continue;
        }
        match apply_event(ctx, link, tx, event) {
            Ok(()) => out.applied += 1,
            Err(Unusable::Dead(reason)) => {
                dead_letter(tx, &format!("itacih-event-{seq}"), event, &reason)?;
                out.dead += 1;
            }
            Err(Unusable::Api(e)) => return Err(e),
        }
    }
    let cursor = highest.max(page.nasta);
    out.moved = cursor > before;
    tx.set_setting(CURSOR_KEY, &cursor.to_string())?;
    Ok(out)
}

fn dead_letter(
    tx: &mut dyn WriteTx,
    id: &str,
    event: &Value,
    reason: &str,
) -> Result<(), ApiError> {
    tx.enqueue(NewMessage {
        id: id.to_owned(),
        destination: FEED_DEAD_LETTERS.into(),
        patient: None,
        content_type: "application/json".into(),
        payload: event.to_string(),
        headers: Vec::new(),
    })?;
    tx.outbox_record(
        id,
        &AttemptOutcome::Dead {
            error: reason.to_owned(),
        },
    )?;
    tracing::warn!(dead_letter = %id, reason, "an itACiH event could not be applied");
    Ok(())
}

fn s<'a>(event: &'a Value, field: &str) -> Option<&'a str> {
    event.get(field).and_then(Value::as_str)
}

/// A coded field: `Some(Some(code))` given, `Some(None)` given as null, `None` absent. A code outside its
/// list is a dead letter.
fn coded(event: &Value, field: &str, list: &[String]) -> Result<Option<Option<String>>, Unusable> {
    match event.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(code)) if list.iter().any(|c| c == code) => Ok(Some(Some(code.clone()))),
        Some(other) => Err(dead(format!("{field} '{other}' is not one of its codes"))),
    }
}

/// A CodeableConcept for a coded value, or not-given for null (kept apart from ANNAN).
fn concept(system: &str, value: &Option<String>) -> Value {
    match value {
        Some(code) => json!({"coding": [{"system": system, "code": code}]}),
        None => json!({"extension": [{"url": DAR, "valueCode": "unknown"}], "text": "ej angivet"}),
    }
}

fn hsa(value: &str) -> Value {
    json!({"identifier": {"system": HSA_ID_SYSTEM, "value": value}})
}

fn prepare(ctx: &FhirContext, value: &Value) -> Result<Prepared, Unusable> {
    let bytes = serde_json::to_vec(value).map_err(ApiError::internal)?;
    let ty = value
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // A translation navet cannot store is its own defect, but it must not stop the feed: a dead letter.
    ops::prepare(ctx, &bytes, Some(&ty))
        .map_err(|e| dead(format!("the translated {ty} is not valid: {e:?}")))
}

/// Writes to do once an event is resolved (so an unusable event writes nothing).
enum Write {
    Create {
        prepared: Prepared,
        id: String,
        owner: String,
    },
    Update {
        prepared: Prepared,
        id: String,
    },
}

fn run_writes(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    writes: Vec<Write>,
) -> Result<Vec<StoredVersion>, ApiError> {
    let mut out = Vec::new();
    for w in writes {
        out.push(match w {
            Write::Create {
                prepared,
                id,
                owner,
            } => ops::create_owned(ctx, tx, &prepared, &id, &owner)?.version,
            Write::Update { prepared, id } => ops::update(ctx, tx, &prepared, &id, None)?.version,
        });
    }
    Ok(out)
}

fn json_of(v: &StoredVersion) -> Option<Value> {
    v.json.as_deref().and_then(|j| serde_json::from_str(j).ok())
}

/// A stored version's JSON ready to be written again (server meta removed).
fn editable(v: &StoredVersion) -> Option<Value> {
    let mut value = json_of(v)?;
    if let Some(meta) = value.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
    }
    Some(value)
}

/// A safe FHIR id made from an itACiH value (any text): its hex, bounded.
fn id_from(prefix: &str, value: &str) -> String {
    let hex: String = value.bytes().take(24).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

fn apply_event(
    ctx: &FhirContext,
    link: &Link,
    tx: &mut dyn WriteTx,
    event: &Value,
) -> Result<(), Unusable> {
    let f = &link.mapping.fields.inbound;
    let c = &link.mapping.codes;
    let typ = s(event, &f.typ).ok_or_else(|| dead("the event has no typ"))?;
    if !c.lists.typ.iter().any(|t| t == typ) {
        return Err(dead(format!("typ '{typ}' is not an event type")));
    }
    let kontakt = s(event, &f.kontakt_id)
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .ok_or_else(|| dead("the event has no kontaktId"))?;
    let unit = s(event, &f.enhet).ok_or_else(|| dead("the event has no enhet"))?;
    let team = link
        .mapping
        .team_of_unit(unit)
        .ok_or_else(|| dead(format!("enhet '{unit}' is not a known unit")))?
        .to_owned();
    let number = event
        .get(&f.patient)
        .and_then(|p| p.get(&f.personnummer))
        .and_then(Value::as_str)
        .ok_or_else(|| dead("the event names no patient"))?;
    let national = crate::domain::NationalId::parse(number)
        .map_err(|e| dead(format!("the patient's number is not valid: {e}")))?;
    let pairs = vec![(
        "identifier".to_owned(),
        format!("{}|{}", national.kind().fhir_system(), national.canonical()),
    )];
    let query = crate::search::query::parse_query(&ctx.params, "Patient", &pairs, false)
        .map_err(|_| ApiError::internal("a patient query did not parse"))?;
    let patient_id = tx
        .search_ids("Patient", &query, 1)?
        .into_iter()
        .next()
        .ok_or_else(|| dead("unknown patient: no Patient with this number"))?;
    let patient_ref = format!("Patient/{patient_id}");
    let tid = s(event, &f.tid).filter(|t| t.parse::<jiff::Timestamp>().is_ok());
    let slut = s(event, &f.slut).filter(|t| t.parse::<jiff::Timestamp>().is_ok());
    let besokstyp = coded(event, &f.besokstyp, &c.lists.besokstyp)?;
    let kontaktorsak = coded(event, &f.kontaktorsak, &c.lists.kontaktorsak)?;
    let remittent = coded(event, &f.remittent, &c.lists.remittent)?;
    let boende = coded(event, &f.boende, &c.lists.boende)?;
    let vidare = coded(event, &f.vidare, &c.lists.vidare)?;
    let uppdrag = coded(event, &f.uppdrag, &c.lists.uppdrag)?;
    let remittent_hsa =
        s(event, &f.remittent_hsa_id).filter(|h| crate::domain::HsaId::parse(h).is_ok());
    let remittent_kommun = s(event, &f.remittent_kommun)
        .filter(|k| k.len() == 4 && k.bytes().all(|b| b.is_ascii_digit()));
    // The planned visit, when the event names one: it must be one navet planned.
    let task = match s(event, &f.externt_id) {
        None => None,
        Some(externt) => {
            let task_id = externt
                .strip_prefix("navet:Task/")
                .and_then(|rest| rest.split('/').next())
                .filter(|id| ops::check_id(id).is_ok())
                .ok_or_else(|| dead(format!("externtId '{externt}' is not one navet gave")))?;
            let t = tx
                .current("Task", task_id)?
                .filter(|t| !t.deleted)
                .ok_or_else(|| dead(format!("unknown externtId '{externt}'")))?;
            Some(t)
        }
    };
    let mut personal = Vec::new();
    if let Some(list) = event.get(&f.personal).and_then(Value::as_array) {
        for p in list.iter().take(50) {
            let cat = s(p, &f.personal_kategori)
                .filter(|k| c.lists.personal.iter().any(|x| x == *k))
                .ok_or_else(|| dead("a staff entry has no known kategori"))?;
            let mut participant =
                json!({"type": [{"coding": [{"system": c.systems.personal, "code": cat}]}]});
            if let Some(h) =
                s(p, &f.personal_hsa_id).filter(|h| crate::domain::HsaId::parse(h).is_ok())
            {
                participant["individual"] = hsa(h);
            }
            personal.push(participant);
        }
    }

    let mut writes = Vec::new();
    // The episode: found by kontaktId, else created.
    let new_eoc = id_from("itacih-k", kontakt);
    let eoc_id = match tx.claim_unique(KONTAKT_SCOPE, kontakt, "EpisodeOfCare", &new_eoc)? {
        Some(existing) => existing,
        None => new_eoc.clone(),
    };
    let eoc_current = tx.current("EpisodeOfCare", &eoc_id)?;
    let mut eoc = eoc_current.as_ref().and_then(editable).unwrap_or_else(|| {
        json!({
            "resourceType": "EpisodeOfCare",
            "identifier": [{"system": c.systems.kontakt_id, "value": kontakt}],
            "status": "active",
            "patient": {"reference": patient_ref},
            "managingOrganization": hsa(&team),
        })
    });
    let mut eoc_changed = eoc_current.is_none();
    let extension = |eoc: &mut Value, url: &str, value: Value| {
        let list = eoc
            .as_object_mut()
            .map(|o| o.entry("extension").or_insert_with(|| json!([])));
        if let Some(Value::Array(items)) = list {
            items.retain(|e| e.get("url").and_then(Value::as_str) != Some(url));
            items.push(value);
        }
    };
    let ext = |name: &str| format!("http://navet.example/StructureDefinition/itacih-{name}");
    match typ {
        "INSKRIVNING" => {
            eoc["status"] = json!("active");
            if let Some(t) = tid {
                eoc["period"] = json!({"start": t});
            }
            if let Some(u) = &uppdrag {
                eoc["type"] = json!([concept(&c.systems.uppdrag, u)]);
            }
            if let Some(r) = &remittent {
                extension(
                    &mut eoc,
                    &ext("remittent"),
                    json!({"url": ext("remittent"), "valueCodeableConcept": concept(&c.systems.remittent, r)}),
                );
            }
            if let Some(k) = &kontaktorsak {
                extension(
                    &mut eoc,
                    &ext("kontaktorsak"),
                    json!({"url": ext("kontaktorsak"), "valueCodeableConcept": concept(&c.systems.kontaktorsak, k)}),
                );
            }
            if let Some(h) = remittent_hsa {
                extension(
                    &mut eoc,
                    &ext("remittent-hsa-id"),
                    json!({"url": ext("remittent-hsa-id"), "valueReference": hsa(h)}),
                );
            }
            if let Some(k) = remittent_kommun {
                extension(
                    &mut eoc,
                    &ext("remittent-kommun"),
                    json!({"url": ext("remittent-kommun"), "valueCoding": {"system": "urn:oid:1.2.752.129.2.2.1.17", "code": k}}),
                );
            }
            eoc_changed = true;
        }
        "UTSKRIVNING" => {
            eoc["status"] = json!("finished");
            if let Some(t) = tid {
                let start = eoc.pointer("/period/start").cloned();
                eoc["period"] = match start {
                    Some(st) => json!({"start": st, "end": t}),
                    None => json!({"end": t}),
                };
            }
            if let Some(v) = &vidare {
                extension(
                    &mut eoc,
                    &ext("vidare"),
                    json!({"url": ext("vidare"), "valueCodeableConcept": concept(&c.systems.vidare, v)}),
                );
            }
            eoc_changed = true;
        }
        _ => {}
    }
    if eoc_changed {
        let prepared = prepare(ctx, &eoc)?;
        writes.push(match eoc_current {
            Some(_) => Write::Update {
                prepared,
                id: eoc_id.clone(),
            },
            None => Write::Create {
                prepared,
                id: eoc_id.clone(),
                owner: team.clone(),
            },
        });
    }
    let eoc_ref = format!("EpisodeOfCare/{eoc_id}");
    let seq = event.get(&f.sekvens).and_then(Value::as_i64).unwrap_or(0);
    let task_json = task.as_ref().and_then(json_of);
    let sr_ref = task_json
        .as_ref()
        .and_then(|t| t.pointer("/basedOn/0/reference"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    // Encounters.
    if matches!(typ, "BESOK_UTFORT" | "BESOK_INSTALLT" | "TELEFONKONTAKT") {
        let mut enc = json!({
            "resourceType": "Encounter",
            "status": if typ == "BESOK_INSTALLT" { "cancelled" } else { "finished" },
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": if typ == "TELEFONKONTAKT" { "VR" } else { "HH" }},
            "subject": {"reference": patient_ref},
            "episodeOfCare": [{"reference": eoc_ref}],
            "serviceProvider": hsa(&team),
        });
        if let Some(insats) = s(event, &f.insats_id).filter(|i| !i.is_empty() && i.len() <= 128) {
            enc["identifier"] = json!([{"system": c.systems.insats_id, "value": insats}]);
        }
        if let Some(b) = &besokstyp {
            enc["serviceType"] = concept(&c.systems.besokstyp, b);
        }
        if let Some(k) = &kontaktorsak {
            enc["reasonCode"] = json!([concept(&c.systems.kontaktorsak, k)]);
        }
        if !personal.is_empty() {
            enc["participant"] = Value::Array(personal.clone());
        }
        match (tid, slut) {
            (Some(a), Some(b)) => enc["period"] = json!({"start": a, "end": b}),
            (Some(a), None) => enc["period"] = json!({"start": a}),
            _ => {}
        }
        if let Some(b) = &boende {
            let mut loc = json!({"location": {"display": "Patientens boende"}, "physicalType": concept(&c.systems.boende, b)});
            if let Some(Some(code)) = &boende
                && let Some(rt) = c.boende_location_type.get(code)
            {
                loc["location"]["display"] = json!(format!("Boende ({rt})"));
            }
            enc["location"] = json!([loc]);
        }
        if let Some(sr) = &sr_ref {
            enc["basedOn"] = json!([{"reference": sr}]);
        }
        if let Some(Value::Bool(p)) = event.get(&f.punktinsats) {
            enc["extension"] = json!([{"url": ext("punktinsats"), "valueBoolean": p}]);
        }
        let enc_id = format!("itacih-e{seq}");
        writes.push(Write::Create {
            prepared: prepare(ctx, &enc)?,
            id: enc_id.clone(),
            owner: team.clone(),
        });
        if let (Some(t), Some(tj)) = (&task, task_json.clone()) {
            let mut tj = tj;
            if let Some(meta) = tj.get_mut("meta").and_then(Value::as_object_mut) {
                meta.remove("versionId");
                meta.remove("lastUpdated");
            }
            if typ == "BESOK_UTFORT" {
                tj["status"] = json!("completed");
                tj["output"] = json!([{"type": {"text": "Besök"}, "valueReference": {"reference": format!("Encounter/{enc_id}")}}]);
                writes.push(Write::Update {
                    prepared: prepare(ctx, &tj)?,
                    id: t.id.clone(),
                });
                // A planned dose: its administration.
                if let Some(mr_ref) = tj.pointer("/focus/reference").and_then(Value::as_str) {
                    let mr = mr_ref
                        .strip_prefix("MedicationRequest/")
                        .map(|id| tx.current("MedicationRequest", id))
                        .transpose()?
                        .flatten()
                        .as_ref()
                        .and_then(json_of);
                    let medication = mr
                        .as_ref()
                        .and_then(|m| m.get("medicationCodeableConcept").cloned())
                        .unwrap_or_else(|| json!({"text": "enligt ordination"}));
                    let mut ma = json!({
                        "resourceType": "MedicationAdministration",
                        "status": "completed",
                        "medicationCodeableConcept": medication,
                        "subject": {"reference": patient_ref},
                        "context": {"reference": format!("Encounter/{enc_id}")},
                        "request": {"reference": mr_ref},
                        "supportingInformation": [{"reference": format!("Task/{}", t.id)}],
                        "effectivePeriod": {"start": tid.unwrap_or_default(), "end": slut.or(tid).unwrap_or_default()},
                    });
                    if let Some(dose) = mr
                        .as_ref()
                        .and_then(|m| m.pointer("/dosageInstruction/0/doseAndRate/0/doseQuantity"))
                    {
                        ma["dosage"] = json!({"dose": dose});
                    }
                    if let Some(p) = personal.iter().find_map(|p| p.get("individual").cloned()) {
                        ma["performer"] = json!([{"actor": p}]);
                    }
                    writes.push(Write::Create {
                        prepared: prepare(ctx, &ma)?,
                        id: format!("itacih-m{seq}"),
                        owner: team.clone(),
                    });
                }
            } else if typ == "BESOK_INSTALLT" {
                // Back to the planner (the order's coordinator), and a missed dose is never silent.
                tj["status"] = json!("requested");
                tj["businessStatus"] = json!({"text": "Besöket inställt: åter för omplanering"});
                let sr = sr_ref
                    .as_deref()
                    .and_then(|r| r.strip_prefix("ServiceRequest/"))
                    .map(|id| tx.current("ServiceRequest", id))
                    .transpose()?
                    .flatten();
                let sr_json = sr.as_ref().and_then(json_of);
                if let Some(coordinator) = sr_json
                    .as_ref()
                    .and_then(|v| v.pointer("/performer/0").cloned())
                {
                    tj["owner"] = coordinator;
                }
                writes.push(Write::Update {
                    prepared: prepare(ctx, &tj)?,
                    id: t.id.clone(),
                });
                let orderer = sr
                    .as_ref()
                    .map(|s| s.owner.clone())
                    .unwrap_or_else(|| team.clone());
                let responsible = sr_json.as_ref().and_then(|v| {
                    v.get("extension")?
                        .as_array()?
                        .iter()
                        .find(|e| {
                            e.get("url").and_then(Value::as_str)
                                == Some(
                                    ctx.ordination
                                        .rules
                                        .medical_responsibility_extension
                                        .as_str(),
                                )
                        })?
                        .pointer("/valueReference/identifier/value")?
                        .as_str()
                        .map(str::to_owned)
                });
                let mut implicated = vec![json!({"reference": format!("Task/{}", t.id)})];
                if let Some(mr) = tj.pointer("/focus/reference").and_then(Value::as_str) {
                    implicated.push(json!({"reference": mr}));
                }
                let issue_id = format!("itacih-d{seq}");
                let issue = json!({
                    "resourceType": "DetectedIssue",
                    "status": "final",
                    "code": {"text": "Planerad dos inte given: besöket inställt"},
                    "severity": "high",
                    "patient": {"reference": patient_ref},
                    "identifiedDateTime": tid.unwrap_or_default(),
                    "implicated": implicated,
                    "detail": format!("itACiH meddelade att besöket {} ställdes in. Uppgiften är åter hos planeraren.", t.id),
                });
                // Owned by the orderer, so the orderer has it; the Communication brings it to the
                // principal with medical responsibility too.
                writes.push(Write::Create {
                    prepared: prepare(ctx, &issue)?,
                    id: issue_id.clone(),
                    owner: orderer.clone(),
                });
                let mut recipients = vec![hsa(&orderer)];
                if let Some(r) = &responsible
                    && *r != orderer
                {
                    recipients.push(hsa(r));
                }
                let comm = json!({
                    "resourceType": "Communication",
                    "status": "completed",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "alert"}]}],
                    "priority": "urgent",
                    "subject": {"reference": patient_ref},
                    "about": [{"reference": format!("DetectedIssue/{issue_id}")}, {"reference": format!("Task/{}", t.id)}],
                    "sent": tid.unwrap_or_default(),
                    "recipient": recipients,
                    "sender": hsa(&team),
                    "payload": [{"contentString": "En planerad dos blev inte given: besöket ställdes in. Uppgiften är åter för omplanering."}],
                });
                writes.push(Write::Create {
                    prepared: prepare(ctx, &comm)?,
                    id: format!("itacih-c{seq}"),
                    owner: team.clone(),
                });
            }
        }
    }
    // Enrolment and discharge: the listed vårdcentral and the referrer are told (an ambulance or läkarbil
    // that referred the patient gets the outcome, `vidare`).
    if matches!(typ, "INSKRIVNING" | "UTSKRIVNING") {
        let patient = tx
            .current("Patient", &patient_id)?
            .as_ref()
            .and_then(json_of);
        let mut recipients = Vec::new();
        if let Some(gp) = patient
            .as_ref()
            .and_then(|p| p.pointer("/generalPractitioner/0").cloned())
            && let Some(h) = crate::ordination::intake::hsa_of_reference(tx, &gp)?
        {
            recipients.push(h);
        }
        let referrer = remittent_hsa.map(str::to_owned).or_else(|| {
            eoc.get("extension")?
                .as_array()?
                .iter()
                .find(|e| {
                    e.get("url").and_then(Value::as_str) == Some(ext("remittent-hsa-id").as_str())
                })?
                .pointer("/valueReference/identifier/value")?
                .as_str()
                .map(str::to_owned)
        });
        if let Some(r) = &referrer
            && !recipients.contains(r)
        {
            recipients.push(r.clone());
        }
        if !recipients.is_empty() {
            let team_name = ctx
                .ordination
                .care
                .team(&team)
                .map(|t| t.name.clone())
                .unwrap_or_else(|| team.clone());
            let text = if typ == "INSKRIVNING" {
                format!("{team_name} har skrivit in patienten.")
            } else {
                let dest = match &vidare {
                    Some(Some(v)) => v.clone(),
                    Some(None) => "ej angivet".into(),
                    None => "inte meddelat".into(),
                };
                format!("{team_name} har skrivit ut patienten. Vidare: {dest}.")
            };
            let comm = json!({
                "resourceType": "Communication",
                "status": "completed",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "notification"}]}],
                "subject": {"reference": patient_ref},
                "about": [{"reference": eoc_ref}],
                "sent": tid.unwrap_or_default(),
                "recipient": recipients.iter().map(|h| hsa(h)).collect::<Vec<_>>(),
                "sender": hsa(&team),
                "payload": [{"contentString": text}],
            });
            writes.push(Write::Create {
                prepared: prepare(ctx, &comm)?,
                id: format!("itacih-c{seq}"),
                owner: team.clone(),
            });
        }
    }
    run_writes(ctx, tx, writes)?;
    // The order completes after its last visit.
    if typ == "BESOK_UTFORT"
        && let Some(sr_id) = sr_ref
            .as_deref()
            .and_then(|r| r.strip_prefix("ServiceRequest/"))
    {
        complete_if_done(ctx, tx, sr_id)?;
    }
    Ok(())
}

fn complete_if_done(ctx: &FhirContext, tx: &mut dyn WriteTx, sr_id: &str) -> Result<(), ApiError> {
    let tasks = crate::ordination::work::visit_tasks(tx, sr_id)?;
    let all_done = !tasks.is_empty()
        && tasks.iter().all(|t| {
            json_of(t)
                .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_owned))
                .is_some_and(|s| matches!(s.as_str(), "completed" | "cancelled" | "failed"))
        });
    if !all_done {
        return Ok(());
    }
    let Some(sr) = tx.current("ServiceRequest", sr_id)? else {
        return Ok(());
    };
    let Some(mut value) = editable(&sr) else {
        return Ok(());
    };
    if value.get("status").and_then(Value::as_str) == Some("completed") {
        return Ok(());
    }
    value["status"] = json!("completed");
    let bytes = serde_json::to_vec(&value).map_err(ApiError::internal)?;
    let prepared = ops::prepare(ctx, &bytes, Some("ServiceRequest"))?;
    ops::update(ctx, tx, &prepared, sr_id, None)?;
    Ok(())
}

/// Fetches the page after `cursor`.
pub async fn fetch(http: &reqwest::Client, link: &Link, cursor: i64) -> Result<Page, String> {
    let p = &link.mapping.fields.paths;
    let mut url = link.url(&p.handelser).ok_or("no feed URL")?;
    url.query_pairs_mut()
        .append_pair(&p.efter, &cursor.to_string())
        .append_pair(&p.max, &PAGE_SIZE.to_string());
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("the feed answered {}", response.status()));
    }
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(format!("the page is larger than {MAX_PAGE_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    parse_page(&body, link)
}

/// One poll: replayed dead letters first, then the next page. Answers whether there was anything.
pub async fn poll_once(
    http: &reqwest::Client,
    store: &dyn Store,
    ctx: &Arc<FhirContext>,
    link: &Link,
) -> Result<bool, String> {
    let replayed = retry_replayed(store, ctx, link)
        .await
        .map_err(|e| e.to_string())?;
    let cursor = store
        .get_setting(CURSOR_KEY)
        .await
        .map_err(|e| e.to_string())?
        .and_then(|c| c.parse::<i64>().ok())
        .unwrap_or(0);
    let page = fetch(http, link, cursor).await?;
    if page.events.is_empty() {
        return Ok(replayed > 0);
    }
    let (ctx2, link2) = (ctx.clone(), link.clone());
    let applied = store
        .transact(&Actor::system(), move |tx| {
            apply_page(&ctx2, &link2, tx, &page)
        })
        .await
        .map_err(|e| e.to_string())?;
    tracing::debug!(?applied, "itACiH feed page applied");
    Ok(applied.moved || applied.applied + applied.dead > 0)
}

/// Dead letters an admin replayed (pending rows of `itacih-feed`) are applied again.
async fn retry_replayed(
    store: &dyn Store,
    ctx: &Arc<FhirContext>,
    link: &Link,
) -> Result<usize, ApiError> {
    let request = ClaimRequest {
        destination: FEED_DEAD_LETTERS.into(),
        now_ms: jiff::Timestamp::now().as_millisecond(),
        limit: 50,
        lease_ms: 60_000,
        budget_ms: i64::MAX / 4,
    };
    let claim = store
        .transact(&Actor::system(), move |tx| Ok(tx.outbox_claim(&request)?))
        .await?;
    let n = claim.due.len();
    for m in claim.due {
        let (ctx, link) = (ctx.clone(), link.clone());
        store
            .transact(&Actor::system(), move |tx| {
                let event: Value = serde_json::from_str(&m.payload).unwrap_or(Value::Null);
                let outcome = match apply_event(&ctx, &link, tx, &event) {
                    Ok(()) => AttemptOutcome::Delivered,
                    Err(Unusable::Dead(reason)) => AttemptOutcome::Dead { error: reason },
                    Err(Unusable::Api(e)) => return Err(e),
                };
                tx.outbox_record(&m.id, &outcome)?;
                Ok(())
            })
            .await?;
    }
    Ok(n)
}

/// The poller: polls until stopped, at the link's pace when there is nothing new.
pub async fn run(
    store: Arc<dyn Store>,
    fhir: Arc<FhirContext>,
    link: Link,
    http: reqwest::Client,
    mut stop: watch::Receiver<bool>,
) {
    // The first failure of a run of failures is a warning; the rest are debug (itACiH down for hours must
    // not flood the log).
    let mut failing = false;
    loop {
        if *stop.borrow() {
            return;
        }
        let more = match poll_once(&http, store.as_ref(), &fhir, &link).await {
            Ok(more) => {
                if failing {
                    tracing::info!("the itACiH feed answers again");
                }
                failing = false;
                more
            }
            Err(e) => {
                if failing {
                    tracing::debug!(error = %e, "itACiH feed poll failed; retrying");
                } else {
                    tracing::warn!(error = %e, "itACiH feed poll failed; retrying quietly until it answers");
                }
                failing = true;
                false
            }
        };
        if !more && super::push::sleep_or_stop(link.poll_interval, &mut stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link::for_tests(
            "http://127.0.0.1:1/".parse().unwrap(),
            &crate::caremap::CareMap::demo(),
        )
    }

    #[test]
    fn a_page_is_read_and_a_bad_one_refused() {
        let l = link();
        let p = parse_page(br#"{"handelser": [{"sekvens": 1}], "nasta": 1}"#, &l).unwrap();
        assert_eq!(p.nasta, 1);
        assert_eq!(p.events.len(), 1);
        assert!(parse_page(b"{}", &l).is_err());
        assert!(parse_page(br#"{"handelser": [], "nasta": -3}"#, &l).is_err());
        assert!(parse_page(b"[1,2", &l).is_err());
    }

    #[test]
    fn ids_made_from_itacih_values_are_valid_fhir_ids() {
        for v in ["it-k-5512", "å/ä?ö", "", &"x".repeat(500)] {
            let id = id_from("itacih-k", v);
            assert!(ops::check_id(&id).is_ok(), "{id}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_as_a_feed_page_are_read_or_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_page(&bytes, &link());
        }

        #[test]
        fn any_json_page_shape_is_read_or_refused(nasta in proptest::prelude::any::<i64>(), n in 0usize..5) {
            let events: Vec<Value> = (0..n).map(|i| json!({"sekvens": i})).collect();
            let text = json!({"handelser": events, "nasta": nasta}).to_string();
            let page = parse_page(text.as_bytes(), &link());
            proptest::prop_assert_eq!(page.is_ok(), nasta >= 0);
        }
    }
}
