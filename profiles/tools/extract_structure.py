#!/usr/bin/env python3
"""Extract the structural part of the FHIR R4 (4.0.1) StructureDefinitions into one compact JSON file.

navet keeps the client's JSON as it came (serde_json::Value), so it validates structure itself
(src/fhir/structure.rs). The server must not need the 37 MB definition bundles at run time (a user's
machine has no ../shared), so this tool extracts only what structural validation needs and the result,
profiles/r4-structure.json, is committed and embedded in the binary with include_str!.

Usage (from the repository root, Python 3 standard library only):

    python3 profiles/tools/extract_structure.py ../shared/fhir/hl7.fhir.r4.examples-4.0.1.tgz profiles/r4-structure.json

The first argument is either a FHIR NPM package (.tgz) holding the core StructureDefinitions as
package/StructureDefinition-*.json, or a directory holding the two definition bundles profiles-types.json and
profiles-resources.json; the second is the file to write. The output is deterministic (same input, same bytes).

Which source: the committed file is generated from the official package hl7.fhir.r4.examples-4.0.1.tgz, whose
core StructureDefinitions are HL7's R4 4.0.1 ones. The bundles in ../shared/fhir/r4-definitions are NOT
unmodified R4: they come from a vendor distribution (Medplum) that adds Meta.project/author/account/...,
Binary.url, DeviceDefinition.classification, ObservationDefinition.publisher, R5 elements in EvidenceVariable
and ResearchStudy, an R4B SubscriptionStatus resource (fhirVersion 4.3.0), and medplum.com reference targets.
The tool refuses such input (any fhirVersion other than 4.0.1, or a profile outside hl7.org/fhir) instead of
extracting it, so running it on that directory stops with an explanation.

Output (minified JSON):

    {
      "fhirVersion": "4.0.1",
      "primitives": { "<code>": {"json": "boolean" | "number" | "string", "regex": "<from the definitions>"} },
      "types": {
        "<name>": {
          "kind": "resource" | "complex-type" | "backbone",
          "abstract": true,                       (only Element and BackboneElement)
          "elements": {
            "<element name>": {
              "min": 0, "max": 1 | "*",
              "types": ["<type code>", ...],      (absent when contentReference is set)
              "contentReference": "<type key>",   (recursive structures, e.g. Questionnaire.item.item)
              "system": true                      (see below)
            }
          }
        }
      }
    }

- "types" lists every concrete resource type (kind "resource", not abstract), every complex datatype
  (kind "complex-type", base specializations only: the SimpleQuantity/MoneyQuantity constraints are profiles,
  not structures), and every inline structure (an element of type BackboneElement or Element that has child
  elements in the snapshot, e.g. Patient.contact, Timing.repeat). Inline structures are keyed by their element
  path; an element pointing to one names that path as its type ("contact": {"types": ["Patient.contact"]}).
  The key contains a dot, so it can never clash with a type name.
- contentReference ("#Questionnaire.item") is resolved to the key of the referenced inline structure.
- Choice elements keep their "[x]" name ("value[x]") with all their types; the validator expands them to the
  JSON property names (valueString, valueQuantity, ...), FHIR R4 4.0.1 §2.6.2.5 / formats.html#choice.
- Element.id, Extension.url and Resource.id are typed in the snapshot with FHIRPath System types
  (http://hl7.org/fhirpath/System.String) plus the structuredefinition-fhir-type extension naming the FHIR type;
  the extension's type is used and "system": true is set, because such elements are plain JSON properties
  that cannot carry a "_name" sibling with extensions.
- Resource.id is given type "id" (FHIR R4 4.0.1 resource.html#id), not the "string" its snapshot says.
- Primitive types: "json" is the JSON type of the value (FHIR R4 4.0.1 §2.6.2.2: boolean as JSON boolean,
  integer/positiveInt/unsignedInt/decimal as JSON number, every other primitive as JSON string); "regex" is the
  regular expression the definitions give in the type's "value" element (type[].extension, url
  http://hl7.org/fhir/StructureDefinition/regex). xhtml has none.
"""

