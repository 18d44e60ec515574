//! openssl interop (to do)
