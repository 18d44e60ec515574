//! COSE_Sign1 sealing and opening, certificate-chain trust and receipts.
//!
//! One test binary whose modules are files under `tests/cose/`.

#[path = "cose/pki.rs"]
mod pki;

#[path = "cose/fed.rs"]
mod fed;
#[path = "cose/props.rs"]
mod props;
#[path = "cose/receipts.rs"]
mod receipts;
#[path = "cose/seal_open.rs"]
mod seal_open;
#[path = "cose/trust_cache.rs"]
mod trust_cache;
#[path = "cose/trust_rules.rs"]
mod trust_rules;
