//! Integration tests of `pons-proto`: one test binary, modules are the files beside it in `tests/proto/`.

mod frame;
mod pair;
mod scenarios;
mod sender;
