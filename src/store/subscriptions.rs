//! Queries on `subscriptions` and `endpoints`: creating a subscription (and
//! its endpoint row, one per distinct URL), reading a caller's own ones,
//! deactivating (kept with a reason, its pending deliveries cancelled),
//! the owner's changes (a secret rotated, an endpoint moved; each a routing
//! change), and loading every active route at start.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{CANCELLED, NewSubscription, Subscription};
use super::routing::RoutingVersion;
use super::schema::{deliveries, endpoints, subscriptions};
use super::{Conn, StoreError, now};

pub use super::models::RouteRow;

/// The filter of one caller's active subscriptions.
type OwnedActive = diesel::dsl::And<
    diesel::dsl::And<
        diesel::dsl::Eq<subscriptions::marketplace_id, i64>,
        diesel::dsl::Eq<subscriptions::user_id, i64>,
    >,
    diesel::dsl::Eq<subscriptions::active, bool>,
>;

fn owned_active(marketplace_id: i64, user_id: i64) -> OwnedActive {
    subscriptions::marketplace_id
        .eq(marketplace_id)
        .and(subscriptions::user_id.eq(user_id))
        .and(subscriptions::active.eq(true))
}

/// The id of the endpoint row for `url`, created when missing.
pub fn endpoint_id_for(conn: &mut Conn, url: &str) -> Result<i64, StoreError> {
    let find = |conn: &mut Conn| -> Result<Option<i64>, StoreError> {
        Ok(crate::db_run!(conn, c => endpoints::table
            .filter(endpoints::url.eq(url))
            .select(endpoints::id)
            .first::<i64>(c)
            .optional())?)
    };
    if let Some(id) = find(conn)? {
        return Ok(id);
    }
    crate::db_run!(conn, c => diesel::insert_into(endpoints::table)
        .values((endpoints::url.eq(url), endpoints::created_at.eq(now())))
        .on_conflict_do_nothing()
        .execute(c))?;
    find(conn)?.ok_or(StoreError::Query(diesel::result::Error::NotFound))
}

/// What storing a subscription did.
#[derive(Debug)]
pub enum Created {
    New(Subscription),
    /// The caller has this subscription already (same event and endpoint,
    /// active): its id. Nothing was stored.
    Duplicate(i64),
    /// The caller has this many active subscriptions, the most allowed.
    /// Nothing was stored.
    TooMany(i64),
}

/// Stores a new active subscription (a routing change), unless the caller
/// has the same one already or `max` of them. The checks run after the
/// routing version's row lock is taken, so concurrent creates (on any
/// node) are checked one after the other.
#[allow(clippy::too_many_arguments)]
pub fn create(
    conn: &mut Conn,
    marketplace_id: i64,
    user_id: i64,
    event: &str,
    endpoint_id: i64,
    secret: &str,
    max: i64,
) -> Result<Created, StoreError> {
    let at = now();
    Ok(crate::db_transaction!(conn, c => {
        let route_version = c.bump_routing_version()?;
        let mine = subscriptions::table.filter(owned_active(marketplace_id, user_id));
        let same: Option<i64> = mine
            .filter(subscriptions::event.eq(event))
            .filter(subscriptions::endpoint_id.eq(endpoint_id))
            .select(subscriptions::id)
            .first(c)
            .optional()?;
        if let Some(id) = same {
            return Ok(Created::Duplicate(id));
        }
        let count: i64 = mine.count().get_result(c)?;
        if count >= max {
            return Ok(Created::TooMany(count));
        }
        let row = NewSubscription {
            marketplace_id,
            user_id,
            event,
            endpoint_id,
            secret,
            active: true,
            created_at: at,
            last_modified: at,
            route_version,
        };
        diesel::insert_into(subscriptions::table)
            .values(&row)
            .returning(Subscription::as_returning())
            .get_result(c)
            .map(Created::New)
    })?)
}

/// Stores a new active subscription with no limit (seeding, tests).
pub fn insert(
    conn: &mut Conn,
    marketplace_id: i64,
    user_id: i64,
    event: &str,
    endpoint_id: i64,
    secret: &str,
) -> Result<Subscription, StoreError> {
    match create(
        conn,
        marketplace_id,
        user_id,
        event,
        endpoint_id,
        secret,
        i64::MAX,
    )? {
        Created::New(subscription) => Ok(subscription),
        Created::Duplicate(_) | Created::TooMany(_) => Err(StoreError::Query(
            diesel::result::Error::QueryBuilderError("the subscription exists already".into()),
        )),
    }
}

