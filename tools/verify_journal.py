#!/usr/bin/env python3
"""Verify a Pons journal export (JSONL) with the Python standard library only.

Usage: python3 verify_journal.py EXPORT.jsonl

Rebuilds the canonical CBOR encoding of every entry from its JSON fields, recomputes
hash = SHA-256(prev_hash || canonical) and checks the chain, as docs/journal-format.md
describes. Checkpoint lines are checked against the entries they name (sequence number
and head hash); their signatures need a COSE library and are checked by
`pons journal verify --export FILE --cert CERT.pem`.

Exit status: 0 the export verifies, 3 it does not (the first bad line and entry are
named), 2 usage error.
"""

import datetime
import hashlib
import json
import re
import sys

CANONICAL_VERSION = 1
EXPORT_FORMAT = "pons-journal-export"
EXPORT_VERSION = 1
OPERATIONS = {
    "collect", "disclose", "receive", "consult", "alter", "combine", "erase",
    "restrict", "review", "reject", "hold", "journal-read", "export",
}
OUTCOMES = {"success", "refused", "failed"}
HEX64 = re.compile(r"^[0-9a-f]{64}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ENTRY_FIELDS = [
    "type", "seq", "time", "time_unix", "time_nanos", "time_offset", "node", "actor",
    "role", "operation", "record_id", "class", "subject_ref", "counterpart", "purpose",
    "justification", "legal_basis", "outcome", "prev_hash", "hash",
]


class Bad(Exception):
    """The export does not verify."""


# --- a tiny deterministic CBOR encoder (RFC 8949 section 4.2.1: shortest forms) -------

def head(major, value):
    if value < 24:
        return bytes([(major << 5) | value])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < (1 << (8 * size)):
            return bytes([(major << 5) | info]) + value.to_bytes(size, "big")
    raise Bad("integer too large for CBOR")


def cbor_int(v):
    return head(0, v) if v >= 0 else head(1, -1 - v)


def cbor_text(s):
    b = s.encode("utf-8")
    return head(3, len(b)) + b


def cbor_bytes(b):
    return head(2, len(b)) + b


def cbor_opt_text(s):
    return b"\xf6" if s is None else cbor_text(s)


def canonical(e):
    """The canonical CBOR array of docs/journal-format.md, every field but hash."""
    record_id = b"\xf6" if e["record_id"] is None else cbor_bytes(
        bytes.fromhex(e["record_id"].replace("-", "")))
    return b"".join([
        head(4, 18),
        cbor_int(CANONICAL_VERSION),
        cbor_int(e["seq"]),
        cbor_int(e["time_unix"]),
        cbor_int(e["time_nanos"]),
        cbor_int(e["time_offset"]),
        cbor_text(e["node"]),
        cbor_text(e["actor"]),
        cbor_opt_text(e["role"]),
        cbor_text(e["operation"]),
        record_id,
        cbor_opt_text(e["class"]),
        cbor_opt_text(e["subject_ref"]),
        cbor_opt_text(e["counterpart"]),
        cbor_opt_text(e["purpose"]),
        cbor_opt_text(e["justification"]),
        cbor_opt_text(e["legal_basis"]),
        cbor_text(e["outcome"]),
        cbor_bytes(bytes.fromhex(e["prev_hash"])),
    ])


