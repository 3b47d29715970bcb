#!/usr/bin/env python3
"""Generate navet's demo seed: the Skåne demo region as one FHIR R4 (4.0.1) transaction Bundle.

Why: `navet serve` with the demo configuration loads `src/demo/demo-seed.json` into a fresh data directory, so a
newcomer can run every story at once (spec/demo-region.md). The JSON is generated rather than hand-written so the
ids stay exactly those of spec/demo-region.md, the references between entries stay consistent, and the identity
numbers are checked (Luhn and date) every time the file is made.

How to run (Python 3 standard library only), from the repository root:

    python3 src/demo/make_demo_seed.py > src/demo/demo-seed.json

The output is deterministic: the same script always writes the same bytes. Edit the tables below, never the JSON.

ALL OF THIS IS TEST DATA. The HSA-ids are made up in the HSA format, the identity numbers are fictitious numbers
that pass the check-digit test, and the names, streets and postal codes are invented.

What the Bundle holds (every entry is a `POST` with `ifNoneExist` on the resource's identifier, so loading it into
a data directory that already has the data creates nothing new):
- Location per municipality (mode `kind`), the coverage areas of the teams;
- Organization per principal, Practitioner + PractitionerRole per demo user, HealthcareService per team;
- Patient per demo patient, `generalPractitioner` = the vårdcentral the patient is listed at.

Decisions written down here (FHIR R4 4.0.1 element names; spec/demo-region.md for the data):
- fullUrl: `urn:uuid:<uuid5>`, the UUIDv5 of `<identifier system>|<identifier value>` in the namespace
  UUIDv5(NAMESPACE_URL, "http://navet.example/demo-seed"). References between entries use these urn:uuids
  (FHIR R4 §3.1.0.11.2 http.html#trules: the server rewrites them to the ids it assigns).
- `http://navet.example/...` is a PLACEHOLDER namespace for navet's own code systems, identifier systems and
  extensions until the project has a real canonical domain:
    CodeSystem/principal-kind  Organization.type: kommun, vardcentral, sjukhus, mtn, asih, auditor, system
    CodeSystem/role            PractitionerRole.code: LAK läkare, SSK sjuksköterska, KUR kurator,
                               LOG loggkontrollant (the auditor user)
    CodeSystem/team-type       HealthcareService.category: mtn, asih
    identifier/itacih-enhet    HealthcareService.identifier: the itACiH unit code (MTN-KRISTIANSTAD, ...)
    identifier/practitioner-role  PractitionerRole.identifier, value `<user HSA-id>@<organization HSA-id>`: a
                               PractitionerRole needs an identifier for `ifNoneExist`, and the demo region
                               gives the commission no id of its own
    StructureDefinition/municipality  extension (valueCoding, SCB kommunkod) on Organization (the
                               municipalities a principal serves, one extension each) and Patient (the
                               municipality the patient lives in)
- Municipality codes (SCB kommunkod, four digits) use the code system `urn:oid:1.2.752.129.2.2.1.17`, Inera's
  KV Kommun ("kommunkod enligt SCB"). Note: `1.2.752.129.2.2.1.18` is KV Län (the two-digit länskod), not the
  kommunkod. The display is the municipality name.
- HSA-ids: `urn:oid:1.2.752.29.4.19` (DESIGN.md, "Principals and identities").
- Patient identifiers: HL7 Sweden basprofiler systems `http://electronichealth.se/identifier/personnummer` and
  `.../samordningsnummer`, 12 digits without separator. Gender follows the national number (the digit before
  the check digit: odd male, even female), the legal sex it encodes; birthDate is the date in the number (for a
  samordningsnummer the day minus 60).
- Skyddad folkbokföring (Greta Berg): `meta.security` carries HL7 Sweden's own label, code
  `skyddadFolkbokforing` in `http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel` (Swedish Base Profiles
  hl7se.fhir.base 1.1.0, CodeSystem SecurityLabel, bound extensibly to SEBasePatient.meta.security through
  SecurityLabelVS), plus the generic HL7 confidentiality code `R` (restricted) from
  `http://terminology.hl7.org/CodeSystem/v3-Confidentiality`, which any FHIR tool understands. Her
  (fictitious) address is stored as for everyone else: hiding it from other principals is the server's job.
- Team hours are local time, Europe/Stockholm (spec/demo-region.md); R4 HealthcareService.availableTime has
  no time zone element. ASIH is `allDay` on every day.
"""

