//! Configuration: one TOML file, `${ENV}` interpolation, typed sections with
//! `deny_unknown_fields`, and start-up validation that names the key path of every mistake.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use usage_core::plugin::{SettingDefaults, SourceSettings};

/// Every mistake found in a configuration, each with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `(key path, message)` pairs, in file order.
    pub errors: Vec<(String, String)>,
}

impl ConfigError {
    /// Creates an error with one entry.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            errors: vec![(path.into(), message.into())],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for (path, msg) in &self.errors {
            writeln!(f, "  - {path}: {msg}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The whole configuration file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and request limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// JWT verification.
    pub auth: AuthConfig,
    /// The upstream-answer cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The access policy (deny by default).
    #[serde(default)]
    pub access: Vec<AccessEntry>,
    /// The vendor sources; each table is checked by its provider.
    #[serde(default)]
    pub sources: Vec<toml::Table>,
    /// The usage store (absent: no store, every query is answered live).
    #[serde(default)]
    pub store: Option<StoreConfig>,
    /// The price table: prices of usage that vendors report without money
    /// ([`usage_core::prices`]).
    #[serde(default)]
    pub prices: Vec<usage_core::prices::PriceEntry>,
    /// Monthly budgets (`GET /v1/budgets`, `usage_gateway_budget_*` gauges).
    #[serde(default)]
    pub budgets: Vec<BudgetConfig>,
}

/// One `[[budgets]]` entry as written: a monthly amount for a source, an agent, a user, or
/// everything (no scope key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// The budget's name (letters, digits, `-`, `_`, `.`): its `budget` label in metrics.
    pub name: String,
    /// Only this source's cost.
    pub source: Option<String>,
    /// Only this agent's cost, as `<source>/<agent_id>`.
    pub agent: Option<String>,
    /// Only this user's cost.
    pub user: Option<String>,
    /// The amount per calendar month (decimal string).
    pub amount: String,
    /// ISO 4217 code of `amount`; cost in other currencies is not counted (a note says so).
    pub currency: String,
    /// The zone of the month's edges (IANA name; default UTC).
    pub tz: Option<String>,
}

impl fmt::Debug for Config {
    /// Shows each source by name, provider and key names only: which of a provider's keys hold
    /// credentials is the provider's business, so no source value but those two is printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Keys<'a>(&'a toml::Table);
        impl fmt::Debug for Keys<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let shown = |k: &str| self.0.get(k).and_then(toml::Value::as_str);
                f.debug_struct("Source")
                    .field("name", &shown("name"))
                    .field("provider", &shown("provider"))
                    .field("keys", &self.0.keys().collect::<Vec<_>>())
                    .finish()
            }
        }
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("auth", &self.auth)
            .field("cache", &self.cache)
            .field("access", &self.access)
            .field("store", &self.store)
            .field("prices", &self.prices.len())
            .field("budgets", &self.budgets)
            .field(
                "sources",
                &self.sources.iter().map(Keys).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Worker threads (default: number of CPUs).
    pub workers: Option<usize>,
    /// Overall deadline of one `/v1/usage` request; late sources are reported `timeout`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The longest `[start, end)` range a query may ask for (quoted as written in messages).
    pub max_range: WrittenDuration,
    /// The most buckets a query may ask for.
    pub max_buckets: usize,
    /// The most values a filter parameter (`source`, `agent`, ...) may list.
    pub max_filter_values: usize,
    /// Serve `/metrics` on this separate address instead of the main listener.
    pub metrics_listen: Option<SocketAddr>,
    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// The longest query string accepted, in bytes; a longer one answers 400 naming `(query)`
    /// (at most 32 KiB).
    pub max_query_bytes: usize,
    /// The most request header lines accepted; more answer 431 (at most 96, actix-web's own cap).
    pub max_headers: usize,
    /// The largest sum of request header name and value lengths, in bytes; more answer 431 (at
    /// most 48 KiB).
    pub max_header_bytes: usize,
    /// The largest request body announced by `Content-Length`; every route is a `GET`, so a
    /// larger one answers 413 without being read.
    pub max_body_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: None,
            request_timeout: Duration::from_secs(10),
            max_range: WrittenDuration::new(Duration::from_secs(366 * 24 * 3600), "366d"),
            max_buckets: 2000,
            max_filter_values: 100,
            metrics_listen: None,
            shutdown_timeout: Duration::from_secs(20),
            max_query_bytes: 8 * 1024,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 16 * 1024,
        }
    }
}

