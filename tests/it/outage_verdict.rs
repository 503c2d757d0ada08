//! The outage tests' verdict: what was wrong with the answers to pushes and
//! to `/health`, and with the nodes' recovery, each failed check as one
//! line so that a run reports them all at once.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::outage::{DELIVERED_WITHIN, SLOWEST_ANSWER};
use crate::outage_calls::{Answer, Call, MAX_OUTSTANDING, Observed, Timeline};

/// What the pushes' answers showed.
#[derive(Default)]
pub(crate) struct PushAnswers {
    /// `(phase, status or "no answer")` → how many.
    counts: HashMap<(&'static str, String), usize>,
    /// Neither 202 (with an eventId) nor 503.
    wrong: Vec<String>,
    /// Sent during the outage and answered after more than [`SLOWEST_ANSWER`].
    slow: Vec<String>,
    /// 503 without `Retry-After` or a JSON error.
    bad_503: Vec<String>,
    slowest_503: Duration,
    slowest_during: Duration,
}

impl PushAnswers {
    pub(crate) fn of(calls: &[Call], t: &Timeline) -> PushAnswers {
        let mut answers = PushAnswers::default();
        for c in calls {
            answers.judge(c, t);
        }
        answers
    }

    fn judge(&mut self, c: &Call, t: &Timeline) {
        let phase = t.phase(c.sent);
        let label = c
            .answer
            .status()
            .map_or_else(|| "no answer".to_string(), |s| s.to_string());
        *self.counts.entry((phase, label)).or_default() += 1;
        let what = format!(
            "event {} via node {} sent at {} ({phase}), answered after {:?}",
            c.id,
            c.node,
            t.rel(c.sent),
            c.took
        );
        match &c.answer {
            Answer::None(e) => self.wrong.push(format!("{what}: {e}")),
            Answer::Status {
                status: 202, body, ..
            } => {
                if body["eventId"].is_null() {
                    self.wrong
                        .push(format!("{what}: 202 without an eventId: {body}"));
                }
            }
            Answer::Status {
                status: 503,
                retry_after,
                body,
            } => {
                self.slowest_503 = self.slowest_503.max(c.took);
                if retry_after.is_none()
                    || !body["error"].is_string()
                    || !body["message"].is_string()
                {
                    self.bad_503
                        .push(format!("{what}: Retry-After {retry_after:?}, body {body}"));
                }
            }
            Answer::Status { status, body, .. } => {
                self.wrong.push(format!("{what}: {status} {body}"))
            }
        }
        if phase == "during" {
            self.slowest_during = self.slowest_during.max(c.took);
            if c.took > SLOWEST_ANSWER {
                self.slow.push(what);
            }
        }
    }

