//! Deterministic simulated data for the three vendors, and the ground truth derived from it.
//!
//! Every endpoint of every simulator answers from this data, so numbers agree across endpoints,
//! and [`DoData::truth`], [`KibanaData::truth`] and [`CbkData::truth`] give the exact totals a
//! correct provider must report for a half-open window.

pub(crate) mod anthropic;
pub(crate) mod chatbotkit;
pub(crate) mod costs;
pub(crate) mod digitalocean;
pub(crate) mod kibana;
pub(crate) mod openai;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use anthropic::{
    ANTHROPIC_DEFAULT_WORKSPACE, ANTHROPIC_FRESHNESS, ANTHROPIC_USAGE_TYPES, AnthropicApiKey,
    AnthropicData, AnthropicEvent, AnthropicWorkspace,
};
pub use chatbotkit::{BASE_TYPE, CbkBot, CbkData, CbkRecord, EMBEDDING_TYPE};
pub use costs::{AnthropicCostItem, OpenAiCostItem};
pub use digitalocean::{DoAgent, DoData, DoEvent};
pub use kibana::{
    HIGH_INPUT_TOKENS, KibanaAgent, KibanaConversation, KibanaData, KibanaRound, KibanaWarning,
};
pub use openai::{OpenAiData, OpenAiEndpoint, OpenAiEvent, OpenAiProject, OpenAiTokens};

/// Describes how much data to generate, and from which seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSpec {
    /// Seeds the deterministic generator (ChaCha8).
    pub seed: u64,
    /// The end of the simulated span; all usage happens in `[now - span, now)`.
    pub now: DateTime<Utc>,
    /// How far back usage goes (90 days by default).
    pub span: Duration,
    /// Number of DigitalOcean agents.
    pub do_agents: usize,
    /// Number of DigitalOcean usage events, spread over all agents.
    pub do_events: usize,
    /// Kibana space ids; `"default"` is served without the `/s/{space}` prefix.
    pub kibana_spaces: Vec<String>,
    /// Kibana agents per space (the first is always the built-in `elastic-ai-agent`).
    pub kibana_agents_per_space: usize,
    /// Kibana conversations per agent.
    pub kibana_conversations_per_agent: usize,
    /// Number of ChatBotKit bots.
    pub cbk_bots: usize,
    /// Number of ChatBotKit usage records (some without a bot).
    pub cbk_records: usize,
    /// Number of OpenAI projects (the fourth is archived half-way through the span).
    pub openai_projects: usize,
    /// Number of OpenAI users.
    pub openai_users: usize,
    /// Number of OpenAI usage events (each one minute of one project, user, model, endpoint).
    pub openai_events: usize,
}

impl DataSpec {
    /// Returns a small data set (a few agents each, a few hundred events): fast for tests.
    pub fn small(now: DateTime<Utc>) -> Self {
        Self {
            seed: 42,
            now,
            span: Duration::days(90),
            do_agents: 4,
            do_events: 400,
            kibana_spaces: vec!["default".to_owned(), "marketing".to_owned()],
            kibana_agents_per_space: 3,
            kibana_conversations_per_agent: 40,
            cbk_bots: 3,
            cbk_records: 400,
            openai_projects: 5,
            openai_users: 6,
            openai_events: 6_000,
        }
    }

    /// Returns a benchmark-sized data set: 20 000 conversations per Kibana agent and 100 000
    /// ChatBotKit records.
    pub fn bench(now: DateTime<Utc>) -> Self {
        Self {
            seed: 42,
            now,
            span: Duration::days(90),
            do_agents: 20,
            do_events: 100_000,
            kibana_spaces: vec!["default".to_owned(), "marketing".to_owned()],
            kibana_agents_per_space: 2,
            kibana_conversations_per_agent: 20_000,
            cbk_bots: 10,
            cbk_records: 100_000,
            openai_projects: 12,
            openai_users: 40,
            openai_events: 200_000,
        }
    }

    /// Returns the first instant of the span, `now - span`, at millisecond precision.
    pub fn origin(&self) -> DateTime<Utc> {
        self.now_ms() - self.span
    }

    fn now_ms(&self) -> DateTime<Utc> {
        ms_to_time(self.now.timestamp_millis())
    }
}

