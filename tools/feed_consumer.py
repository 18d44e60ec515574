#!/usr/bin/env python3
"""A minimal consumer of a Pons `stream` sink: exactly once, in arrival order.

It runs `pons feed --follow` (which prints one feed record per line, see
docs/feed-record.schema.json), keeps each record id at most once in a SQLite database, and
acknowledges with `pons feed ack CURSOR` only after the record is committed there. A crash
anywhere (of this script, of `pons feed`, of the node) repeats at most records already
kept, which the database recognises by id: at-least-once delivery plus idempotence by
record id gives exactly once.

    python3 tools/feed_consumer.py --config /etc/pons/node.toml --db feed.sqlite [--sink NAME]

Replace `process()` with what your system does with a record; it must run inside the same
database transaction as the id is kept (or be idempotent by record id itself).
Standard library only.
"""

import argparse
import base64
import hashlib
import json
import sqlite3
import subprocess
import sys

FORMAT = "pons-feed-record/1"


def check(rec):
    """Refuse what this consumer does not understand or what does not verify."""
    if rec.get("format") != FORMAT:
        raise ValueError(f"unknown feed format {rec.get('format')!r}")
    envelope = base64.b64decode(rec["cose_base64"], validate=True)
    if hashlib.sha256(envelope).hexdigest() != rec["envelope_sha256"]:
        raise ValueError(f"record {rec['id']}: envelope digest does not match")
    # The node verified signature and chain; a consumer that must verify again itself does
    # so on `envelope` (a COSE_Sign1 with its x5chain), e.g. with pycose as in
    # tests/interop/pycose_interop.py.
    return rec["verification"]["verified"]


def process(db, rec, verified):
    """Your system's work. Here: keep the record in a table."""
    db.execute(
        "INSERT INTO records (id, cursor, sender, class, verified, json) VALUES (?, ?, ?, ?, ?, ?)",
        (rec["id"], rec["cursor"], rec["from"], rec["class"], int(verified), json.dumps(rec)),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the node's configuration file")
    ap.add_argument("--db", required=True, help="SQLite database of the records kept")
    ap.add_argument("--sink", help="the stream sink (default: the node's only one)")
    ap.add_argument("--pons", default="pons", help="the pons binary")
    ap.add_argument("--once", action="store_true", help="stop when nothing more is there")
    args = ap.parse_args()

    db = sqlite3.connect(args.db, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, cursor INTEGER NOT NULL,"
        " sender TEXT, class TEXT, verified INTEGER, json TEXT NOT NULL)"
    )
    sink = ["--sink", args.sink] if args.sink else []
    cmd = [args.pons, "feed", "--config", args.config, "--format", "jsonl", *sink]
    if not args.once:
        cmd.append("--follow")
    feed = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    kept = skipped = 0
    for line in feed.stdout:
        rec = json.loads(line)
        verified = check(rec)
        db.execute("BEGIN IMMEDIATE")
        seen = db.execute("SELECT 1 FROM records WHERE id = ?", (rec["id"],)).fetchone()
        if seen:
            skipped += 1  # delivered again after a crash: already kept
        else:
            process(db, rec, verified)
            kept += 1
        db.execute("COMMIT")
        # Only now is the record safe here: acknowledge it (and everything before it).
        ack = [args.pons, "feed", "ack", "--config", args.config, *sink, str(rec["cursor"])]
        subprocess.run(ack, check=True, stdout=subprocess.DEVNULL)
    status = feed.wait()
    print(f"kept {kept}, already kept {skipped}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
