//! Sharing (issue 4): another principal's clinical records are visible to participants only, and the filter
//! runs inside the query: no read, search, total, `_include`, history or transaction shows a hidden resource.

mod common;

use common::*;
use serde_json::json;

const HSA: &str = "urn:oid:1.2.752.29.4.19";
const VC_NASBY: &str = "demo-vc-nasby";
const VC_NASBY_USER: &str = "SE2321000255-P0301";
const KOMMUN: &str = "demo-kommun-kristianstad";
const KOMMUN_USER: &str = "SE2120000999-P1290A";

struct World {
    app: TestApp,
    patient: String,
    /// Owned by the mobile team, addressed to Vårdcentralen Näsby.
    addressed: String,
    /// Owned by the mobile team, naming no one else.
    private: String,
    /// A Task based on `addressed`: inherits its participants.
    child: String,
}

async fn world() -> World {
    let app = spawn_app_with_demo().await;
    let patient = app.create(&patient("19360617-2488", "Persson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sr = |performer: Option<&str>| {
        let mut v = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                           "subject": {"reference": format!("Patient/{patient}")}});
        if let Some(p) = performer {
            v["performer"] = json!([{"identifier": {"system": HSA, "value": p}}]);
        }
        v
    };
    let addressed = app.create(&sr(Some("SE2321000255-VC101"))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let private = app.create(&sr(None)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let child = app
        .create(
            &json!({"resourceType": "Task", "status": "requested", "intent": "order",
                         "basedOn": [{"reference": format!("ServiceRequest/{addressed}")}],
                         "for": {"reference": format!("Patient/{patient}")}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    World {
        app,
        patient,
        addressed,
        private,
        child,
    }
}

#[tokio::test]
async fn a_participant_reads_what_is_addressed_to_it_and_what_belongs_to_it_but_nothing_else() {
    let w = world().await;
    let vc = w
        .app
        .client_as(VC_NASBY, Some(VC_NASBY_USER), "system/*.cruds")
        .await;
    let get = |path: String| {
        let vc = vc.clone();
        async move { vc.get(path).send().await.unwrap() }
    };
    let fhir = &w.app.fhir;
    assert_eq!(
        get(format!("{fhir}/ServiceRequest/{}", w.addressed))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(format!("{fhir}/Task/{}", w.child)).await.status(),
        200,
        "belongs to the referral"
    );
    let hidden = get(format!("{fhir}/ServiceRequest/{}", w.private)).await;
    assert_eq!(hidden.status(), 404, "hidden reads as absent");
    let text = hidden.text().await.unwrap();
    assert!(
        !text.contains("owned") && !text.contains("SE2321000255-MTN01"),
        "{text}"
    );
    assert_eq!(
        get(format!("{fhir}/ServiceRequest/{}/_history/1", w.private))
            .await
            .status(),
        404
    );
    assert_eq!(
        get(format!("{fhir}/ServiceRequest/{}/_history", w.private))
            .await
            .status(),
        404
    );
    // The patient is shared master data.
    assert_eq!(
        get(format!("{fhir}/Patient/{}", w.patient)).await.status(),
        200
    );

    let search = json(
        get(format!(
            "{fhir}/ServiceRequest?patient={}&_total=accurate",
            w.patient
        ))
        .await,
    )
    .await;
    assert_eq!(
        entry_ids(&search),
        std::collections::BTreeSet::from([format!("ServiceRequest/{}", w.addressed)])
    );
    assert_eq!(
        search["total"], 1,
        "the total does not count the hidden one"
    );
    let history = json(get(format!("{fhir}/ServiceRequest/_history")).await).await;
    assert_eq!(
        entry_ids(&history),
        std::collections::BTreeSet::from([format!("ServiceRequest/{}", w.addressed)])
    );
    // _include of a hidden target leaves it out.
    let included = json(
        get(format!(
            "{fhir}/Task?_id={}&_include=Task:based-on",
            w.child
        ))
        .await,
    )
    .await;
    assert!(entry_ids(&included).contains(&format!("ServiceRequest/{}", w.addressed)));
}

#[tokio::test]
async fn an_outsider_sees_none_of_it_anywhere() {
    let w = world().await;
    let kommun = w
        .app
        .client_as(KOMMUN, Some(KOMMUN_USER), "system/*.cruds")
        .await;
    let fhir = &w.app.fhir;
    for path in [
        format!("ServiceRequest/{}", w.addressed),
        format!("ServiceRequest/{}", w.private),
        format!("Task/{}", w.child),
    ] {
        assert_eq!(
            kommun
                .get(format!("{fhir}/{path}"))
                .send()
                .await
                .unwrap()
                .status(),
            404,
            "{path}"
        );
    }
    let search = json(
        kommun
            .get(format!(
                "{fhir}/ServiceRequest?patient={}&_total=accurate",
                w.patient
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(search["total"], 0);
    assert!(entry_ids(&search).is_empty());
    let history = json(kommun.get(format!("{fhir}/_history")).send().await.unwrap()).await;
    assert!(
        entry_ids(&history)
            .iter()
            .all(|i| !i.starts_with("ServiceRequest/") && !i.starts_with("Task/")),
        "{:?}",
        entry_ids(&history)
    );
    // Writing to a hidden resource reads as writing to nothing; nothing changes.
    let r = kommun
        .delete(format!("{fhir}/ServiceRequest/{}", w.private))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("ServiceRequest/{}", w.private)}}
    ]});
    let r = json(
        kommun
            .post(fhir)
            .header("content-type", FHIR_JSON)
            .body(bundle.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r["entry"][0]["response"]["status"], "404 Not Found", "{r}");
    let still = json(w.app.get(&format!("ServiceRequest/{}", w.private)).await).await;
    assert_eq!(still["meta"]["versionId"], "1");
}

#[tokio::test]
async fn a_protected_identity_shows_address_and_telecom_only_to_the_principal_that_entered_it() {
    let app = spawn_app().await;
    let mut body = patient("19121212-1212", "Tolvansson");
    body["meta"] = json!({"security": [{"system": "http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel",
                                        "code": "skyddadFolkbokforing"}]});
    body["address"] = json!([{"line": ["Hemliga vägen 1"], "city": "Kristianstad"}]);
    body["telecom"] = json!([{"system": "phone", "value": "0701234567"}]);
    let created = app.create(&body).await;
    let id = created["id"].as_str().unwrap();
    let own = app
        .get(&format!("Patient/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        own.contains("Hemliga") && own.contains("0701234567"),
        "the entering principal sees it"
    );

    let vc = app
        .client_as(VC_NASBY, Some(VC_NASBY_USER), "system/*.cruds")
        .await;
    for path in [
        format!("Patient/{id}"),
        format!("Patient/{id}/_history/1"),
        format!("Patient?_id={id}"),
        format!("Patient/{id}/_history"),
    ] {
        let text = vc
            .get(format!("{}/{path}", app.fhir))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("Tolvansson"), "{path}: {text}");
        assert!(
            !text.contains("Hemliga") && !text.contains("0701234567"),
            "{path} leaks: {text}"
        );
    }
    // No search by address or phone points at the patient, for anyone.
    for q in [
        "Patient?address-city=Kristianstad&_total=accurate",
        "Patient?phone=0701234567&_total=accurate",
    ] {
        let found = json(vc.get(format!("{}/{q}", app.fhir)).send().await.unwrap()).await;
        assert_eq!(found["total"], 0, "{q}");
    }
}
