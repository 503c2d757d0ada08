//! Integration tests for hookrelay: every test runs the real `hookrelay`
//! binary as a child process and talks to it over HTTP; subscriber endpoints
//! are actix-web servers inside the test process.
//!
//! Run: `cargo test --test it -- --test-threads 4`
//!
//! Backends: by default each server gets its own SQLite file. With
//! `HOOKRELAY_TEST_BACKEND=postgres` and `HOOKRELAY_TEST_POSTGRES_URL`
//! naming a server (e.g. `postgres://postgres@127.0.0.1:5432/test`) every
//! server gets a fresh PostgreSQL database there instead (created and, when
//! the test passes, dropped with `psql`), so the whole suite runs on
//! PostgreSQL. `HOOKRELAY_TEST_BACKEND=postgres` without the URL fails.
//! The `postgres` and `cluster` modules run on PostgreSQL whenever
//! `HOOKRELAY_TEST_POSTGRES_URL` is set, whatever the backend, and pass as
//! skipped when it is not; so do `cluster_consistency` and
//! `cluster_handover`. The `outage` tests start a private PostgreSQL server
//! of their own (`private_pg`) from the machine's packages and pass as
//! skipped when there are none.
//! The `ui` (operator console) and `portal` (subscriber portal) tests drive
//! headless Chromium through `chromedriver` (helpers/browser.rs); without
//! both programs they pass as skipped and say so once. Their screenshots go
//! to `target/ui-screenshots/` (or `$CARGO_TARGET_DIR/ui-screenshots/`).
//! A failing test prints the tail of the server log and keeps its temp dir
//! (and its PostgreSQL database).

mod helpers;

mod cluster;
mod cluster_consistency;
mod cluster_handover;
mod cluster_nodes;
mod crash;
mod dead_letters;
mod delivery;
mod endpoint_metrics;
mod endpoint_policy;
mod endpoint_safety;
mod erasure;
mod harness;
mod health;
mod ingest;
mod ingest_batches;
mod internal_api;
mod limits;
mod mass_failure;
mod notices;
mod openapi;
mod outage;
mod outage_calls;
mod outage_verdict;
mod pacing;
mod portal;
mod postgres;
mod private_pg;
mod retention;
mod self_service_deliveries;
mod self_service_secrets;
mod storage;
mod subscription_refusals;
mod subscription_search;
mod subscriptions;
mod ui;
mod verification;

/// Says which backend this run uses (and whether the PostgreSQL runs are
/// skipped), straight to stderr so it shows without `--nocapture`.
#[test]
fn backend_in_use() {
    helpers::announce_backend();
}
