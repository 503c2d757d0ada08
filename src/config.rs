//! Command line and configuration: every option of every subcommand, its
//! default, and its `HOOKRELAY_<OPTION>` environment variable (clap owns the
//! parsing; this module owns the names and the duration/list formats).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// hookrelay: a self-hosted webhook engine. Events pushed in are delivered,
/// signed and retried, to every subscribed endpoint.
#[derive(Debug, Parser)]
#[command(name = "hookrelay", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine: the public and internal HTTP listeners, the router and
    /// one actor per endpoint. Migrations run first.
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage API tokens for subscribers.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token bound to (marketplace, user) and print it once; only its
    /// hash is stored.
    Create {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Marketplace (tenant) id the token acts for.
        #[arg(long, env = "HOOKRELAY_MARKETPLACE")]
        marketplace: i64,
        /// User id the token acts for.
        #[arg(long, env = "HOOKRELAY_USER")]
        user: i64,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database: a SQLite file path (default `hookrelay.db` in the working
    /// directory), or a `postgres://` / `postgresql://` URL.
    #[arg(long, env = "HOOKRELAY_DATABASE_URL", default_value = "hookrelay.db")]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address of the public listener (subscription API for subscribers).
    #[arg(long, env = "HOOKRELAY_PUBLIC_ADDR", default_value = "0.0.0.0:8080")]
    pub public_addr: SocketAddr,

    /// Address of the internal listener (event ingest, tokens, operations,
    /// metrics). Keep it off public networks.
    #[arg(
        long,
        env = "HOOKRELAY_INTERNAL_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    pub internal_addr: SocketAddr,

    /// Bearer token required on the internal listener (except /health). When
    /// unset, the internal listener is open to whoever can reach it.
    #[arg(long, env = "HOOKRELAY_INTERNAL_TOKEN", hide_env_values = true)]
    pub internal_token: Option<String>,

    /// Time an endpoint has to answer a delivery or a verification call.
    #[arg(long, env = "HOOKRELAY_DELIVERY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub delivery_timeout: Duration,

    /// Delays between attempts of one delivery, comma separated; one retry per
    /// entry, each with ±20% jitter. After the last one the delivery becomes a
    /// dead letter.
    #[arg(long, env = "HOOKRELAY_RETRY_SCHEDULE", default_value = "10s,1m,10m", value_parser = parse_schedule)]
    pub retry_schedule: RetrySchedule,

    /// How often each endpoint is checked with a verification call.
    #[arg(long, env = "HOOKRELAY_VERIFY_INTERVAL", default_value = "8h", value_parser = parse_duration)]
    pub verify_interval: Duration,

    /// Consecutive failed verification calls after which an endpoint is dead
    /// and its subscriptions are removed.
    #[arg(
        long,
        env = "HOOKRELAY_DEAD_AFTER_FAILED_VERIFICATIONS",
        default_value_t = 3
    )]
    pub dead_after_failed_verifications: u32,

    /// Failed delivery attempts in a row after which an endpoint is paused:
    /// its deliveries are held (in order, in the database) and it is probed
    /// with verification calls until it answers 2xx again.
    #[arg(long, env = "HOOKRELAY_PAUSE_AFTER_FAILURES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub pause_after_failures: u32,

    /// First wait between probes of a paused endpoint; it doubles after each
    /// failed probe, up to --probe-max-interval.
    #[arg(long, env = "HOOKRELAY_PROBE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub probe_interval: Duration,

    /// Longest wait between probes of a paused endpoint.
    #[arg(long, env = "HOOKRELAY_PROBE_MAX_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub probe_max_interval: Duration,

    /// Requests in flight (or waiting for a retry) per endpoint. 1 gives strict
    /// per-endpoint ordering.
    #[arg(long, env = "HOOKRELAY_MAX_IN_FLIGHT_PER_ENDPOINT", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_in_flight_per_endpoint: u32,

    /// Pace each endpoint with an adaptive concurrency window within its
    /// maximum in flight: it starts at 4, grows while answers are good and
    /// fast, and halves on 429, 503 and timeouts. `false`: always the
    /// maximum.
    #[arg(long, env = "HOOKRELAY_ADAPTIVE_CONCURRENCY", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "true|false")]
    pub adaptive_concurrency: bool,

    /// Allow endpoints on loopback, private, link-local (metadata), CGNAT and
    /// other non-public addresses. Off by default; turn on only for tests and
    /// closed networks.
    #[arg(long, env = "HOOKRELAY_ALLOW_PRIVATE_ENDPOINTS")]
    pub allow_private_endpoints: bool,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "HOOKRELAY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most events accepted in one call to /internal/v1/events/batch.
    #[arg(long, env = "HOOKRELAY_MAX_BATCH_EVENTS", default_value_t = 1000)]
    pub max_batch_events: usize,

    /// Memory, in bytes, that deliveries held in memory may take in all.
    /// An endpoint always holds up to 8,192 in memory; beyond that, up to
    /// 65,536 while this budget lasts, and the rest wait in the database.
    #[arg(long, env = "HOOKRELAY_MAX_QUEUED_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_queued_bytes: usize,

    /// How long an idempotency key (`Idempotency-Key` header or `eventId`
    /// field) is remembered.
    #[arg(long, env = "HOOKRELAY_IDEMPOTENCY_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub idempotency_retention: Duration,

    /// How long delivery attempts, finished deliveries and their events are
    /// kept for inspection before they are removed.
    #[arg(long, env = "HOOKRELAY_HISTORY_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub history_retention: Duration,

    /// URL that receives hookrelay's own lifecycle notices (endpoint.failing,
    /// endpoint.paused, endpoint.recovered, subscription.expiring,
    /// endpoint.dead, subscription.auto_removed), delivered like any
    /// delivery: durable, signed, retried. Its endpoint is never removed.
    /// The notices are listed at GET /internal/v1/notices with or without it.
    #[arg(
        long,
        env = "HOOKRELAY_OPERATOR_WEBHOOK",
        requires = "operator_webhook_secret"
    )]
    pub operator_webhook: Option<String>,

    /// Secret that signs the notices sent to --operator-webhook (at least 16
    /// characters, or a `whsec_` key of at least 16 bytes).
    #[arg(
        long,
        env = "HOOKRELAY_OPERATOR_WEBHOOK_SECRET",
        hide_env_values = true,
        requires = "operator_webhook"
    )]
    pub operator_webhook_secret: Option<String>,

    /// How often history past its retention is removed (in small batches;
    /// the first pass runs right after start). Shorter mainly for tests.
    #[arg(long, env = "HOOKRELAY_RETENTION_INTERVAL", default_value = "10m", value_parser = parse_interval)]
    pub retention_interval: Duration,

    /// On SIGTERM, how long in-flight deliveries may take to finish.
    #[arg(long, env = "HOOKRELAY_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// This node's name in logs, /health, /metrics and endpoint ownership.
    /// Defaults to host name, process id and a random suffix.
    #[arg(long, env = "HOOKRELAY_NODE_ID")]
    pub node_id: Option<String>,

    /// PostgreSQL only: how long an endpoint lease lasts without renewal.
    /// A dead node's endpoints are taken over after about this long.
    #[arg(long, env = "HOOKRELAY_LEASE_TTL", default_value = "15s", value_parser = parse_duration)]
    pub lease_ttl: Duration,

    /// SQLite only: `full` (default) puts every commit on disk before it is
    /// acknowledged; `normal` survives a crash of the process but may lose
    /// the last acknowledged events on a power loss or kernel crash.
    #[arg(
        long,
        env = "HOOKRELAY_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    pub sqlite_synchronous: crate::store::SqliteSync,

    /// Database connections in the pool.
    #[arg(long, env = "HOOKRELAY_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,

    /// Most active subscriptions one subscriber token may have; a create
    /// past it answers 422 `too_many_subscriptions`. Also the default page
    /// size of `GET /v1/subscription`.
    #[arg(long, env = "HOOKRELAY_MAX_SUBSCRIPTIONS_PER_TOKEN", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_subscriptions_per_token: u32,

    /// Time a client has to send a request body once its headers are in;
    /// past it the connection answers 408 and is closed. (Headers must
    /// arrive within 5 s of connecting, and an idle keep-alive connection
    /// is closed after 30 s.)
    #[arg(long, env = "HOOKRELAY_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Most open connections per listener; past it new connections wait
    /// in the kernel's accept queue until one closes.
    #[arg(long, env = "HOOKRELAY_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

