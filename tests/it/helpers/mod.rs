//! Test harness for the hookrelay integration tests.
//!
//! * [`TestApp`] runs the real `hookrelay` binary as a child process, on a
//!   SQLite file in its own temporary directory or, with
//!   `HOOKRELAY_TEST_BACKEND=postgres`, on a fresh PostgreSQL database (see
//!   [`test_backend`]); several may share one PostgreSQL database as cluster
//!   nodes ([`TestApp::spawn_node`]). It offers one async method per API
//!   call, each answering `(status, json body)`.
//! * [`Receiver`] is an actix-web server inside the test process that plays a
//!   subscriber endpoint: it records every request (headers, body, arrival
//!   time) and answers whatever the test tells it to, switchable at runtime.
//! * Signature helpers compute both signatures independently of the server;
//!   [`PromText`] parses `/metrics` strictly as Prometheus text.
//! * [`wait_until`] and friends poll for an outcome with a deadline; tests
//!   never sleep a fixed time to wait for something to happen.
//!
//! One file per concern: `poll` (deadlines), `builders` (events, ids,
//! error-shape assertions), `signatures`, `app` (the server's lifecycle),
//! `http` (generic calls), `api` (one method per API call), `documents`
//! (the OpenAPI documents, Swagger UI and the subscription search),
//! `backends` (SQLite or PostgreSQL), `receiver`, `prometheus`,
//! `capacity` (a receiver serving at most N at once), `subscription_changes` (moving a subscription, rotating its secret, the
//! test event; the Standard Webhooks reference verifier) and `deliveries`
//! (a subscription's deliveries, resend, the catch-up feed, event lookup),
//! `notices` (the lifecycle notices listed and received) and `erasure`
//! (erasure by data subject, byte search of SQLite files), and `browser`
//! (headless Chromium through `chromedriver` for the console and portal
//! tests; they pass as skipped, saying so once, where there is none) with
//! `ui_http` (the same pages through a plain HTTP client with the
//! browser's session cookie: status codes, redirects, forms without CSRF).
//! Everything is
//! re-exported here, so a test module needs only `use crate::helpers::*;`.
#![allow(dead_code)]

mod api;
mod app;
mod backends;
mod browser;
mod builders;
mod capacity;
mod deliveries;
mod documents;
mod endpoint_policy;
mod erasure;
mod http;
mod notices;
mod poll;
mod prometheus;
mod receiver;
mod signatures;
mod subscription_changes;
mod ui_http;

pub use app::*;
pub use backends::*;
pub use browser::*;
pub use builders::*;
pub use documents::*;
pub use erasure::*;
pub use http::*;
pub use notices::*;
pub use poll::*;
pub use prometheus::*;
pub use receiver::*;
pub use signatures::*;
pub use subscription_changes::*;
