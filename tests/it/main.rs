//! Integration tests for hookrelay: every test runs the real `hookrelay`
//! binary as a child process on its own SQLite file and talks to it over HTTP;
//! subscriber endpoints are actix-web servers inside the test process.
//!
//! Run: `cargo test --test it -- --test-threads 4`
//! The `postgres` module runs the core scenarios on PostgreSQL too when
//! `HOOKRELAY_TEST_POSTGRES_URL` names a server (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); each test creates and drops
//! its own database there with `psql`.
//! A failing test prints the tail of the server log and keeps its temp dir.

mod helpers;

mod crash;
mod delivery;
mod harness;
mod ingest;
mod internal_api;
mod postgres;
mod subscriptions;
mod verification;
