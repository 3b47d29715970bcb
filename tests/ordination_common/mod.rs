//! Orders as a hospital sends them, and the app with a simulated itACiH (tests/ordination.rs, itacih.rs).
#![allow(dead_code)]

use serde_json::{Value, json};

use crate::common::{self, TestApp};

pub const CSK: &str = "demo-csk";
pub const CSK_DOCTOR: &str = "SE2321000255-P0001";
pub const TOLVAN: &str = "191212121212";
pub const KARL: &str = "193803032451";
pub const PNR: &str = "http://electronichealth.se/identifier/personnummer";
pub const CATEGORY: &str = "http://navet.example/CodeSystem/ordination-category";
pub const INTERVENTION: &str = "http://navet.example/CodeSystem/intervention";
pub const ORDER_SYSTEM: &str = "http://csk.example/identifier/ordination";
pub const HSA: &str = "urn:oid:1.2.752.29.4.19";

/// An order in the shape spec/ordination.md describes.
#[derive(Clone)]
pub struct Order {
    pub patient: String,
    pub code: String,
    pub category: String,
    pub status: String,
    pub per_day: Option<u64>,
    pub start: String,
    pub end: String,
    pub identifier: String,
    pub performer: Option<String>,
    pub units: Option<u64>,
    pub base_test: bool,
}

impl Order {
    pub fn antibiotics(
        patient: &str,
        per_day: u64,
        start: &str,
        end: &str,
        identifier: &str,
    ) -> Self {
        Order {
            patient: patient.into(),
            code: "iv-antibiotika".into(),
            category: "punktinsats".into(),
            status: "active".into(),
            per_day: Some(per_day),
            start: start.into(),
            end: end.into(),
            identifier: identifier.into(),
            performer: None,
            units: None,
            base_test: false,
        }
    }

    pub fn medication_request(&self) -> Value {
        let mut repeat = json!({"period": 1, "periodUnit": "d",
                                "boundsPeriod": {"start": self.start, "end": self.end}});
        if let Some(n) = self.per_day {
            repeat["frequency"] = json!(n);
        }
        json!({
            "resourceType": "MedicationRequest",
            "identifier": [{"system": ORDER_SYSTEM, "value": format!("{}-mr", self.identifier)}],
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "Piperacillin/Tazobactam"},
            "subject": {"reference": format!("Patient?identifier={PNR}|{}", self.patient)},
            "requester": {"identifier": {"system": HSA, "value": CSK_DOCTOR}},
            "dosageInstruction": [{
                "timing": {"repeat": repeat},
                "route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
                "doseAndRate": [{"doseQuantity": {"value": 4, "unit": "g"}}]
            }]
        })
    }

    pub fn service_request(&self, mr_url: Option<&str>) -> Value {
        let mut sr = json!({
            "resourceType": "ServiceRequest",
            "identifier": [{"system": ORDER_SYSTEM, "value": self.identifier}],
            "status": self.status,
            "intent": "order",
            "category": [{"coding": [{"system": CATEGORY, "code": self.category}]}],
            "code": {"coding": [{"system": INTERVENTION, "code": self.code}]},
            "subject": {"reference": format!("Patient?identifier={PNR}|{}", self.patient)},
            "requester": {"identifier": {"system": HSA, "value": CSK_DOCTOR}},
            "occurrencePeriod": {"start": self.start, "end": self.end},
            "reasonCode": [{"coding": [{"system": "http://navet.example/CodeSystem/reason", "code": "infektion-feber"}]}]
        });
        if let Some(url) = mr_url {
            sr["supportingInfo"] = json!([{"reference": url}]);
        }
        if let Some(p) = &self.performer {
            sr["performer"] = json!([{"identifier": {"system": HSA, "value": p}}]);
        }
        if let Some(u) = self.units {
            sr["quantityQuantity"] = json!({"value": u});
        }
        if self.base_test {
            sr["orderDetail"] = json!([{"coding": [{"system": INTERVENTION, "code": "bas-test"}]}]);
        }
        sr
    }

    /// The transaction: MedicationRequest (for a drug) and ServiceRequest.
    pub fn bundle(&self) -> Value {
        let mut entries = Vec::new();
        let drug = self.per_day.is_some() || self.code.starts_with("iv-");
        if drug {
            entries.push(json!({
                "fullUrl": "urn:uuid:2b1f6a52-0c1e-4a57-9e38-6f3e1c9d0a01",
                "resource": self.medication_request(),
                "request": {"method": "POST", "url": "MedicationRequest"}
            }));
        }
        entries.push(json!({
            "fullUrl": "urn:uuid:2b1f6a52-0c1e-4a57-9e38-6f3e1c9d0a02",
            "resource": self.service_request(drug.then_some("urn:uuid:2b1f6a52-0c1e-4a57-9e38-6f3e1c9d0a01")),
            "request": {"method": "POST", "url": "ServiceRequest"}
        }));
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    }
}

/// The CSK physician's client.
pub async fn hospital(app: &TestApp) -> reqwest::Client {
    app.client_as(CSK, Some(CSK_DOCTOR), "system/*.cruds").await
}

pub async fn post_bundle(client: &reqwest::Client, app: &TestApp, bundle: &Value) -> (u16, Value) {
    let r = client
        .post(&app.fhir)
        .header("content-type", common::FHIR_JSON)
        .body(bundle.to_string())
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every resource of a search, following next links.
pub async fn search_all(client: &reqwest::Client, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next = Some(url.to_owned());
    while let Some(u) = next {
        let b: Value = client
            .get(&u)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(b["resourceType"], "Bundle", "{b}");
        for e in b["entry"].as_array().into_iter().flatten() {
            if e["search"]["mode"] == "match" {
                out.push(e["resource"].clone());
            }
        }
        next = common::next_link(&b);
    }
    out
}

/// The ids of the resources, sorted.
pub fn ids(resources: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = resources
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_owned())
        .collect();
    v.sort();
    v
}

/// The ServiceRequest id a transaction answer created (its last entry).
pub fn order_id(answer: &Value) -> String {
    let entries = answer["entry"].as_array().expect("entries");
    let loc = entries.last().unwrap()["response"]["location"]
        .as_str()
        .expect("location");
    loc.split('/').nth(1).unwrap().to_owned()
}
