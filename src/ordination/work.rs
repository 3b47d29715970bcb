//! The work an order creates (spec/ordination.md v2 steps 3–5): a Task per planned visit, the physician
//! follow-up Task, the Communication to the principal with medical responsibility, the itACiH deliveries
//! through the outbox; and what revoking the order undoes. All inside the order's transaction.
//!
//! Ids are derived from the order's id and the visit's number (`{order}-v{n}`, `{order}-f`, `{order}-cstart`),
//! so planning an order twice finds its work already there and creates nothing new, and every visit keeps
//! the same itACiH `externtId`.

use jiff::Zoned;
use serde_json::{Value, json};

use super::intake::Order;
use super::plan::{Plan, Visit};
use super::{EXTERNT_ID_SYSTEM, VISIT_NUMBER_EXTENSION};
use crate::domain::HSA_ID_SYSTEM;
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::fhir::ops;
use crate::store::{StoredVersion, WriteTx};

/// FHIR dateTime with the local offset: `2026-11-24T08:00:00+01:00`.
pub fn fhir_time(z: &Zoned) -> String {
    z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

pub fn visit_task_id(sr_id: &str, number: u32) -> String {
    format!("{sr_id}-v{number}")
}

pub fn follow_up_task_id(sr_id: &str) -> String {
    format!("{sr_id}-f")
}

/// The visit's stable itACiH id (spec/itacih.md: "the same planned visit always has the same id").
pub fn externt_id(task_id: &str, number: u32) -> String {
    format!("navet:Task/{task_id}/visit/{number}")
}

fn hsa_ref(ctx: &FhirContext, hsa: &str) -> Value {
    let name = ctx
        .ordination
        .care
        .team(hsa)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    if name.is_empty() {
        json!({"identifier": {"system": HSA_ID_SYSTEM, "value": hsa}})
    } else {
        json!({"identifier": {"system": HSA_ID_SYSTEM, "value": hsa}, "display": name})
    }
}

/// Writes `value` as `Type/id`: created if new, else nothing (the work is already there). Answers the new
/// version, if one was written.
fn create_once(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    value: &Value,
    id: &str,
) -> Result<Option<StoredVersion>, ApiError> {
    let ty = value
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if tx.current(&ty, id)?.is_some() {
        return Ok(None);
    }
    let prepared = built(value.clone())?;
    Ok(Some(
        ops::create(ctx, tx, &prepared, Some(id.to_owned()), None)?.version,
    ))
}

/// A resource navet built (from the order the client sent, which was validated): written without the
/// full validation a client's resource gets, which cost a tenth of the writer's time per order. The unit
/// tests below check that what navet builds validates.
pub(crate) fn built(value: Value) -> Result<ops::Prepared, ApiError> {
    Ok(ops::Prepared {
        resource: crate::fhir::json::IncomingResource::from_value(value)?,
        // Not the translation of a received SVPL message: outbound SVPL judges it like any other write.
        from_message: false,
    })
}

fn task_json(ctx: &FhirContext, order: &Order, visit: &Visit, id: &str, now: &str) -> Value {
    let rules = &ctx.ordination.rules;
    let display = rules
        .intervention(&visit.code)
        .map(|i| i.display.clone())
        .unwrap_or_default();
    let mut description = visit.note.clone();
    if visit.dose.is_some()
        && let Some(m) = &order.medication
    {
        let what = [m.name.as_deref(), m.dose.as_deref(), m.route.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !what.is_empty() {
            description = format!("{description}: {what}");
        }
    }
    let mut task = json!({
        "resourceType": "Task",
        "identifier": [{"system": EXTERNT_ID_SYSTEM, "value": externt_id(id, visit.number)}],
        "extension": [{"url": VISIT_NUMBER_EXTENSION, "valueInteger": visit.number}],
        "status": "requested",
        "intent": "order",
        "priority": "routine",
        "code": {"coding": [{"system": rules.intervention_system, "code": visit.code, "display": display}]},
        "basedOn": [{"reference": format!("ServiceRequest/{}", order.sr_id)}],
        "for": {"reference": format!("Patient/{}", order.patient_id)},
        "authoredOn": now,
        "owner": hsa_ref(ctx, &visit.performer),
        "executionPeriod": {"start": fhir_time(&visit.start), "end": fhir_time(&visit.end)},
        // The dose: one administration in this window.
        "restriction": {
            "repetitions": 1,
            "period": {"start": fhir_time(&visit.start), "end": fhir_time(&visit.end)}
        },
    });
    if !order.requester.is_null() {
        task["requester"] = order.requester.clone();
    }
    if !description.is_empty() {
        task["description"] = Value::String(description);
        task["note"] = json!([{"text": visit.note}]);
    }
    if visit.dose.is_some()
        && let Some(m) = &order.medication
    {
        task["focus"] = json!({"reference": format!("MedicationRequest/{}", m.id)});
    }
    task
}

/// Creates the work of a planned order. Answers what was written.
pub fn create(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    order: &Order,
    plan: &Plan,
) -> Result<Vec<StoredVersion>, ApiError> {
    if order.sr_id.len() > 56 {
        return Err(ApiError::internal(
            "an order id too long for its visits' ids",
        ));
    }
    let (now, _) = tx.now();
    let mut written = Vec::new();
    // The orderer's itACiH remittent code: looked up once per order, not per visit.
    let remittent = match &ctx.ordination.itacih {
        Some(link) => crate::itacih::push::remittent_of(link, tx, ctx, &order.orderer),
        None => None,
    };
    for visit in &plan.visits {
        let id = visit_task_id(&order.sr_id, visit.number);
        let task = task_json(ctx, order, visit, &id, &now);
        if let Some(v) = create_once(ctx, tx, &task, &id)? {
            written.push(v);
            if let Some(link) = &ctx.ordination.itacih {
                crate::itacih::push::enqueue_visit(
                    ctx,
                    link,
                    tx,
                    order,
                    visit,
                    &id,
                    remittent.as_deref(),
                )?;
            }
        }
    }
    if let Some(f) = &plan.follow_up {
        let id = follow_up_task_id(&order.sr_id);
        let mut task = task_json(ctx, order, f, &id, &now);
        // The coordinator (ASIH) asks the team's physician: the requester of this Task is the coordinator.
        task["requester"] = hsa_ref(ctx, &plan.coordinator);
        if let Some(v) = create_once(ctx, tx, &task, &id)? {
            written.push(v);
        }
    }
    // Tell the principal with medical responsibility that the point intervention starts.
    if let Some((id, communication)) = start_communication(ctx, order, plan, &now)
        && let Some(v) = create_once(ctx, tx, &communication, &id)?
    {
        written.push(v);
    }
    // (v2) The patient has kommunal hemsjukvård: the kommun's home-care nurse is invited.
    if let Some((id, invitation)) = home_care_invitation(ctx, order, plan, &now)
        && let Some(v) = create_once(ctx, tx, &invitation, &id)?
    {
        written.push(v);
    }
    Ok(written)
}

/// The invitation of the municipal home-care nurse (spec/ordination.md v2 step 4): a Communication to the
/// kommun where the patient stays, from the coordinating team, about the order, with the first visit and the
/// team's name. Answers its stable id; none when the patient has no kommunal hemsjukvård.
fn home_care_invitation(
    ctx: &FhirContext,
    order: &Order,
    plan: &Plan,
    now: &str,
) -> Option<(String, Value)> {
    let kommun = order.home_care_kommun.as_ref()?;
    let (team, first) = team_and_first_visit(ctx, plan);
    let text = format!(
        "Inbjudan till hemsjukvårdens sjuksköterska: {team} skriver in patienten för {} ({} besök, första {first}). \
         Patienten har kommunal hemsjukvård; kontakta {team} för samordning.",
        order.facts.intervention,
        plan.visits.len(),
    );
    let invitation = notification(
        ctx,
        order,
        plan,
        now,
        kommun,
        Some("Inbjudan: kommunal hemsjukvård"),
        text,
    );
    Some((format!("{}-ckommun", order.sr_id), invitation))
}

/// The Communication to the principal with medical responsibility that the point intervention starts, with
/// its stable id; none when nobody holds it.
fn start_communication(
    ctx: &FhirContext,
    order: &Order,
    plan: &Plan,
    now: &str,
) -> Option<(String, Value)> {
    let responsible = order.responsible.as_ref()?;
    let (team, first) = team_and_first_visit(ctx, plan);
    let text = format!(
        "{} ({}) för patienten planeras av {team}: {} besök, första {first}. Det medicinska ansvaret ligger hos er.",
        if order.category == "bedomning" {
            "Bedömning i hemmet"
        } else {
            "Punktinsats"
        },
        order.facts.intervention,
        plan.visits.len(),
    );
    let communication = notification(ctx, order, plan, now, responsible, None, text);
    Some((format!("{}-cstart", order.sr_id), communication))
}

/// The coordinating team's name and the first planned visit's time, as the notifications about an order say them.
fn team_and_first_visit(ctx: &FhirContext, plan: &Plan) -> (String, String) {
    let team = ctx
        .ordination
        .care
        .team(&plan.coordinator)
        .map(|t| t.name.clone())
        .unwrap_or_else(|| plan.coordinator.clone());
    let first = plan
        .visits
        .first()
        .map(|v| fhir_time(&v.start))
        .unwrap_or_default();
    (team, first)
}

/// A notification Communication about the order, from the coordinating team to `recipient` (an HSA-id), with
/// an optional reason.
fn notification(
    ctx: &FhirContext,
    order: &Order,
    plan: &Plan,
    now: &str,
    recipient: &str,
    reason: Option<&str>,
    text: String,
) -> Value {
    let mut communication = json!({
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/communication-category",
            "code": "notification"
        }]}],
    });
    if let Some(reason) = reason {
        communication["reasonCode"] = json!([{"text": reason}]);
    }
    communication["subject"] = json!({"reference": format!("Patient/{}", order.patient_id)});
    communication["about"] = json!([{"reference": format!("ServiceRequest/{}", order.sr_id)}]);
    communication["sent"] = json!(now);
    communication["recipient"] =
        json!([{"identifier": {"system": HSA_ID_SYSTEM, "value": recipient}}]);
    communication["sender"] = hsa_ref(ctx, &plan.coordinator);
    communication["payload"] = json!([{"contentString": text}]);
    communication
}

