//! Cross-crate end-to-end tests of NeighborBid, in `tests/`: a host
//! application built from the crates' public API alone, as their docs
//! show (`embedding`). The core's own suite lives in
//! `neighborbid-core/tests`, each adapter's in its crate, and the example
//! server's (faults, browser) beside it.
