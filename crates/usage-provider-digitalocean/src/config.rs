//! The source's configuration: the keys of its `[[sources]]` table other than the common ones.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;
use usage_core::plugin::{SettingDefaults, SourceSettings, WithSettings};

/// DigitalOcean's public API endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.digitalocean.com";
/// DigitalOcean's documented burst budget per token.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 250;
/// Upstream calls in flight at once for the source.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;
/// Upstream calls one query may need. It equals the default per-minute budget: a query that
/// needs more could not be granted without waiting for the budget to refill.
pub const DEFAULT_MAX_UPSTREAM_CALLS: u32 = 250;
/// How long a discovered agent list is reused.
pub const DEFAULT_DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// Configures one DigitalOcean Gen-AI source.
///
/// ```toml
/// base_url = "https://api.digitalocean.com"   # default
/// token = "${DIGITALOCEAN_TOKEN}"              # needs the genai:read scope
/// agents = ["c441bf77-81d6-11ef-bf8f-4e013e2ddde4"]  # optional; else discovery
/// only_deployed = false                        # discovery lists only deployed agents
/// rate_limit_per_minute = 250   # a common setting, read by the gateway
/// max_concurrency = 8   # a common setting, read by the gateway
/// max_upstream_calls = 250                     # per query: agents × uncached windows
/// discovery_ttl = "5m"   # a common setting, read by the gateway
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API root; tests point it at a simulator.
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    /// The API token (`Authorization: Bearer`), scope `genai:read`.
    pub token: SecretString,
    /// A fixed list of agent uuids; when absent, agents are discovered through
    /// `GET /v2/gen-ai/agents`.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    /// Makes discovery list only deployed agents.
    #[serde(default)]
    pub only_deployed: bool,
    /// The local outbound budget, shared by every query of the source.
    #[serde(skip, default = "default_rate_limit")]
    pub rate_limit_per_minute: u32,
    /// The most upstream calls in flight at once for the source.
    #[serde(skip, default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// The most upstream usage calls (agents × windows) one query may need; larger queries are
    /// rejected with a hint to use a coarser bucket. Capped by `rate_limit_per_minute`.
    #[serde(default = "default_max_upstream_calls")]
    pub max_upstream_calls: u32,
    /// How long discovered agents are reused before listing them again.
    #[serde(skip, default = "default_discovery_ttl")]
    pub discovery_ttl: Duration,
    /// The largest response body accepted, in bytes (default 32 MiB).
    #[serde(skip, default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Config {
    /// Creates a configuration with the given token and every default.
    pub fn new(token: SecretString) -> Self {
        Self {
            base_url: default_base_url(),
            token,
            agents: None,
            only_deployed: false,
            rate_limit_per_minute: DEFAULT_RATE_LIMIT_PER_MINUTE,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_upstream_calls: DEFAULT_MAX_UPSTREAM_CALLS,
            discovery_ttl: DEFAULT_DISCOVERY_TTL,
            max_body_bytes: usage_core::http::DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Checks the values serde cannot, reporting every problem by key.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !matches!(self.base_url.scheme(), "http" | "https") {
            problems.push(format!(
                "base_url: scheme `{}` is not http or https",
                self.base_url.scheme()
            ));
        }
        if self.base_url.cannot_be_a_base() || self.base_url.host().is_none() {
            problems.push("base_url: needs a host, e.g. https://api.digitalocean.com".to_owned());
        }
        if self.base_url.query().is_some() || self.base_url.fragment().is_some() {
            problems.push("base_url: must not carry a query or fragment".to_owned());
        }
        if secrecy::ExposeSecret::expose_secret(&self.token)
            .trim()
            .is_empty()
        {
            problems.push("token: is empty".to_owned());
        }
        if let Some(agents) = &self.agents {
            if agents.is_empty() {
                problems.push(
                    "agents: is an empty list; remove the key to discover agents instead"
                        .to_owned(),
                );
            }
            if agents.iter().any(|a| a.trim().is_empty()) {
                problems.push("agents: holds an empty uuid".to_owned());
            }
            if self.only_deployed {
                problems.push(
                    "only_deployed: applies to discovery only and has no effect with a fixed `agents` list"
                        .to_owned(),
                );
            }
        }
        if self.rate_limit_per_minute == 0 {
            problems.push("rate_limit_per_minute: must be at least 1".to_owned());
        }
        if self.max_concurrency == 0 {
            problems.push("max_concurrency: must be at least 1".to_owned());
        }
        if self.max_upstream_calls == 0 {
            problems.push("max_upstream_calls: must be at least 1".to_owned());
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
            .field("token", &"[REDACTED]")
            .field("agents", &self.agents)
            .field("only_deployed", &self.only_deployed)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_upstream_calls", &self.max_upstream_calls)
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

fn default_rate_limit() -> u32 {
    DEFAULT_RATE_LIMIT_PER_MINUTE
}

fn default_max_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENCY
}

fn default_max_upstream_calls() -> u32 {
    DEFAULT_MAX_UPSTREAM_CALLS
}

fn default_max_body_bytes() -> usize {
    usage_core::http::DEFAULT_MAX_BODY_BYTES
}

fn default_discovery_ttl() -> Duration {
    DEFAULT_DISCOVERY_TTL
}

/// The common settings this provider uses, with its defaults (see the gateway's registry).
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
        let c = parse(r#"token = "dop_v1_secret""#).unwrap();
        assert_eq!(c.base_url.as_str(), "https://api.digitalocean.com/");
        assert_eq!(c.agents, None);
        assert!(!c.only_deployed);
        assert_eq!(c.rate_limit_per_minute, 250);
        assert_eq!(c.max_concurrency, 8);
        assert_eq!(c.max_upstream_calls, 250);
        assert_eq!(c.discovery_ttl, Duration::from_secs(300));
        c.validate().unwrap();
    }

    #[test]
    fn every_key_parses() {
        let c = parse(
            r#"
            base_url = "http://127.0.0.1:9000/do"
            token = "t"
            agents = ["a", "b"]
            max_upstream_calls = 10
            "#,
        )
        .unwrap()
        // The common keys are read by the gateway, which hands them over.
        .with_settings(&SourceSettings {
            rate_limit_per_minute: std::num::NonZeroU32::new(60),
            max_concurrency: 2,
            max_body_bytes: 1000,
            discovery_ttl: Some(Duration::from_secs(90)),
            open_ttl: None,
            closed_ttl: None,
            settle: None,
        });
        assert_eq!(
            c.agents.as_deref(),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
        assert_eq!(c.discovery_ttl, Duration::from_secs(90));
        assert_eq!((c.rate_limit_per_minute, c.max_concurrency), (60, 2));
        assert_eq!(c.max_upstream_calls, 10);
        c.validate().unwrap();
        // They are not the provider's own keys.
        assert!(parse("token = \"t\"\nmax_concurrency = 2").is_err());
    }

    #[test]
    fn unknown_keys_and_missing_token_fail() {
        let e = parse("token = \"t\"\nrate_limit = 3").unwrap_err();
        assert!(e.to_string().contains("rate_limit"), "{e}");
        assert!(parse("base_url = \"https://x\"").is_err());
        assert!(parse("token = \"t\"\nbase_url = \"not a url\"").is_err());
    }

    #[test]
    fn validation_names_each_key() {
        let mut c = parse(r#"token = " ""#).unwrap();
        c.agents = Some(vec![]);
        c.only_deployed = true;
        c.rate_limit_per_minute = 0;
        c.max_concurrency = 0;
        c.max_upstream_calls = 0;
        c.base_url = Url::parse("ftp://x/").unwrap();
        let e = c.validate().unwrap_err();
        for key in [
            "base_url",
            "token",
            "agents",
            "only_deployed",
            "rate_limit_per_minute",
            "max_concurrency",
            "max_upstream_calls",
        ] {
            assert!(e.contains(key), "{key} missing from {e}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let c = parse(r#"token = "dop_v1_supersecret""#).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("supersecret"), "{dbg}");
        assert!(dbg.contains("REDACTED"));
    }
}