import json
import os
import sys
import tarfile

FHIR_VERSION = "4.0.1"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
NUMBER_PRIMITIVES = {"integer", "positiveInt", "unsignedInt", "decimal"}
INLINE_TYPES = {"BackboneElement", "Element"}


def fail(message):
    sys.stderr.write("extract_structure: " + message + "\n")
    sys.exit(1)


def load_bundles(directory):
    """The StructureDefinitions of profiles-types.json and profiles-resources.json, in bundle order."""
    definitions = []
    for name in ("profiles-types.json", "profiles-resources.json"):
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as f:
                bundle = json.load(f)
        except (OSError, ValueError) as e:
            fail("cannot read %s: %s" % (path, e))
        for entry in bundle.get("entry", []):
            resource = entry.get("resource", {})
            if resource.get("resourceType") == "StructureDefinition":
                definitions.append(resource)
    return definitions


def load_package(path):
    """The StructureDefinitions of a FHIR NPM package (package/StructureDefinition-*.json), in name order."""
    definitions = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = sorted(
                (m for m in tar.getmembers() if m.isfile() and m.name.startswith("package/StructureDefinition-")),
                key=lambda m: m.name,
            )
            for member in members:
                resource = json.load(tar.extractfile(member))
                if resource.get("resourceType") == "StructureDefinition":
                    definitions.append(resource)
    except (OSError, tarfile.TarError, ValueError) as e:
        fail("cannot read %s: %s" % (path, e))
    return definitions


def core_definitions(definitions):
    """Keeps the base definitions of the FHIR R4 types and refuses anything that is not HL7's R4 4.0.1.

    A package also holds profiles and extensions (constraints on the base types): they are left out. A copy
    of the bundles that was edited by a third party (the one in ../shared/fhir/r4-definitions carries an R4B
    SubscriptionStatus and references to medplum.com profiles) is refused rather than silently extracted,
    because navet promises FHIR R4 4.0.1, not a vendor's variant of it.
    """
    selected = []
    for d in definitions:
        url = d.get("url", "")
        if d.get("derivation") == "constraint" or d.get("kind") not in ("primitive-type", "complex-type", "resource"):
            continue
        if url != CORE_PREFIX + d.get("type", ""):
            continue
        if d.get("fhirVersion") != FHIR_VERSION:
            fail(
                "%s has fhirVersion %s: these are not the unmodified FHIR R4 %s definitions; extract from the "
                "official package instead (hl7.fhir.r4.examples-4.0.1.tgz carries the core StructureDefinitions)"
                % (url, d.get("fhirVersion"), FHIR_VERSION)
            )
        for element in d["snapshot"]["element"]:
            for t in element.get("type", []):
                for ref in t.get("profile", []) + t.get("targetProfile", []):
                    if not ref.startswith("http://hl7.org/fhir/"):
                        fail(
                            "%s refers to %s: these are not the unmodified FHIR R4 %s definitions; extract from "
                            "the official package instead" % (element["path"], ref, FHIR_VERSION)
                        )
        selected.append(d)
    return selected


def extension_value(extensions, url):
    for ext in extensions or []:
        if ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def type_codes(element):
    """The FHIR type codes of an element, and whether it used FHIRPath System types."""
    codes = []
    system = False
    for t in element.get("type", []):
        code = t["code"]
        if code.startswith(SYSTEM_PREFIX):
            system = True
            code = extension_value(t.get("extension"), FHIR_TYPE_EXT) or "string"
        if code not in codes:
            codes.append(code)
    return codes, system


def parse_max(value):
    return "*" if value == "*" else int(value)


def extract_primitive(definition):
    code = definition["type"]
    regex = None
    for element in definition["snapshot"]["element"]:
        if element["path"] == code + ".value":
            for t in element.get("type", []):
                regex = regex or extension_value(t.get("extension"), REGEX_EXT)
    if code == "boolean":
        json_type = "boolean"
    elif code in NUMBER_PRIMITIVES:
        json_type = "number"
    else:
        json_type = "string"
    out = {"json": json_type}
    if regex is not None:
        out["regex"] = regex
    return out


