//! The typed configuration model.
//!
//! This is what a YAML file becomes after [`super::load`] has read and validated it: every
//! default filled in, every unit converted, every reference (route → upstream) checked. The
//! engine never sees YAML; it compiles this model into a [`crate::plan::Plan`].
//!
//! All types serialize (for `/admin/config`); secrets serialize as `"<redacted>"`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cdn_edge::hls::HlsRules;
use cdn_edge::shield::TierGuard;
use ipnet::IpNet;
use serde::{Serialize, Serializer};

/// A whole Meridian configuration.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Config {
    /// Process-wide settings (threads, grace period, upgrade socket).
    pub server: ServerSettings,
    /// Where client traffic is accepted.
    pub listeners: Vec<Listener>,
    /// The admin listener.
    pub admin: Admin,
    /// Named upstream pools, in config order.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Routes, in config order (priority is computed by the router, config order breaks ties).
    pub routes: Vec<Route>,
    /// Request size limits applied before routing.
    pub limits: Limits,
    /// Metrics, access log and tracing.
    pub telemetry: Telemetry,
    /// Global IP allow/deny applied to every request before routing.
    pub access: IpAccess,
    /// The global plugin chain: runs on every route, before the route's own plugins.
    pub plugins: Vec<PluginSpec>,
    /// The cache storage shared by every route with `cache:`; `None`: no cache.
    pub cache: Option<CacheStorage>,
}

/// Process-wide settings.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerSettings {
    /// Worker threads serving every listener (default 1).
    pub threads: usize,
    /// A worker whose event loop has not turned for this long counts as stalled: logged,
    /// exported, and `/healthz` fails (default 5s).
    #[serde(serialize_with = "ser_duration")]
    pub stall_timeout: Duration,
    /// How long a graceful shutdown or upgrade waits for in-flight requests (default 10s).
    #[serde(serialize_with = "ser_duration")]
    pub grace_period: Duration,
    /// Unix socket used to hand listening sockets to a new binary on upgrade.
    pub upgrade_sock: PathBuf,
    /// Pid file written at start (used by the upgrade procedure).
    pub pid_file: PathBuf,
    /// Watch the config file and reload when it changes (default true).
    pub watch_config: bool,
    /// How long a client may take over a request head, a request body and a response.
    #[serde(flatten)]
    pub client_timeouts: ClientTimeouts,
}

/// Bounds on slow clients (slowloris), applied to every plain and TLS HTTP/1 connection.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// The longest a request head may take to arrive, counted from the connection's start for
    /// its first request and from a head's first byte after that (default 60s) → 408.
    #[serde(rename = "client_header_timeout", serialize_with = "ser_duration")]
    pub header: Duration,
    /// The longest pause between two reads of a request body (default 60s) → 408; also the
    /// most Meridian waits for the rest of a body it did not need before it closes.
    #[serde(rename = "client_body_timeout", serialize_with = "ser_duration")]
    pub body: Duration,
    /// The longest one write to a client may wait for the client to take bytes (default 60s);
    /// after it the connection is closed.
    #[serde(rename = "client_send_timeout", serialize_with = "ser_duration")]
    pub send: Duration,
}

/// One client-facing listener.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Listener {
    /// Stable name (used in metrics and logs).
    pub name: String,
    /// Address to bind.
    pub address: SocketAddr,
    /// TLS termination; `None` means plain TCP.
    pub tls: Option<ListenerTls>,
    /// Accept cleartext HTTP/2 (h2c, prior knowledge) next to HTTP/1.1 on a plain listener.
    pub h2c: bool,
}

/// TLS settings of a listener.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ListenerTls {
    /// Certificates. The first one is the default (no SNI or no SNI match); the others are
    /// chosen when the client's SNI matches one of their `server_names` (exact or `*.` wildcard).
    pub certificates: Vec<Certificate>,
    /// Offer HTTP/2 by ALPN (default true).
    pub http2: bool,
    /// Client-certificate verification (mTLS); `None` disables it.
    pub client_auth: Option<ClientAuth>,
}

/// A certificate chain and its key, with the names it serves.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Certificate {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// SNI names this certificate answers (`example.com`, `*.example.com`). Empty: default only.
    pub server_names: Vec<String>,
}

/// mTLS client verification.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClientAuth {
    /// PEM bundle of CAs that client certificates must chain to.
    pub ca: PathBuf,
    /// Refuse the handshake when the client presents no certificate (default true).
    pub required: bool,
}

