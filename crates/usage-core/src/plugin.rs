//! The plugin seam (feature `http`): what a provider crate exports so that the gateway can
//! build its sources from configuration, list it in its OpenAPI document and accept its name in
//! queries. A new vendor is one crate exporting one [`ProviderDescriptor`], and one line in the
//! gateway's registry.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::ProviderError;
use crate::model::ProviderKind;
use crate::provider::DynUsageProvider;

/// What the gateway hands a provider's builder for one `[[sources]]` table.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The configured source name.
    pub name: String,
    /// The HTTP client the source's requests go through (its timeouts, no redirects, the
    /// egress proxy variables honoured).
    pub http: reqwest::Client,
    /// The source's common settings, parsed and checked by the gateway, the provider's
    /// defaults filled in.
    pub settings: SourceSettings,
}

/// The settings every source table may have, whatever its provider, read once by the gateway
/// (`rate_limit_per_minute`, `max_concurrency`, `max_body_bytes`, `discovery_ttl` and the cache
/// vocabulary `open_ttl`, `closed_ttl`, `settle`). A setting the provider does not use is `None`
/// (and a table that sets it is a configuration error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceSettings {
    /// The local outbound budget: vendor requests per minute (`None`: no local limit).
    pub rate_limit_per_minute: Option<std::num::NonZeroU32>,
    /// Vendor requests in flight at once.
    pub max_concurrency: usize,
    /// The largest vendor response body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a discovered agent list is reused.
    pub discovery_ttl: Option<Duration>,
    /// How long the provider's own cache trusts data of windows that are still open.
    pub open_ttl: Option<Duration>,
    /// How long it trusts data of closed windows.
    pub closed_ttl: Option<Duration>,
    /// How long after its end a window is still open (late data may arrive).
    pub settle: Option<Duration>,
}

impl SourceSettings {
    /// `rate_limit_per_minute` as a plain count (`None`: no local limit).
    pub fn rate_limit(&self) -> Option<u32> {
        self.rate_limit_per_minute.map(std::num::NonZeroU32::get)
    }

    /// Overwrites each of a provider cache's three durations that this source sets.
    pub fn cache_into(
        &self,
        open_ttl: &mut Duration,
        closed_ttl: &mut Duration,
        settle: &mut Duration,
    ) {
        for (set, into) in [
            (self.open_ttl, open_ttl),
            (self.closed_ttl, closed_ttl),
            (self.settle, settle),
        ] {
            if let Some(d) = set {
                *into = d;
            }
        }
    }
}

/// Which common settings a provider uses, and its defaults for them: a provider's descriptor
/// gives one; `None` marks a setting the provider has no use for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingDefaults {
    /// Whether `rate_limit_per_minute` is used, and its default (`Some(None)`: used, no local
    /// limit unless configured).
    pub rate_limit_per_minute: Option<Option<u32>>,
    /// `max_concurrency`.
    pub max_concurrency: usize,
    /// `discovery_ttl`, when the provider discovers agents.
    pub discovery_ttl: Option<Duration>,
    /// `open_ttl`, when the provider keeps a cache of its own.
    pub open_ttl: Option<Duration>,
    /// `closed_ttl`, likewise.
    pub closed_ttl: Option<Duration>,
    /// `settle`, likewise.
    pub settle: Option<Duration>,
}

/// One mistake in a source's configuration: the key (relative to the source's table, e.g.
/// `token` or `agents[2]`; empty for the table as a whole) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key path inside the source table.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigProblem {
    /// A problem of the whole table (e.g. a provider's cross-key check).
    pub fn table(message: impl Into<String>) -> Self {
        Self {
            key: String::new(),
            message: message.into(),
        }
    }
}

impl From<ProviderError> for ConfigProblem {
    fn from(e: ProviderError) -> Self {
        Self::table(e.to_string())
    }
}