import json
import sys
import uuid
from datetime import date

# --- Namespaces -------------------------------------------------------------------------------------------------

NAVET = "http://navet.example"  # placeholder domain, see the docstring
HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"
KOMMUN_SYSTEM = "urn:oid:1.2.752.129.2.2.1.17"  # KV Kommun, kommunkod enligt SCB
MUNICIPALITY_EXT = NAVET + "/StructureDefinition/municipality"
PRINCIPAL_KIND_SYSTEM = NAVET + "/CodeSystem/principal-kind"
ROLE_SYSTEM = NAVET + "/CodeSystem/role"
TEAM_TYPE_SYSTEM = NAVET + "/CodeSystem/team-type"
ITACIH_UNIT_SYSTEM = NAVET + "/identifier/itacih-enhet"
PRACTITIONER_ROLE_SYSTEM = NAVET + "/identifier/practitioner-role"
PERSONNUMMER_SYSTEM = "http://electronichealth.se/identifier/personnummer"
SAMORDNINGSNUMMER_SYSTEM = "http://electronichealth.se/identifier/samordningsnummer"
SE_SECURITY_LABEL_SYSTEM = "http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel"
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
LOCATION_PHYSICAL_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/location-physical-type"

UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, NAVET + "/demo-seed")

# --- The demo region (spec/demo-region.md) ----------------------------------------------------------------------

# kommunkod -> (name, name of the municipality as an organisation)
MUNICIPALITIES = {
    "1290": ("Kristianstad", "Kristianstads kommun"),
    "1256": ("Östra Göinge", "Östra Göinge kommun"),
    "1272": ("Bromölla", "Bromölla kommun"),
    "1286": ("Ystad", "Ystads kommun"),
    "1291": ("Simrishamn", "Simrishamns kommun"),
    "1265": ("Sjöbo", "Sjöbo kommun"),
    "1264": ("Skurup", "Skurups kommun"),
    "1270": ("Tomelilla", "Tomelilla kommun"),
}
ALL_MUNICIPALITIES = list(MUNICIPALITIES)

PRINCIPAL_KINDS = {
    "kommun": "Kommun",
    "vardcentral": "Vårdcentral",
    "sjukhus": "Sjukhus",
    "mtn": "Mobilt team närsjukvård",
    "asih": "Avancerad sjukvård i hemmet",
    "auditor": "Loggkontroll",
    "system": "Systemintegration",
    "ambulans": "Ambulanssjukvård",
}

# (name, HSA-id, kind, municipalities); the demo client ids live in the demo configuration, not in FHIR.
PRINCIPALS = [
    ("Kristianstads kommun, hemsjukvården", "SE2120000999-HSJ1290", "kommun", ["1290"]),
    ("Ystads kommun, hemsjukvården", "SE2120000999-HSJ1286", "kommun", ["1286"]),
    ("Vårdcentralen Näsby, Kristianstad", "SE2321000255-VC101", "vardcentral", ["1290"]),
    ("Vårdcentralen Ystad", "SE2321000255-VC201", "vardcentral", ["1286"]),
    ("Centralsjukhuset Kristianstad (CSK)", "SE2321000255-CSK01", "sjukhus", []),
    ("Lasarettet i Ystad", "SE2321000255-LYS01", "sjukhus", []),
    ("MTN Kristianstad", "SE2321000255-MTN01", "mtn", ["1290", "1256", "1272"]),
    ("MTN Ystad", "SE2321000255-MTN02", "mtn", ["1286", "1291", "1265", "1264", "1270"]),
    ("ASIH Skåne (demo unit)", "SE2321000255-ASIH1", "asih", ALL_MUNICIPALITIES),
    ("Region Skåne, loggkontroll", "SE2321000255-LOG01", "auditor", []),
    ("itACiH (system integration)", "SE2321000255-ITACIH", "system", []),
    # (v2) The dispatch chain: P0501's care unit.
    ("Ambulanssjukvården Skåne", "SE2321000255-AMB01", "ambulans", ALL_MUNICIPALITIES),
]

