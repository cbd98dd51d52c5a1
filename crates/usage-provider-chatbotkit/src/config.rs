//! The source's configuration: the keys of its `[[sources]]` table besides the common ones.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;
use usage_core::Unit;
use usage_core::plugin::{SettingDefaults, SourceSettings, WithSettings};

/// Vendor requests in flight at once for the source.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// How long the provider's cache trusts open data by default.
pub const DEFAULT_OPEN_TTL: Duration = Duration::from_secs(60);
/// How long it trusts closed data by default.
pub const DEFAULT_CLOSED_TTL: Duration = Duration::from_secs(3600);
/// How long data stays open by default.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(300);
/// How long a discovered bot list is reused by default.
pub const DEFAULT_DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// Items asked for per list page by default (`take`).
pub const DEFAULT_PAGE_SIZE: u32 = 1000;

/// The ChatBotKit source configuration.
///
/// ```toml
/// base_url = "https://api.chatbotkit.com"   # default
/// token = "${CHATBOTKIT_TOKEN}"              # sent as `Authorization: Bearer …`
/// unit = "credits"                           # or "tokens"
/// agents = ["cmb1y7r0d000008jv2h6c4wq9"]     # optional; otherwise `GET /v1/bot/list`
/// record_types = "base"                      # or "all"
/// page_size = 1000
/// open_ttl = "1m"   # a common setting, read by the gateway
/// closed_ttl = "1h"   # a common setting, read by the gateway
/// settle = "5m"   # a common setting, read by the gateway
/// discovery_ttl = "5m"   # a common setting, read by the gateway
/// max_concurrency = 4   # a common setting, read by the gateway
/// rate_limit_per_minute = 600                # optional; no local limit by default (a common setting)
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API root; paths `/v1/...` are appended to it.
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    /// The ChatBotKit secret, sent as a Bearer token.
    pub token: SecretString,
    /// The unit the counts are reported in: `credits` (ChatBotKit credit tokens) or `tokens`.
    #[serde(default = "default_unit")]
    pub unit: Unit,
    /// A fixed list of bot ids; the source then covers only these bots (and no discovery call is
    /// made). Without it, bots are discovered with `GET /v1/bot/list`.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    /// Which usage record types count: `base` (only `BASE`, the type ChatBotKit's per-bot totals
    /// count, so range and record answers agree) or `all` (every type; always scans records).
    #[serde(default)]
    pub record_types: RecordTypes,
    /// Items per page (`take`) for `/v1/usage/list` and `/v1/bot/list`. The contract gives `take`
    /// no maximum: a server that serves fewer items quietly costs nothing but more pages. When
    /// the first list request with a `take` above 100 is answered 400 or 422, it is sent again
    /// with 100; if that is accepted, the source uses 100 from then on (also when the server's
    /// real limit lies between 100 and `page_size`: set `page_size` to it).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How long scanned records younger than `settle` are trusted.
    #[serde(skip, default = "default_open_ttl")]
    pub open_ttl: Duration,
    /// How long a record scan is kept at all before it is redone from scratch.
    #[serde(skip, default = "default_closed_ttl")]
    pub closed_ttl: Duration,
    /// How long after its creation a record may still appear or change upstream.
    #[serde(skip, default = "default_settle")]
    pub settle: Duration,
    /// How long the discovered bot list is reused.
    #[serde(skip, default = "default_discovery_ttl")]
    pub discovery_ttl: Duration,
    /// The most vendor requests in flight at once for the source (shared by every query).
    #[serde(skip, default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// The local outbound budget in vendor requests per minute, shared by every query of the
    /// source; `None` (the default) sets none and relies on ChatBotKit's `X-RateLimit-*` headers.
    #[serde(skip)]
    pub rate_limit_per_minute: Option<u32>,
    /// The largest response body accepted, in bytes (default 32 MiB).
    #[serde(skip, default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

/// Which ChatBotKit usage record types a source counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordTypes {
    /// Only `BASE` records: the same numbers as `GET /v1/bot/{botId}/usage/fetch`.
    #[default]
    Base,
    /// Every record type; each query then scans usage records.
    All,
}

