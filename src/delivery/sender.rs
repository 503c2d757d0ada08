//! One HTTP request to an endpoint: builds the signed POST, sends it with this
//! thread's shared `awc::Client` (keep-alive, no redirects), and classifies
//! what happened into an `Attempt` an operator can read ("answered 500",
//! "timed out after 10s", "connection refused").

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_tls::connect::{Connector as TcpConnector, Resolve, Resolver};
use futures_util::future::LocalBoxFuture;

use awc::error::{ConnectError, SendRequestError};
use awc::http::header::{self, HeaderName, HeaderValue};
use bytes::Bytes;

use crate::endpoint_url::{EndpointUrl, forbidden_network};
use crate::metrics::AttemptOutcome;
use crate::signing::{Secret, SignatureHeaders};

/// The `User-Agent` of every request hookrelay sends.
pub const USER_AGENT: &str = concat!("hookrelay/", env!("CARGO_PKG_VERSION"));

const X_INSPERA_SIGNATURE: HeaderName = HeaderName::from_static("x-inspera-signature");
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// How much of a failing answer's body is kept for the operator.
const ERROR_SNIPPET: usize = 200;
/// Most bytes read of an endpoint's answer.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

thread_local! {
    static CLIENT: RefCell<Option<awc::Client>> = const { RefCell::new(None) };
}

/// Whether endpoints may resolve to non-public addresses (set once at start
/// from `--allow-private-endpoints`).
static ALLOW_PRIVATE: AtomicBool = AtomicBool::new(false);

/// Sets whether the client may connect to non-public addresses.
pub fn allow_private_endpoints(allow: bool) {
    ALLOW_PRIVATE.store(allow, Ordering::Relaxed);
}

/// The resolver of the delivery client: it refuses a host name that
/// resolves to a non-public address at the moment of connecting, so DNS that
/// changes after the address check (rebinding) cannot reach one either.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>> {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            if !ALLOW_PRIVATE.load(Ordering::Relaxed)
                && let Some(bad) = addrs.iter().find(|a| forbidden_network(a.ip()).is_some())
            {
                return Err(format!(
                    "`{host}` resolves to the non-public address {}; refused (see --allow-private-endpoints)",
                    bad.ip()
                )
                .into());
            }
            Ok(addrs)
        })
    }
}

/// This thread's client (`awc::Client` is `!Send`; one per thread, reused,
/// its connection pool shared by every actor on the thread).
pub fn client() -> awc::Client {
    CLIENT.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| {
                awc::Client::builder()
                    .disable_redirects()
                    .add_default_header(("User-Agent", USER_AGENT))
                    // `post` bounds the whole exchange (head and body) with
                    // one timer of its own; a second one in awc would only
                    // cost a timer-wheel entry per request.
                    .disable_timeout()
                    .connector(
                        awc::Connector::new()
                            .connector(
                                TcpConnector::new(Resolver::custom(PublicOnlyResolver)).service(),
                            )
                            .timeout(Duration::from_secs(10))
                            .limit(0),
                    )
                    .finish()
            })
            .clone()
    })
}

/// What one request achieved.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The HTTP status, when the endpoint answered at all.
    pub status: Option<u16>,
    /// Why it failed; `None` for a 2xx.
    pub error: Option<String>,
    /// The `Retry-After` header of a 429 or 503.
    pub retry_after: Option<String>,
    pub duration: Duration,
    /// The kind of outcome, for metrics.
    pub outcome: AttemptOutcome,
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    /// The endpoint answered 410 Gone: it asks to be unsubscribed.
    pub fn gone(&self) -> bool {
        self.status == Some(410)
    }

    /// An attempt that got no answer.
    pub fn failed(error: String, outcome: AttemptOutcome, duration: Duration) -> Attempt {
        Attempt {
            status: None,
            error: Some(error),
            retry_after: None,
            duration,
            outcome,
        }
    }
}

