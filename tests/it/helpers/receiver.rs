//! [`Receiver`]: an actix-web server in the test process playing a
//! subscriber endpoint. It records every request ([`Recorded`]) and answers
//! what the test tells it to ([`Reply`]), switchable at runtime.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

use super::capacity::{Capacity, CapacityStats};
use super::{sleep, wait_until};

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn is_verification(&self) -> bool {
        self.json()["event"] == "verification"
    }

    pub fn webhook_id(&self) -> String {
        self.header("webhook-id").unwrap_or_default().to_string()
    }

    pub fn context_object_id(&self) -> Option<i64> {
        self.json()["contextObjectId"].as_i64()
    }
}

/// What the receiver answers to one request.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    /// Sent as `Retry-After: <seconds>` when set.
    pub retry_after: Option<u32>,
    /// The answer's body; `{"status":<status>}` when not set.
    pub body: Option<&'static str>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            retry_after: None,
            body: None,
        }
    }
    /// `status` at once with this body.
    pub fn with_body(status: u16, body: &'static str) -> Reply {
        Reply {
            body: Some(body),
            ..Reply::status(status)
        }
    }
    pub fn delayed(delay: Duration, status: u16) -> Reply {
        Reply {
            status,
            delay,
            retry_after: None,
            body: None,
        }
    }
    /// `status` at once with `Retry-After: <seconds>`.
    pub fn retry_after(status: u16, seconds: u32) -> Reply {
        Reply {
            retry_after: Some(seconds),
            ..Reply::status(status)
        }
    }
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    /// Replies used first, one per request, before falling back to `default`.
    script: Mutex<(VecDeque<Reply>, Reply)>,
    /// When set, verification calls get this answer whatever the script says
    /// (an endpoint that is up but refuses particular deliveries).
    verification_reply: Mutex<Option<Reply>>,
    /// When set, deliveries are served at most so many at once; the rest
    /// get 429 and are not recorded.
    capacity: Mutex<Option<Arc<Capacity>>>,
}

pub struct Receiver {
    pub port: u16,
    /// The host part of its URLs: `127.0.0.1`, or `[::1]`.
    host: String,
    shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
    task: actix_rt::task::JoinHandle<std::io::Result<()>>,
}

impl Receiver {
    /// A receiver answering 200 at once.
    pub async fn start() -> Receiver {
        Self::start_with(Reply::status(200)).await
    }

    pub async fn start_with(default: Reply) -> Receiver {
        Self::start_on("127.0.0.1", default).await
    }

    /// A receiver answering 200 at once on the IPv6 loopback address, its
    /// URLs `http://[::1]:port/...`.
    pub async fn start_on_ipv6_loopback() -> Receiver {
        Self::start_on("::1", Reply::status(200)).await
    }

