//! The declarative SVPL mapping (`mappings/svpl/`): which element path holds each field, and the code maps.
//! Loaded and checked at start-up ([`Mapping::load`]): every problem in the files is reported at once, and
//! a site renames an element by editing a path, with no code change. The files deserialize into the config
//! structs below; [`Mapping::build`] turns them into the runnable mapping (vector's config/build split).

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use serde::Deserialize;

use super::xml::Path;

/// The mapping embedded in the binary (the files as shipped).
pub const EMBEDDED_ELEMENTS: &str = include_str!("../../mappings/svpl/elements.toml");
pub const EMBEDDED_CODES: &str = include_str!("../../mappings/svpl/codes.toml");

/// Every field navet reads or writes. Group keys (repeated elements) are in [`GROUPS`]; a key below a group
/// (`group.x`) is relative to each of the group's elements.
pub const FIELDS: &[&str] = &[
    "message.type",
    "message.id",
    "message.created",
    "sender.hsa",
    "sender.kind",
    "sender.name",
    "recipient",
    "recipient.hsa",
    "recipient.kind",
    "patient.id",
    "patient.id.type",
    "patient.given",
    "patient.family",
    "patient.street",
    "patient.postal_code",
    "patient.city",
    "patient.municipality",
    "patient.listed_at",
    "reference",
    "begaran.consent",
    "begaran.consent_date",
    "begaran.reason",
    "begaran.wished_time",
    "kallelse.time",
    "kallelse.place",
    "kallelse.digital",
    "kallelse.participant",
    "kallelse.participant.hsa",
    "kallelse.participant.role",
    "plan.insats",
    "plan.insats.principal",
    "plan.insats.performer",
    "plan.insats.start",
    "plan.insats.end",
    "plan.insats.text",
    "plan.other",
    "plan.other.actor",
    "plan.other.text",
    "plan.responsible",
    "plan.follow_up",
    "uppfoljning.note",
    "uppfoljning.next",
    "avslut.reason",
    "makulering.reason",
    "inskrivning.time",
    "inskrivning.unit",
    "inskrivning.expected_discharge",
    "inskrivning.housing",
    "utskrivningsklar.time",
    "utskrivning.time",
    "kvittens.status",
    "kvittens.error",
    "kvittens.error.code",
    "kvittens.error.field",
    "kvittens.error.text",
    "kvittens.resource",
    "kvittens.resource.type",
    "kvittens.resource.id",
];

/// The keys that name repeated elements.
pub const GROUPS: &[&str] = &[
    "recipient",
    "kallelse.participant",
    "plan.insats",
    "plan.other",
    "kvittens.error",
    "kvittens.resource",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ElementsFile {
    namespace: String,
    root: String,
    fields: BTreeMap<String, FieldConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldConfig {
    xml: String,
    /// Documentation only: the FHIR element the value fills.
    #[allow(dead_code)]
    fhir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodesFile {
    patient_id_types: BTreeMap<String, String>,
    party_kinds: BTreeMap<String, String>,
    principals: BTreeMap<String, CodingConfig>,
    roles: BTreeMap<String, CodingConfig>,
    housing: BTreeMap<String, CodingConfig>,
    municipalities: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CodingConfig {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
}

impl CodingConfig {
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"system": self.system, "code": self.code});
        if let Some(d) = &self.display {
            v["display"] = serde_json::Value::String(d.clone());
        }
        v
    }
}

/// The checked, runnable mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub namespace: String,
    pub root: String,
    paths: BTreeMap<&'static str, Path>,
    pub patient_id_types: BTreeMap<String, String>,
    pub party_kinds: BTreeMap<String, crate::auth::PrincipalKind>,
    pub principals: BTreeMap<String, CodingConfig>,
    pub roles: BTreeMap<String, CodingConfig>,
    pub housing: BTreeMap<String, CodingConfig>,
    pub municipalities: BTreeMap<String, String>,
}

impl Mapping {
    /// The shipped mapping. The files are checked by a test, so this cannot fail in a released binary.
    pub fn embedded() -> Mapping {
        Mapping::build(EMBEDDED_ELEMENTS, EMBEDDED_CODES)
            .expect("the embedded mappings/svpl files are valid (checked by tests)")
    }

