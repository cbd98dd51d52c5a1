//! Anthropic: workspaces, API keys and minute-resolution Messages usage events (the data behind
//! `GET /v1/organizations/usage_report/messages` and `GET /v1/organizations/workspaces`).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use usage_core::{Counters, Unit, Window};

use super::{DataSpec, TruthFilter, ms_to_time, random_ms};

/// The agent id of Anthropic's default workspace (`workspace_id: null` on the wire).
pub const ANTHROPIC_DEFAULT_WORKSPACE: &str = "default";

/// How long after a request its usage shows in the usage report ("typically within 5 minutes"):
/// the simulator shows an event once its clock is at least this far past it.
pub const ANTHROPIC_FRESHNESS: Duration = Duration::minutes(5);

/// The usage types (the report's field names), in the order the mapping documents them:
/// `uncached_input_tokens` → input, `output_tokens` → output, the cache kinds → other (tokens),
/// `server_tool_use.web_search_requests` → other (requests).
pub const ANTHROPIC_USAGE_TYPES: [&str; 6] = [
    "uncached_input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation.ephemeral_5m_input_tokens",
    "cache_creation.ephemeral_1h_input_tokens",
    "server_tool_use.web_search_requests",
];

const WORKSPACES: &[(&str, &str)] = &[
    ("Production", "#6C5BB9"),
    ("Research", "#3B82F6"),
    ("Support bots", "#10B981"),
    ("Legacy pilot", "#F59E0B"),
];

const MODELS: &[&str] = &[
    "claude-sonnet-4-20250514",
    "claude-opus-4-6",
    "claude-3-5-haiku-20241022",
    "claude-haiku-4-5-20251001",
];

/// An Anthropic workspace as `GET /v1/organizations/workspaces` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicWorkspace {
    /// `wrkspc_…`.
    pub id: String,
    /// The display name.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Set for an archived workspace (listed only with `include_archived=true`).
    pub archived_at: Option<DateTime<Utc>>,
    /// `#RRGGBB`.
    pub display_color: String,
}

/// An API key (`apikey_…`) and the workspace it belongs to (`None`: the default workspace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicApiKey {
    /// `apikey_…`.
    pub id: String,
    /// Its workspace; `None` is the default workspace.
    pub workspace: Option<String>,
}

/// One minute of one (workspace, API key, model)'s Messages usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicEvent {
    /// The minute it happened in (whole minutes).
    pub at: DateTime<Utc>,
    /// The workspace; `None` is the default workspace.
    pub workspace_id: Option<String>,
    /// The API key; `None` is Console (Workbench) usage.
    pub api_key_id: Option<String>,
    /// The model.
    pub model: String,
    /// `uncached_input_tokens`.
    pub uncached_input_tokens: u64,
    /// `output_tokens`.
    pub output_tokens: u64,
    /// `cache_read_input_tokens`.
    pub cache_read_input_tokens: u64,
    /// `cache_creation.ephemeral_5m_input_tokens`.
    pub cache_5m_input_tokens: u64,
    /// `cache_creation.ephemeral_1h_input_tokens`.
    pub cache_1h_input_tokens: u64,
    /// `server_tool_use.web_search_requests`.
    pub web_search_requests: u64,
}

impl AnthropicEvent {
    /// The agent id it counts under (`default` for the default workspace).
    pub fn agent(&self) -> &str {
        self.workspace_id
            .as_deref()
            .unwrap_or(ANTHROPIC_DEFAULT_WORKSPACE)
    }

    /// The quantity of one usage type (a name of [`ANTHROPIC_USAGE_TYPES`]; others are 0).
    pub fn quantity(&self, usage_type: &str) -> u64 {
        match usage_type {
            "uncached_input_tokens" => self.uncached_input_tokens,
            "output_tokens" => self.output_tokens,
            "cache_read_input_tokens" => self.cache_read_input_tokens,
            "cache_creation.ephemeral_5m_input_tokens" => self.cache_5m_input_tokens,
            "cache_creation.ephemeral_1h_input_tokens" => self.cache_1h_input_tokens,
            "server_tool_use.web_search_requests" => self.web_search_requests,
            _ => 0,
        }
    }

    fn matches(&self, f: &TruthFilter) -> bool {
        f.conversation.is_none()
            && TruthFilter::matches_opt(f.agent.as_ref(), Some(self.agent()))
            && TruthFilter::matches_opt(f.user.as_ref(), self.api_key_id.as_deref())
            && TruthFilter::matches_opt(f.model.as_ref(), Some(&self.model))
    }
}

/// Anthropic data: workspaces, API keys and usage events sorted by time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicData {
    now: DateTime<Utc>,
    workspaces: Vec<AnthropicWorkspace>,
    api_keys: Vec<AnthropicApiKey>,
    events: Vec<AnthropicEvent>,
}

