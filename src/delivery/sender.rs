//! One HTTP request to an endpoint: builds the signed POST, sends it with this
//! thread's shared `awc::Client` (keep-alive, no redirects, and a connector
//! that refuses non-public addresses: the one address check of every
//! request), and classifies what happened into an `Attempt` an operator can
//! read ("answered 500", "timed out after 10s", "connection refused",
//! "refused before connecting: …").

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_rt::net::TcpStream;
use actix_tls::connect::{
    ConnectError as TcpConnectError, ConnectInfo, Connection as TcpConnection,
    Connector as TcpConnector, ConnectorService, Resolver,
};
use actix_web::dev::{Service, always_ready};
use futures_util::future::LocalBoxFuture;

use awc::ClientRequest;
use awc::error::{ConnectError, SendRequestError};
use awc::http::header::{self, HeaderName, HeaderValue};
use awc::http::{StatusCode, Uri};
use bytes::Bytes;

use super::excerpt::{EXCERPT, excerpt};
use crate::endpoint_url::{EndpointError, EndpointUrl, check_address};
use crate::metrics::AttemptOutcome;
use crate::signing::{Secret, Secrets, SignatureHeaders};

/// The `User-Agent` of every request hookrelay sends.
pub const USER_AGENT: &str = concat!("hookrelay/", env!("CARGO_PKG_VERSION"));

const X_INSPERA_SIGNATURE: HeaderName = HeaderName::from_static("x-inspera-signature");
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const WEBHOOK_TEST: HeaderName = HeaderName::from_static("webhook-test");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// How much of a failing answer's body is kept for the operator.
const ERROR_SNIPPET: usize = 200;
/// Most bytes read of an endpoint's answer (read to the end, up to this, so
/// the connection can be reused; only `EXCERPT` of it is kept).
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

/// The TCP connector of the delivery client, and the one address check of
/// every request hookrelay sends (deliveries, verification calls, probes):
/// whatever the host is, a name or an IP literal, the addresses about to be
/// connected to are checked here, at the moment of connecting, so a DNS
/// answer that changed since the subscription was made (rebinding), or an
/// endpoint stored while `--allow-private-endpoints` was on, cannot reach a
/// non-public address. (awc's own resolver skips IPv4 literals and cannot
/// parse bracketed IPv6 ones; here both are connected to directly, without
/// a lookup.) A pooled connection is reused only for the address it was
/// checked for.
#[derive(Clone)]
struct PublicOnlyConnector(ConnectorService);

impl PublicOnlyConnector {
    fn new() -> PublicOnlyConnector {
        // The addresses are always filled in before the inner connector is
        // called, so its resolver never runs.
        PublicOnlyConnector(TcpConnector::new(Resolver::default()).service())
    }
}

impl Service<ConnectInfo<Uri>> for PublicOnlyConnector {
    type Response = TcpConnection<Uri, TcpStream>;
    type Error = TcpConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            let given: Vec<SocketAddr> = req.addrs().collect();
            let allow_private = ALLOW_PRIVATE.load(Ordering::Relaxed);
            let addrs = connect_addresses(req.hostname(), req.port(), given, allow_private).await?;
            inner.call(req.set_addrs(addrs)).await
        })
    }
}

/// The addresses to connect to for `host`: those already given, else the IP
/// literal itself, else what DNS answers; each one checked unless
/// `allow_private`. A refusal is an [`EndpointError`] inside
/// `ConnectError::Resolver` (see [`refusal_of`]).
async fn connect_addresses(
    host: &str,
    port: u16,
    given: Vec<SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, TcpConnectError> {
    let addrs = if !given.is_empty() {
        given
    } else if let Some(ip) = ip_literal(host) {
        vec![SocketAddr::new(ip, port)]
    } else {
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| TcpConnectError::Resolver(Box::new(e)))?
            .collect()
    };
    if addrs.is_empty() {
        return Err(TcpConnectError::NoRecords);
    }
    if !allow_private {
        for addr in &addrs {
            check_address(
                addr.ip(),
                host.trim_start_matches('[').trim_end_matches(']'),
            )
            .map_err(|e| TcpConnectError::Resolver(Box::new(e)))?;
        }
    }
    Ok(addrs)
}

/// The address a URI host (`127.0.0.1`, `[::1]`) is spelled as, if it is one.
fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// The address check's refusal, when that is why a request failed.
fn refusal_of(e: &SendRequestError) -> Option<&EndpointError> {
    match e {
        SendRequestError::Connect(ConnectError::Resolver(r)) => r.downcast_ref::<EndpointError>(),
        _ => None,
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
                            .connector(PublicOnlyConnector::new())
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
    /// At most the first `EXCERPT` bytes of the answer's body, as text;
    /// `None` when there was no answer or its body was empty.
    pub excerpt: Option<String>,
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
            excerpt: None,
        }
    }
}

