//! hookrelay: a self-hosted webhook engine. Events pushed in on the internal
//! listener are stored, routed to the subscriptions of their tenant and type,
//! and delivered, signed and retried, by one actor per endpoint URL.

pub mod catalog;
pub mod config;
pub mod endpoint_url;
pub mod error;
pub mod event;
pub mod signing;
pub mod store;