ROLES = {
    "LAK": "Läkare",
    "SSK": "Sjuksköterska",
    "KUR": "Kurator",
    "LOG": "Loggkontrollant",
}

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
WEEKEND = ["sat", "sun"]

# (itACiH unit code, name, providing principal's HSA-id, team type, availableTime entries)
TEAMS = [
    ("MTN-KRISTIANSTAD", "MTN Kristianstad", "SE2321000255-MTN01", "mtn",
     [{"daysOfWeek": WEEKDAYS, "availableStartTime": "08:00:00", "availableEndTime": "17:00:00"}]),
    ("MTN-YSTAD", "MTN Ystad", "SE2321000255-MTN02", "mtn",
     [{"daysOfWeek": WEEKDAYS, "availableStartTime": "07:00:00", "availableEndTime": "19:00:00"},
      {"daysOfWeek": WEEKEND, "availableStartTime": "08:00:00", "availableEndTime": "16:00:00"}]),
    ("ASIH-SKANE", "ASIH Skåne", "SE2321000255-ASIH1", "asih",
     [{"daysOfWeek": WEEKDAYS + WEEKEND, "allDay": True}]),
]
TEAM_TYPES = {
    "mtn": "Mobilt team närsjukvård",
    "asih": "Avancerad sjukvård i hemmet",
}

# (HSA-id, role, care unit HSA-id, given name, family name). The names are invented.
USERS = [
    ("SE2120000999-P1290A", "SSK", "SE2120000999-HSJ1290", "Anna", "Lindqvist"),
    ("SE2120000999-P1286A", "SSK", "SE2120000999-HSJ1286", "Eva", "Mårtensson"),
    ("SE2321000255-P0001", "LAK", "SE2321000255-CSK01", "Johan", "Ekström"),
    ("SE2321000255-P0002", "LAK", "SE2321000255-LYS01", "Karin", "Sjöberg"),
    ("SE2321000255-P0101", "SSK", "SE2321000255-MTN01", "Lena", "Bengtsson"),
    ("SE2321000255-P0102", "LAK", "SE2321000255-MTN01", "Per", "Axelsson"),
    ("SE2321000255-P0103", "KUR", "SE2321000255-MTN01", "Sofia", "Hedlund"),
    ("SE2321000255-P0201", "SSK", "SE2321000255-MTN02", "Emma", "Nordin"),
    ("SE2321000255-P0301", "LAK", "SE2321000255-VC101", "Mikael", "Håkansson"),
    ("SE2321000255-P0401", "LAK", "SE2321000255-VC201", "Ingrid", "Wallin"),
    ("SE2321000255-P0900", "LOG", "SE2321000255-LOG01", "Lars", "Öberg"),
    # (v2) MTN Ystad's physician and the ambulance nurse.
    ("SE2321000255-P0202", "LAK", "SE2321000255-MTN02", "Maria", "Ek"),
    ("SE2321000255-P0501", "SSK", "SE2321000255-AMB01", "Oskar", "Lindgren"),
]

