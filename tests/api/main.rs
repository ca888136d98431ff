//! One integration test binary: the real application on a random port with
//! a fresh SQLite database per test, driven over HTTP.

mod admin;
mod bench;
mod bus;
mod cli;
mod consumer;
mod crash;
mod fixtures;
mod helpers;
mod ingest;
mod metrics;
mod postgres;
mod queue;
mod retention;
mod senders;
mod subscriptions;