impl AnthropicData {
    /// Generates four workspaces (the last archived), six API keys (two in the default
    /// workspace) and `3 × do_events` minutes of usage over four models, about one in eight from
    /// the Console (no API key), with every token kind and some web search requests.
    pub(crate) fn generate(spec: &DataSpec, rng: &mut ChaCha8Rng) -> Self {
        let now = spec.now;
        let workspaces: Vec<AnthropicWorkspace> = WORKSPACES
            .iter()
            .enumerate()
            .map(|(i, (name, color))| {
                let created_at = minute(ms_to_time(random_ms(rng, spec)) - spec.span);
                AnthropicWorkspace {
                    id: format!("wrkspc_01{}", random_id(rng, 22)),
                    name: (*name).to_owned(),
                    created_at,
                    archived_at: (i == WORKSPACES.len() - 1).then(|| now - Duration::days(20)),
                    display_color: (*color).to_owned(),
                }
            })
            .collect();
        let api_keys: Vec<AnthropicApiKey> = (0..6)
            .map(|i| AnthropicApiKey {
                id: format!("apikey_01{}", random_id(rng, 22)),
                workspace: (i >= 2).then(|| workspaces[(i - 2) % workspaces.len()].id.clone()),
            })
            .collect();
        let n = spec.do_events.saturating_mul(3);
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            let at = minute(ms_to_time(random_ms(rng, spec)));
            let console = rng.random_bool(0.125);
            let (workspace_id, api_key_id) = if console {
                // Console usage: no key; in the default workspace or a real one.
                let w = rng.random_range(0..=workspaces.len());
                (workspaces.get(w).map(|w| w.id.clone()), None)
            } else {
                let k = &api_keys[rng.random_range(0..api_keys.len())];
                (k.workspace.clone(), Some(k.id.clone()))
            };
            let model = MODELS[rng.random_range(0..MODELS.len())].to_owned();
            let cached = rng.random_bool(0.6);
            let some = |rng: &mut ChaCha8Rng, p: f64, hi: u64| {
                if rng.random_bool(p) {
                    rng.random_range(1..hi)
                } else {
                    0
                }
            };
            events.push(AnthropicEvent {
                at,
                workspace_id,
                api_key_id,
                model,
                uncached_input_tokens: rng.random_range(50..20_000),
                output_tokens: rng.random_range(10..4_000),
                cache_read_input_tokens: if cached {
                    rng.random_range(100..100_000)
                } else {
                    0
                },
                cache_5m_input_tokens: some(rng, 0.3, 10_000),
                cache_1h_input_tokens: some(rng, 0.1, 20_000),
                web_search_requests: some(rng, 0.15, 6),
            });
        }
        events.sort_by_key(|e| e.at);
        Self {
            now,
            workspaces,
            api_keys,
            events,
        }
    }

    /// The simulated "now" (the simulator's clock unless one is set).
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Every workspace, archived ones included (not the default workspace).
    pub fn workspaces(&self) -> &[AnthropicWorkspace] {
        &self.workspaces
    }

    /// Every API key.
    pub fn api_keys(&self) -> &[AnthropicApiKey] {
        &self.api_keys
    }

    /// The models usage is generated for.
    pub fn models(&self) -> Vec<String> {
        MODELS.iter().map(|m| (*m).to_owned()).collect()
    }

    /// Every event, sorted by time.
    pub fn events(&self) -> &[AnthropicEvent] {
        &self.events
    }

    /// The events with `lo <= at < hi`.
    pub(crate) fn between(&self, lo: DateTime<Utc>, hi: DateTime<Utc>) -> &[AnthropicEvent] {
        let a = self.events.partition_point(|e| e.at < lo);
        let b = self.events.partition_point(|e| e.at < hi).max(a);
        &self.events[a..b]
    }

    /// The exact usage in the half-open window `w` matching `f`, per unit: tokens as
    /// `input` = uncached input, `output` = output, `other` = cache reads + both cache
    /// creations; requests (web search) as `other`. `f.agent` takes a workspace id or `default`,
    /// `f.user` an API key id (Console usage has none), `f.model` a model, `f.usage_type` a name
    /// of [`ANTHROPIC_USAGE_TYPES`]; `f.conversation` matches nothing. Units without usage are
    /// absent. Computed from the events, as they happened (the simulator shows each only
    /// [`ANTHROPIC_FRESHNESS`] later).
    pub fn truth(&self, f: &TruthFilter, w: Window) -> BTreeMap<Unit, Counters> {
        let mut out: BTreeMap<Unit, Counters> = BTreeMap::new();
        for e in self
            .events
            .iter()
            .filter(|e| w.contains(e.at) && e.matches(f))
        {
            for ty in ANTHROPIC_USAGE_TYPES {
                if !TruthFilter::matches_opt(f.usage_type.as_ref(), Some(ty)) {
                    continue;
                }
                let q = e.quantity(ty);
                if q == 0 {
                    continue;
                }
                let (unit, c) = match ty {
                    "uncached_input_tokens" => (
                        Unit::Tokens,
                        Counters {
                            input: q,
                            ..Counters::default()
                        },
                    ),
                    "output_tokens" => (
                        Unit::Tokens,
                        Counters {
                            output: q,
                            ..Counters::default()
                        },
                    ),
                    "server_tool_use.web_search_requests" => (
                        Unit::Requests,
                        Counters {
                            other: q,
                            ..Counters::default()
                        },
                    ),
                    _ => (
                        Unit::Tokens,
                        Counters {
                            other: q,
                            ..Counters::default()
                        },
                    ),
                };
                out.entry(unit).or_default().add(&c);
            }
        }
        out
    }
}

fn minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::minutes(1)).unwrap_or(t)
}

/// A random base-62 id of `n` characters (Anthropic's ids look like `wrkspc_01JwQvzr7r…`).
fn random_id(rng: &mut ChaCha8Rng, n: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..n)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}