/// The id of the caller's active subscription to `event` at `url`, if any.
pub fn find_same(
    conn: &mut Conn,
    marketplace_id: i64,
    user_id: i64,
    event: &str,
    url: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(crate::db_run!(conn, c => subscriptions::table
        .inner_join(endpoints::table)
        .filter(owned_active(marketplace_id, user_id))
        .filter(subscriptions::event.eq(event))
        .filter(endpoints::url.eq(url))
        .select(subscriptions::id)
        .first(c)
        .optional())?)
}

/// How many active subscriptions the caller has.
pub fn count_for_owner(
    conn: &mut Conn,
    marketplace_id: i64,
    user_id: i64,
) -> Result<i64, StoreError> {
    Ok(crate::db_run!(conn, c => subscriptions::table
        .filter(owned_active(marketplace_id, user_id))
        .count()
        .get_result(c))?)
}

/// A page of the caller's active subscriptions after id `after`, oldest
/// first.
pub fn page_for_owner(
    conn: &mut Conn,
    marketplace_id: i64,
    user_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<RouteRow>, StoreError> {
    let rows: Vec<(Subscription, String)> = crate::db_run!(conn, c => subscriptions::table
        .inner_join(endpoints::table)
        .filter(owned_active(marketplace_id, user_id))
        .filter(subscriptions::id.gt(after))
        .order(subscriptions::id)
        .limit(limit)
        .select((Subscription::as_select(), endpoints::url))
        .load(c))?;
    Ok(rows.into_iter().map(into_route).collect())
}

/// One of the caller's active subscriptions.
pub fn get_for_owner(
    conn: &mut Conn,
    id: i64,
    marketplace_id: i64,
    user_id: i64,
) -> Result<Option<RouteRow>, StoreError> {
    let row: Option<(Subscription, String)> = crate::db_run!(conn, c => subscriptions::table
        .inner_join(endpoints::table)
        .filter(subscriptions::id.eq(id))
        .filter(owned_active(marketplace_id, user_id))
        .select((Subscription::as_select(), endpoints::url))
        .first(c)
        .optional())?;
    Ok(row.map(into_route))
}

/// Every active subscription, for building the routing table.
pub fn all_active(conn: &mut Conn) -> Result<Vec<RouteRow>, StoreError> {
    let rows: Vec<(Subscription, String)> = crate::db_run!(conn, c => subscriptions::table
        .inner_join(endpoints::table)
        .filter(subscriptions::active.eq(true))
        .order(subscriptions::id)
        .select((Subscription::as_select(), endpoints::url))
        .load(c))?;
    Ok(rows.into_iter().map(into_route).collect())
}

fn into_route((subscription, endpoint_url): (Subscription, String)) -> RouteRow {
    RouteRow {
        subscription,
        endpoint_url,
    }
}

/// Deactivates subscriptions (kept, with the reason and time) and cancels
/// their pending deliveries, in one transaction (a routing change). Returns
/// how many were active.
pub fn deactivate(conn: &mut Conn, ids: &[i64], reason: &str) -> Result<usize, StoreError> {
    let at: NaiveDateTime = now();
    let changed = crate::db_transaction!(conn, c => {
        // First: it waits for groups of events being stored, and the
        // cancelling below then sees their deliveries.
        let version = c.bump_routing_version()?;
        let changed = diesel::update(
            subscriptions::table
                .filter(subscriptions::id.eq_any(ids))
                .filter(subscriptions::active.eq(true)),
        )
        .set((
            subscriptions::active.eq(false),
            subscriptions::deactivated_at.eq(Some(at)),
            subscriptions::deactivation_reason.eq(Some(reason)),
            subscriptions::last_modified.eq(at),
            subscriptions::route_version.eq(version),
        ))
        .execute(c)?;
        // By endpoint too, so that the endpoints' queue index is used.
        let endpoints = subscriptions::table
            .filter(subscriptions::id.eq_any(ids))
            .select(subscriptions::endpoint_id);
        diesel::update(
            deliveries::table
                .filter(deliveries::endpoint_id.eq_any(endpoints))
                .filter(super::deliveries::is_pending())
                .filter(deliveries::subscription_id.eq_any(ids)),
        )
        .set((
            deliveries::status.eq(CANCELLED),
            deliveries::last_error.eq(Some(format!("subscription removed: {reason}"))),
            deliveries::updated_at.eq(at),
        ))
        .execute(c)?;
        Ok::<_, diesel::result::Error>(changed)
    })?;
    Ok(changed)
}

/// Rotates an owned active subscription's secret to `secret` (a routing
/// change): the secret it replaces keeps signing until `previous_until`.
/// `None` when it is not the caller's active subscription.
pub fn rotate_secret(
    conn: &mut Conn,
    id: i64,
    (marketplace_id, user_id): (i64, i64),
    secret: &str,
    previous_until: NaiveDateTime,
) -> Result<Option<RouteRow>, StoreError> {
    let at = now();
    let rotated = crate::db_transaction!(conn, c => {
        let version = c.bump_routing_version()?;
        let mine = subscriptions::table
            .filter(subscriptions::id.eq(id))
            .filter(owned_active(marketplace_id, user_id));
        let Some(old) = mine.select(subscriptions::secret).first::<String>(c).optional()? else {
            return Ok(false);
        };
        diesel::update(mine)
            .set((
                subscriptions::secret.eq(secret),
                subscriptions::previous_secret.eq(Some(old)),
                subscriptions::previous_secret_until.eq(Some(previous_until)),
                subscriptions::secret_rotated_at.eq(Some(at)),
                subscriptions::last_modified.eq(at),
                subscriptions::route_version.eq(version),
            ))
            .execute(c)?;
        Ok::<_, diesel::result::Error>(true)
    })?;
    if !rotated {
        return Ok(None);
    }
    get_for_owner(conn, id, marketplace_id, user_id)
}

/// What moving a subscription to another endpoint did.
#[derive(Debug)]
pub enum Moved {
    Done(Box<RouteRow>),
    /// Not the caller's active subscription.
    NotFound,
    /// The caller has another active subscription to this event at that
    /// endpoint: its id. Nothing was changed.
    Duplicate(i64),
}

/// Moves an owned active subscription to `endpoint_id` (a routing change):
/// deliveries routed from now on go there.
pub fn move_endpoint(
    conn: &mut Conn,
    id: i64,
    (marketplace_id, user_id): (i64, i64),
    endpoint_id: i64,
) -> Result<Moved, StoreError> {
    let at = now();
    // `Some` when refused, `None` once moved.
    let refused = crate::db_transaction!(conn, c => {
        let version = c.bump_routing_version()?;
        let mine = subscriptions::table.filter(owned_active(marketplace_id, user_id));
        let Some(event) = mine
            .filter(subscriptions::id.eq(id))
            .select(subscriptions::event)
            .first::<String>(c)
            .optional()?
        else {
            return Ok(Some(Moved::NotFound));
        };
        let same: Option<i64> = mine
            .filter(subscriptions::id.ne(id))
            .filter(subscriptions::event.eq(event))
            .filter(subscriptions::endpoint_id.eq(endpoint_id))
            .select(subscriptions::id)
            .first(c)
            .optional()?;
        if let Some(other) = same {
            return Ok(Some(Moved::Duplicate(other)));
        }
        diesel::update(subscriptions::table.filter(subscriptions::id.eq(id)))
            .set((
                subscriptions::endpoint_id.eq(endpoint_id),
                subscriptions::last_modified.eq(at),
                subscriptions::route_version.eq(version),
            ))
            .execute(c)?;
        Ok::<_, diesel::result::Error>(None)
    })?;
    if let Some(refused) = refused {
        return Ok(refused);
    }
    Ok(match get_for_owner(conn, id, marketplace_id, user_id)? {
        Some(row) if row.subscription.endpoint_id == endpoint_id => Moved::Done(Box::new(row)),
        _ => Moved::NotFound,
    })
}

/// Which endpoint an operators' search is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointFilter {
    Id(i64),
    Url(String),
}

