"""navet driven by a real FHIR client (fhirpy), every answer validated with fhir.resources.

fhir.resources 8.x ships R5 (default) and R4B models, no R4; R4B is R4 plus fixes in the resources used here
(Patient, ServiceRequest, Task, Bundle, OperationOutcome), so it is the closest validator. Run by run.sh.
"""

import os
import random
import uuid

import pytest
import requests
from fhir.resources.R4B import get_fhir_model_class
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import BaseFHIRError, OperationOutcome

BASE = os.environ["NAVET_BASE"]
FHIR = BASE + "/fhir"
PNR = "http://electronichealth.se/identifier/personnummer"
RUN = uuid.uuid4().hex[:8]
SEEN = []  # resource types validated so far, nested ones included


def valid(data):
    """Validate one resource (dict or fhirpy resource) with its R4B model; a failure raises."""
    data = dict(data) if not isinstance(data, dict) else data
    model = get_fhir_model_class(data["resourceType"])
    model.model_validate(_plain(data))
    SEEN.append(data["resourceType"])
    if data["resourceType"] == "Bundle":
        for entry in data.get("entry", []):
            if "resource" in entry:
                valid(entry["resource"])
    return data


def _plain(value):
    # fhirpy resources are dict subclasses holding more of them; pydantic wants plain values.
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def personnummer(rng):
    """A valid 12-digit personnummer (Luhn check digit), born 1930-1949, unique per run."""
    y, m, d = rng.randint(1930, 1949), rng.randint(1, 12), rng.randint(1, 28)
    serial = rng.randint(100, 999)
    nine = f"{y % 100:02}{m:02}{d:02}{serial:03}"
    total = 0
    for i, ch in enumerate(nine):
        p = int(ch) * (2 if i % 2 == 0 else 1)
        total += p // 10 + p % 10
    check = (10 - total % 10) % 10
    return f"{y}{m:02}{d:02}-{serial:03}{check}"


RNG = random.Random(RUN)


_orig_request = requests.request


def _validating_request(method, url, **kw):
    r = _orig_request(method, url, **kw)
    if r.content and "json" in r.headers.get("content-type", ""):
        body = r.json()
        if isinstance(body, dict) and "resourceType" in body:
            valid(body)
    return r


# fhirpy 2.3's sync client calls requests.request for every call: wrap it so nothing escapes validation.
requests.request = _validating_request


def client(token_env):
    return SyncFHIRClient(FHIR, authorization="Bearer " + os.environ[token_env])


CSK = client("NAVET_TOKEN_CSK")
MTN = client("NAVET_TOKEN_MTN")


def new_patient(c, family="Åkesson"):
    return c.resource(
        "Patient",
        identifier=[{"system": PNR, "value": personnummer(RNG)}],
        name=[{"family": family, "given": ["Test" + RUN]}],
        gender="female",
        birthDate="1940-01-01",
    )


def test_crud():
    p = new_patient(CSK)
    p.save()
    assert p.id and p["meta"]["versionId"] == "1"
    got = CSK.resources("Patient").search(_id=p.id).get()
    assert got["name"][0]["family"] == "Åkesson"
    got["gender"] = "other"
    got.save()
    again = CSK.reference("Patient", p.id).to_resource()
    assert again["gender"] == "other" and again["meta"]["versionId"] == "2"
    again.delete()
    with pytest.raises(Exception):
        CSK.reference("Patient", p.id).to_resource()


def test_search_paging_fetch_all_and_count():
    family = "Pagingsson" + RUN
    ids = set()
    for _ in range(7):
        p = new_patient(CSK, family)
        p.save()
        ids.add(p.id)
    search = CSK.resources("Patient").search(family=family.lower()).limit(3)
    first = search.fetch()
    assert len(first) == 3
    everything = search.fetch_all()
    assert {r.id for r in everything} == ids, "fetch_all walks every page exactly once"
    assert len(everything) == 7
    assert CSK.resources("Patient").search(family=family).count() == 7
    # _total=accurate on a page of 3 still counts all 7
    bundle = requests.get(
        FHIR + "/Patient",
        params={"family": family, "_count": 3, "_total": "accurate"},
        headers={"Authorization": "Bearer " + os.environ["NAVET_TOKEN_CSK"]},
    ).json()
    assert bundle["total"] == 7 and len(bundle["entry"]) == 3
    assert any(link["relation"] == "next" for link in bundle["link"])


