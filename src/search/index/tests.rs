use super::*;
use serde_json::json;

fn params() -> SearchParams {
    SearchParams::embedded()
}

fn row(param: &str, system: Option<&str>, value: &str) -> IndexRow {
    IndexRow {
        param: param.to_owned(),
        system: system.map(str::to_owned),
        value: value.to_owned(),
        lo: None,
        hi: None,
    }
}

fn rows_for<'a>(rows: &'a [IndexRow], param: &str) -> Vec<&'a IndexRow> {
    rows.iter().filter(|r| r.param == param).collect()
}

fn values(rows: &[IndexRow], param: &str) -> Vec<String> {
    rows_for(rows, param)
        .iter()
        .map(|r| r.value.clone())
        .collect()
}

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>()
        .expect("timestamp")
        .as_millisecond()
}

const PNR: &str = "http://electronichealth.se/identifier/personnummer";

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"lastUpdated": "2026-01-01T00:00:00Z", "tag": [{"system": "urn:navet", "code": "demo"}]},
        "identifier": [{"system": PNR, "value": "191212121212"}],
        "active": true,
        "name": [{"family": "Åberg", "given": ["Anna  Maria", "Sofia"], "text": "Anna Åberg"}],
        "telecom": [
            {"system": "phone", "value": "+46701234567"},
            {"system": "email", "value": "anna@example.se"}
        ],
        "gender": "female",
        "birthDate": "1912-12-12",
        "address": [{"line": ["Storgatan 1"], "city": "Kristianstad", "postalCode": "291 31"}],
        "managingOrganization": {"reference": "Organization/org1"},
        "generalPractitioner": [{"reference": "https://navet.example/fhir/Organization/vc1"}]
    })
}

#[test]
fn a_patient_identifier_is_indexed_with_its_system() {
    let rows = index_resource(&params(), "Patient", &patient());
    assert_eq!(
        rows_for(&rows, "identifier"),
        [&row("identifier", Some(PNR), "191212121212")]
    );
}

#[test]
fn a_patient_name_is_indexed_normalised_and_as_written() {
    let rows = index_resource(&params(), "Patient", &patient());
    assert_eq!(values(&rows, "family"), ["aberg"]);
    assert_eq!(values(&rows, "family:exact"), ["Åberg"]);
    assert_eq!(values(&rows, "given"), ["anna maria", "sofia"]);
    assert_eq!(
        values(&rows, "name"),
        ["anna aberg", "aberg", "anna maria", "sofia"]
    );
    assert_eq!(values(&rows, "address-city"), ["kristianstad"]);
    assert_eq!(
        values(&rows, "address"),
        ["storgatan 1", "kristianstad", "291 31"]
    );
}

#[test]
fn a_patient_birthdate_covers_the_whole_day_in_utc() {
    let rows = index_resource(&params(), "Patient", &patient());
    let birth = rows_for(&rows, "birthdate");
    assert_eq!(birth.len(), 1);
    assert_eq!(birth[0].value, "1912-12-12");
    assert_eq!(birth[0].lo, Some(ms("1912-12-12T00:00:00Z")));
    assert_eq!(birth[0].hi, Some(ms("1912-12-13T00:00:00Z") - 1));
}

#[test]
fn a_patient_gender_active_and_telecoms_are_tokens() {
    let rows = index_resource(&params(), "Patient", &patient());
    assert_eq!(rows_for(&rows, "gender"), [&row("gender", None, "female")]);
    assert_eq!(rows_for(&rows, "active"), [&row("active", None, "true")]);
    assert_eq!(
        rows_for(&rows, "email"),
        [&row("email", Some("email"), "anna@example.se")]
    );
    assert_eq!(
        rows_for(&rows, "phone"),
        [&row("phone", Some("phone"), "+46701234567")]
    );
    assert_eq!(rows_for(&rows, "telecom").len(), 2);
    assert_eq!(
        rows_for(&rows, "_tag"),
        [&row("_tag", Some("urn:navet"), "demo")]
    );
}

