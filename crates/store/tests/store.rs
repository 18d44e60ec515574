//! Integration tests of pons-store: one test binary, one module per area.

mod store {
    pub mod checkpoint;
    pub mod cipher;
    pub mod crash;
    pub mod inbox;
    pub mod journal;
    pub mod outbox;
    pub mod retention;
    pub mod util;
}
