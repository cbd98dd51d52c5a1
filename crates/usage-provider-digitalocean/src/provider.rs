//! [`DigitaloceanProvider`]: agent discovery, call planning, fan-out, and the mapping from
//! DigitalOcean's usage aggregates to normalized points.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::{StreamExt, stream};
use usage_core::plugin::{AgentList, Discovery};
use usage_core::{
    Agent, Attribution, Counters, Dimension, PointKey, ProviderError, SourceInfo, Unit, UsageBatch,
    UsagePoint, UsageProvider, UsageQuery, Window,
};

use crate::client::{DoClient, rfc3339_seconds};
use crate::config::Config;
use crate::error::DoError;
use crate::model::{GetAgentUsageOutput, ResourceUsage};

/// The usage type name used when DigitalOcean sends a measurement without one (the default of
/// its `apiUsageType` enum).
pub const UNSPECIFIED_USAGE_TYPE: &str = "USAGE_TYPE_UNSPECIFIED";

/// The prefix that keeps Log Insights tokens apart from the agent's own (`log_insights:INPUT`).
pub const LOG_INSIGHTS_PREFIX: &str = "log_insights:";

/// The usage type name of every input-like type (`INPUT`, `input*`, `prompt*`).
pub const INPUT_USAGE_TYPE: &str = "INPUT";

/// The usage type name of every output-like type (`OUTPUT`, `output*`, `completion*`).
pub const OUTPUT_USAGE_TYPE: &str = "OUTPUT";

/// The vendor dimensions DigitalOcean fills: the model is the agent's, from the agent list
/// (a configured `agents` list has none: its usage has no model).
const DIMENSIONS: [Dimension; 3] = [Dimension::Agent, Dimension::UsageType, Dimension::Model];

/// Upper bound on agent list pages (200 agents each) followed in one discovery.
const MAX_DISCOVERY_PAGES: usize = 1000;

/// A DigitalOcean Gen-AI source: one API token, its agents, and one usage call per agent and
/// window.
pub struct DigitaloceanProvider {
    name: String,
    client: DoClient,
    /// The agents: fixed, or discovered and kept for `discovery_ttl` (a listing that stopped
    /// short is not kept).
    agents: AgentList,
    only_deployed: bool,
    /// The configured `max_upstream_calls`.
    max_calls_configured: u32,
    /// The per-query maximum in force: the configured one, capped by the per-minute budget.
    max_calls: u32,
    max_concurrency: usize,
}

/// An agent listing.
struct Listing<A> {
    agents: A,
    /// Upstream requests it took.
    calls: u64,
    /// Set when a page after the first could not be read: the note saying which, as shown to
    /// callers (the agents of that page and later ones are missing).
    broken: Option<String>,
}

/// Describes the agent list page `n` (1-based) at `at` that could not be read.
fn broken_page(n: usize, at: &str, e: &DoError) -> String {
    let why = match e {
        DoError::NotFound { .. } => "HTTP 404".to_owned(),
        DoError::Unauthenticated { .. } => "HTTP 401".to_owned(),
        DoError::Forbidden { .. } => "HTTP 403".to_owned(),
        DoError::BadRequest { status, .. } | DoError::Upstream { status, .. } => {
            format!("HTTP {status}")
        }
        DoError::Decode { message } => message.clone(),
        DoError::RateLimited { .. }
        | DoError::Transport { .. }
        | DoError::Timeout { .. }
        | DoError::InvalidQuery { .. }
        | DoError::SourceLimit { .. } => "the request failed".to_owned(),
    };
    format!(
        "the agent listing stopped at page {n} ({}): {why}; agents listed there or on later \
         pages are missing from this answer",
        usage_core::transport::truncate(at)
    )
}

impl fmt::Debug for DigitaloceanProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigitaloceanProvider")
            .field("name", &self.name)
            .field("client", &self.client)
            .field("agents", &self.agents)
            .field("only_deployed", &self.only_deployed)
            .field("max_calls", &self.max_calls)
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

