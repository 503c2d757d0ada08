//! The LISTEN side of the nodes' notifications: a thread with its own
//! PostgreSQL connection that waits for `hookrelay_work` (endpoint ids that
//! received deliveries on another node: the router pokes their actors) and
//! `hookrelay_leases` (leases were freed or the fair shares changed: the
//! lease manager runs a round now) and `hookrelay_policy` (an endpoint's
//! new policy: the router hands it to its actor, before the work notified
//! after it) and `hookrelay_cancel` (endpoints some of whose pending
//! deliveries were cancelled by an erasure: their actors re-check). It
//! reconnects by itself; missed notifications are caught by `sync` and the
//! periodic lease rounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::Recipient;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use super::lease::LeasesMoved;
use super::{DeliveriesCancelled, PolicySet, WorkArrived};
use crate::store::endpoints::{POLICY_CHANNEL, parse_policy_payload};
use crate::store::leases::{CANCEL_CHANNEL, LEASES_CHANNEL, WORK_CHANNEL};

/// Who hears of what.
#[derive(Clone)]
pub struct Listeners {
    pub work: Recipient<WorkArrived>,
    pub leases: Recipient<LeasesMoved>,
    pub policy: Recipient<PolicySet>,
    pub cancelled: Recipient<DeliveriesCancelled>,
}

/// How often the connection is checked for notifications.
const POLL: Duration = Duration::from_millis(5);
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Starts the listener thread; it ends when `stop` is set.
pub fn spawn(url: String, to: Listeners, stop: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new()
        .name("hookrelay-listen".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listen(&url, &to, &stop) {
                    Ok(()) => return,
                    Err(e) => {
                        log::warn!("work notifications interrupted ({e}); reconnecting");
                        std::thread::sleep(RECONNECT_AFTER);
                    }
                }
            }
        });
}

fn listen(url: &str, to: &Listeners, stop: &AtomicBool) -> Result<(), String> {
    let mut conn = PgConnection::establish(url).map_err(|e| e.to_string())?;
    conn.batch_execute(&format!(
        "LISTEN {WORK_CHANNEL}; LISTEN {LEASES_CHANNEL}; LISTEN {POLICY_CHANNEL}; LISTEN {CANCEL_CHANNEL}"
    ))
    .map_err(|e| e.to_string())?;
    // Whatever moved while this connection was not listening.
    to.leases.do_send(LeasesMoved);
    while !stop.load(Ordering::Relaxed) {
        let mut ids = Vec::new();
        let mut policies = Vec::new();
        let mut cancelled = Vec::new();
        let mut leases_moved = false;
        for notification in conn.notifications_iter() {
            let notification = notification.map_err(|e| e.to_string())?;
            match notification.channel.as_str() {
                LEASES_CHANNEL => leases_moved = true,
                POLICY_CHANNEL => policies.extend(parse_policy_payload(&notification.payload)),
                CANCEL_CHANNEL => cancelled.extend(endpoint_ids(&notification.payload)),
                _ => ids.extend(endpoint_ids(&notification.payload)),
            }
        }
        if leases_moved {
            to.leases.do_send(LeasesMoved);
        }
        if !policies.is_empty() {
            to.policy.do_send(PolicySet(policies));
        } else if ids.is_empty() && cancelled.is_empty() && !leases_moved {
            std::thread::sleep(POLL);
        }
        if !cancelled.is_empty() {
            cancelled.sort_unstable();
            cancelled.dedup();
            to.cancelled.do_send(DeliveriesCancelled(cancelled));
        }
        if !ids.is_empty() {
            ids.sort_unstable();
            ids.dedup();
            to.work.do_send(WorkArrived(ids));
        }
    }
    Ok(())
}

/// The endpoint ids of a notification's payload (comma-separated).
fn endpoint_ids(payload: &str) -> impl Iterator<Item = i64> + '_ {
    payload.split(',').filter_map(|s| s.parse::<i64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_gives_its_endpoint_ids_and_skips_anything_else() {
        let ids: Vec<i64> = endpoint_ids("3,x,17").collect();
        assert_eq!(ids, vec![3, 17]);
    }
}