    async fn start_on(ip: &'static str, default: Reply) -> Receiver {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new((VecDeque::new(), default)),
            verification_reply: Mutex::new(None),
            capacity: Mutex::new(None),
        });
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .default_service(web::to(record))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .bind((ip, 0))
        .expect("bind receiver");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        let task = actix_rt::spawn(server);
        Receiver {
            port,
            host: if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            },
            shared,
            handle,
            task,
        }
    }

    /// The endpoint URL to subscribe with.
    pub fn url(&self) -> String {
        self.url_at("/hook")
    }

    /// Another endpoint URL on this receiver (`path` starts with `/`): one
    /// receiver can play several endpoints, told apart by [`Recorded::path`].
    pub fn url_at(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.port)
    }

    /// The deliveries (not verification calls) that came to `path`.
    pub fn deliveries_at(&self, path: &str) -> Vec<Recorded> {
        self.deliveries()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// From now on answer `status` immediately (clears any script).
    pub fn set_status(&self, status: u16) {
        self.set_reply(Reply::status(status));
    }

    /// From now on answer `reply` (clears any script).
    pub fn set_reply(&self, reply: Reply) {
        let mut s = self.shared.script.lock().unwrap();
        s.0.clear();
        s.1 = reply;
    }

    /// Answer verification calls with `reply`, apart from the script.
    pub fn set_verification_reply(&self, reply: Reply) {
        *self.shared.verification_reply.lock().unwrap() = Some(reply);
    }

    /// Answer the `first` replies in order, then `then` for everything after.
    pub fn set_script(&self, first: Vec<Reply>, then: Reply) {
        let mut s = self.shared.script.lock().unwrap();
        s.0 = first.into();
        s.1 = then;
    }

    /// Every request so far, in arrival order.
    /// Serves at most `limit` deliveries at once, each taking `service`,
    /// and answers 429 at once to the rest (not recorded; counted in
    /// [`Receiver::capacity_stats`]). Verification calls are answered as
    /// before.
    pub fn serve_at_most(&self, limit: usize, service: Duration) {
        *self.shared.capacity.lock().unwrap() = Some(Arc::new(Capacity::new(limit, service)));
    }

    /// What the capacity-limited mode saw since it was set or reset.
    pub fn capacity_stats(&self) -> CapacityStats {
        self.capacity().stats()
    }

    /// Counts the capacity-limited mode's figures afresh.
    pub fn reset_capacity_stats(&self) {
        self.capacity().reset();
    }

    fn capacity(&self) -> Arc<Capacity> {
        let capacity = self.shared.capacity.lock().unwrap().clone();
        capacity.expect("serve_at_most was called")
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    pub fn verifications(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_verification())
            .collect()
    }

    /// Every request that is not a verification call.
    pub fn deliveries(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_verification())
            .collect()
    }

    pub fn delivery_count(&self) -> usize {
        self.deliveries().len()
    }

    pub fn delivered_context_ids(&self) -> HashSet<i64> {
        self.deliveries()
            .iter()
            .filter_map(|r| r.context_object_id())
            .collect()
    }

    pub fn deliveries_of(&self, context_object_id: i64) -> Vec<Recorded> {
        self.deliveries()
            .into_iter()
            .filter(|r| r.context_object_id() == Some(context_object_id))
            .collect()
    }

    /// Waits until at least `n` deliveries arrived; returns all of them.
    pub async fn wait_for_deliveries(&self, n: usize, deadline: Duration) -> Vec<Recorded> {
        wait_until(
            deadline,
            &format!(
                "receiver :{} has {n} deliveries (has {})",
                self.port,
                self.delivery_count()
            ),
            || self.delivery_count() >= n,
        )
        .await;
        self.deliveries()
    }

    /// Waits until a delivery with this contextObjectId arrived; returns it.
    pub async fn wait_for_context_id(
        &self,
        context_object_id: i64,
        deadline: Duration,
    ) -> Recorded {
        wait_until(
            deadline,
            &format!(
                "receiver :{} got contextObjectId {context_object_id}",
                self.port
            ),
            || !self.deliveries_of(context_object_id).is_empty(),
        )
        .await;
        self.deliveries_of(context_object_id).remove(0)
    }

    /// Waits until every id in `ids` was delivered at least once.
    pub async fn wait_for_context_ids(&self, ids: &HashSet<i64>, deadline: Duration) {
        let start = Instant::now();
        loop {
            let got = self.delivered_context_ids();
            let missing = ids.difference(&got).count();
            if missing == 0 {
                return;
            }
            if start.elapsed() > deadline {
                let mut sample: Vec<_> = ids.difference(&got).copied().collect();
                sample.sort();
                sample.truncate(20);
                panic!(
                    "timed out after {deadline:?}: receiver :{} is missing {missing} of {} contextObjectIds, e.g. {sample:?}",
                    self.port,
                    ids.len()
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Stop accepting; dropping the server future shuts the workers down.
        drop(self.handle.stop(false));
        self.task.abort();
    }
}

async fn record(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let recorded = Recorded {
        method: req.method().to_string(),
        path: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        at: Instant::now(),
    };
    let verification = recorded.is_verification();
    let capacity = shared.capacity.lock().unwrap().clone();
    if let (false, Some(capacity)) = (verification, capacity) {
        return within_capacity(&capacity, recorded, &shared).await;
    }
    shared.requests.lock().unwrap().push(recorded);
    let fixed = *shared.verification_reply.lock().unwrap();
    let reply = if let (true, Some(fixed)) = (verification, fixed) {
        fixed
    } else {
        let mut s = shared.script.lock().unwrap();
        let default = s.1;
        s.0.pop_front().unwrap_or(default)
    };
    if !reply.delay.is_zero() {
        actix_rt::time::sleep(reply.delay).await;
    }
    let status = actix_web::http::StatusCode::from_u16(reply.status).expect("valid status");
    let mut response = HttpResponse::build(status);
    if let Some(seconds) = reply.retry_after {
        response.insert_header(("Retry-After", seconds.to_string()));
    }
    match reply.body {
        Some(body) => response.content_type("text/plain").body(body),
        None => response
            .content_type("application/json")
            .body(format!("{{\"status\":{}}}", reply.status)),
    }
}

/// A delivery to a capacity-limited receiver: served (recorded, 200 after
/// the service time) or refused with 429 at once.
async fn within_capacity(capacity: &Capacity, recorded: Recorded, shared: &Shared) -> HttpResponse {
    if !capacity.arrive() {
        return HttpResponse::TooManyRequests()
            .content_type("application/json")
            .body("{\"status\":429}");
    }
    shared.requests.lock().unwrap().push(recorded);
    actix_rt::time::sleep(capacity.service).await;
    capacity.leave();
    HttpResponse::Ok()
        .content_type("application/json")
        .body("{\"status\":200}")
}

/// A URL on 127.0.0.1 where nothing listens (connection refused).
pub fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/hook")
}
