//! The LISTEN side of work notifications: a thread with its own PostgreSQL
//! connection that waits for `hookrelay_work` notifications (endpoint ids
//! that received deliveries on another node) and pokes the router. It
//! reconnects by itself; missed notifications are caught by `sync`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::Addr;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use crate::router::{Router, WorkArrived};
use crate::store::leases::WORK_CHANNEL;

/// How often the connection is checked for notifications.
const POLL: Duration = Duration::from_millis(5);
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Starts the listener thread; it ends when `stop` is set.
pub fn spawn(url: String, router: Addr<Router>, stop: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new()
        .name("hookrelay-listen".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listen(&url, &router, &stop) {
                    Ok(()) => return,
                    Err(e) => {
                        log::warn!("work notifications interrupted ({e}); reconnecting");
                        std::thread::sleep(RECONNECT_AFTER);
                    }
                }
            }
        });
}

fn listen(url: &str, router: &Addr<Router>, stop: &AtomicBool) -> Result<(), String> {
    let mut conn = PgConnection::establish(url).map_err(|e| e.to_string())?;
    conn.batch_execute(&format!("LISTEN {WORK_CHANNEL}"))
        .map_err(|e| e.to_string())?;
    while !stop.load(Ordering::Relaxed) {
        let mut ids = Vec::new();
        for notification in conn.notifications_iter() {
            let notification = notification.map_err(|e| e.to_string())?;
            ids.extend(
                notification
                    .payload
                    .split(',')
                    .filter_map(|s| s.parse::<i64>().ok()),
            );
        }
        if ids.is_empty() {
            std::thread::sleep(POLL);
        } else {
            ids.sort_unstable();
            ids.dedup();
            router.do_send(WorkArrived(ids));
        }
    }
    Ok(())
}
