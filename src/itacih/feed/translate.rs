//! One itACiH event into FHIR writes (the translations listed in [`super`]'s docs): the EpisodeOfCare of its
//! `kontaktId`, Encounters, Tasks, MedicationAdministrations, DetectedIssues and Communications. Kept apart
//! from the polling and cursor handling, which do not change when the mapping does.

use serde_json::{Value, json};

use super::{DAR, KONTAKT_SCOPE, Unusable, dead};
use crate::domain::HSA_ID_SYSTEM;
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::fhir::ops::{self, Prepared};
use crate::itacih::Link;
use crate::store::{StoredVersion, WriteTx};
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
pub(super) fn id_from(prefix: &str, value: &str) -> String {
    let hex: String = value.bytes().take(24).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

pub(super) fn apply_event(
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
