//! One integration test binary: the real application on a random port with
//! a fresh SQLite database per test, driven over HTTP.

mod admin;
mod bench;
mod browser;
mod bus;
mod catalog;
mod cli;
mod consumer;
mod crash;
mod db_outage;
mod fixtures;
mod helpers;
mod hostile;
mod ingest;
mod metrics;
mod postgres;
mod queue;
mod retention;
mod senders;
mod storage_faults;
mod stream;
mod subscriptions;
mod telemetry;
mod ui;