#[test]
fn id_and_last_updated_are_left_to_the_store_columns() {
    let rows = index_resource(&params(), "Patient", &patient());
    assert!(rows_for(&rows, "_id").is_empty());
    assert!(rows_for(&rows, "_lastUpdated").is_empty());
}

#[test]
fn relative_and_absolute_references_index_as_type_and_id() {
    let rows = index_resource(&params(), "Patient", &patient());
    assert_eq!(values(&rows, "organization"), ["Organization/org1"]);
    assert_eq!(values(&rows, "general-practitioner"), ["Organization/vc1"]);
}

fn service_request() -> Value {
    json!({
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Remiss"}]}],
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "385763009", "display": "Hospice care"}],
            "text": "Punktinsats: IV-antibiotika"
        },
        "subject": {"reference": "Patient/p1", "display": "Anna Åberg"},
        "requester": {"reference": "Organization/hospital"},
        "performer": [{"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": "SE2321000016-MTN1"}}],
        "authoredOn": "2026-11-24T09:30:00+01:00",
        "occurrencePeriod": {"start": "2026-11-25", "end": "2026-11-29"}
    })
}

#[test]
fn a_service_request_subject_is_indexed_for_subject_and_patient() {
    let rows = index_resource(&params(), "ServiceRequest", &service_request());
    assert_eq!(values(&rows, "subject"), ["Patient/p1"]);
    assert_eq!(values(&rows, "patient"), ["Patient/p1"]);
    assert_eq!(values(&rows, "requester"), ["Organization/hospital"]);
}

#[test]
fn a_service_request_code_and_status_are_tokens_with_text_rows() {
    let rows = index_resource(&params(), "ServiceRequest", &service_request());
    assert_eq!(
        rows_for(&rows, "code"),
        [&row("code", Some("http://snomed.info/sct"), "385763009")]
    );
    assert_eq!(
        values(&rows, "code:text"),
        ["hospice care", "punktinsats: iv-antibiotika"]
    );
    assert_eq!(rows_for(&rows, "status"), [&row("status", None, "active")]);
    assert_eq!(values(&rows, "intent"), ["order"]);
    assert_eq!(values(&rows, "category"), ["3457005"]);
}

#[test]
fn a_service_request_authored_date_keeps_its_offset() {
    let rows = index_resource(&params(), "ServiceRequest", &service_request());
    let authored = rows_for(&rows, "authored");
    assert_eq!(authored[0].lo, Some(ms("2026-11-24T08:30:00Z")));
    assert_eq!(authored[0].hi, Some(ms("2026-11-24T08:30:00Z") + 999));
}

#[test]
fn a_service_request_occurrence_period_runs_from_start_day_to_end_day() {
    let rows = index_resource(&params(), "ServiceRequest", &service_request());
    let occurrence = rows_for(&rows, "occurrence");
    assert_eq!(occurrence.len(), 1);
    assert_eq!(occurrence[0].value, "2026-11-25/2026-11-29");
    assert_eq!(occurrence[0].lo, Some(ms("2026-11-25T00:00:00Z")));
    assert_eq!(occurrence[0].hi, Some(ms("2026-11-30T00:00:00Z") - 1));
}

#[test]
fn an_identifier_only_reference_is_indexed_under_the_identifier_suffix() {
    let rows = index_resource(&params(), "ServiceRequest", &service_request());
    assert!(rows_for(&rows, "performer").is_empty());
    assert_eq!(
        rows_for(&rows, "performer:identifier"),
        [&row(
            "performer:identifier",
            Some("urn:oid:1.2.752.29.4.19"),
            "SE2321000016-MTN1"
        )]
    );
}

fn task() -> Value {
    json!({
        "resourceType": "Task",
        "id": "t1",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": "urn:navet:insats", "code": "iv-antibiotika"}]},
        "for": {"reference": "Patient/p1"},
        "focus": {"reference": "ServiceRequest/sr1"},
        "basedOn": [{"reference": "ServiceRequest/sr1"}],
        "owner": {"reference": "Organization/mtn-kristianstad"},
        "requester": {"reference": "Organization/hospital"},
        "authoredOn": "2026-11-24T10:00:00Z",
        "executionPeriod": {"start": "2026-11-25T08:00:00+01:00"}
    })
}

