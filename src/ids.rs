//! Event and delivery ids: how they are spelled, how a delivery's id is
//! derived from its event's, and the key range of `deliveries.id` that holds
//! one event's deliveries.
//!
//! Both are lowercase hyphenated UUIDv7s. An event id comes from the
//! process's shared v7 context: its first 104 bits (the first 30 characters)
//! hold the millisecond and the 42-bit counter, so no two events of a
//! process share them, and two nodes would have to draw the same 50 random
//! bits in the same millisecond. The delivery routed `n`-th (from 0) keeps
//! those 30 characters and ends in `n + 1` as six hex digits. Deliveries sort
//! as their events do (the queue, the lists and the feed order by delivery
//! id), the id stays a valid v7 UUID to every reader, and "the deliveries
//! of event E" is a primary-key range, so the store keeps no index on
//! `deliveries.event_id` for ids spelled this way. Ids spelled otherwise
//! (rows of releases before this one, or an event with more than
//! `MAX_DERIVED` deliveries) are found through a partial index that holds
//! only them (`LEGACY_PREDICATE`).

/// Characters of an event id that its deliveries' ids keep.
const PREFIX: usize = 30;
/// The most deliveries of one event whose ids are derived (six hex digits;
/// the suffix 000000 is never used, so no delivery id equals its event's).
pub const MAX_DERIVED: usize = 0xff_fffe;

/// The SQL condition, on a `deliveries` row, that its id is not derived from
/// its event's id. Migration 000013 indexes `event_id` for these rows only;
/// a query must repeat this text exactly for either backend to use that
/// partial index.
pub const LEGACY_PREDICATE: &str = "substr(id, 1, 30) <> substr(event_id, 1, 30)";

/// A new event id.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// The id of the `index`-th delivery (from 0) routed from `event_id`: derived
/// when `event_id` is spelled as `new_event_id` spells ids and `index` is at
/// most `MAX_DERIVED`, else a fresh v7 UUID (found through the partial index).
pub fn delivery_id(event_id: &str, index: usize) -> String {
    match derivable(event_id) {
        Some(prefix) if index <= MAX_DERIVED => format!("{prefix}{:06x}", index + 1),
        _ => new_event_id(),
    }
}

/// The inclusive range of delivery ids that keep `event_id`'s prefix (none
/// when `event_id` is not spelled as hookrelay spells event ids): every such
/// id, derived or not, so that this range and `LEGACY_PREDICATE` together
/// cover every delivery of the event (retention's orphan check in
/// `store::event_deliveries` uses the same bounds).
pub fn derived_range(event_id: &str) -> Option<(String, String)> {
    derivable(event_id).map(|prefix| (format!("{prefix}000000"), format!("{prefix}ffffff")))
}

/// The kept prefix of an event id spelled as `new_event_id` spells them.
fn derivable(event_id: &str) -> Option<&str> {
    let spelled = event_id.len() == 36
        && event_id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        });
    spelled.then(|| &event_id[..PREFIX])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_delivery_id_is_a_v7_uuid_within_its_events_range() {
        let event = new_event_id();
        let (low, high) = derived_range(&event).expect("a new event id is derivable");
        for index in [0, 1, 9, 4095, MAX_DERIVED] {
            let id = delivery_id(&event, index);
            let parsed = uuid::Uuid::try_parse(&id).expect("a uuid");
            assert_eq!(parsed.get_version_num(), 7);
            assert_eq!(
                parsed.hyphenated().to_string(),
                id,
                "spelled as hookrelay spells ids"
            );
            assert!(low <= id && id <= high, "{id} within {low}..={high}");
            assert_ne!(id, event);
        }
        assert_eq!(&delivery_id(&event, 0)[..30], &event[..30]);
        assert!(delivery_id(&event, 0).ends_with("000001"));
        assert!(delivery_id(&event, 10).ends_with("00000b"));
    }

    #[test]
    fn deliveries_sort_as_their_events_and_their_routing_order() {
        let events: Vec<String> = (0..2000).map(|_| new_event_id()).collect();
        let mut ids = Vec::new();
        for event in &events {
            for index in 0..3 {
                ids.push(delivery_id(event, index));
            }
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "no two deliveries share an id");
    }

    #[test]
    fn one_events_range_holds_no_other_events_deliveries() {
        let a = new_event_id();
        let b = new_event_id();
        let (low, high) = derived_range(&a).unwrap();
        let other = delivery_id(&b, 0);
        assert!(!(low <= other && other <= high));
    }

    #[test]
    fn ids_not_spelled_as_hookrelays_get_a_fresh_id_and_no_range() {
        for odd in [
            "e1",
            "",
            "0190ABCD-0000-7000-8000-000000000000",
            "x".repeat(36).as_str(),
        ] {
            assert_eq!(derived_range(odd), None, "{odd:?}");
            let id = delivery_id(odd, 0);
            assert!(uuid::Uuid::try_parse(&id).is_ok());
            assert_ne!(id.get(..30), odd.get(..30));
        }
        let event = new_event_id();
        let beyond = delivery_id(&event, MAX_DERIVED + 1);
        assert_ne!(
            &beyond[..30],
            &event[..30],
            "past the limit the id is fresh"
        );
    }
}