/// A configured duration together with the text it was written as, so that messages quote the
/// operator's own value (`366d`) rather than a normalized one (`1year 1month 4days 7h 26m 24s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenDuration {
    value: Duration,
    written: Box<str>,
}

impl WrittenDuration {
    /// A duration and how it is written (for defaults and tests).
    pub fn new(value: Duration, written: &str) -> Self {
        Self {
            value,
            written: written.into(),
        }
    }

    /// The duration.
    pub fn get(&self) -> Duration {
        self.value
    }
}

impl fmt::Display for WrittenDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl<'de> Deserialize<'de> for WrittenDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let written = text.trim();
        humantime::parse_duration(written)
            .map(|value| Self::new(value, written))
            .map_err(serde::de::Error::custom)
    }
}

/// JWT algorithms the gateway can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC SHA-256 with a shared secret of at least 32 bytes.
    HS256,
    /// RSA PKCS#1 v1.5 SHA-256 with a PEM public key.
    RS256,
    /// ECDSA P-256 SHA-256 with a PEM public key.
    ES256,
}

/// `[auth]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The pinned algorithm list; tokens with any other `alg` are rejected.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// The HS256 secret (at least 32 bytes).
    pub hs256_secret: Option<SecretString>,
    /// RS256 public key, PEM.
    pub rs256_public_key_pem: Option<String>,
    /// ES256 public key, PEM.
    pub es256_public_key_pem: Option<String>,
    /// The identity provider's JWKS (`https`, or `http` on a loopback address): RS256/ES256
    /// keys by `kid`, each bound to its `alg`.
    pub jwks_url: Option<url::Url>,
    /// The shortest time between two JWKS fetches; an unknown `kid` triggers at most one fetch
    /// per interval, however many tokens carry it.
    #[serde(
        default = "default_jwks_min_refresh_interval",
        with = "humantime_serde"
    )]
    pub jwks_min_refresh_interval: Duration,
    /// How long fetched JWKS keys count as fresh; older keys are refetched on use and stay in
    /// use while the identity provider fails.
    #[serde(default = "default_jwks_cache_ttl", with = "humantime_serde")]
    pub jwks_cache_ttl: Duration,
    /// Timeout of one JWKS request (connect included).
    #[serde(default = "default_jwks_timeout", with = "humantime_serde")]
    pub jwks_timeout: Duration,
    /// Clock leeway for `exp`/`nbf` (at most 60 s).
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Required JOSE `typ` header (e.g. `JWT` or `at+jwt`), when set.
    pub typ: Option<String>,
    /// The scope a caller needs for `/v1/*`.
    #[serde(default = "default_scope")]
    pub required_scope: String,
    /// Lifetime of tokens minted by `usage-gateway token`.
    #[serde(default = "default_dev_token_ttl", with = "humantime_serde")]
    pub dev_token_ttl: Duration,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("algorithms", &self.algorithms)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("rs256_public_key_pem", &self.rs256_public_key_pem.is_some())
            .field("es256_public_key_pem", &self.es256_public_key_pem.is_some())
            .field("jwks_url", &self.jwks_url.as_ref().map(url::Url::as_str))
            .field("jwks_min_refresh_interval", &self.jwks_min_refresh_interval)
            .field("jwks_cache_ttl", &self.jwks_cache_ttl)
            .field("jwks_timeout", &self.jwks_timeout)
            .field("leeway", &self.leeway)
            .field("typ", &self.typ)
            .field("required_scope", &self.required_scope)
            .finish_non_exhaustive()
    }
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_scope() -> String {
    "usage:read".to_owned()
}

fn default_dev_token_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_jwks_min_refresh_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_jwks_cache_ttl() -> Duration {
    Duration::from_secs(10 * 60)
}

fn default_jwks_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Checks `auth.jwks_url`: `https`, or `http` only on a loopback host; no credentials in it.
fn check_jwks_url(url: &url::Url) -> Result<(), String> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("must be an https URL (http only on a loopback address)".to_owned()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".to_owned());
    }
    Ok(())
}

