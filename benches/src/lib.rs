//! Benchmarks of NeighborBid: `cargo bench -p neighborbid-benches`.
