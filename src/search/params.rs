//! The search-parameter table: which parameters each served resource type
//! supports, of which type, over which element paths.
//!
//! The table is `conformance/search-parameters.json`, generated from the FHIR
//! R4 4.0.1 definitions by `conformance/tools/extract_search_params.py` and
//! embedded at compile time, because a deployed server has no copy of the
//! definitions. It is parsed once at start-up with [`SearchParams::embedded`]
//! and shared through the application state.
//!
//! Paths are dotted element names relative to the resource (`name.family`,
//! `occurrencePeriod`); every step traverses arrays. A step may carry a filter
//! `telecom[system=email]` that keeps only the array items whose `system`
//! equals `email` (from FHIRPath `.where(system='email')`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// The embedded table (see the module docs for how it is produced).
const EMBEDDED_TABLE: &str = include_str!("../../conformance/search-parameters.json");

/// The FHIR search parameter types navet supports (FHIR R4 4.0.1 search.html,
/// "Search Parameter Types"; only `special` is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Token,
    String,
    Reference,
    Date,
    Uri,
    Number,
    Quantity,
    /// Two parts, the first a token (`code$value`), read from the same element ([`SearchParam::components`]).
    Composite,
}

impl ParamType {
    /// The FHIR code, as used in a CapabilityStatement `searchParam.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Token => "token",
            ParamType::String => "string",
            ParamType::Reference => "reference",
            ParamType::Date => "date",
            ParamType::Uri => "uri",
            ParamType::Number => "number",
            ParamType::Quantity => "quantity",
            ParamType::Composite => "composite",
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of an [`ElementPath`]: an element name, optionally keeping only the
/// array items whose `field` equals `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStep {
    pub name: String,
    pub filter: Option<(String, String)>,
}

/// A simple element path such as `name.family` or `telecom[system=email]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementPath {
    steps: Vec<PathStep>,
}

impl ElementPath {
    /// Parses the table's path syntax; `None` when it is malformed. The empty text is the resource itself
    /// (the base of a composite such as Observation's `code-value-quantity`).
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() {
            return Some(Self { steps: Vec::new() });
        }
        let steps = text
            .split('.')
            .map(parse_step)
            .collect::<Option<Vec<PathStep>>>()?;
        (!steps.is_empty()).then_some(Self { steps })
    }

    pub fn steps(&self) -> &[PathStep] {
        &self.steps
    }
}

fn parse_step(text: &str) -> Option<PathStep> {
    let (name, filter) = match text.split_once('[') {
        None => (text, None),
        Some((name, rest)) => {
            let inner = rest.strip_suffix(']')?;
            let (field, value) = inner.split_once('=')?;
            if !is_element_name(field) {
                return None;
            }
            (name, Some((field.to_owned(), value.to_owned())))
        }
    };
    is_element_name(name).then(|| PathStep {
        name: name.to_owned(),
        filter,
    })
}

fn is_element_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric())
}

impl fmt::Display for ElementPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&step.name)?;
            if let Some((field, value)) = &step.filter {
                write!(f, "[{field}={value}]")?;
            }
        }
        Ok(())
    }
}

/// One search parameter of one resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchParam {
    /// The code used in queries, e.g. `patient`, `_lastUpdated`.
    pub code: String,
    pub kind: ParamType,
    pub paths: Vec<ElementPath>,
    /// Resource types a reference parameter may point to; empty = any type
    /// (always empty for other parameter types).
    pub targets: Vec<String>,
    /// Canonical URL of the SearchParameter definition (for the
    /// CapabilityStatement `searchParam.definition`).
    pub url: String,
    pub description: String,
    /// A composite's two parts, each read relative to an item at [`SearchParam::paths`] (empty otherwise).
    pub components: Vec<Component>,
}

/// One part of a composite parameter: its type and its paths relative to the composite's base item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub kind: ParamType,
    pub paths: Vec<ElementPath>,
}

impl SearchParam {
    /// Whether a reference to `resource_type` may be indexed for or searched
    /// with this parameter.
    pub fn accepts_target(&self, resource_type: &str) -> bool {
        self.targets.is_empty() || self.targets.iter().any(|t| t == resource_type)
    }

    /// `_id` and `_lastUpdated` are answered from the resource columns, not
    /// from index rows (FHIR R4 4.0.1 search.html#all).
    pub fn is_column_backed(&self) -> bool {
        is_column_backed(&self.code)
    }
}

/// Whether `code` is answered from the resource table's columns.
pub fn is_column_backed(code: &str) -> bool {
    code == "_id" || code == "_lastUpdated"
}

