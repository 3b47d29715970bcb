use super::lexical::string_is_valid;
use super::*;
use serde_json::json;

fn structure() -> Structure {
    Structure::embedded()
}

fn issues(resource: Value) -> Vec<StructureIssue> {
    structure()
        .validate(&resource)
        .expect_err("the resource should be refused")
}

fn paths(resource: Value) -> Vec<String> {
    issues(resource)
        .into_iter()
        .map(|issue| issue.path)
        .collect()
}

fn valid_patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "1", "lastUpdated": "2024-05-01T10:00:00.123+02:00"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Anna</div>"},
        "identifier": [{"system": "http://electronichealth.se/identifier/personnummer", "value": "191212121212"}],
        "active": true,
        "name": [{"use": "official", "family": "Andersson", "given": ["Anna", "Maria"]}],
        "telecom": [{"system": "phone", "value": "+46 8 123 456", "use": "home"}],
        "gender": "female",
        "birthDate": "1912-12-12",
        "deceasedBoolean": false,
        "address": [{"line": ["Storgatan 1"], "city": "Stockholm", "postalCode": "111 22"}],
        "multipleBirthInteger": 1,
        "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}], "name": {"family": "Andersson"}}],
        "extension": [{"url": "http://example.org/fhir/StructureDefinition/x", "valueCodeableConcept": {"text": "x"}}]
    })
}

#[test]
fn the_embedded_structures_load_and_list_every_r4_resource_type() {
    let structure = structure();
    assert_eq!(structure.resource_types().count(), 146);
    assert!(structure.is_resource_type("Patient"));
    assert!(structure.is_resource_type("Bundle"));
    assert!(!structure.is_resource_type("DomainResource"));
    assert!(!structure.is_resource_type("Quantity"));
    assert!(!structure.is_resource_type("Patient.contact"));
    assert!(
        !structure.is_resource_type("SubscriptionStatus"),
        "R4B, not R4 4.0.1"
    );
}

#[test]
fn a_valid_patient_passes() {
    assert_eq!(structure().validate(&valid_patient()), Ok(()));
}

#[test]
fn an_unknown_element_is_named_by_its_path() {
    let mut patient = valid_patient();
    patient["name"][0]["nickname"] = json!("Annie");
    patient["favouriteColour"] = json!("blue");
    let found = issues(patient);
    assert_eq!(
        found.iter().map(|i| i.path.as_str()).collect::<Vec<_>>(),
        ["Patient.name[0].nickname", "Patient.favouriteColour"]
    );
    assert!(found[0].message.contains("unknown element"), "{found:?}");
}

#[test]
fn fhir_comments_are_not_r4_json() {
    let mut patient = valid_patient();
    patient["fhir_comments"] = json!(["a comment"]);
    assert_eq!(paths(patient), ["Patient.fhir_comments"]);
}

#[test]
fn a_missing_resource_type_is_refused() {
    assert_eq!(paths(json!({"id": "x"})), ["resourceType"]);
    assert_eq!(paths(json!({"resourceType": "Patientt"})), ["resourceType"]);
    assert_eq!(
        paths(json!({"resourceType": "DomainResource"})),
        ["resourceType"]
    );
    assert_eq!(paths(json!(["Patient"])), [""]);
}

#[test]
fn a_value_of_the_wrong_json_type_is_refused() {
    let mut patient = valid_patient();
    patient["active"] = json!("true");
    patient["multipleBirthInteger"] = json!(1.5);
    patient["name"][0]["given"][1] = json!(7);
    patient["contact"][0]["name"] = json!("Andersson");
    let found = issues(patient);
    let paths: Vec<_> = found.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Patient.active",
            "Patient.name[0].given[1]",
            "Patient.multipleBirthInteger",
            "Patient.contact[0].name"
        ]
    );
    assert!(
        found[0].message.contains("must be a JSON boolean"),
        "{found:?}"
    );
}

#[test]
fn an_array_for_a_single_valued_element_is_refused() {
    let mut patient = valid_patient();
    patient["gender"] = json!(["female"]);
    patient["name"][0]["family"] = json!(["Andersson"]);
    assert_eq!(paths(patient), ["Patient.name[0].family", "Patient.gender"]);
}

#[test]
fn a_single_value_for_a_repeating_element_is_refused() {
    let mut patient = valid_patient();
    patient["name"] = json!({"family": "Andersson"});
    assert_eq!(paths(patient), ["Patient.name"]);
}

#[test]
fn missing_required_elements_are_named() {
    let found = issues(
        json!({"resourceType": "Observation", "valueQuantity": {"value": 7.2, "unit": "mmol/L"}}),
    );
    assert_eq!(
        found.iter().map(|i| i.path.as_str()).collect::<Vec<_>>(),
        ["Observation.status", "Observation.code"]
    );
    assert!(found[0].message.contains("required"), "{found:?}");
}

#[test]
fn an_extension_without_url_is_refused() {
    let mut patient = valid_patient();
    patient["extension"][0] = json!({"valueString": "x"});
    patient["modifierExtension"] =
        json!([{"url": "http://example.org/x", "valueBoolean": true}, {"valueBoolean": true}]);
    assert_eq!(
        paths(patient),
        [
            "Patient.extension[0].url",
            "Patient.modifierExtension[1].url"
        ]
    );
}

