//! Shared helpers: time, node ids, an in-memory TLS handshake.

use std::sync::Arc;

use pons_core::NodeId;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use time::OffsetDateTime;

/// The wall clock: rustls verifiers read it, so certificates must be valid now.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// Which side of a handshake failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Moves every pending TLS record from `from` to `to`; returns the bytes moved.
fn transfer(from: &mut Connection, to: &mut Connection) -> usize {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
    }
    buf.len()
}

/// Runs a TLS handshake between two configurations in memory, with no socket.
///
/// On failure returns the side whose `process_new_packets` refused, and why, together with
/// whether the client had already finished its handshake (in TLS 1.3 it has, when the
/// server refuses its certificate).
pub fn handshake(
    client: ClientConfig,
    server: ServerConfig,
) -> Result<(ClientConnection, ServerConnection), (Side, rustls::Error, bool)> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = Connection::Client(ClientConnection::new(Arc::new(client), name).unwrap());
    let mut s = Connection::Server(ServerConnection::new(Arc::new(server)).unwrap());
    loop {
        let a = transfer(&mut c, &mut s);
        if let Err(e) = s.process_new_packets() {
            return Err((Side::Server, e, !c.is_handshaking()));
        }
        let b = transfer(&mut s, &mut c);
        if let Err(e) = c.process_new_packets() {
            return Err((Side::Client, e, !c.is_handshaking()));
        }
        if a == 0 && b == 0 {
            break;
        }
    }
    assert!(
        !c.is_handshaking() && !s.is_handshaking(),
        "handshake stalled"
    );
    match (c, s) {
        (Connection::Client(c), Connection::Server(s)) => Ok((c, s)),
        _ => unreachable!("sides were built as client and server"),
    }
}