    /// Reads `elements.toml` and `codes.toml` from `dir`.
    pub fn load(dir: &FsPath) -> Result<Mapping, Vec<String>> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        match (read("elements.toml"), read("codes.toml")) {
            (Ok(e), Ok(c)) => Mapping::build(&e, &c),
            (e, c) => Err([e.err(), c.err()].into_iter().flatten().collect()),
        }
    }

    /// Parses and checks both files; every problem found is in the error.
    pub fn build(elements: &str, codes: &str) -> Result<Mapping, Vec<String>> {
        let mut errors = Vec::new();
        let elements: Option<ElementsFile> = toml::from_str(elements)
            .map_err(|e| errors.push(format!("elements.toml: {e}")))
            .ok();
        let codes: Option<CodesFile> = toml::from_str(codes)
            .map_err(|e| errors.push(format!("codes.toml: {e}")))
            .ok();
        let mut paths = BTreeMap::new();
        let (mut namespace, mut root) = (String::new(), String::new());
        if let Some(file) = elements {
            namespace = file.namespace;
            root = file.root;
            if namespace.trim().is_empty() {
                errors.push("elements.toml: namespace is empty".into());
            }
            if Path::parse(&root)
                .map(|p| p.steps.len() != 1)
                .unwrap_or(true)
            {
                errors.push(format!(
                    "elements.toml: root '{root}' is not an element name"
                ));
            }
            for key in file.fields.keys() {
                if !FIELDS.contains(&key.as_str()) {
                    errors.push(format!("elements.toml: unknown field '{key}'"));
                }
            }
            for key in FIELDS {
                let Some(field) = file.fields.get(*key) else {
                    errors.push(format!("elements.toml: field '{key}' is missing"));
                    continue;
                };
                match Path::parse(&field.xml) {
                    Ok(path) => {
                        if GROUPS.contains(key) && (path.is_attribute() || path.steps.is_empty()) {
                            errors.push(format!(
                                "elements.toml: '{key}' is a repeated element; '{}' is not an element path",
                                field.xml
                            ));
                        }
                        paths.insert(*key, path);
                    }
                    Err(e) => errors.push(format!("elements.toml: field '{key}': {e}")),
                }
            }
            // Two fields of one parent may not share a path unless they are meant to (e.g. the two `Orsak`s of
            // different message types): the group members must differ from each other.
            for group in GROUPS {
                let prefix = format!("{group}.");
                let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
                for key in FIELDS.iter().filter(|k| k.starts_with(&prefix)) {
                    if let Some(p) = paths.get(key)
                        && let Some(other) = seen.insert(p.as_str(), key)
                    {
                        errors.push(format!(
                            "elements.toml: '{other}' and '{key}' both read '{}'",
                            p.as_str()
                        ));
                    }
                }
            }
        }
        let mut party_kinds = BTreeMap::new();
        let mut built_codes = None;
        if let Some(c) = codes {
            for (typ, system) in &c.patient_id_types {
                if !is_patient_system(system) {
                    errors.push(format!(
                        "codes.toml: patient_id_types.{typ}: '{system}' is not a personnummer, samordningsnummer or reservnummer system navet checks"
                    ));
                }
            }
            for (code, kind) in &c.party_kinds {
                match crate::auth::PrincipalKind::parse(kind) {
                    Some(k) => {
                        party_kinds.insert(code.clone(), k);
                    }
                    None => errors.push(format!(
                        "codes.toml: party_kinds.{code}: '{kind}' is not a principal kind"
                    )),
                }
            }
            for (table, map) in [
                ("principals", &c.principals),
                ("roles", &c.roles),
                ("housing", &c.housing),
            ] {
                for (code, coding) in map {
                    if coding.system.trim().is_empty() || coding.code.trim().is_empty() {
                        errors.push(format!(
                            "codes.toml: {table}.{code}: system and code must not be empty"
                        ));
                    }
                }
            }
            for (code, name) in &c.municipalities {
                if code.len() != 4 || !code.bytes().all(|b| b.is_ascii_digit()) {
                    errors.push(format!(
                        "codes.toml: municipalities: '{code}' is not a four-digit municipality code"
                    ));
                }
                if name.trim().is_empty() {
                    errors.push(format!("codes.toml: municipalities.{code}: no name"));
                }
            }
            for needed in ["kommun", "region"] {
                if !c.principals.contains_key(needed) {
                    errors.push(format!("codes.toml: principals.{needed} is missing"));
                }
            }
            built_codes = Some(c);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let c = built_codes.ok_or_else(|| vec!["codes.toml: missing".to_owned()])?;
        Ok(Mapping {
            namespace,
            root,
            paths,
            patient_id_types: c.patient_id_types,
            party_kinds,
            principals: c.principals,
            roles: c.roles,
            housing: c.housing,
            municipalities: c.municipalities,
        })
    }

    /// The path of a field. Every key of [`FIELDS`] has one (checked in [`Mapping::build`]); asking for
    /// another key is a bug in navet, answered with an empty path that matches the element itself.
    pub fn path(&self, key: &str) -> &Path {
        static NONE: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
        debug_assert!(FIELDS.contains(&key), "unknown SVPL field {key}");
        self.paths.get(key).unwrap_or_else(|| {
            NONE.get_or_init(|| Path::parse(".").unwrap_or_else(|_| unreachable!()))
        })
    }

    /// The XPath of a field for a `Fel/@falt`: `/Meddelande/Patient/Id`, `/Meddelande/Insats[2]/@huvudman`.
    pub fn xpath(&self, key: &str, group_index: Option<(&str, usize)>) -> String {
        let mut out = format!("/{}", self.root);
        if let Some((group, index)) = group_index {
            for step in &self.path(group).steps {
                out.push('/');
                out.push_str(step);
            }
            out.push_str(&format!("[{}]", index + 1));
        }
        let path = self.path(key);
        for step in &path.steps {
            out.push('/');
            out.push_str(step);
        }
        if let Some(a) = &path.attr {
            out.push_str("/@");
            out.push_str(a);
        }
        out
    }

    /// The SVPL `Id/@typ` for a FHIR identifier system (the reverse of `patient_id_types`).
    pub fn patient_id_type_for(&self, system: &str) -> Option<&str> {
        self.patient_id_types
            .iter()
            .find(|(_, s)| *s == system)
            .map(|(t, _)| t.as_str())
    }
}