/// POSTs `body`, signed with `secret` under `message_id`, to `url`, and waits
/// at most `timeout` for the whole answer.
pub async fn post(
    url: &EndpointUrl,
    body: Bytes,
    secret: &Secret,
    message_id: &str,
    timeout: Duration,
) -> Attempt {
    let started = Instant::now();
    let timestamp = chrono::Utc::now().timestamp();
    let SignatureHeaders {
        inspera,
        id,
        timestamp,
        signature,
    } = secret.sign(message_id, timestamp, &body);
    let mut request = client()
        .post(url.as_str())
        .insert_header((header::CONTENT_TYPE, JSON));
    // Names built once; values are base64, hex, digits or our own ids.
    for (name, value) in [
        (X_INSPERA_SIGNATURE, inspera),
        (WEBHOOK_ID, id),
        (WEBHOOK_TIMESTAMP, timestamp),
        (WEBHOOK_SIGNATURE, signature),
    ] {
        match HeaderValue::try_from(value) {
            Ok(value) => request = request.insert_header((name, value)),
            Err(e) => {
                return Attempt::failed(
                    format!("could not build the `{name}` header: {e}"),
                    AttemptOutcome::ConnectError,
                    started.elapsed(),
                );
            }
        }
    }
    let exchange = async {
        let mut response = match request.send_body(body).await {
            Ok(r) => r,
            Err(e) => {
                let outcome = match e {
                    SendRequestError::Timeout
                    | SendRequestError::Connect(ConnectError::Timeout) => AttemptOutcome::Timeout,
                    _ => AttemptOutcome::ConnectError,
                };
                return Attempt::failed(
                    describe_send_error(&e, timeout),
                    outcome,
                    started.elapsed(),
                );
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Read the answer so the connection can be reused.
        let answer = response
            .body()
            .limit(MAX_RESPONSE_BODY)
            .await
            .unwrap_or_default();
        let (error, outcome) = if status.is_success() {
            (None, AttemptOutcome::Success)
        } else {
            (
                Some(describe_status(status, &answer)),
                AttemptOutcome::HttpError,
            )
        };
        Attempt {
            status: Some(status.as_u16()),
            error,
            retry_after,
            duration: started.elapsed(),
            outcome,
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(attempt) => attempt,
        Err(_) => Attempt::failed(
            format!("timed out after {}", humantime::format_duration(timeout)),
            AttemptOutcome::Timeout,
            started.elapsed(),
        ),
    }
}

fn describe_status(status: awc::http::StatusCode, body: &[u8]) -> String {
    let snippet: String = String::from_utf8_lossy(&body[..body.len().min(ERROR_SNIPPET)])
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if snippet.trim().is_empty() {
        format!("endpoint answered {status}")
    } else {
        format!("endpoint answered {status}: {}", snippet.trim())
    }
}

fn describe_send_error(e: &SendRequestError, timeout: Duration) -> String {
    match e {
        SendRequestError::Timeout => {
            format!("timed out after {}", humantime::format_duration(timeout))
        }
        SendRequestError::Connect(ConnectError::Timeout) => "timed out while connecting".into(),
        SendRequestError::Connect(ConnectError::Io(io))
            if io.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            "connection refused".into()
        }
        SendRequestError::Connect(ConnectError::Resolver(r)) => {
            format!("could not resolve the host: {r}")
        }
        SendRequestError::Connect(ConnectError::Unresolved) => "could not resolve the host".into(),
        SendRequestError::Connect(ConnectError::SslIsNotSupported) => {
            "TLS is not supported for this endpoint".into()
        }
        SendRequestError::Connect(other) => {
            let text = other.to_string();
            if text.to_ascii_lowercase().contains("certificate") || text.contains("tls") {
                format!("TLS error: {text}")
            } else {
                format!("could not connect: {text}")
            }
        }
        other => format!("request failed: {other}"),
    }
}

/// The body of a verification call, fields in the documented order, with a
/// fresh random title each time.
pub fn verification_body() -> Bytes {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Verification {
        event: &'static str,
        context_object_id: i64,
        context_object_title: String,
        timestamp: String,
    }
    let body = Verification {
        event: crate::catalog::VERIFICATION,
        context_object_id: 0,
        context_object_title: uuid::Uuid::new_v4().to_string(),
        timestamp: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    Bytes::from(serde_json::to_vec(&body).expect("serializes"))
}

/// Sends a verification call signed with `secret`.
pub async fn verify(url: &EndpointUrl, secret: &Secret, timeout: Duration) -> Attempt {
    let id = format!("verify_{}", uuid::Uuid::now_v7().simple());
    post(url, verification_body(), secret, &id, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_resolver_refuses_names_of_non_public_addresses() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(PublicOnlyResolver.lookup("localhost", 80))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--allow-private-endpoints"), "{err}");
    }
}
