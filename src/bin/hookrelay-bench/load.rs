//! Load generation: keep-alive awc clients on their own threads (one actix
//! System and one client per thread; awc clients are `!Send`), running a
//! number of concurrent request loops, closed-loop, over pre-built bodies.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

use crate::clock;

/// Pause before re-sending a request that was answered 503 (overloaded).
const RETRY_PAUSE: Duration = Duration::from_millis(2);

/// A keep-alive client for `conns` concurrent requests.
pub fn client(conns: usize) -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .disable_redirects()
        .connector(awc::Connector::new().limit(conns.max(1) * 2))
        .finish()
}

/// POSTs a JSON body and reads the whole answer (so the connection is
/// reused).
pub async fn post(
    client: &awc::Client,
    url: &str,
    body: Bytes,
    bearer: Option<&str>,
) -> Result<(u16, Bytes), String> {
    let mut request = client
        .post(url)
        .insert_header(("Content-Type", "application/json"));
    if let Some(token) = bearer {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let response = request
        .send_body(body)
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    read_answer(response, 64 << 20, "POST", url).await
}

/// GETs a URL and reads the whole answer.
pub async fn get(client: &awc::Client, url: &str) -> Result<(u16, Bytes), String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    read_answer(response, 1 << 30, "GET", url).await
}

/// The status and the whole body (at most `limit` bytes) of an answer.
async fn read_answer(
    mut response: awc::ClientResponse,
    limit: usize,
    method: &str,
    url: &str,
) -> Result<(u16, Bytes), String> {
    let answer = response
        .body()
        .limit(limit)
        .await
        .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?;
    Ok((response.status().as_u16(), answer))
}

/// A request body and the number of events it carries.
#[derive(Clone)]
pub struct Item {
    pub body: Bytes,
    pub events: usize,
}

/// What a good answer looks like.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// The bench receiver: 200.
    Receiver,
    /// `POST /internal/v1/events` (or the baseline): 202 with `deliveries`.
    Single { deliveries: u64 },
    /// `POST /internal/v1/events/batch`: 202, every event accepted.
    Batch,
}

enum Outcome {
    Ok,
    Overloaded,
    Failed(String),
}

#[derive(Deserialize)]
struct SingleAnswer {
    deliveries: u64,
}

#[derive(Deserialize)]
struct BatchAnswer {
    accepted: usize,
    rejected: usize,
}

impl Answer {
    fn judge(self, url: &str, status: u16, body: &[u8], events: usize) -> Outcome {
        let snippet = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        match (self, status) {
            (_, 503) => Outcome::Overloaded,
            (Answer::Receiver, 200) => Outcome::Ok,
            (Answer::Single { deliveries }, 202) => {
                match serde_json::from_slice::<SingleAnswer>(body) {
                    Ok(a) if a.deliveries == deliveries => Outcome::Ok,
                    Ok(a) => Outcome::Failed(format!(
                        "POST {url}: the event was routed to {} subscriptions, expected {deliveries}",
                        a.deliveries
                    )),
                    Err(e) => Outcome::Failed(format!(
                        "POST {url}: unexpected answer ({e}): {}",
                        snippet()
                    )),
                }
            }
            (Answer::Batch, 202) => match serde_json::from_slice::<BatchAnswer>(body) {
                Ok(a) if a.accepted == events && a.rejected == 0 => Outcome::Ok,
                Ok(a) => Outcome::Failed(format!(
                    "POST {url}: {} of {events} events accepted, {} rejected",
                    a.accepted, a.rejected
                )),
                Err(e) => Outcome::Failed(format!(
                    "POST {url}: unexpected answer ({e}): {}",
                    snippet()
                )),
            },
            _ => Outcome::Failed(format!("POST {url}: answered {status}: {}", snippet())),
        }
    }
}

/// What a load run did.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Requests answered as expected.
    pub ok: u64,
    /// Events carried by those requests.
    pub events: u64,
    /// 503 answers (the request was sent again, or counted and skipped).
    pub overloaded: u64,
    /// Clock reading of the last good answer.
    pub last_ok_ns: u64,
    /// Clock reading when the last loop ended.
    pub end_ns: u64,
    pub error: Option<String>,
}