#[test]
fn a_task_for_a_patient_is_indexed_for_patient_and_subject() {
    let rows = index_resource(&params(), "Task", &task());
    assert_eq!(values(&rows, "patient"), ["Patient/p1"]);
    assert_eq!(values(&rows, "subject"), ["Patient/p1"]);
    assert_eq!(values(&rows, "owner"), ["Organization/mtn-kristianstad"]);
    assert_eq!(values(&rows, "focus"), ["ServiceRequest/sr1"]);
    assert_eq!(values(&rows, "status"), ["requested"]);
    assert_eq!(values(&rows, "code"), ["iv-antibiotika"]);
}

#[test]
fn a_task_execution_period_without_end_is_open_ended() {
    let rows = index_resource(&params(), "Task", &task());
    let period = rows_for(&rows, "period");
    assert_eq!(period.len(), 1);
    assert_eq!(period[0].lo, Some(ms("2026-11-25T07:00:00Z")));
    assert_eq!(period[0].hi, Some(i64::MAX));
    assert_eq!(period[0].value, "2026-11-25T08:00:00+01:00/");
}

#[test]
fn a_task_for_something_else_has_no_patient_row() {
    let mut task = task();
    task["for"] = json!({"reference": "Group/g1"});
    let rows = index_resource(&params(), "Task", &task);
    assert!(values(&rows, "patient").is_empty());
    assert_eq!(values(&rows, "subject"), ["Group/g1"]);
}

fn encounter() -> Value {
    json!({
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH", "display": "home health"},
        "type": [{"text": "Hembesök"}],
        "subject": {"reference": "Patient/p1"},
        "participant": [
            {"individual": {"reference": "Practitioner/nurse1"}},
            {"individual": {"reference": "PractitionerRole/role1"}}
        ],
        "period": {"start": "2026-11-25T08:00:00+01:00", "end": "2026-11-25T08:45:00+01:00"},
        "basedOn": [{"reference": "ServiceRequest/sr1"}],
        "serviceProvider": {"reference": "Organization/mtn-kristianstad"},
        "identifier": [{"system": "urn:itacih:visit", "value": "V-1"}]
    })
}

#[test]
fn an_encounter_indexes_class_period_and_participants() {
    let rows = index_resource(&params(), "Encounter", &encounter());
    assert_eq!(
        rows_for(&rows, "class"),
        [&row(
            "class",
            Some("http://terminology.hl7.org/CodeSystem/v3-ActCode"),
            "HH"
        )]
    );
    assert_eq!(values(&rows, "class:text"), ["home health"]);
    assert!(
        rows_for(&rows, "type").is_empty(),
        "text-only concept has no code"
    );
    assert_eq!(values(&rows, "type:text"), ["hembesok"]);
    assert_eq!(
        values(&rows, "participant"),
        ["Practitioner/nurse1", "PractitionerRole/role1"]
    );
    assert_eq!(values(&rows, "practitioner"), ["Practitioner/nurse1"]);
    assert_eq!(values(&rows, "patient"), ["Patient/p1"]);
    let date = rows_for(&rows, "date");
    assert_eq!(date[0].lo, Some(ms("2026-11-25T07:00:00Z")));
    assert_eq!(date[0].hi, Some(ms("2026-11-25T07:45:00Z") + 999));
}

#[test]
fn an_encounter_about_a_group_has_no_patient_row() {
    let mut encounter = encounter();
    encounter["subject"] = json!({"reference": "Group/g1"});
    let rows = index_resource(&params(), "Encounter", &encounter);
    assert!(values(&rows, "patient").is_empty());
    assert_eq!(values(&rows, "subject"), ["Group/g1"]);
}

#[test]
fn a_subject_given_by_personnummer_is_indexed_for_patient_identifier_lookup() {
    let mut encounter = encounter();
    encounter["subject"] =
        json!({"type": "Patient", "identifier": {"system": PNR, "value": "191212121212"}});
    let rows = index_resource(&params(), "Encounter", &encounter);
    assert!(values(&rows, "patient").is_empty());
    assert_eq!(
        rows_for(&rows, "patient:identifier"),
        [&row("patient:identifier", Some(PNR), "191212121212")]
    );
    assert_eq!(rows_for(&rows, "subject:identifier").len(), 1);
}