/// `[cache]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Byte budget of all cached upstream answers and rendered responses.
    pub max_bytes: u64,
    /// Lifetime of answers for windows that are still open.
    #[serde(with = "humantime_serde")]
    pub open_ttl: Duration,
    /// Lifetime of answers for closed windows.
    #[serde(with = "humantime_serde")]
    pub closed_ttl: Duration,
    /// A window is closed once it ended before `now - settle`.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// How long past its lifetime an entry may still be served (marked `stale`) when the
    /// vendor fails; older data is never served.
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            open_ttl: Duration::from_secs(60),
            closed_ttl: Duration::from_secs(24 * 3600),
            settle: Duration::from_secs(15 * 60),
            stale_if_error: Duration::from_secs(3600),
        }
    }
}

/// `[store]`: where settled usage is kept, and how the background sync fills it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://…` (several replicas share it), or an SQLite file (`sqlite://PATH` or a plain
    /// path; created when missing, its directory must exist). Checked when the config is read:
    /// [`StoreConfig::location`].
    url: String,
    /// How often each source's syncer looks for newly closed windows.
    #[serde(
        default = "StoreConfig::default_sync_interval",
        with = "humantime_serde"
    )]
    pub sync_interval: Duration,
    /// How far back the syncer fills the store, newest first (`0s`: only what queries and the
    /// `sync` command write).
    #[serde(default = "StoreConfig::default_backfill")]
    pub backfill: WrittenDuration,
    /// How long stored usage is kept: the syncer forgets what is older (absent: kept until
    /// removed). At least `backfill`, or the syncer would fetch again what it forgets.
    #[serde(default)]
    pub retention: Option<WrittenDuration>,
    /// The share of each source's `rate_limit_per_minute` the syncer may use (the rest stays
    /// for live queries); `0 < share <= 1`.
    #[serde(default = "StoreConfig::default_budget_share")]
    pub budget_share: f64,
    /// Whether this process syncs at all (replicas that should only read set `false`).
    #[serde(default = "StoreConfig::default_sync")]
    pub sync: bool,
    /// How long a replica's claim to sync a source lasts without renewal: after a syncer dies,
    /// another replica takes over within this time.
    #[serde(default = "StoreConfig::default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How long start-up waits for the store; a store still unreachable then is retried in the
    /// background while queries are answered live.
    #[serde(
        default = "StoreConfig::default_open_timeout",
        with = "humantime_serde"
    )]
    pub open_timeout: Duration,
}

impl StoreConfig {
    fn default_sync_interval() -> Duration {
        Duration::from_secs(300)
    }
    fn default_backfill() -> WrittenDuration {
        WrittenDuration::new(Duration::from_secs(30 * 86_400), "30d")
    }
    fn default_budget_share() -> f64 {
        0.5
    }
    fn default_sync() -> bool {
        true
    }
    fn default_lease_ttl() -> Duration {
        Duration::from_secs(60)
    }
    fn default_open_timeout() -> Duration {
        Duration::from_secs(10)
    }

    /// A store at `url` with every other setting at its default.
    pub fn at(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            sync_interval: Self::default_sync_interval(),
            backfill: Self::default_backfill(),
            retention: None,
            budget_share: Self::default_budget_share(),
            sync: Self::default_sync(),
            lease_ttl: Self::default_lease_ttl(),
            open_timeout: Self::default_open_timeout(),
        }
    }

    /// Where the store lives (shown only with its password replaced).
    pub fn location(&self) -> Result<usage_store::StoreLocation, usage_core::StoreError> {
        usage_store::StoreLocation::parse(&self.url)
    }

    fn check(&self, errors: &mut Vec<(String, String)>) {
        let mut push = |p: &str, m: String| errors.push((format!("store.{p}"), m));
        if let Err(e) = self.location() {
            push("url", e.to_string());
        }
        if self.sync_interval < Duration::from_secs(1) {
            push("sync_interval", "must be at least 1s".into());
        }
        if !(self.budget_share > 0.0 && self.budget_share <= 1.0) {
            push(
                "budget_share",
                format!("must be above 0 and at most 1, got {}", self.budget_share),
            );
        }
        if self.lease_ttl < Duration::from_secs(1) {
            push("lease_ttl", "must be at least 1s".into());
        }
        if self.open_timeout.is_zero() {
            push("open_timeout", "must be positive".into());
        }
        if let Some(r) = &self.retention
            && r.get() < self.backfill.get()
        {
            push(
                "retention",
                format!(
                    "{r} is shorter than store.backfill ({}): the syncer would fetch again what \
                     retention forgets",
                    self.backfill
                ),
            );
        }
    }
}

