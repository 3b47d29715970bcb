use super::*;
use serde_json::json;

fn eval(expression: &str, resource: &Value) -> Vec<String> {
    let structure = Structure::embedded();
    let expr = compile(expression).expect("in the subset");
    let index = structure.resource_type_of(resource).expect("a resource");
    let root = [Item::Node {
        value: resource,
        ty: NodeTy::Object(index),
    }];
    let env = Env {
        structure: &structure,
        resource: &root,
        root: &root,
        context: &root,
    };
    env.eval(&expr, &root)
        .expect("evaluates")
        .iter()
        .map(|i| match i {
            Item::Bool(b) => b.to_string(),
            Item::Int(n) => n.to_string(),
            Item::Num(n) => n.to_string(),
            Item::Str(s) => s.to_string(),
            Item::Node { value, .. } => value.to_string(),
        })
        .collect()
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p",
        "name": [{"family": "A", "given": ["B", "C"]}, {"family": "D"}],
        "deceasedBoolean": false,
        "birthDate": "1912-12-12",
        "_gender": {"extension": [{"url": "http://x", "valueString": "y"}]},
        "contained": [{"resourceType": "Organization", "id": "o"}]
    })
}

#[test]
fn paths_flatten_arrays_and_count() {
    assert_eq!(eval("name.given", &patient()), ["\"B\"", "\"C\""]);
    assert_eq!(eval("name.family.count()", &patient()), ["2"]);
    assert_eq!(eval("Patient.name.count() = 2", &patient()), ["true"]);
}

#[test]
fn choice_elements_are_found_by_their_stem() {
    assert_eq!(eval("deceased", &patient()), ["false"]);
    assert_eq!(eval("deceased.exists()", &patient()), ["true"]);
    assert_eq!(eval("multipleBirth.exists()", &patient()), ["false"]);
}

#[test]
fn a_primitive_with_only_extensions_exists_without_a_value() {
    assert_eq!(eval("gender.exists()", &patient()), ["true"]);
    assert_eq!(eval("gender.hasValue()", &patient()), ["false"]);
    assert_eq!(eval("birthDate.hasValue()", &patient()), ["true"]);
}

#[test]
fn three_valued_logic_keeps_empty_as_unknown() {
    assert_eq!(eval("active or true", &patient()), ["true"]);
    assert!(eval("active and true", &patient()).is_empty());
    assert_eq!(eval("active and false", &patient()), ["false"]);
    assert_eq!(
        eval("active implies false", &patient()),
        Vec::<String>::new()
    );
    assert_eq!(eval("false implies active", &patient()), ["true"]);
    assert_eq!(eval("(1 = 1) xor (1 = 2)", &patient()), ["true"]);
}

#[test]
fn strings_functions_and_membership() {
    assert_eq!(eval("'#' + id", &patient()), ["#p"]);
    assert_eq!(eval("id.startsWith('p')", &patient()), ["true"]);
    assert_eq!(
        eval("'#o'.substring(1) in %resource.contained.id", &patient()),
        ["true"]
    );
    assert_eq!(eval("'x' in ('a' | 'b')", &patient()), ["false"]);
    assert_eq!(eval("name.family.isDistinct()", &patient()), ["true"]);
    assert_eq!(eval("name.where(family = 'D').count()", &patient()), ["1"]);
    assert_eq!(eval("name.all(family.exists())", &patient()), ["true"]);
}

#[test]
fn dates_compare_by_instant_and_not_across_precisions() {
    let p = json!({"resourceType": "Encounter", "status": "planned", "class": {"code": "HH"},
        "period": {"start": "2024-05-01T10:00:00+02:00", "end": "2024-05-01T09:00:00Z"}});
    assert_eq!(eval("period.start <= period.end", &p), ["true"]);
    let q = json!({"resourceType": "Encounter", "status": "planned", "class": {"code": "HH"},
        "period": {"start": "2024-05", "end": "2024-05-01"}});
    assert!(eval("period.start <= period.end", &q).is_empty());
    let r = json!({"resourceType": "Encounter", "status": "planned", "class": {"code": "HH"},
        "period": {"start": "2024-06", "end": "2024-05-01"}});
    assert_eq!(eval("period.start <= period.end", &r), ["false"]);
}

#[test]
fn types_are_tested_with_is_as_and_of_type() {
    assert_eq!(
        eval("contained.ofType(Organization).count()", &patient()),
        ["1"]
    );
    assert_eq!(
        eval("contained.first() is Organization", &patient()),
        ["true"]
    );
    assert_eq!(eval("descendants().as(date).count()", &patient()), ["1"]);
}

#[test]
fn expressions_outside_the_subset_are_refused_with_a_reason() {
    for (expr, why) in [
        ("member.resolve().exists()", "resolve"),
        ("name.matches('[A-Z]')", "matches"),
        ("div.htmlChecks()", "htmlChecks"),
        ("%foo.exists()", "%foo"),
        ("name.", "after"),
    ] {
        let err = compile(expr).expect_err(expr);
        assert!(err.0.contains(why), "{expr}: {}", err.0);
    }
}

#[test]
fn arithmetic_on_client_numbers_does_not_overflow() {
    let p = json!({"resourceType": "Patient", "multipleBirthInteger": 2147483647});
    assert_eq!(eval("multipleBirth + 1 > 0", &p), ["true"]);
    let structure = Structure::embedded();
    let expr = compile("9223372036854775807 + 1").expect("parses");
    let root = [Item::Node {
        value: &p,
        ty: NodeTy::Object(structure.resource_type_of(&p).expect("typed")),
    }];
    let env = Env {
        structure: &structure,
        resource: &root,
        root: &root,
        context: &root,
    };
    // Falls back to floating point rather than wrapping or panicking.
    assert!(env.eval(&expr, &root).is_ok());
}