#[test]
fn timing_events_are_indexed_one_row_each() {
    let request = json!({
        "resourceType": "MedicationRequest",
        "dosageInstruction": [{"timing": {"event": ["2026-11-25T08:00:00Z", "2026-11-25T16:00:00Z"]}}]
    });
    let rows = index_resource(&params(), "MedicationRequest", &request);
    let dates = rows_for(&rows, "date");
    assert_eq!(dates.len(), 2);
    assert_eq!(dates[1].lo, Some(ms("2026-11-25T16:00:00Z")));
}

#[test]
fn a_timing_with_bounds_is_indexed_as_its_bounds() {
    let request = json!({
        "resourceType": "ServiceRequest",
        "occurrenceTiming": {"repeat": {"boundsPeriod": {"start": "2026-11-25", "end": "2026-11-29"}, "frequency": 3, "period": 1, "periodUnit": "d"}}
    });
    let rows = index_resource(&params(), "ServiceRequest", &request);
    let occurrence = rows_for(&rows, "occurrence");
    assert_eq!(occurrence.len(), 1);
    assert_eq!(occurrence[0].lo, Some(ms("2026-11-25T00:00:00Z")));
}

#[test]
fn repeated_values_give_one_row() {
    let audit = json!({
        "resourceType": "AuditEvent",
        "agent": [{"who": {"reference": "Patient/p1"}}],
        "entity": [{"what": {"reference": "Patient/p1"}}, {"what": {"reference": "Task/t1"}}]
    });
    let rows = index_resource(&params(), "AuditEvent", &audit);
    assert_eq!(values(&rows, "patient"), ["Patient/p1"]);
    assert_eq!(values(&rows, "entity"), ["Patient/p1", "Task/t1"]);
}

#[test]
fn an_unknown_type_has_no_rows() {
    assert!(index_resource(&params(), "NoSuchType", &json!({"status": "final"})).is_empty());
}

#[test]
fn quantities_numbers_and_composites_are_indexed_with_scaled_ranges() {
    let obs = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5"}]},
        "valueQuantity": {"value": 5.4, "unit": "milligram per litre", "system": "http://unitsofmeasure.org", "code": "mg/L"}});
    let rows = index_resource(&params(), "Observation", &obs);
    let quantity: Vec<(Option<&str>, &str, Option<i64>)> = rows
        .iter()
        .filter(|r| r.param == "value-quantity")
        .map(|r| (r.system.as_deref(), r.value.as_str(), r.lo))
        .collect();
    assert_eq!(
        quantity,
        [
            (None, "", Some(5_400_000)),
            (Some("http://unitsofmeasure.org"), "mg/L", Some(5_400_000)),
            (None, "milligram per litre", Some(5_400_000)),
        ]
    );
    let composite: Vec<&str> = rows
        .iter()
        .filter(|r| r.param == "code-value-quantity")
        .map(|r| r.value.as_str())
        .collect();
    assert_eq!(
        composite,
        [
            "1988-5$",
            "1988-5$mg/L",
            "1988-5$http://unitsofmeasure.org|mg/L",
            "1988-5$milligram per litre"
        ]
    );
    let risk = json!({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/p"},
        "prediction": [{"probabilityDecimal": 0.25}]});
    let rows = index_resource(&params(), "RiskAssessment", &risk);
    let p = rows
        .iter()
        .find(|r| r.param == "probability")
        .expect("probability");
    assert_eq!((p.lo, p.hi), (Some(250_000), Some(250_000)));
}

#[test]
fn patient_references_follow_the_compartment_params() {
    let references = patient_references(&params(), "Task", &task());
    assert_eq!(references, ["Patient/p1"]);
    let mut task = task();
    task["focus"] = json!({"reference": "Patient/p2"});
    assert_eq!(
        patient_references(&params(), "Task", &task),
        ["Patient/p1", "Patient/p2"]
    );
}

