//! OperationOutcome, built with fhir-sdk's typed model (FHIR R4 4.0.1 §2.36 OperationOutcome; R4B's model is
//! identical for it). Every error and informational answer of the FHIR API goes through here.

use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use fhir_sdk::r4b::codes::{IssueSeverity, IssueType};
use fhir_sdk::r4b::resources::{OperationOutcome as SdkOutcome, OperationOutcomeIssue};

use crate::fhir::FHIR_JSON;

/// The subset of the issue-type value set navet answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    Structure,
    Invalid,
    Required,
    Value,
    NotFound,
    Deleted,
    NotSupported,
    TooLong,
    Conflict,
    Duplicate,
    Login,
    Forbidden,
    Exception,
    Transient,
    Informational,
    Processing,
    /// A code outside a required value set (`$validate`, writes).
    CodeInvalid,
    /// A broken invariant.
    Invariant,
    /// A rule of navet's profiles (Swedish identifiers).
    BusinessRule,
}

impl IssueCode {
    fn sdk(self) -> IssueType {
        match self {
            IssueCode::Structure => IssueType::Structure,
            IssueCode::Invalid => IssueType::Invalid,
            IssueCode::Required => IssueType::Required,
            IssueCode::Value => IssueType::Value,
            IssueCode::NotFound => IssueType::NotFound,
            IssueCode::Deleted => IssueType::Deleted,
            IssueCode::NotSupported => IssueType::NotSupported,
            IssueCode::TooLong => IssueType::TooLong,
            IssueCode::Conflict => IssueType::Conflict,
            IssueCode::Duplicate => IssueType::Duplicate,
            IssueCode::Login => IssueType::Login,
            IssueCode::Forbidden => IssueType::Forbidden,
            IssueCode::Exception => IssueType::Exception,
            IssueCode::Transient => IssueType::Transient,
            IssueCode::Informational => IssueType::Informational,
            IssueCode::Processing => IssueType::Processing,
            IssueCode::CodeInvalid => IssueType::CodeInvalid,
            IssueCode::Invariant => IssueType::Invariant,
            IssueCode::BusinessRule => IssueType::BusinessRule,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Information,
}

/// One issue: severity, code, a human text and optionally the FHIRPath of the element concerned.
#[derive(Debug, Clone)]
pub struct Issue {
    severity: Severity,
    code: IssueCode,
    diagnostics: String,
    expression: Option<String>,
}

impl Issue {
    pub fn error(code: IssueCode, diagnostics: &str) -> Self {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.to_owned(),
            expression: None,
        }
    }

    pub fn warning(code: IssueCode, diagnostics: &str) -> Self {
        Issue {
            severity: Severity::Warning,
            ..Issue::error(code, diagnostics)
        }
    }

    pub fn information(diagnostics: &str) -> Self {
        Issue {
            severity: Severity::Information,
            ..Issue::error(IssueCode::Informational, diagnostics)
        }
    }

    /// The element this issue is about, as a FHIRPath expression (`Patient.identifier[0].value`).
    pub fn at(mut self, path: &str) -> Self {
        if !path.is_empty() {
            self.expression = Some(path.to_owned());
        }
        self
    }
}

#[derive(Debug, Clone)]
pub struct OperationOutcome {
    issues: Vec<Issue>,
}

impl OperationOutcome {
    pub fn new(issues: Vec<Issue>) -> Self {
        OperationOutcome { issues }
    }

    pub fn issues(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.issues
            .iter()
            .map(|i| (i.diagnostics.as_str(), i.expression.as_deref()))
    }

    /// The OperationOutcome as FHIR JSON, built through fhir-sdk's model so the shape is the standard's.
    pub fn to_json(&self) -> serde_json::Value {
        let issues = self
            .issues
            .iter()
            .filter_map(|i| {
                let severity = match i.severity {
                    Severity::Error => IssueSeverity::Error,
                    Severity::Warning => IssueSeverity::Warning,
                    Severity::Information => IssueSeverity::Information,
                };
                let builder = OperationOutcomeIssue::builder()
                    .severity(severity)
                    .code(i.code.sdk())
                    .diagnostics(i.diagnostics.clone());
                let builder = match &i.expression {
                    Some(path) => builder.expression(vec![Some(path.clone())]),
                    None => builder,
                };
                builder.build().ok().map(Some)
            })
            .collect();
        match SdkOutcome::builder().issue(issues).build() {
            Ok(outcome) => crate::fhir::typed::outcome_to_json(&outcome),
            // Unreachable with the fields above; still answer something valid rather than panic.
            Err(_) => serde_json::json!({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "exception"}]}),
        }
    }
}

impl IntoResponse for OperationOutcome {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_json()).unwrap_or_default();
        let mut response = body.into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        response
    }
}