/// Checks a provider's `base_url` as every provider does: http(s), a host, no query or
/// fragment. Returns one `base_url: …` problem per mistake (`example` shows a good value).
pub fn base_url_problems(url: &reqwest::Url, example: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !matches!(url.scheme(), "http" | "https") {
        problems.push(format!(
            "base_url: scheme `{}` is not http or https",
            url.scheme()
        ));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        problems.push(format!("base_url: needs a host, e.g. {example}"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        problems.push("base_url: must not carry a query or fragment".to_owned());
    }
    problems
}

/// Builds a provider from its context and the source table's own keys (the gateway's common
/// keys, such as `name` and `timeout`, already taken out).
pub type BuildFn = fn(BuildContext, toml::Table) -> Result<DynUsageProvider, Vec<ConfigProblem>>;

/// How billing data (the FOCUS export) names a provider's vendor and service; ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Billing {
    /// The vendor that makes the service available and bills it (`OpenAI`).
    pub provider_name: &'static str,
    /// The service billed (`OpenAI API`).
    pub service_name: &'static str,
}

/// A provider crate's entry in the gateway's registry.
#[derive(Clone, Copy)]
pub struct ProviderDescriptor {
    /// The provider's name, as `[[sources]] provider = "..."`, the `provider` filter and
    /// `sources[].provider` spell it.
    pub kind: ProviderKind,
    /// One line on what it reads (shown in `GET /v1/sources` and the OpenAPI document).
    pub description: &'static str,
    /// How billing data names the vendor and its service (FOCUS `ProviderName`, `ServiceName`).
    pub billing: Billing,
    /// The common settings it uses, with its defaults.
    pub defaults: SettingDefaults,
    /// Builds a source of this provider.
    pub build: BuildFn,
}

impl fmt::Debug for ProviderDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderDescriptor")
            .field("kind", &self.kind)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// Reads a provider's own keys from its source table into `T`, naming the key path of the first
/// mistake (as `check-config` reports it).
pub fn parse_keys<T: DeserializeOwned>(table: toml::Table) -> Result<T, Vec<ConfigProblem>> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        vec![ConfigProblem {
            key: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }]
    })
}

/// A provider configuration that takes the common settings the gateway read.
pub trait WithSettings: DeserializeOwned {
    /// Sets the common settings (the provider's own keys were read already).
    #[must_use]
    fn with_settings(self, settings: &SourceSettings) -> Self;
}

/// Builds a provider the usual way: its own keys parsed into `C`, the common settings applied,
/// then `new(name, config, http)`.
pub fn build_with<C: WithSettings, P: crate::UsageProvider>(
    ctx: BuildContext,
    table: toml::Table,
    new: impl FnOnce(String, C, reqwest::Client) -> Result<P, ProviderError>,
) -> Result<DynUsageProvider, Vec<ConfigProblem>> {
    let config = parse_keys::<C>(table)?.with_settings(&ctx.settings);
    let provider = new(ctx.name, config, ctx.http).map_err(|e| vec![e.into()])?;
    Ok(std::sync::Arc::new(provider))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Keys {
        token: String,
        #[serde(default)]
        agents: Vec<String>,
    }

    #[test]
    fn key_paths_of_mistakes() {
        let table = |text: &str| text.parse::<toml::Table>().unwrap();
        let e = parse_keys::<Keys>(table("token = \"t\"\nagents = [\"a\", 3]")).unwrap_err();
        assert_eq!(e[0].key, "agents[1]");
        let e = parse_keys::<Keys>(table("token = \"t\"\ntokn = 1")).unwrap_err();
        assert!(e[0].message.contains("unknown field `tokn`"), "{e:?}");
        let e = parse_keys::<Keys>(table("")).unwrap_err();
        assert_eq!(e[0].key, "");
        assert!(e[0].message.contains("missing field `token`"), "{e:?}");
        assert!(parse_keys::<Keys>(table("token = \"t\"")).is_ok());
    }

    #[test]
    fn base_url_checks() {
        let p = |s: &str| base_url_problems(&reqwest::Url::parse(s).unwrap(), "https://x");
        assert!(p("https://api.example.com").is_empty());
        assert!(p("http://127.0.0.1:9/prefix/").is_empty());
        assert_eq!(p("ftp://x/").len(), 1);
        assert_eq!(p("mailto:a@b").len(), 2);
        assert_eq!(p("https://x/?a=1").len(), 1);
    }

    #[test]
    fn provider_names() {
        for ok in ["kibana", "open-ai", "x_2", "a"] {
            assert!(ProviderKind::is_valid(ok), "{ok}");
        }
        for bad in ["", "Kibana", "2x", "a b", "é", &"a".repeat(33)] {
            assert!(!ProviderKind::is_valid(bad), "{bad}");
        }
    }
}

