//! Lifecycle notices (DESIGN.md section 9): what hookrelay tells the platform
//! about an endpoint's life, before and when its subscriptions are removed.
//! This module owns their vocabulary: the kinds, a notice to be written
//! (`Draft`, with the subscriptions it is about named by `Scope`), and the
//! JSON body that `GET /internal/v1/notices` lists and the operator webhook
//! receives. Which notices a health change gives is decided in
//! `delivery::notices`; they are stored by `store::notices`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The reserved subscription that carries notices to `--operator-webhook`
/// has this marketplace, user and event type. The event type cannot be a
/// platform event type (those have no `.`), so no platform event is ever
/// routed to it.
pub const OPERATOR_MARKETPLACE: i64 = 0;
pub const OPERATOR_USER: i64 = 0;
pub const NOTICE_EVENT: &str = "hookrelay.notice";

/// What happened to an endpoint or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Kind {
    /// The first failed attempt after a success.
    #[serde(rename = "endpoint.failing")]
    Failing,
    /// Self-healing paused it: its deliveries are held and it is probed.
    #[serde(rename = "endpoint.paused")]
    Paused,
    /// It answers again after failing or being paused.
    #[serde(rename = "endpoint.recovered")]
    Recovered,
    /// All but the last allowed scheduled check have failed: the owner can
    /// still be warned.
    #[serde(rename = "subscription.expiring")]
    Expiring,
    /// It counted itself dead; its subscriptions are removed.
    #[serde(rename = "endpoint.dead")]
    Dead,
    /// One subscription removed because its endpoint is dead.
    #[serde(rename = "subscription.auto_removed")]
    AutoRemoved,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Failing => "endpoint.failing",
            Kind::Paused => "endpoint.paused",
            Kind::Recovered => "endpoint.recovered",
            Kind::Expiring => "subscription.expiring",
            Kind::Dead => "endpoint.dead",
            Kind::AutoRemoved => "subscription.auto_removed",
        }
    }
}

/// The subscriptions a notice is about, resolved when it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The endpoint's active subscriptions.
    Active,
    /// These (removed) subscriptions.
    Ids(Vec<i64>),
}

/// A notice to be stored (and sent to the operator webhook, when one is set).
#[derive(Debug, Clone)]
pub struct Draft {
    /// Time-ordered and unique: the notice's id, and the id of the event
    /// that carries it to the operator webhook (so writing it twice is
    /// harmless). Given by the recorder as it takes the notice (`stamp`),
    /// so that on one node ids grow in the order notices are stored.
    pub id: String,
    pub kind: Kind,
    pub at: DateTime<Utc>,
    pub endpoint_id: i64,
    pub endpoint_url: String,
    pub scope: Scope,
    pub reason: String,
}

impl Draft {
    pub fn new(
        kind: Kind,
        endpoint_id: i64,
        endpoint_url: &str,
        scope: Scope,
        reason: String,
    ) -> Draft {
        Draft {
            id: String::new(),
            kind,
            at: Utc::now(),
            endpoint_id,
            endpoint_url: endpoint_url.to_string(),
            scope,
            reason,
        }
    }
}

impl Draft {
    /// Gives the draft its id, now.
    pub fn stamp(&mut self) {
        self.id = crate::ids::new_event_id();
    }
}

/// The endpoint a notice is about.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoticeEndpoint {
    pub id: i64,
    pub url: String,
}

/// A subscription a notice is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoticeSubscription {
    pub subscription_id: i64,
    pub marketplace_id: i64,
    pub user_id: i64,
}

/// A notice as listed and as delivered to the operator webhook.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub notice_id: String,
    pub event: Kind,
    /// When it happened, RFC 3339 UTC.
    pub at: String,
    pub endpoint: NoticeEndpoint,
    pub subscriptions: Vec<NoticeSubscription>,
    pub reason: String,
}

impl Notice {
    /// The notice of `draft` about `subscriptions`.
    pub fn of(draft: &Draft, subscriptions: Vec<NoticeSubscription>) -> Notice {
        Notice {
            notice_id: draft.id.clone(),
            event: draft.kind,
            at: draft.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            endpoint: NoticeEndpoint {
                id: draft.endpoint_id,
                url: draft.endpoint_url.clone(),
            },
            subscriptions,
            reason: draft.reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_serializes_with_the_designed_fields() {
        let draft = Draft::new(
            Kind::AutoRemoved,
            7,
            "https://example.com/hook",
            Scope::Ids(vec![3]),
            "dead".into(),
        );
        let mut draft = draft;
        draft.stamp();
        let notice = Notice::of(
            &draft,
            vec![NoticeSubscription {
                subscription_id: 3,
                marketplace_id: 11,
                user_id: 12,
            }],
        );
        let value = serde_json::to_value(&notice).unwrap();
        assert_eq!(value["event"], "subscription.auto_removed");
        assert_eq!(value["endpoint"]["id"], 7);
        assert_eq!(value["endpoint"]["url"], "https://example.com/hook");
        assert_eq!(value["subscriptions"][0]["marketplaceId"], 11);
        assert_eq!(value["subscriptions"][0]["userId"], 12);
        assert_eq!(value["subscriptions"][0]["subscriptionId"], 3);
        assert_eq!(value["reason"], "dead");
        assert_eq!(value["noticeId"], draft.id);
        assert!(value["at"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn every_kind_names_itself_as_it_serializes() {
        for kind in [
            Kind::Failing,
            Kind::Paused,
            Kind::Recovered,
            Kind::Expiring,
            Kind::Dead,
            Kind::AutoRemoved,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
