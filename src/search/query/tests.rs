use super::*;
use crate::search::index::index_resource;
use crate::search::params::SearchParams;
use serde_json::json;

fn params() -> SearchParams {
    SearchParams::embedded()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse(resource_type: &str, items: &[(&str, &str)]) -> Result<SearchQuery, Vec<QueryError>> {
    parse_query(&params(), resource_type, &pairs(items), false)
}

fn parse_ok(resource_type: &str, items: &[(&str, &str)]) -> SearchQuery {
    match parse(resource_type, items) {
        Ok(query) => query,
        Err(errors) => panic!("{items:?}: {errors:?}"),
    }
}

fn one_filter(resource_type: &str, key: &str, value: &str) -> Filter {
    let mut query = parse_ok(resource_type, &[(key, value)]);
    assert_eq!(query.filters.len(), 1);
    query.filters.remove(0)
}

fn errors(resource_type: &str, items: &[(&str, &str)]) -> Vec<QueryError> {
    match parse(resource_type, items) {
        Ok(query) => panic!("{items:?} parsed: {query:?}"),
        Err(errors) => errors,
    }
}

fn token(system: Option<Option<&str>>, code: Option<&str>) -> FilterValue {
    FilterValue::Token {
        system: system.map(|s| s.map(str::to_owned)),
        code: code.map(str::to_owned),
    }
}

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>()
        .expect("timestamp")
        .as_millisecond()
}

const PNR: &str = "http://electronichealth.se/identifier/personnummer";

#[test]
fn token_values_take_every_system_form() {
    let filter = one_filter(
        "Patient",
        "identifier",
        &format!("{PNR}|191212121212,|local,sys|,plain"),
    );
    assert_eq!(filter.kind, ParamType::Token);
    assert_eq!(filter.modifier, None);
    assert_eq!(
        filter.values,
        [
            token(Some(Some(PNR)), Some("191212121212")),
            token(Some(None), Some("local")),
            token(Some(Some("sys")), None),
            token(None, Some("plain")),
        ]
    );
}

#[test]
fn escaped_commas_and_bars_stay_in_the_value() {
    let filter = one_filter("ServiceRequest", "code", r"a\,b,sys\|x|c\\d");
    assert_eq!(
        filter.values,
        [
            token(None, Some("a,b")),
            token(Some(Some("sys|x")), Some(r"c\d"))
        ]
    );
}

#[test]
fn a_lone_bar_is_not_a_token() {
    let errors = errors("Patient", &[("gender", "|")]);
    assert_eq!(errors[0].param, "gender");
}

#[test]
fn token_not_and_text_modifiers_are_parsed() {
    let not = one_filter("Task", "status:not", "completed,cancelled");
    assert_eq!(not.modifier, Some(Modifier::Not));
    assert_eq!(not.values.len(), 2);
    let text = one_filter("ServiceRequest", "code:text", "  Hospice   CARE ");
    assert_eq!(text.modifier, Some(Modifier::Text));
    assert_eq!(
        text.values,
        [FilterValue::String("hospice care".to_owned())]
    );
    assert_eq!(text.index_param(), "code:text");
}

#[test]
fn string_values_are_normalised_unless_exact() {
    let plain = one_filter("Patient", "family", "ÅBERG");
    assert_eq!(plain.values, [FilterValue::String("aberg".to_owned())]);
    assert_eq!(plain.index_param(), "family");
    let exact = one_filter("Patient", "family:exact", "Åberg");
    assert_eq!(exact.values, [FilterValue::String("Åberg".to_owned())]);
    assert_eq!(exact.index_param(), "family:exact");
    let contains = one_filter("Patient", "name:contains", "BER");
    assert_eq!(contains.modifier, Some(Modifier::Contains));
    assert_eq!(contains.values, [FilterValue::String("ber".to_owned())]);
}

#[test]
fn a_bare_id_gets_the_type_of_a_single_target_parameter() {
    let filter = one_filter("ServiceRequest", "patient", "123");
    assert_eq!(
        filter.values,
        [FilterValue::Reference(ReferenceValue::Local {
            resource_type: "Patient".to_owned(),
            id: "123".to_owned()
        })]
    );
}