#[test]
fn patient_references_ignore_non_patients_and_identifiers() {
    let communication = json!({
        "resourceType": "Communication",
        "subject": {"identifier": {"system": PNR, "value": "191212121212"}},
        "sender": {"reference": "Organization/o1"},
        "recipient": [{"reference": "Patient/p9"}, {"reference": "Patient/p9"}]
    });
    assert_eq!(
        patient_references(&params(), "Communication", &communication),
        ["Patient/p9"]
    );
}

#[test]
fn patient_references_of_a_patient_are_left_to_the_caller() {
    let mut patient = patient();
    patient["link"] = json!([{"other": {"reference": "Patient/p2"}, "type": "seealso"}]);
    assert!(patient_references(&params(), "Patient", &patient).is_empty());
}

#[test]
fn date_precision_sets_the_range_width() {
    let year = parse_date_range("2026").expect("year");
    assert_eq!(year.lo, ms("2026-01-01T00:00:00Z"));
    assert_eq!(year.hi, ms("2027-01-01T00:00:00Z") - 1);
    let month = parse_date_range("2024-02").expect("month");
    assert_eq!(month.hi, ms("2024-03-01T00:00:00Z") - 1);
    let minute = parse_date_range("2026-11-24T10:00").expect("minute");
    assert_eq!(minute.hi - minute.lo, 59_999);
    let tenth = parse_date_range("2026-11-24T10:00:00.1Z").expect("tenth");
    assert_eq!(tenth.lo, ms("2026-11-24T10:00:00.1Z"));
    assert_eq!(tenth.hi - tenth.lo, 99);
    let micros = parse_date_range("2026-11-24T10:00:00.123456-05:00").expect("micros");
    assert_eq!(micros.lo, ms("2026-11-24T15:00:00.123Z"));
    assert_eq!(micros.hi, micros.lo);
}

#[test]
fn the_last_representable_year_is_open_ended() {
    assert_eq!(parse_date_range("9999").map(|r| r.hi), Some(i64::MAX));
}

#[test]
fn malformed_or_impossible_dates_are_rejected() {
    for text in [
        "",
        "26",
        "2026-1",
        "2026-02-30",
        "2026-13",
        "2026-11-24T25:00",
        "2026-11-24T10",
        "2026-11-24T10:00:60Z",
        "2026-11-24T10:00:00.",
        "2026-11-24T10:00:00+15:00",
        "2026-11-24T10:00:00+01",
        "2026-11-24 10:00",
        "2026-11-24T10:00:00Zjunk",
    ] {
        assert_eq!(parse_date_range(text), None, "{text:?}");
    }
}

#[test]
fn literal_references_normalise_to_type_and_id() {
    let cases = [
        ("Patient/123", Some("Patient"), "Patient/123"),
        (
            "https://navet.example/fhir/Patient/123",
            Some("Patient"),
            "Patient/123",
        ),
        ("Patient/123/_history/4", Some("Patient"), "Patient/123"),
        (
            "http://example.org/fhir/PlanDefinition/kdn|2.0",
            Some("PlanDefinition"),
            "PlanDefinition/kdn",
        ),
        (
            "urn:uuid:5c5c1ae6-0b8d-4b4f-8a5c-0b0d0b0d0b0d",
            None,
            "urn:uuid:5c5c1ae6-0b8d-4b4f-8a5c-0b0d0b0d0b0d",
        ),
        ("http://snomed.info/sct", None, "http://snomed.info/sct"),
    ];
    for (text, resource_type, value) in cases {
        let parsed = parse_literal_reference(text).expect(text);
        assert_eq!(parsed.resource_type.as_deref(), resource_type, "{text}");
        assert_eq!(parsed.value, value, "{text}");
    }
    assert_eq!(parse_literal_reference("#contained"), None);
    assert_eq!(parse_literal_reference("  "), None);
}

#[test]
fn string_normalisation_folds_case_and_accents() {
    assert_eq!(normalize_string("  ÅSA   Öberg-Ärlig "), "asa oberg-arlig");
    assert_eq!(
        normalize_string("André Søren Straße"),
        "andre soren strasse"
    );
}
