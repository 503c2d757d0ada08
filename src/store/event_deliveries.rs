//! Finding an event's deliveries without an index entry per delivery on
//! `deliveries.event_id` (`crate::ids` derives delivery ids from event ids):
//! the derived ones are a range of the primary key, and rows whose ids are
//! spelled otherwise (written by earlier releases) sit in the partial index
//! `deliveries_event_legacy`, which holds only them. The event lookup,
//! erasure and retention's orphan check all go through here.

use diesel::dsl::sql;
use diesel::expression::SqlLiteral;
use diesel::prelude::*;
use diesel::sql_types::Bool;

use super::schema::deliveries;
use crate::ids::{LEGACY_PREDICATE, derived_range};

/// Events per query: each adds one range to an `OR` of primary-key ranges.
const RANGES_PER_QUERY: usize = 100;
/// Event ids per query of the legacy index.
const LEGACY_PER_QUERY: usize = 500;

/// The SQL condition, on an `events` row, that no delivery refers to it
/// (retention removes such events). Both subqueries are index lookups: a
/// primary-key range for derived ids, the partial index for the others.
const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM deliveries d \
       WHERE d.id >= substr(events.id, 1, 30) || '000000' \
         AND d.id <= substr(events.id, 1, 30) || 'ffffff' \
         AND d.event_id = events.id) \
     AND NOT EXISTS (SELECT 1 FROM deliveries d \
       WHERE d.event_id = events.id \
         AND substr(d.id, 1, 30) <> substr(d.event_id, 1, 30))";

/// `UNREFERENCED`, for a diesel filter on `events`.
pub fn event_unreferenced() -> SqlLiteral<Bool> {
    sql::<Bool>(UNREFERENCED)
}

/// The deliveries of given events, on either backend.
pub trait EventDeliveries {
    /// The (delivery id, event id) of every delivery of `events`, in no
    /// particular order.
    fn deliveries_of_events(&mut self, events: &[String]) -> QueryResult<Vec<(String, String)>>;
}

macro_rules! event_deliveries_impl {
    ($conn:ty, $backend:ty) => {
        impl EventDeliveries for $conn {
            fn deliveries_of_events(
                &mut self,
                events: &[String],
            ) -> QueryResult<Vec<(String, String)>> {
                let mut found = Vec::new();
                for chunk in events.chunks(RANGES_PER_QUERY) {
                    let mut query = deliveries::table
                        .select((deliveries::id, deliveries::event_id))
                        .into_boxed::<$backend>();
                    let mut ranges = 0;
                    for event in chunk {
                        if let Some((low, high)) = derived_range(event) {
                            query = query.or_filter(
                                deliveries::id
                                    .ge(low)
                                    .and(deliveries::id.le(high))
                                    .and(deliveries::event_id.eq(event.clone())),
                            );
                            ranges += 1;
                        }
                    }
                    if ranges > 0 {
                        found.extend(query.load::<(String, String)>(self)?);
                    }
                }
                for chunk in events.chunks(LEGACY_PER_QUERY) {
                    found.extend(
                        deliveries::table
                            .filter(deliveries::event_id.eq_any(chunk))
                            .filter(sql::<Bool>(LEGACY_PREDICATE))
                            .select((deliveries::id, deliveries::event_id))
                            .load::<(String, String)>(self)?,
                    );
                }
                Ok(found)
            }
        }
    };
}

