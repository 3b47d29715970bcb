//! Validation of a resource against the FHIR R4 4.0.1 base definitions and navet's Swedish rules: the one
//! entry point for writes (`crate::fhir::ops`) and for `$validate` (`crate::http::validate`).
//!
//! 1. structure and required code bindings: [`crate::fhir::structure`] (`profiles/r4-structure.json`,
//!    `profiles/r4-valuesets.json`);
//! 2. invariants: the constraints of the definitions (`profiles/r4-invariants.json`) whose FHIRPath is in
//!    the subset of [`fhirpath`], evaluated on every element they are defined on;
//! 3. the Swedish rules (`crate::fhir::rules`: HL7 Sweden patient identifiers).
//!
//! Errors refuse a write (422); warnings (e.g. dom-6 "a resource should have narrative") are only reported
//! by `$validate`. Other modules' rules (the ordination profiles) sit beside this entry point: they take the
//! same `(resource_type, value)` and answer [`Finding`]s.

pub(crate) mod fhirpath;

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::fhir::FhirContext;
use crate::fhir::structure::{IssueKind, Structure, Ty, TypeIndex};
use fhirpath::{Env, Expr, Item};

/// How bad a finding is (OperationOutcome.issue.severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// What a finding is about (OperationOutcome.issue.code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Structure,
    /// A code outside a required value set.
    Code,
    /// A broken invariant.
    Invariant,
    /// A Swedish rule (identifier check digits and dates).
    Rule,
}

/// One issue with a resource, named by its FHIRPath location (`Patient.contact[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub kind: Kind,
    pub path: String,
    pub message: String,
}

/// Everything wrong with `value` (a resource of any type): errors and warnings, in that order of checks.
/// Invariants are only evaluated on a structurally valid resource (their navigation trusts the structure).
pub fn check(ctx: &FhirContext, value: &Value) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Err(issues) = ctx.structure.validate(value) {
        let structural = issues.iter().any(|i| i.kind == IssueKind::Structure);
        findings.extend(issues.into_iter().map(|i| Finding {
            level: Level::Error,
            kind: match i.kind {
                IssueKind::Structure => Kind::Structure,
                IssueKind::Code => Kind::Code,
            },
            path: i.path,
            message: i.message,
        }));
        if structural {
            return findings;
        }
    }
    ctx.invariants.check(&ctx.structure, value, &mut findings);
    if let Some(ty) = value.get("resourceType").and_then(Value::as_str)
        && let Err(crate::error::ApiError::Invalid(issues)) = crate::fhir::rules::check(ty, value)
    {
        findings.extend(issues.into_iter().map(|i| Finding {
            level: Level::Error,
            kind: Kind::Rule,
            path: i.path,
            message: i.message,
        }));
    }
    findings
}

// ---------------------------------------------------------------------------------------------------------
// Invariants

#[derive(Deserialize)]
struct RawFile {
    #[serde(rename = "fhirVersion")]
    fhir_version: String,
    invariants: HashMap<String, Vec<RawInvariant>>,
}

#[derive(Deserialize)]
struct RawInvariant {
    key: String,
    severity: String,
    human: String,
    expression: String,
    #[serde(default)]
    element: Option<String>,
}

#[derive(Debug)]
struct Compiled {
    key: Box<str>,
    level: Level,
    human: Box<str>,
    expr: Expr,
}

/// The compiled invariants of the R4 definitions, by the structure (and element) they are defined on.
#[derive(Debug, Default)]
pub struct Invariants {
    on_type: HashMap<TypeIndex, Vec<Compiled>>,
    on_element: HashMap<(TypeIndex, u16), Vec<Compiled>>,
    /// (key, place, why) of each invariant outside the FHIRPath subset: not evaluated.
    skipped: Vec<(String, String, String)>,
    evaluated: usize,
}

impl Invariants {
    /// The R4 4.0.1 invariants built into navet, for the embedded structure table.
    pub fn embedded(structure: &Structure) -> Invariants {
        // A build-time artefact of profiles/tools/extract_validation.py; a unit test loads it.
        Invariants::parse(structure, include_str!("../../profiles/r4-invariants.json"))
            .expect("the embedded profiles/r4-invariants.json must be readable")
    }