impl Tally {
    pub fn failed(message: impl Into<String>) -> Tally {
        Tally {
            error: Some(message.into()),
            ..Tally::default()
        }
    }

    pub fn merge(mut self, other: Tally) -> Tally {
        self.ok += other.ok;
        self.events += other.events;
        self.overloaded += other.overloaded;
        self.last_ok_ns = self.last_ok_ns.max(other.last_ok_ns);
        self.end_ns = self.end_ns.max(other.end_ns);
        self.error = self.error.or(other.error);
        self
    }
}

/// Starts a thread that plays clients: named so that `cpu` counts its CPU
/// as the bench's clients', also once it has ended.
pub fn thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(format!("{}{name}", crate::cpu::LOAD_THREAD))
        .spawn(move || {
            let out = f();
            crate::cpu::load_thread_ends();
            out
        })
}

/// Runs `tasks` copies of `task` spread over `threads` threads and waits
/// for all of them. Each thread has one client shared by its tasks.
pub fn spread<F, Fut>(threads: usize, tasks: usize, task: F) -> Tally
where
    F: Fn(awc::Client) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Tally> + 'static,
{
    let task = Arc::new(task);
    let threads = threads.clamp(1, tasks.max(1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let task = task.clone();
            let mine = tasks / threads + usize::from(t < tasks % threads);
            thread(&t.to_string(), move || {
                actix_rt::System::new().block_on(async move {
                    let client = client(mine);
                    let running: Vec<_> = (0..mine)
                        .map(|_| actix_rt::spawn(task(client.clone())))
                        .collect();
                    let mut tally = Tally::default();
                    for r in running {
                        tally = tally.merge(
                            r.await
                                .unwrap_or_else(|_| Tally::failed("a load task panicked")),
                        );
                    }
                    tally
                })
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| match h {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Tally::failed("a load thread panicked")),
            Err(e) => Tally::failed(format!("cannot start a load thread: {e}")),
        })
        .fold(Tally::default(), Tally::merge)
}

/// One closed loop: sends `items[next]` until `until`, cycling over the
/// items. 503 answers are counted and the loop goes on.
pub async fn for_duration(
    client: awc::Client,
    url: Arc<str>,
    items: Arc<Vec<Item>>,
    next: Arc<AtomicUsize>,
    until: Instant,
    answer: Answer,
) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < until {
        let item = &items[next.fetch_add(1, Ordering::Relaxed) % items.len()];
        match post(&client, &url, item.body.clone(), None).await {
            Ok((status, body)) => match answer.judge(&url, status, &body, item.events) {
                Outcome::Ok => {
                    tally.ok += 1;
                    tally.events += item.events as u64;
                    tally.last_ok_ns = clock::now_ns();
                }
                Outcome::Overloaded => {
                    tally.overloaded += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Outcome::Failed(e) => {
                    tally.error = Some(e);
                    break;
                }
            },
            Err(e) => {
                tally.error = Some(e);
                break;
            }
        }
    }
    tally.end_ns = clock::now_ns();
    tally
}

/// One closed loop: takes items by index until all are sent; a 503 answer
/// sends the same item again after a short pause. Stops at the first
/// other failure, or when `stop` is past.
pub async fn each_once(
    client: awc::Client,
    url: Arc<str>,
    items: Arc<Vec<Item>>,
    next: Arc<AtomicUsize>,
    answer: Answer,
    stop: Instant,
) -> Tally {
    let mut tally = Tally::default();
    'items: loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(item) = items.get(i) else { break };
        loop {
            if Instant::now() > stop {
                tally.error = Some(format!("gave up pushing at the deadline (item {i})"));
                break 'items;
            }
            match post(&client, &url, item.body.clone(), None).await {
                Ok((status, body)) => match answer.judge(&url, status, &body, item.events) {
                    Outcome::Ok => {
                        tally.ok += 1;
                        tally.events += item.events as u64;
                        tally.last_ok_ns = clock::now_ns();
                        break;
                    }
                    Outcome::Overloaded => {
                        tally.overloaded += 1;
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    Outcome::Failed(e) => {
                        tally.error = Some(e);
                        break 'items;
                    }
                },
                Err(e) => {
                    tally.error = Some(e);
                    break 'items;
                }
            }
        }
    }
    tally.end_ns = clock::now_ns();
    tally
}