/// The admin listener.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Admin {
    /// Address to bind (default 127.0.0.1:9901).
    pub address: SocketAddr,
    /// Bearer token. Required (validation error otherwise) when `address` is not loopback.
    pub token: Option<Secret>,
    /// The live dashboard (`GET /dashboard`).
    pub dashboard: Dashboard,
}

/// The live dashboard: what it scrapes besides this gateway, and how often.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Dashboard {
    /// Other processes' Prometheus endpoints, each shown as a panel, in config order.
    pub sources: Vec<MetricsSource>,
    /// How often the one background task scrapes this gateway and the sources (default 2s).
    #[serde(serialize_with = "ser_duration")]
    pub scrape_every: Duration,
}

/// One Prometheus endpoint the dashboard scrapes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricsSource {
    /// The panel's name (`edge`, `orders`).
    pub name: String,
    /// A plain `http://` URL.
    pub url: String,
}

/// A named pool of upstream targets.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Upstream {
    /// The targets.
    pub targets: Vec<Target>,
    /// How often DNS names among the targets are re-resolved (default 30s).
    #[serde(serialize_with = "ser_duration")]
    pub dns_refresh: Duration,
    /// Load-balancing algorithm.
    pub balance: Balance,
    /// Active health checking; `None` disables it.
    pub health: Option<HealthCheck>,
    /// Passive outlier ejection.
    pub outlier: Outlier,
    /// Retry policy.
    pub retries: Retries,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// TLS to the upstream; `None` means plain HTTP.
    pub tls: Option<UpstreamTls>,
    /// Keep-alive connection pool.
    pub keepalive: Keepalive,
    /// One circuit breaker for all calls to this upstream.
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// One upstream target: `host:port` (an IP literal or a DNS name) and a weight.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Hash)]
pub struct Target {
    /// Host part (IP literal or DNS name).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Relative weight (default 1). Used by `weighted`, `ketama` and the weighted split.
    pub weight: u32,
}

impl Target {
    /// `host:port` as written in config.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Load-balancing algorithms.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "algorithm")]
pub enum Balance {
    /// Each target in turn (weights ignored).
    RoundRobin,
    /// Smooth weighted round robin (nginx's algorithm).
    Weighted,
    /// Fewest in-flight requests, weighted; ties broken round robin.
    LeastConn,
    /// Consistent hashing (ketama ring) on a request key.
    Ketama {
        /// Where the hash key comes from.
        key: HashKey,
    },
    /// Power of two random choices, compared by EWMA latency × (in-flight + 1).
    P2cEwma,
}

/// The request property a consistent hash is computed from.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    /// A request header's value (falls back to client IP when absent).
    Header(String),
    /// A cookie's value (falls back to client IP when absent).
    Cookie(String),
    /// The client IP address.
    ClientIp,
    /// The normalised request path.
    Path,
}

/// Active health checking.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HealthCheck {
    /// What is checked.
    pub kind: HealthKind,
    /// Time between checks of one target (default 2s).
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Time a check may take (default 1s).
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Consecutive failures that mark a healthy target unhealthy (default 3).
    pub unhealthy_after: u32,
    /// Consecutive successes that mark an unhealthy target healthy (default 2).
    pub healthy_after: u32,
}

/// What an active health check does.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum HealthKind {
    /// `GET path` must answer a status in `expect` (default 200..=399).
    Http {
        /// Request path.
        path: String,
        /// `Host` header to send (default: the target authority).
        host: Option<String>,
        /// Accepted statuses, inclusive range.
        expect: (u16, u16),
    },
    /// A TCP connect must succeed.
    Tcp,
}

/// Passive outlier ejection (Envoy semantics and defaults).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Outlier {
    /// Enabled (default true).
    pub enabled: bool,
    /// Consecutive 5xx (or connect failures) that eject a target (default 5).
    pub consecutive_5xx: u32,
    /// Base ejection time; the n-th ejection lasts `n × base` (default 30s).
    #[serde(serialize_with = "ser_duration")]
    pub base_ejection: Duration,
    /// At most this percentage of targets ejected at once, but always at least one (default 10).
    pub max_ejection_percent: u8,
}

