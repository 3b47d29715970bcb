#!/usr/bin/env python3
"""Extract navet's search-parameter table from the FHIR R4 (4.0.1) definitions.

Usage (from the repository root):

    python3 conformance/tools/extract_search_params.py ../shared/fhir/r4-definitions conformance/search-parameters.json

The first argument is the directory holding the official R4 definitions
(search-parameters.json, compartmentdefinition-patient.json,
profiles-resources.json, profiles-types.json); the second is the output file,
which is committed and embedded into the server with `include_str!` (a user's
machine has no copy of the definitions). Python 3 standard library only.

What it does
------------
For every SearchParameter whose base includes a type navet serves (or
Resource/DomainResource), of a type navet supports (token, string, reference,
date, uri), it turns the FHIRPath `expression` into simple dotted JSON paths
relative to the resource, one list per served type:

    Patient.identifier                                 -> identifier
    Patient.name.family                                -> name.family
    (ServiceRequest.occurrence as dateTime)            -> occurrenceDateTime
    ServiceRequest.occurrence                          -> occurrenceDateTime, occurrencePeriod, occurrenceTiming
    Task.for.where(resolve() is Patient)               -> for, with targets ["Patient"]
    Patient.telecom.where(system='email')              -> telecom[system=email]

Choice elements (`occurrence[x]`) are expanded with the element definitions,
keeping only the choice types that the parameter type can index (a date
parameter keeps dateTime/Period/Timing, a reference parameter keeps Reference).
Every path is checked against the StructureDefinitions; a path that does not
resolve, or whose leaf type the parameter type cannot index, is dropped.
A step of the form `name[field=value]` only follows array items whose
`field` equals `value` (from FHIRPath `.where(field='value')`).

Reference targets are the SearchParameter's `target` list, narrowed by a
`.where(resolve() is X)` restriction and by the element's own targetProfiles.

Anything that cannot be reduced to that form (composite, quantity, number,
special parameters, expressions with other functions, phonetic matching) is
left out and printed on stderr, so the CapabilityStatement built from the
table lists exactly what navet serves.

Output (compact JSON, one resource type per line, keys sorted):

    {"Patient": {"identifier": {"type": "token", "paths": ["identifier"],
                                "url": "http://hl7.org/fhir/SearchParameter/Patient-identifier",
                                "description": "A patient identifier"}, ...},
     ...,
     "_patientCompartment": {"CarePlan": ["patient", "performer"], ...}}

`targets` is present only on reference parameters that restrict their target
types. `_patientCompartment` comes from compartmentdefinition-patient.json,
restricted to served types and to parameters present in the table.
`_patientCompartmentPaths` holds, for every other R4 type the compartment lists,
the element paths of its compartment reference parameters (resolved the same way),
so patient links follow the compartment for every type.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# The resource types navet serves for search: every concrete R4 resource type of the definitions (navet stores
# every type, so every type is searchable; issue 14). Computed from profiles-resources.json by `extract`.
SERVED_TYPES = None

ABSTRACT_BASES = {"Resource", "DomainResource"}

# Parameter codes left out on purpose, with the reason printed.
EXCLUDED = {
    # navet matches the covering team by its own rules; the standard
    # HealthcareService.coverageArea reference is not offered (project decision).
    ("HealthcareService", "coverage-area"): "excluded by project decision",
    # Phonetic matching is not a plain string match; listing it would promise
    # behaviour navet does not have.
    ("*", "phonetic"): "phonetic matching is not supported",
}

# Parameters navet defines itself (not in FHIR R4), each for a rule navet serves.
NAVET_PARAMS = {
    # Lag 2017:612 deadlines (src/svpl/): a Task's due time is the end of `restriction.period`
    # ("when fulfilment is sought"); `Task?status=requested&due=lt{now}` lists overdue work.
    ("Task", "due"): {
        "description": "When the task is due (the end of restriction.period): navet's, for Lag 2017:612 deadlines",
        "paths": ["restriction.period.end"],
        "type": "date",
        "url": "urn:navet:SearchParameter/Task-due",
    },
}

# Leaf FHIR types each supported parameter type can index (FHIR R4 4.0.1
# search.html §3.1.1.4 "Search Types and FHIR Types").
INDEXABLE = {
    "token": {
        "code", "Coding", "CodeableConcept", "Identifier", "ContactPoint",
        "boolean", "string", "uri", "id", "canonical", "oid", "uuid", "url",
    },
    "string": {"string", "markdown", "HumanName", "Address"},
    "reference": {"Reference", "canonical", "uri"},
    "date": {"date", "dateTime", "instant", "Period", "Timing"},
    "uri": {"uri", "url", "canonical", "oid", "uuid"},
    "number": {"integer", "decimal", "positiveInt", "unsignedInt"},
    "quantity": {"Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity",
                 "Range", "Money"},
}

# Element definitions whose `type.code` is a FHIRPath system type.
FHIRPATH_SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}

STRUCTURE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


class Unsupported(Exception):
    """An expression (part) that does not reduce to a simple path."""


def load_json(path: Path):
    with path.open(encoding="utf-8") as f:
        return json.load(f)


class Elements:
    """Element definitions by id, for resources and data types."""

    def __init__(self, definitions: Path):
        self.by_id: dict[str, dict] = {}
        self.resource_types: set[str] = set()
        for name in ("profiles-resources.json", "profiles-types.json"):
            bundle = load_json(definitions / name)
            for entry in bundle.get("entry", []):
                resource = entry.get("resource", {})
                if resource.get("resourceType") != "StructureDefinition":
                    continue
                # Only R4 (4.0.1) types: Medplum's copy also carries R4B's SubscriptionStatus (4.3.0).
                if (resource.get("kind") == "resource" and not resource.get("abstract")
                        and resource.get("fhirVersion", "4.0.1") == "4.0.1"):
                    self.resource_types.add(resource["id"])
                for element in resource.get("snapshot", {}).get("element", []):
                    self.by_id.setdefault(element["id"], element)

    def lookup(self, parent: str, name: str):
        """Returns (element, is_choice) for `parent.name` or `parent.name[x]`."""
        element = self.by_id.get(f"{parent}.{name}")
        if element is not None:
            return element, False
        element = self.by_id.get(f"{parent}.{name}[x]")
        if element is not None:
            return element, True
        return None, False

    def follow_content_reference(self, element: dict) -> dict:
        reference = element.get("contentReference")
        if reference:
            target = self.by_id.get(reference.lstrip("#"))
            if target is None:
                raise Unsupported(f"unresolved contentReference {reference}")
            return target
        return element


def types_of(element: dict) -> list[dict]:
    result = []
    for t in element.get("type", []):
        code = FHIRPATH_SYSTEM_TYPES.get(t["code"], t["code"])
        result.append({**t, "code": code})
    return result


def target_names(type_entry: dict) -> set[str] | None:
    """Reference target types of one element type, None for 'any resource'."""
    profiles = type_entry.get("targetProfile") or []
    names = {p.removeprefix(STRUCTURE_PREFIX) for p in profiles}
    if not names or "Resource" in names or "DomainResource" in names:
        return None
    return names


def split_union(expression: str) -> list[str]:
    """Splits a FHIRPath expression on top-level `|`."""
    parts, depth, quote, current = [], 0, False, []
    for ch in expression:
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        if ch == "|" and depth == 0 and not quote:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(text) - 1:
                return text  # the parentheses do not enclose the whole text
        text = text[1:-1].strip()
    return text


IDENT = r"[A-Za-z][A-Za-z0-9]*"
WHERE_RESOLVE = re.compile(rf"\.where\(\s*resolve\(\)\s+is\s+({IDENT})\s*\)$")
WHERE_FIELD = re.compile(rf"\.where\(\s*({IDENT})\s*=\s*'([^']*)'\s*\)")
AS_SUFFIX = re.compile(rf"^(.*?)\s+as\s+({IDENT})$")
AS_FUNCTION = re.compile(rf"\.as\(\s*({IDENT})\s*\)$")
DOTTED = re.compile(rf"^{IDENT}(\.{IDENT}(\[{IDENT}=[^\]]*\])?)*$")


def parse_part(part: str):
    """Parses one union member into (type, steps, as_type, resolve_type).

    steps is a list of (name, filter) with filter None or (field, value).
    """
    text = strip_parens(part)
    resolve_type = None
    m = WHERE_RESOLVE.search(text)
    if m:
        resolve_type = m.group(1)
        text = strip_parens(text[: m.start()])
    as_type = None
    m = AS_SUFFIX.match(text)
    if m:
        text, as_type = strip_parens(m.group(1)), m.group(2)
    else:
        m = AS_FUNCTION.search(text)
        if m:
            text, as_type = text[: m.start()], m.group(1)
    # `.where(field='value')` becomes a `[field=value]` filter on the step before it.
    text = WHERE_FIELD.sub(lambda w: f"[{w.group(1)}={w.group(2)}]", text)
    if not DOTTED.match(text):
        raise Unsupported(f"not a simple path: {part!r}")
    raw_steps = re.findall(rf"({IDENT})(?:\[({IDENT})=([^\]]*)\])?", text)
    base = raw_steps[0][0]
    steps = [(name, (field, value) if field else None) for name, field, value in raw_steps[1:]]
    if not steps:
        raise Unsupported(f"expression names no element: {part!r}")
    return base, steps, as_type, resolve_type


def resolve_paths(elements: Elements, type_name: str, steps, as_type, param_type, notes: list[str]):
    """Resolves steps against the definitions of type_name.

    Returns a list of (json_path, leaf_type_entry). Choice elements expand to
    one path per admissible choice type; the inadmissible ones are described
    in `notes`.
    """
    parent = type_name
    json_steps: list[str] = []
    for index, (name, flt) in enumerate(steps):
        last = index == len(steps) - 1
        element, is_choice = elements.lookup(parent, name)
        if element is None:
            raise Unsupported(f"{parent}.{name} is not an element")
        element = elements.follow_content_reference(element)
        types = types_of(element)
        suffix = f"[{flt[0]}={flt[1]}]" if flt else ""
        if is_choice:
            if as_type is not None:
                types = [t for t in types if t["code"].lower() == as_type.lower()]
            if not last and len(types) != 1:
                raise Unsupported(f"choice {parent}.{name}[x] inside a path")
            if last:
                result = []
                for t in types:
                    code = t["code"]
                    json_name = name + code[0].upper() + code[1:]
                    if code in INDEXABLE[param_type]:
                        result.append((".".join(json_steps + [json_name + suffix]), t))
                    else:
                        notes.append(f"choice {json_name} ({code}) cannot be indexed as {param_type}")
                return result
            code = types[0]["code"]
            json_steps.append(name + code[0].upper() + code[1:] + suffix)
        else:
            json_steps.append(name + suffix)
            if as_type is not None and last:
                types = [t for t in types if t["code"].lower() == as_type.lower()]
            if last:
                return [
                    (".".join(json_steps), t)
                    for t in types
                    if t["code"] in INDEXABLE[param_type]
                ]
        # Descend: backbone elements continue under their own id, data types
        # under the data type's definitions.
        if not types or types[0]["code"] in ("BackboneElement", "Element"):
            parent = element["id"].removesuffix("[x]")
        else:
            parent = types[0]["code"]
    return []


def short_description(resource: dict, type_name: str) -> str:
    text = resource.get("description", "") or ""
    lines = [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]
    if lines and lines[0].startswith("Multiple Resources"):
        pattern = re.compile(rf"^\*\s*\[{type_name}\]\([^)]*\):\s*(.*)$")
        for line in lines:
            m = pattern.match(line)
            if m:
                return m.group(1).strip()
        return resource.get("name", "")
    first = lines[0] if lines else resource.get("name", "")
    return first if len(first) <= 200 else first[:197] + "..."


def composite_spec(elements: Elements, by_url: dict, sp: dict, type_name: str, notes: list[str]):
    """A composite parameter of `type_name` as {"paths": [base paths], "components": [...]}, or None.

    navet serves two-part composites whose first part is a token (FHIR R4 4.0.1 search.html#composite: every
    R4 composite but MolecularSequence's coordinates). The base paths are element paths relative to the
    resource ("" is the resource itself); each component's paths are relative to a base item, so both parts
    are read from the same item (Observation.component: its own code and value).
    """
    components = sp.get("component", [])
    if len(components) != 2:
        notes.append(f"{len(components)} components (navet serves two)")
        return None
    bases: list[tuple[str, str]] = []  # (json path, element id or type name to resolve components under)
    for part in split_union(sp.get("expression", "")):
        text = strip_parens(part)
        if text == type_name:
            bases.append(("", type_name))
            continue
        if not text.startswith(type_name + "."):
            continue
        try:
            _, steps, as_type, _ = parse_part(text)
        except Unsupported as e:
            notes.append(str(e))
            return None
        if as_type or any(f for _, f in steps):
            notes.append(f"base {text!r} is not a plain path")
            return None
        parent = type_name
        json_steps = []
        for name, _ in steps:
            element, is_choice = elements.lookup(parent, name)
            if element is None or is_choice:
                notes.append(f"base {text!r} does not resolve")
                return None
            element = elements.follow_content_reference(element)
            json_steps.append(name)
            codes = [t["code"] for t in types_of(element)]
            parent = element["id"] if not codes or codes[0] in ("BackboneElement", "Element") else codes[0]
        bases.append((".".join(json_steps), parent))
    if not bases:
        notes.append("no base path for this type")
        return None
    out_components = []
    for index, component in enumerate(components):
        definition = by_url.get(component.get("definition", ""))
        if definition is None:
            notes.append(f"component {component.get('definition')} is not defined")
            return None
        ctype = definition["type"]
        if ctype not in INDEXABLE or (index == 0 and ctype != "token"):
            notes.append(f"component of type {ctype} is not served")
            return None
        paths: list[str] = []
        for expr in split_union(component.get("expression", "")):
            try:
                _, steps, as_type, _ = parse_part("X." + strip_parens(expr))
            except Unsupported as e:
                notes.append(str(e))
                return None
            for _, parent in bases:
                try:
                    resolved = resolve_paths(elements, parent, steps, as_type, ctype, notes)
                except Unsupported as e:
                    notes.append(str(e))
                    continue
                for json_path, _ in resolved:
                    if json_path not in paths:
                        paths.append(json_path)
        if not paths:
            notes.append(f"component {component.get('expression')!r} has no indexable path")
            return None
        out_components.append({"type": ctype, "paths": paths})
    return {"paths": [b for b, _ in bases], "components": out_components}


def extract(definitions: Path, served_types=None):
    elements = Elements(definitions)
    if served_types is None:
        served_types = sorted(elements.resource_types)
    served_types = list(served_types)
    bundle = load_json(definitions / "search-parameters.json")
    by_url = {
        e["resource"]["url"]: e["resource"]
        for e in bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") == "SearchParameter"
        and e["resource"].get("url", "").startswith("http://hl7.org/fhir/")
    }
    served = set(served_types)
    table: dict[str, dict[str, dict]] = {t: {} for t in served_types}
    dropped: list[str] = []

    for entry in bundle.get("entry", []):
        sp = entry.get("resource", {})
        if sp.get("resourceType") != "SearchParameter":
            continue
        code, ptype, url = sp["code"], sp["type"], sp["url"]
        # ../shared's copy is Medplum's distribution: only HL7's own definitions count (fhir/README.md).
        if not url.startswith("http://hl7.org/fhir/"):
            continue
        bases = sp.get("base", [])
        applies_to = sorted(
            served if ABSTRACT_BASES & set(bases) else served & set(bases)
        )
        if not applies_to:
            continue
        label = f"{sp['id']} ({code}, {ptype})"
        if ptype == "composite":
            for type_name in applies_to:
                notes: list[str] = []
                spec = composite_spec(elements, by_url, sp, type_name, notes)
                if spec is None:
                    dropped.append(f"{type_name}.{code} [{label}]: " + "; ".join(notes))
                    continue
                table[type_name][code] = {
                    "type": "composite",
                    **spec,
                    "url": url,
                    "description": short_description(sp, type_name),
                }
            continue
        if ptype not in INDEXABLE:
            dropped.append(f"{label}: type {ptype} not supported")
            continue
        expression = sp.get("expression")
        if not expression:
            dropped.append(f"{label}: no FHIRPath expression")
            continue
        declared_targets = set(sp.get("target", [])) or None
        # Reference(Any) is published as a list of (nearly) every resource
        # type; such a list restricts nothing.
        if declared_targets and len(declared_targets) * 10 >= len(elements.resource_types) * 9:
            declared_targets = None

        per_type: dict[str, list] = {t: [] for t in applies_to}
        problems: dict[str, list[str]] = {t: [] for t in applies_to}
        for part in split_union(expression):
            head = re.match(r"^[\s(]*([A-Za-z]+)", part)
            base = head.group(1) if head else ""
            if base in ABSTRACT_BASES:
                part_types = applies_to
            elif base in per_type:
                part_types = [base]
            else:
                continue  # a part for a type navet does not serve
            try:
                _, steps, as_type, resolve_type = parse_part(part)
            except Unsupported as e:
                for type_name in part_types:
                    problems[type_name].append(str(e))
                continue
            for type_name in part_types:
                try:
                    resolved = resolve_paths(elements, type_name, steps, as_type, ptype, problems[type_name])
                except Unsupported as e:
                    problems[type_name].append(str(e))
                    continue
                if not resolved:
                    problems[type_name].append(f"{part.strip()!r} has no indexable type")
                for json_path, leaf in resolved:
                    per_type[type_name].append((json_path, leaf, resolve_type))

        for type_name in applies_to:
            if (type_name, code) in EXCLUDED or ("*", code) in EXCLUDED:
                reason = EXCLUDED.get((type_name, code)) or EXCLUDED[("*", code)]
                dropped.append(f"{type_name}.{code}: {reason}")
                continue
            type_problems = problems[type_name]
            entries = per_type[type_name]
            if not entries:
                reason = "; ".join(type_problems) or "no path for this type"
                dropped.append(f"{type_name}.{code} [{label}]: {reason}")
                continue
            for p in type_problems:
                dropped.append(f"{type_name}.{code} [{label}]: part dropped: {p}")
            paths: list[str] = []
            targets: set[str] | None = None
            any_target = False
            for json_path, leaf, resolve_type in entries:
                if json_path not in paths:
                    paths.append(json_path)
                if ptype != "reference":
                    continue
                allowed = declared_targets
                if resolve_type:
                    allowed = {resolve_type} if allowed is None else allowed & {resolve_type}
                element_targets = (
                    target_names(leaf) if leaf["code"] in ("Reference", "canonical") else None
                )
                if element_targets is not None:
                    allowed = element_targets if allowed is None else allowed & element_targets
                if allowed is None:
                    any_target = True
                else:
                    targets = allowed if targets is None else targets | allowed
            spec = {"type": ptype, "paths": paths}
            if ptype == "reference" and not any_target and targets is not None:
                if not targets:
                    dropped.append(f"{type_name}.{code} [{label}]: no admissible target type")
                    continue
                spec["targets"] = sorted(targets)
            spec["url"] = url
            spec["description"] = short_description(sp, type_name)
            if code in table[type_name]:
                dropped.append(f"{type_name}.{code} [{label}]: duplicate code, kept {table[type_name][code]['url']}")
                continue
            table[type_name][code] = spec

    for (type_name, code), param in NAVET_PARAMS.items():
        if type_name in table:
            table[type_name][code] = param

    compartment = load_json(definitions / "compartmentdefinition-patient.json")
    patient_compartment: dict[str, list[str]] = {}
    for entry in compartment.get("resource", []):
        type_name = entry.get("code")
        if type_name not in served:
            continue
        codes = []
        for code in entry.get("param", []):
            if code in table[type_name]:
                codes.append(code)
            else:
                dropped.append(f"_patientCompartment {type_name}.{code}: parameter not in the table")
        if codes:
            patient_compartment[type_name] = codes

    return table, patient_compartment, dropped


# Parameters navet defines itself (not in R4), added after extraction. The access log's auditor API searches
# by purpose of use (spec/timeline-and-audit.md: `AuditEvent?purpose=`), which R4 has no parameter for.
NAVET_PARAMETERS = {
    "AuditEvent": {
        "purpose": {
            "description": "Purpose of use of the access (navet): the event's or an agent's purposeOfUse",
            "paths": ["purposeOfEvent", "agent.purposeOfUse"],
            "type": "token",
            "url": "urn:navet:SearchParameter/AuditEvent-purpose",
        }
    }
}


# AuditEvent parameters navet serves: what the auditor API searches by. Every logged access writes one index
# row per value, so the other R4 AuditEvent parameters (about 15 more rows per access) are not served; a search
# by them is refused as unknown rather than answered from an index that is not there.
NAVET_SERVED = {
    "AuditEvent": {"_id", "_lastUpdated", "action", "address", "agent", "date", "entity", "entity-type",
                   "outcome", "patient", "purpose", "subtype"},
}


def compartment_paths(definitions: Path) -> dict[str, list[str]]:
    """The element paths of the Patient compartment parameters of every R4 type navet does not serve for
    search, so patient links follow the compartment for every type (resolved like the served types' paths;
    only reference parameters count)."""
    resource_types = set(Elements(definitions).resource_types)
    served = resource_types
    compartment = load_json(definitions / "compartmentdefinition-patient.json")
    entries = [
        e for e in compartment.get("resource", [])
        if e.get("param") and e.get("code") in resource_types and e.get("code") not in served
    ]
    table, _, _ = extract(definitions, [e["code"] for e in entries])
    out: dict[str, list[str]] = {}
    for entry in entries:
        type_name = entry["code"]
        paths: list[str] = []
        for code in entry.get("param", []):
            spec = table.get(type_name, {}).get(code)
            if spec and spec["type"] == "reference":
                paths.extend(p for p in spec["paths"] if p not in paths)
        if paths:
            out[type_name] = paths
    return out


def write_compact(path: Path, table, patient_compartment, other_paths) -> None:
    """Compact JSON with one top-level key per line, so diffs stay readable."""
    items = [(k, table[k]) for k in sorted(table)]
    items.append(("_patientCompartment", {k: patient_compartment[k] for k in sorted(patient_compartment)}))
    items.append(("_patientCompartmentPaths", {k: other_paths[k] for k in sorted(other_paths)}))
    lines = [
        json.dumps(key) + ":" + json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        for key, value in items
    ]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.split("What it does")[0].strip(), file=sys.stderr)
        return 2
    definitions, output = Path(argv[1]), Path(argv[2])
    table, patient_compartment, dropped = extract(definitions)
    for type_name, extra in NAVET_PARAMETERS.items():
        if type_name in table:
            table[type_name].update(extra)
    for type_name, served in NAVET_SERVED.items():
        if type_name in table:
            table[type_name] = {k: v for k, v in table[type_name].items() if k in served}
    write_compact(output, table, patient_compartment, compartment_paths(definitions))
    for line in dropped:
        print(f"dropped: {line}", file=sys.stderr)
    total = sum(len(v) for v in table.values())
    counts = ", ".join(f"{t} {len(table[t])}" for t in sorted(table))
    print(f"wrote {output}: {total} parameters ({counts}); {len(dropped)} dropped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