impl fmt::Debug for StoreConfig {
    /// Shows the location with its password replaced.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = self
            .location()
            .map_or_else(|_| "(invalid)".to_owned(), |l| l.to_string());
        f.debug_struct("StoreConfig")
            .field("url", &location)
            .field("sync_interval", &self.sync_interval)
            .field("backfill", &self.backfill)
            .field("retention", &self.retention)
            .field("budget_share", &self.budget_share)
            .field("sync", &self.sync)
            .field("lease_ttl", &self.lease_ttl)
            .field("open_timeout", &self.open_timeout)
            .finish()
    }
}

/// One `[[access]]` entry: callers whose `claim` holds `value` may see these sources and agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEntry {
    /// The claim to match (`sub`, or a team claim such as `team`).
    pub claim: String,
    /// The value it must hold (a string claim equal to it, or an array claim containing it).
    pub value: String,
    /// Source names, or `["*"]` for every source.
    pub sources: Vec<String>,
    /// When set, only these agents, as `<source>/<agent_id>`; sources not named here stay whole.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
}

/// The keys every `[[sources]]` table has, whatever the provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCommon {
    /// Unique source name.
    pub name: String,
    /// Provider wire name.
    pub provider: String,
    /// Total timeout of one upstream HTTP request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Connect timeout of one upstream HTTP request.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Attempts per provider call, the first included (1 = no retry).
    #[serde(default = "default_attempts")]
    pub max_attempts: usize,
    /// The first backoff ceiling between attempts (full jitter below it).
    #[serde(default = "default_retry_min", with = "humantime_serde")]
    pub retry_min_delay: Duration,
    /// The largest backoff ceiling.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// Consecutive vendor faults (transport, timeout, 5xx) that open the circuit.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before one probe.
    #[serde(default = "default_breaker_cooldown", with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// The local outbound budget in vendor requests per minute (default: the provider's).
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
    /// Vendor requests in flight at once (default: the provider's).
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// The largest vendor response body accepted, in bytes (default 32 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// How long a discovered agent list is reused (providers that discover agents).
    #[serde(default, with = "humantime_serde")]
    pub discovery_ttl: Option<Duration>,
    /// The provider cache's lifetime of open data (providers with a cache of their own).
    #[serde(default, with = "humantime_serde")]
    pub open_ttl: Option<Duration>,
    /// The provider cache's lifetime of closed data.
    #[serde(default, with = "humantime_serde")]
    pub closed_ttl: Option<Duration>,
    /// How long after its end data may still change upstream.
    #[serde(default, with = "humantime_serde")]
    pub settle: Option<Duration>,
}