impl DigitaloceanProvider {
    /// Creates the provider for source `name`, sending every request through `http`.
    pub fn new(
        name: impl Into<String>,
        config: Config,
        http: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let name = name.into();
        config.validate().map_err(|message| ProviderError::Config {
            source_name: name.clone(),
            message,
        })?;
        let per_minute = NonZeroU32::new(config.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            client: DoClient::new(
                &name,
                http,
                config.base_url,
                config.token,
                per_minute,
                config.max_concurrency,
                config.max_body_bytes,
            ),
            name,
            agents: AgentList::from_ids(config.agents.as_deref(), config.discovery_ttl),
            only_deployed: config.only_deployed,
            max_calls_configured: config.max_upstream_calls,
            max_calls: config.max_upstream_calls.min(per_minute.get()),
            max_concurrency: config.max_concurrency,
        })
    }

    fn err(&self, e: DoError) -> ProviderError {
        e.at(&self.name).into()
    }

    /// Returns the agents (fixed or discovered, cached for `discovery_ttl`; a `refresh` lists
    /// again), how many upstream requests getting them took, and why the listing stopped short
    /// when it did (see [`Listing::broken`]). A listing stopped short is not cached, so the next
    /// query lists again.
    async fn agent_list(&self, refresh: bool) -> Result<Listing<Arc<Vec<Agent>>>, DoError> {
        let (agents, listing) = self
            .agents
            .get(refresh, || async {
                let listing = self.discover().await?;
                Ok::<_, DoError>(Discovery {
                    keep: listing.broken.is_none(),
                    agents: listing.agents,
                    report: (listing.calls, listing.broken),
                })
            })
            .await?;
        let (calls, broken) = listing.unwrap_or((0, None));
        Ok(Listing {
            agents,
            calls,
            broken,
        })
    }

    /// Lists every agent, following `links.pages.next` only.
    ///
    /// A page after the first that cannot be had for good (its `next` link is not a URL or
    /// leaves `base_url`, or the page answers 404 or another non-transient error) ends the
    /// listing with the agents found so far and a note naming the page; with no agent found it
    /// is the source's error. Transient failures (transport, timeouts, 5xx, 429) fail the
    /// listing, so that the resilience layer retries the call.
    async fn discover(&self) -> Result<Listing<Vec<Agent>>, DoError> {
        let mut url = self.client.first_agents_page(self.only_deployed);
        let mut visited = HashSet::from([url.clone()]);
        let mut seen_ids = HashSet::new();
        let mut agents = Vec::new();
        let mut calls = 0_u64;
        loop {
            if visited.len() > MAX_DISCOVERY_PAGES {
                return Err(DoError::Decode {
                    message: format!("agent listing exceeds {MAX_DISCOVERY_PAGES} pages"),
                });
            }
            self.client.admit(1).await?;
            calls += 1;
            let page = match self.client.list_agents(url.clone()).await {
                Ok(page) => page,
                Err(e) if !agents.is_empty() && !self.err(e.clone()).is_transient() => {
                    return Ok(Listing {
                        broken: Some(broken_page(visited.len(), url.as_str(), &e)),
                        agents,
                        calls,
                    });
                }
                Err(e) => return Err(e),
            };
            for a in page.agents.into_iter().flatten().flatten() {
                let Some(id) = a
                    .uuid
                    .map(|u| u.trim().to_owned())
                    .filter(|u| !u.is_empty())
                else {
                    continue;
                };
                if seen_ids.insert(id.clone()) {
                    let model = a
                        .model
                        .as_ref()
                        .and_then(|m| m.get("name"))
                        .and_then(serde_json::Value::as_str)
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned);
                    agents.push(Agent {
                        id,
                        name: a.name.filter(|n| !n.trim().is_empty()),
                        model,
                    });
                }
            }
            let next = page
                .links
                .and_then(|l| l.pages)
                .and_then(|p| p.next)
                .filter(|n| !n.trim().is_empty());
            let Some(next) = next else {
                break;
            };
            let next = match self.client.next_page(&url, next.trim()) {
                Ok(next) => next,
                Err(e) if !agents.is_empty() => {
                    return Ok(Listing {
                        broken: Some(broken_page(visited.len() + 1, next.trim(), &e)),
                        agents,
                        calls,
                    });
                }
                Err(e) => return Err(e),
            };
            if !visited.insert(next.clone()) {
                return Err(DoError::Decode {
                    message: format!("links.pages.next loops back to {next}"),
                });
            }
            url = next;
        }
        Ok(Listing {
            agents,
            calls,
            broken: None,
        })
    }

    async fn forget_discovery(&self) {
        self.agents.forget().await;
    }

    async fn answer(&self, query: &UsageQuery) -> Result<UsageBatch, DoError> {
        if query.users.is_some() {
            return Err(DoError::InvalidQuery {
                message: "DigitalOcean has no users; a user filter cannot be applied".to_owned(),
            });
        }
        let mut notes = Vec::new();
        let plans: Vec<WindowPlan> = query.windows.iter().filter_map(WindowPlan::new).collect();
        if query.windows.iter().any(|w| !is_second_aligned(w)) {
            notes.push(
                "windows not aligned to whole seconds were cut at the second below (DigitalOcean \
                 ranges have second precision)"
                    .to_owned(),
            );
        }
        if plans.is_empty() {
            return Ok(UsageBatch {
                notes,
                ..UsageBatch::default()
            });
        }

        let Listing {
            agents,
            calls: discovery_calls,
            broken,
        } = self.agent_list(query.refresh).await?;
        let partial = broken.is_some();
        notes.extend(broken);
        // The model filter picks the agents running on those models.
        let agents: Vec<&Agent> = agents
            .iter()
            .filter(|a| query.wants_agent(&a.id) && query.wants_model(a.model.as_deref()))
            .collect();
        let needed = agents.len().saturating_mul(plans.len());
        if needed > self.max_calls as usize {
            return Err(DoError::SourceLimit {
                message: self.too_many_calls(needed, agents.len(), plans.len()),
                calls: usage_core::CallLimit {
                    needed: needed as u64,
                    max: u64::from(self.max_calls),
                    setting: if self.max_calls < self.max_calls_configured {
                        "rate_limit_per_minute"
                    } else {
                        "max_upstream_calls"
                    },
                    agents: agents.len() as u64,
                    windows: plans.len() as u64,
                    agents_by_windows: true,
                },
            });
        }
        let needed = u32::try_from(needed).unwrap_or(u32::MAX);
        self.client.admit(needed).await?;

        let keep: BTreeSet<Dimension> = query
            .dimensions
            .iter()
            .copied()
            .filter(|d| DIMENSIONS.contains(d))
            .collect();
        let gone: Mutex<HashSet<usize>> = Mutex::new(HashSet::new());
        let sent = AtomicU64::new(0);
        let mut calls: Vec<(usize, WindowPlan)> = Vec::with_capacity(needed as usize);
        for ai in 0..agents.len() {
            calls.extend(plans.iter().map(|p| (ai, *p)));
        }
        let mut results = stream::iter(calls)
            .map(|(ai, plan)| {
                let agent = agents[ai];
                let (gone, sent) = (&gone, &sent);
                async move {
                    if gone.lock().is_ok_and(|g| g.contains(&ai)) {
                        return Ok(None);
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    match self
                        .client
                        .agent_usage(&agent.id, plan.start, plan.stop)
                        .await
                    {
                        Ok(out) => Ok(Some((ai, plan, out))),
                        // DigitalOcean's own 404: the agent is gone (deleted since discovery, or a
                        // wrong uuid in `agents`); the rest of the answer stands.
                        Err(DoError::NotFound { vendor: true, .. }) => {
                            if let Ok(mut g) = gone.lock() {
                                g.insert(ai);
                            }
                            Ok(None)
                        }
                        Err(e) => Err(e),
                    }
                }
            })
            .buffer_unordered(self.max_concurrency);

        let mut points = Vec::new();
        let mut echo_mismatch: Option<(usize, String)> = None;
        while let Some(result) = results.next().await {
            let Some((ai, plan, out)) = result? else {
                continue;
            };
            let agent = agents[ai];
            if let Some(seen) = echoed_range_mismatch(&out, plan) {
                let first = echo_mismatch.get_or_insert_with(|| {
                    (
                        0,
                        format!(
                            "agent {} asked [{}, {}] got {seen}",
                            agent.id,
                            rfc3339_seconds(plan.start),
                            rfc3339_seconds(plan.stop)
                        ),
                    )
                });
                first.0 += 1;
            }
            points.extend(usage_to_points(&out, plan.window, agent, &keep));
        }
        drop(results);

        let gone = gone.into_inner().unwrap_or_default();
        if !gone.is_empty() {
            let mut gone: Vec<usize> = gone.into_iter().collect();
            gone.sort_unstable();
            for ai in gone {
                let a = agents[ai];
                let named = a
                    .name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                notes.push(format!(
                    "agent {}{named} is unknown to DigitalOcean (404); its usage is missing from this answer",
                    a.id
                ));
            }
            self.forget_discovery().await;
        }
        if let Some((count, first)) = echo_mismatch {
            notes.push(format!(
                "DigitalOcean echoed a different time range than asked in {count} call(s), e.g. {first}"
            ));
        }
        Ok(UsageBatch {
            points,
            upstream_requests: discovery_calls + sent.into_inner(),
            warnings: None,
            notes,
            partial,
            bucket_width: None,
        }
        .compact())
    }

    fn too_many_calls(&self, needed: usize, agents: usize, windows: usize) -> String {
        let cap = if self.max_calls < self.max_calls_configured {
            format!(
                " (max_upstream_calls {} capped by rate_limit_per_minute)",
                self.max_calls_configured
            )
        } else {
            String::new()
        };
        format!(
            "this query needs {needed} DigitalOcean usage calls ({agents} agent(s) × {windows} \
             uncached window(s)), above this source's maximum of {}{cap} per query; use a coarser \
             bucket (e.g. day instead of hour, or month instead of day), a shorter range, or an \
             agent filter",
            self.max_calls
        )
    }
}