/// Why the parameter table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error("search parameter table is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("search parameter {resource_type}.{code}: malformed path {path:?}")]
    BadPath {
        resource_type: String,
        code: String,
        path: String,
    },
    #[error(
        "search parameter {resource_type}.{code}: a composite has two components, the first a token (and only a composite has them)"
    )]
    BadComposite { resource_type: String, code: String },
    #[error("search parameter {resource_type}.{code}: no paths")]
    NoPaths { resource_type: String, code: String },
    #[error(
        "patient compartment of {resource_type} names {code}, which is not a reference parameter of the table"
    )]
    BadCompartmentParam { resource_type: String, code: String },
}

#[derive(Deserialize)]
struct RawTable {
    #[serde(rename = "_patientCompartment", default)]
    patient_compartment: BTreeMap<String, Vec<String>>,
    /// The compartment's element paths for the R4 types navet does not serve for search.
    #[serde(rename = "_patientCompartmentPaths", default)]
    compartment_paths: BTreeMap<String, Vec<String>>,
    #[serde(flatten)]
    types: BTreeMap<String, BTreeMap<String, RawParam>>,
}

#[derive(Deserialize)]
struct RawParam {
    #[serde(rename = "type")]
    kind: ParamType,
    paths: Vec<String>,
    #[serde(default)]
    targets: Vec<String>,
    url: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    components: Vec<RawComponent>,
}

#[derive(Deserialize)]
struct RawComponent {
    #[serde(rename = "type")]
    kind: ParamType,
    paths: Vec<String>,
}

/// The search parameters of every served resource type.
#[derive(Debug, Clone)]
pub struct SearchParams {
    by_type: BTreeMap<String, BTreeMap<String, SearchParam>>,
    patient_compartment: BTreeMap<String, Vec<String>>,
    compartment_paths: BTreeMap<String, Vec<ElementPath>>,
    /// What `_summary` and `_elements` keep of each type ([`crate::search::summary`]).
    pub summary: super::summary::SummaryTable,
}

impl SearchParams {
    /// The table embedded in the binary. Called once at start-up.
    pub fn embedded() -> Self {
        let mut params = Self::from_json(EMBEDDED_TABLE)
            .expect("the embedded conformance/search-parameters.json is valid (checked by tests)");
        params.summary = super::summary::SummaryTable::embedded();
        params
    }

    /// Parses a table in the format written by the extractor.
    pub fn from_json(text: &str) -> Result<Self, ParamsError> {
        let raw: RawTable = serde_json::from_str(text)?;
        let mut by_type = BTreeMap::new();
        for (resource_type, raw_params) in raw.types {
            let mut params = BTreeMap::new();
            for (code, raw_param) in raw_params {
                let param = build_param(&resource_type, code, raw_param)?;
                params.insert(param.code.clone(), param);
            }
            by_type.insert(resource_type, params);
        }
        for (resource_type, codes) in &raw.patient_compartment {
            for code in codes {
                let is_reference = by_type
                    .get(resource_type)
                    .and_then(|params: &BTreeMap<String, SearchParam>| params.get(code))
                    .is_some_and(|p| p.kind == ParamType::Reference);
                if !is_reference {
                    return Err(ParamsError::BadCompartmentParam {
                        resource_type: resource_type.clone(),
                        code: code.clone(),
                    });
                }
            }
        }
        let mut compartment_paths = BTreeMap::new();
        for (resource_type, texts) in raw.compartment_paths {
            let mut paths = Vec::with_capacity(texts.len());
            for text in texts {
                let Some(path) = ElementPath::parse(&text) else {
                    return Err(ParamsError::BadPath {
                        resource_type: resource_type.clone(),
                        code: "_patientCompartmentPaths".into(),
                        path: text,
                    });
                };
                paths.push(path);
            }
            compartment_paths.insert(resource_type, paths);
        }
        Ok(Self {
            by_type,
            patient_compartment: raw.patient_compartment,
            compartment_paths,
            summary: Default::default(),
        })
    }

    /// The parameter `code` of `resource_type`, if navet supports it.
    pub fn param(&self, resource_type: &str, code: &str) -> Option<&SearchParam> {
        self.by_type.get(resource_type)?.get(code)
    }

    /// All parameters of `resource_type`, ordered by code (for the
    /// CapabilityStatement). Empty for a type navet does not serve.
    pub fn params_for(&self, resource_type: &str) -> impl Iterator<Item = &SearchParam> {
        self.by_type
            .get(resource_type)
            .into_iter()
            .flat_map(|params| params.values())
    }

