//! `SipPlan`: the principal with overall responsibility sends the plan. The CarePlan becomes active with one
//! activity per `Insats` (its huvudman and performer) and per other party's measure; the CareTeam gains the
//! performers and names the overall responsible principal as its managing organisation.
//!
//! A plan is whole (HSL 16 kap. 4 §: the four parts) with at least one insats for each of the huvudmän
//! kommun and region, the huvudman of every insats, and the overall responsible principal; what others do
//! (`OvrigaAtgarder`) may be nothing. Anything less is `SIP_OFULLSTANDIG`.

use serde_json::{Value, json};

use super::sip_plan as plan_of;
use crate::svpl::kvittens::{Fel, FelCode};
use crate::svpl::mapping::Mapping;
use crate::svpl::message::{Envelope, Reader};
use crate::svpl::translate::*;
use crate::svpl::xml::Element;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insats {
    /// `kommun`, `region` or `annan` (a key of the `principals` code map).
    pub principal: String,
    pub performer: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvrigAtgard {
    pub actor: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipPlan {
    pub insatser: Vec<Insats>,
    pub other: Vec<OvrigAtgard>,
    pub responsible: String,
    pub follow_up: Option<String>,
}

impl SipPlan {
    pub fn read(r: &mut Reader<'_>, root: &Element) -> Option<Self> {
        let mut insatser = Vec::new();
        let group = r.map.path("plan.insats").clone();
        for (i, el) in root.all(&group).into_iter().enumerate() {
            let at = Some(("plan.insats", i));
            let principal = r.opt(el, "plan.insats.principal");
            let performer = r.hsa(el, "plan.insats.performer", at, false);
            let start = r.date(el, "plan.insats.start", at, false);
            let end = r.date(el, "plan.insats.end", at, false);
            let text = r.req(el, "plan.insats.text", at);
            let principal = match principal {
                None => {
                    r.fail(
                        FelCode::SipOfullstandig,
                        "plan.insats.principal",
                        at,
                        "every insats names the huvudman that answers for it".into(),
                    );
                    None
                }
                Some(p) if !r.map.principals.contains_key(&p) => {
                    r.fail(
                        FelCode::Schema,
                        "plan.insats.principal",
                        at,
                        format!(
                            "unknown huvudman; expected one of: {}",
                            r.map
                                .principals
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    None
                }
                Some(p) => Some(p),
            };
            if let (Some(principal), Some(text)) = (principal, text) {
                insatser.push(Insats {
                    principal,
                    performer: performer.map(|h| h.to_string()),
                    start,
                    end,
                    text,
                });
            }
        }
        let mut other = Vec::new();
        let group = r.map.path("plan.other").clone();
        for (i, el) in root.all(&group).into_iter().enumerate() {
            let at = Some(("plan.other", i));
            if let Some(text) = r.req(el, "plan.other.text", at) {
                other.push(OvrigAtgard {
                    actor: r.opt(el, "plan.other.actor"),
                    text,
                });
            }
        }
        let responsible = r.hsa(root, "plan.responsible", None, false);
        let follow_up = r.date(root, "plan.follow_up", None, false);
        let mut complete = true;
        for needed in ["kommun", "region"] {
            if !insatser.iter().any(|i| i.principal == needed) {
                complete = false;
                r.fail(
                    FelCode::SipOfullstandig,
                    "plan.insats",
                    None,
                    format!("the plan has no insats that the huvudman {needed} answers for"),
                );
            }
        }
        if responsible.is_none() && r.opt(root, "plan.responsible").is_none() {
            complete = false;
            r.fail(
                FelCode::SipOfullstandig,
                "plan.responsible",
                None,
                "the plan names no principal with overall responsibility".into(),
            );
        }
        if !complete {
            return None;
        }
        Some(SipPlan {
            insatser,
            other,
            responsible: responsible?.to_string(),
            follow_up,
        })
    }

    pub fn write(&self, root: &mut Element, map: &Mapping) {
        for i in &self.insatser {
            let el = root.push(map.path("plan.insats"));
            el.set(map.path("plan.insats.principal"), &i.principal);
            if let Some(p) = &i.performer {
                el.set(map.path("plan.insats.performer"), p);
            }
            if let Some(s) = &i.start {
                el.set(map.path("plan.insats.start"), s);
            }
            if let Some(s) = &i.end {
                el.set(map.path("plan.insats.end"), s);
            }
            el.set(map.path("plan.insats.text"), &i.text);
        }
        for o in &self.other {
            let el = root.push(map.path("plan.other"));
            if let Some(a) = &o.actor {
                el.set(map.path("plan.other.actor"), a);
            }
            el.set(map.path("plan.other.text"), &o.text);
        }
        root.set(map.path("plan.responsible"), &self.responsible);
        if let Some(f) = &self.follow_up {
            root.set(map.path("plan.follow_up"), f);
        }
    }

    /// The outbound direction (`crate::svpl::outbound`): the plan an active SIP CarePlan is, with its
    /// CareTeam. Answers the body and the `Mottagare`: the team's members other than `sender`. The reverse
    /// of [`Self::translate`]: an activity with the huvudman `annan` and no performer by HSA-id is one of
    /// the others' measures (`OvrigaAtgarder`); the overall responsible principal is the team's managing
    /// organisation, else the plan's author, else the sender.
    pub fn render(
        plan: &Value,
        team: Option<&Value>,
        sender: &str,
        map: &Mapping,
    ) -> Option<(Self, Vec<String>)> {
        let mut insatser = Vec::new();
        let mut other = Vec::new();
        for activity in plan
            .get("activity")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(detail) = activity.get("detail") else {
                continue;
            };
            let Some(text) = detail.get("description").and_then(Value::as_str) else {
                continue;
            };
            let principal = extension(detail, EXT_HUVUDMAN)
                .and_then(|x| x.get("valueCoding"))
                .and_then(|c| code_key(&map.principals, c));
            let performer = detail.pointer("/performer/0");
            let performer_hsa = performer.and_then(hsa_of).map(str::to_owned);
            match principal {
                Some(p) if p != "annan" || performer_hsa.is_some() => {
                    let period = |k: &str| {
                        detail
                            .pointer(&format!("/scheduledPeriod/{k}"))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    };
                    insatser.push(Insats {
                        principal: p,
                        performer: performer_hsa,
                        start: period("start"),
                        end: period("end"),
                        text: text.to_owned(),
                    });
                }
                _ => other.push(OvrigAtgard {
                    actor: performer
                        .and_then(|p| p.get("display"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    text: text.to_owned(),
                }),
            }
        }
        let responsible = team
            .and_then(|t| t.pointer("/managingOrganization/0"))
            .and_then(hsa_of)
            .or_else(|| plan.get("author").and_then(hsa_of))
            .unwrap_or(sender)
            .to_owned();
        let follow_up = extension(plan, EXT_FOLLOW_UP).and_then(date_value);
        let recipients: Vec<String> = team
            .map(team_members)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m != sender)
            .collect();
        Some((
            SipPlan {
                insatser,
                other,
                responsible,
                follow_up,
            },
            recipients,
        ))
    }

    pub fn translate(
        &self,
        e: &Envelope,
        cx: &Context,
        map: &Mapping,
    ) -> Result<Translation, Vec<Fel>> {
        let plan = plan_of(cx, &map.xpath("reference", None))?;
        let mut t = Translation::new(format!("CarePlan/{}", plan.id));
        let mut members: Vec<(String, &str)> =
            vec![(self.responsible.clone(), "overall-responsible")];
        let mut activities = Vec::new();
        for i in &self.insatser {
            let mut detail = json!({"status": "scheduled", "description": i.text});
            if let Some(coding) = map.principals.get(&i.principal) {
                detail["extension"] = Value::Array(vec![object([
                    ("url", json!(EXT_HUVUDMAN)),
                    ("valueCoding", coding.to_json()),
                ])]);
            }
            if let Some(p) = &i.performer {
                detail["performer"] = Value::Array(vec![hsa_ref(p)]);
                members.push((p.clone(), "performer"));
            }
            if i.start.is_some() || i.end.is_some() {
                let mut period = json!({});
                if let Some(s) = &i.start {
                    period["start"] = Value::String(s.clone());
                }
                if let Some(s) = &i.end {
                    period["end"] = Value::String(s.clone());
                }
                detail["scheduledPeriod"] = period;
            }
            activities.push(object([("detail", detail)]));
        }
        for o in &self.other {
            let mut detail = json!({"status": "scheduled", "description": o.text});
            if let Some(coding) = map.principals.get("annan") {
                detail["extension"] = Value::Array(vec![object([
                    ("url", json!(EXT_HUVUDMAN)),
                    ("valueCoding", coding.to_json()),
                ])]);
            }
            if let Some(a) = &o.actor {
                detail["performer"] = json!([{"display": a}]);
            }
            activities.push(object([("detail", detail)]));
        }
        for (hsa, _) in &members {
            t.party(hsa);
        }
        if let Some(team) = cx.case.first("CareTeam") {
            let mut v = base(team);
            v["status"] = json!("active");
            add_members(&mut v, &members);
            v["managingOrganization"] = Value::Array(vec![hsa_ref(&self.responsible)]);
            t.update(team, v);
        }
        let mut v = base(plan);
        v["status"] = json!("active");
        v["activity"] = Value::Array(activities);
        set_extension(
            &mut v,
            EXT_FOLLOW_UP,
            self.follow_up
                .as_deref()
                .map(|f| date_extension(EXT_FOLLOW_UP, f)),
        );
        t.update(plan, v);
        let recipients: Vec<String> = e.recipients.iter().map(|r| r.hsa.to_string()).collect();
        t.create(
            "Communication",
            id_for(e.sender.hsa.as_str(), &e.id, "Communication"),
            notification(
                e,
                cx,
                &[literal("CarePlan", &plan.id)],
                &recipients,
                "SIP fastställd",
            ),
        );
        Ok(t)
    }
}
