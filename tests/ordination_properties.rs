//! Property tests of order intake on arbitrary input (issue 11): valid order Bundles with random elements
//! replaced or removed, other order shapes, and arbitrary JSON, sent through the transaction path that intake
//! runs in (parse, validation, the order rules, planning, the writer) and once through HTTP. Never a panic or
//! a 5xx: always a success or a 4xx with an OperationOutcome.

mod common;
mod ordination_common;

use navet::fhir::visibility::Visibility;
use navet::store::Actor;
use ordination_common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        // Strings intake reads as dates, times, codes and references.
        "(19|20)[0-9]{2}-[01][0-9]-[0-3][0-9](T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\+0[12]:00)?)?",
        "[0-2][0-9]:[0-5][0-9]:[0-5][0-9]",
        "(Patient|MedicationRequest|ServiceRequest|Organization)/[a-z0-9-]{0,8}",
        Just("urn:uuid:2b1f6a52-0c1e-4a57-9e38-6f3e1c9d0a01".to_owned()),
        Just("iv-antibiotika".to_owned()),
        Just("blodtransfusion".to_owned()),
        Just("revoked".to_owned()),
        Just("draft".to_owned()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e12f64..1.0e12).prop_map(Value::from),
        (0u64..30).prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Order Bundles of every shape intake knows: drugs ×1 to ×6 a day, a transfusion with a base test, a named
/// performer, a draft, a referral for assessment, and the Ystad site.
fn base_bundle() -> impl Strategy<Value = Value> {
    (0usize..6, 1u64..7, any::<bool>(), 0u32..1000).prop_map(|(shape, per_day, flag, n)| {
        let patient = if flag { TOLVAN } else { "193803032451" };
        let mut o = Order::antibiotics(
            patient,
            per_day,
            "2026-10-24",
            "2026-10-26",
            &format!("prop-{n}"),
        );
        match shape {
            1 => {
                o.code = "blodtransfusion".into();
                o.per_day = None;
                o.units = Some(per_day);
                o.base_test = flag;
            }
            2 => o.performer = Some("SE2321000255-ASIH1".into()),
            3 => o.status = "draft".into(),
            4 => {
                o.code = "hembesok".into();
                o.category = "bedomning".into();
                o.per_day = None;
            }
            _ => {}
        }
        let mut b = o.bundle();
        if shape == 5 {
            let last = b["entry"].as_array().map_or(0, |a| a.len() - 1);
            b["entry"][last]["resource"]["extension"] = json!([{
                "url": "http://navet.example/StructureDefinition/kommunal-hemsjukvard",
                "valueBoolean": flag
            }]);
        }
        b
    })
}

/// Every JSON pointer inside `v` (not the root), in document order.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        _ => {}
    }
}

/// What an edit does to the element it picks.
#[derive(Debug, Clone)]
enum Edit {
    Remove,
    /// Any JSON in its place.
    Replace(Value),
    /// A value of the same JSON kind (string for string, number for number…), so that most edited orders
    /// pass the FHIR structure check and reach the order rules and planning.
    SameKind {
        text: String,
        number: i64,
        small: u64,
        flag: bool,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => Just(Edit::Remove),
        1 => json_value().prop_map(Edit::Replace),
        4 => (text(), any::<i64>(), 0u64..30, any::<bool>())
            .prop_map(|(text, number, small, flag)| Edit::SameKind { text, number, small, flag }),
    ]
}

/// Applies an edit to the element at a pointer.
fn apply(v: &mut Value, pointer: &str, edit: Edit) {
    let new = match edit {
        Edit::Replace(new) => new,
        Edit::SameKind {
            text,
            number,
            small,
            flag,
        } => match v.pointer(pointer) {
            Some(Value::String(_)) => Value::from(text),
            Some(Value::Number(_)) if flag => Value::from(small),
            Some(Value::Number(_)) => Value::from(number),
            Some(Value::Bool(_)) => Value::from(flag),
            Some(Value::Array(a)) if flag => {
                Value::Array(a.iter().chain(a.iter()).cloned().collect())
            }
            Some(Value::Array(_)) => Value::Array(Vec::new()),
            _ => Value::Null,
        },
        Edit::Remove => {
            let Some((parent, last)) = pointer.rsplit_once('/') else {
                return;
            };
            match v.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.shift_remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>()
                        && i < a.len()
                    {
                        a.remove(i);
                    }
                }
                _ => {}
            }
            return;
        }
    };
    if let Some(slot) = v.pointer_mut(pointer) {
        *slot = new;
    }
}

