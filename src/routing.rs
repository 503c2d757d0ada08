//! The routing table of a node: (marketplaceId, event type) → routes, the
//! routing version it reflects (`store::routing`), and resolving an event's
//! deliveries against it. The publishers read it on their own threads; it
//! changes only by applying what the database says changed (`apply`, from
//! `catch_up` or from a group commit that found it stale), and every applied
//! change is reported upward to the router (`RoutesChanged`), which keeps
//! its endpoint actors in step.
//!
//! Read-your-writes across nodes: a subscription change increments the
//! routing version in its own transaction; a group of events is stored in a
//! transaction that reads the version and, when it moved past the version
//! the group was routed at, applies the changes here and routes the group
//! again before storing it. So an event accepted after a change was
//! answered, on any node, is routed by that change.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use actix::prelude::*;
use foldhash::HashMap;

use crate::metrics::{self, ErrorSite};
use crate::signing::Secrets;
use crate::store::db_time::DbTime;
use crate::store::events::PreparedEvent;
use crate::store::models::NewDelivery;
use crate::store::subscriptions::RouteRow;
use crate::store::{self, Store, StoreError};

/// Subscriptions whose routes changed (each in its latest state: active or
/// not), in the order they were applied to the table.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoutesChanged(pub Vec<RouteRow>);

/// One subscription as routing sees it.
#[derive(Clone)]
pub struct Route {
    pub subscription_id: i64,
    pub user_id: i64,
    pub endpoint_id: i64,
    pub secret: Arc<Secrets>,
}

/// The routes of a node at one routing version.
#[derive(Default)]
pub struct Table {
    /// The routing version this table reflects: every change up to it.
    pub version: i64,
    routes: HashMap<i64, HashMap<String, Vec<Route>>>,
}

impl Table {
    /// The routes of `event_type` in `marketplace_id`, but the triggering
    /// user's own subscriptions: never another tenant's.
    pub fn routes<'a>(
        &'a self,
        marketplace_id: i64,
        event_type: &str,
        triggering_user_id: Option<i64>,
    ) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes
            .get(&marketplace_id)
            .and_then(|types| types.get(event_type))
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(move |r| Some(r.user_id) != triggering_user_id)
    }

    /// Routes `prepared` (again): one pending delivery per matching route,
    /// created `now`, and the table's version as the one it was routed at.
    pub fn route(&self, prepared: &mut PreparedEvent, now: &DbTime) {
        prepared.deliveries.clear();
        prepared.secrets.clear();
        let event = &prepared.event;
        for (index, route) in self
            .routes(
                event.marketplace_id,
                &event.event,
                prepared.triggering_user_id,
            )
            .enumerate()
        {
            prepared.deliveries.push(NewDelivery::pending(
                crate::ids::delivery_id(&event.id, index),
                event.id.clone(),
                route.subscription_id,
                route.endpoint_id,
                now,
            ));
            prepared.secrets.push(route.secret.clone());
        }
        prepared.event.delivery_count = prepared.deliveries.len() as i32;
        prepared.routed_at = self.version;
    }

    /// Puts one subscription's latest state in the table; `false` when it
    /// is active but its secret is unusable (then it is not routed).
    fn set(&mut self, row: &RouteRow) -> bool {
        let sub = &row.subscription;
        let key_routes = self
            .routes
            .entry(sub.marketplace_id)
            .or_default()
            .entry(sub.event.clone())
            .or_default();
        key_routes.retain(|r| r.subscription_id != sub.id);
        let mut routed = true;
        if sub.active {
            match sub.secrets() {
                Ok(secret) => key_routes.push(Route {
                    subscription_id: sub.id,
                    user_id: sub.user_id,
                    endpoint_id: sub.endpoint_id,
                    secret: Arc::new(secret),
                }),
                Err(e) => {
                    log::error!(
                        "subscription {} has an unusable secret ({e}); not routed",
                        sub.id
                    );
                    metrics::internal_error(ErrorSite::Routing);
                    routed = false;
                }
            }
        }
        if key_routes.is_empty() {
            let types = self.routes.get_mut(&sub.marketplace_id);
            if let Some(types) = types {
                types.remove(&sub.event);
                if types.is_empty() {
                    self.routes.remove(&sub.marketplace_id);
                }
            }
        }
        routed
    }
}

/// The routing table, shared by the publishers (readers) and whoever
/// applies changes, which are reported to `changes`.
#[derive(Clone)]
pub struct RouteTable {
    table: Arc<RwLock<Table>>,
    changes: Recipient<RoutesChanged>,
}