/// The order's visit Tasks that exist, in visit order (ids `{order}-v1`, `-v2`, … until one is missing).
pub fn visit_tasks(tx: &mut dyn WriteTx, sr_id: &str) -> Result<Vec<StoredVersion>, ApiError> {
    let mut out = Vec::new();
    for n in 1..=10_000u32 {
        match tx.current("Task", &visit_task_id(sr_id, n))? {
            Some(t) => out.push(t),
            None => break,
        }
    }
    Ok(out)
}

/// Sets a stored Task's status (and optional business status text), as a new version.
pub fn set_task_status(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    task: &StoredVersion,
    status: &str,
    business: Option<&str>,
) -> Result<StoredVersion, ApiError> {
    let mut value: Value = task
        .json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| ApiError::internal("a Task without JSON"))?;
    value["status"] = Value::String(status.to_owned());
    match business {
        Some(text) => value["businessStatus"] = json!({"text": text}),
        None => {
            if let Some(o) = value.as_object_mut() {
                o.remove("businessStatus");
            }
        }
    }
    if let Some(meta) = value.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
    }
    let prepared = built(value)?;
    Ok(ops::update(ctx, tx, &prepared, &task.id, None)?.version)
}

fn task_status(task: &StoredVersion) -> String {
    task.json
        .as_deref()
        .and_then(|j| serde_json::from_str::<Value>(j).ok())
        .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// Revoking the order: every Task not yet done is cancelled, and its itACiH visit (`MAKULERAD`).
pub fn revoke(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    sr_id: &str,
) -> Result<Vec<StoredVersion>, ApiError> {
    let mut tasks = visit_tasks(tx, sr_id)?;
    if let Some(f) = tx.current("Task", &follow_up_task_id(sr_id))? {
        tasks.push(f);
    }
    let mut written = Vec::new();
    for task in tasks {
        let status = task_status(&task);
        if matches!(
            status.as_str(),
            "completed" | "cancelled" | "failed" | "entered-in-error"
        ) {
            continue;
        }
        let v = set_task_status(ctx, tx, &task, "cancelled", Some("Ordinationen återkallad"))?;
        if let Some(link) = &ctx.ordination.itacih
            && task.id.starts_with(&format!("{sr_id}-v"))
        {
            crate::itacih::push::enqueue_cancel(link, tx, &v)?;
        }
        written.push(v);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caremap::PatientFacts;
    use crate::ordination::plan::OrderFacts;
    use jiff::civil::date;

    /// An order as intake reads it: Ystad (ASIH coordinates, so a physician follow-up too), ×4 a day.
    fn order(ctx: &FhirContext) -> (Order, Plan) {
        let facts = OrderFacts {
            intervention: "iv-antibiotika".into(),
            municipality: "1286".into(),
            first_day: date(2026, 11, 28),
            last_day: date(2026, 11, 29),
            per_day: Some(4),
            first_time: None,
            units: None,
            base_test: false,
            performer: None,
            patient: PatientFacts {
                age: Some(80),
                main_need: None,
            },
        };
        let plan =
            crate::ordination::plan::plan(&ctx.ordination.care, &ctx.ordination.rules, &facts)
                .expect("the order plans");
        let order = Order {
            sr_id: "sr-1".into(),
            patient_id: "pat-1".into(),
            national_id: Some("193803032451".into()),
            facts,
            category: "punktinsats".into(),
            orderer: "SE2321000255-LYS01".into(),
            requester: json!({"identifier": {"system": HSA_ID_SYSTEM, "value": "SE2321000255-P0002"}}),
            ordinator: Some("SE2321000255-P0002".into()),
            responsible: Some("SE2321000255-VC201".into()),
            listed_vc: Some("SE2321000255-VC201".into()),
            medication: Some(crate::ordination::intake::Medication {
                id: "mr-1".into(),
                name: Some("Piperacillin/Tazobactam".into()),
                dose: Some("4 g".into()),
                route: Some("47625008".into()),
            }),
            home_care_kommun: Some("SE2120000999-HSJ1286".into()),
            reasons: Vec::new(),
        };
        (order, plan)
    }

    fn errors(ctx: &FhirContext, value: &Value) -> Vec<String> {
        crate::fhir::validate::check(ctx, value)
            .into_iter()
            .filter(|f| f.level == crate::fhir::validate::Level::Error)
            .map(|f| format!("{}: {}", f.path, f.message))
            .collect()
    }

    #[test]
    fn every_resource_navet_builds_for_an_order_validates() {
        let ctx = FhirContext::embedded();
        let (order, plan) = order(&ctx);
        let now = "2026-11-27T10:00:00.000Z";
        let mut built: Vec<Value> = plan
            .visits
            .iter()
            .map(|v| task_json(&ctx, &order, v, &visit_task_id(&order.sr_id, v.number), now))
            .collect();
        let follow_up = plan
            .follow_up
            .as_ref()
            .expect("Ystad asks MTN for a follow-up");
        built.push(task_json(
            &ctx,
            &order,
            follow_up,
            &follow_up_task_id(&order.sr_id),
            now,
        ));
        let (id, communication) =
            start_communication(&ctx, &order, &plan, now).expect("VC201 holds the responsibility");
        assert_eq!(id, "sr-1-cstart");
        built.push(communication);
        let (id, invitation) =
            home_care_invitation(&ctx, &order, &plan, now).expect("kommunal hemsjukvård");
        assert_eq!(id, "sr-1-ckommun");
        assert_eq!(
            invitation["recipient"],
            json!([{"identifier": {"system": HSA_ID_SYSTEM, "value": "SE2120000999-HSJ1286"}}])
        );
        built.push(invitation);
        // Two days of four doses, the follow-up, the Communication and the invitation.
        assert_eq!(built.len(), 11);
        for value in &built {
            assert_eq!(errors(&ctx, value), Vec::<String>::new(), "{value}");
        }
        // And the check can fail: a Task without its status is refused.
        let mut broken = built[0].clone();
        broken.as_object_mut().map(|o| o.remove("status"));
        assert!(!errors(&ctx, &broken).is_empty());
    }
}