#[test]
fn a_bare_id_for_a_many_target_parameter_matches_any_of_them() {
    let filter = one_filter("Encounter", "subject", "123");
    assert_eq!(
        filter.values,
        [FilterValue::Reference(ReferenceValue::AnyType {
            id: "123".to_owned(),
            types: vec!["Group".to_owned(), "Patient".to_owned()]
        })]
    );
    let FilterValue::Reference(reference) = &filter.values[0] else {
        panic!("reference")
    };
    assert_eq!(
        reference.candidates(),
        Some(vec![
            "Group/123".to_owned(),
            "Patient/123".to_owned(),
            "123".to_owned()
        ])
    );
    let any = one_filter("Task", "subject", "123");
    let FilterValue::Reference(reference) = &any.values[0] else {
        panic!("reference")
    };
    assert_eq!(reference.candidates(), None);
    assert!(reference.matches("Patient/123"));
    assert!(
        reference.matches("123"),
        "a reference written as the bare id"
    );
    assert!(!reference.matches("Patient/1234"));
}

#[test]
fn typed_absolute_and_literal_references_are_normalised() {
    let filter = one_filter(
        "Task",
        "subject",
        "Patient/1,https://navet.example/fhir/Patient/2/_history/3,urn:uuid:0b5e2b9c-1a2b-4c3d-9e8f-001122334455",
    );
    assert_eq!(
        filter.values,
        [
            FilterValue::Reference(ReferenceValue::Local {
                resource_type: "Patient".to_owned(),
                id: "1".to_owned()
            }),
            FilterValue::Reference(ReferenceValue::Local {
                resource_type: "Patient".to_owned(),
                id: "2".to_owned()
            }),
            FilterValue::Reference(ReferenceValue::Literal(
                "urn:uuid:0b5e2b9c-1a2b-4c3d-9e8f-001122334455".to_owned()
            )),
        ]
    );
}

#[test]
fn a_type_modifier_names_the_reference_type() {
    let filter = one_filter("Encounter", "subject:Patient", "123");
    assert_eq!(filter.modifier, Some(Modifier::Type("Patient".to_owned())));
    assert_eq!(
        filter.values,
        [FilterValue::Reference(ReferenceValue::Local {
            resource_type: "Patient".to_owned(),
            id: "123".to_owned()
        })]
    );
}

#[test]
fn a_reference_to_a_type_the_parameter_cannot_point_to_is_an_error() {
    assert_eq!(
        errors("ServiceRequest", &[("patient", "Organization/1")]).len(),
        1
    );
    assert_eq!(
        errors("Encounter", &[("subject:Organization", "1")]).len(),
        1
    );
    assert_eq!(
        errors("Encounter", &[("subject:Patient", "Group/1")]).len(),
        1
    );
}

#[test]
fn the_identifier_modifier_takes_a_token() {
    let filter = one_filter(
        "Encounter",
        "subject:identifier",
        &format!("{PNR}|191212121212"),
    );
    assert_eq!(filter.modifier, Some(Modifier::Identifier));
    assert_eq!(
        filter.values,
        [token(Some(Some(PNR)), Some("191212121212"))]
    );
    assert_eq!(filter.index_param(), "subject:identifier");
    assert_eq!(
        errors("Encounter", &[("subject:identifier", "sys|")]).len(),
        1
    );
}

#[test]
fn dates_take_every_prefix() {
    let cases = [
        ("2026-11-24", Prefix::Eq),
        ("eq2026-11-24", Prefix::Eq),
        ("ne2026-11-24", Prefix::Ne),
        ("gt2026-11-24", Prefix::Gt),
        ("lt2026-11-24", Prefix::Lt),
        ("ge2026-11-24", Prefix::Ge),
        ("le2026-11-24", Prefix::Le),
        ("sa2026-11-24", Prefix::Sa),
        ("eb2026-11-24", Prefix::Eb),
        ("ap2026-11-24", Prefix::Ap),
    ];
    for (text, prefix) in cases {
        let filter = one_filter("ServiceRequest", "authored", text);
        assert_eq!(
            filter.values,
            [FilterValue::Date {
                prefix,
                lo: ms("2026-11-24T00:00:00Z"),
                hi: ms("2026-11-25T00:00:00Z") - 1
            }],
            "{text}"
        );
    }
}

#[test]
fn a_date_time_with_offset_is_converted_to_utc() {
    let filter = one_filter("Encounter", "date", "ge2026-11-24T10:00:00+01:00");
    assert_eq!(
        filter.values,
        [FilterValue::Date {
            prefix: Prefix::Ge,
            lo: ms("2026-11-24T09:00:00Z"),
            hi: ms("2026-11-24T09:00:00Z") + 999
        }]
    );
}

#[test]
fn malformed_dates_and_unknown_prefixes_are_errors() {
    let errors = errors(
        "Patient",
        &[
            ("birthdate", "1912-13-01"),
            ("birthdate", "xx1912"),
            ("_lastUpdated", "yesterday"),
        ],
    );
    assert_eq!(errors.len(), 3);
    assert!(errors[1].message.contains("prefix"), "{errors:?}");
    assert_eq!(errors[2].param, "_lastUpdated");
}

