//! One integration test binary: the real application on a random port with
//! a fresh SQLite database per test, driven over HTTP.

mod bench;
mod cli;
mod consumer;
mod crash;
mod fixtures;
mod helpers;
mod ingest;
mod queue;