/// POSTs `body`, signed with the `secrets` valid now under `message_id`, to
/// `url`, and waits at most `timeout` for the whole answer.
pub async fn post(
    url: &EndpointUrl,
    body: Bytes,
    secret: &Secrets,
    message_id: &str,
    timeout: Duration,
) -> Attempt {
    send(
        signed_request(url, &body, secret, message_id),
        body,
        timeout,
    )
    .await
}

/// POSTs a test event (`POST /v1/subscription/{id}/test`): signed and sent
/// like a delivery, marked with `webhook-test: true`.
pub async fn post_test(
    url: &EndpointUrl,
    body: Bytes,
    secret: &Secrets,
    message_id: &str,
    timeout: Duration,
) -> Attempt {
    let request = signed_request(url, &body, secret, message_id)
        .map(|r| r.insert_header((WEBHOOK_TEST, HeaderValue::from_static("true"))));
    send(request, body, timeout).await
}

/// Sends a built request (or reports why it could not be built), waiting
/// at most `timeout` for the whole answer.
async fn send(request: Result<ClientRequest, String>, body: Bytes, timeout: Duration) -> Attempt {
    let started = Instant::now();
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            return Attempt::failed(error, AttemptOutcome::ConnectError, started.elapsed());
        }
    };
    match tokio::time::timeout(timeout, exchange(request, body, timeout, started)).await {
        Ok(attempt) => attempt,
        Err(_) => Attempt::failed(
            timed_out(timeout),
            AttemptOutcome::Timeout,
            started.elapsed(),
        ),
    }
}

/// The POST with its content type and signature headers, or why one of
/// them could not be built.
fn signed_request(
    url: &EndpointUrl,
    body: &Bytes,
    secret: &Secrets,
    message_id: &str,
) -> Result<ClientRequest, String> {
    let now = chrono::Utc::now();
    let SignatureHeaders {
        inspera,
        id,
        timestamp,
        signature,
    } = secret.sign(message_id, now.timestamp(), body, now.naive_utc());
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
        let value = HeaderValue::try_from(value)
            .map_err(|e| format!("could not build the `{name}` header: {e}"))?;
        request = request.insert_header((name, value));
    }
    Ok(request)
}

/// Sends the request and reads the answer (so the connection can be reused).
async fn exchange(
    request: ClientRequest,
    body: Bytes,
    timeout: Duration,
    started: Instant,
) -> Attempt {
    let mut response = match request.send_body(body).await {
        Ok(response) => response,
        Err(e) => {
            return Attempt::failed(
                describe_send_error(&e, timeout),
                send_outcome(&e),
                started.elapsed(),
            );
        }
    };
    let retry_after = response
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let head = read_head(&mut response).await;
    answered(response.status(), &head, retry_after, started)
}

/// Reads the answer's body to its end (at most `MAX_RESPONSE_BODY` bytes,
/// so the connection can be reused) and keeps only its first `EXCERPT`
/// bytes; a body cut off or broken keeps what arrived.
async fn read_head<S>(response: &mut awc::ClientResponse<S>) -> Vec<u8>
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    use futures_util::StreamExt as _;
    let mut head = Vec::new();
    let mut read = 0;
    while let Some(Ok(chunk)) = response.next().await {
        read += chunk.len();
        let room = EXCERPT.saturating_sub(head.len());
        head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if read > MAX_RESPONSE_BODY {
            break;
        }
    }
    head
}

/// The kind of a request that got no answer, for metrics.
fn send_outcome(e: &SendRequestError) -> AttemptOutcome {
    match e {
        _ if refusal_of(e).is_some() => AttemptOutcome::Refused,
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            AttemptOutcome::Timeout
        }
        _ => AttemptOutcome::ConnectError,
    }
}