/// Retry policy of an upstream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Retries {
    /// Additional attempts after the first (default 1; 0 disables retries).
    pub attempts: u32,
    /// Conditions that trigger a retry (default: connect_error, 502, 503, 504).
    pub on: Vec<RetryOn>,
    /// Exponential backoff with full jitter: base and cap (default 25ms..250ms).
    #[serde(serialize_with = "ser_duration")]
    pub backoff_base: Duration,
    /// Backoff cap.
    #[serde(serialize_with = "ser_duration")]
    pub backoff_max: Duration,
    /// Concurrent retries allowed as a percentage of active requests (default 20).
    pub budget_percent: u8,
    /// Concurrent retries always allowed regardless of the percentage (default 3).
    pub budget_min: u32,
}

/// A retry condition.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The TCP/TLS connection to the target failed.
    ConnectError,
    /// The per-try read timeout fired before response headers.
    Timeout,
    /// The connection was reset or closed before response headers.
    Reset,
    /// The upstream answered this status.
    Status(u16),
}

/// Timeouts to an upstream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Timeouts {
    /// TCP (and TLS) connect (default 1s).
    #[serde(serialize_with = "ser_duration")]
    pub connect: Duration,
    /// Per-try: time to wait for each read from the upstream (default 10s).
    #[serde(serialize_with = "ser_duration")]
    pub read: Duration,
    /// Per-try: time to wait for each write to the upstream (default 10s).
    #[serde(serialize_with = "ser_duration")]
    pub write: Duration,
    /// Whole request including retries and backoff (default 30s).
    #[serde(serialize_with = "ser_duration")]
    pub total: Duration,
}

/// TLS to an upstream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpstreamTls {
    /// SNI and certificate name to verify (default: the target host).
    pub sni: Option<String>,
    /// Verify the upstream certificate (default true).
    pub verify: bool,
    /// PEM bundle of the CAs the upstream certificate must chain to (default: the system's).
    pub ca: Option<PathBuf>,
    /// Speak HTTP/2 to the upstream when ALPN allows (default false).
    pub http2: bool,
}

/// Keep-alive pooling to an upstream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Keepalive {
    /// Idle connections kept per target (default 128).
    pub pool_size: usize,
    /// How long an idle pooled connection is kept (default 60s).
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
}

/// A route: a match, where it goes, and what is done on the way.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Route {
    /// Stable name (default `route-<index>`), used in metrics and logs.
    pub name: String,
    /// What requests this route takes.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// Where matched requests go.
    pub upstream: RouteUpstream,
    /// Path rewrite applied before proxying.
    pub rewrite: Option<Rewrite>,
    /// Header rules applied to the request sent upstream.
    pub request_headers: HeaderRules,
    /// Header rules applied to the response sent downstream.
    pub response_headers: HeaderRules,
    /// Retry non-idempotent methods (POST, PATCH) too (default false).
    pub retry_non_idempotent: bool,
    /// Route-level IP allow/deny (checked after the global one).
    pub access: IpAccess,
    /// Overrides of the request body limit for this route.
    pub max_body: Option<u64>,
    /// Plugins on this route, in order (built by the plugin registry; see plugins issue).
    pub plugins: Vec<PluginSpec>,
    /// A circuit breaker over this route's requests.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Caching of this route's responses; `None`: not cached.
    pub cache: Option<RouteCache>,
}

/// The match part of a route. Every present predicate must hold.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteMatch {
    /// Host patterns: `api.example.com` exact, `*.example.com` wildcard (one or more labels).
    /// Empty: any host.
    pub hosts: Vec<String>,
    /// The path predicate.
    pub path: PathMatch,
    /// Allowed methods (upper case). Empty: any method.
    pub methods: Vec<String>,
    /// Header predicates.
    pub headers: Vec<ValueMatch>,
    /// Query-parameter predicates.
    pub query: Vec<ValueMatch>,
}

/// Path predicates. Matching happens on the normalised path (see router).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    /// The whole path equals this.
    Exact(String),
    /// The path starts with this at a segment boundary... or literally; see router docs.
    Prefix(String),
    /// The path matches this regular expression (anchored). Named groups are captures.
    Regex(String),
    /// A template like `/v1/urls/{code}` or `/static/{*rest}`; `{name}` captures one segment,
    /// `{*name}` the rest of the path.
    Template(String),
}

/// A predicate on a named header or query parameter.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ValueMatch {
    /// Header name (lower case) or query parameter name.
    pub name: String,
    /// What the value must be.
    pub value: ValuePredicate,
}