/// A source's agent list: fixed by configuration, or discovered from the vendor and kept for a
/// TTL. Its lock also makes concurrent discoveries wait for one listing.
pub struct AgentList {
    fixed: Option<std::sync::Arc<Vec<crate::model::Agent>>>,
    ttl: Duration,
    discovered:
        tokio::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<Vec<crate::model::Agent>>)>>,
}

impl fmt::Debug for AgentList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentList")
            .field("fixed", &self.fixed.as_ref().map(|a| a.len()))
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// What one discovery found: the agents, whether to keep them for the TTL (a listing that
/// stopped short is not kept, so the next query lists again), and the provider's own report of
/// it (pages read, a note).
#[derive(Debug)]
pub struct Discovery<T> {
    /// The agents found.
    pub agents: Vec<crate::model::Agent>,
    /// Whether the list is kept for the TTL.
    pub keep: bool,
    /// The provider's report.
    pub report: T,
}

impl AgentList {
    /// A list fixed by configuration (`Some`, de-duplicated by id in its order), or discovered
    /// and kept for `ttl`.
    pub fn new(fixed: Option<Vec<crate::model::Agent>>, ttl: Duration) -> Self {
        let fixed = fixed.map(|agents| {
            let mut seen = std::collections::HashSet::new();
            std::sync::Arc::new(
                agents
                    .into_iter()
                    .filter(|a| seen.insert(a.id.clone()))
                    .collect(),
            )
        });
        Self {
            fixed,
            ttl,
            discovered: tokio::sync::Mutex::new(None),
        }
    }

    /// [`AgentList::new`] from configured agent ids (trimmed), without names.
    pub fn from_ids<S: AsRef<str>>(ids: Option<&[S]>, ttl: Duration) -> Self {
        let fixed = ids.map(|ids| {
            ids.iter()
                .map(|id| crate::model::Agent {
                    id: id.as_ref().trim().to_owned(),
                    name: None,
                    model: None,
                })
                .collect()
        });
        Self::new(fixed, ttl)
    }

    /// The configured list, if fixed.
    pub fn fixed(&self) -> Option<&std::sync::Arc<Vec<crate::model::Agent>>> {
        self.fixed.as_ref()
    }

    /// How long a discovered list is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The agents: the fixed list, the discovered one while younger than the TTL (unless
    /// `refresh`), or a new discovery by `discover`, whose report comes back with it (`None`
    /// when no discovery was made).
    pub async fn get<T, E, F, Fut>(
        &self,
        refresh: bool,
        discover: F,
    ) -> Result<(std::sync::Arc<Vec<crate::model::Agent>>, Option<T>), E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Discovery<T>, E>>,
    {
        if let Some(fixed) = &self.fixed {
            return Ok((std::sync::Arc::clone(fixed), None));
        }
        let mut cached = self.discovered.lock().await;
        if let Some((at, agents)) = cached.as_ref()
            && !refresh
            && at.elapsed() < self.ttl
        {
            return Ok((std::sync::Arc::clone(agents), None));
        }
        let found = discover().await?;
        let agents = std::sync::Arc::new(found.agents);
        if found.keep {
            *cached = Some((std::time::Instant::now(), std::sync::Arc::clone(&agents)));
        }
        Ok((agents, Some(found.report)))
    }

    /// Forgets the discovered list (e.g. when the vendor no longer knows an agent in it).
    pub async fn forget(&self) {
        *self.discovered.lock().await = None;
    }
}
