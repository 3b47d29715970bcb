#!/usr/bin/env python3
"""Extract the terminology bindings and invariants of the FHIR R4 (4.0.1) definitions navet checks on write.

The structure table (extract_structure.py, r4-structure.json) says what a resource may contain; this tool
extracts the two other parts of the base definitions navet validates against, in the same way (from the
official package, deterministic output, committed and embedded in the binary):

- profiles/r4-valuesets.json: every `required` binding on an element of type `code`, keyed like the
  structure table (a type name or an inline structure's path, then the element name), and the expansion of
  each value set bound that way, computed from the ValueSets and CodeSystems of the package
  (compose.include / exclude of whole code systems, listed concepts, other value sets, and the is-a /
  descendent-of filters on a hierarchical code system). A value set that cannot be expanded from the
  package (codes from external systems such as MIME types, languages, currencies, UCUM) is listed under
  "notExpanded" with the reason, and its bindings are not checked.
- profiles/r4-invariants.json: every constraint (invariant) of the base definitions: key, severity, human
  text and FHIRPath expression, keyed by the structure or element it is defined on. Which expressions navet
  can evaluate is decided by its evaluator (src/fhir/validate/fhirpath.rs) when it loads the file; the
  ones it cannot are reported by a unit test, not hidden.

Usage (from the repository root, Python 3 standard library only):

    python3 profiles/tools/extract_validation.py ../shared/fhir/hl7.fhir.r4.examples-4.0.1.tgz profiles

Bindings on CodeableConcept/Coding elements (14 required ones in R4) are not extracted: checking them needs
the codings' systems as well, and the examples bind several of them to codes of external systems.
"""

import json
import os
import sys
import tarfile

FHIR_VERSION = "4.0.1"
CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


def fail(message):
    sys.stderr.write("extract_validation: " + message + "\n")
    sys.exit(1)


def load(path):
    by_kind = {"StructureDefinition": [], "ValueSet": [], "CodeSystem": []}
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
            for member in members:
                name = member.name
                if not name.startswith("package/") or "/" in name[len("package/"):]:
                    continue
                kind = name[len("package/"):].split("-", 1)[0]
                if kind not in by_kind or not name.endswith(".json"):
                    continue
                resource = json.load(tar.extractfile(member))
                if resource.get("resourceType") == kind:
                    by_kind[kind].append(resource)
    except (OSError, tarfile.TarError, ValueError) as e:
        fail("cannot read %s: %s" % (path, e))
    return by_kind


def core(definitions):
    out = []
    for d in definitions:
        if d.get("derivation") == "constraint" or d.get("kind") not in ("complex-type", "resource"):
            continue
        if d.get("url") != CORE_PREFIX + d.get("type", "") or d.get("abstract") and d.get("kind") == "resource":
            continue
        if d.get("fhirVersion") != FHIR_VERSION:
            fail("%s has fhirVersion %s" % (d.get("url"), d.get("fhirVersion")))
        out.append(d)
    return out


def structure_key(definition, path):
    """The r4-structure.json key of the structure that holds `path`'s element, and the element name."""
    parent, name = path.rsplit(".", 1)
    root = definition["snapshot"]["element"][0]["path"]
    return (root if parent == root else parent), name


