//! Building FHIR responses: single resources with their headers, and Bundles assembled around stored JSON
//! text (stored resources are inserted as written, never re-serialised, so nothing is lost on the way out).

use axum::http::header::{CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::{Issue, OperationOutcome};
use crate::fhir::protected::{Outgoing, outgoing};
use crate::http::negotiate::Return;
use crate::store::{Actor, StoredVersion};

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// RFC 9110 HTTP-date from a FHIR instant.
pub fn http_date(instant: &str) -> Option<String> {
    let ts: jiff::Timestamp = instant.parse().ok()?;
    Some(ts.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string())
}

pub fn version_headers(v: &StoredVersion) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&etag(v.version)) {
        h.insert(ETAG, value);
    }
    if let Some(date) = http_date(&v.last_updated)
        && let Ok(value) = HeaderValue::from_str(&date)
    {
        h.insert(LAST_MODIFIED, value);
    }
    h
}

pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

/// The answer to a read or write of one resource for `actor`, honouring `Prefer: return=`. The body is what
/// `actor` may see of the version ([`crate::fhir::protected::outgoing`]).
pub fn resource(
    actor: &Actor,
    status: StatusCode,
    v: &StoredVersion,
    ret: Return,
    location: Option<String>,
) -> Response {
    let mut response = match ret {
        Return::Minimal => status.into_response(),
        Return::OperationOutcome => {
            let text = format!(
                "{} {}/{} version {}",
                status.as_str(),
                v.resource_type,
                v.id,
                v.version
            );
            let mut r = OperationOutcome::new(vec![Issue::information(&text)]).into_response();
            *r.status_mut() = status;
            r
        }
        Return::Representation => match outgoing(actor, v) {
            Some(json) => json_response(status, json.as_str().to_owned()),
            None => status.into_response(),
        },
    };
    response.headers_mut().extend(version_headers(v));
    if let Some(loc) = location
        && let Ok(value) = HeaderValue::from_str(&loc)
    {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The answer to a read by id: [`resource`] with `Return::Representation`, its body the stored text taken out
/// of `v` ([`crate::fhir::protected::take_outgoing`]: no copy when nothing is withheld).
pub fn read_answer(actor: &Actor, v: &mut StoredVersion) -> Response {
    let mut response = match crate::fhir::protected::take_outgoing(actor, v) {
        Some(json) => json_response(StatusCode::OK, json.into_string()),
        None => StatusCode::OK.into_response(),
    };
    response.headers_mut().extend(version_headers(v));
    response
}

/// A paging link: `base` with the client's parameters (less any `_cursor`) and, for another page, its cursor.
pub fn page_url(base: &str, pairs: &[(String, String)], cursor: Option<&str>) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(k, _)| k != "_cursor") {
        ser.append_pair(k, v);
    }
    if let Some(c) = cursor {
        ser.append_pair("_cursor", c);
    }
    let q = ser.finish();
    if q.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{q}")
    }
}

/// A Bundle written as text: navet's own members serialised, stored resources spliced in verbatim.
pub struct BundleText {
    out: String,
    entries: usize,
}

pub struct Link<'a> {
    pub relation: &'a str,
    pub url: String,
}

impl BundleText {
    pub fn new(kind: &str, total: Option<u64>, links: &[Link<'_>]) -> Self {
        let mut out = String::with_capacity(4096);
        out.push_str("{\"resourceType\":\"Bundle\",\"id\":\"");
        out.push_str(&uuid::Uuid::new_v4().to_string());
        out.push_str("\",\"meta\":{\"lastUpdated\":");
        out.push_str(&json(&crate::store::sqlite::format_instant(
            jiff::Timestamp::now().as_millisecond(),
        )));
        out.push_str("},\"type\":");
        out.push_str(&json(kind));
        if let Some(total) = total {
            out.push_str(",\"total\":");
            out.push_str(&total.to_string());
        }
        if !links.is_empty() {
            out.push_str(",\"link\":[");
            for (i, l) in links.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(
                    &serde_json::json!({"relation": l.relation, "url": l.url}).to_string(),
                );
            }
            out.push(']');
        }
        out.push_str(",\"entry\":[");
        BundleText { out, entries: 0 }
    }

    /// One entry. `resource` comes from [`outgoing`] (what the caller may see) or is navet's own;
    /// `members` are the entry's other members (search, request, response) as JSON values.
    pub fn entry(
        &mut self,
        full_url: Option<&str>,
        resource: Option<&Outgoing<'_>>,
        members: &[(&str, serde_json::Value)],
    ) {
        if self.entries > 0 {
            self.out.push(',');
        }
        self.entries += 1;
        self.out.push('{');
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !first {
                out.push(',');
            }
            first = false;
        };
        if let Some(url) = full_url {
            sep(&mut self.out);
            self.out.push_str("\"fullUrl\":");
            self.out.push_str(&json(url));
        }
        if let Some(resource) = resource {
            sep(&mut self.out);
            self.out.push_str("\"resource\":");
            self.out.push_str(resource.as_str());
        }
        for (name, value) in members {
            sep(&mut self.out);
            self.out.push_str(&json(name));
            self.out.push(':');
            self.out.push_str(&value.to_string());
        }
        self.out.push('}');
    }

    pub fn finish(mut self) -> String {
        if self.entries == 0 {
            // FHIR JSON forbids empty arrays (§2.6.2): drop `"entry":[` again.
            let cut = self.out.len() - ",\"entry\":[".len();
            self.out.truncate(cut);
            self.out.push('}');
        } else {
            self.out.push_str("]}");
        }
        self.out
    }
}

fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_bundle_has_no_entry_array_and_is_valid_json() {
        let b = BundleText::new("searchset", Some(0), &[]).finish();
        let v: serde_json::Value = serde_json::from_str(&b).expect("valid JSON");
        assert_eq!(v["total"], 0);
        assert!(v.get("entry").is_none());
    }

    #[test]
    fn stored_text_is_spliced_in_verbatim() {
        let mut b = BundleText::new("searchset", None, &[]);
        let stored = StoredVersion {
            resource_type: "Observation".into(),
            id: "1".into(),
            version: 1,
            last_updated: "2026-12-01T00:00:00.000Z".into(),
            owner: "SE1".into(),
            deleted: false,
            json: Some(r#"{"resourceType":"Observation","v":1.50}"#.into()),
            protected: false,
        };
        let actor = Actor::system();
        b.entry(
            Some("http://x/fhir/Observation/1"),
            outgoing(&actor, &stored).as_ref(),
            &[],
        );
        let text = b.finish();
        assert!(text.contains(r#""v":1.50"#));
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["entry"][0]["fullUrl"], "http://x/fhir/Observation/1");
    }
}
