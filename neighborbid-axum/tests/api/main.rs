//! The API driven as real clients drive it: a server on port 0, an HTTP
//! client and WebSocket clients.

mod bad_input;
mod flow;
mod fuzz;
mod keep_alive;
mod openapi;
mod support;
mod websocket;
