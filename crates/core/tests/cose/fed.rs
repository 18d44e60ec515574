//! A ready-made test federation and a raw COSE_Sign1 builder for malformed envelopes.

use coset::cbor::Value;
use coset::iana;
use coset::{CoseSign1, CoseSign1Builder, Header, HeaderBuilder, TaggedCborSerializable};
use pons_core::cose::{Signer, X5CHAIN_LABEL};
use pons_core::{NodeId, SigningKey, Trust};

use crate::pki::{Alg, Ca, Node, NodeOpts};

/// A federation `pons.example` with one root CA and a node per algorithm.
pub struct Fed {
    pub ca: Ca,
    pub trust: Trust,
    pub ed: Node,
    pub p256: Node,
}

impl Fed {
    pub fn new() -> Self {
        let ca = Ca::root("Pons Test CA", Alg::P256);
        let ed = ca.node(Alg::Ed25519, &NodeOpts::signing("cuta"));
        let p256 = ca.node(Alg::P256, &NodeOpts::signing("adolescence"));
        let trust = Trust::new("pons.example", &[&ca.der], &[] as &[Vec<u8>]).unwrap();
        Self {
            ca,
            trust,
            ed,
            p256,
        }
    }

    pub fn signer(node: &Node, id: &str) -> Signer {
        signer_with_chain(node, id, vec![node.cert.clone()])
    }
}

pub fn signer_with_chain(node: &Node, id: &str, chain: Vec<Vec<u8>>) -> Signer {
    let key = SigningKey::from_pkcs8_der(&node.key).unwrap();
    Signer::new(key, NodeId::new(id).unwrap(), chain).unwrap()
}

/// The protected header Pons writes, for tests that change one thing in it.
pub fn pons_header(alg: iana::Algorithm, ct: &str, kid: &str, cert: &[u8]) -> HeaderBuilder {
    HeaderBuilder::new()
        .algorithm(alg)
        .content_type(ct.to_owned())
        .key_id(kid.as_bytes().to_vec())
        .value(X5CHAIN_LABEL, Value::Bytes(cert.to_vec()))
}

/// Signs a COSE_Sign1 with any headers; `tagged` chooses tag 18 or none.
pub fn raw_seal(
    key_der: &[u8],
    protected: Header,
    unprotected: Header,
    payload: Option<&[u8]>,
    tagged: bool,
) -> Vec<u8> {
    let key = SigningKey::from_pkcs8_der(key_der).unwrap();
    let mut b = CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected);
    let sign1: CoseSign1 = match payload {
        Some(p) => b
            .payload(p.to_vec())
            .try_create_signature(b"", |tbs| key.sign(tbs))
            .unwrap()
            .build(),
        None => {
            b = b
                .try_create_detached_signature(b"detached", b"", |tbs| key.sign(tbs))
                .unwrap();
            b.build()
        }
    };
    if tagged {
        sign1.to_tagged_vec().unwrap()
    } else {
        coset::CborSerializable::to_vec(sign1).unwrap()
    }
}
