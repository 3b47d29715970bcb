//! The trigger table of src/svpl/outbound.rs rule by rule: which FHIR change sends which message, once, and
//! only from the principal the table names; and what a message leaves out (a protected identity's address).

use super::*;

#[test]
fn a_change_that_is_no_trigger_sends_nothing() {
    let map = Mapping::embedded();
    let out = outbound();
    let patient = json!({"resourceType": "Patient", "id": "p",
        "identifier": [{"system": "http://electronichealth.se/identifier/personnummer", "value": "191212121212"}]});
    let base = |ty: &str, value: Value, previous: Option<Value>, sender: &str| Change {
        sender: sender.into(),
        resource_type: ty.into(),
        id: "x".into(),
        value,
        previous,
        patient: patient.clone(),
        plan: None,
        team: None,
        case_message: None,
        message_id: "navet-1".into(),
        created: "2026-11-23T09:20:00Z".into(),
    };
    let admission = json!({"resourceType": "Encounter", "status": "in-progress",
        "class": {"code": "IMP"}, "period": {"start": "2026-11-23T08:00:00+01:00"},
        "participant": [{"individual": {"identifier": {"value": "SE2120000999-HSJ1290"}}}]});
    // An admission by a hospital sends an Inskrivningsmeddelande ...
    let sent = render(
        &base("Encounter", admission.clone(), None, "SE2321000255-CSK01"),
        &out,
    );
    assert_eq!(
        sent.map(|r| r.message.envelope.kind),
        Some(MessageKind::Inskrivningsmeddelande)
    );
    // ... once: not again when it is changed while in progress, not by a kommun, not when it is finished.
    assert!(
        render(
            &base(
                "Encounter",
                admission.clone(),
                Some(admission.clone()),
                "SE2321000255-CSK01"
            ),
            &out
        )
        .is_none()
    );
    assert!(
        render(
            &base("Encounter", admission.clone(), None, "SE2120000999-HSJ1286"),
            &out
        )
        .is_none()
    );
    let mut finished = admission.clone();
    finished["status"] = json!("finished");
    assert!(
        render(
            &base("Encounter", finished, None, "SE2321000255-CSK01"),
            &out
        )
        .is_none()
    );
    // A CarePlan that is no SIP, or a SIP plan that stays a draft or was active already, sends nothing.
    let plan = json!({"resourceType": "CarePlan", "status": "active", "intent": "plan"});
    assert!(render(&base("CarePlan", plan.clone(), None, SIP_SENDER), &out).is_none());
    let mut sip = plan.clone();
    sip["category"] =
        json!([{"coding": [{"system": translate::CS_CAREPLAN_CATEGORY, "code": "sip"}]}]);
    assert!(
        render(
            &base("CarePlan", sip.clone(), Some(sip.clone()), SIP_SENDER),
            &out
        )
        .is_none()
    );
    let mut draft = sip.clone();
    draft["status"] = json!("draft");
    assert!(render(&base("CarePlan", draft.clone(), None, SIP_SENDER), &out).is_none());
    let activated = render(&base("CarePlan", sip, Some(draft), SIP_SENDER), &out);
    assert_eq!(
        activated.map(|r| r.message.envelope.kind),
        Some(MessageKind::SipPlan)
    );
    // An Appointment without a SIP plan sends nothing.
    let appointment = json!({"resourceType": "Appointment", "status": "booked", "start": "2026-11-26T10:00:00+01:00"});
    assert!(render(&base("Appointment", appointment, None, SIP_SENDER), &out).is_none());
    let _ = map;
}

#[test]
fn a_protected_identity_s_address_is_not_in_the_message() {
    let out = outbound();
    let mut patient = json!({"resourceType": "Patient", "id": "p",
        "identifier": [{"system": "http://electronichealth.se/identifier/personnummer", "value": "191212121212"}],
        "name": [{"family": "Tolvansson", "given": ["Tolvan"]}],
        "address": [{"line": ["Hemliga gatan 1"], "postalCode": "29131", "city": "Kristianstad"}]});
    let change = |patient: &Value| Change {
        sender: "SE2321000255-CSK01".into(),
        resource_type: "Encounter".into(),
        id: "x".into(),
        value: json!({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
            "period": {"start": "2026-11-23T08:00:00+01:00"},
            "participant": [{"individual": {"identifier": {"value": "SE2120000999-HSJ1290"}}}]}),
        previous: None,
        patient: patient.clone(),
        plan: None,
        team: None,
        case_message: None,
        message_id: "navet-1".into(),
        created: "2026-11-23T09:20:00Z".into(),
    };
    let open = render(&change(&patient), &out).expect("sent");
    assert_eq!(
        open.message.envelope.patient.street.as_deref(),
        Some("Hemliga gatan 1")
    );
    patient["meta"] = json!({"security": [{"system": "http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel",
        "code": "skyddadFolkbokforing"}]});
    let protected = render(&change(&patient), &out).expect("sent");
    let p = &protected.message.envelope.patient;
    assert_eq!((&p.street, &p.postal_code, &p.city), (&None, &None, &None));
    assert_eq!(p.family.as_deref(), Some("Tolvansson"));
    let xml = message::write(&protected.message, &Mapping::embedded());
    assert!(!xml.contains("Hemliga") && !xml.contains("29131"), "{xml}");
}

