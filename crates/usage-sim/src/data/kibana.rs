//! Kibana Agent Builder spaces, agents and conversations with lifetime token totals, and the
//! rounds (with their times) those totals sum.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use usage_core::{Counters, Window};

use super::{DataSpec, TruthFilter, ms_to_time, pooled_name, random_ms, random_uuid};

/// Input tokens of a round above which Kibana flags a `high_input_tokens` warning.
pub const HIGH_INPUT_TOKENS: u64 = 200_000;

const AGENTS: &[(&str, &str)] = &[
    ("search-index-helper", "Search Index Helper"),
    ("log-analyst", "Log Analyst"),
    ("campaign-writer", "Campaign Writer"),
    ("security-triage", "Security Triage"),
    ("sales-insights", "Sales Insights"),
    ("observability-guide", "Observability Guide"),
];
const USERS: &[&str] = &[
    "elastic", "admin", "analyst", "alice", "bob", "carol", "dana",
];
const TITLES: &[&str] = &[
    "Help me search my data",
    "Analyze server logs",
    "Why is checkout slow?",
    "Summarize last week's alerts",
    "Draft a campaign email",
    "Find failed logins",
    "Explain this ES|QL query",
    "Top customers by revenue",
];

/// A Kibana agent as `GET /api/agent_builder/agents` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KibanaAgent {
    /// The agent id (path parameter of the consumption route).
    pub id: String,
    /// The display name.
    pub name: String,
}

/// A `high_input_tokens` warning of one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KibanaWarning {
    /// The round id.
    pub round_id: String,
    /// The round's input tokens (above [`HIGH_INPUT_TOKENS`]).
    pub input_tokens: u64,
}

/// One round of a conversation (a question and the agent's answer) with its usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KibanaRound {
    /// When the round happened (millisecond precision).
    pub at: DateTime<Utc>,
    /// Input tokens of the round.
    pub input_tokens: u64,
    /// Output tokens of the round.
    pub output_tokens: u64,
    /// LLM calls of the round.
    pub llm_calls: u64,
}

/// A conversation with its lifetime cumulative totals and the rounds they sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KibanaConversation {
    /// The conversation id.
    pub id: String,
    /// The title (`""` for some).
    pub title: String,
    /// The user id (absent for some conversations).
    pub user_id: Option<String>,
    /// The username.
    pub username: String,
    /// Creation time (unique within its agent, millisecond precision).
    pub created_at: DateTime<Utc>,
    /// Last update: the instant its lifetime totals are attributed to.
    pub updated_at: DateTime<Utc>,
    /// Lifetime input tokens.
    pub input_tokens: u64,
    /// Lifetime output tokens.
    pub output_tokens: u64,
    /// Number of rounds.
    pub round_count: u64,
    /// Number of LLM calls.
    pub llm_calls: u64,
    /// Rounds with more than [`HIGH_INPUT_TOKENS`] input tokens.
    pub warnings: Vec<KibanaWarning>,
    /// The rounds by `at` ascending, whose sums are the lifetime totals: the first at
    /// `created_at`, the last at `updated_at` (a single round is at `updated_at`).
    pub rounds: Vec<KibanaRound>,
}

impl KibanaConversation {
    /// Returns `input_tokens + output_tokens`.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Returns the rounds with `at <= t` (a prefix of [`Self::rounds`]).
    pub fn rounds_until(&self, t: DateTime<Utc>) -> &[KibanaRound] {
        &self.rounds[..self.rounds.partition_point(|r| r.at <= t)]
    }

    /// Returns the conversation as Kibana showed it at `t`: the totals, warnings and rounds of
    /// its rounds up to `t`, and `updated_at` = the last one's `at`; `None` before its first
    /// round. From its `updated_at` on, that is the conversation itself.
    pub fn as_of(&self, t: DateTime<Utc>) -> Option<Self> {
        let rounds = self.rounds_until(t);
        let last = rounds.last()?;
        Some(Self {
            id: self.id.clone(),
            title: self.title.clone(),
            user_id: self.user_id.clone(),
            username: self.username.clone(),
            created_at: self.created_at,
            updated_at: last.at,
            input_tokens: rounds.iter().map(|r| r.input_tokens).sum(),
            output_tokens: rounds.iter().map(|r| r.output_tokens).sum(),
            round_count: rounds.len() as u64,
            llm_calls: rounds.iter().map(|r| r.llm_calls).sum(),
            warnings: warnings_of(rounds),
            rounds: rounds.to_vec(),
        })
    }
}