#[async_trait]
impl UsageProvider for DigitaloceanProvider {
    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: self.name.clone(),
            provider: crate::KIND,
            attribution: Attribution::Exact,
            dimensions: DIMENSIONS.into_iter().collect(),
            filters: BTreeSet::from([Dimension::Agent, Dimension::Model]),
        }
    }

    /// Every usage request is one agent's, and answers per usage type: both dimensions come with
    /// any query.
    fn fetch_dimensions(&self, _dims: &BTreeSet<Dimension>) -> BTreeSet<Dimension> {
        DIMENSIONS.into_iter().collect()
    }

    async fn agents(&self) -> Result<Vec<Agent>, ProviderError> {
        let listing = self.agent_list(false).await.map_err(|e| self.err(e))?;
        Ok(listing.agents.as_ref().clone())
    }

    async fn usage(&self, query: &UsageQuery) -> Result<UsageBatch, ProviderError> {
        self.answer(query).await.map_err(|e| self.err(e))
    }
}

/// One query window as DigitalOcean is asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowPlan {
    window: Window,
    start: DateTime<Utc>,
    /// Inclusive.
    stop: DateTime<Utc>,
}

impl WindowPlan {
    /// Plans a window, or `None` when it holds no whole second.
    ///
    /// Windows are expected on whole seconds (the gateway's bucket edges are). Edges with a
    /// fraction are cut to the second below, so adjacent windows still never overlap; usage in
    /// that fraction lands in the neighbouring window.
    fn new(window: &Window) -> Option<Self> {
        let start = floor_to_second(window.start);
        let end = floor_to_second(window.end);
        if end <= start {
            return None;
        }
        // DigitalOcean's `stop` is inclusive at second precision: asking up to end - 1s covers
        // exactly [start, end), and adjacent windows never count the same second twice.
        let stop = end - TimeDelta::seconds(1);
        Some(Self {
            window: *window,
            start,
            stop,
        })
    }
}

