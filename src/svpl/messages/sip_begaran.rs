//! `SipBegaran`: a kommun or region asks the others to a SIP. Opens a SIP case: a draft CarePlan (category
//! SIP) owned by the sender, the Consent, a CareTeam of the invited principals (so each of them reads the
//! plan addressed to it), one `sip-kallelse` Task per recipient, and a notification.

use serde_json::{Value, json};

use crate::svpl::kvittens::FelCode;
use crate::svpl::mapping::Mapping;
use crate::svpl::message::{Envelope, Reader};
use crate::svpl::translate::*;
use crate::svpl::xml::Element;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipBegaran {
    /// `Samtycke/@lamnat="true"` was given (anything else is refused with SAMTYCKE_SAKNAS).
    pub consent_date: Option<String>,
    pub reason: String,
    pub wished_time: Option<String>,
}

impl SipBegaran {
    pub fn read(r: &mut Reader<'_>, root: &Element) -> Option<Self> {
        let consent = r.boolean(root, "begaran.consent", None);
        let consent_date = r.date(root, "begaran.consent_date", None, false);
        let reason = r.req(root, "begaran.reason", None);
        let wished_time = r.instant(root, "begaran.wished_time", None, false);
        if consent != Some(true) {
            r.fail(
                FelCode::SamtyckeSaknas,
                "begaran.consent",
                None,
                "a SIP needs the person's consent: Samtycke with lamnat=\"true\"".into(),
            );
            return None;
        }
        Some(SipBegaran {
            consent_date,
            reason: reason?,
            wished_time,
        })
    }

    pub fn write(&self, root: &mut Element, map: &Mapping) {
        root.set(map.path("begaran.consent"), "true");
        if let Some(d) = &self.consent_date {
            root.set(map.path("begaran.consent_date"), d);
        }
        root.set(map.path("begaran.reason"), &self.reason);
        if let Some(t) = &self.wished_time {
            root.set(map.path("begaran.wished_time"), t);
        }
    }

    pub fn translate(&self, e: &Envelope, cx: &Context, _map: &Mapping) -> Translation {
        let sender = e.sender.hsa.as_str();
        let id = |role: &str| id_for(sender, &e.id, role);
        let (plan_id, team_id, consent_id) = (id("CarePlan"), id("CareTeam"), id("Consent"));
        let mut t = Translation::new(format!("CarePlan/{plan_id}"));
        let recipients: Vec<String> = e.recipients.iter().map(|r| r.hsa.to_string()).collect();

        let mut members = vec![team_member(sender, "initiator")];
        members.extend(recipients.iter().map(|r| team_member(r, "invited")));
        let team = object([
            ("resourceType", json!("CareTeam")),
            ("identifier", Value::Array(vec![message_identifier(e)])),
            ("status", json!("proposed")),
            (
                "category",
                json!([{"coding": [{"system": CS_CAREPLAN_CATEGORY, "code": "sip"}]}]),
            ),
            ("name", json!("SIP")),
            ("subject", json!({"reference": cx.patient})),
            ("participant", Value::Array(members)),
        ]);
        t.create("CareTeam", team_id.clone(), team);

        // No `provision`: the SIP consent is consent to the plan, not to sammanhållen dokumentation, so it
        // grants no reading of other records (fhir/sharing.rs reads provisions only).
        let mut consent = object([
            ("resourceType", json!("Consent")),
            ("identifier", Value::Array(vec![message_identifier(e)])),
            ("status", json!("active")),
            (
                "scope",
                json!({"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"
                }]}),
            ),
            (
                "category",
                json!([{"coding": [{"system": CS_CONSENT_CATEGORY, "code": "sip",
                                    "display": "Samtycke till SIP"}]}]),
            ),
            ("patient", json!({"reference": cx.patient})),
            ("organization", Value::Array(vec![hsa_ref(sender)])),
            (
                "policyRule",
                json!({"text": "HSL 16 kap. 4 §, SoL 2 kap. 7 §: samordnad individuell plan"}),
            ),
        ]);
        if let Some(d) = &self.consent_date {
            consent["dateTime"] = Value::String(d.clone());
        }
        t.create("Consent", consent_id.clone(), consent);

        let plan = object([
            ("resourceType", json!("CarePlan")),
            ("identifier", Value::Array(vec![message_identifier(e)])),
            ("status", json!("draft")),
            ("intent", json!("plan")),
            (
                "category",
                json!([{"coding": [{"system": CS_CAREPLAN_CATEGORY, "code": "sip",
                                    "display": "Samordnad individuell plan"}]}]),
            ),
            ("title", json!("SIP")),
            ("description", json!(self.reason)),
            ("subject", json!({"reference": cx.patient})),
            ("created", json!(e.created_text)),
            ("author", hsa_with_name(sender, e.sender.name.as_deref())),
            (
                "careTeam",
                Value::Array(vec![literal("CareTeam", &team_id)]),
            ),
            (
                "supportingInfo",
                Value::Array(vec![literal("Consent", &consent_id)]),
            ),
        ]);
        t.create("CarePlan", plan_id.clone(), plan);

        for r in &recipients {
            let mut task = object([
                ("resourceType", json!("Task")),
                ("identifier", Value::Array(vec![message_identifier(e)])),
                ("basedOn", Value::Array(vec![literal("CarePlan", &plan_id)])),
                ("status", json!("requested")),
                ("intent", json!("order")),
                (
                    "code",
                    json!({"coding": [{"system": CS_TASK, "code": TASK_SIP_KALLELSE,
                                       "display": "Kalla till SIP-möte"}]}),
                ),
                ("description", json!(self.reason)),
                ("focus", literal("CarePlan", &plan_id)),
                ("for", json!({"reference": cx.patient})),
                ("authoredOn", json!(e.created_text)),
                ("requester", hsa_ref(sender)),
                ("owner", hsa_ref(r)),
            ]);
            if let Some(w) = &self.wished_time {
                task["restriction"] = json!({"period": {"start": w}});
            }
            t.create("Task", id(&format!("Task:{r}")), task);
        }
        let text = format!("SIP-begäran: {}", self.reason);
        t.create(
            "Communication",
            id("Communication"),
            notification(e, cx, &[literal("CarePlan", &plan_id)], &recipients, &text),
        );
        t
    }
}

/// An organisation reference with its name when the message gave one.
pub(crate) fn hsa_with_name(hsa: &str, name: Option<&str>) -> Value {
    let mut r = hsa_ref(hsa);
    if let Some(n) = name {
        r["display"] = Value::String(n.to_owned());
    }
    r
}