impl Config {
    /// Creates a configuration with the defaults and the given token.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            base_url: default_base_url(),
            token: SecretString::from(token.into()),
            unit: default_unit(),
            agents: None,
            record_types: RecordTypes::default(),
            page_size: default_page_size(),
            open_ttl: default_open_ttl(),
            closed_ttl: default_closed_ttl(),
            settle: default_settle(),
            discovery_ttl: default_discovery_ttl(),
            max_concurrency: default_max_concurrency(),
            rate_limit_per_minute: None,
            max_body_bytes: default_max_body_bytes(),
        }
    }

    /// Checks the values serde cannot check, naming the key of each mistake.
    pub(crate) fn validate(&self) -> Result<(), String> {
        use secrecy::ExposeSecret;
        if !matches!(self.base_url.scheme(), "http" | "https") || self.base_url.cannot_be_a_base() {
            return Err("base_url: must be an http(s) URL".into());
        }
        if self.token.expose_secret().trim().is_empty() {
            return Err("token: must not be empty".into());
        }
        if self.page_size == 0 {
            return Err("page_size: must be at least 1".into());
        }
        if self.max_concurrency == 0 {
            return Err("max_concurrency: must be at least 1".into());
        }
        if self.rate_limit_per_minute == Some(0) {
            return Err(
                "rate_limit_per_minute: must be at least 1 (leave it out for no limit)".into(),
            );
        }
        if let Some(agents) = &self.agents {
            if agents.is_empty() {
                return Err("agents: must list at least one bot id (or be left out)".into());
            }
            if agents.iter().any(|a| a.trim().is_empty()) {
                return Err("agents: bot ids must not be empty".into());
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url.as_str())
            .field("token", &"[redacted]")
            .field("unit", &self.unit)
            .field("agents", &self.agents)
            .field("record_types", &self.record_types)
            .field("page_size", &self.page_size)
            .field("open_ttl", &self.open_ttl)
            .field("closed_ttl", &self.closed_ttl)
            .field("settle", &self.settle)
            .field("discovery_ttl", &self.discovery_ttl)
            .field("max_concurrency", &self.max_concurrency)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

fn default_max_body_bytes() -> usize {
    usage_core::http::DEFAULT_MAX_BODY_BYTES
}

fn default_base_url() -> Url {
    // A constant that parses; the fallback arm only satisfies the type checker.
    Url::parse("https://api.chatbotkit.com").unwrap_or_else(|_| unreachable!("constant URL"))
}

fn default_unit() -> Unit {
    Unit::Credits
}

fn default_page_size() -> u32 {
    DEFAULT_PAGE_SIZE
}

fn default_open_ttl() -> Duration {
    DEFAULT_OPEN_TTL
}

fn default_closed_ttl() -> Duration {
    DEFAULT_CLOSED_TTL
}

fn default_settle() -> Duration {
    DEFAULT_SETTLE
}

fn default_discovery_ttl() -> Duration {
    DEFAULT_DISCOVERY_TTL
}

fn default_max_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENCY
}

/// The common settings this provider uses, with its defaults (see the gateway's registry).
pub(crate) const SETTINGS: SettingDefaults = SettingDefaults {
    rate_limit_per_minute: Some(None),
    max_concurrency: DEFAULT_MAX_CONCURRENCY,
    discovery_ttl: Some(DEFAULT_DISCOVERY_TTL),
    open_ttl: Some(DEFAULT_OPEN_TTL),
    closed_ttl: Some(DEFAULT_CLOSED_TTL),
    settle: Some(DEFAULT_SETTLE),
};

impl WithSettings for Config {
    fn with_settings(mut self, s: &SourceSettings) -> Self {
        self.rate_limit_per_minute = s.rate_limit();
        self.max_concurrency = s.max_concurrency;
        self.max_body_bytes = s.max_body_bytes;
        self.discovery_ttl = s.discovery_ttl.unwrap_or(self.discovery_ttl);
        s.cache_into(&mut self.open_ttl, &mut self.closed_ttl, &mut self.settle);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(s)
    }

    #[test]
    fn defaults_and_redaction() {
        let c = parse(r#"token = "sk-very-secret""#).unwrap();
        assert_eq!(c.base_url.as_str(), "https://api.chatbotkit.com/");
        assert_eq!(c.unit, Unit::Credits);
        assert_eq!(c.record_types, RecordTypes::Base);
        assert_eq!(c.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(c.max_concurrency, 4);
        assert_eq!(c.rate_limit_per_minute, None);
        assert_eq!(c.settle, Duration::from_secs(300));
        assert!(c.agents.is_none());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("sk-very-secret"), "{dbg}");
        assert!(dbg.contains("[redacted]"));
        c.validate().unwrap();
    }

    #[test]
    fn every_key_parses() {
        let c = parse(
            r#"
            base_url = "http://127.0.0.1:9999"
            token = "t"
            unit = "tokens"
            agents = ["b1", "b2"]
            record_types = "all"
            page_size = 7
            "#,
        )
        .unwrap()
        // The common keys are read by the gateway, which hands them over.
        .with_settings(&SourceSettings {
            rate_limit_per_minute: std::num::NonZeroU32::new(60),
            max_concurrency: 2,
            max_body_bytes: 1000,
            discovery_ttl: Some(Duration::from_secs(30)),
            open_ttl: Some(Duration::from_secs(10)),
            closed_ttl: Some(Duration::from_secs(7200)),
            settle: Some(Duration::from_secs(60)),
        });
        assert_eq!(c.unit, Unit::Tokens);
        assert_eq!(c.record_types, RecordTypes::All);
        assert_eq!(
            c.agents.as_deref(),
            Some(&["b1".to_owned(), "b2".to_owned()][..])
        );
        assert_eq!(c.page_size, 7);
        assert_eq!(c.open_ttl, Duration::from_secs(10));
        assert_eq!(c.closed_ttl, Duration::from_secs(7200));
        assert_eq!(c.discovery_ttl, Duration::from_secs(30));
        assert_eq!(c.settle, Duration::from_secs(60));
        assert_eq!(c.max_concurrency, 2);
        assert_eq!(c.max_body_bytes, 1000);
        assert_eq!(c.rate_limit_per_minute, Some(60));
        // They are not the provider's own keys.
        for common in [
            "open_ttl = \"1m\"",
            "max_concurrency = 2",
            "rate_limit_per_minute = 5",
        ] {
            assert!(
                parse(&format!("token = \"t\"\n{common}")).is_err(),
                "{common}"
            );
        }
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(parse("token = \"t\"\nspace = \"x\"").is_err());
        assert!(parse("token = \"t\"\nunit = \"euros\"").is_err());
        assert!(parse("token = \"t\"\nrecord_types = \"some\"").is_err());
        assert!(parse("unit = \"credits\"").is_err(), "token is required");
        let mut c = parse("token = \"t\"").unwrap();
        c.page_size = 0;
        assert!(c.validate().unwrap_err().starts_with("page_size"));
        let mut c = parse("token = \"  \"").unwrap();
        assert!(c.validate().unwrap_err().starts_with("token"));
        c = parse("token = \"t\"\nagents = []").unwrap();
        assert!(c.validate().unwrap_err().starts_with("agents"));
        c = parse("token = \"t\"").unwrap();
        c.max_concurrency = 0;
        assert!(c.validate().unwrap_err().starts_with("max_concurrency"));
        c = parse("token = \"t\"").unwrap();
        c.rate_limit_per_minute = Some(0);
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("rate_limit_per_minute")
        );
        c.rate_limit_per_minute = Some(60);
        assert!(c.validate().is_ok());
        c = parse("token = \"t\"\nbase_url = \"ftp://x\"").unwrap();
        assert!(c.validate().unwrap_err().starts_with("base_url"));
    }
}