#[test]
fn uri_values_are_exact_and_take_below_and_above() {
    let exact = one_filter(
        "ServiceRequest",
        "instantiates-uri",
        "http://example.org/protocol/iv",
    );
    assert_eq!(
        exact.values,
        [FilterValue::Uri(
            "http://example.org/protocol/iv".to_owned()
        )]
    );
    assert_eq!(
        one_filter("Patient", "_profile:below", "http://x/").modifier,
        Some(Modifier::Below)
    );
    assert_eq!(
        one_filter("Patient", "_profile:above", "http://x/a/b").modifier,
        Some(Modifier::Above)
    );
}

#[test]
fn missing_takes_true_or_false_on_any_type() {
    let filter = one_filter("Task", "owner:missing", "true");
    assert_eq!(filter.modifier, Some(Modifier::Missing));
    assert_eq!(filter.values, [FilterValue::Missing(true)]);
    assert_eq!(filter.presence_params(), ["owner", "owner:identifier"]);
    assert_eq!(
        one_filter("Patient", "birthdate:missing", "false").values,
        [FilterValue::Missing(false)]
    );
    assert_eq!(
        errors("Patient", &[("birthdate:missing", "maybe")]).len(),
        1
    );
    assert_eq!(
        errors("Patient", &[("birthdate:missing", "true,false")]).len(),
        1
    );
}

#[test]
fn id_and_last_updated_are_accepted_without_modifiers() {
    let query = parse_ok(
        "Patient",
        &[("_id", "p1,p2"), ("_lastUpdated", "gt2026-01-01")],
    );
    assert_eq!(query.filters[0].param, "_id");
    assert_eq!(query.filters[0].kind, ParamType::Token);
    assert_eq!(
        query.filters[0].values,
        [token(None, Some("p1")), token(None, Some("p2"))]
    );
    assert_eq!(query.filters[1].kind, ParamType::Date);
    assert_eq!(errors("Patient", &[("_id", "not an id")]).len(), 1);
    assert_eq!(errors("Patient", &[("_id:not", "p1")]).len(), 1);
}

#[test]
fn repeated_parameters_are_separate_anded_filters() {
    let query = parse_ok(
        "Encounter",
        &[("date", "ge2026-01-01"), ("date", "lt2027-01-01")],
    );
    assert_eq!(query.filters.len(), 2);
}

#[test]
fn an_unknown_parameter_is_an_error_naming_it_and_the_type() {
    let errors = errors("Patient", &[("foo", "bar")]);
    assert_eq!(
        errors,
        [QueryError {
            param: "foo".to_owned(),
            message: "unknown search parameter 'foo' for Patient".to_owned()
        }]
    );
}

#[test]
fn unsupported_parameter_types_are_unknown_parameters() {
    let _ = parse_ok("Encounter", &[("length", "gt5")]);
    assert_eq!(errors("Location", &[("near", "1|2|3|km")]).len(), 1);
    assert_eq!(errors("Patient", &[("_text", "x")]).len(), 1);
    assert_eq!(
        errors("Patient", &[("_has:NoSuchType:patient:code", "x")]).len(),
        1
    );
}

#[test]
fn lenient_handling_lists_unknown_and_unsupported_parameters_as_ignored() {
    let query = parse_query(
        &params(),
        "Patient",
        &pairs(&[("foo", "bar"), ("nosuch.name", "y"), ("family", "Åberg")]),
        true,
    )
    .expect("lenient");
    assert_eq!(query.ignored, ["foo", "nosuch.name"]);
    assert_eq!(query.filters.len(), 1);
    // A known parameter that cannot be applied is never ignored (issue 14).
    for key in [
        "name:phonetic",
        "general-practitioner.nosuch",
        "_include:foo",
    ] {
        let result = parse_query(&params(), "Patient", &pairs(&[(key, "x")]), true);
        assert!(result.is_err(), "{key}");
    }
}

#[test]
fn lenient_handling_still_rejects_malformed_values() {
    let result = parse_query(&params(), "Patient", &pairs(&[("birthdate", "soon")]), true);
    assert!(result.is_err());
}

#[test]
fn unsupported_modifiers_and_chains_are_errors() {
    for key in [
        "name:text",
        "code:in",
        "code:below",
        "birthdate:exact",
        "subject:foo",
        "subject.nosuch",
    ] {
        let resource_type = if key.starts_with("code") || key.starts_with("subject") {
            "ServiceRequest"
        } else {
            "Patient"
        };
        assert_eq!(errors(resource_type, &[(key, "x")]).len(), 1, "{key}");
    }
}

