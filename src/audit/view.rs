//! The FHIR AuditEvent (IHE BALP "Basic Audit Log Patterns" shape) of a stored record: a view rendered when
//! an auditor reads, searches or exports the log. Nothing of it is stored; the record's bytes are the truth.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::format::Entry;

/// HSA-ids are identifiers under this system.
const HSA_SYSTEM: &str = crate::domain::HSA_ID_SYSTEM;
/// navet's registered client ids.
pub const CLIENT_SYSTEM: &str = "urn:navet:client";
/// The request id, to match a log record with navet's operational log line.
pub const REQUEST_ID_SYSTEM: &str = "urn:navet:request-id";
/// The outbox message id of a delivery.
pub const MESSAGE_ID_SYSTEM: &str = "urn:navet:outbox-message";
/// The extension of an exported AuditEvent that carries its stored record (FORMAT.md "The export").
pub const RECORD_EXTENSION: &str = "urn:navet:audit-record";
/// The purpose of a system integration acting without a user (spec/auth.md: "logged so").
pub const SYSTEM_PURPOSE: &str = "SYSTEM-INTEGRATION";

fn purpose_concept(code: &str) -> Value {
    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": code}]})
}

fn application(address: Option<&str>, who: Value, requestor: bool) -> Value {
    let mut agent = json!({
        "type": {"coding": [{
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110150", "display": "Application"
        }]},
        "who": who,
        "requestor": requestor,
    });
    if let Some(address) = address {
        agent["network"] = json!({"address": address, "type": "2"});
    }
    agent
}

fn agents(e: &Entry) -> Vec<Value> {
    if let Some(d) = &e.delivery {
        // A delivery has no caller: navet sends, a principal receives.
        return vec![
            json!({
                "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                      "code": "110153", "display": "Source Role ID"}]},
                "who": {"display": "navet"},
                "requestor": true
            }),
            json!({
                "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                      "code": "110152", "display": "Destination Role ID"}]},
                "who": {
                    "identifier": {"system": HSA_SYSTEM, "value": d.principal},
                    "display": d.name
                },
                "requestor": false,
                "network": {"address": d.address, "type": "1"}
            }),
        ];
    }
    if !e.authenticated {
        return vec![application(
            e.source_address.as_deref(),
            json!({"display": "unauthenticated caller"}),
            true,
        )];
    }
    let mut agents = Vec::new();
    // The person: user HSA-id, name and role, acting for a care unit.
    if let Some(user) = &e.user {
        agents.push(json!({
            "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP", "display": "information recipient"
            }]},
            "role": [{"coding": [{"system": "urn:navet:user-role", "code": e.role.as_deref().unwrap_or_default()}]}],
            "who": who_by_hsa_id(user, e.user_name.as_deref()),
            "requestor": true,
            "location": {"identifier": {"system": HSA_SYSTEM, "value": e.care_unit.as_deref().unwrap_or_default()}},
            "purposeOfUse": e.purpose.as_deref().map(purpose_concept).into_iter().collect::<Vec<_>>()
        }));
    }
    // The principal (vårdgivare/huvudman) the access is made for.
    agents.push(json!({
        "type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
            "code": "datacollector", "display": "data collector"
        }]},
        "who": who_by_hsa_id(e.principal.as_deref().unwrap_or_default(), e.principal_name.as_deref()),
        "requestor": e.user.is_none(),
    }));
    // The client system, with the token it used.
    let mut client = application(
        e.source_address.as_deref(),
        json!({"identifier": {"system": CLIENT_SYSTEM, "value": e.client_id.as_deref().unwrap_or_default()}}),
        false,
    );
    client["policy"] = json!([format!(
        "urn:navet:token:{}",
        e.token_id.as_deref().unwrap_or_default()
    )]);
    agents.push(client);
    agents
}

fn entities(e: &Entry) -> Vec<Value> {
    let mut entities: Vec<Value> = e
        .patients
        .iter()
        .map(|p| {
            json!({
                "what": {"reference": p},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}
            })
        })
        .collect();
    entities.extend(e.entities.iter().map(|r| {
        json!({
            "what": {"reference": r},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4"}
        })
    }));
    if let Some(query) = &e.query {
        entities.push(json!({
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24"},
            "query": STANDARD.encode(query)
        }));
    }
    entities.push(json!({
        "what": {"identifier": {"system": REQUEST_ID_SYSTEM, "value": e.request_id}},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "4"}
    }));
    if let Some(d) = &e.delivery {
        entities.push(json!({
            "what": {"identifier": {"system": MESSAGE_ID_SYSTEM, "value": d.message_id}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4"}
        }));
    }
    entities
}

/// The AuditEvent `id` of this record, with its chain (`crate::audit::chain::Chain`) and sequence number.
pub fn audit_event(e: &Entry, id: &str) -> Value {
    let recorded = crate::store::sqlite::format_instant(e.time_us.div_euclid(1000));
    let action = e.action().map_or("E", |a| a.code());
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "meta": {"versionId": "1", "lastUpdated": recorded},
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest", "display": "Restful Operation"
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": e.operation}],
        "action": action,
        "recorded": recorded,
        "outcome": e.outcome().code(),
        "outcomeDesc": format!("HTTP {}", e.status),
        "agent": agents(e),
        "source": {
            "observer": {"display": "navet"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}]
        },
        "entity": entities(e),
    });
    match (&e.purpose, e.system_integration) {
        (Some(p), _) => event["purposeOfEvent"] = json!([purpose_concept(p)]),
        // A system integration acting without a user: logged so (spec/auth.md).
        (None, true) => {
            event["purposeOfEvent"] =
                json!([{"coding": [{"system": "urn:navet:purpose", "code": SYSTEM_PURPOSE}]}]);
        }
        (None, false) => {}
    }
    event
}

/// An agent's `who` by HSA-id, with its display only when a name is known: FHIR strings are never empty, so a
/// token without `subject_name` must not yield `"display": ""` (issue 14).
fn who_by_hsa_id(hsa_id: &str, name: Option<&str>) -> Value {
    match name.filter(|n| !n.trim().is_empty()) {
        Some(name) => {
            json!({"identifier": {"system": HSA_SYSTEM, "value": hsa_id}, "display": name})
        }
        None => json!({"identifier": {"system": HSA_SYSTEM, "value": hsa_id}}),
    }
}
