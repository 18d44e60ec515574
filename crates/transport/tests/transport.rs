//! Integration tests of pons-transport: real QUIC on 127.0.0.1, ephemeral ports,
//! certificates from an in-memory development CA.

mod transport {
    mod support;

    mod deliver;
    mod driver;
    mod framing;
    mod identity;
    mod lossy;
    mod restart;
}
