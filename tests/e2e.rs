//! End-to-end tests of the exchange: real `pons` processes, real QUIC on 127.0.0.1.
//!
//! One test binary whose modules are files (see tests/README.md):
//! `cargo test -p pons-cli --test e2e [NAME]`.

#[path = "e2e/util.rs"]
mod util;

#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/deploy.rs"]
mod deploy;
#[path = "e2e/exchange.rs"]
mod exchange;
#[path = "e2e/faults.rs"]
mod faults;
#[path = "e2e/feed.rs"]
mod feed;
#[path = "e2e/hostile.rs"]
mod hostile;
#[path = "e2e/journal.rs"]
mod journal;
#[path = "e2e/paths.rs"]
mod paths;
#[path = "e2e/protection.rs"]
mod protection;
