//! hookrelay: a self-hosted webhook engine. Events pushed in on the internal
//! listener are stored, routed to the subscriptions of their tenant and type,
//! and delivered, signed and retried, by one actor per endpoint URL.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod endpoint_url;
pub mod erasure;
pub mod error;
pub mod event;
pub mod ids;
pub mod ingest;
pub mod json;
pub mod metrics;
pub mod notice;
pub mod router;
pub mod routing;
pub mod server;
pub mod signing;
pub mod store;
pub mod token;
pub mod ui;
