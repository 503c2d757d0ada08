//! Durability: nothing accepted is lost on kill -9 or SIGTERM; SIGTERM exits 0.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "crash-secret-0123456789";

#[actix_rt::test]
async fn every_accepted_event_is_delivered_after_a_kill_9_and_a_restart() {
    let mut app = TestApp::spawn_with(&[
        "--max-in-flight-per-endpoint",
        "4",
        "--retry-schedule",
        "500ms,1s,2s,5s,10s",
    ])
    .await;
    let receiver = Receiver::start().await;
    let token = app.token(3000, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    receiver.set_reply(Reply::delayed(Duration::from_millis(50), 200));

    const TOTAL: i64 = 3000;
    for chunk in 0..3 {
        let events: Vec<Value> = (1..=1000)
            .map(|i| event(REVISION_STATUS_UPDATED, 3000, chunk * 1000 + i))
            .collect();
        let (status, body) = app.push_batch(&events).await;
        assert_eq!(
            status,
            202,
            "batch {chunk}: {}",
            if status == 202 {
                String::new()
            } else {
                body.to_string()
            }
        );
        assert_eq!(body["accepted"], 1000, "batch {chunk} accepted count");
    }

    wait_until(
        Duration::from_secs(60),
        "the receiver saw the first 100 deliveries",
        || receiver.delivered_context_ids().len() >= 100,
    )
    .await;
    app.kill9();
    let seen_at_kill = receiver.delivered_context_ids().len();
    assert!(
        (seen_at_kill as i64) < TOTAL,
        "all {TOTAL} were delivered before the kill, so this run proves nothing; slow the receiver down"
    );

    app.start().await;
    receiver.set_reply(Reply::status(200));
    let all: HashSet<i64> = (1..=TOTAL).collect();
    receiver
        .wait_for_context_ids(&all, Duration::from_secs(240))
        .await;
    let duplicates = receiver.delivery_count() - TOTAL as usize;
    eprintln!("seen before kill -9: {seen_at_kill}; duplicates after restart: {duplicates}");
    for d in receiver.deliveries().iter().step_by(199) {
        assert_signed(d, SECRET);
    }
}

#[actix_rt::test]
async fn sigterm_stops_an_idle_server_with_exit_status_0() {
    let mut app = TestApp::spawn().await;
    app.assert_healthy("before SIGTERM").await;
    assert_exits_0_after_sigterm(&mut app, "an idle server").await;
}

#[actix_rt::test]
async fn sigterm_during_deliveries_exits_0_and_a_restart_delivers_the_rest() {
    let mut app = TestApp::spawn_with(&["--max-in-flight-per-endpoint", "2"]).await;
    let receiver = Receiver::start().await;
    let token = app.token(3100, 1).await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), SECRET)
        .await;
    receiver.set_reply(Reply::delayed(Duration::from_millis(200), 200));

    let events: Vec<Value> = (1..=200)
        .map(|i| event(QTI_EXPORT_READY, 3100, i))
        .collect();
    let (status, body) = app.push_batch(&events).await;
    assert_eq!(status, 202, "{body}");
    wait_until(SOON, "a few deliveries arrived", || {
        receiver.delivery_count() >= 5
    })
    .await;

    assert_exits_0_after_sigterm(&mut app, "deliveries pending").await;

    app.start().await;
    receiver.set_reply(Reply::status(200));
    receiver
        .wait_for_context_ids(&(1..=200).collect(), Duration::from_secs(60))
        .await;
}

/// A publish that the database refuses (here: another process holds
/// SQLite's write lock longer than the busy timeout) gets a JSON 503
/// (retry later) and stores nothing; once the database writes again, so does
/// hookrelay, and only the accepted event is delivered.
#[actix_rt::test]
async fn a_publish_the_database_refuses_gets_a_json_error_and_the_next_one_is_stored() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};

    let app = TestApp::spawn().await;
    if app.backend() != Backend::Sqlite {
        eprintln!("SQLite write lock test: skipped on {:?}", app.backend());
        return;
    }
    let receiver = Receiver::start().await;
    let token = app.token(3100, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;

    let mut blocker = SqliteConnection::establish(app.db_path.to_str().unwrap()).unwrap();
    blocker.batch_execute("BEGIN IMMEDIATE").unwrap();
    let refused = app
        .push_event(&event(REVISION_STATUS_UPDATED, 3100, 1))
        .await;
    assert_json_error(&refused, 503, "a publish while the database is locked");
    assert_eq!(refused.1["error"], "storage_unavailable", "{refused:?}");
    blocker.batch_execute("ROLLBACK").unwrap();
    drop(blocker);

    let accepted = app
        .push_event_ok(&event(REVISION_STATUS_UPDATED, 3100, 2))
        .await;
    assert_eq!(accepted["deliveries"], 1, "{accepted}");
    receiver
        .wait_for_context_ids(&HashSet::from([2]), Duration::from_secs(30))
        .await;
    assert_eq!(
        receiver.delivered_context_ids(),
        HashSet::from([2]),
        "the refused event must not be delivered"
    );
}

/// SIGTERM, then the server must exit with status 0 within 30 s.
async fn assert_exits_0_after_sigterm(app: &mut TestApp, context: &str) {
    let status = app.sigterm(Duration::from_secs(30)).await;
    let status = status.unwrap_or_else(|| {
        panic!(
            "{context}: the server was still running 30 s after SIGTERM\n{}",
            app.log_tail(40)
        )
    });
    assert!(
        status.success(),
        "{context}: exit status after SIGTERM: {status:?}\n{}",
        app.log_tail(40)
    );
}
