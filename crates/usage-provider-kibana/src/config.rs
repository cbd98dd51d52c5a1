//! The `[[sources]]` table of a Kibana source, and its validation.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;
use usage_core::plugin::{SettingDefaults, SourceSettings, WithSettings};

/// The largest page Kibana accepts (`size` max 100).
pub const MAX_PAGE_SIZE: u32 = 100;

/// Vendor requests in flight at once for the source (and agents scanned at once by one call).
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// How long the provider's cache trusts open data by default.
pub const DEFAULT_OPEN_TTL: Duration = Duration::from_secs(60);
/// How long it trusts closed data by default.
pub const DEFAULT_CLOSED_TTL: Duration = Duration::from_secs(3600);
/// How long data stays open by default.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(600);

/// The longest `closed_ttl` accepted.
const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);

/// Settings of one Kibana Agent Builder source.
///
/// Exactly one auth mode must be set: `api_key`, or `username` together with `password`.
/// [`KibanaProvider::new`](crate::KibanaProvider::new) checks the combination.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Kibana base URL, including any `server.basePath` (e.g. `https://kb.example:5601`).
    pub base_url: Url,
    /// The Kibana space; `None` or `"default"` means the default space (no `/s/{space}` prefix).
    #[serde(default)]
    pub space: Option<String>,
    /// An API key, sent as `Authorization: ApiKey <value>` (the base64 `id:api_key` form).
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// The user for Basic auth (needs `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// The password for Basic auth (needs `username`).
    #[serde(default)]
    pub password: Option<SecretString>,
    /// A fixed list of agent ids; when absent, agents are discovered with
    /// `GET /api/agent_builder/agents` in the space.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    /// Conversations per consumption page (1..=100).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How long a scan answers for open data (conversations updated within `settle`).
    #[serde(skip, default = "default_open_ttl")]
    pub open_ttl: Duration,
    /// How long a scan answers for settled data.
    #[serde(skip, default = "default_closed_ttl")]
    pub closed_ttl: Duration,
    /// How long after its last update a conversation still counts as open (it may grow again).
    #[serde(skip, default = "default_settle")]
    pub settle: Duration,
    /// The local outbound budget in vendor requests per minute, shared by every query of the
    /// source; `None` (the default) sets no rate limit, as Kibana documents none.
    #[serde(skip)]
    pub rate_limit_per_minute: Option<u32>,
    /// The most vendor requests in flight at once for the source.
    #[serde(skip, default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// The largest response body accepted, in bytes (default 32 MiB).
    #[serde(skip, default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

fn default_max_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENCY
}

fn default_max_body_bytes() -> usize {
    usage_core::http::DEFAULT_MAX_BODY_BYTES
}