fn is_patient_system(system: &str) -> bool {
    use crate::domain::{PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM, is_reservnummer_system};
    system == PERSONNUMMER_SYSTEM
        || system == SAMORDNINGSNUMMER_SYSTEM
        || is_reservnummer_system(system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_mapping_files_are_valid() {
        let m = Mapping::build(EMBEDDED_ELEMENTS, EMBEDDED_CODES).unwrap();
        assert_eq!(m.path("patient.id.type").as_str(), "Patient/Id/@typ");
        assert_eq!(
            m.xpath("plan.insats.principal", Some(("plan.insats", 1))),
            "/Meddelande/Insats[2]/@huvudman"
        );
    }

    #[test]
    fn every_problem_in_the_files_is_reported_at_once() {
        let elements = EMBEDDED_ELEMENTS
            .replace("\"patient.given\"", "\"patient.nickname\"")
            .replace("xml = \"Patient/Id\"", "xml = \"Patient//Id\"")
            .replace("xml = \"Mottagare\"", "xml = \"@mottagare\"");
        let codes = EMBEDDED_CODES
            .replace("\"1290\" = \"Kristianstad\"", "\"129\" = \"Kristianstad\"")
            .replace("mtn = \"mtn\"", "mtn = \"mobile\"")
            .replace(
                "http://electronichealth.se/identifier/nationelltReservnummer",
                "urn:local:pid",
            );
        let errors = Mapping::build(&elements, &codes).unwrap_err();
        let all = errors.join("\n");
        for expected in [
            "unknown field 'patient.nickname'",
            "field 'patient.given' is missing",
            "field 'patient.id': 'Patient//Id'",
            "'recipient' is a repeated element",
            "'129' is not a four-digit municipality code",
            "party_kinds.mtn: 'mobile' is not a principal kind",
            "patient_id_types.reservnummer",
        ] {
            assert!(all.contains(expected), "missing '{expected}' in:\n{all}");
        }
        assert_eq!(errors.len(), 7, "{all}");
    }
}