impl SourceCommon {
    /// The source's common settings with `defaults` (its provider's) where a key is absent;
    /// a key the provider has no use for, or a zero count or size, is a mistake at its path.
    pub fn settings(
        &self,
        index: usize,
        defaults: &SettingDefaults,
    ) -> Result<SourceSettings, ConfigError> {
        let mut errors = Vec::new();
        let prefix = format!("sources[{index}]");
        let provider = &self.provider;
        let mut unused = |key: &str, given: bool, used: bool| {
            if given && !used {
                errors.push((
                    format!("{prefix}.{key}"),
                    format!("provider `{provider}` has no `{key}` setting"),
                ));
            }
        };
        unused(
            "rate_limit_per_minute",
            self.rate_limit_per_minute.is_some(),
            defaults.rate_limit_per_minute.is_some(),
        );
        unused(
            "discovery_ttl",
            self.discovery_ttl.is_some(),
            defaults.discovery_ttl.is_some(),
        );
        unused(
            "open_ttl",
            self.open_ttl.is_some(),
            defaults.open_ttl.is_some(),
        );
        unused(
            "closed_ttl",
            self.closed_ttl.is_some(),
            defaults.closed_ttl.is_some(),
        );
        unused("settle", self.settle.is_some(), defaults.settle.is_some());
        let mut positive = |key: &str, value: Option<usize>| {
            if value == Some(0) {
                errors.push((format!("{prefix}.{key}"), "must be at least 1".to_owned()));
            }
        };
        positive(
            "rate_limit_per_minute",
            self.rate_limit_per_minute.map(|n| n as usize),
        );
        positive("max_concurrency", self.max_concurrency);
        positive("max_body_bytes", self.max_body_bytes);
        if !errors.is_empty() {
            return Err(ConfigError { errors });
        }
        let or = |given: Option<Duration>, default: Option<Duration>| {
            default.map(|d| given.unwrap_or(d))
        };
        Ok(SourceSettings {
            rate_limit_per_minute: self
                .rate_limit_per_minute
                .or(defaults.rate_limit_per_minute.flatten())
                .and_then(std::num::NonZeroU32::new),
            max_concurrency: self.max_concurrency.unwrap_or(defaults.max_concurrency),
            max_body_bytes: self
                .max_body_bytes
                .unwrap_or(usage_core::http::DEFAULT_MAX_BODY_BYTES),
            discovery_ttl: or(self.discovery_ttl, defaults.discovery_ttl),
            open_ttl: or(self.open_ttl, defaults.open_ttl),
            closed_ttl: or(self.closed_ttl, defaults.closed_ttl),
            settle: or(self.settle, defaults.settle),
        })
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_attempts() -> usize {
    3
}
fn default_retry_min() -> Duration {
    Duration::from_millis(200)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(5)
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> Duration {
    Duration::from_secs(30)
}

/// Keys taken out of a source table before the provider sees the rest: the gateway's own and
/// the common settings every provider may use ([`SourceCommon::settings`]).
pub const COMMON_SOURCE_KEYS: [&str; 16] = [
    "name",
    "provider",
    "timeout",
    "connect_timeout",
    "max_attempts",
    "retry_min_delay",
    "retry_max_delay",
    "breaker_failures",
    "breaker_cooldown",
    "rate_limit_per_minute",
    "max_concurrency",
    "max_body_bytes",
    "discovery_ttl",
    "open_ttl",
    "closed_ttl",
    "settle",
];

/// Splits a source table into its common keys and the provider's own keys.
pub fn split_source(
    index: usize,
    table: &toml::Table,
) -> Result<(SourceCommon, toml::Table), ConfigError> {
    let prefix = format!("sources[{index}]");
    let (common, rest): (toml::Table, toml::Table) = table
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| COMMON_SOURCE_KEYS.contains(&k.as_str()));
    let common: SourceCommon = from_toml(&prefix, toml::Value::Table(common))?;
    let mut errors = Vec::new();
    let mut check = |ok: bool, key: &str, msg: &str| {
        if !ok {
            errors.push((format!("{prefix}.{key}"), msg.to_owned()));
        }
    };
    check(!common.name.trim().is_empty(), "name", "must not be empty");
    check(
        !common.provider.trim().is_empty(),
        "provider",
        "must not be empty",
    );
    check(!common.timeout.is_zero(), "timeout", "must be positive");
    check(
        !common.connect_timeout.is_zero(),
        "connect_timeout",
        "must be positive",
    );
    check(
        common.max_attempts >= 1,
        "max_attempts",
        "must be at least 1",
    );
    check(
        common.retry_min_delay <= common.retry_max_delay,
        "retry_min_delay",
        "must not exceed retry_max_delay",
    );
    check(
        common.breaker_failures >= 1,
        "breaker_failures",
        "must be at least 1",
    );
    if errors.is_empty() {
        Ok((common, rest))
    } else {
        Err(ConfigError { errors })
    }
}

/// Deserializes `value` as `T`, reporting the failing key path below `prefix`.
pub fn from_toml<T: serde::de::DeserializeOwned>(
    prefix: &str,
    value: toml::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner.as_str()) {
            (true, ".") => "(top level)".to_owned(),
            (true, _) => inner,
            (false, ".") => prefix.to_owned(),
            (false, _) => format!("{prefix}.{inner}"),
        };
        ConfigError::one(path, e.into_inner().to_string())
    })
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string of `value` using `lookup`.
pub fn interpolate(
    value: &mut toml::Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<(String, String)>,
) {
    match value {
        toml::Value::String(s) => {
            let ctx = |var: &str| -> Result<Option<String>, String> { Ok(lookup(var)) };
            match shellexpand::env_with_context(s, ctx) {
                Ok(out) => *s = out.into_owned(),
                Err(e) => errors.push((
                    path.to_owned(),
                    format!("environment variable `{}` is not set", e.var_name),
                )),
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                interpolate(v, &format!("{path}[{i}]"), lookup, errors);
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate(v, &p, lookup, errors);
            }
        }
        _ => {}
    }
}

impl Config {
    /// Reads, interpolates (from the process environment) and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read(path)?, &|k| std::env::var(k).ok())
    }

    /// Parses TOML text with `${VAR}` looked up by `lookup`, then validates it.
    pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = interpolated(parse_toml(text)?, "", lookup)?;
        let config: Config = from_toml("", value)?;
        config.validate()?;
        Ok(config)
    }
}

