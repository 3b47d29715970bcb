#!/usr/bin/env python3
"""An independent verifier of navet's access log, written from src/audit/FORMAT.md alone (standard library
only): it reads an export (`GET /audit/export`, NDJSON) and a checkpoint file (`audit-checkpoints.log`),
decodes every record, recomputes both hash chains, checks that each AuditEvent view says what its record
says, and checks every checkpoint's ECDSA P-256 signature and heads.

    python3 tests/audit_verify.py EXPORT.ndjson CHECKPOINTS.log

Exit 0 and one "ok: ..." line when everything verifies; exit 1 and the first problem otherwise.
"""

import base64
import hashlib
import json
import struct
import sys

RECORD_EXTENSION = "urn:navet:audit-record"
LETTERS = {"access": b"a", "change": b"c"}
ABSENT = 0xFFFFFFFF


class Broken(Exception):
    pass


# ---------------------------------------------------------------------------------------------- records


def decode(record):
    """FORMAT.md "Records": the fields of one record, or Broken."""
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(record):
            raise Broken("a record is truncated")
        out = record[pos : pos + n]
        pos += n
        return out

    def u32():
        return struct.unpack(">I", take(4))[0]

    def string(optional):
        n = u32()
        if n == ABSENT:
            if not optional:
                raise Broken("a required field is absent")
            return None
        return take(n).decode("utf-8")

    if take(1) != b"\x01":
        raise Broken("unknown record version")
    fields = {}
    fields["time_us"] = struct.unpack(">q", take(8))[0]
    fields["action"] = chr(take(1)[0])
    fields["outcome"] = take(1)[0]
    fields["status"] = struct.unpack(">H", take(2))[0]
    flags = take(1)[0]
    if flags & ~0b111:
        raise Broken("unknown flags")
    fields["authenticated"] = bool(flags & 1)
    fields["operation"] = string(False)
    for name in ["client", "token", "principal", "principal_name", "user", "user_name", "role",
                 "care_unit", "purpose", "source_address"]:
        fields[name] = string(True)
    fields["request_id"] = string(False)
    fields["query"] = string(True)
    if flags & 0b100:
        fields["delivery"] = [string(False) for _ in range(4)]
    for name in ["patients", "resources"]:
        fields[name] = [string(False) for _ in range(u32())]
    if pos != len(record):
        raise Broken("trailing bytes after a record")
    return fields


def instant(time_us):
    """The FHIR instant (ms, UTC) a record's time is shown as."""
    import datetime

    ms = time_us // 1000
    t = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def check_view(event, letter, seq, f):
    """The AuditEvent must say what the record says."""
    expect = {
        "id": "%s-%d" % (letter.decode(), seq),
        "action": f["action"],
        "outcome": str(f["outcome"]),
        "outcomeDesc": "HTTP %d" % f["status"],
        "recorded": instant(f["time_us"]),
    }
    for key, value in expect.items():
        if event.get(key) != value:
            raise Broken("%s-%d: the view's %s is %r, the record's %r" % (letter.decode(), seq, key, event.get(key), value))
    if event["subtype"][0]["code"] != f["operation"]:
        raise Broken("%s-%d: the view's operation differs from the record" % (letter.decode(), seq))
    patients = [e["what"]["reference"] for e in event["entity"] if e.get("type", {}).get("code") == "1"]
    if patients != f["patients"]:
        raise Broken("%s-%d: the view's patients differ from the record" % (letter.decode(), seq))
    request_ids = [e["what"]["identifier"]["value"] for e in event["entity"]
                   if e.get("what", {}).get("identifier", {}).get("system") == "urn:navet:request-id"]
    if request_ids != [f["request_id"]]:
        raise Broken("%s-%d: the view's request id differs from the record" % (letter.decode(), seq))


# ------------------------------------------------------------------------------------ ECDSA P-256 verify

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
     0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def point_add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p1 == p2:
        lam = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return (x3, (lam * (x1 - x3) - y1) % P)


