//! The Pons node: configuration, runtime wiring, the control socket and feed sinks.
//!
//! This crate carries out what `pons-core` and `pons-proto` decide, with `pons-store`
//! for durability and `pons-transport` for the network. It holds no rules of its own
//! beyond wiring: validation, sealing and protocol decisions live in the rule crates.

pub mod config;
pub mod control;
pub mod daemon;
pub mod feed;
pub mod journal;
mod notify;
pub mod retention;
pub mod runtime;
pub mod secret;
mod sent;

pub use config::{Config, ConfigError, PeerConfig, Role};