#[test]
fn an_element_with_only_extensions_counts_as_present() {
    let observation = json!({
        "resourceType": "Observation",
        "_status": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]},
        "code": {"text": "glucose"}
    });
    assert_eq!(structure().validate(&observation), Ok(()));
}

#[test]
fn bad_dates_and_times_are_refused() {
    for bad in [
        "1912-13-01",
        "1912-02-30",
        "12-12-1912",
        "0000",
        "1912-1-1",
        "2024-05-01T10:00",
    ] {
        let mut patient = valid_patient();
        patient["birthDate"] = json!(bad);
        assert_eq!(paths(patient), ["Patient.birthDate"], "{bad}");
    }
    for good in ["1912", "1912-12", "2000-02-29"] {
        let mut patient = valid_patient();
        patient["birthDate"] = json!(good);
        assert_eq!(structure().validate(&patient), Ok(()), "{good}");
    }
    for (bad_instant, bad_date_time) in [
        ("2024-05-01", "2024-05-01T10:00:00"),
        ("2024-05-01T10:00:00", "2024-05-01T24:00:00Z"),
    ] {
        let mut patient = valid_patient();
        patient["meta"]["lastUpdated"] = json!(bad_instant);
        patient["deceasedDateTime"] = json!(bad_date_time);
        patient
            .as_object_mut()
            .unwrap()
            .shift_remove("deceasedBoolean");
        assert_eq!(
            paths(patient),
            ["Patient.meta.lastUpdated", "Patient.deceasedDateTime"]
        );
    }
}

#[test]
fn a_birth_date_extension_is_accepted_beside_or_instead_of_the_value() {
    let extension = json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1912-12-12T08:15:00+01:00"}]});
    let mut patient = valid_patient();
    patient["_birthDate"] = extension.clone();
    assert_eq!(structure().validate(&patient), Ok(()));
    patient.as_object_mut().unwrap().shift_remove("birthDate");
    assert_eq!(structure().validate(&patient), Ok(()));
}

#[test]
fn primitive_extensions_must_be_well_formed() {
    let mut patient = valid_patient();
    patient["_birthDate"] = json!({"extension": [{"valueString": "x"}]});
    patient["_gender"] = json!("female");
    patient["_name"] = json!({"id": "x"});
    patient["_id"] = json!({"id": "x"});
    assert_eq!(
        paths(patient),
        [
            "Patient.birthDate.extension[0].url",
            "Patient.gender",
            "Patient._name",
            "Patient._id"
        ]
    );
}

#[test]
fn repeating_primitive_extensions_align_with_nulls() {
    let mut patient = valid_patient();
    patient["name"][0]["given"] = json!(["Anna", null]);
    patient["name"][0]["_given"] = json!([null, {"id": "g2", "extension": [{"url": "http://example.org/x", "valueString": "y"}]}]);
    assert_eq!(structure().validate(&patient), Ok(()));

    patient["name"][0]["given"] = json!(["Anna", null, "Maria"]);
    patient["name"][0]["_given"] = json!([null, null]);
    let found = paths(patient);
    assert_eq!(
        found,
        ["Patient.name[0].given", "Patient.name[0].given[1]"],
        "{found:?}"
    );
}

#[test]
fn two_variants_of_one_choice_are_refused() {
    let mut patient = valid_patient();
    patient["deceasedDateTime"] = json!("2020-01-01");
    let found = issues(patient);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "Patient.deceasedDateTime");
    assert!(found[0].message.contains("deceased[x]"), "{found:?}");
}

#[test]
fn a_choice_value_and_its_extensions_are_one_variant() {
    let observation = json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueString": "positive", "_valueString": {"id": "v"}
    });
    assert_eq!(structure().validate(&observation), Ok(()));
}

#[test]
fn a_choice_variant_resolves_to_its_type() {
    let observation = json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueQuantity": {"value": "7.2", "unit": "mmol/L", "comparator": ""}
    });
    assert_eq!(
        paths(observation),
        [
            "Observation.valueQuantity.value",
            "Observation.valueQuantity.comparator"
        ]
    );
}

#[test]
fn a_contained_resource_is_validated_against_its_own_type() {
    let mut patient = valid_patient();
    patient["contained"] = json!([
        {"resourceType": "Organization", "id": "org", "name": "Vården"},
        {"resourceType": "Practitioner", "id": "pr", "gender": 1},
        {"id": "no-type"}
    ]);
    assert_eq!(
        paths(patient),
        [
            "Patient.contained[1].gender",
            "Patient.contained[2].resourceType"
        ]
    );
}

#[test]
fn a_bundle_entry_resource_is_validated() {
    let bundle = json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:8f9b3a5e-4c1d-4e2f-9a6b-1c2d3e4f5a6b", "resource": valid_patient()},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": "Patient/1"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/1", "display": ""}}},
            {"fullUrl": "urn:uuid:8f9b3a5e 4c1d"}
        ]
    });
    assert_eq!(
        paths(bundle),
        [
            "Bundle.entry[1].resource.subject",
            "Bundle.entry[2].resource.subject.display",
            "Bundle.entry[3].fullUrl"
        ]
    );
}