def extract_structures(definition, kind, types):
    """Adds the definition's root structure and its inline structures to `types`."""
    elements = definition["snapshot"]["element"]
    root = elements[0]["path"]
    paths = [e["path"] for e in elements]
    # Paths that have children in this snapshot: those are the inline structures.
    parents = set()
    for p in paths:
        if "." in p:
            parents.add(p.rsplit(".", 1)[0])

    structures = {root: {"kind": kind, "elements": {}}}
    if definition.get("abstract"):
        structures[root]["abstract"] = True
    for element in elements[1:]:
        path = element["path"]
        parent, name = path.rsplit(".", 1)
        if parent not in structures:
            fail("%s: parent %s is not a structure" % (path, parent))
        if element["max"] == "0":
            # Prohibited in this definition (only xhtml.extension in R4 base): leave it out, so it is unknown.
            continue
        out = {"min": element["min"], "max": parse_max(element["max"])}
        if "contentReference" in element:
            target = element["contentReference"].lstrip("#")
            out["contentReference"] = target
        else:
            codes, system = type_codes(element)
            if element.get("base", {}).get("path") == "Resource.id":
                # The 4.0.1 snapshots give Resource.id the fhir-type "string", but resource.html defines the
                # logical id as type id ([A-Za-z0-9\-\.]{1,64}); servers rely on that when they build URLs.
                codes = ["id"]
            if not codes:
                fail("%s has neither type nor contentReference" % path)
            if path in parents:
                if codes not in (["BackboneElement"], ["Element"]):
                    fail("%s has children but type %s" % (path, codes))
                structures[path] = {"kind": "backbone", "elements": {}}
                codes = [path]
            elif any(c in INLINE_TYPES for c in codes):
                fail("%s is typed %s but has no children" % (path, codes))
            out["types"] = codes
            if system:
                out["system"] = True
        structures[parent]["elements"][name] = out

    for key, value in structures.items():
        if key in types:
            fail("duplicate structure " + key)
        types[key] = value


def check(result):
    """Every type an element names must be described, so the validator can rely on the file."""
    types = result["types"]
    primitives = result["primitives"]
    for key, structure in types.items():
        for name, element in structure["elements"].items():
            target = element.get("contentReference")
            if target is not None and types.get(target, {}).get("kind") != "backbone":
                fail("%s.%s: contentReference to unknown structure %s" % (key, name, target))
            for code in element.get("types", []):
                if code not in types and code not in primitives and code != "Resource":
                    fail("%s.%s: unknown type %s" % (key, name, code))


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    source, output = argv[1], argv[2]
    if os.path.isdir(source):
        definitions = load_bundles(source)
    else:
        definitions = load_package(source)
    definitions = core_definitions(definitions)

    primitives = {}
    types = {}
    for d in definitions:
        kind = d.get("kind")
        if kind == "primitive-type":
            primitives[d["type"]] = extract_primitive(d)
        elif kind == "complex-type":
            extract_structures(d, "complex-type", types)
        elif kind == "resource" and not d.get("abstract"):
            extract_structures(d, "resource", types)
        # Abstract resources (Resource, DomainResource) are already in every concrete resource's snapshot;
        # logical models (MetadataResource) are not instances.

    result = {
        "fhirVersion": FHIR_VERSION,
        "primitives": dict(sorted(primitives.items())),
        "types": dict(sorted(types.items())),
    }
    check(result)
    text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
        f.write("\n")
    resources = sum(1 for t in types.values() if t["kind"] == "resource")
    complex_types = sum(1 for t in types.values() if t["kind"] == "complex-type")
    backbones = sum(1 for t in types.values() if t["kind"] == "backbone")
    sys.stderr.write(
        "wrote %s: %d bytes, %d primitive types, %d resource types, %d complex types, %d inline structures\n"
        % (output, len(text.encode("utf-8")) + 1, len(primitives), resources, complex_types, backbones)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