/// Selects the usage a ground-truth call sums; `None` (the default) matches everything.
///
/// A filter on a dimension the vendor does not have (e.g. `user` on DigitalOcean) matches
/// nothing, because every point of that vendor carries no such label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TruthFilter {
    /// Agent id (DigitalOcean uuid, Kibana agent id, ChatBotKit bot id or
    /// [`usage_core::UNATTRIBUTED_AGENT`], Anthropic workspace id or `default`).
    pub agent: Option<String>,
    /// User (Kibana username, ChatBotKit contact id, Anthropic API key id).
    pub user: Option<String>,
    /// Conversation id (Kibana, ChatBotKit).
    pub conversation: Option<String>,
    /// Usage type as the provider names it (DigitalOcean `INPUT`/`OUTPUT`/other names verbatim/
    /// `log_insights:<TYPE>`, ChatBotKit record `type`).
    pub usage_type: Option<String>,
    /// Model (OpenAI, Anthropic; DigitalOcean: the agent's model).
    pub model: Option<String>,
}

impl TruthFilter {
    /// Returns a filter on one agent.
    pub fn agent(id: impl Into<String>) -> Self {
        Self {
            agent: Some(id.into()),
            ..Self::default()
        }
    }

    pub(crate) fn matches_opt(want: Option<&String>, have: Option<&str>) -> bool {
        match want {
            None => true,
            Some(w) => have == Some(w.as_str()),
        }
    }
}

/// All simulated data of the three vendors, generated from one [`DataSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// DigitalOcean agents and usage events.
    pub digitalocean: DoData,
    /// Kibana spaces, agents and conversations.
    pub kibana: KibanaData,
    /// ChatBotKit bots and usage records.
    pub chatbotkit: CbkData,
    /// Anthropic workspaces, API keys and Messages usage.
    pub anthropic: AnthropicData,
    /// OpenAI projects, users and usage events.
    pub openai: OpenAiData,
}

impl Dataset {
    /// Generates the data deterministically from `spec` (same spec, same data). Each vendor
    /// draws from its own ChaCha8 stream, so the size of one vendor's data does not change
    /// another's.
    pub fn generate(spec: &DataSpec) -> Self {
        Self {
            digitalocean: DoData::generate(spec, &mut stream(spec.seed, 1)),
            kibana: KibanaData::generate(spec, &mut stream(spec.seed, 2)),
            chatbotkit: CbkData::generate(spec, &mut stream(spec.seed, 3)),
            anthropic: AnthropicData::generate(spec, &mut stream(spec.seed, 5)),
            openai: OpenAiData::generate(spec, &mut stream(spec.seed, 4)),
        }
    }
}

fn stream(seed: u64, n: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(n);
    rng
}

/// Converts epoch milliseconds to a UTC instant (the epoch itself when out of range).
pub(crate) fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Draws a random instant in `[origin, now)` at millisecond precision.
pub(crate) fn random_ms(rng: &mut ChaCha8Rng, spec: &DataSpec) -> i64 {
    let end = spec.now_ms().timestamp_millis();
    let span = spec.span.num_milliseconds().max(1);
    end - rng.random_range(1..=span)
}

/// Returns a random v4-style UUID string.
pub(crate) fn random_uuid(rng: &mut ChaCha8Rng) -> String {
    let a: u128 = rng.random();
    let a = (a & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Returns a random cuid-like id (`c` + 24 base-36 characters), as ChatBotKit uses.
pub(crate) fn random_cuid(rng: &mut ChaCha8Rng) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = String::with_capacity(25);
    s.push('c');
    for _ in 0..24 {
        s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    s
}

/// Picks a name from `pool`, adding a numeric suffix once the pool is exhausted.
pub(crate) fn pooled_name(pool: &[&str], i: usize) -> String {
    let base = pool[i % pool.len()];
    if i < pool.len() {
        base.to_owned()
    } else {
        format!("{base}-{}", i / pool.len() + 1)
    }
}

/// Floors an instant to the whole minute.
pub(crate) fn minute_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    let s = t.timestamp();
    ms_to_time((s - s.rem_euclid(60)) * 1000)
}

/// Index bounds of the items of a slice sorted by `key` whose key lies in `[lo, hi)`.
pub(crate) fn range_of_by<T, K: Ord>(
    sorted: &[T],
    lo: &K,
    hi: &K,
    key: impl Fn(&T) -> K,
) -> (usize, usize) {
    let a = sorted.partition_point(|x| key(x) < *lo);
    let b = sorted.partition_point(|x| key(x) < *hi);
    (a, b.max(a))
}

/// Counts of values in `[lo, hi)` of a sorted slice, as index bounds.
pub(crate) fn range_of<T: Ord>(sorted: &[T], lo: &T, hi: &T) -> (usize, usize) {
    let a = sorted.partition_point(|x| x < lo);
    let b = sorted.partition_point(|x| x < hi);
    (a, b.max(a))
}