#[test]
fn an_empty_value_restricts_nothing_and_is_listed_as_ignored() {
    let query = parse_ok("Patient", &[("name", ""), ("_count", "")]);
    assert!(query.filters.is_empty());
    assert_eq!(query.count, None);
    assert_eq!(query.ignored, ["name", "_count"]);
}

#[test]
fn an_empty_item_in_a_list_is_an_error() {
    assert_eq!(errors("Patient", &[("gender", "male,,female")]).len(), 1);
}

#[test]
fn count_is_kept_as_requested_and_must_be_a_non_negative_integer() {
    assert_eq!(parse_ok("Patient", &[("_count", "1000")]).count, Some(1000));
    assert_eq!(parse_ok("Patient", &[("_count", "0")]).count, Some(0));
    for bad in ["-1", "+5", "ten", "1.5", "99999999999999999999999"] {
        assert_eq!(errors("Patient", &[("_count", bad)]).len(), 1, "{bad}");
    }
}

#[test]
fn single_valued_result_parameters_may_not_repeat() {
    assert_eq!(
        errors("Patient", &[("_count", "1"), ("_count", "2")]).len(),
        1
    );
    assert_eq!(
        errors("Patient", &[("_cursor", "a"), ("_page", "b")]).len(),
        1
    );
}

#[test]
fn sort_takes_a_comma_list_with_descending_keys() {
    let query = parse_ok("Encounter", &[("_sort", "-date,status,_id,-_lastUpdated")]);
    let keys: Vec<(&str, ParamType, bool)> = query
        .sort
        .iter()
        .map(|k| (k.param.as_str(), k.kind, k.descending))
        .collect();
    assert_eq!(
        keys,
        [
            ("date", ParamType::Date, true),
            ("status", ParamType::Token, false),
            ("_id", ParamType::Token, false),
            ("_lastUpdated", ParamType::Date, true),
        ]
    );
    assert_eq!(
        parse_ok("Patient", &[("_sort", "family")]).sort[0].kind,
        ParamType::String
    );
}

#[test]
fn sort_rejects_unknown_keys_and_reference_parameters() {
    let unknown = errors("Patient", &[("_sort", "shoe-size")]);
    assert!(
        unknown[0].message.contains("unknown _sort key"),
        "{unknown:?}"
    );
    assert_eq!(errors("Encounter", &[("_sort", "subject")]).len(), 1);
    assert_eq!(errors("Encounter", &[("_sort", "date,")]).len(), 1);
}

#[test]
fn include_names_a_reference_parameter_and_an_optional_target() {
    let query = parse_ok(
        "ServiceRequest",
        &[
            ("_include", "ServiceRequest:patient"),
            ("_include", "ServiceRequest:requester:Organization"),
        ],
    );
    assert_eq!(
        query.include,
        [
            Include {
                source_type: "ServiceRequest".to_owned(),
                param: "patient".to_owned(),
                target_type: None,
                reverse: false,
                iterate: false,
            },
            Include {
                source_type: "ServiceRequest".to_owned(),
                param: "requester".to_owned(),
                target_type: Some("Organization".to_owned()),
                reverse: false,
                iterate: false,
            },
        ]
    );
}

#[test]
fn include_rejects_unknown_non_reference_foreign_and_wildcard_forms() {
    for value in [
        "ServiceRequest:foo",
        "ServiceRequest:status",
        "Patient:organization",
        "ServiceRequest:patient:Organization",
        "ServiceRequest",
        "*",
    ] {
        assert_eq!(
            errors("ServiceRequest", &[("_include", value)]).len(),
            1,
            "{value}"
        );
    }
    assert_eq!(
        errors(
            "ServiceRequest",
            &[("_include:recurse", "ServiceRequest:patient")]
        )
        .len(),
        1
    );
}

#[test]
fn iterate_may_start_from_an_included_type_and_revinclude_points_at_the_matches() {
    let query = parse_ok(
        "Observation",
        &[
            ("_include", "Observation:patient"),
            ("_include:iterate", "Patient:organization"),
            ("_revinclude", "Provenance:target"),
        ],
    );
    assert_eq!(query.include.len(), 3);
    assert!(query.include[1].iterate && !query.include[1].reverse);
    assert!(query.include[2].reverse);
    // A plain _revinclude through a parameter that cannot point at the searched type is an error.
    assert_eq!(
        errors(
            "Patient",
            &[("_revinclude", "Observation:performer:Organization")]
        )
        .len(),
        1
    );
    let _ = parse_ok("Patient", &[("_revinclude", "Encounter:patient")]);
}