#[test]
fn the_discharge_chain_and_the_close_are_sent_once_and_only_by_their_principal() {
    let out = outbound();
    let patient = json!({"resourceType": "Patient", "id": "p",
        "identifier": [{"system": "http://electronichealth.se/identifier/personnummer", "value": "191212121212"}]});
    let change = |ty: &str, value: &Value, previous: Option<&Value>, sender: &str| Change {
        sender: sender.into(),
        resource_type: ty.into(),
        id: "x".into(),
        value: value.clone(),
        previous: previous.cloned(),
        patient: patient.clone(),
        plan: None,
        team: Some(json!({"resourceType": "CareTeam", "id": TEAM_ID,
            "managingOrganization": [translate::hsa_ref(SIP_SENDER)],
            "participant": [translate::team_member(SIP_SENDER, "invited"),
                            translate::team_member("SE2120000999-HSJ1290", "invited")]})),
        case_message: Some("navet-admission".into()),
        message_id: "navet-1".into(),
        created: "2026-11-25T09:20:00Z".into(),
    };
    let kind = |c: &Change| render(c, &out).map(|r| r.message.envelope.kind);
    let hospital = "SE2321000255-CSK01";
    let admitted = json!({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
        "period": {"start": "2026-11-23T08:00:00+01:00"},
        "participant": [{"individual": translate::hsa_ref("SE2120000999-HSJ1290")}]});
    let mut ready = admitted.clone();
    ready["extension"] = json!([translate::date_extension(
        translate::EXT_DISCHARGE_READY,
        "2026-11-25T10:00:00+01:00"
    )]);
    let mut finished = ready.clone();
    finished["status"] = json!("finished");

    // Marked ready: an Utskrivningsklar referencing the notice navet sent, to the participants.
    let sent = render(
        &change("Encounter", &ready, Some(&admitted), hospital),
        &out,
    )
    .expect("sent");
    assert_eq!(sent.message.envelope.kind, MessageKind::Utskrivningsklar);
    assert_eq!(
        sent.message.envelope.reference.as_deref(),
        Some("navet-admission")
    );
    assert_eq!(sent.addressed, vec!["SE2120000999-HSJ1290".to_owned()]);
    // Once: not again while it stays marked, not by a kommun, not on an outpatient Encounter.
    assert_eq!(
        kind(&change("Encounter", &ready, Some(&ready), hospital)),
        None
    );
    assert_eq!(
        kind(&change(
            "Encounter",
            &ready,
            Some(&admitted),
            "SE2120000999-HSJ1286"
        )),
        None
    );
    let mut outpatient = ready.clone();
    outpatient["class"] = json!({"code": "AMB"});
    assert_eq!(
        kind(&change("Encounter", &outpatient, Some(&admitted), hospital)),
        None
    );
    // Finished: an Utskrivningsmeddelande at period.end, else at the change's time; once.
    let sent = render(
        &change("Encounter", &finished, Some(&ready), hospital),
        &out,
    )
    .expect("sent");
    assert_eq!(
        sent.message.body,
        Body::Utskrivningsmeddelande(Utskrivningsmeddelande {
            time: "2026-11-25T09:20:00Z".into()
        })
    );
    let mut ended = finished.clone();
    ended["period"]["end"] = json!("2026-11-25T11:00:00+01:00");
    assert_eq!(
        render(&change("Encounter", &ended, Some(&ready), hospital), &out).map(|r| r.message.body),
        Some(Body::Utskrivningsmeddelande(Utskrivningsmeddelande {
            time: "2026-11-25T11:00:00+01:00".into()
        }))
    );
    assert_eq!(
        kind(&change("Encounter", &finished, Some(&finished), hospital)),
        None
    );
    // Created finished (no admission before it): nothing to follow.
    assert_eq!(kind(&change("Encounter", &finished, None, hospital)), None);

    // A SIP plan completed by its overall responsible principal: a SipAvslut with its note; once; not by another.
    let active = json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
        "category": [{"coding": [{"system": translate::CS_CAREPLAN_CATEGORY, "code": "sip"}]}]});
    let mut completed = active.clone();
    completed["status"] = json!("completed");
    completed["note"] = json!([
        {"authorReference": translate::hsa_ref("SE2120000999-HSJ1290"), "text": "annan"},
        {"authorReference": translate::hsa_ref(SIP_SENDER), "text": "Målen är nådda"}
    ]);
    let sent = render(
        &change("CarePlan", &completed, Some(&active), SIP_SENDER),
        &out,
    )
    .expect("sent");
    assert_eq!(
        sent.message.body,
        Body::SipAvslut(SipAvslut {
            reason: "Målen är nådda".into()
        })
    );
    assert_eq!(sent.addressed, vec!["SE2120000999-HSJ1290".to_owned()]);
    assert_eq!(
        sent.message.envelope.reference.as_deref(),
        Some("CarePlan/x")
    );
    assert_eq!(
        kind(&change(
            "CarePlan",
            &completed,
            Some(&completed),
            SIP_SENDER
        )),
        None
    );
    assert_eq!(
        kind(&change(
            "CarePlan",
            &completed,
            Some(&active),
            "SE2120000999-HSJ1290"
        )),
        None
    );
    // Without a reason the message is one navet's reader refuses (so the change is refused, outbound.rs).
    let mut silent = completed.clone();
    silent.as_object_mut().unwrap().remove("note");
    let sent = render(
        &change("CarePlan", &silent, Some(&active), SIP_SENDER),
        &out,
    )
    .expect("rendered");
    let xml = message::write(&sent.message, &Mapping::embedded());
    assert!(message::read(xml.as_bytes(), &Mapping::embedded()).is_err());
}
