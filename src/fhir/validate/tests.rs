use super::*;
use serde_json::json;
use std::sync::Arc;

fn ctx() -> Arc<FhirContext> {
    FhirContext::embedded()
}

/// The errors of a resource as (path, message) pairs.
fn errors(value: Value) -> Vec<(String, String)> {
    check(&ctx(), &value)
        .into_iter()
        .filter(|f| f.level == Level::Error)
        .map(|f| (f.path, f.message))
        .collect()
}

fn assert_refused_at(value: Value, path: &str, needle: &str) {
    let found = errors(value);
    assert!(
        found.iter().any(|(p, m)| p == path && m.contains(needle)),
        "expected an error at {path} mentioning '{needle}', found {found:?}"
    );
}

#[test]
fn the_embedded_invariants_load_and_most_are_evaluated() {
    let ctx = ctx();
    let skipped: Vec<&str> = ctx
        .invariants
        .skipped()
        .iter()
        .map(|(k, _, _)| k.as_str())
        .collect();
    // Outside the subset on purpose: regexes (the name warnings, eld-16/19/20, sdf-19), resolve() (ctm-1),
    // htmlChecks() (txt-1/2), replaceMatches (sdf-8a).
    for key in ["ctm-1", "txt-1", "sdf-8a"] {
        assert!(skipped.contains(&key), "{key} should be listed as skipped");
    }
    for key in [
        "pat-1", "dom-2", "dom-3", "dom-4", "dom-5", "ref-1", "per-1", "ext-1",
    ] {
        assert!(!skipped.contains(&key), "{key} must be evaluated");
    }
    assert!(
        ctx.invariants.evaluated() > 900,
        "{}",
        ctx.invariants.evaluated()
    );
    assert!(skipped.len() < 60, "{} skipped: {skipped:?}", skipped.len());
}

#[test]
fn a_valid_patient_has_no_errors() {
    let p = json!({"resourceType": "Patient", "gender": "female",
        "contact": [{"name": {"family": "A"}}], "text": {"status": "generated",
        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">A</div>"}});
    assert_eq!(check(&ctx(), &p), Vec::new());
}

#[test]
fn codes_outside_required_value_sets_are_refused_where_they_are() {
    assert_refused_at(
        json!({"resourceType": "Patient", "gender": "bogus"}),
        "Patient.gender",
        "administrative-gender",
    );
    assert_refused_at(
        json!({"resourceType": "Task", "status": "bogus", "intent": "order"}),
        "Task.status",
        "task-status",
    );
    assert_refused_at(
        json!({"resourceType": "ServiceRequest", "status": "not-a-status", "intent": "order",
            "subject": {"reference": "Patient/p"}}),
        "ServiceRequest.status",
        "request-status",
    );
    // A binding on a datatype, deep inside.
    assert_refused_at(
        json!({"resourceType": "Patient", "telecom": [{"system": "phone", "value": "1", "use": "bogus"}]}),
        "Patient.telecom[0].use",
        "contact-point-use",
    );
    // Codes are case-sensitive (terminologies.html).
    assert_refused_at(
        json!({"resourceType": "Patient", "gender": "Female"}),
        "Patient.gender",
        "required value set",
    );
}

#[test]
fn pat_1_a_contact_needs_details() {
    assert_refused_at(
        json!({"resourceType": "Patient", "contact": [{"name": {"family": "A"}}, {"gender": "male"}]}),
        "Patient.contact[1]",
        "pat-1",
    );
}

#[test]
fn dom_2_to_dom_5_constrain_contained_resources() {
    let base = |contained: Value| {
        json!({"resourceType": "Patient", "contained": [contained],
            "managingOrganization": {"reference": "#o"}})
    };
    assert_refused_at(
        base(
            json!({"resourceType": "Organization", "id": "o", "contained": [
            {"resourceType": "Organization", "id": "inner"}]}),
        ),
        "Patient",
        "dom-2",
    );
    assert_refused_at(
        json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o"}]}),
        "Patient",
        "dom-3",
    );
    assert_refused_at(
        base(json!({"resourceType": "Organization", "id": "o", "meta": {"versionId": "2"}})),
        "Patient",
        "dom-4",
    );
    assert_refused_at(
        base(
            json!({"resourceType": "Organization", "id": "o", "meta": {"security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}}),
        ),
        "Patient",
        "dom-5",
    );
    // Referred to and clean: no error.
    assert_eq!(
        errors(base(
            json!({"resourceType": "Organization", "id": "o", "name": "X"})
        )),
        Vec::new()
    );
}

#[test]
fn dom_6_is_a_warning_only() {
    let found = check(&ctx(), &json!({"resourceType": "Patient"}));
    assert!(
        found
            .iter()
            .any(|f| f.level == Level::Warning && f.message.starts_with("dom-6"))
    );
    assert!(found.iter().all(|f| f.level == Level::Warning));
}

#[test]
fn ref_1_a_local_reference_needs_the_contained_resource() {
    assert_refused_at(
        json!({"resourceType": "Patient", "managingOrganization": {"reference": "#missing"}}),
        "Patient.managingOrganization",
        "ref-1",
    );
}

#[test]
fn per_1_a_period_ends_after_it_starts() {
    assert_refused_at(
        json!({"resourceType": "Patient", "name": [{"family": "A",
            "period": {"start": "2024-05-02", "end": "2024-05-01"}}]}),
        "Patient.name[0].period",
        "per-1",
    );
    // Different precisions: unknown, not a failure.
    assert_eq!(
        errors(json!({"resourceType": "Patient", "name": [{"family": "A",
            "period": {"start": "2024-05", "end": "2024-05-01"}}]})),
        Vec::new()
    );
}

#[test]
fn ext_1_an_extension_has_a_value_or_extensions_not_both() {
    assert_refused_at(
        json!({"resourceType": "Patient", "extension": [{"url": "http://x"}]}),
        "Patient.extension[0]",
        "ext-1",
    );
}

#[test]
fn swedish_identifier_rules_are_part_of_validation() {
    let found = check(
        &ctx(),
        &json!({"resourceType": "Patient", "identifier": [
            {"system": "http://electronichealth.se/identifier/personnummer", "value": "191212121213"}]}),
    );
    assert!(
        found
            .iter()
            .any(|f| f.kind == Kind::Rule && f.path == "Patient.identifier[0].value"),
        "{found:?}"
    );
}

#[test]
fn invariants_of_resources_inside_a_bundle_are_located_there() {
    assert_refused_at(
        json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "contact": [{"gender": "male"}]}}]}),
        "Bundle.entry[0].resource.contact[0]",
        "pat-1",
    );
}