class Terminology:
    def __init__(self, value_sets, code_systems):
        self.value_sets = {v["url"]: v for v in value_sets}
        self.code_systems = {c["url"]: c for c in code_systems}

    def concepts(self, system):
        cs = self.code_systems.get(system)
        if cs is None:
            raise Unexpandable("code system %s is not in the package" % system)
        if cs.get("content") != "complete":
            raise Unexpandable("code system %s has content %s" % (system, cs.get("content")))
        return cs.get("concept", [])

    def all_codes(self, system):
        out = []

        def walk(concepts):
            for c in concepts:
                out.append(c["code"])
                walk(c.get("concept", []))

        walk(self.concepts(system))
        return out

    def filtered(self, system, f):
        if f.get("property") != "concept" or f.get("op") not in ("is-a", "descendent-of"):
            raise Unexpandable("filter %s %s on %s" % (f.get("property"), f.get("op"), system))
        out = []

        def find(concepts):
            for c in concepts:
                if c["code"] == f.get("value"):
                    return c
                hit = find(c.get("concept", []))
                if hit:
                    return hit
            return None

        def walk(concepts):
            for c in concepts:
                out.append(c["code"])
                walk(c.get("concept", []))

        top = find(self.concepts(system))
        if top is None:
            raise Unexpandable("filter value %s not in %s" % (f.get("value"), system))
        if f["op"] == "is-a":
            out.append(top["code"])
        walk(top.get("concept", []))
        return out

    def part(self, part, seen):
        codes = set()
        if part.get("system"):
            if part.get("concept"):
                codes |= {c["code"] for c in part["concept"]}
            elif part.get("filter"):
                sets = [set(self.filtered(part["system"], f)) for f in part["filter"]]
                codes |= set.intersection(*sets)
            else:
                codes |= set(self.all_codes(part["system"]))
        for vs in part.get("valueSet", []):
            inner = self.expand(vs, seen)
            codes = inner if not part.get("system") and codes == set() else codes & inner
        return codes

    def expand(self, url, seen=()):
        url = url.split("|", 1)[0]
        if url in seen:
            raise Unexpandable("value set %s includes itself" % url)
        vs = self.value_sets.get(url)
        if vs is None:
            raise Unexpandable("value set %s is not in the package" % url)
        compose = vs.get("compose")
        if not compose:
            raise Unexpandable("value set %s has no compose" % url)
        codes = set()
        for include in compose.get("include", []):
            codes |= self.part(include, seen + (url,))
        for exclude in compose.get("exclude", []):
            codes -= self.part(exclude, seen + (url,))
        return codes


class Unexpandable(Exception):
    pass


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    source, out_dir = argv[1], argv[2]
    loaded = load(source)
    definitions = core(loaded["StructureDefinition"])
    terminology = Terminology(loaded["ValueSet"], loaded["CodeSystem"])

    bindings = {}
    wanted = set()
    invariants = {}
    for d in definitions:
        elements = d["snapshot"]["element"]
        root = elements[0]["path"]
        for element in elements:
            path = element["path"]
            codes = [t["code"] for t in element.get("type", [])]
            binding = element.get("binding")
            if "." in path and binding and binding.get("strength") == "required" and codes == ["code"]:
                key, name = structure_key(d, path)
                url = binding["valueSet"].split("|", 1)[0]
                bindings.setdefault(key, {})[name] = url
                wanted.add(url)
            for c in element.get("constraint", []):
                # ele-1 (every element has a value or children) is the structure check's "no empty objects,
                # strings or arrays"; it is on every element, so it is left out rather than repeated.
                if c["key"] == "ele-1" or "expression" not in c:
                    continue
                if "." in path:
                    key, name = structure_key(d, path)
                else:
                    key, name = root, None
                # A constraint inherited from a datatype or from DomainResource is repeated on every use;
                # keep it once per place (datatype constraints live on the datatype's root).
                if c.get("source", "").startswith(CORE_PREFIX):
                    source_type = c["source"][len(CORE_PREFIX):]
                    if source_type not in (d["type"], "DomainResource") and "." in path:
                        continue
                entry = {"key": c["key"], "severity": c["severity"], "human": c.get("human", ""),
                         "expression": c["expression"]}
                if name is not None:
                    entry["element"] = name
                bucket = invariants.setdefault(key, [])
                if entry not in bucket:
                    bucket.append(entry)

    value_sets = {}
    not_expanded = {}
    for url in sorted(wanted):
        try:
            codes = terminology.expand(url)
            if not codes:
                raise Unexpandable("expands to no codes")
            value_sets[url] = sorted(codes)
        except Unexpandable as e:
            not_expanded[url] = str(e)

    vs_out = {
        "fhirVersion": FHIR_VERSION,
        "bindings": {k: dict(sorted(v.items())) for k, v in sorted(bindings.items())},
        "valueSets": value_sets,
        "notExpanded": not_expanded,
    }
    inv_out = {"fhirVersion": FHIR_VERSION, "invariants": dict(sorted(invariants.items()))}
    for name, data in (("r4-valuesets.json", vs_out), ("r4-invariants.json", inv_out)):
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
    count = sum(len(v) for v in bindings.values())
    inv_count = sum(len(v) for v in invariants.values())
    sys.stderr.write(
        "wrote %s: %d required code bindings, %d value sets expanded, %d not expanded; %d invariants\n"
        % (out_dir, count, len(value_sets), len(not_expanded), inv_count)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
