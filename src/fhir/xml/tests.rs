use super::*;
use crate::fhir::structure::Structure;
use proptest::prelude::*;

/// Parsed once: the proptests call it for every case.
fn structure() -> &'static Structure {
    static STRUCTURE: std::sync::LazyLock<Structure> =
        std::sync::LazyLock::new(Structure::embedded);
    &STRUCTURE
}

fn round_trip(json: &str) -> (String, String) {
    let s = structure();
    let xml = json_to_xml(s, json).expect("encodes");
    let back = xml_to_json(s, xml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    (xml, back)
}

fn same(a: &str, b: &str) -> bool {
    Json::parse(a)
        .expect("json")
        .same(&Json::parse(b).expect("json"))
}

const PATIENT: &str = r##"{"resourceType":"Patient","id":"p1",
  "meta":{"versionId":"1","lastUpdated":"2024-05-01T10:00:00.123+02:00"},
  "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Anna &amp; <b>Bo</b></p></div>"},
  "extension":[{"url":"http://example.org/x","valueDecimal":12.50}],
  "identifier":[{"system":"http://electronichealth.se/identifier/personnummer","value":"191212121212"}],
  "active":true,
  "name":[{"id":"n1","family":"Andersson","given":["Anna",null,"Maria"],
    "_given":[null,{"extension":[{"url":"http://example.org/y","valueString":"line\nbreak \"q\""}]},{"id":"g3"}]}],
  "gender":"female",
  "_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]},
  "deceasedBoolean":false,
  "multipleBirthInteger":2,
  "contained":[{"resourceType":"Organization","id":"o","name":"Vårdcentral <Ö>"}],
  "managingOrganization":{"reference":"#o"}}"##;

#[test]
fn a_patient_with_every_kind_of_element_round_trips() {
    let (xml, back) = round_trip(PATIENT);
    assert!(same(PATIENT, &back), "{back}");
    // Definition order, attributes, primitives, the narrative as XHTML, the contained resource wrapped.
    assert!(xml.contains("<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"p1\"/><meta>"));
    assert!(xml.contains("<name id=\"n1\"><family value=\"Andersson\"/>"));
    assert!(xml.contains("<given value=\"Anna\"/><given><extension url=\"http://example.org/y\">"));
    assert!(xml.contains("<given id=\"g3\" value=\"Maria\"/>"));
    assert!(xml.contains("value=\"line&#10;break &quot;q&quot;\""));
    assert!(xml.contains("<valueDecimal value=\"12.50\"/>"));
    assert!(
        xml.contains(
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Anna &amp; <b>Bo</b></p></div>"
        )
    );
    assert!(xml.contains("<contained><Organization><id value=\"o\"/>"));
    assert!(
        back.contains("12.50"),
        "decimals keep their written form: {back}"
    );
}

#[test]
fn xml_written_by_hand_reads_as_the_json_form() {
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<Observation xmlns="http://hl7.org/fhir">
  <status value="final"/>
  <code><text value="Hb"/></code>
  <valueQuantity><value value="7.20"/><unit value="mmol/L"/></valueQuantity>
</Observation>"#;
    let json = xml_to_json(structure(), xml.as_bytes()).expect("reads");
    assert!(same(
        &json,
        r#"{"resourceType":"Observation","status":"final","code":{"text":"Hb"},
            "valueQuantity":{"value":7.20,"unit":"mmol/L"}}"#
    ));
}

#[test]
fn malformed_or_unknown_xml_is_refused_with_a_reason() {
    let s = structure();
    let cases: &[(&str, &str)] = &[
        ("<Patient><active value=\"true\"/></Patient>", "namespace"),
        (
            "<Patient xmlns=\"http://hl7.org/fhir\"><bogus value=\"1\"/></Patient>",
            "unknown element <bogus>",
        ),
        (
            "<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"yes\"/></Patient>",
            "not true or false",
        ),
        (
            "<Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"male\"/><gender value=\"female\"/></Patient>",
            "only once",
        ),
        (
            "<Patient xmlns=\"http://hl7.org/fhir\"><active>true</active></Patient>",
            "value attribute",
        ),
        (
            "<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"true\"></Patient>",
            "malformed",
        ),
        (
            "<!DOCTYPE x [<!ENTITY a \"b\">]><Patient xmlns=\"http://hl7.org/fhir\"/>",
            "DOCTYPE",
        ),
        (
            "<Nope xmlns=\"http://hl7.org/fhir\"/>",
            "not a FHIR R4 resource type",
        ),
        (
            "<Patient xmlns=\"http://hl7.org/fhir\"><multipleBirthInteger value=\"1e\"/></Patient>",
            "not a number",
        ),
        ("", "no resource"),
    ];
    for (xml, why) in cases {
        let e = xml_to_json(s, xml.as_bytes()).expect_err(xml);
        assert!(e.0.contains(why), "{xml}: {}", e.0);
    }
}

#[test]
fn json_that_xml_cannot_carry_is_refused() {
    let e = json_to_xml(
        structure(),
        r#"{"resourceType":"Patient","name":[{"family":"a\u0001b"}]}"#,
    )
    .expect_err("a control character");
    assert!(e.0.contains("U+0001"), "{}", e.0);
}

#[test]
fn a_bundle_with_resources_inside_round_trips() {
    let bundle = r#"{"resourceType":"Bundle","type":"transaction","entry":[
      {"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient","active":true},
       "request":{"method":"POST","url":"Patient"}}]}"#;
    let (xml, back) = round_trip(bundle);
    assert!(xml.contains("<resource><Patient><active value=\"true\"/></Patient></resource>"));
    assert!(same(bundle, &back), "{back}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_the_xml_reader(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = xml_to_json(structure(), &bytes);
    }

    #[test]
    fn arbitrary_fhir_like_xml_never_panics(
        parts in proptest::collection::vec(prop_oneof![
            Just("<Patient xmlns=\"http://hl7.org/fhir\">".to_owned()),
            Just("</Patient>".to_owned()),
            Just("<name>".to_owned()), Just("</name>".to_owned()),
            Just("<given value=\"a\"/>".to_owned()),
            Just("<extension url=\"u\">".to_owned()), Just("</extension>".to_owned()),
            Just("<valueString value=\"x\"/>".to_owned()),
            Just("<contained>".to_owned()), Just("</contained>".to_owned()),
            Just("<text><div xmlns=\"http://www.w3.org/1999/xhtml\">t</div></text>".to_owned()),
            Just("<div>".to_owned()),
            Just("&amp;".to_owned()), Just(" ".to_owned()),
            "[a-zA-Z<>/=\" ]{0,12}",
        ], 0..30)
    ) {
        let xml = parts.concat();
        if let Ok(json) = xml_to_json(structure(), xml.as_bytes()) {
            // What it accepts is JSON the JSON pipeline can parse.
            prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{}", json);
        }
    }
}
