//! Storage trouble on SQLite: the database's disk fills up while an
//! endpoint is down. Pushes then get a 503 that names the cause, `/health`
//! is not ready, a metric counts it, nothing accepted is lost, and once
//! space is freed the node accepts and delivers again with no restart.
//!
//! Needs root (it mounts a 4 MiB tmpfs for the database); otherwise it
//! passes as skipped, saying so. CI runs as root.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "storage-trouble-secret";
const MARKETPLACE: i64 = 9100;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::Builder::new()
            .prefix("hookrelay-disk-")
            .tempdir()
            .ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn fill(path: &Path, bytes: usize) {
    std::fs::write(path, vec![b'x'; bytes]).expect("write the filler file");
}

/// An event of about 40 KB, so that a few dozen fill the disk.
fn big_event(context_object_id: i64) -> Value {
    let mut ev = event(REVISION_STATUS_UPDATED, MARKETPLACE, context_object_id);
    ev["triggeringUserName"] = Value::String("n".repeat(40_000));
    ev
}

/// Pushes 40 KB events until one is refused with 503; answers the ids
/// accepted before and the refusal's body. Any other answer fails.
async fn push_until_refused(app: &TestApp) -> (HashSet<i64>, Value) {
    let mut accepted: HashSet<i64> = HashSet::new();
    for i in 1..=400 {
        let (status, body) = app.push_event(&big_event(i)).await;
        match status {
            202 => {
                accepted.insert(i);
            }
            503 => return (accepted, body),
            other => panic!(
                "push {i} onto a filling disk answered {other} (want 202 or 503): {body}\n{}",
                app.log_tail(30)
            ),
        }
    }
    panic!(
        "400 pushes of 40 KB fit on a 4 MiB disk?\n{}",
        app.log_tail(30)
    )
}

/// `/health` says not ready, and why; a metric counts it.
async fn assert_reported_not_ready(app: &TestApp) {
    wait_until_async(
        SOON,
        "/health is not ready while the disk is full",
        || async {
            let (status, body) = app.health().await;
            status == 503
                && body["ready"] == false
                && body["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("cannot store"))
        },
    )
    .await;
    let trouble = app.scrape().await.sum(
        "hookrelay_storage_trouble_total",
        &[("kind", "writes_failing")],
    );
    assert!(trouble >= 1.0, "hookrelay_storage_trouble_total: {trouble}");
}

#[actix_rt::test]
async fn when_the_sqlite_disk_is_full_pushes_get_503_and_the_node_recovers_by_itself_once_space_is_freed()
 {
    if !is_root() {
        eprintln!("skipped: the disk-full test mounts a tmpfs and needs root");
        return;
    }
    let Some(disk) = SmallDisk::mount("4m") else {
        eprintln!("skipped: could not mount a tmpfs");
        return;
    };
    // Space the test frees once the disk is full.
    let filler = disk.path("filler");
    fill(&filler, 1_500_000);

    let receiver = Receiver::start().await;
    let app = TestApp::spawn_on_sqlite_file(
        &disk.path("hookrelay.db"),
        &[
            "--pause-after-failures",
            "1",
            "--probe-interval",
            "200ms",
            "--probe-max-interval",
            "400ms",
        ],
    )
    .await;
    let token = app.token(MARKETPLACE, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    // The endpoint goes down: its deliveries are held (paused), pending.
    receiver.set_status(503);

    let (mut accepted, refusal) = push_until_refused(&app).await;
    eprintln!(
        "disk full after {} accepted events; the refusal: {refusal}",
        accepted.len()
    );
    assert!(
        !accepted.is_empty(),
        "nothing was accepted before the disk filled"
    );
    assert_eq!(refusal["error"], "storage_unavailable", "{refusal}");
    let message = refusal["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("disk") && message.contains("--history-retention"),
        "the 503 must name the cause and the remedy: {message}"
    );
    assert_reported_not_ready(&app).await;

    // Space comes back: the node says ready and accepts again, unrestarted.
    std::fs::remove_file(&filler).expect("remove the filler");
    wait_until_async(SOON, "/health is ready once space is freed", || async {
        app.health().await.0 == 200
    })
    .await;
    let again = app.push_event_ok(&big_event(10_000)).await;
    assert_eq!(again["deliveries"], 1, "{again}");
    accepted.insert(10_000);

    // The endpoint returns: everything accepted arrives.
    receiver.set_status(200);
    receiver
        .wait_for_context_ids(&accepted, Duration::from_secs(60))
        .await;
    let delivered = receiver.delivered_context_ids();
    let refused: Vec<i64> = delivered.difference(&accepted).copied().collect();
    assert!(
        refused.is_empty(),
        "events answered 503 were delivered anyway: {refused:?}"
    );
}
