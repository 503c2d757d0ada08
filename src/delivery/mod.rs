//! Outbound delivery: the HTTP request to an endpoint (`sender`), the retry
//! policy (`retry`), the batched recording of outcomes (`recorder`), the
//! memory budget of queued deliveries (`budget`), and the per-endpoint
//! actor that ties them together (`endpoint`).

pub mod budget;
pub mod endpoint;
pub mod health;
pub mod recorder;
pub mod retry;
pub mod sender;