/// A valid order Bundle with one to three elements of its resources edited, or arbitrary JSON.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let edited = (
        base_bundle(),
        prop::collection::vec((any::<prop::sample::Index>(), edit()), 0..4),
    )
        .prop_map(|(mut b, edits)| {
            for (index, edit) in edits {
                let mut all = Vec::new();
                pointers(&b, String::new(), &mut all);
                // Mostly inside the resources, where intake reads.
                let inside: Vec<&String> =
                    all.iter().filter(|p| p.contains("/resource/")).collect();
                if inside.is_empty() {
                    break;
                }
                let target = inside[index.index(inside.len())].clone();
                apply(&mut b, &target, edit);
            }
            b.to_string().into_bytes()
        });
    prop_oneof![
        8 => edited,
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => json_value().prop_map(|v| json!({"resourceType": "Bundle", "type": "transaction",
                                              "entry": [{"resource": v, "request": {"method": "POST", "url": "ServiceRequest"}}]})
                                      .to_string().into_bytes()),
    ]
}

fn csk() -> Actor {
    Actor {
        principal: "SE2321000255-CSK01".into(),
        client_id: Some(CSK.into()),
        user: Some("SE2321000255-P0001".into()),
        visibility: Visibility::Care {
            sees: vec!["SE2321000255-CSK01".to_owned()].into(),
            emergency: false,
        },
        population_register: false,
    }
}

#[test]
fn any_order_bundle_through_the_transaction_path_is_planned_or_refused_with_a_4xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(common::spawn_app_with_demo());
    let actor = csk();
    let allow = |_: &str, _: navet::auth::Interaction| Ok(());
    let mut runner = TestRunner::new(Config {
        cases: 192,
        ..Config::default()
    });
    let (planned, refused) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    runner
        .run(&body(), |bytes| {
            let result = rt.block_on(navet::fhir::bundle::process(
                app.state.fhir.clone(),
                app.state.store.as_ref(),
                &actor,
                &allow,
                None,
                &bytes,
            ));
            match result {
                Ok(_) => planned.set(planned.get() + 1),
                Err(e) => {
                    prop_assert!(
                        e.status().is_client_error(),
                        "{} for {}",
                        e.status(),
                        String::from_utf8_lossy(&bytes)
                    );
                    refused.set(refused.get() + 1);
                }
            }
            Ok(())
        })
        .unwrap();
    // Both kinds of answer were exercised (the edits keep many orders valid).
    let (planned, refused) = (planned.get(), refused.get());
    eprintln!("{planned} planned, {refused} refused");
    assert!(
        planned > 0 && refused > 0,
        "{planned} planned, {refused} refused"
    );
}

#[test]
fn any_order_bundle_over_http_gets_a_2xx_or_a_4xx_operation_outcome() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(common::spawn_app_with_demo());
    let client = rt.block_on(hospital(&app));
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    runner
        .run(&body(), |bytes| {
            let (status, answer) = rt.block_on(async {
                let r = client
                    .post(&app.fhir)
                    .header("content-type", common::FHIR_JSON)
                    .body(bytes.clone())
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            });
            prop_assert!(
                status.is_success() || status.is_client_error(),
                "{status}: {answer}"
            );
            if status.is_client_error() {
                prop_assert_eq!(&answer["resourceType"], "OperationOutcome", "{}", answer);
            } else {
                prop_assert_eq!(&answer["resourceType"], "Bundle", "{}", answer);
            }
            Ok(())
        })
        .unwrap();
}
