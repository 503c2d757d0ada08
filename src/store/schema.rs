//! Table definitions shared by the SQLite and PostgreSQL backends (the output
//! of `diesel print-schema`; portable column types only).

// @generated automatically by Diesel CLI.

diesel::table! {
    attempts (id) {
        id -> BigInt,
        delivery_id -> Text,
        endpoint_id -> BigInt,
        attempted_at -> Timestamp,
        status_code -> Nullable<Integer>,
        error -> Nullable<Text>,
        duration_ms -> BigInt,
        response_excerpt -> Nullable<Text>,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Text,
        event_id -> Text,
        subscription_id -> BigInt,
        endpoint_id -> BigInt,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        first_status_code -> Nullable<Integer>,
        first_duration_ms -> Nullable<BigInt>,
        first_excerpt -> Nullable<Text>,
    }
}

diesel::table! {
    endpoints (id) {
        id -> BigInt,
        url -> Text,
        created_at -> Timestamp,
        state -> Text,
        consecutive_failures -> Integer,
        failed_verifications -> Integer,
        last_success_at -> Nullable<Timestamp>,
        last_failure_at -> Nullable<Timestamp>,
        last_failure_reason -> Nullable<Text>,
        next_verification_at -> Nullable<Timestamp>,
        dead_at -> Nullable<Timestamp>,
        dead_reason -> Nullable<Text>,
        owner_node -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        operator_paused -> Bool,
        max_in_flight -> Nullable<Integer>,
        max_per_second -> Nullable<Integer>,
        timeout_ms -> Nullable<BigInt>,
        policy_updated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    nodes (id) {
        id -> Text,
        started_at -> Timestamp,
        heartbeat_at -> Timestamp,
    }
}

diesel::table! {
    erasures (id) {
        id -> Text,
        requested_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
        requester -> Text,
        marketplace_id -> BigInt,
        events_erased -> BigInt,
        deliveries_cancelled -> BigInt,
        attempts_cleared -> BigInt,
    }
}

diesel::table! {
    event_types (name) {
        name -> Text,
        description -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    events (id) {
        id -> Text,
        marketplace_id -> BigInt,
        event -> Text,
        body -> Text,
        idempotency_key -> Nullable<Text>,
        delivery_count -> Integer,
        created_at -> Timestamp,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> BigInt,
        marketplace_id -> BigInt,
        user_id -> BigInt,
        event -> Text,
        endpoint_id -> BigInt,
        secret -> Text,
        active -> Bool,
        created_at -> Timestamp,
        last_modified -> Timestamp,
        deactivated_at -> Nullable<Timestamp>,
        deactivation_reason -> Nullable<Text>,
        route_version -> BigInt,
        previous_secret -> Nullable<Text>,
        previous_secret_until -> Nullable<Timestamp>,
        secret_rotated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    notices (id) {
        id -> Text,
        kind -> Text,
        endpoint_id -> BigInt,
        body -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    routing_version (id) {
        id -> Integer,
        version -> BigInt,
    }
}

diesel::table! {
    tokens (id) {
        id -> BigInt,
        token_hash -> Text,
        marketplace_id -> BigInt,
        user_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    ui_sessions (id_hash) {
        id_hash -> Text,
        audience -> Text,
        token_hash -> Text,
        csrf -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(deliveries -> events (event_id));
diesel::joinable!(deliveries -> subscriptions (subscription_id));
diesel::joinable!(subscriptions -> endpoints (endpoint_id));

diesel::allow_tables_to_appear_in_same_query!(
    attempts,
    deliveries,
    endpoints,
    erasures,
    event_types,
    events,
    nodes,
    notices,
    routing_version,
    subscriptions,
    tokens,
    ui_sessions,
);
