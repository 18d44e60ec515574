//! Integration tests of pons-pki: one test binary (one link step), one module per concern.

#[path = "api/devca.rs"]
mod devca;
#[path = "api/handshake.rs"]
mod handshake;
#[path = "api/load.rs"]
mod load;
#[path = "api/openssl.rs"]
mod openssl;
#[path = "api/util.rs"]
mod util;