/// How a header/query value is matched.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ValuePredicate {
    /// Present with any value.
    Present,
    /// Absent.
    Absent,
    /// Equal to this.
    Exact(String),
    /// Matches this regular expression (anchored).
    Regex(String),
}

/// Where a route sends traffic.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum RouteUpstream {
    /// One upstream pool by name.
    Single(String),
    /// A weighted split across pools: `(name, weight)`.
    Split(Vec<(String, u32)>),
}

/// A path rewrite. `{name}` in the template is replaced by the capture of that name; `{*name}` too.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Rewrite {
    /// Replace the whole path with this template.
    Path(String),
    /// Replace the matched prefix (route must be a prefix route) with this string.
    StripPrefix(String),
}

/// Header add/set/remove.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HeaderRules {
    /// Appended (kept alongside existing values).
    pub add: Vec<(String, String)>,
    /// Replaced.
    pub set: Vec<(String, String)>,
    /// Removed.
    pub remove: Vec<String>,
}

/// IP allow/deny. Deny wins; an empty allow list allows all.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct IpAccess {
    /// Allowed networks.
    pub allow: Vec<IpNet>,
    /// Denied networks.
    pub deny: Vec<IpNet>,
}

/// A plugin named in config with its raw settings (JSON value built from the YAML node),
/// and the position it was written at so plugin errors can point at it.
/// Debug output and serialization redact secret-named settings (see [`super::secrets`]).
#[derive(Clone, Serialize, PartialEq)]
pub struct PluginSpec {
    /// Registered plugin name.
    pub name: String,
    /// Its settings.
    #[serde(serialize_with = "super::secrets::ser_redacted_json")]
    pub settings: serde_json::Value,
    /// Where it was written.
    #[serde(skip)]
    pub at: Position,
    /// Where each setting was written, by its path inside the settings (`limits[0].rate`), so
    /// a plugin's config error can point at the field.
    #[serde(skip)]
    pub fields: std::sync::Arc<std::collections::HashMap<String, Position>>,
}

impl PluginSpec {
    /// A plugin built in code: `name` with `settings` (no file positions).
    pub fn new(name: impl Into<String>, settings: serde_json::Value) -> PluginSpec {
        PluginSpec {
            name: name.into(),
            settings,
            at: Position::default(),
            fields: Default::default(),
        }
    }

    /// The position of the setting at `path` (or of its nearest written parent; the plugin
    /// name when the path is empty or unknown).
    pub fn position_of(&self, path: &str) -> Position {
        let mut p = path;
        loop {
            if p.is_empty() {
                return self.at;
            }
            if let Some(pos) = self.fields.get(p) {
                return *pos;
            }
            p = match p.rfind(['.', '[']) {
                Some(i) => &p[..i],
                None => "",
            };
        }
    }
}

/// Limits on requests, checked before routing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Limits {
    /// Header count (default 100) → 431.
    pub max_header_count: usize,
    /// Total bytes of the header block (default 60 KiB) → 431.
    pub max_header_bytes: usize,
    /// Request-target length (default 8 KiB) → 414.
    pub max_uri_length: usize,
    /// Request body (default 10 MiB) → 413.
    pub max_body: u64,
    /// What an encoded slash (`%2F`) or backslash (`%5C`) in the path does.
    pub encoded_slash: EncodedSlash,
}

/// Policy for `%2F` / `%5C` in request paths.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EncodedSlash {
    /// Refuse the request with 400 (default).
    Reject,
    /// Keep them encoded: they do not split segments.
    Keep,
    /// Decode them to `/` before matching.
    Decode,
}

/// Telemetry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Telemetry {
    /// Access log destination.
    pub access_log: AccessLog,
    /// OTLP trace export.
    pub otlp: Option<Otlp>,
}

/// Where access-log lines go.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum AccessLog {
    /// No access log.
    Off,
    /// JSON lines on stdout (default).
    Stdout,
    /// JSON lines appended to a file.
    File(PathBuf),
}

/// OTLP/HTTP trace export.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Otlp {
    /// Collector base URL, e.g. `http://127.0.0.1:4318` (`/v1/traces` is appended).
    pub endpoint: String,
    /// `service.name` resource attribute (default `meridian`).
    pub service_name: String,
    /// Fraction of new traces sampled (parent decision is kept) (default 1.0).
    pub sample_ratio: f64,
}

/// A line/column position in a config file (1-based).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub column: usize,
}

