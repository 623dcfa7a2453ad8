//! Cross-crate end-to-end tests of NeighborBid (the example server driven
//! over HTTP and WebSocket, several nodes sharing Postgres and Redis). They
//! arrive with the adapter crates; the core's own suite lives in
//! `neighborbid-core/tests`.
