//! The source's configuration: the keys of its `[[sources]]` table other than the common ones.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;
use usage_core::plugin::{SettingDefaults, SourceSettings, WithSettings};

use crate::mapping::{ENDPOINTS, Endpoint};

/// OpenAI's API root (paths `/v1/organization/...` are appended).
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";
/// OpenAI publishes no rate limit for the usage and projects endpoints; one request a second
/// on average is a cautious budget.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 60;
/// Requests in flight at once for the source.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// Usage requests one query may need (request ranges × endpoints); equal to the default
/// per-minute budget, so that a query never waits for the budget to refill.
pub const DEFAULT_MAX_UPSTREAM_CALLS: u32 = 60;
/// How long a listed set of projects is reused.
pub const DEFAULT_DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// Configures one OpenAI organization source.
///
/// ```toml
/// base_url = "https://api.openai.com"   # default
/// admin_key = "${OPENAI_ADMIN_KEY}"      # an admin key (sk-admin-…)
/// organization = "org-…"                 # optional: sent as OpenAI-Organization
/// agents = ["proj_abc"]                  # optional: only these projects, no listing
/// endpoints = ["completions", "embeddings"]  # default: every metered endpoint
/// max_upstream_calls = 60                # per query: request ranges × endpoints
/// rate_limit_per_minute = 60   # a common setting, read by the gateway
/// max_concurrency = 4          # a common setting, read by the gateway
/// discovery_ttl = "5m"         # a common setting, read by the gateway
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API root; tests point it at a simulator.
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    /// The admin key (`Authorization: Bearer`).
    pub admin_key: SecretString,
    /// The organization id, sent as `OpenAI-Organization` when set.
    #[serde(default)]
    pub organization: Option<String>,
    /// A fixed list of project ids: usage is read for these only, and no project listing is
    /// made; when absent, projects are listed through `GET /v1/organization/projects`.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    /// The usage endpoints to read (names as in the path); default every metered one.
    /// `vector_stores` is refused: its `usage_bytes` is a storage level, not usage.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// The most usage requests one query may need; larger queries are refused. Capped by
    /// `rate_limit_per_minute`.
    #[serde(default = "default_max_upstream_calls")]
    pub max_upstream_calls: u32,
    /// The local outbound budget, shared by every query of the source.
    #[serde(skip, default = "default_rate_limit")]
    pub rate_limit_per_minute: u32,
    /// The most requests in flight at once for the source.
    #[serde(skip, default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// How long listed projects are reused before listing them again.
    #[serde(skip, default = "default_discovery_ttl")]
    pub discovery_ttl: Duration,
    /// The largest response body accepted, in bytes (default 32 MiB).
    #[serde(skip, default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Config {
    /// Creates a configuration with the given admin key and every default.
    pub fn new(admin_key: SecretString) -> Self {
        Self {
            base_url: default_base_url(),
            admin_key,
            organization: None,
            agents: None,
            endpoints: None,
            max_upstream_calls: DEFAULT_MAX_UPSTREAM_CALLS,
            rate_limit_per_minute: DEFAULT_RATE_LIMIT_PER_MINUTE,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            discovery_ttl: DEFAULT_DISCOVERY_TTL,
            max_body_bytes: usage_core::http::DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// The endpoints to read, in table order, or every problem with the `endpoints` key.
    pub(crate) fn endpoint_list(&self) -> Result<Vec<Endpoint>, Vec<String>> {
        let Some(names) = &self.endpoints else {
            return Ok(ENDPOINTS.iter().map(|s| s.endpoint).collect());
        };
        let mut problems = Vec::new();
        if names.is_empty() {
            problems.push(
                "endpoints: is an empty list; remove the key to read every endpoint".to_owned(),
            );
        }
        let mut out = Vec::new();
        for name in names {
            match Endpoint::parse(name.trim()) {
                Some(e) => out.push(e),
                None if name.trim() == "vector_stores" => problems.push(
                    "endpoints: `vector_stores` cannot be read as usage: its `usage_bytes` is the \
                     storage level at each bucket, not usage over it, so adding buckets up would \
                     be wrong"
                        .to_owned(),
                ),
                None => problems.push(format!(
                    "endpoints: unknown endpoint `{name}`; valid ones are {}",
                    ENDPOINTS.map(|s| s.path).join(", ")
                )),
            }
        }
        out.sort_unstable();
        out.dedup();
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    /// Checks the values serde cannot, reporting every problem by key.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut problems = usage_core::plugin::base_url_problems(&self.base_url, DEFAULT_BASE_URL);
        if self.admin_key.expose_secret().trim().is_empty() {
            problems.push("admin_key: is empty".to_owned());
        }
        if self
            .organization
            .as_deref()
            .is_some_and(|o| o.trim().is_empty())
        {
            problems.push("organization: is empty; remove the key instead".to_owned());
        }
        if let Some(agents) = &self.agents {
            if agents.is_empty() {
                problems.push(
                    "agents: is an empty list; remove the key to list projects instead".to_owned(),
                );
            }
            if agents.iter().any(|a| a.trim().is_empty()) {
                problems.push("agents: holds an empty project id".to_owned());
            }
        }
        if let Err(e) = self.endpoint_list() {
            problems.extend(e);
        }
        for (key, zero) in [
            ("rate_limit_per_minute", self.rate_limit_per_minute == 0),
            ("max_concurrency", self.max_concurrency == 0),
            ("max_upstream_calls", self.max_upstream_calls == 0),
        ] {
            if zero {
                problems.push(format!("{key}: must be at least 1"));
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
            .field("organization", &self.organization)
            .field("agents", &self.agents)
            .field("endpoints", &self.endpoints)
            .field("max_upstream_calls", &self.max_upstream_calls)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("max_concurrency", &self.max_concurrency)
            .field("discovery_ttl", &self.discovery_ttl)
            .finish_non_exhaustive()
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
        let c = parse(r#"admin_key = "sk-admin-secret""#).unwrap();
        assert_eq!(c.base_url.as_str(), "https://api.openai.com/");
        assert_eq!((c.rate_limit_per_minute, c.max_concurrency), (60, 4));
        assert_eq!(c.max_upstream_calls, 60);
        assert_eq!(c.discovery_ttl, Duration::from_secs(300));
        assert_eq!(c.endpoint_list().unwrap().len(), 9);
        c.validate().unwrap();
    }

    #[test]
    fn every_key_parses() {
        let c = parse(
            r#"
            base_url = "http://127.0.0.1:9000/openai"
            admin_key = "k"
            organization = "org-1"
            agents = ["proj_a"]
            endpoints = ["embeddings", "completions", "completions"]
            max_upstream_calls = 10
            "#,
        )
        .unwrap()
        .with_settings(&SourceSettings {
            rate_limit_per_minute: std::num::NonZeroU32::new(600),
            max_concurrency: 2,
            max_body_bytes: 1000,
            discovery_ttl: Some(Duration::from_secs(9)),
            open_ttl: None,
            closed_ttl: None,
            settle: None,
        });
        c.validate().unwrap();
        assert_eq!(
            c.endpoint_list().unwrap(),
            vec![Endpoint::Completions, Endpoint::Embeddings]
        );
        assert_eq!((c.rate_limit_per_minute, c.max_concurrency), (600, 2));
        assert!(parse("admin_key = \"k\"\nmax_concurrency = 2").is_err());
        assert!(parse("admin_key = \"k\"\ntoken = \"t\"").is_err());
        assert!(
            parse("base_url = \"https://x\"").is_err(),
            "admin_key is required"
        );
    }

    #[test]
    fn validation_names_each_key_and_explains_vector_stores() {
        let mut c = parse(r#"admin_key = " ""#).unwrap();
        c.agents = Some(vec![]);
        c.organization = Some(String::new());
        c.endpoints = Some(vec!["vector_stores".into(), "chat".into()]);
        c.max_upstream_calls = 0;
        c.base_url = Url::parse("ftp://x/").unwrap();
        let e = c.validate().unwrap_err();
        for key in [
            "base_url",
            "admin_key",
            "organization",
            "agents",
            "max_upstream_calls",
        ] {
            assert!(e.contains(key), "{key} missing from {e}");
        }
        assert!(e.contains("storage level"), "{e}");
        assert!(
            e.contains("unknown endpoint `chat`; valid ones are completions, embeddings"),
            "{e}"
        );
        c.endpoints = Some(vec![]);
        assert!(c.validate().unwrap_err().contains("empty list"));
    }

    #[test]
    fn debug_hides_the_key() {
        let c = parse(r#"admin_key = "sk-admin-supersecret""#).unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("supersecret") && dbg.contains("REDACTED"),
            "{dbg}"
        );
    }
}