/// A secret string: kept in memory, printed and serialized as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Serializes a duration in the config's own notation (`250ms`, `2s`).
pub fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::units::format_duration(*d))
}

/// Serializes an optional duration in config syntax, or null.
pub fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// A circuit breaker (`upstreams.NAME.circuit_breaker`, `routes[].circuit_breaker`), with
/// Resilience4j semantics; see `docs/plugins/circuit_breaker.md`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CircuitBreaker {
    /// The sliding window (default the last 100 calls).
    pub window: BreakerWindow,
    /// Failure rate in percent that opens the breaker (default 50).
    pub failure_rate_threshold: u8,
    /// Slow-call rate in percent that opens the breaker (default 100).
    pub slow_call_rate_threshold: u8,
    /// A call slower than this is slow (default 5s).
    #[serde(serialize_with = "ser_duration")]
    pub slow_call_duration: Duration,
    /// Calls in the window before a rate counts (default 20).
    pub minimum_calls: u32,
    /// Time spent open before half-open (default 30s).
    #[serde(serialize_with = "ser_duration")]
    pub wait_in_open: Duration,
    /// Multiplies the wait for each consecutive re-opening (default 1: none).
    pub backoff_multiplier: f64,
    /// The longest wait in open (default 5m).
    #[serde(serialize_with = "ser_duration")]
    pub max_wait: Duration,
    /// Trial calls in half-open (default 10).
    pub permitted_calls_in_half_open: u32,
    /// Upstream statuses that count as failures (default 500, 502, 503, 504).
    pub failure_statuses: Vec<u16>,
    /// Whether timeouts count as failures (default true).
    pub timeouts: bool,
    /// Whether connect errors and broken connections count as failures (default true).
    pub connect_errors: bool,
    /// What an open breaker answers; `None`: 503 with `x-meridian-reason: circuit open`.
    pub fallback: Option<BreakerFallback>,
}

/// A breaker's sliding window.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BreakerWindow {
    /// The last N calls (`window: 100`).
    Calls(u32),
    /// The calls of the last N seconds, counted per second (`window: 60s`).
    Seconds(u32),
}

/// What an open breaker answers instead of calling the upstream.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum BreakerFallback {
    /// Send the request to this upstream instead.
    Upstream(String),
    /// Answer with this response.
    Response(StaticResponse),
}

/// A response written by the gateway itself.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StaticResponse {
    /// Status (default 503).
    pub status: u16,
    /// Body (default empty).
    pub body: String,
    /// `Content-Type` (default `text/plain; charset=utf-8`).
    pub content_type: String,
    /// Extra headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

/// The process's cache storage (top-level `cache:`). Created once at start; changing it
/// takes a restart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CacheStorage {
    /// Bytes of the memory tier (default 256MiB).
    pub memory: u64,
    /// Largest object the memory tier admits (default 16MiB).
    pub memory_max_object: u64,
    /// The disk tier; `None`: memory only.
    pub disk: Option<CacheDisk>,
    /// Largest object stored at all, over every tier (default: the largest tier's limit).
    pub max_object: Option<u64>,
    /// This process's place in a cache hierarchy (`tier: { name, max_hops }`): its name,
    /// appended to `x-meridian-tier` on every forwarded request, and the loop limits checked
    /// on every incoming one. `None`: no hop header is checked or added. Required when a
    /// route has `cache.shield`.
    #[serde(serialize_with = "ser_tier")]
    pub tier: Option<TierGuard>,
}

/// Serializes a tier in config syntax.
fn ser_tier<S: Serializer>(t: &Option<TierGuard>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let Some(t) = t else {
        return s.serialize_none();
    };
    let mut m = s.serialize_map(Some(2))?;
    m.serialize_entry("name", t.name())?;
    m.serialize_entry("max_hops", &t.max_hops())?;
    m.end()
}

/// A cached route's parent tier (`routes[].cache.shield:`): misses and revalidations go to
/// one target of `upstream`, chosen by consistent hashing of the cache key.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteShield {
    /// The upstream whose targets are the shields (IP literals; weights are ring shares).
    pub upstream: String,
    /// What to do when no shield can be connected to.
    pub fallback: ShieldFallback,
    /// The shields (the upstream's targets), filled in when the config is read.
    #[serde(skip)]
    pub shields: Vec<(SocketAddr, u32)>,
    /// Where `upstream` was written.
    #[serde(skip)]
    pub at: Position,
}

