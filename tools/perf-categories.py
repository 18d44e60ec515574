#!/usr/bin/env python3
"""Shares of a node's CPU by category, from `perf script` output with call graphs.

    perf record -F 499 --call-graph dwarf,32768 -p PID -o node.data -- sleep 3
    perf script -i node.data | tools/perf-categories.py

Each sample is counted once, under the first category (in the order below) whose pattern
appears anywhere in its call stack; `docs/performance.md` ("The budget of a record") uses it.
"""
import collections
import sys

CATEGORIES = [
    ("signature: sign", ["Ed25519KeyPair::sign", "SigningKey::sign", "EcdsaKeyPair::sign"]),
    ("signature: verify", ["VerificationAlgorithm>::verify", "verify_signature"]),
    ("sled I/O threads", ["sled::threadpool"]),
    ("sled", ["sled::"]),
    ("write-ahead log", ["pons_store::wal::"]),
    ("body log", ["pons_store::bodies::"]),
    ("fdatasync", ["sys_fdatasync", "do_fsync"]),
    ("cipher", ["pons_store::cipher"]),
    ("journal entries", ["pons_core::journal"]),
    ("store, other", ["pons_store::"]),
    ("CBOR decode", ["Record::from_cbor", "ciborium::de"]),
    ("JSON", ["serde_json"]),
    ("validation", ["pons_core::validate", "pons_core::class"]),
    ("COSE and core, other", ["pons_core::"]),
    ("QUIC", ["quinn"]),
    ("control socket", ["pons_node::control"]),
    ("stream task", ["pons_transport"]),
    ("node, other", ["pons_node"]),
    ("tokio", ["tokio::"]),
]


def main() -> None:
    counts: collections.Counter = collections.Counter()
    total = 0
    stack: list = []
    in_sample = False

    def flush() -> None:
        nonlocal total
        if not in_sample:
            return
        total += 1
        text = "\n".join(stack)
        for name, patterns in CATEGORIES:
            if any(p in text for p in patterns):
                counts[name] += 1
                return
        counts["other"] += 1

    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            flush()
            in_sample, stack = False, []
        elif not line.startswith(("\t", " ")):
            in_sample = True
        else:
            stack.append(line.strip())
    flush()
    if total == 0:
        sys.exit("no samples with call stacks in the input")
    for name, n in counts.most_common():
        print(f"{name:24s} {100 * n / total:5.1f} %")


if __name__ == "__main__":
    main()