# (national number as in the spec, given, family, kommunkod, listed at (HSA-id), street, postal code, town,
#  skyddad folkbokföring). Streets and postal codes are invented; the town is the municipality's main town.
PATIENTS = [
    ("19121212-1212", "Tolvan", "Tolvansson", "1290", "SE2321000255-VC101",
     "Lingonvägen 12", "291 43", "Kristianstad", False),
    ("19400512-1233", "Astrid", "Nilsson", "1290", "SE2321000255-VC101",
     "Blåbärsstigen 3", "291 59", "Kristianstad", False),
    ("19380303-2451", "Karl", "Persson", "1286", "SE2321000255-VC201",
     "Korngatan 7", "271 42", "Ystad", False),
    ("19450822-3577", "Britt", "Olsson", "1286", "SE2321000255-VC201",
     "Vallmovägen 14", "271 39", "Ystad", False),
    ("19330115-4682", "Sven", "Holm", "1265", "SE2321000255-VC201",
     "Ekbacken 2", "275 33", "Sjöbo", False),
    ("19500972-2397", "Maria", "Lind", "1290", "SE2321000255-VC101",
     "Tallvägen 6", "291 36", "Kristianstad", False),
    ("19271124-8829", "Greta", "Berg", "1290", "SE2321000255-VC101",
     "Syrénvägen 17", "291 65", "Kristianstad", True),
]

# --- Helpers ----------------------------------------------------------------------------------------------------


def full_url(system, value):
    """The entry's fullUrl: a urn:uuid derived from its identifier, stable across runs."""
    return "urn:uuid:" + str(uuid.uuid5(UUID_NAMESPACE, system + "|" + value))


def entry(resource_type, system, value, resource):
    return {
        "fullUrl": full_url(system, value),
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource_type,
            "ifNoneExist": "identifier=" + system + "|" + value,
        },
    }


def coding(system, code, display):
    return {"system": system, "code": code, "display": display}


def municipality_extension(code):
    return {"url": MUNICIPALITY_EXT, "valueCoding": coding(KOMMUN_SYSTEM, code, MUNICIPALITIES[code][0])}


def reference(system, value, display):
    return {"reference": full_url(system, value), "display": display}


def luhn_ok(digits):
    """Luhn check over the 10-digit form (YYMMDDNNNC), as Skatteverket computes the check digit."""
    total = 0
    for i, ch in enumerate(digits):
        n = int(ch) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def parse_national_id(number):
    """'YYYYMMDD-NNNC' -> (12-digit value, system, birth date, gender); refuses a number that fails the checks."""
    value = number.replace("-", "")
    if len(value) != 12 or not value.isdigit():
        raise SystemExit(f"{number}: not 12 digits")
    if not luhn_ok(value[2:]):
        raise SystemExit(f"{number}: fails the Luhn check")
    year, month, day = int(value[0:4]), int(value[4:6]), int(value[6:8])
    system = PERSONNUMMER_SYSTEM
    if day > 60:  # samordningsnummer: day of birth + 60
        system, day = SAMORDNINGSNUMMER_SYSTEM, day - 60
    try:
        birth = date(year, month, day)
    except ValueError:
        raise SystemExit(f"{number}: no such birth date")
    gender = "male" if int(value[10]) % 2 == 1 else "female"
    return value, system, birth.isoformat(), gender


# --- Resources --------------------------------------------------------------------------------------------------


def locations():
    for code, (name, org_name) in MUNICIPALITIES.items():
        yield entry("Location", KOMMUN_SYSTEM, code, {
            "resourceType": "Location",
            "identifier": [{"system": KOMMUN_SYSTEM, "value": code}],
            "status": "active",
            "name": name,
            "alias": [org_name],
            "mode": "kind",
            "physicalType": {"coding": [coding(LOCATION_PHYSICAL_TYPE_SYSTEM, "jdn", "Jurisdiction")]},
        })


def organizations():
    for name, hsa, kind, municipalities in PRINCIPALS:
        org = {"resourceType": "Organization"}
        if municipalities:  # no empty arrays in FHIR JSON: principals without municipalities get none
            org["extension"] = [municipality_extension(m) for m in municipalities]
        org.update({
            "identifier": [{"system": HSA_SYSTEM, "value": hsa}],
            "active": True,
            "type": [{"coding": [coding(PRINCIPAL_KIND_SYSTEM, kind, PRINCIPAL_KINDS[kind])]}],
            "name": name,
        })
        yield entry("Organization", HSA_SYSTEM, hsa, org)


def principal_name(hsa):
    return next(name for name, h, _, _ in PRINCIPALS if h == hsa)


