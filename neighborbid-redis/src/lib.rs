//! Redis fan-out of committed [`neighborbid_core`] events across server processes.
//!
//! This crate will hold `RedisNotifier`, the per-process subscriber and the
//! outbox relay. Not implemented yet: see the project's issue tracker.
