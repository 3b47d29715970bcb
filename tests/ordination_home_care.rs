//! (v2) spec/ordination.md step 4: when the patient has kommunal hemsjukvård — stated by the orderer on the
//! ServiceRequest with the extension `kommunal-hemsjukvard` (`valueBoolean`) — the order's enrolment invites
//! the home-care nurse of the kommun where the patient stays: a Communication to that kommun's principal.

mod common;
mod ordination_common;

use ordination_common::*;
use serde_json::{Value, json};

const HOME_CARE: &str = "http://navet.example/StructureDefinition/kommunal-hemsjukvard";
/// Signe Holm stays in Sjöbo (1265), where no kommun is a navet principal.
const SIGNE: &str = "193301154682";

/// Every care principal of the demo region.
const CARE_PRINCIPALS: [&str; 10] = [
    "SE2120000999-HSJ1290",
    "SE2120000999-HSJ1286",
    "SE2321000255-VC101",
    "SE2321000255-VC201",
    "SE2321000255-CSK01",
    "SE2321000255-LYS01",
    "SE2321000255-MTN01",
    "SE2321000255-MTN02",
    "SE2321000255-ASIH1",
    "SE2321000255-AMB01",
];

fn with_home_care(order: &Order, value: Value) -> Value {
    let mut b = order.bundle();
    let last = b["entry"].as_array().unwrap().len() - 1;
    b["entry"][last]["resource"]["extension"] = json!([{"url": HOME_CARE}]);
    let ext = &mut b["entry"][last]["resource"]["extension"][0];
    match value {
        Value::Null => {}
        v => ext["valueBoolean"] = v,
    }
    if let Value::String(s) = &ext["valueBoolean"] {
        let s = s.clone();
        ext.as_object_mut().unwrap().remove("valueBoolean");
        ext["valueString"] = json!(s);
    }
    b
}

/// The principals (of [`CARE_PRINCIPALS`]) whose search for Communications finds `id`, under navet's one
/// visibility rule, as their actors.
async fn readers_of(app: &common::TestApp, id: &str) -> Vec<&'static str> {
    let mut readers = Vec::new();
    for hsa in CARE_PRINCIPALS {
        let actor = navet::store::Actor {
            principal: hsa.into(),
            client_id: None,
            user: None,
            visibility: navet::fhir::visibility::Visibility::Care {
                sees: vec![hsa.to_owned()].into(),
                emergency: false,
            },
            population_register: false,
        };
        let page = app
            .state
            .store
            .search(&actor, "Communication", Default::default(), 0, 100)
            .await
            .unwrap();
        if page.matches.iter().any(|v| v.id == id) {
            readers.push(hsa);
        }
    }
    readers
}

#[tokio::test]
async fn the_kommuns_home_care_nurse_is_invited_and_only_the_parties_read_the_invitation() {
    let app = common::spawn_app_with_demo().await;
    let csk = hospital(&app).await;
    // Tolvan stays in Kristianstad (1290): Kristianstads kommun's home health care is invited.
    let order = Order::antibiotics(TOLVAN, 3, "2026-11-24", "2026-11-25", "hsv-1");
    let (status, answer) = post_bundle(&csk, &app, &with_home_care(&order, json!(true))).await;
    assert_eq!(status, 200, "{answer}");
    let sr_id = order_id(&answer);
    let id = format!("{sr_id}-ckommun");
    let kommun = app
        .client_as(
            "demo-kommun-kristianstad",
            Some("SE2120000999-P1290A"),
            "system/*.cruds",
        )
        .await;
    let r = kommun
        .get(format!("{}/Communication/{id}", app.fhir))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let invitation: Value = r.json().await.unwrap();
    assert_eq!(
        invitation["recipient"],
        json!([{"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": "SE2120000999-HSJ1290"}}])
    );
    assert_eq!(
        invitation["sender"]["identifier"]["value"],
        "SE2321000255-MTN01"
    );
    assert_eq!(
        invitation["about"],
        json!([{"reference": format!("ServiceRequest/{sr_id}")}])
    );
    let text = invitation["payload"][0]["contentString"].as_str().unwrap();
    assert!(text.contains("MTN Kristianstad"), "{text}");
    assert!(text.contains("2026-11-24T08:00:00+01:00"), "{text}");
    // Exactly these read it: the orderer (who owns it), the coordinating team (the sender) and the invited
    // kommun. Not Ystad's kommun, the vårdcentraler, the other teams or the ambulance.
    assert_eq!(
        readers_of(&app, &id).await,
        [
            "SE2120000999-HSJ1290",
            "SE2321000255-CSK01",
            "SE2321000255-MTN01",
        ]
    );
    // The same order again invites nobody twice.
    let (status, again) = post_bundle(&csk, &app, &with_home_care(&order, json!(true))).await;
    assert_eq!(status, 200, "{again}");
    let invitations: Vec<Value> = search_all(&kommun, &format!("{}/Communication", app.fhir)).await;
    assert_eq!(ids(&invitations), vec![id]);
}

#[tokio::test]
async fn without_kommunal_hemsjukvard_nobody_is_invited() {
    let app = common::spawn_app_with_demo().await;
    let csk = hospital(&app).await;
    for (n, flag) in [(1, Value::Null), (2, json!(false))] {
        let order = Order::antibiotics(
            TOLVAN,
            3,
            "2026-11-24",
            "2026-11-25",
            &format!("hsv-no-{n}"),
        );
        let bundle = match flag {
            Value::Null => order.bundle(),
            f => with_home_care(&order, f),
        };
        let (status, answer) = post_bundle(&csk, &app, &bundle).await;
        assert_eq!(status, 200, "{answer}");
        let id = format!("{}-ckommun", order_id(&answer));
        assert!(readers_of(&app, &id).await.is_empty(), "{id}");
    }
    // And the kommun was told nothing at all.
    let kommun = app
        .client_as(
            "demo-kommun-kristianstad",
            Some("SE2120000999-P1290A"),
            "system/*.cruds",
        )
        .await;
    assert!(
        search_all(&kommun, &format!("{}/Communication", app.fhir))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn the_statement_is_a_yes_or_no_and_a_kommun_outside_navet_is_a_warning() {
    let app = common::spawn_app_with_demo().await;
    let csk = hospital(&app).await;
    // Not a boolean: 422 at the extension, nothing stored.
    let order = Order::antibiotics(TOLVAN, 3, "2026-11-24", "2026-11-25", "hsv-bad");
    let (status, answer) = post_bundle(&csk, &app, &with_home_care(&order, json!("ja"))).await;
    assert_eq!(status, 422, "{answer}");
    let paths: Vec<&str> = answer["issue"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["expression"].as_array().unwrap().iter())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(paths, ["Bundle.entry[1].resource.extension[0]"]);
    assert!(
        search_all(&csk, &format!("{}/ServiceRequest", app.fhir))
            .await
            .is_empty()
    );
    // Sjöbo's kommun is not a navet principal: the order is planned, the orderer warned, nobody invited.
    let order = Order::antibiotics(SIGNE, 3, "2026-11-24", "2026-11-25", "hsv-sjobo");
    let (status, answer) = post_bundle(&csk, &app, &with_home_care(&order, json!(true))).await;
    assert_eq!(status, 200, "{answer}");
    let warning = answer["entry"][1]["response"]["outcome"].to_string();
    assert!(
        warning.contains("no kommun principal in navet for municipality 1265"),
        "{warning}"
    );
    let id = format!("{}-ckommun", order_id(&answer));
    assert!(readers_of(&app, &id).await.is_empty());
}
