//! DigitalOcean Gen-AI agents and their token usage events.

use chrono::{DateTime, Duration, DurationRound, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use usage_core::{Counters, Window};

use super::{DataSpec, TruthFilter, ms_to_time, pooled_name, random_ms, random_uuid};

/// Agent names. Vendors accept any text as a name: the fourth starts with `=`, as a name meant
/// to run as a spreadsheet formula would, so that the gateway's CSV guard is exercised.
const NAMES: &[&str] = &[
    "support-agent",
    "billing-assistant",
    "docs-helper",
    "=sales-assistant",
    "onboarding-guide",
    "triage-agent",
    "refund-bot",
    "status-reporter",
];
const REGIONS: &[&str] = &["tor1", "nyc3", "ams3", "sfo3"];
const MODELS: &[&str] = &[
    "Llama 3.3 Instruct (70B)",
    "OpenAI GPT-4o mini",
    "Anthropic Claude 3.5 Haiku",
    "DeepSeek R1 Distill Llama 70B",
];

/// The usage type that is neither input nor output (the default of DO's `apiUsageType` enum).
pub(crate) const OTHER_TYPE: &str = "USAGE_TYPE_UNSPECIFIED";

/// A DigitalOcean Gen-AI agent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent per-agent switches of the simulated data"
)]
pub struct DoAgent {
    /// The agent uuid (path parameter of the usage route).
    pub uuid: String,
    /// The agent name.
    pub name: String,
    /// Whether the agent is deployed (`only_deployed=true` lists only these).
    pub deployed: bool,
    /// The region slug.
    pub region: String,
    /// The model name.
    pub model: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update; `None` is served as Go's zero time `0001-01-01T00:00:00Z`.
    pub updated_at: Option<DateTime<Utc>>,
    /// Whether Log Insights is enabled (only then does `log_insights_usage` carry tokens).
    pub log_insights_enabled: bool,
    /// Whether the usage response omits the `log_insights_usage` block entirely.
    pub omit_log_insights_block: bool,
    /// Whether the usage response reports `INPUT` as two measurements (to be summed).
    pub split_input_measurement: bool,
}

/// One usage event of an agent (tokens of one type at one instant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoEvent {
    /// When the tokens were used (millisecond precision).
    pub at: DateTime<Utc>,
    /// Whether the tokens belong to `log_insights_usage` rather than `usage`.
    pub log_insights: bool,
    /// The wire `usage_type` (`INPUT`, `OUTPUT` or `USAGE_TYPE_UNSPECIFIED`).
    pub usage_type: String,
    /// The token count.
    pub tokens: u64,
}

/// One (block, usage type) time series of an agent with prefix sums, for fast range sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Series {
    pub(crate) log_insights: bool,
    pub(crate) usage_type: String,
    times: Vec<DateTime<Utc>>,
    prefix: Vec<u64>,
}

impl Series {
    /// Sums tokens with `lo <= t < hi`.
    fn sum(&self, lo: DateTime<Utc>, hi: DateTime<Utc>) -> u64 {
        let (a, b) = super::range_of(&self.times, &lo, &hi);
        self.prefix[b] - self.prefix[a]
    }
}

/// DigitalOcean data: agents, their events (sorted by time) and per-type indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoData {
    origin: DateTime<Utc>,
    agents: Vec<DoAgent>,
    events: Vec<Vec<DoEvent>>,
    series: Vec<Vec<Series>>,
}

impl DoData {
    pub(crate) fn generate(spec: &DataSpec, rng: &mut ChaCha8Rng) -> Self {
        let mut agents = Vec::with_capacity(spec.do_agents);
        for i in 0..spec.do_agents {
            let created = ms_to_time(random_ms(rng, spec)) - spec.span;
            agents.push(DoAgent {
                uuid: random_uuid(rng),
                name: pooled_name(NAMES, i),
                deployed: i % 4 != 3,
                region: REGIONS[i % REGIONS.len()].to_owned(),
                model: MODELS[i % MODELS.len()].to_owned(),
                created_at: created,
                updated_at: (i % 3 != 1)
                    .then(|| created + Duration::hours(rng.random_range(1..500))),
                log_insights_enabled: i % 2 == 0,
                omit_log_insights_block: i % 4 == 1,
                split_input_measurement: i % 4 == 2,
            });
        }
        let mut events: Vec<Vec<DoEvent>> = vec![Vec::new(); agents.len()];
        let total_weight: usize = (0..agents.len()).map(|i| 1 + i % 3).sum();
        for _ in 0..spec.do_events {
            if agents.is_empty() {
                break;
            }
            let mut pick = rng.random_range(0..total_weight);
            let mut idx = 0;
            while pick > idx % 3 {
                pick -= 1 + idx % 3;
                idx += 1;
            }
            let at = ms_to_time(random_ms(rng, spec));
            let log_insights = agents[idx].log_insights_enabled && rng.random_bool(0.2);
            let (usage_type, tokens) = if log_insights {
                if rng.random_bool(0.6) {
                    ("INPUT", rng.random_range(200..3000))
                } else {
                    ("OUTPUT", rng.random_range(50..800))
                }
            } else {
                let r: f64 = rng.random();
                if r < 0.45 {
                    ("INPUT", rng.random_range(100..5000))
                } else if r < 0.9 {
                    ("OUTPUT", rng.random_range(20..1500))
                } else {
                    (OTHER_TYPE, rng.random_range(1..300))
                }
            };
            events[idx].push(DoEvent {
                at,
                log_insights,
                usage_type: usage_type.to_owned(),
                tokens,
            });
        }
        for ev in &mut events {
            ev.sort_by_key(|e| e.at);
        }
        let series = events.iter().map(|ev| build_series(ev)).collect();
        Self {
            origin: spec.origin(),
            agents,
            events,
            series,
        }
    }

