//! Content negotiation and request headers of the FHIR API (FHIR R4 4.0.1 §3.1.0.1 and http.html#prefer).

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};

use crate::error::ApiError;
use crate::http::body::BoundedBody;
use crate::state::AppState;

/// Media types and `_format` values of FHIR XML (http.html#mime-type); `crate::http::xml` converts.
const XML_MEDIA: [&str; 5] = [
    "xml",
    "application/fhir+xml",
    "application/xml",
    "text/xml",
    "application/xml+fhir",
];

fn media_types(value: &str) -> impl Iterator<Item = String> + '_ {
    value.split(',').map(|part| {
        part.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

/// Whether the answer should be FHIR XML: `_format` says so, or the first FHIR media type of `Accept` is XML.
pub fn wants_xml(headers: &HeaderMap, format: Option<&str>) -> bool {
    if let Some(f) = format {
        return XML_MEDIA.contains(&f.trim().to_ascii_lowercase().as_str());
    }
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    media_types(accept)
        .find(|m| m.contains("json") || m.contains("xml"))
        .is_some_and(|m| XML_MEDIA.contains(&m.as_str()))
}

/// Whether the request body is FHIR XML (`Content-Type`).
pub fn is_xml_media(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| media_types(v).next())
        .is_some_and(|m| m != "xml" && XML_MEDIA.contains(&m.as_str()))
}

/// Checks that the client accepts FHIR JSON or FHIR XML (`Accept` or `_format`); anything else is a 406.
pub fn check_accept(headers: &HeaderMap, format: Option<&str>) -> Result<(), ApiError> {
    if let Some(f) = format {
        return match f {
            "json" | "application/json" | "application/fhir+json" => Ok(()),
            f if XML_MEDIA.contains(&f) => Ok(()),
            other => Err(ApiError::NotAcceptable(format!(
                "unsupported _format '{other}'"
            ))),
        };
    }
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let acceptable = accept.split(',').any(|part| {
        let media = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(
            media.as_str(),
            "" | "*/*"
                | "application/*"
                | "application/json"
                | "application/fhir+json"
                | "application/json+fhir"
        ) || XML_MEDIA.contains(&media.as_str())
    });
    if acceptable {
        Ok(())
    } else {
        Err(ApiError::NotAcceptable(format!(
            "cannot answer in '{accept}': navet serves application/fhir+json and application/fhir+xml"
        )))
    }
}

/// A request body that must be FHIR JSON, read up to the body limit; a big one waits for a permit
/// ([`crate::http::body`]), which it holds as long as the returned body (or its permit) is kept.
pub async fn json_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<BoundedBody, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/fhir+json" | "application/json" | "application/json+fhir" => {}
        "" => {
            return Err(ApiError::UnsupportedMediaType(
                "the request has no Content-Type; send application/fhir+json".into(),
            ));
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type '{other}' is not supported; send application/fhir+json"
            )));
        }
    }
    state
        .bounds
        .big_bodies
        .read(headers, body, state.max_body_bytes)
        .await
}

pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // to_bytes reports a LengthLimitError when the limit is passed; anything else is a broken upload.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge(limit);
            }
            source = err.source();
        }
        ApiError::BadRequest(format!("could not read the request body: {e}"))
    })
}

/// `Prefer: return=…` (FHIR R4 http.html#prefer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Prefer {
    pub ret: Return,
    /// `handling=lenient`: unknown search parameters are ignored (and reported) instead of refused.
    pub lenient: bool,
}

impl Prefer {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut prefer = Prefer::default();
        for value in headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for token in value.split([',', ';']).map(str::trim) {
                match token {
                    "return=minimal" => prefer.ret = Return::Minimal,
                    "return=representation" => prefer.ret = Return::Representation,
                    "return=OperationOutcome" => prefer.ret = Return::OperationOutcome,
                    "handling=lenient" => prefer.lenient = true,
                    "handling=strict" => prefer.lenient = false,
                    _ => {}
                }
            }
        }
        prefer
    }
}

/// The query string as decoded pairs, in order.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn fhir_json_xml_and_wildcards_are_acceptable_and_others_are_not() {
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/fhir+json;q=0.9, */*;q=0.1"),
        );
        assert!(check_accept(&h, None).is_ok());
        assert!(!wants_xml(&h, None));
        h.insert(ACCEPT, HeaderValue::from_static("application/fhir+xml"));
        assert!(check_accept(&h, None).is_ok());
        assert!(wants_xml(&h, None));
        assert!(!wants_xml(&h, Some("json")));
        assert!(wants_xml(&HeaderMap::new(), Some("xml")));
        h.insert(ACCEPT, HeaderValue::from_static("text/html"));
        assert!(matches!(
            check_accept(&h, None),
            Err(ApiError::NotAcceptable(_))
        ));
        assert!(check_accept(&h, Some("json")).is_ok());
    }

    #[test]
    fn prefer_reads_return_and_handling() {
        let mut h = HeaderMap::new();
        h.insert(
            "prefer",
            HeaderValue::from_static("return=minimal, handling=lenient"),
        );
        let p = Prefer::from_headers(&h);
        assert_eq!(p.ret, Return::Minimal);
        assert!(p.lenient);
    }
}