fn floor_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(t)
}

fn is_second_aligned(w: &Window) -> bool {
    floor_to_second(w.start) == w.start && floor_to_second(w.end) == w.end
}

/// Describes the range DigitalOcean echoed when it differs from the one asked for.
fn echoed_range_mismatch(out: &GetAgentUsageOutput, plan: WindowPlan) -> Option<String> {
    let u = out.usage.as_ref()?;
    let differs =
        u.start.is_some_and(|s| s != plan.start) || u.stop.is_some_and(|s| s != plan.stop);
    differs.then(|| {
        let show = |t: Option<DateTime<Utc>>| t.map_or_else(|| "unset".to_owned(), rfc3339_seconds);
        format!("[{}, {}]", show(u.start), show(u.stop))
    })
}

/// Which counter a usage type adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Input,
    Output,
    Other,
}

/// Classifies a usage type case-insensitively: `INPUT`/`input*`/`prompt*` → input,
/// `OUTPUT`/`output*`/`completion*` → output, anything else → other.
fn classify(usage_type: &str) -> Class {
    let t = usage_type.to_ascii_lowercase();
    if t.starts_with("input") || t.starts_with("prompt") {
        Class::Input
    } else if t.starts_with("output") || t.starts_with("completion") {
        Class::Output
    } else {
        Class::Other
    }
}

