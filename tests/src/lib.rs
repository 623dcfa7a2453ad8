//! Cross-crate tests of NeighborBid, in `tests/`: a host application built
//! from the crates' public API alone, as their docs show (`embedding`),
//! and the README's embedding example, compiled and run as a doc test
//! below. The core's own suite lives in `neighborbid-core/tests` and each
//! adapter's in its crate. The tests that run the example server as a
//! process (the faults test with SIGKILL and Postgres outages, the
//! two-process Redis test, the browser test) stay in `examples/server`:
//! only tests of the package that builds a binary get its path from Cargo
//! (`CARGO_BIN_EXE_neighborbid-server`).
//!
//! ---
#![doc = include_str!("../../README.md")]