impl AuthConfig {
    /// Reads only the `[auth]` table of a config file, interpolating only its `${VAR}`s, and
    /// validates it: `usage-gateway token` needs nothing else, so a file whose other sections
    /// are broken or reference unset variables still serves.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read(path)?, &|k| std::env::var(k).ok())
    }

    /// Parses the `[auth]` table of TOML text with `${VAR}` looked up by `lookup`, then
    /// validates it.
    pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let auth = parse_toml(text)?
            .as_table_mut()
            .and_then(|t| t.remove("auth"))
            .ok_or_else(|| ConfigError::one("auth", "missing: the file has no [auth] table"))?;
        let auth: Self = from_toml("auth", interpolated(auth, "auth", lookup)?)?;
        let mut errors = Vec::new();
        auth.check(&mut errors);
        if errors.is_empty() {
            Ok(auth)
        } else {
            Err(ConfigError { errors })
        }
    }

    /// Adds every violation of the `[auth]` rules to `errors`, with its key path.
    fn check(&self, errors: &mut Vec<(String, String)>) {
        let mut push = |p: &str, m: String| errors.push((p.to_owned(), m));
        let a = self;
        if a.algorithms.is_empty() {
            push(
                "auth.algorithms",
                "list at least one of HS256, RS256, ES256".into(),
            );
        }
        let algs: BTreeSet<_> = a.algorithms.iter().copied().collect();
        match (&a.hs256_secret, algs.contains(&JwtAlgorithm::HS256)) {
            (Some(s), true) if s.expose_secret().len() < 32 => push(
                "auth.hs256_secret",
                format!("must be at least 32 bytes, got {}", s.expose_secret().len()),
            ),
            (None, true) => push(
                "auth.hs256_secret",
                "is required when HS256 is listed".into(),
            ),
            (Some(_), false) => push(
                "auth.hs256_secret",
                "is set but HS256 is not in auth.algorithms".into(),
            ),
            _ => {}
        }
        for (alg, key, name) in [
            (
                JwtAlgorithm::RS256,
                &a.rs256_public_key_pem,
                "auth.rs256_public_key_pem",
            ),
            (
                JwtAlgorithm::ES256,
                &a.es256_public_key_pem,
                "auth.es256_public_key_pem",
            ),
        ] {
            match (key, algs.contains(&alg)) {
                (None, true) if a.jwks_url.is_none() => push(
                    name,
                    format!("is required when {alg:?} is listed (or set auth.jwks_url)"),
                ),
                (Some(_), false) => push(
                    name,
                    format!("is set but {alg:?} is not in auth.algorithms"),
                ),
                _ => {}
            }
        }
        if let Some(url) = &a.jwks_url {
            if let Err(m) = check_jwks_url(url) {
                push("auth.jwks_url", m);
            }
            if !algs.contains(&JwtAlgorithm::RS256) && !algs.contains(&JwtAlgorithm::ES256) {
                push(
                    "auth.jwks_url",
                    "needs RS256 or ES256 in auth.algorithms (a JWKS only supplies public keys)"
                        .into(),
                );
            }
        }
        if a.jwks_min_refresh_interval < Duration::from_millis(100) {
            push(
                "auth.jwks_min_refresh_interval",
                "must be at least 100ms".into(),
            );
        }
        if a.jwks_cache_ttl < a.jwks_min_refresh_interval {
            push(
                "auth.jwks_cache_ttl",
                "must not be shorter than auth.jwks_min_refresh_interval".into(),
            );
        }
        if a.jwks_timeout.is_zero() {
            push("auth.jwks_timeout", "must be positive".into());
        }
        if a.leeway > Duration::from_secs(60) {
            push("auth.leeway", "must be at most 60s".into());
        }
        if a.required_scope.trim().is_empty() {
            push("auth.required_scope", "must not be empty".into());
        }
    }
}