/// Maps one agent's usage answer for one window to points keyed by agent and usage type.
///
/// `usage` measurements count as input, output or other by their type; every
/// `log_insights_usage` measurement counts as other under `log_insights:<type>`. Input-like
/// types are named [`INPUT_USAGE_TYPE`], output-like ones [`OUTPUT_USAGE_TYPE`], others keep
/// their wire name in upper case (so `input` and `INPUT` land in one row, and `cached_input` and
/// `CACHED_INPUT` in another). Measurements without tokens are skipped; without a type
/// they are named [`UNSPECIFIED_USAGE_TYPE`]. Points keep only the dimensions in `keep`;
/// duplicates merge when the batch is compacted.
pub(crate) fn usage_to_points(
    out: &GetAgentUsageOutput,
    window: Window,
    agent: &Agent,
    keep: &BTreeSet<Dimension>,
) -> Vec<UsagePoint> {
    let blocks: [(Option<&ResourceUsage>, bool); 2] = [
        (out.usage.as_ref(), false),
        (out.log_insights_usage.as_ref(), true),
    ];
    let agent_name = agent
        .name
        .clone()
        .filter(|_| keep.contains(&Dimension::Agent));
    let mut points = Vec::new();
    for (block, log_insights) in blocks {
        let measurements = block
            .and_then(|b| b.measurements.as_ref())
            .into_iter()
            .flatten()
            .flatten();
        for m in measurements {
            let tokens = m.tokens.unwrap_or(0);
            if tokens == 0 {
                continue;
            }
            let name = m
                .usage_type
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .unwrap_or(UNSPECIFIED_USAGE_TYPE);
            let class = classify(name);
            let tokens_as = if log_insights { Class::Other } else { class };
            let counters = match tokens_as {
                Class::Input => Counters {
                    input: tokens,
                    ..Counters::default()
                },
                Class::Output => Counters {
                    output: tokens,
                    ..Counters::default()
                },
                Class::Other => Counters {
                    other: tokens,
                    ..Counters::default()
                },
            };
            // Other types in upper case, the style of the vendor's documented `INPUT`/`OUTPUT`,
            // so that `cached_input` and `CACHED_INPUT` are one row (as `input` and `INPUT` are).
            let name = match class {
                Class::Input => INPUT_USAGE_TYPE.to_owned(),
                Class::Output => OUTPUT_USAGE_TYPE.to_owned(),
                Class::Other => name.to_ascii_uppercase(),
            };
            let usage_type = if log_insights {
                format!("{LOG_INSIGHTS_PREFIX}{name}")
            } else {
                name
            };
            points.push(UsagePoint {
                window,
                key: PointKey {
                    agent: Some(agent.id.clone()),
                    usage_type: Some(usage_type),
                    model: agent.model.clone(),
                    ..PointKey::default()
                }
                .project(keep),
                agent_name: agent_name.clone(),
                unit: Unit::Tokens,
                counters,
            });
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window() -> Window {
        Window::new(t("2024-01-01T00:00:00Z"), t("2024-02-01T00:00:00Z"))
    }

    fn agent() -> Agent {
        Agent {
            id: "c441bf77-81d6-11ef-bf8f-4e013e2ddde4".into(),
            name: Some("support-agent".into()),
            model: None,
        }
    }

    fn all() -> BTreeSet<Dimension> {
        BTreeSet::from([Dimension::Agent, Dimension::UsageType])
    }

    fn decode(json: &str) -> GetAgentUsageOutput {
        serde_json::from_str(json).unwrap()
    }

    fn batch(points: Vec<UsagePoint>) -> UsageBatch {
        UsageBatch {
            points,
            ..UsageBatch::default()
        }
        .compact()
    }

    fn by_type(b: &UsageBatch, ty: &str) -> Counters {
        b.points
            .iter()
            .filter(|p| p.key.usage_type.as_deref() == Some(ty))
            .fold(Counters::default(), |mut c, p| {
                c.add(&p.counters);
                c
            })
    }

    fn total(b: &UsageBatch) -> Counters {
        b.points.iter().fold(Counters::default(), |mut c, p| {
            c.add(&p.counters);
            c
        })
    }

    #[test]
    fn january_fixture_maps_input_and_output() {
        let out = decode(include_str!(
            "../../../fixtures/digitalocean/usage_january.json"
        ));
        let b = batch(usage_to_points(&out, window(), &agent(), &all()));
        assert_eq!(
            total(&b),
            Counters {
                input: 1_843_211,
                output: 402_877,
                other: 0
            }
        );
        assert_eq!(b.points.len(), 2);
        let p = &b.points[0];
        assert_eq!(p.window, window());
        assert_eq!(
            p.key.agent.as_deref(),
            Some("c441bf77-81d6-11ef-bf8f-4e013e2ddde4")
        );
        assert_eq!(p.agent_name.as_deref(), Some("support-agent"));
        assert_eq!(p.unit, Unit::Tokens);
    }

    #[test]
    fn mixed_types_classify_case_insensitively_and_sum_duplicates() {
        let out = decode(include_str!(
            "../../../fixtures/digitalocean/usage_mixed_types.json"
        ));
        let b = batch(usage_to_points(&out, window(), &agent(), &all()));
        let c = |input, output, other| Counters {
            input,
            output,
            other,
        };
        // INPUT ×2 (duplicates summed), input_tokens and Prompt are all input and one row.
        assert_eq!(by_type(&b, "INPUT"), c(160, 0, 0));
        assert_eq!(by_type(&b, "OUTPUT"), c(0, 42, 0));
        assert_eq!(
            by_type(&b, "CACHED_INPUT"),
            c(0, 0, 11),
            "unknown types are other"
        );
        assert_eq!(by_type(&b, UNSPECIFIED_USAGE_TYPE), c(0, 0, 5));
        assert_eq!(by_type(&b, "log_insights:INPUT"), c(0, 0, 20));
        assert_eq!(by_type(&b, "log_insights:OUTPUT"), c(0, 0, 5));
        assert_eq!(by_type(&b, "log_insights:EMBEDDING"), c(0, 0, 2));
        assert_eq!(b.points.len(), 7, "{:?}", b.points);
        assert_eq!(total(&b), c(160, 42, 43));

        // Other types differing only in letter case are one row, named in upper case; the
        // `log_insights:` prefix stays lower case.
        let out = decode(
            r#"{
              "usage": {"measurements": [
                {"usage_type": "cached_input", "tokens": 4},
                {"usage_type": "CACHED_INPUT", "tokens": 6},
                {"usage_type": "Cached_Input", "tokens": 1}
              ]},
              "log_insights_usage": {"measurements": [
                {"usage_type": "embedding", "tokens": 2},
                {"usage_type": "Embedding", "tokens": 3}
              ]}
            }"#,
        );
        let b = batch(usage_to_points(&out, window(), &agent(), &all()));
        assert_eq!(by_type(&b, "CACHED_INPUT"), c(0, 0, 11));
        assert_eq!(by_type(&b, "log_insights:EMBEDDING"), c(0, 0, 5));
        assert_eq!(b.points.len(), 2, "{:?}", b.points);
    }

    #[test]
    fn collapsed_dimensions_keep_totals() {
        let out = decode(include_str!(
            "../../../fixtures/digitalocean/usage_mixed_types.json"
        ));
        let b = batch(usage_to_points(&out, window(), &agent(), &BTreeSet::new()));
        assert_eq!(b.points.len(), 1);
        assert_eq!(b.points[0].key, PointKey::default());
        assert_eq!(
            b.points[0].agent_name, None,
            "names ride along only with the agent"
        );
        assert_eq!(
            total(&b),
            Counters {
                input: 160,
                output: 42,
                other: 43
            }
        );

        let by_agent = batch(usage_to_points(
            &out,
            window(),
            &agent(),
            &BTreeSet::from([Dimension::Agent]),
        ));
        assert_eq!(by_agent.points.len(), 1);
        assert_eq!(
            by_agent.points[0].agent_name.as_deref(),
            Some("support-agent")
        );
    }

    #[test]
    fn partial_and_nonsense_payloads_never_panic() {
        for json in [
            "{}",
            r#"{"usage": null, "log_insights_usage": null}"#,
            r#"{"usage": {}}"#,
            r#"{"usage": {"measurements": null}}"#,
            r#"{"usage": {"measurements": [null, {}, {"tokens": 0}]}}"#,
            "[]",
            r#"{"usage": {"measurements": []}, "unknown": [1, 2, 3]}"#,
            r#"{"usage": {"start": "0001-01-01T00:00:00Z", "stop": "0001-01-01T00:00:00Z"}}"#,
        ] {
            let out = decode(json);
            assert!(
                usage_to_points(&out, window(), &agent(), &all()).is_empty(),
                "{json}"
            );
        }
        for bad in [
            "null",
            r#"{"usage": 5}"#,
            r#"{"usage": {"measurements": {}}}"#,
            r#"{"usage": {"measurements": [{"tokens": -5}]}}"#,
        ] {
            assert!(
                serde_json::from_str::<GetAgentUsageOutput>(bad).is_err(),
                "{bad}"
            );
        }
        let out = decode(r#"{"usage": {"measurements": [{"tokens": "9"}]}}"#);
        let b = batch(usage_to_points(&out, window(), &agent(), &all()));
        assert_eq!(by_type(&b, UNSPECIFIED_USAGE_TYPE).other, 9);
    }

    #[test]
    fn huge_counts_saturate() {
        let out = decode(
            r#"{"usage": {"measurements": [{"usage_type": "INPUT", "tokens": 18446744073709551615}, {"usage_type": "INPUT", "tokens": 5}]}}"#,
        );
        let b = batch(usage_to_points(&out, window(), &agent(), &all()));
        assert_eq!(total(&b).input, u64::MAX);
    }

    #[test]
    fn window_plans_send_an_inclusive_stop() {
        let p = WindowPlan::new(&window()).unwrap();
        assert_eq!(rfc3339_seconds(p.start), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339_seconds(p.stop), "2024-01-31T23:59:59Z");
        let a = Window::new(t("2024-01-01T00:00:00Z"), t("2024-01-02T00:00:00Z"));
        let b = Window::new(t("2024-01-02T00:00:00Z"), t("2024-01-03T00:00:00Z"));
        let (pa, pb) = (WindowPlan::new(&a).unwrap(), WindowPlan::new(&b).unwrap());
        assert!(pa.stop < pb.start, "adjacent windows never overlap");
        assert_eq!(
            pb.start - pa.stop,
            TimeDelta::seconds(1),
            "and leave no gap"
        );
        let one_second = Window::new(t("2024-01-01T00:00:00Z"), t("2024-01-01T00:00:01Z"));
        let p = WindowPlan::new(&one_second).unwrap();
        assert_eq!(p.start, p.stop);
    }

    #[test]
    fn unaligned_windows_are_cut_to_the_second_below() {
        let start =
            Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::milliseconds(500);
        let w = Window::new(start, start + TimeDelta::seconds(10));
        assert!(!is_second_aligned(&w));
        let p = WindowPlan::new(&w).unwrap();
        assert_eq!(rfc3339_seconds(p.start), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339_seconds(p.stop), "2024-01-01T00:00:09Z");
        let tiny = Window::new(start, start + TimeDelta::milliseconds(200));
        assert_eq!(WindowPlan::new(&tiny), None, "no whole second inside");
    }

    #[test]
    fn classification_rules() {
        for (ty, class) in [
            ("INPUT", Class::Input),
            ("input", Class::Input),
            ("Input_Tokens", Class::Input),
            ("prompt", Class::Input),
            ("PROMPT_TOKENS", Class::Input),
            ("OUTPUT", Class::Output),
            ("output_tokens", Class::Output),
            ("completion", Class::Output),
            ("Completion_Tokens", Class::Output),
            ("USAGE_TYPE_UNSPECIFIED", Class::Other),
            ("cached_input", Class::Other),
            ("", Class::Other),
        ] {
            assert_eq!(classify(ty), class, "{ty}");
        }
    }

    #[test]
    fn echoed_range_mismatch_is_reported_only_when_set_and_different() {
        let p = WindowPlan::new(&window()).unwrap();
        let same = decode(
            r#"{"usage": {"start": "2024-01-01T00:00:00Z", "stop": "2024-01-31T23:59:59Z"}}"#,
        );
        assert_eq!(echoed_range_mismatch(&same, p), None);
        let unset = decode(r#"{"usage": {"start": "0001-01-01T00:00:00Z"}}"#);
        assert_eq!(echoed_range_mismatch(&unset, p), None);
        let clamped = decode(
            r#"{"usage": {"start": "2024-01-15T00:00:00Z", "stop": "2024-01-31T23:59:59Z"}}"#,
        );
        assert_eq!(
            echoed_range_mismatch(&clamped, p).as_deref(),
            Some("[2024-01-15T00:00:00Z, 2024-01-31T23:59:59Z]")
        );
    }
}