#[test]
fn parameters_resources_and_nested_parts_are_validated() {
    let parameters = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "p", "resource": {"resourceType": "Patient", "active": "yes"}},
            {"name": "q", "part": [{"name": "r", "valueBoolean": "no"}]}
        ]
    });
    assert_eq!(
        paths(parameters),
        [
            "Parameters.parameter[0].resource.active",
            "Parameters.parameter[1].part[0].valueBoolean"
        ]
    );
}

#[test]
fn recursive_backbone_elements_are_validated() {
    let questionnaire = json!({
        "resourceType": "Questionnaire", "status": "active",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string", "text": 3}, {"type": "string"}]}]
    });
    assert_eq!(
        paths(questionnaire),
        [
            "Questionnaire.item[0].item[0].text",
            "Questionnaire.item[0].item[1].linkId"
        ]
    );
}

#[test]
fn empty_strings_arrays_objects_and_nulls_are_refused() {
    let mut patient = valid_patient();
    patient["gender"] = json!("");
    patient["telecom"] = json!([]);
    patient["maritalStatus"] = json!({});
    patient["active"] = Value::Null;
    patient["address"][0]["line"] = json!(["Storgatan 1", null]);
    let found = issues(patient);
    assert_eq!(
        found.iter().map(|i| i.path.as_str()).collect::<Vec<_>>(),
        [
            "Patient.active",
            "Patient.telecom",
            "Patient.gender",
            "Patient.address[0].line[1]",
            "Patient.maritalStatus"
        ]
    );
    assert!(found[2].message.contains("empty string"), "{found:?}");
}

#[test]
fn primitive_formats_follow_the_r4_regexes() {
    let long = "a".repeat(65);
    let cases = [
        ("id", Prim::Id, "a-b.C9", true),
        ("id too long", Prim::Id, long.as_str(), false),
        ("id with underscore", Prim::Id, "a_b", false),
        ("code with a space", Prim::Code, "a b", true),
        ("code with two spaces", Prim::Code, "a  b", false),
        ("code with trailing space", Prim::Code, "ab ", false),
        ("uri", Prim::Uri, "http://example.org/a b", false),
        ("oid", Prim::Oid, "urn:oid:1.2.840.10008", true),
        ("oid leading zero", Prim::Oid, "urn:oid:1.02", false),
        ("oid one arc", Prim::Oid, "urn:oid:1", false),
        (
            "uuid",
            Prim::Uuid,
            "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
            true,
        ),
        (
            "uuid upper case",
            Prim::Uuid,
            "urn:uuid:C757873D-EC9A-4326-A141-556F43239520",
            false,
        ),
        ("base64", Prim::Base64Binary, "SGVs bG8=", true),
        (
            "base64 lines",
            Prim::Base64Binary,
            "SGVsbG8h\nSGVsbG8=\n",
            true,
        ),
        ("base64 short", Prim::Base64Binary, "SGVsbG8", false),
        ("time", Prim::Time, "23:59:60.5", true),
        ("time without seconds", Prim::Time, "10:00", false),
        (
            "dateTime beyond -14:00",
            Prim::DateTime,
            "2024-05-01T10:00:00-14:30",
            false,
        ),
        (
            "dateTime +14:00",
            Prim::DateTime,
            "2024-05-01T10:00:00+14:00",
            true,
        ),
        ("instant", Prim::Instant, "2024-05-01T10:00:00.000Z", true),
        (
            "string with a vertical tab",
            Prim::String,
            "a\u{0B}b",
            false,
        ),
        ("string with a newline", Prim::Markdown, "a\nb", true),
    ];
    for (name, prim, text, expected) in cases {
        assert_eq!(string_is_valid(prim, text.as_bytes()), expected, "{name}");
    }
}

#[test]
fn numbers_respect_the_fhir_integer_ranges() {
    let base = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    for (value, ok) in [
        (json!(2147483647), true),
        (json!(2147483648u64), false),
        (json!(-1), true),
        (json!(1.0), false),
    ] {
        let mut observation = base.clone();
        observation["valueInteger"] = value.clone();
        assert_eq!(structure().validate(&observation).is_ok(), ok, "{value}");
    }
    let mut sampled = base.clone();
    sampled["valueSampledData"] =
        json!({"origin": {"value": 0}, "period": 1, "dimensions": 0, "data": "1 2"});
    assert_eq!(paths(sampled), ["Observation.valueSampledData.dimensions"]);
}

#[test]
fn issues_are_capped() {
    let mut patient = valid_patient();
    for i in 0..150 {
        patient[format!("unknown{i}")] = json!(true);
    }
    let found = issues(patient);
    assert_eq!(found.len(), MAX_ISSUES + 1);
    assert!(
        found[MAX_ISSUES].message.contains("stopped"),
        "{:?}",
        found[MAX_ISSUES]
    );
}
