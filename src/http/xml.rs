//! FHIR XML on the FHIR API (FHIR R4 4.0.1 http.html#mime-type, xml.html): one layer around the FHIR routes.
//!
//! A request body sent as `application/fhir+xml` (or `application/xml`, `text/xml`) is turned into the FHIR
//! JSON the handlers take (`crate::fhir::xml`; a malformed one is a 400 OperationOutcome); an answer in FHIR
//! JSON is turned into XML when the client asks for it with `_format=xml` (or `application/fhir+xml`, ...)
//! or an `Accept` whose first FHIR type is XML. Everything inside (validation, storage, the access log)
//! sees only JSON, so both formats behave the same.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::http::negotiate::{is_xml_media, query_pairs, wants_xml};
use crate::state::AppState;

/// `Content-Type` of every FHIR XML answer.
pub const FHIR_XML: &str = "application/fhir+xml;charset=utf-8";

/// Answers bigger than this are not converted (they stay JSON, with a 406 in their place).
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

pub async fn negotiate_xml(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let format = query_pairs(request.uri().query())
        .into_iter()
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v);
    let xml_out = wants_xml(request.headers(), format.as_deref());
    let request = match xml_request(&state, request).await {
        Ok(request) => request,
        Err(e) => return answer(e.into_response(), &state, xml_out).await,
    };
    let response = next.run(request).await;
    answer(response, &state, xml_out).await
}

/// The request with an XML body replaced by its JSON form.
async fn xml_request(state: &AppState, request: Request) -> Result<Request, ApiError> {
    if !is_xml_media(request.headers()) {
        return Ok(request);
    }
    let (mut parts, body) = request.into_parts();
    let bytes = crate::http::negotiate::read_limited(body, state.max_body_bytes).await?;
    let json = crate::fhir::xml::xml_to_json(&state.fhir.structure, &bytes)
        .map_err(|e| ApiError::BadRequest(format!("the FHIR XML body cannot be read: {e}")))?;
    set_type(&mut parts.headers, crate::fhir::FHIR_JSON);
    parts.headers.remove(CONTENT_LENGTH);
    Ok(Request::from_parts(parts, Body::from(json)))
}

fn set_type(headers: &mut HeaderMap, media: &'static str) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media));
}

/// The answer, converted to XML when the client asked for it and it is FHIR JSON.
async fn answer(response: Response, state: &AppState, xml_out: bool) -> Response {
    let is_fhir_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/fhir+json"));
    if !xml_out || !is_fhir_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await else {
        return ApiError::NotAcceptable(
            "the answer is too big to be converted to FHIR XML; ask for _format=json".into(),
        )
        .into_response();
    };
    let text = String::from_utf8_lossy(&bytes);
    match crate::fhir::xml::json_to_xml(&state.fhir.structure, &text) {
        Ok(xml) => {
            set_type(&mut parts.headers, FHIR_XML);
            parts.headers.remove(CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(xml))
        }
        Err(e) => {
            // Stored data XML cannot carry (e.g. a control character in a string): the JSON form is exact.
            tracing::debug!(error = %e, "answer not convertible to XML");
            ApiError::NotAcceptable(format!(
                "this answer cannot be represented in FHIR XML ({e}); ask for _format=json"
            ))
            .into_response()
        }
    }
}
