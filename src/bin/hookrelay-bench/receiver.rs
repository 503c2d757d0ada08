//! The bench's own HTTP server on 127.0.0.1: the webhook receiver
//! (`POST /r/{n}`, answers 200 and counts arrivals) and the bare ingest
//! handler used as the baseline of figure 5 (`POST /baseline`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, mpsc};
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::clock;

/// Which deliveries arrived: the first arrival time of each
/// (receiver path `/r/{n}`, contextObjectId), so duplicates are told apart.
struct Tracker {
    endpoints: usize,
    /// contextObjectIds tracked per endpoint: 0..width.
    width: usize,
    first: Vec<AtomicU64>,
    unique: AtomicU64,
    duplicates: AtomicU64,
    /// Arrivals outside the tracked range (or without a contextObjectId).
    untracked: AtomicU64,
    first_unique_ns: AtomicU64,
    last_unique_ns: AtomicU64,
}

/// What the receiver has seen; shared with the main thread.
#[derive(Default)]
pub struct Arrivals {
    count: AtomicU64,
    tracker: RwLock<Option<Tracker>>,
}

impl Arrivals {
    /// Forgets everything seen so far (verification calls included) and
    /// tracks `/r/0`…`/r/{endpoints-1}` × contextObjectId `0..width`.
    pub fn track(&self, endpoints: usize, width: usize) {
        let tracker = Tracker {
            endpoints,
            width,
            first: (0..endpoints * width).map(|_| AtomicU64::new(0)).collect(),
            unique: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            untracked: AtomicU64::new(0),
            first_unique_ns: AtomicU64::new(u64::MAX),
            last_unique_ns: AtomicU64::new(0),
        };
        *self.tracker.write().unwrap_or_else(|e| e.into_inner()) = Some(tracker);
        self.count.store(0, Ordering::SeqCst);
    }