event_deliveries_impl!(diesel::SqliteConnection, diesel::sqlite::Sqlite);
event_deliveries_impl!(diesel::PgConnection, diesel::pg::Pg);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{delivery_id, new_event_id};
    use crate::store::db_time::DbTime;
    use crate::store::models::{NewDelivery, NewEvent};
    use crate::store::schema::events;
    use diesel_migrations::MigrationHarness;

    fn database() -> (tempfile::TempDir, SqliteConnection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn =
            SqliteConnection::establish(dir.path().join("d.db").to_str().unwrap()).unwrap();
        conn.run_pending_migrations(crate::store::SQLITE_MIGRATIONS)
            .unwrap();
        (dir, conn)
    }

    fn store(conn: &mut SqliteConnection, event: &str, deliveries: &[String]) {
        let at = DbTime::new(crate::store::now());
        diesel::insert_into(events::table)
            .values(&NewEvent::example(event, at.clone()))
            .execute(conn)
            .unwrap();
        for (n, id) in deliveries.iter().enumerate() {
            diesel::insert_into(deliveries::table)
                .values(&NewDelivery::pending(
                    id.clone(),
                    event.into(),
                    n as i64,
                    1,
                    &at,
                ))
                .execute(conn)
                .unwrap();
        }
    }

    fn sorted(mut rows: Vec<(String, String)>) -> Vec<(String, String)> {
        rows.sort();
        rows
    }

    #[test]
    fn derived_and_legacy_deliveries_are_found_and_no_other_events() {
        let (_dir, conn) = &mut database();
        let a = new_event_id();
        let b = new_event_id();
        let c = new_event_id();
        let a_ids: Vec<String> = (0..3).map(|n| delivery_id(&a, n)).collect();
        store(conn, &a, &a_ids);
        // b's deliveries as an earlier release wrote them: fresh ids.
        let b_ids = vec![new_event_id(), new_event_id()];
        store(conn, &b, &b_ids);
        store(conn, &c, &[delivery_id(&c, 0)]);
        store(conn, "e-old", &["d-old".to_string()]);
        let found = conn
            .deliveries_of_events(&[a.clone(), b.clone(), "e-old".into()])
            .unwrap();
        let mut want: Vec<(String, String)> =
            a_ids.iter().map(|d| (d.clone(), a.clone())).collect();
        want.extend(b_ids.iter().map(|d| (d.clone(), b.clone())));
        want.push(("d-old".into(), "e-old".into()));
        assert_eq!(sorted(found), sorted(want));
        assert!(conn.deliveries_of_events(&[]).unwrap().is_empty());
        // Many events at once: more than one query of each kind.
        let many: Vec<String> = (0..250).map(|_| new_event_id()).collect();
        for event in &many {
            store(conn, event, &[delivery_id(event, 0), delivery_id(event, 1)]);
        }
        assert_eq!(conn.deliveries_of_events(&many).unwrap().len(), 500);
    }

    #[test]
    fn every_lookup_reads_an_index_not_the_whole_table() {
        let (_dir, conn) = &mut database();
        let a = new_event_id();
        store(conn, &a, &[delivery_id(&a, 0), delivery_id(&a, 1)]);
        store(conn, "e-old", &["d-old".to_string()]);
        let plan = |conn: &mut SqliteConnection, query: &str| -> String {
            #[derive(QueryableByName)]
            struct Line {
                #[diesel(sql_type = diesel::sql_types::Text)]
                detail: String,
            }
            let lines: Vec<Line> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {query}"))
                .load(conn)
                .unwrap();
            lines
                .into_iter()
                .map(|l| l.detail)
                .collect::<Vec<_>>()
                .join("; ")
        };
        let (low, high) = derived_range(&a).unwrap();
        let ranges = plan(
            conn,
            &format!(
                "SELECT id FROM deliveries WHERE (id >= '{low}' AND id <= '{high}' AND event_id = '{a}') \
                 OR (id >= '{low}' AND id <= '{high}' AND event_id = '{a}')"
            ),
        );
        assert!(!ranges.contains("SCAN deliveries"), "{ranges}");
        let legacy = plan(
            conn,
            &format!(
                "SELECT id FROM deliveries WHERE event_id IN ('e-old') AND {LEGACY_PREDICATE}"
            ),
        );
        assert!(legacy.contains("deliveries_event_legacy"), "{legacy}");
        let orphans = plan(
            conn,
            &format!("SELECT id FROM events WHERE id IN ('{a}', 'e-old') AND {UNREFERENCED}"),
        );
        assert!(!orphans.contains("SCAN d"), "{orphans}");
    }
}