def test_accent_insensitive_name_search():
    p = new_patient(CSK, "Åkesson" + RUN)
    p.save()
    found = CSK.resources("Patient").search(name="akesson" + RUN.lower()).fetch_all()
    assert [r.id for r in found] == [p.id]


def test_get_or_create():
    p = new_patient(CSK)
    pnr = p["identifier"][0]["value"]
    created, was_created = CSK.resources("Patient").search(identifier=f"{PNR}|{pnr}").get_or_create(p)
    assert was_created
    existing, was_created = CSK.resources("Patient").search(identifier=f"{PNR}|{pnr}").get_or_create(new_patient(CSK))
    assert not was_created and existing.id == created.id
    assert CSK.resources("Patient").search(identifier=f"{PNR}|{pnr}").count() == 1


def test_patch_json_patch_and_fhirpath():
    p = new_patient(CSK)
    p.save()
    # fhirpy's own patch() sends a merge patch as application/json, which FHIR R4 does not define: navet refuses
    # it with 415 and an OperationOutcome rather than guessing.
    with pytest.raises(OperationOutcome):
        CSK.patch("Patient", p.id, gender="male")
    # JSON Patch, through fhirpy's request layer with the right media type and If-Match.
    out = CSK._do_request(
        "patch",
        f"Patient/{p.id}",
        data=[{"op": "replace", "path": "/gender", "value": "male"}],
        extra_headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'},
    )
    assert out["gender"] == "male" and out["meta"]["versionId"] == "2"
    # A stale If-Match is 412 (fhirpy names every 412 MultipleResourcesFound), nothing changes.
    with pytest.raises(BaseFHIRError, match="not 1 \\(If-Match\\)"):
        CSK._do_request(
            "patch",
            f"Patient/{p.id}",
            data=[{"op": "replace", "path": "/gender", "value": "other"}],
            extra_headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'},
        )
    # FHIRPath Patch (Parameters)
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.birthDate"},
                    {"name": "value", "valueDate": "1941-02-03"},
                ],
            }
        ],
    }
    out = CSK._do_request(
        "patch", f"Patient/{p.id}", data=params, extra_headers={"Content-Type": "application/fhir+json"}
    )
    assert out["birthDate"] == "1941-02-03" and out["gender"] == "male"
    assert CSK.reference("Patient", p.id).to_resource()["meta"]["versionId"] == "3"


def transaction_bundle(pnr, family):
    pat = "urn:uuid:" + str(uuid.uuid4())
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": pat,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": PNR, "value": pnr}],
                    "name": [{"family": family, "given": ["Ingrid"]}],
                },
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={PNR}|{pnr}"},
            },
            {
                "fullUrl": "urn:uuid:" + str(uuid.uuid4()),
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "intent": "order",
                    "code": {"text": "Intravenös antibiotika i hemmet " + RUN},
                    "subject": {"reference": pat},
                    "requester": {"reference": "Organization?identifier=urn:oid:1.2.752.29.4.19|SE2321000255-CSK01"},
                    "performer": [
                        {"reference": "Organization?identifier=urn:oid:1.2.752.29.4.19|SE2321000255-MTN01"}
                    ],
                },
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
        ],
    }


def test_transaction_and_chained_search():
    pnr = personnummer(RNG)
    resp = CSK.execute("", method="post", data=transaction_bundle(pnr, "Kedjesson"))
    assert resp["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in resp["entry"]]
    assert statuses[0].startswith("201") and statuses[1].startswith("201"), statuses
    sr_id = resp["entry"][1]["response"]["location"].split("/")[1]
    # a second patient's order that the chain must not return
    other = personnummer(RNG)
    CSK.execute("", method="post", data=transaction_bundle(other, "Annansson"))
    found = CSK.resources("ServiceRequest").search(**{"patient.identifier": f"{PNR}|{pnr}"}).fetch_all()
    assert [r.id for r in found] == [sr_id]
    # the MTN named as performer sees it too, through the chain, with _include of the subject
    bundle = MTN.resources("ServiceRequest").search(**{"subject:Patient.identifier": f"{PNR}|{pnr}"}).include(
        "ServiceRequest", "subject"
    ).fetch_raw()
    modes = sorted((e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"])
    assert modes == [("Patient", "include"), ("ServiceRequest", "match")]


def test_every_answer_was_validated():
    # The wrapper above saw (and validated) each kind of answer the suite asked for.
    assert {"Patient", "Bundle", "OperationOutcome", "ServiceRequest"} <= set(SEEN)
