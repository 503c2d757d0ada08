//! `DbTime`: a timestamp to insert, formatted for SQLite once however many
//! rows carry it. Diesel formats a `NaiveDateTime` anew for every bound
//! value on SQLite, parsing chrono's format string each time; a group
//! commit binds four timestamps per event, all the same instant, and that
//! formatting was the largest single item of hookrelay's own CPU profile in
//! the ingest benchmark (about 3%).

use std::sync::Arc;

use chrono::NaiveDateTime;
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Timestamp;
use diesel::sqlite::Sqlite;

/// How diesel writes a `NaiveDateTime` to SQLite (text that sorts in time
/// order); `DbTime` must write exactly the same.
const SQLITE_FORMAT: &str = "%F %T%.f";

/// An instant, with its SQLite text made once and shared by every clone.
#[derive(Debug, Clone, AsExpression)]
#[diesel(sql_type = Timestamp)]
pub struct DbTime {
    at: NaiveDateTime,
    sqlite_text: Arc<str>,
}

impl DbTime {
    pub fn new(at: NaiveDateTime) -> DbTime {
        DbTime {
            at,
            sqlite_text: Arc::from(at.format(SQLITE_FORMAT).to_string()),
        }
    }
}

impl ToSql<Timestamp, Sqlite> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(&*self.sqlite_text);
        Ok(IsNull::No)
    }
}

impl ToSql<Timestamp, Pg> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <NaiveDateTime as ToSql<Timestamp, Pg>>::to_sql(&self.at, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::prelude::*;

    #[test]
    fn sqlite_stores_the_same_text_as_for_a_naive_date_time() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        diesel::sql_query("CREATE TABLE t (ours TIMESTAMP, diesels TIMESTAMP)")
            .execute(&mut conn)
            .unwrap();
        for (secs, nanos) in [
            (1_700_000_000, 123_456_000),
            (1_700_000_000, 0),
            (86_400, 7),
        ] {
            let at = chrono::DateTime::from_timestamp(secs, nanos)
                .unwrap()
                .naive_utc();
            diesel::sql_query("INSERT INTO t VALUES (?, ?)")
                .bind::<Timestamp, _>(DbTime::new(at))
                .bind::<Timestamp, _>(at)
                .execute(&mut conn)
                .unwrap();
        }
        let same: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM t WHERE ours = diesels AND typeof(ours) = 'text')",
        ))
        .get_result(&mut conn)
        .unwrap();
        assert_eq!(same, 3);
    }
}