#[test]
fn chains_and_has_parse_into_linked_filters() {
    let query = parse_ok("Task", &[("patient.identifier", "191212121212")]);
    let Some(Link::Chain(targets)) = &query.filters[0].link else {
        panic!("a chain");
    };
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].0, "Patient");
    assert_eq!(targets[0].1.param, "identifier");
    let has = parse_ok("Patient", &[("_has:Observation:patient:code", "1234-5")]);
    let Some(Link::Has {
        source_type, param, ..
    }) = &has.filters[0].link
    else {
        panic!("a _has");
    };
    assert_eq!(
        (source_type.as_str(), param.as_str()),
        ("Observation", "patient")
    );
    assert_eq!(
        query.referenced_types(),
        ["Patient"],
        "a chain reads its target type"
    );
    // Too deep, an untyped chain through Reference(Any), a _has through a parameter that cannot point here.
    assert_eq!(
        errors("Task", &[("patient.organization.partof.partof.name", "x")]).len(),
        1
    );
    assert_eq!(errors("Task", &[("focus.name", "x")]).len(), 1);
    let _ = parse_ok("Patient", &[("_has:Observation:performer:code", "x")]);
    assert_eq!(
        errors("Patient", &[("_has:Observation:based-on:code", "x")]).len(),
        1
    );
}

#[test]
fn numbers_quantities_and_composites_take_prefixes_units_and_two_parts() {
    let q = one_filter(
        "Observation",
        "value-quantity",
        "gt5.4|http://unitsofmeasure.org|mg",
    );
    let FilterValue::Row(m) = &q.values[0] else {
        panic!("a row match");
    };
    assert_eq!(m.system, Some(Some("http://unitsofmeasure.org".to_owned())));
    assert_eq!(m.range.map(|r| r.0), Some(Prefix::Gt));
    let eq = one_filter("RiskAssessment", "probability", "0.5");
    let FilterValue::Row(m) = &eq.values[0] else {
        panic!("a row match");
    };
    // 0.5 stands for 0.45..0.55 (scaled by a million).
    assert_eq!(m.range, Some((Prefix::Eq, 450_000, 550_000)));
    let composite = one_filter(
        "Observation",
        "code-value-quantity",
        "http://loinc.org|1988-5$lt10||mg",
    );
    let FilterValue::Row(m) = &composite.values[0] else {
        panic!("a row match");
    };
    assert_eq!(m.system, Some(Some("http://loinc.org".to_owned())));
    assert_eq!(m.value, Some(ValueMatch::Equals("1988-5$mg".to_owned())));
    for bad in ["x", "1.", "--1", "1e999999", "5|a"] {
        assert_eq!(
            errors("Observation", &[("value-quantity", bad)]).len(),
            1,
            "{bad}"
        );
    }
    assert_eq!(
        errors("Observation", &[("code-value-quantity", "1988-5")]).len(),
        1
    );
}

#[test]
fn result_parameters_are_kept() {
    let query = parse_ok(
        "Patient",
        &[
            ("_total", "accurate"),
            ("_summary", "count"),
            ("_elements", "identifier,name"),
            ("_elements", "gender"),
            ("_format", "application/fhir+json"),
            ("_page", "opaque-token"),
            ("_pretty", "true"),
        ],
    );
    assert_eq!(query.total, TotalMode::Accurate);
    assert_eq!(query.summary.as_deref(), Some("count"));
    assert_eq!(
        query.elements,
        Some(vec![
            "identifier".to_owned(),
            "name".to_owned(),
            "gender".to_owned()
        ])
    );
    assert_eq!(query.format.as_deref(), Some("application/fhir+json"));
    assert_eq!(query.cursor.as_deref(), Some("opaque-token"));
    assert!(query.ignored.is_empty());
    assert_eq!(parse_ok("Patient", &[]).total, TotalMode::Unspecified);
}

#[test]
fn bad_total_summary_and_elements_are_errors() {
    let errors = errors(
        "Patient",
        &[
            ("_total", "all"),
            ("_summary", "brief"),
            ("_elements", "name,,x"),
            ("_count:x", "1"),
        ],
    );
    assert_eq!(errors.len(), 4);
}

#[test]
fn all_errors_are_reported_together() {
    let errors = errors(
        "Patient",
        &[
            ("foo", "1"),
            ("birthdate", "x"),
            ("_count", "-1"),
            ("family", "ok"),
        ],
    );
    let params: Vec<&str> = errors.iter().map(|e| e.param.as_str()).collect();
    assert_eq!(params, ["foo", "birthdate", "_count"]);
}

// --- date conditions (search.html#prefix) ---

const DAY_LO: i64 = 1_000;
const DAY_HI: i64 = 1_999;

