//! Postgres and SQLite stores for [`neighborbid_core`].
//!
//! This crate will hold `PgStore` (row locks, `SELECT ... FOR UPDATE`) and
//! `SqliteStore` (the embedded default). Both will pass the same conformance
//! suite as [`neighborbid_core::MemoryStore`]. Not implemented yet: see the
//! project's issue tracker.