/// The attempt the endpoint answered: a 2xx succeeded, anything else failed.
fn answered(
    status: StatusCode,
    answer: &[u8],
    retry_after: Option<String>,
    started: Instant,
) -> Attempt {
    let (error, outcome) = if status.is_success() {
        (None, AttemptOutcome::Success)
    } else {
        (
            Some(describe_status(status, answer)),
            AttemptOutcome::HttpError,
        )
    };
    Attempt {
        status: Some(status.as_u16()),
        error,
        retry_after,
        duration: started.elapsed(),
        outcome,
        excerpt: excerpt(answer),
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("timed out after {}", humantime::format_duration(timeout))
}

fn describe_status(status: StatusCode, body: &[u8]) -> String {
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
    if let Some(refusal) = refusal_of(e) {
        return format!("refused before connecting: {refusal}");
    }
    match e {
        SendRequestError::Timeout => timed_out(timeout),
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
    post(
        url,
        verification_body(),
        &secret.clone().into(),
        &id,
        timeout,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn refusal(host: &str) -> String {
        let err = block_on(connect_addresses(host, 80, Vec::new(), false)).unwrap_err();
        let TcpConnectError::Resolver(r) = err else {
            panic!("{host}: not refused: {err:?}");
        };
        assert!(r.downcast_ref::<EndpointError>().is_some(), "{host}: {r}");
        r.to_string()
    }

    #[test]
    fn ip_literals_are_connected_to_directly_without_a_lookup() {
        assert_eq!(ip_literal("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(
            ip_literal("[2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(ip_literal("127.0.0.1"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(ip_literal("example.com"), None);
        assert_eq!(ip_literal("[example.com]"), None);
        let addrs = block_on(connect_addresses("[::1]", 8080, Vec::new(), true)).unwrap();
        assert_eq!(addrs, vec!["[::1]:8080".parse().unwrap()]);
    }

    #[test]
    fn the_connector_refuses_non_public_ip_literals_and_names() {
        for host in [
            "127.0.0.1",
            "[::1]",
            "10.1.2.3",
            "[64:ff9b:1::7f00:1]",
            "localhost",
        ] {
            let msg = refusal(host);
            assert!(msg.contains("--allow-private-endpoints"), "{msg}");
        }
    }

    #[test]
    fn the_connector_checks_addresses_it_was_given_too() {
        let given = vec!["127.0.0.1:80".parse().unwrap()];
        let err = block_on(connect_addresses("example.com", 80, given, false)).unwrap_err();
        assert!(matches!(err, TcpConnectError::Resolver(_)), "{err:?}");
    }

    #[test]
    fn the_connector_lets_public_and_allowed_addresses_through() {
        let public = block_on(connect_addresses("93.184.216.34", 80, Vec::new(), false));
        assert_eq!(public.unwrap(), vec!["93.184.216.34:80".parse().unwrap()]);
        let allowed = block_on(connect_addresses("127.0.0.1", 80, Vec::new(), true));
        assert_eq!(allowed.unwrap(), vec!["127.0.0.1:80".parse().unwrap()]);
    }

    #[test]
    fn a_refusal_is_described_as_one_and_counted_as_refused() {
        let err = block_on(connect_addresses("127.0.0.1", 80, Vec::new(), false)).unwrap_err();
        let e = SendRequestError::Connect(ConnectError::from(err));
        let text = describe_send_error(&e, Duration::from_secs(1));
        assert!(text.starts_with("refused before connecting:"), "{text}");
        assert!(text.contains("--allow-private-endpoints"), "{text}");
        assert!(matches!(send_outcome(&e), AttemptOutcome::Refused));
    }

    #[test]
    fn a_request_that_timed_out_counts_as_a_timeout_and_other_failures_as_connect_errors() {
        assert!(matches!(
            send_outcome(&SendRequestError::Timeout),
            AttemptOutcome::Timeout
        ));
        assert!(matches!(
            send_outcome(&SendRequestError::Connect(ConnectError::Timeout)),
            AttemptOutcome::Timeout
        ));
        assert!(matches!(
            send_outcome(&SendRequestError::Connect(ConnectError::Unresolved)),
            AttemptOutcome::ConnectError
        ));
        assert_eq!(
            describe_send_error(&SendRequestError::Timeout, Duration::from_secs(2)),
            "timed out after 2s"
        );
    }

    #[test]
    fn a_2xx_answer_succeeds_and_any_other_fails_with_its_status_and_body() {
        let ok = answered(StatusCode::NO_CONTENT, b"", None, Instant::now());
        assert!(ok.succeeded());
        assert_eq!(ok.status, Some(204));
        assert!(matches!(ok.outcome, AttemptOutcome::Success));
        let busy = answered(
            StatusCode::TOO_MANY_REQUESTS,
            b"slow down\n",
            Some("5".into()),
            Instant::now(),
        );
        assert_eq!(
            busy.error.as_deref(),
            Some("endpoint answered 429 Too Many Requests: slow down")
        );
        assert_eq!(busy.retry_after.as_deref(), Some("5"));
        assert!(matches!(busy.outcome, AttemptOutcome::HttpError));
        assert_eq!(busy.excerpt.as_deref(), Some("slow down\n"));
        assert_eq!(ok.excerpt, None);
    }
}