/// Returns the `high_input_tokens` warnings of `rounds` (the first round is `round-1`).
fn warnings_of(rounds: &[KibanaRound]) -> Vec<KibanaWarning> {
    rounds
        .iter()
        .enumerate()
        .filter(|(_, r)| r.input_tokens > HIGH_INPUT_TOKENS)
        .map(|(i, r)| KibanaWarning {
            round_id: format!("round-{}", i + 1),
            input_tokens: r.input_tokens,
        })
        .collect()
}

/// The three sortable fields of the consumption route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SortField {
    UpdatedAt,
    TotalTokens,
    RoundCount,
}

impl SortField {
    pub(crate) fn key(self, c: &KibanaConversation) -> i64 {
        match self {
            Self::UpdatedAt => c.updated_at.timestamp_millis(),
            Self::TotalTokens => c.total_tokens().cast_signed(),
            Self::RoundCount => c.round_count.cast_signed(),
        }
    }

    fn index(self) -> usize {
        match self {
            Self::UpdatedAt => 0,
            Self::TotalTokens => 1,
            Self::RoundCount => 2,
        }
    }
}

/// An agent of a space with its conversations and precomputed sort orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentData {
    pub(crate) agent: KibanaAgent,
    pub(crate) description: String,
    /// Sorted by `created_at` ascending.
    pub(crate) conversations: Vec<KibanaConversation>,
    /// For each sort field: indexes sorted by `(key asc, created_at asc)` and by
    /// `(key desc, created_at asc)`.
    orders: [[Vec<u32>; 2]; 3],
    /// The `usernames` terms aggregation: by count desc, then name asc, at most 100.
    pub(crate) usernames: Vec<String>,
}

impl AgentData {
    /// Computes the sort orders and the aggregation of `conversations` (sorted by `created_at`).
    fn new(
        agent: KibanaAgent,
        description: String,
        conversations: Vec<KibanaConversation>,
    ) -> Self {
        let orders = [
            SortField::UpdatedAt,
            SortField::TotalTokens,
            SortField::RoundCount,
        ]
        .map(|f| {
            let mut asc: Vec<u32> = (0..conversations.len() as u32).collect();
            // `conversations` is sorted by created_at, so the index is the tiebreaker.
            asc.sort_by_key(|&i| (f.key(&conversations[i as usize]), i));
            let mut desc: Vec<u32> = (0..conversations.len() as u32).collect();
            desc.sort_by_key(|&i| (std::cmp::Reverse(f.key(&conversations[i as usize])), i));
            [asc, desc]
        });
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for c in &conversations {
            *counts.entry(c.username.as_str()).or_default() += 1;
        }
        let mut by_count: Vec<(&str, u64)> = counts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let usernames = by_count
            .into_iter()
            .take(100)
            .map(|(u, _)| u.to_owned())
            .collect();
        Self {
            agent,
            description,
            conversations,
            orders,
            usernames,
        }
    }

    /// Returns the agent as Kibana showed it at `t`: each conversation
    /// [`as of`](KibanaConversation::as_of) `t`, with sort orders and aggregation of that view.
    pub(crate) fn as_of(&self, t: DateTime<Utc>) -> Self {
        let conversations = self
            .conversations
            .iter()
            .filter_map(|c| c.as_of(t))
            .collect();
        Self::new(self.agent.clone(), self.description.clone(), conversations)
    }

    pub(crate) fn order(&self, field: SortField, desc: bool) -> &[u32] {
        &self.orders[field.index()][usize::from(desc)]
    }
}

/// A space with its agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Space {
    pub(crate) id: String,
    pub(crate) agents: Vec<AgentData>,
}

/// Kibana data, per space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KibanaData {
    spaces: Vec<Space>,
}

impl KibanaData {
    pub(crate) fn generate(spec: &DataSpec, rng: &mut ChaCha8Rng) -> Self {
        let spaces = spec
            .kibana_spaces
            .iter()
            .enumerate()
            .map(|(si, id)| Space {
                id: id.clone(),
                agents: (0..spec.kibana_agents_per_space)
                    .map(|ai| generate_agent(spec, rng, si, ai))
                    .collect(),
            })
            .collect();
        Self { spaces }
    }

    /// Returns the space ids.
    pub fn spaces(&self) -> Vec<&str> {
        self.spaces.iter().map(|s| s.id.as_str()).collect()
    }

