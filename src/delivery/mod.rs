//! Outbound delivery: the HTTP request to an endpoint (`sender`), the retry
//! policy (`retry`), the batched recording of outcomes (`recorder`), and the
//! per-endpoint actor that ties them together (`endpoint`).

pub mod endpoint;
pub mod health;
pub mod recorder;
pub mod retry;
pub mod sender;
