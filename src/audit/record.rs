//! One access-log record and its FHIR AuditEvent form (IHE BALP "Basic Audit Log Patterns" shapes; the PDL
//! fields of HSLF-FS 2016:40 4 kap. 9 §: who (user, role, care unit, principal), whom (patients), what, when,
//! why (purpose of use), and the outcome).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::auth::Caller;

/// HSA-ids are identifiers under this system.
const HSA_SYSTEM: &str = crate::domain::HSA_ID_SYSTEM;
/// navet's registered client ids.
pub const CLIENT_SYSTEM: &str = "urn:navet:client";
/// The request id, to match a log record with navet's operational log line.
pub const REQUEST_ID_SYSTEM: &str = "urn:navet:request-id";

/// BALP/FHIR AuditEvent.action: C R U D E.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }
}

/// AuditEvent.outcome: `0` success, `4` minor failure (refused: 4xx), `8` serious failure (5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Denied,
    Failed,
}

impl Outcome {
    pub fn from_status(status: u16) -> Outcome {
        match status {
            0..=399 => Outcome::Success,
            400..=499 => Outcome::Denied,
            _ => Outcome::Failed,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::Denied => "4",
            Outcome::Failed => "8",
        }
    }
}

/// Everything one request did to patient data.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub action: Action,
    /// The FHIR interaction (restful-interaction code): read, vread, search-type, history-instance, create,
    /// update, delete, transaction, batch.
    pub operation: String,
    pub outcome: Outcome,
    /// The HTTP status answered.
    pub status: u16,
    /// The caller; `None` when the request carried no valid token.
    pub caller: Option<Caller>,
    pub source_address: Option<String>,
    pub request_id: String,
    /// `Patient/{id}` of every patient whose data was touched or returned.
    pub patients: Vec<String>,
    /// `Type/id/_history/version` of every resource touched or returned (or `Type/id` when refused).
    pub entities: Vec<String>,
    /// The search query string, for searches.
    pub query: Option<String>,
}

impl AuditRecord {
    pub fn new(
        action: Action,
        operation: impl Into<String>,
        request_id: impl Into<String>,
    ) -> Self {
        AuditRecord {
            action,
            operation: operation.into(),
            outcome: Outcome::Success,
            status: 200,
            caller: None,
            source_address: None,
            request_id: request_id.into(),
            patients: Vec::new(),
            entities: Vec::new(),
            query: None,
        }
    }

    pub fn add_patient(&mut self, reference: String) {
        if !self.patients.contains(&reference) {
            self.patients.push(reference);
        }
    }

    /// The AuditEvent resource text for this record, stored as `AuditEvent/{id}` at `recorded`.
    pub fn to_audit_event(&self, id: &str, recorded: &str) -> String {
        let mut agents = Vec::new();
        if let Some(caller) = &self.caller {
            let purpose = caller.user.as_ref().map(|u| u.purpose.as_str());
            // The person: user HSA-id, name and role, acting for a care unit.
            if let Some(user) = &caller.user {
                agents.push(json!({
                    "type": {"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "IRCP", "display": "information recipient"
                    }]},
                    "role": [{"coding": [{"system": "urn:navet:user-role", "code": user.role.as_str()}]}],
                    // No subject_name: no display (FHIR strings are never empty).
                    "who": match &user.name {
                        Some(name) => json!({
                            "identifier": {"system": HSA_SYSTEM, "value": user.hsa_id.as_str()},
                            "display": name
                        }),
                        None => json!({
                            "identifier": {"system": HSA_SYSTEM, "value": user.hsa_id.as_str()}
                        }),
                    },
                    "requestor": true,
                    "location": {"identifier": {"system": HSA_SYSTEM, "value": user.care_unit.as_str()}},
                    "purposeOfUse": purpose.map(purpose_concept).into_iter().collect::<Vec<_>>()
                }));
            }
            // The principal (vårdgivare/huvudman) the access is made for.
            agents.push(json!({
                "type": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                    "code": "datacollector", "display": "data collector"
                }]},
                "who": {
                    "identifier": {"system": HSA_SYSTEM, "value": caller.principal.hsa_id.as_str()},
                    "display": caller.principal.name.clone()
                },
                "requestor": caller.user.is_none(),
            }));
            // The client system, with the token it used.
            let mut client = json!({
                "type": {"coding": [{
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "110150", "display": "Application"
                }]},
                "who": {"identifier": {"system": CLIENT_SYSTEM, "value": &*caller.client_id}},
                "requestor": false,
                "policy": [format!("urn:navet:token:{}", caller.token_id)],
            });
            if let Some(address) = &self.source_address {
                client["network"] = json!({"address": address, "type": "2"});
            }
            agents.push(client);
        } else {
            let mut unknown = json!({
                "type": {"coding": [{
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "110150", "display": "Application"
                }]},
                "who": {"display": "unauthenticated caller"},
                "requestor": true,
            });
            if let Some(address) = &self.source_address {
                unknown["network"] = json!({"address": address, "type": "2"});
            }
            agents.push(unknown);
        }

        let mut entities: Vec<Value> = self
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
        entities.extend(self.entities.iter().map(|e| {
            json!({
                "what": {"reference": e},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4"}
            })
        }));
        if let Some(query) = &self.query {
            entities.push(json!({
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24"},
                "query": STANDARD.encode(query)
            }));
        }
        entities.push(json!({
            "what": {"identifier": {"system": REQUEST_ID_SYSTEM, "value": self.request_id}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "4"}
        }));

        let purpose = self
            .caller
            .as_ref()
            .and_then(|c| c.user.as_ref())
            .map(|u| purpose_concept(u.purpose.as_str()));
        let mut event = json!({
            "resourceType": "AuditEvent",
            "id": id,
            "meta": {"versionId": "1", "lastUpdated": recorded},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "code": "rest", "display": "Restful Operation"
            },
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": self.operation}],
            "action": self.action.code(),
            "recorded": recorded,
            "outcome": self.outcome.code(),
            "outcomeDesc": format!("HTTP {}", self.status),
            "agent": agents,
            "source": {
                "observer": {"display": "navet"},
                "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}]
            },
            "entity": entities,
        });
        match purpose {
            Some(p) => event["purposeOfEvent"] = json!([p]),
            // A system integration acting without a user: logged so (spec/auth.md).
            None if self.caller.as_ref().is_some_and(|c| c.system_integration) => {
                event["purposeOfEvent"] = json!([{"coding": [{"system": "urn:navet:purpose", "code": "SYSTEM-INTEGRATION"}]}]);
            }
            None => {}
        }
        event.to_string()
    }
}

fn purpose_concept(code: &str) -> Value {
    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": code}]})
}