    /// Stops tracking (frees the table).
    pub fn untrack(&self) {
        *self.tracker.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn read<T>(&self, f: impl FnOnce(&Tracker) -> T) -> Option<T> {
        self.tracker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(f)
    }

    /// Every arrival since `track`.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Distinct tracked (endpoint, contextObjectId) pairs that arrived.
    pub fn unique(&self) -> u64 {
        self.read(|t| t.unique.load(Ordering::SeqCst)).unwrap_or(0)
    }

    /// Arrivals of a tracked pair that had already arrived.
    pub fn duplicates(&self) -> u64 {
        self.read(|t| t.duplicates.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// Arrivals that were not tracked (unexpected path or id).
    pub fn untracked(&self) -> u64 {
        self.read(|t| t.untracked.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// Clock reading of the latest first arrival (0 when none).
    pub fn last_unique_ns(&self) -> u64 {
        self.read(|t| t.last_unique_ns.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// Clock reading of the earliest first arrival (0 when none).
    pub fn first_unique_ns(&self) -> u64 {
        self.read(|t| t.first_unique_ns.load(Ordering::SeqCst))
            .filter(|ns| *ns != u64::MAX)
            .unwrap_or(0)
    }

    /// First arrival times at `/r/{endpoint}` by contextObjectId (0: never).
    pub fn first_arrivals(&self, endpoint: usize) -> Vec<u64> {
        self.read(|t| {
            let row = endpoint.min(t.endpoints.saturating_sub(1)) * t.width;
            t.first[row..row + t.width]
                .iter()
                .map(|a| a.load(Ordering::SeqCst))
                .collect()
        })
        .unwrap_or_default()
    }

    pub fn arrived(&self, endpoint: usize, body: &[u8]) {
        let now = clock::now_ns();
        if let Some(t) = self
            .tracker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let id = context_object_id(body).and_then(|id| usize::try_from(id).ok());
            match id {
                Some(id) if id < t.width && endpoint < t.endpoints => {
                    let slot = &t.first[endpoint * t.width + id];
                    if slot
                        .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        // The time first, so whoever sees the count also
                        // sees the time.
                        t.first_unique_ns.fetch_min(now, Ordering::SeqCst);
                        t.last_unique_ns.fetch_max(now, Ordering::SeqCst);
                        t.unique.fetch_add(1, Ordering::SeqCst);
                    } else {
                        t.duplicates.fetch_add(1, Ordering::SeqCst);
                    }
                }
                _ => {
                    t.untracked.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

/// Finds `"contextObjectId":<digits>` in a delivered body without a full
/// JSON parse (the receiver must stay cheap).
fn context_object_id(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"contextObjectId\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = body[at..]
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| b.is_ascii_digit());
    let mut n: u64 = 0;
    let mut any = false;
    for d in digits {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(n)
}

async fn receive(
    arrivals: web::Data<Arrivals>,
    endpoint: web::Path<usize>,
    body: web::Bytes,
) -> HttpResponse {
    arrivals.arrived(endpoint.into_inner(), &body);
    HttpResponse::Ok().finish()
}

/// The bare handler of figure 5: parse, check it is an object, answer 202
/// like hookrelay does, store nothing.
async fn baseline(body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(_)) => {
            HttpResponse::Accepted().json(json!({"eventId": "x", "deliveries": 0}))
        }
        _ => HttpResponse::BadRequest().json(json!({"error": "invalid_event"})),
    }
}

/// The running receiver.
pub struct ReceiverServer {
    pub port: u16,
    pub arrivals: Arc<Arrivals>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl ReceiverServer {
    /// Starts the server on its own thread with `workers` worker threads.
    pub fn start(workers: usize) -> Result<ReceiverServer, String> {
        let arrivals = Arc::new(Arrivals::default());
        let shared = arrivals.clone();
        let (port, handle, thread) = serve_on_thread("receiver", move || {
            let data = web::Data::from(shared);
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .route("/r/{n}", web::post().to(receive))
                    .route("/baseline", web::post().to(baseline))
            })
            .workers(workers)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(("127.0.0.1", 0))?;
            let port = server.addrs().first().map_or(0, |a| a.port());
            Ok((port, server.run()))
        })?;
        Ok(ReceiverServer {
            port,
            arrivals,
            handle,
            thread: Some(thread),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops the server and joins its thread.
    pub fn stop(mut self) {
        let handle = self.handle.clone();
        actix_rt::System::new().block_on(handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs an actix-web server on a thread of its own (`bench-<name>`, with
/// its own System): `start` binds and runs it there. Answers its port,
/// handle and thread once it listens.
pub fn serve_on_thread(
    name: &str,
    start: impl FnOnce() -> std::io::Result<(u16, actix_web::dev::Server)> + Send + 'static,
) -> Result<(u16, ServerHandle, JoinHandle<()>), String> {
    let (tx, rx) = mpsc::channel();
    let what = name.to_string();
    let thread = std::thread::Builder::new()
        .name(format!("bench-{name}"))
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let running = match start() {
                    Ok((port, running)) => {
                        let _ = tx.send(Ok((port, running.handle())));
                        running
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("{what}: cannot bind 127.0.0.1:0: {e}")));
                        return;
                    }
                };
                if let Err(e) = running.await {
                    eprintln!("bench {what} stopped with an error: {e}");
                }
            });
        })
        .map_err(|e| format!("cannot start the {name} thread: {e}"))?;
    let (port, handle) = rx
        .recv()
        .map_err(|_| format!("the {name} thread ended before it listened"))??;
    Ok((port, handle, thread))
}

#[cfg(test)]
mod tests {
    use super::context_object_id;

    #[test]
    fn finds_the_context_object_id() {
        assert_eq!(
            context_object_id(br#"{"event":"x","contextObjectId":1234,"a":1}"#),
            Some(1234)
        );
        assert_eq!(context_object_id(br#"{"contextObjectId": 7}"#), Some(7));
        assert_eq!(context_object_id(br#"{"contextObjectId":"7"}"#), None);
        assert_eq!(context_object_id(b"{}"), None);
    }
}
