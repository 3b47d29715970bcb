//! `SipAvslut`: the overall responsible principal closes the SIP. The CarePlan is completed, the CareTeam
//! inactive, the case's open Tasks cancelled. Before a plan named an overall responsible principal, the
//! principal that asked for the SIP may close it.

use serde_json::{Value, json};

use super::sip_plan;
use crate::svpl::kvittens::{Fel, FelCode};
use crate::svpl::mapping::Mapping;
use crate::svpl::message::{Envelope, Reader};
use crate::svpl::translate::*;
use crate::svpl::xml::Element;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipAvslut {
    pub reason: String,
}

impl SipAvslut {
    pub fn read(r: &mut Reader<'_>, root: &Element) -> Option<Self> {
        Some(SipAvslut {
            reason: r.req(root, "avslut.reason", None)?,
        })
    }

    pub fn write(&self, root: &mut Element, map: &Mapping) {
        root.set(map.path("avslut.reason"), &self.reason);
    }

    /// The outbound direction (`crate::svpl::outbound`): a SIP CarePlan its overall responsible principal
    /// completed, as [`Self::translate`] completes it. `Orsak` is the last `note` the closing principal wrote
    /// (else the last note; none leaves it empty, and navet's reader refuses the message, so the change is
    /// refused saying so). Answers the body and the `Mottagare` (the CareTeam's members without `sender`);
    /// `None` when the team names another principal as overall responsible: only that one closes the SIP
    /// (the rule the inbound translation enforces; before a plan named one, the plan's owner, who alone
    /// writes it).
    pub fn render(plan: &Value, team: Option<&Value>, sender: &str) -> Option<(Self, Vec<String>)> {
        let responsible = team
            .and_then(|t| t.pointer("/managingOrganization/0"))
            .and_then(hsa_of);
        if responsible.is_some_and(|r| r != sender) {
            return None;
        }
        let notes: Vec<&Value> = plan
            .get("note")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        let by_sender = notes
            .iter()
            .rev()
            .find(|n| n.get("authorReference").and_then(hsa_of) == Some(sender));
        let reason = by_sender
            .or(notes.last())
            .and_then(|n| n.get("text"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let recipients: Vec<String> = team
            .map(team_members)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m != sender)
            .collect();
        Some((SipAvslut { reason }, recipients))
    }

    pub fn translate(
        &self,
        e: &Envelope,
        cx: &Context,
        map: &Mapping,
    ) -> Result<Translation, Vec<Fel>> {
        let plan = sip_plan(cx, &map.xpath("reference", None))?;
        let sender = e.sender.hsa.as_str();
        let may_close = overall_responsible(&cx.case).or_else(|| cx.case.opened_by.clone());
        if may_close.as_deref() != Some(sender) {
            return Err(vec![Fel {
                code: FelCode::Avsandare,
                field: map.xpath("sender.hsa", None),
                text: "only the principal with overall responsibility for the SIP may close it"
                    .into(),
            }]);
        }
        let mut t = Translation::new(format!("CarePlan/{}", plan.id));
        if let Some(team) = cx.case.first("CareTeam") {
            let mut v = base(team);
            v["status"] = json!("inactive");
            t.update(team, v);
        }
        let mut v = base(plan);
        v["status"] = json!("completed");
        let mut notes: Vec<Value> = v
            .get("note")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        notes.push(json!({"authorReference": hsa_ref(sender), "time": e.created_text, "text": self.reason}));
        v["note"] = Value::Array(notes);
        t.update(plan, v);
        for task in cx.case.all("Task") {
            if task_is_open(&task.value) {
                let mut v = base(task);
                v["status"] = json!("cancelled");
                v["statusReason"] = json!({"text": "SIP avslutad"});
                t.update(task, v);
            }
        }
        let recipients: Vec<String> = e.recipients.iter().map(|r| r.hsa.to_string()).collect();
        let text = format!("SIP avslutad: {}", self.reason);
        t.create(
            "Communication",
            id_for(sender, &e.id, "Communication"),
            notification(e, cx, &[literal("CarePlan", &plan.id)], &recipients, &text),
        );
        Ok(t)
    }
}