def point_mul(k, point):
    out = None
    while k:
        if k & 1:
            out = point_add(out, point)
        point = point_add(point, point)
        k >>= 1
    return out


def ecdsa_p256_verifies(public, message, signature):
    if len(public) != 65 or public[0] != 4 or len(signature) != 64:
        return False
    q = (int.from_bytes(public[1:33], "big"), int.from_bytes(public[33:], "big"))
    if (q[1] * q[1] - (q[0] ** 3 + A * q[0] + B)) % P != 0:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (1 <= r < N and 1 <= s < N):
        return False
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")
    w = pow(s, -1, N)
    x = point_add(point_mul(e * w % N, G), point_mul(r * w % N, q))
    return x is not None and x[0] % N == r


# ------------------------------------------------------------------------------------------ checkpoints


def parse_checkpoint(line):
    parts = line.split(" ")
    if len(parts) != 7 or parts[0] != "navet-audit-checkpoint/1":
        raise Broken("not a checkpoint line: %r" % line[:60])
    fields = dict(p.split("=", 1) for p in parts[1:])
    message = line[: line.rindex(" sig=")].encode("ascii")
    heads = {}
    for chain in ("access", "change"):
        seq, digest = fields[chain].split(":")
        heads[chain] = (int(seq), bytes.fromhex(digest))
    return {
        "n": int(fields["n"]),
        "heads": heads,
        "key": bytes.fromhex(fields["key"]),
        "sig": bytes.fromhex(fields["sig"]),
        "message": message,
    }


# ---------------------------------------------------------------------------------------------- verify


def verify(export_path, checkpoint_path):
    chains = {"access": {}, "change": {}}
    with open(export_path, encoding="utf-8") as export:
        for number, line in enumerate(export, 1):
            if not line.strip():
                continue
            event = json.loads(line)
            carried = [x["valueString"] for x in event.get("meta", {}).get("extension", [])
                       if x.get("url") == RECORD_EXTENSION]
            if len(carried) != 1:
                raise Broken("export line %d carries no record" % number)
            chain, seq, record, digest = carried[0].split(":")
            chains[chain][int(seq)] = (base64.b64decode(record, validate=True), bytes.fromhex(digest), event)

    hashes = {}
    for chain, records in chains.items():
        letter = LETTERS[chain]
        prev = bytes(32)
        hashes[chain] = {}
        for seq in range(1, len(records) + 1):
            if seq not in records:
                raise Broken("%s chain: record %d is missing" % (chain, seq))
            record, stored, event = records[seq]
            digest = hashlib.sha256(prev + letter + struct.pack(">Q", seq) + record).digest()
            if digest != stored:
                raise Broken("%s chain: record %d does not match its hash" % (chain, seq))
            check_view(event, letter, seq, decode(record))
            hashes[chain][seq] = digest
            prev = digest

    checkpoints = []
    with open(checkpoint_path, encoding="ascii") as lines:
        checkpoints = [parse_checkpoint(line.rstrip("\n")) for line in lines if line.strip()]
    if not checkpoints:
        raise Broken("the checkpoint file holds no checkpoint")
    keys = {c["key"] for c in checkpoints}
    if len(keys) != 1:
        raise Broken("the checkpoints are signed by more than one key")
    for c in checkpoints:
        if not ecdsa_p256_verifies(c["key"], c["message"], c["sig"]):
            raise Broken("checkpoint %d: the signature does not verify" % c["n"])
        for chain, (seq, digest) in c["heads"].items():
            if seq == 0:
                continue
            if seq not in hashes[chain]:
                raise Broken("checkpoint %d: the %s chain ends before record %d (truncated)" % (c["n"], chain, seq))
            if hashes[chain][seq] != digest:
                raise Broken("checkpoint %d: %s record %d has another hash (recomputed)" % (c["n"], chain, seq))
    return "ok: %d access records, %d change records, %d checkpoints" % (
        len(chains["access"]), len(chains["change"]), len(checkpoints))


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(verify(sys.argv[1], sys.argv[2]))
        return 0
    except (Broken, KeyError, ValueError) as e:
        print("broken: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