fn holds(prefix: Prefix, row: (i64, i64)) -> bool {
    date_condition_at(prefix, DAY_LO, DAY_HI, DAY_LO).matches(row.0, row.1)
}

#[test]
fn eq_needs_the_row_inside_the_search_range() {
    assert!(holds(Prefix::Eq, (1_000, 1_999)));
    assert!(holds(Prefix::Eq, (1_200, 1_300)));
    assert!(!holds(Prefix::Eq, (900, 1_300)));
    assert!(!holds(Prefix::Eq, (1_200, i64::MAX)));
}

#[test]
fn ne_is_the_complement_of_eq() {
    for row in [
        (1_000, 1_999),
        (1_200, 1_300),
        (900, 1_300),
        (1_200, 2_500),
        (0, 10),
    ] {
        assert_eq!(holds(Prefix::Ne, row), !holds(Prefix::Eq, row), "{row:?}");
    }
}

#[test]
fn gt_and_lt_need_the_row_to_reach_beyond_the_range() {
    assert!(holds(Prefix::Gt, (1_500, 2_000)));
    assert!(!holds(Prefix::Gt, (1_500, 1_999)));
    assert!(holds(Prefix::Lt, (999, 1_500)));
    assert!(!holds(Prefix::Lt, (1_000, 1_500)));
}

#[test]
fn ge_and_le_also_accept_rows_inside_the_range() {
    assert!(holds(Prefix::Ge, (1_200, 1_300)));
    assert!(holds(Prefix::Ge, (1_500, 3_000)));
    assert!(!holds(Prefix::Ge, (500, 1_500)));
    assert!(holds(Prefix::Le, (1_200, 1_300)));
    assert!(holds(Prefix::Le, (500, 1_500)));
    assert!(!holds(Prefix::Le, (1_500, 3_000)));
}

#[test]
fn sa_and_eb_need_no_overlap() {
    assert!(holds(Prefix::Sa, (2_000, 2_100)));
    assert!(!holds(Prefix::Sa, (1_999, 2_100)));
    assert!(holds(Prefix::Eb, (0, 999)));
    assert!(!holds(Prefix::Eb, (0, 1_000)));
}

#[test]
fn ap_widens_the_range_by_a_tenth_of_the_gap_to_now() {
    let now = DAY_HI + 10_000;
    let condition = date_condition_at(Prefix::Ap, DAY_LO, DAY_HI, now);
    assert!(condition.matches(DAY_HI + 1_000, DAY_HI + 1_000));
    assert!(!condition.matches(DAY_HI + 1_001, DAY_HI + 1_001));
    assert!(condition.matches(DAY_LO - 1_000, DAY_LO - 1_000));
    assert!(condition.matches(1_500, 1_500));
}

#[test]
fn a_date_condition_renders_as_sql_with_binds() {
    let (sql, binds) = date_condition_at(Prefix::Ge, 10, 20, 0).to_sql("lo", "hi");
    assert_eq!(sql, "((hi > ?) OR (lo >= ? AND hi <= ?))");
    assert_eq!(binds, [20, 10, 20]);
}

// --- index and query agree (the contract in index.rs) ---

fn filter_matches(
    resource_type: &str,
    resource: &serde_json::Value,
    key: &str,
    value: &str,
) -> bool {
    let params = params();
    let rows = index_resource(&params, resource_type, resource);
    let query = parse_query(&params, resource_type, &pairs(&[(key, value)]), false).expect("query");
    query.filters[0].matches_rows(&rows)
}

fn patient() -> serde_json::Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": PNR, "value": "191212121212"}],
        "name": [{"family": "Åberg", "given": ["Anna"]}],
        "gender": "female",
        "birthDate": "1912-12-12"
    })
}