    /// Returns the agents of a space (empty for an unknown space).
    pub fn agents(&self, space: &str) -> Vec<KibanaAgent> {
        self.space(space)
            .map(|s| s.agents.iter().map(|a| a.agent.clone()).collect())
            .unwrap_or_default()
    }

    /// Returns the conversations of an agent in a space, sorted by `created_at`.
    pub fn conversations(&self, space: &str, agent: &str) -> &[KibanaConversation] {
        self.space(space)
            .and_then(|s| s.agents.iter().find(|a| a.agent.id == agent))
            .map_or(&[], |a| &a.conversations)
    }

    pub(crate) fn space(&self, id: &str) -> Option<&Space> {
        self.spaces.iter().find(|s| s.id == id)
    }

    /// Returns the conversations of `space` that match `f` (`user` = username; `usage_type`
    /// matches nothing, Kibana has none).
    fn filtered<'a>(
        &'a self,
        space: &str,
        f: &'a TruthFilter,
    ) -> impl Iterator<Item = &'a KibanaConversation> + 'a {
        // Kibana has neither usage types nor models.
        let usage_type_ok = f.usage_type.is_none() && f.model.is_none();
        self.space(space)
            .into_iter()
            .flat_map(|s| &s.agents)
            .filter(move |a| {
                usage_type_ok && TruthFilter::matches_opt(f.agent.as_ref(), Some(&a.agent.id))
            })
            .flat_map(|a| &a.conversations)
            .filter(move |c| {
                TruthFilter::matches_opt(f.user.as_ref(), Some(&c.username))
                    && TruthFilter::matches_opt(f.conversation.as_ref(), Some(&c.id))
            })
    }

    fn matching<'a>(
        &'a self,
        space: &str,
        f: &'a TruthFilter,
        w: Window,
    ) -> impl Iterator<Item = &'a KibanaConversation> + 'a {
        self.filtered(space, f)
            .filter(move |c| w.contains(c.updated_at))
    }

    /// Returns the lifetime totals of the conversations of `space` whose `updated_at` falls in
    /// the half-open window `w` and that match `f` (`user` = username; `usage_type` matches
    /// nothing, Kibana has none). `other` is always 0.
    pub fn truth(&self, space: &str, f: &TruthFilter, w: Window) -> Counters {
        let mut c = Counters::default();
        for conv in self.matching(space, f, w) {
            c.input += conv.input_tokens;
            c.output += conv.output_tokens;
        }
        c
    }

    /// Returns when the usage happened: the tokens of the rounds whose `at` falls in `w`, of the
    /// conversations [`Self::truth`] filters on. Over all time it equals [`Self::truth`].
    pub fn truth_rounds(&self, space: &str, f: &TruthFilter, w: Window) -> Counters {
        let mut c = Counters::default();
        for r in self.filtered(space, f).flat_map(|conv| &conv.rounds) {
            if w.contains(r.at) {
                c.input += r.input_tokens;
                c.output += r.output_tokens;
            }
        }
        c
    }

    /// Returns what the simulator shows with its clock at `at`, placed like [`Self::truth`]:
    /// the totals [`as of`](KibanaConversation::as_of) `at` of the conversations whose
    /// `updated_at` as of `at` falls in `w`. From the last `updated_at` on, it is
    /// [`Self::truth`].
    pub fn truth_as_of(
        &self,
        space: &str,
        f: &TruthFilter,
        w: Window,
        at: DateTime<Utc>,
    ) -> Counters {
        let mut c = Counters::default();
        for conv in self.filtered(space, f) {
            let rounds = conv.rounds_until(at);
            if rounds.last().is_some_and(|r| w.contains(r.at)) {
                for r in rounds {
                    c.input += r.input_tokens;
                    c.output += r.output_tokens;
                }
            }
        }
        c
    }

    /// Returns the number of `high_input_tokens` warnings of the conversations [`Self::truth`]
    /// sums.
    pub fn warnings(&self, space: &str, f: &TruthFilter, w: Window) -> u64 {
        self.matching(space, f, w)
            .map(|c| c.warnings.len() as u64)
            .sum()
    }
}