def format_time(unix, nanos, offset):
    """The export's time text: YYYY-MM-DDTHH:MM:SS.nnnnnnnnn+HH:MM[:SS]."""
    tz = datetime.timezone(datetime.timedelta(seconds=offset))
    t = (datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
         + datetime.timedelta(seconds=unix)).astimezone(tz)
    a = abs(offset)
    out = "%04d-%02d-%02dT%02d:%02d:%02d.%09d%s%02d:%02d" % (
        t.year, t.month, t.day, t.hour, t.minute, t.second, nanos,
        "-" if offset < 0 else "+", a // 3600, (a // 60) % 60)
    if a % 60:
        out += ":%02d" % (a % 60)
    return out


def check_fields(e):
    """Types and forms of an entry's fields; raises Bad naming the field."""
    if sorted(e.keys()) != sorted(ENTRY_FIELDS):
        raise Bad("fields are not exactly: " + ", ".join(ENTRY_FIELDS))

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    for f in ("seq", "time_unix", "time_nanos", "time_offset"):
        if not is_int(e[f]):
            raise Bad(f + ": must be an integer")
    if e["seq"] < 1 or not 0 <= e["time_nanos"] < 10**9 or abs(e["time_offset"]) >= 86400:
        raise Bad("seq, time_nanos or time_offset out of range")
    for f in ("time", "node", "actor", "operation", "outcome", "prev_hash", "hash"):
        if not isinstance(e[f], str):
            raise Bad(f + ": must be text")
    for f in ("role", "record_id", "class", "subject_ref", "counterpart", "purpose",
              "justification", "legal_basis"):
        if e[f] is not None and not isinstance(e[f], str):
            raise Bad(f + ": must be text or null")
    if e["operation"] not in OPERATIONS:
        raise Bad("operation: %r is not an operation" % e["operation"])
    if e["outcome"] not in OUTCOMES:
        raise Bad("outcome: %r is not an outcome" % e["outcome"])
    for f in ("prev_hash", "hash"):
        if not HEX64.match(e[f]):
            raise Bad(f + ": must be 64 lower-case hex digits")
    if e["record_id"] is not None and not UUID.match(e["record_id"]):
        raise Bad("record_id: must be a hyphenated lower-case UUID")
    expected = format_time(e["time_unix"], e["time_nanos"], e["time_offset"])
    if e["time"] != expected:
        raise Bad("time: %r does not equal %s" % (e["time"], expected))


def verify(lines):
    header = None
    head_seq, head_hash = 0, bytes(32)
    hashes = {}  # seq -> hash, to check checkpoints against
    checkpoints = []
    entries = 0
    for n, line in lines:
        where = "line %d" % n
        try:
            obj = json.loads(line)
        except ValueError as err:
            raise Bad("%s: not JSON: %s" % (where, err))
        if not isinstance(obj, dict):
            raise Bad(where + ": not a JSON object")
        kind = obj.get("type")
        if header is None:
            if kind != "header" or obj.get("format") != EXPORT_FORMAT \
                    or obj.get("version") != EXPORT_VERSION:
                raise Bad(where + ": the first line must be a %s version %d header"
                          % (EXPORT_FORMAT, EXPORT_VERSION))
            header = obj
            head_seq = obj["start_seq"]
            head_hash = bytes.fromhex(obj["start_hash"])
            continue
        if kind == "entry":
            seq = obj.get("seq")
            where = "%s: journal entry %s" % (where, seq)
            try:
                check_fields(obj)
                if obj["node"] != header["node"]:
                    raise Bad("node: %r is not the export's node %r" % (obj["node"], header["node"]))
            except Bad as err:
                raise Bad("%s: %s" % (where, err))
            prev = bytes.fromhex(obj["prev_hash"])
            if header["filtered"] and seq != head_seq + 1:
                head_seq, head_hash = seq - 1, prev  # a gap the filter left
            if seq != head_seq + 1:
                raise Bad("%s: seq is not %d" % (where, head_seq + 1))
            if prev != head_hash:
                raise Bad(where + ": prev_hash does not equal the previous entry's hash")
            digest = hashlib.sha256(prev + canonical(obj)).digest()
            if digest.hex() != obj["hash"]:
                raise Bad(where + ": hash does not match the entry's content")
            head_seq, head_hash = seq, digest
            hashes[seq] = digest
            entries += 1
        elif kind == "checkpoint":
            checkpoints.append((where, obj))
        else:
            raise Bad("%s: unknown line type %r" % (where, kind))
    if header is None:
        raise Bad("the export is empty: no header line")
    if not header["filtered"] and (head_seq != header["head_seq"]
                                   or head_hash.hex() != header["head_hash"]):
        raise Bad("export ends at entry %d but its header names head %d %s"
                  % (head_seq, header["head_seq"], header["head_hash"]))
    if header["start_seq"] > 0 and not any(
            c.get("seq") == header["start_seq"] + 1 for _, c in checkpoints):
        raise Bad("the export starts after entry %d (a pruned journal) but has no anchor "
                  "checkpoint at entry %d" % (header["start_seq"], header["start_seq"] + 1))
    for where, c in checkpoints:
        seq, head_hex = c.get("seq"), c.get("head")
        if seq in hashes and hashes[seq].hex() != head_hex:
            raise Bad("%s: checkpoint at entry %d names head %s, the entry's hash is %s"
                      % (where, seq, head_hex, hashes[seq].hex()))
        if not header["filtered"] and seq > head_seq:
            raise Bad("%s: truncated: a checkpoint covers %d entries, the export has %d"
                      % (where, seq, head_seq))
    return header, entries, head_seq, head_hash, len(checkpoints)


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: verify_journal.py EXPORT.jsonl\n")
        return 2
    try:
        with open(argv[1], "r", encoding="utf-8") as f:
            lines = [(i + 1, l) for i, l in enumerate(f) if l.strip()]
    except (OSError, UnicodeDecodeError) as err:
        sys.stderr.write("verify_journal: %s: %s\n" % (argv[1], err))
        return 3 if isinstance(err, UnicodeDecodeError) else 2
    try:
        header, entries, seq, digest, cps = verify(lines)
    except (Bad, KeyError, TypeError, ValueError) as err:
        if isinstance(err, KeyError):
            err = "missing field %s" % err
        sys.stderr.write("verify_journal: %s: %s\n" % (argv[1], err))
        return 3
    print("export verified: node %s, %d entries%s, head %d %s, %d checkpoints" % (
        header["node"], entries, " (filtered)" if header["filtered"] else "", seq,
        digest.hex(), cps))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