#[test]
fn a_patient_is_found_by_personnummer_name_gender_and_birthdate() {
    let patient = patient();
    assert!(filter_matches(
        "Patient",
        &patient,
        "identifier",
        &format!("{PNR}|191212121212")
    ));
    assert!(filter_matches(
        "Patient",
        &patient,
        "identifier",
        "191212121212"
    ));
    assert!(!filter_matches(
        "Patient",
        &patient,
        "identifier",
        "|191212121212"
    ));
    assert!(filter_matches("Patient", &patient, "family", "åb"));
    assert!(filter_matches("Patient", &patient, "name", "ANNA"));
    assert!(
        filter_matches("Patient", &patient, "family", "ab"),
        "string search ignores accents (FHIR R4 search.html#string)"
    );
    assert!(!filter_matches(
        "Patient",
        &patient,
        "family:exact",
        "Aberg"
    ));
    assert!(filter_matches("Patient", &patient, "family:exact", "Åberg"));
    assert!(!filter_matches(
        "Patient",
        &patient,
        "family:exact",
        "åberg"
    ));
    assert!(filter_matches(
        "Patient",
        &patient,
        "family:contains",
        "BER"
    ));
    assert!(filter_matches("Patient", &patient, "gender", "female"));
    assert!(filter_matches("Patient", &patient, "gender:not", "male"));
    assert!(filter_matches(
        "Patient",
        &patient,
        "birthdate",
        "1912-12-12"
    ));
    assert!(filter_matches("Patient", &patient, "birthdate", "1912"));
    assert!(!filter_matches(
        "Patient",
        &patient,
        "birthdate",
        "1912-12-12T10:00:00Z"
    ));
    assert!(filter_matches("Patient", &patient, "birthdate", "lt1950"));
    assert!(filter_matches(
        "Patient",
        &patient,
        "birthdate:missing",
        "false"
    ));
    assert!(filter_matches(
        "Patient",
        &patient,
        "address:missing",
        "true"
    ));
}

#[test]
fn a_task_is_found_by_patient_owner_and_period() {
    let task = json!({
        "resourceType": "Task",
        "status": "requested",
        "for": {"reference": "Patient/p1"},
        "owner": {"reference": "Organization/mtn"},
        "executionPeriod": {"start": "2026-11-25T08:00:00+01:00"}
    });
    assert!(filter_matches("Task", &task, "patient", "p1"));
    assert!(filter_matches("Task", &task, "patient", "Patient/p1"));
    assert!(!filter_matches("Task", &task, "patient", "p2"));
    assert!(filter_matches("Task", &task, "subject", "p1"));
    assert!(filter_matches("Task", &task, "owner", "Organization/mtn"));
    assert!(
        filter_matches("Task", &task, "period", "ge2026-12-01"),
        "open end reaches past"
    );
    assert!(!filter_matches("Task", &task, "period", "eb2026-11-25"));
    assert!(filter_matches("Task", &task, "status", "requested,ready"));
}

#[test]
fn an_encounter_is_found_by_subject_identifier() {
    let encounter = json!({
        "resourceType": "Encounter",
        "subject": {"type": "Patient", "identifier": {"system": PNR, "value": "191212121212"}}
    });
    assert!(filter_matches(
        "Encounter",
        &encounter,
        "patient:identifier",
        &format!("{PNR}|191212121212")
    ));
    assert!(filter_matches(
        "Encounter",
        &encounter,
        "subject:missing",
        "false"
    ));
    assert!(!filter_matches(
        "Encounter",
        &encounter,
        "patient",
        "191212121212"
    ));
}

#[test]
fn uri_below_and_above_match_by_prefix() {
    let patient = json!({"resourceType": "Patient", "meta": {"profile": ["http://navet.se/fhir/StructureDefinition/patient"]}});
    assert!(filter_matches(
        "Patient",
        &patient,
        "_profile:below",
        "http://navet.se/fhir/"
    ));
    assert!(!filter_matches(
        "Patient",
        &patient,
        "_profile",
        "http://navet.se/fhir/"
    ));
    assert!(filter_matches(
        "Patient",
        &patient,
        "_profile:above",
        "http://navet.se/fhir/StructureDefinition/patient/v2"
    ));
}

fn many(n: usize, item: &str) -> String {
    vec![item; n].join(",")
}

#[test]
fn the_caps_are_met_exactly() {
    let values = many(MAX_VALUES_PER_PARAMETER, "female");
    let query = parse_ok("Patient", &[("gender", &values)]);
    assert_eq!(query.filters[0].values.len(), MAX_VALUES_PER_PARAMETER);
    let sort = many(MAX_SORT_KEYS, "-birthdate");
    assert_eq!(
        parse_ok("Patient", &[("_sort", &sort)]).sort.len(),
        MAX_SORT_KEYS
    );
    let includes: Vec<(&str, &str)> = vec![("_include", "Task:owner"); MAX_INCLUDES];
    assert_eq!(parse_ok("Task", &includes).include.len(), MAX_INCLUDES);
    let params: Vec<(&str, &str)> = vec![("gender", "female"); MAX_PARAMETERS];
    assert_eq!(parse_ok("Patient", &params).filters.len(), MAX_PARAMETERS);
    let all: Vec<(&str, &str)> =
        vec![("gender", values.as_str()); MAX_VALUES / MAX_VALUES_PER_PARAMETER];
    assert_eq!(
        parse_ok("Patient", &all).filters.len(),
        MAX_VALUES / MAX_VALUES_PER_PARAMETER
    );
}