def team_of(hsa):
    """The team a care unit runs, if any (for PractitionerRole.healthcareService)."""
    return next((t for t in TEAMS if t[2] == hsa), None)


def healthcare_services():
    for unit, name, provider, team_type, hours in TEAMS:
        municipalities = next(m for _, h, _, m in PRINCIPALS if h == provider)
        yield entry("HealthcareService", ITACIH_UNIT_SYSTEM, unit, {
            "resourceType": "HealthcareService",
            "identifier": [{"system": ITACIH_UNIT_SYSTEM, "value": unit}],
            "active": True,
            "providedBy": reference(HSA_SYSTEM, provider, principal_name(provider)),
            "category": [{"coding": [coding(TEAM_TYPE_SYSTEM, team_type, TEAM_TYPES[team_type])]}],
            "name": name,
            "coverageArea": [reference(KOMMUN_SYSTEM, m, MUNICIPALITIES[m][0]) for m in municipalities],
            "availableTime": hours,
        })


def practitioners():
    for hsa, _, _, given, family in USERS:
        yield entry("Practitioner", HSA_SYSTEM, hsa, {
            "resourceType": "Practitioner",
            "identifier": [{"system": HSA_SYSTEM, "value": hsa}],
            "active": True,
            "name": [{"use": "official", "family": family, "given": [given]}],
        })


def practitioner_roles():
    for hsa, role, unit, given, family in USERS:
        key = hsa + "@" + unit
        resource = {
            "resourceType": "PractitionerRole",
            "identifier": [{"system": PRACTITIONER_ROLE_SYSTEM, "value": key}],
            "active": True,
            "practitioner": reference(HSA_SYSTEM, hsa, given + " " + family),
            "organization": reference(HSA_SYSTEM, unit, principal_name(unit)),
            "code": [{"coding": [coding(ROLE_SYSTEM, role, ROLES[role])]}],
        }
        team = team_of(unit)
        if team is not None:
            resource["healthcareService"] = [reference(ITACIH_UNIT_SYSTEM, team[0], team[1])]
        yield entry("PractitionerRole", PRACTITIONER_ROLE_SYSTEM, key, resource)


def patients():
    for number, given, family, kommun, listed_at, street, postal, town, protected in PATIENTS:
        value, system, birth, gender = parse_national_id(number)
        patient = {"resourceType": "Patient"}
        if protected:
            patient["meta"] = {"security": [
                coding(SE_SECURITY_LABEL_SYSTEM, "skyddadFolkbokforing", "Skyddad folkbokföring"),
                coding(CONFIDENTIALITY_SYSTEM, "R", "restricted"),
            ]}
        patient.update({
            "extension": [municipality_extension(kommun)],
            "identifier": [{"system": system, "value": value}],
            "active": True,
            "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": gender,
            "birthDate": birth,
            "address": [{
                "use": "home",
                "type": "both",
                "line": [street],
                "city": town,
                "postalCode": postal,
                "country": "SE",
            }],
            "generalPractitioner": [reference(HSA_SYSTEM, listed_at, principal_name(listed_at))],
        })
        yield entry("Patient", system, value, patient)


def bundle():
    entries = [
        *locations(),
        *organizations(),
        *healthcare_services(),
        *practitioners(),
        *practitioner_roles(),
        *patients(),
    ]
    urls = [e["fullUrl"] for e in entries]
    if len(set(urls)) != len(urls):
        raise SystemExit("two entries derive the same fullUrl")
    known = set(urls)
    for e in entries:
        for ref in _references(e["resource"]):
            if ref.startswith("urn:uuid:") and ref not in known:
                raise SystemExit(f"{e['fullUrl']}: reference {ref} names no entry")
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _references(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                yield v
            else:
                yield from _references(v)
    elif isinstance(node, list):
        for v in node:
            yield from _references(v)


if __name__ == "__main__":
    sys.stdout.reconfigure(encoding="utf-8", newline="\n")
    json.dump(bundle(), sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
