//! The source's configuration: the keys of its `[[sources]]` table other than the common ones.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;
use usage_core::plugin::{SettingDefaults, SourceSettings, WithSettings};

/// Anthropic's API endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// Requests per minute: the whole minute's budget may go out as one burst (a query's request
/// ranges and pages); Anthropic asks for about one poll a minute sustained, which the gateway's
/// cache and the usage store's sync keep to.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 10;
/// Requests in flight at once.
pub const DEFAULT_MAX_CONCURRENCY: usize = 2;
/// Usage report requests one query may need (one per request range); capped by
/// `rate_limit_per_minute`.
pub const DEFAULT_MAX_UPSTREAM_CALLS: u32 = 10;
/// How long a listed set of workspaces is reused.
pub const DEFAULT_DISCOVERY_TTL: Duration = Duration::from_secs(1800);

/// Configures one Anthropic organization.
///
/// ```toml
/// base_url = "https://api.anthropic.com"   # default
/// admin_key = "${ANTHROPIC_ADMIN_KEY}"      # an Admin API key, sk-ant-admin01-…
/// agents = ["wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ", "default"]  # optional; else discovery
/// max_upstream_calls = 10                   # usage report requests per query
/// rate_limit_per_minute = 10   # a common setting, read by the gateway
/// max_concurrency = 2          # a common setting, read by the gateway
/// discovery_ttl = "30m"        # a common setting, read by the gateway
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API root; tests point it at a simulator.
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    /// The Admin API key, sent as `x-api-key`.
    pub admin_key: SecretString,
    /// A fixed list of workspace ids (`default` for the default workspace): no discovery, and
    /// usage of these workspaces only.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    /// The most usage report requests one query may need; larger queries are refused with a
    /// hint. Capped by `rate_limit_per_minute`.
    #[serde(default = "default_max_upstream_calls")]
    pub max_upstream_calls: u32,
    /// The local outbound budget, shared by every query of the source.
    #[serde(skip, default = "default_rate_limit")]
    pub rate_limit_per_minute: u32,
    /// The most requests in flight at once.
    #[serde(skip, default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// How long listed workspaces are reused.
    #[serde(skip, default = "default_discovery_ttl")]
    pub discovery_ttl: Duration,
    /// The largest response body accepted, in bytes.
    #[serde(skip, default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Config {
    /// Creates a configuration with the given admin key and every default.
    pub fn new(admin_key: SecretString) -> Self {
        Self {
            base_url: default_base_url(),
            admin_key,
            agents: None,
            max_upstream_calls: DEFAULT_MAX_UPSTREAM_CALLS,
            rate_limit_per_minute: DEFAULT_RATE_LIMIT_PER_MINUTE,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            discovery_ttl: DEFAULT_DISCOVERY_TTL,
            max_body_bytes: usage_core::http::DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Checks what serde cannot, naming the key of every problem.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let url = &self.base_url;
        let mut problems = Vec::new();
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            problems.push("base_url: needs http(s) and a host, e.g. https://api.anthropic.com");
        }
        if url.query().is_some() || url.fragment().is_some() {
            problems.push("base_url: must not carry a query or fragment");
        }
        if self.admin_key.expose_secret().trim().is_empty() {
            problems.push("admin_key: is empty");
        }
        match self.agents.as_deref() {
            Some([]) => problems.push("agents: is empty; remove the key to list workspaces"),
            Some(ids) if ids.iter().any(|a| a.trim().is_empty()) => {
                problems.push("agents: holds an empty workspace id");
            }
            _ => {}
        }
        for (key, value) in [
            (
                "max_upstream_calls: must be at least 1",
                self.max_upstream_calls,
            ),
            (
                "rate_limit_per_minute: must be at least 1",
                self.rate_limit_per_minute,
            ),
            (
                "max_concurrency: must be at least 1",
                u32::from(self.max_concurrency > 0),
            ),
        ] {
            if value == 0 {
                problems.push(key);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url.as_str())
            .field("admin_key", &"[REDACTED]")
            .field("agents", &self.agents)
            .field("max_upstream_calls", &self.max_upstream_calls)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("max_concurrency", &self.max_concurrency)
            .field("discovery_ttl", &self.discovery_ttl)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

fn default_base_url() -> Url {
    match Url::parse(DEFAULT_BASE_URL) {
        Ok(url) => url,
        // A literal URL; the `defaults_apply` test proves it parses.
        Err(e) => unreachable!("the default base URL parses: {e}"),
    }
}

fn default_max_upstream_calls() -> u32 {
    DEFAULT_MAX_UPSTREAM_CALLS
}

fn default_rate_limit() -> u32 {
    DEFAULT_RATE_LIMIT_PER_MINUTE
}

fn default_max_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENCY
}

fn default_discovery_ttl() -> Duration {
    DEFAULT_DISCOVERY_TTL
}

fn default_max_body_bytes() -> usize {
    usage_core::http::DEFAULT_MAX_BODY_BYTES
}

/// The common settings this provider uses, with its defaults.
pub(crate) const SETTINGS: SettingDefaults = SettingDefaults {
    rate_limit_per_minute: Some(Some(DEFAULT_RATE_LIMIT_PER_MINUTE)),
    max_concurrency: DEFAULT_MAX_CONCURRENCY,
    discovery_ttl: Some(DEFAULT_DISCOVERY_TTL),
    open_ttl: None,
    closed_ttl: None,
    settle: None,
};

impl WithSettings for Config {
    fn with_settings(mut self, s: &SourceSettings) -> Self {
        if let Some(n) = s.rate_limit_per_minute {
            self.rate_limit_per_minute = n.get();
        }
        self.max_concurrency = s.max_concurrency;
        self.max_body_bytes = s.max_body_bytes;
        if let Some(d) = s.discovery_ttl {
            self.discovery_ttl = d;
        }
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
    fn defaults_apply() {
        let c = parse(r#"admin_key = "sk-ant-admin01-secret""#).unwrap();
        assert_eq!(c.base_url.as_str(), "https://api.anthropic.com/");
        assert_eq!(c.agents, None);
        assert_eq!(
            (
                c.max_upstream_calls,
                c.rate_limit_per_minute,
                c.max_concurrency
            ),
            (10, 10, 2)
        );
        assert_eq!(c.discovery_ttl, Duration::from_secs(1800));
        c.validate().unwrap();
    }

    #[test]
    fn keys_parse_and_common_settings_apply() {
        let c = parse(
            r#"
            base_url = "http://127.0.0.1:9000/anthropic"
            admin_key = "k"
            agents = ["wrkspc_a", "default"]
            max_upstream_calls = 4
            "#,
        )
        .unwrap()
        .with_settings(&SourceSettings {
            rate_limit_per_minute: std::num::NonZeroU32::new(60),
            max_concurrency: 3,
            max_body_bytes: 1000,
            discovery_ttl: Some(Duration::from_secs(90)),
            open_ttl: None,
            closed_ttl: None,
            settle: None,
        });
        assert_eq!(c.agents.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            (
                c.max_upstream_calls,
                c.rate_limit_per_minute,
                c.max_concurrency
            ),
            (4, 60, 3)
        );
        assert_eq!(c.discovery_ttl, Duration::from_secs(90));
        c.validate().unwrap();
        assert!(parse("admin_key = \"k\"\nmax_concurrency = 2").is_err());
        assert!(parse("admin_key = \"k\"\ntoken = \"t\"").is_err());
        assert!(
            parse("base_url = \"https://x\"").is_err(),
            "admin_key required"
        );
    }

    #[test]
    fn validation_names_each_key_and_debug_hides_the_key() {
        let mut c = parse(r#"admin_key = " ""#).unwrap();
        c.agents = Some(vec![]);
        c.max_upstream_calls = 0;
        c.rate_limit_per_minute = 0;
        c.max_concurrency = 0;
        c.base_url = Url::parse("ftp://x/?a=1").unwrap();
        let e = c.validate().unwrap_err();
        for key in [
            "base_url",
            "admin_key",
            "agents",
            "max_upstream_calls",
            "rate_limit_per_minute",
            "max_concurrency",
        ] {
            assert!(e.contains(key), "{key} missing from {e}");
        }
        let c = parse(r#"admin_key = "sk-ant-admin01-supersecret""#).unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("supersecret") && dbg.contains("REDACTED"),
            "{dbg}"
        );
    }
}