/// The delays between attempts of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

/// Parses `250ms`, `10s`, `1m`, `8h`, `7d` (and combinations like `1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 250ms, 10s, 1m or 8h"))
}

/// Parses a duration that must be more than zero (how often something
/// runs).
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!(
            "`{s}` is no interval: write a duration above zero, like 250ms, 10s or 10m"
        )),
        d => Ok(d),
    }
}

/// Parses a comma-separated list of durations; an empty string means no retry.
pub fn parse_schedule(s: &str) -> Result<RetrySchedule, String> {
    if s.trim().is_empty() {
        return Ok(RetrySchedule(Vec::new()));
    }
    s.split(',')
        .map(parse_duration)
        .collect::<Result<Vec<_>, _>>()
        .map(RetrySchedule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_documented_forms() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert!(parse_duration("ten seconds").unwrap_err().contains("250ms"));
    }

    #[test]
    fn an_interval_is_a_duration_above_zero() {
        assert_eq!(parse_interval("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_interval("0s").unwrap_err().contains("above zero"));
        assert!(parse_interval("soon").is_err());
        assert_eq!(serve_args(&[]).retention_interval, Duration::from_secs(600));
        assert_eq!(
            serve_args(&["--retention-interval", "200ms"]).retention_interval,
            Duration::from_millis(200)
        );
    }

    #[test]
    fn the_default_schedule_is_three_retries() {
        let s = parse_schedule("10s,1m,10m").unwrap();
        assert_eq!(
            s.0,
            vec![
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(600)
            ]
        );
        assert!(parse_schedule("").unwrap().0.is_empty());
        assert!(parse_schedule("1s,x").is_err());
    }

    fn serve_args(extra: &[&str]) -> ServeArgs {
        use clap::Parser;
        let mut argv = vec!["hookrelay", "serve"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Serve(args) => *args,
            _ => unreachable!("serve was asked for"),
        }
    }

    #[test]
    fn adaptive_concurrency_is_on_unless_turned_off() {
        assert!(serve_args(&[]).adaptive_concurrency);
        assert!(!serve_args(&["--adaptive-concurrency", "false"]).adaptive_concurrency);
        assert!(serve_args(&["--adaptive-concurrency", "true"]).adaptive_concurrency);
    }

    #[test]
    fn the_operator_webhook_needs_its_secret_and_the_secret_its_webhook() {
        use clap::Parser;
        let parse = |extra: &[&str]| {
            let mut argv = vec!["hookrelay", "serve"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map(|_| ())
        };
        assert!(parse(&["--operator-webhook", "https://ops.example.com/h"]).is_err());
        assert!(parse(&["--operator-webhook-secret", "0123456789abcdef"]).is_err());
        let both = serve_args(&[
            "--operator-webhook",
            "https://ops.example.com/h",
            "--operator-webhook-secret",
            "0123456789abcdef",
        ]);
        assert_eq!(
            both.operator_webhook.as_deref(),
            Some("https://ops.example.com/h")
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