/// What operators search subscriptions by; `None` matches any.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub marketplace_id: Option<i64>,
    pub user_id: Option<i64>,
    pub endpoint: Option<EndpointFilter>,
    /// `true`: active ones, `false`: removed ones.
    pub active: Option<bool>,
}

/// A page of the subscriptions matching `search`, active or removed, after
/// id `after`, oldest first.
pub fn search(
    conn: &mut Conn,
    search: &Search,
    after: i64,
    limit: i64,
) -> Result<Vec<RouteRow>, StoreError> {
    let rows: Vec<(Subscription, String)> = crate::db_run!(conn, c => {
        let mut q = subscriptions::table
            .inner_join(endpoints::table)
            .filter(subscriptions::id.gt(after))
            .into_boxed();
        if let Some(mp) = search.marketplace_id {
            q = q.filter(subscriptions::marketplace_id.eq(mp));
        }
        if let Some(user) = search.user_id {
            q = q.filter(subscriptions::user_id.eq(user));
        }
        match &search.endpoint {
            Some(EndpointFilter::Id(id)) => q = q.filter(subscriptions::endpoint_id.eq(*id)),
            Some(EndpointFilter::Url(url)) => q = q.filter(endpoints::url.eq(url.clone())),
            None => {}
        }
        if let Some(active) = search.active {
            q = q.filter(subscriptions::active.eq(active));
        }
        q.order(subscriptions::id)
            .limit(limit)
            .select((Subscription::as_select(), endpoints::url))
            .load(c)
    })?;
    Ok(rows.into_iter().map(into_route).collect())
}
