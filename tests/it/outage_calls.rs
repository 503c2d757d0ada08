//! What the outage tests' requests saw: one push or `/health` poll
//! ([`Call`], [`Answer`]), the steady stream of pushes, the `/health`
//! poller, when the outage happened ([`Timeline`]), and all of it
//! ([`Observed`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

/// One push this often (each its own request, not waiting for the last).
pub(crate) const PUSH_EVERY: Duration = Duration::from_millis(30);
/// Pushes awaiting their answer at most; a tick past this is skipped.
pub(crate) const MAX_OUTSTANDING: usize = 64;
/// The test's own HTTP timeout: no answer by then is a hang.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// `/health` is polled this often.
pub(crate) const HEALTH_EVERY: Duration = Duration::from_millis(200);

/// What one HTTP request got.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Value,
    },
    /// Transport error or no answer within [`CLIENT_TIMEOUT`].
    None(String),
}

impl Answer {
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Answer::Status { status, .. } => Some(*status),
            Answer::None(_) => None,
        }
    }

    pub(crate) fn body(&self) -> &Value {
        match self {
            Answer::Status { body, .. } => body,
            Answer::None(_) => &Value::Null,
        }
    }
}

/// One request the test made, with when and how long it took.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    /// The event's contextObjectId (pushes), 0 for health polls.
    pub(crate) id: i64,
    pub(crate) node: usize,
    pub(crate) sent: Instant,
    pub(crate) took: Duration,
    pub(crate) answer: Answer,
}

/// When the outage happened.
#[derive(Clone, Copy)]
pub(crate) struct Timeline {
    /// `pg_ctl stop` called.
    pub(crate) down: Instant,
    /// `pg_ctl stop` returned: the server is gone.
    pub(crate) stopped: Instant,
    /// `pg_ctl start` called.
    pub(crate) restarting: Instant,
    /// `pg_ctl start` returned: the server accepts connections again.
    pub(crate) back: Instant,
}

impl Timeline {
    pub(crate) fn phase(&self, at: Instant) -> &'static str {
        if at < self.down {
            "before"
        } else if at < self.back {
            "during"
        } else {
            "after"
        }
    }

    pub(crate) fn rel(&self, at: Instant) -> String {
        if at >= self.down {
            format!("down+{:.2}s", (at - self.down).as_secs_f64())
        } else {
            format!("down-{:.2}s", (self.down - at).as_secs_f64())
        }
    }
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .disable_redirects()
        .finish()
}

/// Sends one request; never panics (a transport error is an answer too).
async fn send(client: &awc::Client, url: &str, body: Option<&Value>) -> (Duration, Answer) {
    let sent = Instant::now();
    let res = match body {
        Some(b) => client.post(url).send_json(b).await,
        None => client.get(url).send().await,
    };
    let answer = match res {
        Err(e) => Answer::None(format!("{e}")),
        Ok(mut r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match r.body().await {
                Ok(bytes) => Answer::Status {
                    status,
                    retry_after,
                    body: serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&bytes).into_owned())
                    }),
                },
                Err(e) => Answer::None(format!("{status}, then reading the body failed: {e}")),
            }
        }
    };
    (sent.elapsed(), answer)
}

/// Pushes event 1, 2, 3, … every [`PUSH_EVERY`], round robin over
/// `push_urls`, each push its own task, until `stop`; records every answer.
/// Returns how many ticks were skipped because [`MAX_OUTSTANDING`] pushes
/// were still unanswered.
pub(crate) async fn stream(
    push_urls: Vec<String>,
    marketplace: i64,
    stop: Rc<Cell<bool>>,
    calls: Rc<RefCell<Vec<Call>>>,
    outstanding: Rc<Cell<usize>>,
) -> usize {
    let client = client();
    let mut id = 0i64;
    let mut skipped = 0;
    let mut next = Instant::now();
    while !stop.get() {
        if outstanding.get() < MAX_OUTSTANDING {
            id += 1;
            let node = id as usize % push_urls.len();
            let url = push_urls[node].clone();
            let (client, calls, outstanding) = (client.clone(), calls.clone(), outstanding.clone());
            outstanding.set(outstanding.get() + 1);
            actix_rt::spawn(async move {
                let ev = event(REVISION_STATUS_UPDATED, marketplace, id);
                let sent = Instant::now();
                let (took, answer) = send(&client, &url, Some(&ev)).await;
                calls.borrow_mut().push(Call {
                    id,
                    node,
                    sent,
                    took,
                    answer,
                });
                outstanding.set(outstanding.get() - 1);
            });
        } else {
            skipped += 1;
        }
        next += PUSH_EVERY;
        sleep(next.saturating_duration_since(Instant::now())).await;
    }
    skipped
}

/// Polls every node's `/health` every [`HEALTH_EVERY`] until `stop`.
pub(crate) async fn poll_health(health_urls: Vec<String>, stop: Rc<Cell<bool>>) -> Vec<Call> {
    let client = client();
    let mut polls = Vec::new();
    while !stop.get() {
        for (node, url) in health_urls.iter().enumerate() {
            let sent = Instant::now();
            let (took, answer) = send(&client, url, None).await;
            polls.push(Call {
                id: 0,
                node,
                sent,
                took,
                answer,
            });
        }
        sleep(HEALTH_EVERY).await;
    }
    polls
}

/// What the test saw while PostgreSQL went away and came back.
pub(crate) struct Observed {
    /// Every push, answered.
    pub(crate) calls: Vec<Call>,
    pub(crate) health: Vec<Call>,
    /// Ticks of the stream skipped with [`MAX_OUTSTANDING`] pushes unanswered.
    pub(crate) skipped: usize,
    pub(crate) t: Timeline,
}