fn default_page_size() -> u32 {
    MAX_PAGE_SIZE
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

impl Config {
    /// Creates a config for `base_url` with API-key auth and every other key at its default.
    pub fn with_api_key(base_url: Url, api_key: impl Into<String>) -> Self {
        Self {
            base_url,
            space: None,
            api_key: Some(SecretString::from(api_key.into())),
            username: None,
            password: None,
            agents: None,
            page_size: default_page_size(),
            open_ttl: default_open_ttl(),
            closed_ttl: default_closed_ttl(),
            settle: default_settle(),
            rate_limit_per_minute: None,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_body_bytes: default_max_body_bytes(),
        }
    }

    /// Creates a config for `base_url` with Basic auth and every other key at its default.
    pub fn with_basic(
        base_url: Url,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            api_key: None,
            username: Some(username.into()),
            password: Some(SecretString::from(password.into())),
            ..Self::with_api_key(base_url, String::new())
        }
    }

    /// Returns the space id to put in the path, or `None` for the default space.
    pub(crate) fn space_prefix(&self) -> Option<&str> {
        self.space.as_deref().filter(|s| *s != "default")
    }

    /// Checks everything serde cannot: the auth combination, the URL, the space id, the page
    /// size and the agent ids. Returns one message per mistake, prefixed by its key.
    pub(crate) fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if !matches!(self.base_url.scheme(), "http" | "https") || self.base_url.cannot_be_a_base() {
            errors.push(format!(
                "base_url: `{}` is not an http(s) base URL",
                self.base_url.scheme()
            ));
        }
        if !self.base_url.username().is_empty() || self.base_url.password().is_some() {
            errors.push(
                "base_url: must not carry credentials; use `api_key` or `username`/`password`"
                    .to_owned(),
            );
        }
        if let Some(space) = &self.space
            && (space.is_empty()
                || !space
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'))
        {
            errors.push(format!(
                "space: `{space}` is not a Kibana space id (lowercase letters, digits, `_` and `-`)"
            ));
        }
        match (&self.api_key, &self.username, &self.password) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            (None, None, None) => {
                errors.push("auth: set either `api_key`, or `username` and `password`".to_owned());
            }
            (Some(_), _, _) => errors
                .push("auth: set either `api_key` or `username`/`password`, not both".to_owned()),
            (None, Some(_), None) => {
                errors.push("password: `username` is set but `password` is missing".to_owned());
            }
            (None, None, Some(_)) => {
                errors.push("username: `password` is set but `username` is missing".to_owned());
            }
        }
        if self
            .username
            .as_deref()
            .is_some_and(|u| u.is_empty() || u.contains(':'))
        {
            errors.push("username: must be non-empty and must not contain `:`".to_owned());
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            errors.push(format!(
                "page_size: {} is outside 1..={MAX_PAGE_SIZE}",
                self.page_size
            ));
        }
        if let Some(agents) = &self.agents
            && agents.iter().any(String::is_empty)
        {
            errors.push("agents: agent ids must be non-empty".to_owned());
        }
        if let Some(key) = &self.api_key {
            let key = key.expose_secret();
            if key.is_empty() || key.chars().any(|c| c.is_ascii_control() || !c.is_ascii()) {
                errors.push("api_key: must be non-empty printable ASCII".to_owned());
            }
        }
        if self.rate_limit_per_minute == Some(0) {
            errors.push(
                "rate_limit_per_minute: must be at least 1 (leave it out for no limit)".to_owned(),
            );
        }
        if self.max_concurrency == 0 {
            errors.push("max_concurrency: must be at least 1".to_owned());
        }
        if self.closed_ttl > MAX_TTL {
            errors.push(format!(
                "closed_ttl: {} is longer than {}",
                humantime::format_duration(self.closed_ttl),
                humantime::format_duration(MAX_TTL)
            ));
        }
        if self.open_ttl > self.closed_ttl {
            errors.push(format!(
                "open_ttl: {} is longer than closed_ttl ({})",
                humantime::format_duration(self.open_ttl),
                humantime::format_duration(self.closed_ttl)
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<SecretString>| s.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("Config")
            .field("base_url", &self.base_url.as_str())
            .field("space", &self.space)
            .field("api_key", &redact(&self.api_key))
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("agents", &self.agents)
            .field("page_size", &self.page_size)
            .field("open_ttl", &self.open_ttl)
            .field("closed_ttl", &self.closed_ttl)
            .field("settle", &self.settle)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// The common settings this provider uses, with its defaults (see the gateway's registry).
pub(crate) const SETTINGS: SettingDefaults = SettingDefaults {
    rate_limit_per_minute: Some(None),
    max_concurrency: DEFAULT_MAX_CONCURRENCY,
    discovery_ttl: None,
    open_ttl: Some(DEFAULT_OPEN_TTL),
    closed_ttl: Some(DEFAULT_CLOSED_TTL),
    settle: Some(DEFAULT_SETTLE),
};

impl WithSettings for Config {
    fn with_settings(mut self, s: &SourceSettings) -> Self {
        self.rate_limit_per_minute = s.rate_limit();
        self.max_concurrency = s.max_concurrency;
        self.max_body_bytes = s.max_body_bytes;
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
    fn defaults_and_durations() {
        let c = parse(
            r#"base_url = "http://127.0.0.1:5601"
               api_key = "k""#,
        )
        .unwrap();
        assert_eq!(c.page_size, 100);
        assert_eq!(c.open_ttl, Duration::from_secs(60));
        assert_eq!(c.closed_ttl, Duration::from_secs(3600));
        assert_eq!(c.settle, Duration::from_secs(600));
        assert_eq!(c.rate_limit_per_minute, None);
        assert_eq!(c.max_concurrency, 4);
        assert!(c.validate().is_ok());
        let c = parse(
            r#"base_url = "http://127.0.0.1:5601/kibana"
               space = "marketing"
               username = "elastic"
               password = "pw"
               agents = ["a", "b"]
               page_size = 50"#,
        )
        .unwrap()
        // The common keys are read by the gateway, which hands them over.
        .with_settings(&SourceSettings {
            rate_limit_per_minute: std::num::NonZeroU32::new(120),
            max_concurrency: 2,
            max_body_bytes: 1000,
            discovery_ttl: None,
            open_ttl: Some(Duration::from_secs(30)),
            closed_ttl: Some(Duration::from_secs(7200)),
            settle: Some(Duration::from_secs(300)),
        });
        assert_eq!(c.rate_limit_per_minute, Some(120));
        assert_eq!(c.max_concurrency, 2);
        assert_eq!(c.space_prefix(), Some("marketing"));
        assert_eq!(c.closed_ttl, Duration::from_secs(7200));
        assert_eq!(c.settle, Duration::from_secs(300));
        assert!(c.validate().is_ok());
        // They are not the provider's own keys.
        assert!(parse("base_url = \"http://x\"\napi_key = \"k\"\nsettle = \"5m\"").is_err());
    }

    #[test]
    fn default_space_has_no_prefix() {
        let mut c = Config::with_api_key("http://x".parse().unwrap(), "k");
        assert_eq!(c.space_prefix(), None);
        c.space = Some("default".into());
        assert_eq!(c.space_prefix(), None);
    }

    #[test]
    fn unknown_keys_and_bad_urls_fail_to_parse() {
        let e = parse(
            r#"base_url = "http://x"
               api_key = "k"
               apikey = "typo""#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("apikey"), "{e}");
        assert!(parse(r#"base_url = "not a url""#).is_err());
        assert!(parse(r#"api_key = "k""#).is_err(), "base_url is required");
        assert!(parse("base_url = \"http://x\"\napi_key = \"k\"\nopen_ttl = \"soon\"").is_err());
    }

    #[test]
    fn exactly_one_auth_mode() {
        let base = || -> Url { "http://x".parse().unwrap() };
        let both = Config {
            username: Some("u".into()),
            password: Some(SecretString::from("p")),
            ..Config::with_api_key(base(), "k")
        };
        assert!(both.validate().unwrap_err()[0].contains("not both"));
        let none = Config {
            api_key: None,
            ..Config::with_api_key(base(), "k")
        };
        assert!(none.validate().unwrap_err()[0].contains("either"));
        let no_budget = Config {
            rate_limit_per_minute: Some(0),
            max_concurrency: 0,
            ..Config::with_api_key(base(), "k")
        };
        let errors = no_budget.validate().unwrap_err();
        assert!(errors[0].starts_with("rate_limit_per_minute"), "{errors:?}");
        assert!(errors[1].starts_with("max_concurrency"), "{errors:?}");
        let no_pw = Config {
            password: None,
            ..Config::with_basic(base(), "u", "p")
        };
        assert!(no_pw.validate().unwrap_err()[0].starts_with("password"));
        let no_user = Config {
            username: None,
            ..Config::with_basic(base(), "u", "p")
        };
        assert!(no_user.validate().unwrap_err()[0].starts_with("username"));
        assert!(Config::with_basic(base(), "u", "p").validate().is_ok());
    }

    #[test]
    fn other_mistakes_are_each_reported() {
        let c = Config {
            space: Some("Bad Space".into()),
            page_size: 500,
            agents: Some(vec![String::new()]),
            ..Config::with_api_key("ftp://x".parse().unwrap(), "k")
        };
        let errors = c.validate().unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        let c = Config {
            page_size: 0,
            ..Config::with_api_key("http://x".parse().unwrap(), "k")
        };
        assert!(c.validate().is_err());
        let c = Config::with_api_key("http://x".parse().unwrap(), "line\nbreak");
        assert!(c.validate().unwrap_err()[0].starts_with("api_key"));
        assert!(
            !c.validate().unwrap_err()[0].contains("break"),
            "the key is never quoted"
        );
        let c = Config {
            closed_ttl: Duration::from_secs(365 * 86_400),
            ..Config::with_api_key("http://x".parse().unwrap(), "k")
        };
        assert!(c.validate().unwrap_err()[0].starts_with("closed_ttl"));
        let c = Config {
            open_ttl: Duration::from_secs(7200),
            ..Config::with_api_key("http://x".parse().unwrap(), "k")
        };
        assert!(c.validate().unwrap_err()[0].starts_with("open_ttl"));
        let c = Config::with_api_key("http://user:pw@x".parse().unwrap(), "k");
        assert!(c.validate().unwrap_err()[0].contains("credentials"));
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Config::with_basic("http://x".parse().unwrap(), "elastic", "hunter2-secret");
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2-secret"), "{d}");
        assert!(d.contains("[REDACTED]"));
        let c = Config::with_api_key("http://x".parse().unwrap(), "my-api-key-value");
        assert!(!format!("{c:?}").contains("my-api-key-value"));
    }
}
