#!/usr/bin/env python3
"""Extract, per FHIR R4 (4.0.1) resource type, the top-level elements that `_summary` keeps.

Usage (from the repository root):

    python3 conformance/tools/extract_summary_elements.py ../shared/fhir/r4-definitions conformance/summary-elements.json

Reads profiles-resources.json (only http://hl7.org/fhir/ StructureDefinitions) and writes, for every concrete
resource type, `{"summary": [...], "mandatory": [...]}`: the names of its top-level elements marked
`isSummary` (FHIR R4 4.0.1 search.html#summary, `_summary=true`) and those with min >= 1 (kept by every
subset, `_summary=text` and `_elements`). A choice element keeps its `[x]` (`deceased[x]`). The output is
committed and embedded in the server (a user's machine has no ../shared). Python 3 standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    bundle = json.loads((Path(argv[1]) / "profiles-resources.json").read_text(encoding="utf-8"))
    out: dict[str, dict[str, list[str]]] = {}
    for entry in bundle.get("entry", []):
        sd = entry.get("resource", {})
        if sd.get("resourceType") != "StructureDefinition" or sd.get("kind") != "resource":
            continue
        # Only R4 (4.0.1): Medplum's copy also carries R4B's SubscriptionStatus (4.3.0).
        if sd.get("abstract") or not sd.get("url", "").startswith("http://hl7.org/fhir/") \
                or sd.get("fhirVersion", "4.0.1") != "4.0.1":
            continue
        name = sd["id"]
        summary, mandatory = [], []
        for element in sd.get("snapshot", {}).get("element", []):
            path = element.get("path", "")
            parts = path.split(".")
            if len(parts) != 2 or parts[0] != name:
                continue
            leaf = parts[1]
            if element.get("isSummary"):
                summary.append(leaf)
            if element.get("min", 0) >= 1:
                mandatory.append(leaf)
        out[name] = {"summary": summary, "mandatory": mandatory}
    lines = [json.dumps(k) + ":" + json.dumps(out[k], separators=(",", ":")) for k in sorted(out)]
    Path(argv[2]).write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    print(f"wrote {argv[2]}: {len(out)} resource types", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
