//! hookgate: an inbound webhook gateway. Senders' requests are verified on
//! their raw bytes, validated, stored durably and idempotently, answered,
//! and then normalized by a queue into a small stable event catalog.
//! See ARCHITECTURE.md for the map of modules and their invariants.

pub mod admin_cli;
pub mod app;
pub mod bench;
pub mod bus;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod http;
pub mod ingest;
pub mod providers;
pub mod push;
pub mod queue;
pub mod retention;
pub mod store;
pub mod telemetry;
pub mod verify;