    /// Returns all agents, deployed or not.
    pub fn agents(&self) -> &[DoAgent] {
        &self.agents
    }

    /// Returns the events of an agent, sorted by time (empty for an unknown uuid).
    pub fn events(&self, uuid: &str) -> &[DoEvent] {
        self.index_of(uuid).map_or(&[], |i| &self.events[i])
    }

    /// Returns the first instant of the simulated span.
    pub fn origin(&self) -> DateTime<Utc> {
        self.origin
    }

    pub(crate) fn index_of(&self, uuid: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.uuid == uuid)
    }

    /// Returns `(log_insights, usage_type, tokens)` for every series of agent `idx` with
    /// events in `lo <= t < hi`, in series order (`INPUT`, `OUTPUT`, others by name).
    pub(crate) fn sums(
        &self,
        idx: usize,
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
    ) -> Vec<(bool, &str, u64)> {
        self.series[idx]
            .iter()
            .map(|s| (s.log_insights, s.usage_type.as_str(), s.sum(lo, hi)))
            .collect()
    }

    /// Returns the exact usage in the half-open window `w` that matches `f`: `input` holds
    /// INPUT-like types, `output` OUTPUT-like types, `other` everything else including every
    /// `log_insights_usage` token. `f.usage_type` takes `INPUT`, `OUTPUT`, other wire names
    /// verbatim, or `log_insights:<TYPE>`; `f.user`/`f.conversation` match nothing.
    pub fn truth(&self, f: &TruthFilter, w: Window) -> Counters {
        let mut c = Counters::default();
        if f.user.is_some() || f.conversation.is_some() {
            return c;
        }
        for (agent, events) in self.agents.iter().zip(&self.events) {
            if !TruthFilter::matches_opt(f.agent.as_ref(), Some(&agent.uuid))
                || !TruthFilter::matches_opt(f.model.as_ref(), Some(&agent.model))
            {
                continue;
            }
            let lo = events.partition_point(|e| e.at < w.start);
            let hi = events.partition_point(|e| e.at < w.end);
            for e in &events[lo..hi.max(lo)] {
                let name = provider_type_name(e.log_insights, &e.usage_type);
                if !TruthFilter::matches_opt(f.usage_type.as_ref(), Some(&name)) {
                    continue;
                }
                match (e.log_insights, classify(&e.usage_type)) {
                    (false, Category::Input) => c.input += e.tokens,
                    (false, Category::Output) => c.output += e.tokens,
                    _ => c.other += e.tokens,
                }
            }
        }
        c
    }
}

/// Floors an instant to the whole second.
pub(crate) fn floor_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::seconds(1)).unwrap_or(t)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Input,
    Output,
    Other,
}

/// Classifies a wire usage type the way CONTRACTS.md §1.3 tells providers to.
fn classify(t: &str) -> Category {
    let l = t.to_ascii_lowercase();
    if l.starts_with("input") || l.starts_with("prompt") {
        Category::Input
    } else if l.starts_with("output") || l.starts_with("completion") {
        Category::Output
    } else {
        Category::Other
    }
}

/// Names a usage type as providers report it in the `usage_type` dimension.
fn provider_type_name(log_insights: bool, wire: &str) -> String {
    if log_insights {
        return format!("log_insights:{wire}");
    }
    match classify(wire) {
        Category::Input => "INPUT".to_owned(),
        Category::Output => "OUTPUT".to_owned(),
        Category::Other => wire.to_owned(),
    }
}

fn build_series(events: &[DoEvent]) -> Vec<Series> {
    let mut keys: Vec<(bool, u8, &str)> = events
        .iter()
        .map(|e| {
            let rank = match classify(&e.usage_type) {
                Category::Input => 0,
                Category::Output => 1,
                Category::Other => 2,
            };
            (e.log_insights, rank, e.usage_type.as_str())
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|(log_insights, _, usage_type)| {
            let mut times = Vec::new();
            let mut prefix = vec![0];
            let mut acc = 0;
            for e in events
                .iter()
                .filter(|e| e.log_insights == log_insights && e.usage_type == usage_type)
            {
                times.push(e.at);
                acc += e.tokens;
                prefix.push(acc);
            }
            Series {
                log_insights,
                usage_type: usage_type.to_owned(),
                times,
                prefix,
            }
        })
        .collect()
}