/// What a cached route does when every shield refused the connection.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ShieldFallback {
    /// Go to the route's own upstream (the origin) directly (default).
    Origin,
    /// Answer 502.
    Error,
}

impl CacheStorage {
    /// Whether `other` creates the same storage (everything but `tier`, which a reload
    /// applies).
    pub fn same_storage(&self, other: &CacheStorage) -> bool {
        self.memory == other.memory
            && self.memory_max_object == other.memory_max_object
            && self.disk == other.disk
            && self.max_object == other.max_object
    }
}

/// The disk tier of the cache storage.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CacheDisk {
    /// Directory of the object files (created if missing; one process per directory).
    pub path: PathBuf,
    /// Bytes of the disk tier (default 10GiB).
    pub size: u64,
    /// Largest object file (default 1GiB).
    pub max_object: u64,
}

/// Caching on a route (`routes[].cache:`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteCache {
    /// Which rules set apply (`default`, or `hls` for HLS playlists and segments).
    pub profile: CacheProfile,
    /// Lifetime of 2xx/3xx responses the origin gives no freshness (default none: heuristic).
    #[serde(serialize_with = "ser_opt_duration")]
    pub default_ttl: Option<Duration>,
    /// Lifetime of 404/405/410/414/501 responses the origin gives no freshness (default 10s).
    #[serde(serialize_with = "ser_duration")]
    pub negative_ttl: Duration,
    /// `stale-while-revalidate` when the origin sends none (default 0s).
    #[serde(serialize_with = "ser_duration")]
    pub stale_while_revalidate: Duration,
    /// `stale-if-error` when the origin sends none (default 1h, at most 7d).
    #[serde(serialize_with = "ser_duration")]
    pub stale_if_error: Duration,
    /// Which query parameters are part of the key.
    pub query: CacheQuery,
    /// Request headers (lower case) a response may vary on; others in `Vary` are not stored.
    pub vary: Vec<String>,
    /// Content codings (lower case) the request's `Accept-Encoding` is normalised over
    /// (default br, zstd, gzip; empty: not normalised, and `Accept-Encoding` is allowed in
    /// `Vary` only when `vary` lists it).
    pub accept_encoding: Vec<String>,
    /// How long a request waits for another request's fill of the same object (default 5s).
    #[serde(serialize_with = "ser_duration")]
    pub lock_timeout: Duration,
    /// Largest object this route stores (default: the storage's limit).
    pub max_object: Option<u64>,
    /// The HLS rules (`hls:`), used when `profile` is `hls`.
    #[serde(serialize_with = "ser_hls")]
    pub hls: HlsRules,
    /// The parent tier misses go to; `None`: straight to the route's upstream.
    pub shield: Option<RouteShield>,
}

/// Serializes HLS rules in config syntax.
fn ser_hls<S: Serializer>(r: &HlsRules, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let d = super::units::format_duration;
    let mut m = s.serialize_map(Some(10))?;
    m.serialize_entry("vod_playlist_ttl", &d(r.vod_playlist_ttl))?;
    m.serialize_entry("master_playlist_ttl", &d(r.master_playlist_ttl))?;
    m.serialize_entry("live_playlist_min_ttl", &d(r.live_playlist_min_ttl))?;
    m.serialize_entry("live_playlist_max_ttl", &d(r.live_playlist_max_ttl))?;
    m.serialize_entry("segment_ttl", &d(r.segment_ttl))?;
    m.serialize_entry("init_segment_ttl", &d(r.init_segment_ttl))?;
    m.serialize_entry(
        "blocking_reload_lock_timeout",
        &d(r.blocking_reload_lock_timeout),
    )?;
    m.serialize_entry("max_playlist_bytes", &r.max_playlist_bytes)?;
    m.serialize_entry("key_query_keep", &r.key_query_keep)?;
    m.serialize_entry("prefetch", &r.prefetch)?;
    m.end()
}

/// Rules sets of cached routes.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheProfile {
    /// RFC 9111 with the route's defaults.
    Default,
    /// HLS: playlist and segment TTLs, LL-HLS query rules and segment prefetch
    /// (`cdn_edge::hls`, settings in `hls:`); other objects as `default`.
    Hls,
}

/// Query parameters in the cache key.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheQuery {
    /// All parameters, sorted (default).
    #[default]
    All,
    /// Only these parameters.
    Allow(Vec<String>),
    /// All parameters but these.
    Deny(Vec<String>),
    /// No parameter.
    Ignore,
}