    pub(crate) fn report(&self, nodes: usize, seen: &Observed) {
        let mut table: Vec<_> = self.counts.iter().collect();
        table.sort();
        let t = &seen.t;
        eprintln!(
            "{nodes} node(s): {} pushes ({} ticks skipped with {MAX_OUTSTANDING} unanswered); \
             PostgreSQL down {:?} (stop took {:?}, start took {:?}); answers by phase: {table:?}; \
             slowest 503 {:?}; slowest answer to a push sent during the outage {:?}",
            seen.calls.len(),
            seen.skipped,
            t.back - t.down,
            t.stopped - t.down,
            t.back - t.restarting,
            self.slowest_503,
            self.slowest_during,
        );
    }
}

/// The `/health` polls that answered neither 200 nor 503 (with a reason)
/// within [`SLOWEST_ANSWER`], and per node how long after the stop it first
/// said `"ready": false` while PostgreSQL was away.
pub(crate) fn judge_health(
    health: &[Call],
    t: &Timeline,
    nodes: usize,
) -> (Vec<String>, Vec<Option<Duration>>) {
    let mut wrong = Vec::new();
    let mut first_not_ready: Vec<Option<Duration>> = vec![None; nodes];
    for h in health {
        let what = format!(
            "/health of node {} at {} ({})",
            h.node,
            t.rel(h.sent),
            t.phase(h.sent)
        );
        if h.took > SLOWEST_ANSWER {
            wrong.push(format!("{what} took {:?}", h.took));
        }
        match h.answer.status() {
            Some(200) | Some(503) => {}
            _ => wrong.push(format!("{what}: {:?}", h.answer)),
        }
        let body = h.answer.body();
        let not_ready = h.answer.status() == Some(503) && body["ready"] == Value::Bool(false);
        if h.answer.status() == Some(503) && !body["reason"].is_string() {
            wrong.push(format!("{what}: 503 without a \"reason\": {body}"));
        }
        if not_ready && h.sent >= t.stopped && h.sent < t.restarting {
            let since = h.sent - t.stopped;
            let first = &mut first_not_ready[h.node];
            *first = Some(first.map_or(since, |f| f.min(since)));
        }
    }
    (wrong, first_not_ready)
}

/// What some endpoints still miss: `(path and count, a sample of ids)`.
pub(crate) type Missing = Vec<(String, Vec<String>)>;

/// The nodes that exited or were restarted (`pids` as they started).
pub(crate) fn node_failures(apps: &mut [TestApp], pids: &[u32]) -> Vec<String> {
    let mut failures = Vec::new();
    for (n, app) in apps.iter_mut().enumerate() {
        if !app.is_running() {
            failures.push(format!(
                "node {n} exited during the outage\n{}",
                app.log_tail(60)
            ));
        } else if app.pid() != pids[n] {
            failures.push(format!("node {n} was restarted"));
        }
    }
    failures
}

fn first_20(v: &[String]) -> String {
    v[..v.len().min(20)].join("\n    ")
}

/// The wrong, badly formed or slow answers to pushes and to `/health`.
pub(crate) fn answer_failures(answers: &PushAnswers, health_wrong: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    if !answers.wrong.is_empty() {
        failures.push(format!(
            "pushes must answer 202 or 503, nothing else; {} did not (first 20):\n    {}",
            answers.wrong.len(),
            first_20(&answers.wrong)
        ));
    }
    if !answers.bad_503.is_empty() {
        failures.push(format!(
            "every 503 carries Retry-After and a JSON {{error, message}}; {} did not (first 20):\n    {}",
            answers.bad_503.len(),
            first_20(&answers.bad_503)
        ));
    }
    if !answers.slow.is_empty() {
        failures.push(format!(
            "pushes during the outage must be answered within {SLOWEST_ANSWER:?}; {} were not \
             (first 20):\n    {}",
            answers.slow.len(),
            first_20(&answers.slow)
        ));
    }
    if !health_wrong.is_empty() {
        failures.push(format!(
            "/health must answer 200 or 503 (with a reason) within {SLOWEST_ANSWER:?}:\n    {}",
            first_20(health_wrong)
        ));
    }
    failures
}

/// What the nodes said and did about the outage and the return.
pub(crate) struct Recovery {
    pub(crate) first_not_ready: Vec<Option<Duration>>,
    pub(crate) ready_again: Vec<Option<Duration>>,
    pub(crate) delivered: Result<Duration, Missing>,
    pub(crate) accepted: usize,
}

/// Not ready while away, ready again, every accepted event delivered, and a
/// push after the return accepted.
pub(crate) fn recovery_failures(r: &Recovery, seen: &Observed) -> Vec<String> {
    let mut failures = Vec::new();
    if !r.first_not_ready.iter().all(Option::is_some) {
        failures.push(format!(
            "/health must say \"ready\": false while the database is down; per node, first seen \
             after the stop: {:?}",
            r.first_not_ready
        ));
    }
    if r.ready_again.iter().any(Option::is_none) {
        failures.push(format!(
            "/health was not ready on every node {DELIVERED_WITHIN:?} after the database's return"
        ));
    }
    if let Err(missing) = &r.delivered {
        failures.push(format!(
            "{DELIVERED_WITHIN:?} after PostgreSQL's return, of {} events answered 202 some never \
             arrived: {missing:?}",
            r.accepted
        ));
    }
    if !seen
        .calls
        .iter()
        .any(|c| seen.t.phase(c.sent) == "after" && c.answer.status() == Some(202))
    {
        failures.push("no push after the database's return was accepted".to_string());
    }
    failures
}
