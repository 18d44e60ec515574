#!/usr/bin/env python3
"""Interoperability of Pons COSE_Sign1 envelopes with pycose, an independent implementation.

Two commands, driven by crates/core/tests/interop_pycose.rs:

  verify --envelope FILE --cert DER [--content-type CT] [--payload FILE]
      Decodes a tagged COSE_Sign1 made by Pons and verifies its signature with the public
      key of the signing certificate. pycose does not validate x5chain, so the key is
      passed in (the certificate chain is Pons' own business and is tested in Rust).
      Checks the content type, that x5chain (label 33) in the protected header is the
      certificate, and the payload if given. Exit 0 if valid, 1 if not.

  sign --key PEM --alg EdDSA|ES256 --kid KID --content-type CT --payload FILE
       --cert DER [--cert DER ...] [--x5chain-unprotected] --out FILE
      Makes a tagged COSE_Sign1 with the private key, kid, content type, and the
      certificates as x5chain (bstr for one, array for more), in the protected header
      unless --x5chain-unprotected.

Pinned versions: see interop_pycose.rs (pycose 1.1.0, cbor2 < 6).
"""

import argparse
import sys

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pycose.algorithms import EdDSA, Es256
from pycose.headers import KID, Algorithm, ContentType, X5chain
from pycose.keys import CoseKey
from pycose.messages import CoseMessage, Sign1Message

ALGS = {"EdDSA": EdDSA, "ES256": Es256}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def cert_public_key(cert_der):
    cert = x509.load_der_x509_certificate(cert_der)
    pem = cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return CoseKey.from_pem_public_key(pem.decode())


def header_get(hdr, attr):
    # pycose keys parsed headers by attribute class; unknown labels stay ints.
    for k, v in hdr.items():
        if k is attr or k == attr or getattr(k, "identifier", None) == attr.identifier:
            return v
    return None


def verify(args):
    envelope = read(args.envelope)
    cert_der = read(args.cert)
    if not envelope.startswith(b"\xd2"):
        print("not a tagged COSE_Sign1 (tag 18)", file=sys.stderr)
        return 1
    try:
        msg = CoseMessage.decode(envelope)
    except Exception as e:  # pycose raises several types on bad input
        print(f"decode failed: {e!r}", file=sys.stderr)
        return 1
    if not isinstance(msg, Sign1Message):
        print(f"not a Sign1Message: {type(msg).__name__}", file=sys.stderr)
        return 1
    msg.key = cert_public_key(cert_der)
    try:
        ok = msg.verify_signature()
    except Exception as e:
        print(f"verification raised: {e!r}", file=sys.stderr)
        return 1
    if not ok:
        print("signature does not verify", file=sys.stderr)
        return 1
    ct = header_get(msg.phdr, ContentType)
    if args.content_type is not None and ct != args.content_type:
        print(f"content type {ct!r} != {args.content_type!r}", file=sys.stderr)
        return 1
    chain = header_get(msg.phdr, X5chain)
    first = chain if isinstance(chain, bytes) else (chain[0] if chain else None)
    if first != cert_der:
        print("protected x5chain does not start with the given certificate", file=sys.stderr)
        return 1
    if args.payload is not None and msg.payload != read(args.payload):
        print("payload differs", file=sys.stderr)
        return 1
    print(f"ok alg={header_get(msg.phdr, Algorithm)} kid={header_get(msg.phdr, KID)!r}")
    return 0


def sign(args):
    key = CoseKey.from_pem_private_key(read(args.key).decode())
    certs = [read(c) for c in args.cert]
    x5 = certs[0] if len(certs) == 1 else certs
    phdr = {
        Algorithm: ALGS[args.alg],
        ContentType: args.content_type,
        KID: args.kid.encode(),
    }
    uhdr = {}
    if args.x5chain_unprotected:
        uhdr[X5chain] = x5
    else:
        phdr[X5chain] = x5
    msg = Sign1Message(phdr=phdr, uhdr=uhdr, payload=read(args.payload))
    msg.key = key
    encoded = msg.encode(tag=True)
    if not encoded.startswith(b"\xd2"):
        print("pycose did not tag the message", file=sys.stderr)
        return 1
    # Self-check with cbor2 that the envelope is what we meant to write.
    decoded = cbor2.loads(encoded)
    assert decoded.tag == 18 and len(decoded.value) == 4
    with open(args.out, "wb") as f:
        f.write(encoded)
    print(f"sealed {len(encoded)} bytes")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--envelope", required=True)
    v.add_argument("--cert", required=True)
    v.add_argument("--content-type")
    v.add_argument("--payload")
    s = sub.add_parser("sign")
    s.add_argument("--key", required=True)
    s.add_argument("--alg", required=True, choices=sorted(ALGS))
    s.add_argument("--kid", required=True)
    s.add_argument("--content-type", required=True)
    s.add_argument("--payload", required=True)
    s.add_argument("--cert", required=True, action="append")
    s.add_argument("--x5chain-unprotected", action="store_true")
    s.add_argument("--out", required=True)
    args = p.parse_args()
    return verify(args) if args.cmd == "verify" else sign(args)


if __name__ == "__main__":
    sys.exit(main())