fn generate_agent(spec: &DataSpec, rng: &mut ChaCha8Rng, si: usize, ai: usize) -> AgentData {
    let (agent, description) = if ai == 0 {
        (
            KibanaAgent {
                id: "elastic-ai-agent".to_owned(),
                name: "Elastic AI Agent".to_owned(),
            },
            "Elastic AI Agent".to_owned(),
        )
    } else {
        let j = (ai - 1) + si * 2;
        let (id, name) = AGENTS[j % AGENTS.len()];
        let ids: Vec<&str> = AGENTS.iter().map(|a| a.0).collect();
        let id = if j < AGENTS.len() {
            id.to_owned()
        } else {
            pooled_name(&ids, j)
        };
        (
            KibanaAgent {
                id,
                name: name.to_owned(),
            },
            format!("{name}: a custom agent."),
        )
    };
    let now_ms = spec.now.timestamp_millis();
    let mut conversations = Vec::with_capacity(spec.kibana_conversations_per_agent);
    for ci in 0..spec.kibana_conversations_per_agent {
        let created_ms = random_ms(rng, spec);
        let username = USERS[weighted_user(rng)].to_owned();
        let user_id = (!rng.random_bool(0.25)).then(|| format!("u_{}", user_hash(&username)));
        let title = if rng.random_bool(0.1) {
            String::new()
        } else {
            TITLES[rng.random_range(0..TITLES.len())].to_owned()
        };
        let rounds: u64 = rng.random_range(1..=20);
        let high_round = if ci % 10 == 3 || rng.random_bool(0.03) {
            Some(rng.random_range(0..rounds))
        } else {
            None
        };
        // Round times are placed below, once `created_at` and `updated_at` are final.
        let mut drawn = Vec::with_capacity(rounds as usize);
        for r in 0..rounds {
            let mut round_input = rng.random_range(400..6000) + r * rng.random_range(200..3000);
            if high_round == Some(r) {
                round_input = rng.random_range(HIGH_INPUT_TOKENS + 1..450_000);
            } else if ci % 10 == 5 && r == 0 {
                // Exactly at the threshold: no warning (the rule is strictly greater).
                round_input = HIGH_INPUT_TOKENS;
            }
            let output_tokens: u64 = rng.random_range(50..1500);
            let llm_calls: u64 = rng.random_range(1..=4);
            drawn.push(KibanaRound {
                at: ms_to_time(created_ms),
                input_tokens: round_input,
                output_tokens,
                llm_calls,
            });
        }
        let duration_ms: i64 = if rng.random_bool(0.7) {
            rng.random_range(10_000..3_600_000)
        } else {
            rng.random_range(3_600_000..5 * 86_400_000)
        };
        let updated_ms = (created_ms + duration_ms).min(now_ms - 1).max(created_ms);
        conversations.push(KibanaConversation {
            id: random_uuid(rng),
            title,
            user_id,
            username,
            created_at: ms_to_time(created_ms),
            updated_at: ms_to_time(updated_ms),
            input_tokens: drawn.iter().map(|r| r.input_tokens).sum(),
            output_tokens: drawn.iter().map(|r| r.output_tokens).sum(),
            round_count: rounds,
            llm_calls: drawn.iter().map(|r| r.llm_calls).sum(),
            warnings: warnings_of(&drawn),
            rounds: drawn,
        });
    }
    // Make `created_at` unique within the agent so (sort key, created_at) is a total order.
    conversations.sort_by_key(|c| c.created_at);
    for i in 1..conversations.len() {
        if conversations[i].created_at <= conversations[i - 1].created_at {
            let bumped = conversations[i - 1].created_at + chrono::Duration::milliseconds(1);
            conversations[i].created_at = bumped;
            if conversations[i].updated_at < bumped {
                conversations[i].updated_at = bumped;
            }
        }
    }
    for c in &mut conversations {
        place_rounds(c);
    }
    AgentData::new(agent, description, conversations)
}

/// Spreads the rounds of `c` evenly from `created_at` to `updated_at` (a single round at
/// `updated_at`) at whole milliseconds: ascending, and distinct when the conversation lasts at
/// least a millisecond per gap. Draws nothing, so the rest of the data does not depend on it.
fn place_rounds(c: &mut KibanaConversation) {
    let from = c.created_at.timestamp_millis();
    let span = c.updated_at.timestamp_millis() - from;
    let gaps = i64::try_from(c.rounds.len().saturating_sub(1)).unwrap_or(i64::MAX);
    for (k, r) in (0_i64..).zip(&mut c.rounds) {
        let offset = if gaps == 0 { span } else { span * k / gaps };
        r.at = ms_to_time(from + offset);
    }
}

fn weighted_user(rng: &mut ChaCha8Rng) -> usize {
    // Earlier names are more frequent.
    let a = rng.random_range(0..USERS.len());
    let b = rng.random_range(0..USERS.len());
    a.min(b)
}

fn user_hash(name: &str) -> String {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{:08x}", h & 0xffff_ffff)
}
