//! Outbound delivery: the HTTP request to an endpoint (`sender`), the retry
//! policy and the one place a retry is decided (`retry::next_step`), an
//! endpoint's health (`health`), the batched recording of outcomes
//! (`recorder`), the memory budget of queued deliveries (`budget`), how fast one endpoint
//! is sent to (`pace`: concurrency window, token bucket), and the
//! per-endpoint actor that ties them together (`endpoint`). Nothing here
//! knows the Router: an endpoint actor reports to the recipients it was
//! given (`endpoint::Owner`).

pub mod budget;
pub mod endpoint;
pub mod excerpt;
pub mod health;
pub mod notices;
pub mod pace;
pub mod recorder;
pub mod retry;
pub mod sender;
