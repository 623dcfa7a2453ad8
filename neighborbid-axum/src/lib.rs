//! HTTP + WebSocket front for a [`neighborbid_core`] engine.
//!
//! This crate will hold the router a host application mounts, the identity
//! trait and the WebSocket rooms. Not implemented yet: see the project's issue
//! tracker.