impl Config {
    /// Checks cross-field rules and reports every violation with its key path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        self.auth.check(&mut errors);
        if let Some(store) = &self.store {
            store.check(&mut errors);
        }
        let mut push = |p: &str, m: String| errors.push((p.to_owned(), m));
        let s = &self.server;
        if s.request_timeout.is_zero() {
            push("server.request_timeout", "must be positive".into());
        }
        if s.max_buckets == 0 {
            push("server.max_buckets", "must be at least 1".into());
        }
        if s.max_range.get().is_zero() {
            push("server.max_range", "must be positive".into());
        }
        if s.workers == Some(0) {
            push("server.workers", "must be at least 1".into());
        }
        if !(256..=crate::headguard::QUERY_BYTES_CAP).contains(&s.max_query_bytes) {
            push(
                "server.max_query_bytes",
                format!(
                    "must be between 256 and {} (longer request lines would reach the HTTP \
                     codec's own limits)",
                    crate::headguard::QUERY_BYTES_CAP
                ),
            );
        }
        if !(8..=96).contains(&s.max_headers) {
            push(
                "server.max_headers",
                "must be between 8 and 96 (actix-web refuses more than 96 itself)".into(),
            );
        }
        if s.max_header_bytes < crate::auth::MAX_TOKEN_BYTES + 1024 {
            push(
                "server.max_header_bytes",
                format!(
                    "must be at least {} (a bearer token alone may take {} bytes)",
                    crate::auth::MAX_TOKEN_BYTES + 1024,
                    crate::auth::MAX_TOKEN_BYTES
                ),
            );
        } else if s.max_header_bytes > crate::headguard::HEADER_BYTES_CAP {
            push(
                "server.max_header_bytes",
                format!(
                    "must be at most {} (longer heads would reach the HTTP codec's own limits)",
                    crate::headguard::HEADER_BYTES_CAP
                ),
            );
        }
        if self.cache.max_bytes < 1024 * 1024 {
            push("cache.max_bytes", "must be at least 1 MiB".into());
        }
        let mut names = BTreeMap::new();
        for (i, t) in self.sources.iter().enumerate() {
            match split_source(i, t) {
                Ok((common, _)) => {
                    if let Some(prev) = names.insert(common.name.clone(), i) {
                        push(
                            &format!("sources[{i}].name"),
                            format!("`{}` is already used by sources[{prev}]", common.name),
                        );
                    }
                    if common.name.contains('/') || common.name.contains(',') {
                        push(
                            &format!("sources[{i}].name"),
                            "must not contain `/` or `,`".into(),
                        );
                    }
                }
                Err(e) => errors_extend(&mut push, e),
            }
        }
        if let Err(problems) = usage_core::prices::PriceTable::new(&self.prices) {
            errors.extend(problems);
        }
        if let Err(problems) = crate::budgets::Budget::check_all(&self.budgets) {
            errors.extend(problems);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { errors })
        }
    }
}

/// Checks that every `[[access]]` entry names existing sources (`names`) and well-formed agents.
pub fn check_access(access: &[AccessEntry], names: &BTreeSet<String>) -> Result<(), ConfigError> {
    let mut errors = Vec::new();
    let mut push = |p: &str, m: String| errors.push((p.to_owned(), m));
    for (i, e) in access.iter().enumerate() {
        for (j, src) in e.sources.iter().enumerate() {
            if src != "*" && !names.contains(src) {
                push(
                    &format!("access[{i}].sources[{j}]"),
                    format!("unknown source `{src}`"),
                );
            }
        }
        for (j, agent) in e.agents.iter().flatten().enumerate() {
            match agent.split_once('/') {
                Some((src, id)) if names.contains(src) && !id.is_empty() => {}
                Some((src, _)) if !names.contains(src) => push(
                    &format!("access[{i}].agents[{j}]"),
                    format!("unknown source `{src}`"),
                ),
                _ => push(
                    &format!("access[{i}].agents[{j}]"),
                    "must be `<source>/<agent_id>`".into(),
                ),
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { errors })
    }
}

fn errors_extend(push: &mut impl FnMut(&str, String), e: ConfigError) {
    for (p, m) in e.errors {
        push(&p, m);
    }
}

/// Reads a config file, naming it when it cannot be read.
fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::one(path.display().to_string(), format!("cannot read: {e}")))
}

/// Replaces every `${VAR}` in `value` (found at `path`), or names every unset variable.
fn interpolated(
    mut value: toml::Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<toml::Value, ConfigError> {
    let mut errors = Vec::new();
    interpolate(&mut value, path, lookup, &mut errors);
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(ConfigError { errors })
    }
}