/// Resource type, query pairs, the error's parameter, a part of its message.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], String, String);

#[test]
fn one_more_than_a_cap_is_an_error_naming_the_cap_and_its_limit() {
    let values = many(MAX_VALUES_PER_PARAMETER + 1, "female");
    let sort = many(MAX_SORT_KEYS + 1, "birthdate");
    let includes: Vec<(&str, &str)> = vec![("_include", "Task:owner"); MAX_INCLUDES + 1];
    let mixed: Vec<(&str, &str)> = [("_revinclude", "Task:owner"); MAX_INCLUDES]
        .into_iter()
        .chain([("_include", "Task:owner")])
        .collect();
    let params: Vec<(&str, &str)> = vec![("gender", "female"); MAX_PARAMETERS + 1];
    let full = many(MAX_VALUES_PER_PARAMETER, "female");
    let values_total: Vec<(&str, &str)> =
        vec![("gender", full.as_str()); MAX_VALUES / MAX_VALUES_PER_PARAMETER]
            .into_iter()
            .chain([("_id", "one")])
            .collect();
    let cases: [Case<'_>; 6] = [
        (
            "Patient",
            &values_total,
            "search".into(),
            format!(
                "a search takes at most {MAX_VALUES} values in all its parameters, this one has {}",
                MAX_VALUES + 1
            ),
        ),
        (
            "Patient",
            &[("gender", values.as_str())],
            "gender".into(),
            format!("too many values: one parameter takes at most {MAX_VALUES_PER_PARAMETER}"),
        ),
        (
            "Patient",
            &[("_sort", sort.as_str())],
            "_sort".into(),
            format!("too many _sort keys: at most {MAX_SORT_KEYS}"),
        ),
        (
            "Task",
            &includes,
            "_include".into(),
            format!(
                "a search takes at most {MAX_INCLUDES}, this one has {}",
                MAX_INCLUDES + 1
            ),
        ),
        (
            "Task",
            &mixed,
            "_include".into(),
            format!(
                "a search takes at most {MAX_INCLUDES}, this one has {}",
                MAX_INCLUDES + 1
            ),
        ),
        (
            "Patient",
            &params,
            "search".into(),
            format!(
                "too many parameters: a search takes at most {MAX_PARAMETERS}, this one has {}",
                MAX_PARAMETERS + 1
            ),
        ),
    ];
    for (resource_type, items, param, message) in cases {
        let errors = errors(resource_type, items);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].param, param);
        assert!(errors[0].message.contains(&message), "{:?}", errors[0]);
    }
}

#[test]
fn a_value_cap_holds_under_lenient_handling_too() {
    let values = many(MAX_VALUES_PER_PARAMETER + 1, "female");
    let result = parse_query(&params(), "Patient", &pairs(&[("gender", &values)]), true);
    assert!(result.is_err(), "{result:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

    /// Query strings come from the network: any decoded pairs are parsed or refused, never a panic.
    #[test]
    fn parsing_arbitrary_queries_never_panics(
        raw in proptest::collection::vec(
            ("(_sort|_include|_revinclude|_count|_id|_lastUpdated|gender|name|birthdate|identifier|subject|patient|owner|[a-z_:.]{0,8})(:[a-zA-Z]{0,8})?",
             r"[-a-zA-Z0-9|,:\\$/?=.+]{0,24}"),
            0..60,
        ),
        lenient in proptest::bool::ANY,
        ty in "(Patient|Task|Observation|ServiceRequest|[A-Z][a-z]{0,6})",
    ) {
        let _ = parse_query(&params(), &ty, &raw, lenient);
    }

    /// Chains, `_has`, numbers, quantities and composites from the network: parsed or refused, never a panic.
    #[test]
    fn parsing_arbitrary_chains_numbers_and_composites_never_panics(
        raw in proptest::collection::vec(
            ("(value-quantity|code-value-quantity|combo-code-value-concept|code-value-date|subject|patient\\.identifier|subject:Patient\\.name|_has:Observation:patient:code|_has:[A-Za-z]{0,8}:[a-z]{0,6}:[a-z._:]{0,12}|[a-z]{1,8}\\.[a-z.:]{0,16})",
             r"(eq|ne|gt|lt|ge|le|sa|eb|ap|xx)?-?[0-9]{0,20}(\.[0-9]{0,20})?([eE][-+]?[0-9]{0,6})?(\|[a-z:/.]{0,10}){0,3}(\$[-a-zA-Z0-9|.]{0,12})?"),
            0..20,
        ),
        lenient in proptest::bool::ANY,
    ) {
        let _ = parse_query(&params(), "Observation", &raw, lenient);
    }
}