impl RouteTable {
    /// A table at `version` holding `active` (the node's start).
    pub fn new(version: i64, active: &[RouteRow], changes: Recipient<RoutesChanged>) -> RouteTable {
        let mut table = Table {
            version,
            ..Table::default()
        };
        for row in active {
            table.set(row);
        }
        RouteTable {
            table: Arc::new(RwLock::new(table)),
            changes,
        }
    }

    /// For reading. Nothing panics while holding the lock, so a poisoned
    /// lock still holds a consistent table.
    pub fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn version(&self) -> i64 {
        self.read().version
    }

    /// Applies `changes`, read from the database when it was at `as_of`
    /// (each subscription in its state then), unless the table is that new
    /// already; the applied changes are reported upward in the same order.
    /// Returns whether it applied them.
    pub fn apply(&self, as_of: i64, changes: Vec<RouteRow>) -> bool {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if as_of <= table.version {
            return false;
        }
        for row in &changes {
            table.set(row);
        }
        table.version = as_of;
        if !changes.is_empty() {
            // Under the lock: reports reach the router in the order applied.
            self.changes.do_send(RoutesChanged(changes));
        }
        true
    }

    /// Brings the table up to date with the database (after a change made
    /// here, and periodically in a cluster).
    pub async fn catch_up(&self, store: &Store) -> Result<(), StoreError> {
        let known = self.version();
        if let Some((as_of, changes)) = store
            .run(move |conn| store::routing::catch_up(conn, known))
            .await?
        {
            self.apply(as_of, changes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Secret;
    use crate::store::models::{NewEvent, Subscription};

    fn row(id: i64, marketplace: i64, user: i64, event: &str, active: bool) -> RouteRow {
        let at = crate::store::now();
        RouteRow {
            subscription: Subscription {
                id,
                marketplace_id: marketplace,
                user_id: user,
                event: event.into(),
                endpoint_id: 100 + id,
                secret: "a-long-enough-secret".into(),
                active,
                created_at: at,
                last_modified: at,
                deactivated_at: None,
                deactivation_reason: None,
                route_version: id,
                previous_secret: None,
                previous_secret_until: None,
                secret_rotated_at: None,
            },
            endpoint_url: format!("https://example.com/{id}"),
        }
    }

    struct Sink;
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<RoutesChanged> for Sink {
        type Result = ();
        fn handle(&mut self, _: RoutesChanged, _: &mut Context<Self>) {}
    }

    fn table(version: i64, active: &[RouteRow]) -> RouteTable {
        RouteTable::new(version, active, Sink.start().recipient())
    }

    fn subscription_ids(
        t: &RouteTable,
        marketplace: i64,
        event: &str,
        user: Option<i64>,
    ) -> Vec<i64> {
        let t = t.read();
        let mut ids: Vec<i64> = t
            .routes(marketplace, event, user)
            .map(|r| r.subscription_id)
            .collect();
        ids.sort_unstable();
        ids
    }

    #[actix_rt::test]
    async fn routes_never_cross_tenants_or_reach_the_triggering_users_own_subscriptions() {
        let t = table(
            0,
            &[
                row(1, 7, 1, "a", true),
                row(2, 7, 2, "a", true),
                row(3, 8, 1, "a", true),
            ],
        );
        assert_eq!(subscription_ids(&t, 7, "a", None), vec![1, 2]);
        assert_eq!(subscription_ids(&t, 7, "a", Some(1)), vec![2]);
        assert_eq!(subscription_ids(&t, 8, "a", Some(2)), vec![3]);
        assert_eq!(subscription_ids(&t, 9, "a", None), Vec::<i64>::new());
        assert_eq!(subscription_ids(&t, 7, "b", None), Vec::<i64>::new());
    }

    #[actix_rt::test]
    async fn applied_changes_add_and_remove_routes_and_move_the_version() {
        let t = table(3, &[row(1, 7, 1, "a", true)]);
        assert!(t.apply(5, vec![row(1, 7, 1, "a", false), row(2, 7, 2, "a", true)]));
        assert_eq!(t.version(), 5);
        assert_eq!(subscription_ids(&t, 7, "a", None), vec![2]);
    }

    #[actix_rt::test]
    async fn changes_read_at_an_older_version_than_the_table_are_not_applied() {
        let t = table(3, &[]);
        assert!(t.apply(6, vec![row(1, 7, 1, "a", false)]));
        // Read earlier, when subscription 1 was still active.
        assert!(!t.apply(5, vec![row(1, 7, 1, "a", true)]));
        assert_eq!(subscription_ids(&t, 7, "a", None), Vec::<i64>::new());
        assert_eq!(t.version(), 6);
    }

    #[actix_rt::test]
    async fn a_subscription_moved_to_another_endpoint_routes_there_only() {
        let t = table(1, &[row(1, 7, 1, "a", true)]);
        let mut moved = row(1, 7, 1, "a", true);
        moved.subscription.endpoint_id = 999;
        t.apply(2, vec![moved]);
        let endpoints: Vec<i64> = t
            .read()
            .routes(7, "a", None)
            .map(|r| r.endpoint_id)
            .collect();
        assert_eq!(endpoints, vec![999]);
    }

    #[actix_rt::test]
    async fn a_rotated_subscription_routes_with_its_new_and_previous_secret() {
        let t = table(1, &[row(1, 7, 1, "a", true)]);
        let mut rotated = row(1, 7, 1, "a", true);
        let now = crate::store::now();
        rotated.subscription.secret = "the-new-long-secret".into();
        rotated.subscription.previous_secret = Some("a-long-enough-secret".into());
        rotated.subscription.previous_secret_until = Some(now + chrono::Duration::hours(1));
        t.apply(2, vec![rotated]);
        let table = t.read();
        let route = table.routes(7, "a", None).next().expect("still routed");
        let valid: Vec<&str> = route.secret.valid_at(now).map(Secret::as_str).collect();
        assert_eq!(valid, ["the-new-long-secret", "a-long-enough-secret"]);
    }

    fn prepared(marketplace: i64, event: &str, triggering_user: Option<i64>) -> PreparedEvent {
        let now = DbTime::new(crate::store::now());
        PreparedEvent {
            event: NewEvent {
                id: "e".into(),
                marketplace_id: marketplace,
                event: event.into(),
                body: "{}".into(),
                idempotency_key: None,
                delivery_count: 0,
                created_at: now,
            },
            deliveries: Vec::new(),
            secrets: Vec::new(),
            triggering_user_id: triggering_user,
            routed_at: 0,
        }
    }

    fn routed_subscriptions(t: &RouteTable, mut event: PreparedEvent) -> Vec<i64> {
        t.read()
            .route(&mut event, &DbTime::new(crate::store::now()));
        let mut ids: Vec<i64> = event.deliveries.iter().map(|d| d.subscription_id).collect();
        ids.sort_unstable();
        ids
    }

    #[actix_rt::test]
    async fn a_prepared_event_is_routed_only_within_its_marketplace() {
        let t = table(
            0,
            &[
                row(1, 7, 1, "a", true),
                row(2, 8, 2, "a", true),
                row(3, 7, 3, "b", true),
            ],
        );
        assert_eq!(routed_subscriptions(&t, prepared(7, "a", None)), vec![1]);
        assert_eq!(routed_subscriptions(&t, prepared(8, "a", None)), vec![2]);
        assert_eq!(
            routed_subscriptions(&t, prepared(9, "a", None)),
            Vec::<i64>::new()
        );
    }

    #[actix_rt::test]
    async fn a_prepared_event_skips_the_subscriptions_of_its_triggering_user() {
        let t = table(
            0,
            &[
                row(1, 7, 1, "a", true),
                row(2, 7, 2, "a", true),
                row(3, 7, 1, "a", true),
            ],
        );
        let event = prepared(7, "a", Some(1));
        assert_eq!(routed_subscriptions(&t, event), vec![2]);
        let event = prepared(7, "a", Some(5));
        assert_eq!(routed_subscriptions(&t, event), vec![1, 2, 3]);
    }

    #[actix_rt::test]
    async fn routing_an_event_again_replaces_its_deliveries_and_records_the_version() {
        let t = table(2, &[row(1, 7, 1, "a", true)]);
        let now = DbTime::new(crate::store::now());
        let mut prepared = PreparedEvent {
            event: NewEvent::example("e", now.clone()),
            deliveries: Vec::new(),
            secrets: Vec::new(),
            triggering_user_id: None,
            routed_at: 0,
        };
        t.read().route(&mut prepared, &now);
        assert_eq!(prepared.deliveries.len(), 1);
        assert_eq!(prepared.routed_at, 2);
        t.apply(4, vec![row(2, 7, 2, "a", true)]);
        t.read().route(&mut prepared, &now);
        let subs: Vec<i64> = prepared
            .deliveries
            .iter()
            .map(|d| d.subscription_id)
            .collect();
        assert_eq!(subs.len(), 2);
        assert_eq!(prepared.event.delivery_count, 2);
        assert_eq!(prepared.secrets.len(), 2);
        assert_eq!(prepared.routed_at, 4);
    }
}