    fn parse(structure: &Structure, text: &str) -> Result<Invariants, String> {
        let raw: RawFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if raw.fhir_version != "4.0.1" {
            return Err(format!("fhirVersion {} is not 4.0.1", raw.fhir_version));
        }
        let mut out = Invariants::default();
        let mut keys: Vec<&String> = raw.invariants.keys().collect();
        keys.sort();
        for key in keys {
            let Some(index) = structure.type_index(key) else {
                return Err(format!("invariants on unknown structure {key}"));
            };
            for inv in &raw.invariants[key] {
                let place = match &inv.element {
                    Some(e) => format!("{key}.{e}"),
                    None => key.clone(),
                };
                let expr = match fhirpath::compile(&inv.expression) {
                    Ok(expr) => expr,
                    Err(why) => {
                        out.skipped.push((inv.key.clone(), place, why.0));
                        continue;
                    }
                };
                let compiled = Compiled {
                    key: inv.key.as_str().into(),
                    level: if inv.severity == "error" {
                        Level::Error
                    } else {
                        Level::Warning
                    },
                    human: inv.human.as_str().into(),
                    expr,
                };
                out.evaluated += 1;
                match &inv.element {
                    None => out.on_type.entry(index).or_default().push(compiled),
                    Some(element) => {
                        let stem = element.strip_suffix("[x]").unwrap_or(element);
                        let Some((position, _)) = structure.element_by_fhirpath(index, stem) else {
                            return Err(format!(
                                "invariant {} on unknown element {place}",
                                inv.key
                            ));
                        };
                        out.on_element
                            .entry((index, position))
                            .or_default()
                            .push(compiled);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The invariants outside the FHIRPath subset: (key, where, why), for the README and a test.
    pub fn skipped(&self) -> &[(String, String, String)] {
        &self.skipped
    }

    /// How many invariants are evaluated (counted per place they are defined on).
    pub fn evaluated(&self) -> usize {
        self.evaluated
    }

    fn check(&self, structure: &Structure, value: &Value, findings: &mut Vec<Finding>) {
        let Some(index) = structure.resource_type_of(value) else {
            return;
        };
        let root = [Item::Node {
            value,
            ty: fhirpath::NodeTy::Object(index),
        }];
        let mut walk = Walk {
            structure,
            invariants: self,
            findings,
            path: structure.type_name(index).to_owned(),
        };
        walk.object(value, index, &root, &root);
    }
}

struct Walk<'s, 'f> {
    structure: &'s Structure,
    invariants: &'s Invariants,
    findings: &'f mut Vec<Finding>,
    path: String,
}

impl<'s> Walk<'s, '_> {
    fn evaluate<'a>(
        &mut self,
        list: &[Compiled],
        focus: &Item<'a>,
        resource: &[Item<'a>],
        root: &[Item<'a>],
    ) where
        's: 'a,
    {
        for inv in list {
            let context = std::slice::from_ref(focus);
            let env = Env {
                structure: self.structure,
                resource,
                root,
                context,
            };
            // An evaluation error (a FHIRPath type error on unusual data) is not a broken invariant.
            let Ok(result) = env.eval(&inv.expr, context) else {
                continue;
            };
            let holds = !matches!(result.as_slice(), [Item::Bool(false)]);
            if !holds && self.findings.len() < crate::fhir::structure::MAX_ISSUES {
                self.findings.push(Finding {
                    level: inv.level,
                    kind: Kind::Invariant,
                    path: self.path.clone(),
                    message: format!("{}: {}", inv.key, inv.human),
                });
            }
        }
    }

    /// An object of type `index` at `self.path`: its own invariants, then its elements'.
    fn object<'a>(
        &mut self,
        value: &'a Value,
        index: TypeIndex,
        resource: &[Item<'a>],
        root: &[Item<'a>],
    ) where
        's: 'a,
    {
        let Value::Object(object) = value else {
            return;
        };
        let me = Item::Node {
            value,
            ty: fhirpath::NodeTy::Object(index),
        };
        if let Some(list) = self.invariants.on_type.get(&index) {
            self.evaluate(list, &me, resource, root);
        }
        for (key, child) in object {
            if key.starts_with('_') || key == "resourceType" {
                continue;
            }
            let Some((ty, position)) = self.structure.property(index, key) else {
                continue;
            };
            let on_element = self.invariants.on_element.get(&(index, position));
            let descend = !matches!(ty, Ty::Primitive(_));
            if on_element.is_none() && !descend {
                continue;
            }
            let mark = self.path.len();
            self.path.push('.');
            self.path.push_str(key);
            match child {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let inner = self.path.len();
                        self.path.push_str(&format!("[{i}]"));
                        self.element(item, ty, on_element, key, resource, root);
                        self.path.truncate(inner);
                    }
                }
                single => self.element(single, ty, on_element, key, resource, root),
            }
            self.path.truncate(mark);
        }
    }

    fn element<'a>(
        &mut self,
        value: &'a Value,
        ty: Ty,
        on_element: Option<&'s Vec<Compiled>>,
        key: &str,
        resource: &[Item<'a>],
        root: &[Item<'a>],
    ) where
        's: 'a,
    {
        let item = fhirpath::node(self.structure, value, ty);
        if let Some(list) = on_element {
            self.evaluate(list, &item, resource, root);
        }
        match (ty, &item) {
            (Ty::Complex(index), _) => self.object(value, index, resource, root),
            (
                Ty::Resource(_),
                Item::Node {
                    ty: fhirpath::NodeTy::Object(index),
                    ..
                },
            ) => {
                // A contained resource keeps its container as %rootResource; any other nested resource
                // (Bundle.entry.resource, Parameters.parameter.resource) is its own root.
                let this = [item.clone()];
                if key == "contained" {
                    self.object(value, *index, &this, root);
                } else {
                    self.object(value, *index, &this, &this);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