/// Parses TOML text, naming the line of a syntax error.
fn parse_toml(text: &str) -> Result<toml::Value, ConfigError> {
    toml::from_str(text).map_err(|e| {
        ConfigError::one(
            "(toml)",
            e.message().to_owned() + &span_hint(text, e.span()),
        )
    })
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|r| {
        let line = text[..r.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
request_timeout = "2s"
[auth]
algorithms = ["HS256"]
hs256_secret = "${SECRET}"
[[access]]
claim = "sub"
value = "alice"
sources = ["*"]
[[sources]]
name = "a"
provider = "static"
"#;

    fn env(k: &str) -> Option<String> {
        (k == "SECRET").then(|| "0123456789abcdef0123456789abcdef".to_owned())
    }

    #[test]
    fn store_settings_are_checked_at_their_key_paths() {
        let with = |store: &str| Config::parse(&format!("{GOOD}[store]\n{store}"), &env);
        let c = with("url = \"/tmp/x.db\"\nretention = \"400d\"").unwrap();
        let store = c.store.unwrap();
        assert_eq!(store.retention.unwrap().to_string(), "400d");
        assert_eq!(store.backfill.to_string(), "30d");
        let e = with(
            "url = \"postgres://u:hunter2@db/x\"\nbackfill = \"90d\"\nretention = \"30d\"\n\
             budget_share = 0\nsync_interval = \"0s\"",
        )
        .err()
        .unwrap();
        let paths: Vec<&str> = e.errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "store.sync_interval",
                "store.budget_share",
                "store.retention"
            ],
            "{e}"
        );
        assert!(
            e.to_string().contains("shorter than store.backfill (90d)"),
            "{e}"
        );
        assert!(!e.to_string().contains("hunter2"));
        let e = with("url = \"mysql://db/x\"").err().unwrap();
        assert_eq!(e.errors[0].0, "store.url", "{e}");
    }

    #[test]
    fn parses_and_interpolates() {
        let c = Config::parse(GOOD, &env).unwrap();
        assert_eq!(c.server.request_timeout, Duration::from_secs(2));
        assert_eq!(
            c.auth.hs256_secret.as_ref().unwrap().expose_secret(),
            "0123456789abcdef0123456789abcdef"
        );
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn names_key_paths() {
        let e = Config::parse(GOOD, &|_| None).unwrap_err();
        assert_eq!(e.errors[0].0, "auth.hs256_secret");
        let bad = GOOD.replace("request_timeout", "request_timeoutt");
        let e = Config::parse(&bad, &env).unwrap_err();
        assert_eq!(e.errors[0].0, "server.request_timeoutt", "{e}");
        assert!(e.errors[0].1.contains("request_timeoutt"), "{e}");
        let short = GOOD.replace("${SECRET}", "short");
        let e = Config::parse(&short, &env).unwrap_err();
        assert_eq!(e.errors[0].0, "auth.hs256_secret");
        let dup = format!("{GOOD}\n[[sources]]\nname = \"a\"\nprovider = \"static\"\n");
        let e = Config::parse(&dup, &env).unwrap_err();
        assert_eq!(e.errors[0].0, "sources[1].name");
        let acc = GOOD.replace("sources = [\"*\"]", "sources = [\"nope\"]");
        let c = Config::parse(&acc, &env).unwrap();
        let e = check_access(&c.access, &BTreeSet::from(["a".to_owned()])).unwrap_err();
        assert_eq!(e.errors[0].0, "access[0].sources[0]");
    }

    #[test]
    fn leeway_above_60s_is_rejected() {
        let with =
            |leeway: &str| GOOD.replace("[auth]\n", &format!("[auth]\nleeway = \"{leeway}\"\n"));
        let c = Config::parse(&with("60s"), &env).unwrap();
        assert_eq!(c.auth.leeway, Duration::from_secs(60));
        for too_long in ["61s", "2m", "1h"] {
            let e = Config::parse(&with(too_long), &env).unwrap_err();
            assert!(
                e.errors
                    .iter()
                    .any(|(path, msg)| path == "auth.leeway" && msg.contains("60s")),
                "{too_long}: {e}"
            );
        }
    }

    #[test]
    fn head_bounds_stay_below_the_codec_limits() {
        let with =
            |key: &str, v: usize| GOOD.replace("[server]\n", &format!("[server]\n{key} = {v}\n"));
        for (key, cap) in [
            ("max_query_bytes", crate::headguard::QUERY_BYTES_CAP),
            ("max_header_bytes", crate::headguard::HEADER_BYTES_CAP),
        ] {
            assert!(Config::parse(&with(key, cap), &env).is_ok(), "{key}");
            let e = Config::parse(&with(key, cap + 1), &env).unwrap_err();
            assert_eq!(e.errors[0].0, format!("server.{key}"), "{e}");
        }
    }
}
