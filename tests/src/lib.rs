//! Cross-crate tests of NeighborBid, in `tests/`: a host application built
//! from the crates' public API alone, as their docs show (`embedding`),
//! and the README's embedding example, compiled and run as a doc test
//! below. The core's own suite lives in `neighborbid-core/tests`, each
//! adapter's in its crate, and the example server's (faults, browser)
//! beside it.
//!
//! ---
#![doc = include_str!("../../README.md")]