    /// The resource types the table covers, in alphabetical order.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// The reference parameters that put a `resource_type` resource into a
    /// patient's compartment (FHIR R4 4.0.1 CompartmentDefinition `patient`).
    /// For `Patient` this is `link`; the patient's own id is the caller's.
    /// The element paths that put a resource of a type navet does not serve
    /// for search into a patient's compartment (FHIR R4 4.0.1 CompartmentDefinition
    /// `patient`, resolved by the extractor like the served types' paths).
    pub fn patient_compartment_paths(&self, resource_type: &str) -> &[ElementPath] {
        self.compartment_paths
            .get(resource_type)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The reference parameters that put a `resource_type` resource into a
    /// patient's compartment, for the types navet serves for search (the other
    /// R4 types have [`Self::patient_compartment_paths`]).
    pub fn patient_compartment_params(&self, resource_type: &str) -> &[String] {
        self.patient_compartment
            .get(resource_type)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

fn build_param(
    resource_type: &str,
    code: String,
    raw: RawParam,
) -> Result<SearchParam, ParamsError> {
    if raw.paths.is_empty() {
        return Err(ParamsError::NoPaths {
            resource_type: resource_type.to_owned(),
            code,
        });
    }
    let paths = parse_paths(resource_type, &code, &raw.paths)?;
    let mut components = Vec::with_capacity(raw.components.len());
    for c in &raw.components {
        components.push(Component {
            kind: c.kind,
            paths: parse_paths(resource_type, &code, &c.paths)?,
        });
    }
    let composite_ok = components.len() == 2 && components[0].kind == ParamType::Token;
    if (raw.kind == ParamType::Composite) != composite_ok {
        return Err(ParamsError::BadComposite {
            resource_type: resource_type.to_owned(),
            code,
        });
    }
    Ok(SearchParam {
        code,
        kind: raw.kind,
        paths,
        targets: raw.targets,
        url: raw.url,
        description: raw.description,
        components,
    })
}

fn parse_paths(
    resource_type: &str,
    code: &str,
    texts: &[String],
) -> Result<Vec<ElementPath>, ParamsError> {
    let mut paths = Vec::with_capacity(texts.len());
    for text in texts {
        let Some(path) = ElementPath::parse(text) else {
            return Err(ParamsError::BadPath {
                resource_type: resource_type.to_owned(),
                code: code.to_owned(),
                path: text.clone(),
            });
        };
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVED: [&str; 18] = [
        "Patient",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "HealthcareService",
        "Location",
        "ServiceRequest",
        "MedicationRequest",
        "MedicationAdministration",
        "Task",
        "CarePlan",
        "CareTeam",
        "Encounter",
        "Consent",
        "Appointment",
        "Communication",
        "AuditEvent",
        "EpisodeOfCare",
    ];

    fn paths(param: &SearchParam) -> Vec<String> {
        param.paths.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_embedded_table_loads_and_covers_every_served_type() {
        let params = SearchParams::embedded();
        let types: Vec<&str> = params.resource_types().collect();
        for served in SERVED {
            assert!(types.contains(&served), "{served} missing from the table");
            assert!(params.param(served, "_id").is_some());
            assert!(params.param(served, "_lastUpdated").is_some());
        }
        // Every concrete R4 resource type (issue 14: search on every type navet stores).
        assert_eq!(types.len(), 146);
        assert!(types.contains(&"Observation") && types.contains(&"Questionnaire"));
    }

    #[test]
    fn patient_identifier_reads_the_identifier_element() {
        let params = SearchParams::embedded();
        let p = params
            .param("Patient", "identifier")
            .expect("Patient.identifier");
        assert_eq!(p.kind, ParamType::Token);
        assert_eq!(paths(p), ["identifier"]);
        assert_eq!(
            p.url,
            "http://hl7.org/fhir/SearchParameter/Patient-identifier"
        );
    }

    #[test]
    fn service_request_patient_is_the_subject_restricted_to_patients() {
        let params = SearchParams::embedded();
        let p = params
            .param("ServiceRequest", "patient")
            .expect("ServiceRequest.patient");
        assert_eq!(p.kind, ParamType::Reference);
        assert_eq!(paths(p), ["subject"]);
        assert_eq!(p.targets, ["Patient"]);
        assert!(p.accepts_target("Patient"));
        assert!(!p.accepts_target("Group"));
    }

    #[test]
    fn choice_elements_expand_to_their_typed_json_names() {
        let params = SearchParams::embedded();
        let p = params
            .param("ServiceRequest", "occurrence")
            .expect("occurrence");
        assert_eq!(p.kind, ParamType::Date);
        assert_eq!(
            paths(p),
            ["occurrenceDateTime", "occurrencePeriod", "occurrenceTiming"]
        );
        let code = params.param("MedicationRequest", "code").expect("code");
        assert_eq!(paths(code), ["medicationCodeableConcept"]);
    }

    #[test]
    fn task_patient_is_for_restricted_to_patients_and_period_is_execution_period() {
        let params = SearchParams::embedded();
        let patient = params.param("Task", "patient").expect("Task.patient");
        assert_eq!(paths(patient), ["for"]);
        assert_eq!(patient.targets, ["Patient"]);
        let period = params.param("Task", "period").expect("Task.period");
        assert_eq!(paths(period), ["executionPeriod"]);
        let subject = params.param("Task", "subject").expect("Task.subject");
        assert!(subject.targets.is_empty(), "Task.for is Reference(Any)");
    }

    #[test]
    fn nested_paths_and_where_filters_are_kept() {
        let params = SearchParams::embedded();
        let family = params.param("Patient", "family").expect("family");
        assert_eq!(paths(family), ["name.family"]);
        let email = params.param("Patient", "email").expect("email");
        assert_eq!(paths(email), ["telecom[system=email]"]);
        assert_eq!(
            email.paths[0].steps()[0].filter,
            Some(("system".to_owned(), "email".to_owned()))
        );
    }

    #[test]
    fn unsupported_and_excluded_parameters_are_not_in_the_table() {
        let params = SearchParams::embedded();
        assert_eq!(
            params.param("Encounter", "length").map(|p| p.kind),
            Some(ParamType::Quantity)
        );
        assert!(params.param("Location", "near").is_none(), "special");
        assert!(params.param("HealthcareService", "coverage-area").is_none());
        assert!(params.param("Patient", "phonetic").is_none());
        assert!(params.param("Patient", "_text").is_none());
        assert!(params.param("Patient", "deceased").is_none());
    }

    #[test]
    fn the_patient_compartment_lists_reference_params_per_type() {
        let params = SearchParams::embedded();
        assert_eq!(
            params.patient_compartment_params("Task"),
            ["patient", "focus"]
        );
        assert_eq!(params.patient_compartment_params("Encounter"), ["subject"]);
        assert_eq!(params.patient_compartment_params("Patient"), ["link"]);
        assert!(params.patient_compartment_params("Organization").is_empty());
    }

    #[test]
    fn params_for_lists_a_types_parameters_in_code_order() {
        let params = SearchParams::embedded();
        let codes: Vec<&str> = params
            .params_for("Patient")
            .map(|p| p.code.as_str())
            .collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        assert_eq!(codes, sorted);
        assert!(codes.contains(&"birthdate") && codes.contains(&"gender"));
        assert!(params.params_for("Observation").count() > 30);
        assert_eq!(params.params_for("NoSuchType").count(), 0);
    }

    #[test]
    fn composites_have_a_token_part_and_a_value_part_read_from_the_same_item() {
        let params = SearchParams::embedded();
        let p = params
            .param("Observation", "combo-code-value-quantity")
            .expect("combo-code-value-quantity");
        assert_eq!(p.kind, ParamType::Composite);
        assert_eq!(paths(p), ["", "component"]);
        assert_eq!(p.components[0].kind, ParamType::Token);
        assert_eq!(p.components[1].kind, ParamType::Quantity);
        let value: Vec<String> = p.components[1]
            .paths
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(value, ["valueQuantity"]);
        let number = params
            .param("RiskAssessment", "probability")
            .expect("number");
        assert_eq!(number.kind, ParamType::Number);
    }

    #[test]
    fn a_composite_without_two_components_is_rejected() {
        let text = r#"{"Observation":{"x":{"type":"composite","paths":[""],"url":"u",
                      "components":[{"type":"token","paths":["code"]}]}}}"#;
        assert!(matches!(
            SearchParams::from_json(text),
            Err(ParamsError::BadComposite { .. })
        ));
    }

    #[test]
    fn a_table_with_a_malformed_path_is_rejected() {
        let text = r#"{"Patient":{"x":{"type":"token","paths":["a..b"],"url":"u"}}}"#;
        assert!(matches!(
            SearchParams::from_json(text),
            Err(ParamsError::BadPath { .. })
        ));
    }

    #[test]
    fn a_compartment_naming_an_unknown_param_is_rejected() {
        let text = r#"{"Task":{"status":{"type":"token","paths":["status"],"url":"u"}},
                      "_patientCompartment":{"Task":["patient"]}}"#;
        assert!(matches!(
            SearchParams::from_json(text),
            Err(ParamsError::BadCompartmentParam { .. })
        ));
    }
}
