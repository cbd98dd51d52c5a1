//! [`KibanaProvider`]: agent discovery, the cached consumption scans, and the mapping from
//! Kibana conversations to usage points.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use moka::future::Cache;
use serde_json::Value;
use tokio::sync::Mutex;
use usage_core::{
    Agent, Attribution, ConversationBatch, ConversationTotals, Counters, Dimension, PointKey,
    ProviderError, SourceInfo, Unit, UsageBatch, UsagePoint, UsageProvider, UsageQuery, Window,
};

use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::model::{ConsumptionRequest, ConversationConsumption};
use crate::scan::{Conversation, Reach, ScanState, Step, Ttls, Walk};

/// How many (agent, usernames) scans are kept at most.
const MAX_SCANS: u64 = 4096;

/// The warning type Kibana flags rounds above 200 000 input tokens with.
const HIGH_INPUT_TOKENS: &str = "high_input_tokens";

/// A scan is kept per agent and per pushed-down `usernames` filter (sorted).
type ScanKey = (String, Option<Vec<String>>);

/// One scan slot; its lock makes concurrent calls for the same agent share one walk.
type Slot = Arc<Mutex<Option<ScanState>>>;

/// What one `usage` call did upstream.
#[derive(Debug, Default)]
struct CallStats {
    /// HTTP requests sent.
    sent: AtomicU64,
    /// Conversations seen without a readable `updated_at`.
    unplaced: AtomicU64,
}

/// The discovered agent list and when it was fetched.
#[derive(Debug, Clone)]
struct AgentList {
    agents: Arc<Vec<Agent>>,
    fetched_at: DateTime<Utc>,
    fetched: Instant,
}

/// A Kibana Agent Builder source: per-conversation lifetime token totals of the agents of one
/// space, placed at each conversation's `updated_at`.
pub struct KibanaProvider {
    name: String,
    client: Client,
    space: Option<String>,
    fixed_agents: Option<Arc<Vec<Agent>>>,
    page_size: u32,
    /// Agents one call scans at the same time (the source's `max_concurrency`).
    agent_concurrency: usize,
    ttl: Ttls,
    agent_list: Mutex<Option<AgentList>>,
    scans: Cache<ScanKey, Slot>,
}

impl fmt::Debug for KibanaProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KibanaProvider")
            .field("name", &self.name)
            .field("client", &self.client)
            .field("space", &self.space)
            .field("fixed_agents", &self.fixed_agents)
            .field("page_size", &self.page_size)
            .field("ttl", &self.ttl)
            .field("scans", &self.scans.entry_count())
            .finish_non_exhaustive()
    }
}

impl KibanaProvider {
    /// Creates the provider of source `name`, checking the config (exactly one auth mode, a
    /// valid space id, `page_size` within 1..=100). Sends nothing.
    pub fn new(
        name: impl Into<String>,
        config: Config,
        http: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let name = name.into();
        config.validate().map_err(|errors| ProviderError::Config {
            source_name: name.clone(),
            message: errors.join("; "),
        })?;
        let client = Client::new(&name, &config, http)?;
        let ttl = Ttls {
            open: config.open_ttl,
            closed: config.closed_ttl,
            settle: config.settle,
        };
        let space = config.space_prefix().map(str::to_owned);
        let fixed_agents = config.agents.map(|ids| {
            let mut seen = BTreeSet::new();
            Arc::new(
                ids.into_iter()
                    .filter(|id| seen.insert(id.clone()))
                    .map(|id| Agent {
                        id,
                        name: None,
                        model: None,
                    })
                    .collect(),
            )
        });
        Ok(Self {
            space,
            client,
            fixed_agents,
            page_size: config.page_size,
            agent_concurrency: config.max_concurrency,
            ttl,
            agent_list: Mutex::new(None),
            scans: Cache::builder()
                .max_capacity(MAX_SCANS)
                .time_to_idle(config.closed_ttl)
                .build(),
            name,
        })
    }

    /// Returns the agents to consider for a range ending at `end`: the fixed list, or the
    /// discovered one. A discovered list serves `open_ttl`, and `closed_ttl` for ranges that
    /// ended before it was fetched (agents created later have no conversations there); a
    /// `refresh` lists again.
    async fn agents_for(
        &self,
        end: DateTime<Utc>,
        refresh: bool,
        sent: &AtomicU64,
    ) -> Result<Arc<Vec<Agent>>, Error> {
        if let Some(fixed) = &self.fixed_agents {
            return Ok(Arc::clone(fixed));
        }
        let mut cached = self.agent_list.lock().await;
        if let Some(list) = cached.as_ref().filter(|_| !refresh) {
            let age = list.fetched.elapsed();
            if age < self.ttl.open || (end <= list.fetched_at && age < self.ttl.closed) {
                return Ok(Arc::clone(&list.agents));
            }
        }
        let fetched_at = Utc::now();
        let fetched = Instant::now();
        let mut seen = BTreeSet::new();
        let agents: Vec<Agent> = self
            .client
            .list_agents(sent)
            .await?
            .into_iter()
            .filter_map(|a| {
                let id = a.id.0.filter(|id| !id.is_empty())?;
                Some(Agent {
                    name: a.name.0,
                    id,
                    model: None,
                })
            })
            .filter(|a| seen.insert(a.id.clone()))
            .collect();
        let agents = Arc::new(agents);
        *cached = Some(AgentList {
            agents: Arc::clone(&agents),
            fetched_at,
            fetched,
        });
        Ok(agents)
    }

    /// Pages `agent_id`'s conversations (newest first) from `cursor` (or the top) until a page
    /// holds one updated before `stop_before`, or a page is short or empty.
    ///
    /// Every page is added to `walk` together with how far back it reached, so that a walk cut
    /// short by an error still leaves a consistent prefix to keep.
    async fn walk(
        &self,
        (agent_id, usernames): (&str, Option<&[String]>),
        mut cursor: Option<Vec<Value>>,
        stop_before: DateTime<Utc>,
        tally: &CallStats,
        walk: &mut Walk,
    ) -> Result<(), Error> {
        let mut pages = 0_u32;
        loop {
            let body = ConsumptionRequest {
                size: self.page_size,
                sort_field: "updated_at",
                sort_order: "desc",
                search_after: cursor.as_deref().filter(|c| !c.is_empty()),
                usernames,
            };
            let page = self
                .client
                .consumption(agent_id, &body, &tally.sent)
                .await?;
            pages += 1;
            let Some(results) = page.results else {
                return Err(self.decode(format!(
                    "the consumption answer for agent `{agent_id}` has no `results` array"
                )));
            };
            let len = results.len();
            let mut oldest: Option<DateTime<Utc>> = None;
            let mut found = Vec::with_capacity(len);
            for raw in results {
                match raw.0.and_then(conversation_from_wire) {
                    Some(c) => {
                        oldest = Some(oldest.map_or(c.updated_at, |o| o.min(c.updated_at)));
                        found.push(c);
                    }
                    None => {
                        tally.unplaced.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if len < self.page_size as usize {
                walk.conversations.append(&mut found);
                walk.reach = Some(Reach::Everything);
                break;
            }
            let Some(next) = page.search_after.0.filter(|c| !c.is_empty()) else {
                return Err(self.decode(format!(
                    "a full consumption page of agent `{agent_id}` came without `search_after`; cannot page further"
                )));
            };
            if cursor.as_ref() == Some(&next) {
                return Err(self.decode(format!(
                    "the consumption cursor of agent `{agent_id}` did not advance"
                )));
            }
            // A page without a placeable conversation adds nothing and claims no reach.
            if let Some(oldest) = oldest {
                walk.conversations.append(&mut found);
                walk.reach = Some(Reach::Until {
                    oldest,
                    cursor: next.clone(),
                });
                if oldest < stop_before {
                    break;
                }
            }
            cursor = Some(next);
        }
        tracing::debug!(
            source = %self.name,
            agent = agent_id,
            pages,
            conversations = walk.conversations.len(),
            complete = matches!(walk.reach, Some(Reach::Everything)),
            "walked Kibana consumption"
        );
        Ok(())
    }

    fn decode(&self, message: String) -> Error {
        Error::new(&self.name, ErrorKind::Decode(message))
    }

    /// Brings `slot` up to date for `[start, end)`, walking only what the cached scan lacks:
    /// nothing, the open top of the list, the part older than the scan reached, or everything.
    /// A `refresh` walks from the top down to `start` whatever the scan holds. Walks further
    /// back keep the pages they got even when a later page fails.
    async fn ensure(
        &self,
        slot: &mut Option<ScanState>,
        who: (&str, Option<&[String]>),
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        refresh: bool,
        tally: &CallStats,
    ) -> Result<(), Error> {
        let now = Instant::now();
        let step = slot
            .as_ref()
            .and_then(|s| s.next_step(start, end, now, &self.ttl))
            // The same walk a stale top takes, reaching back to `start`: it replaces every
            // conversation of the range (merged only when complete).
            .map(|step| {
                if refresh {
                    Step::FromTop { stop_before: start }
                } else {
                    step
                }
            });
        let state = match (step, slot.as_mut()) {
            (Some(Step::Serve), _) => return Ok(()),
            (Some(Step::FromTop { stop_before }), Some(state)) => {
                // The top is merged only when complete: a partial one cannot replace the old.
                let at = Utc::now();
                let mut walk = Walk::default();
                self.walk(who, None, stop_before, tally, &mut walk).await?;
                state.merge_top(walk, at, now);
                state
            }
            (
                Some(Step::Extend {
                    cursor,
                    stop_before,
                }),
                Some(state),
            ) => {
                let mut walk = Walk::default();
                let result = self
                    .walk(who, Some(cursor), stop_before, tally, &mut walk)
                    .await;
                state.extend(walk);
                return result;
            }
            _ => {
                *slot = None;
                let at = Utc::now();
                let mut walk = Walk::default();
                let result = self.walk(who, None, start, tally, &mut walk).await;
                if walk.reach.is_some() {
                    *slot = Some(ScanState::from_walk(walk, at, now));
                }
                return result;
            }
        };
        // After a refresh of the top, the range may still reach further back than the scan.
        if let Some(Step::Extend {
            cursor,
            stop_before,
        }) = state.coverage_step(start)
        {
            let mut walk = Walk::default();
            let result = self
                .walk(who, Some(cursor), stop_before, tally, &mut walk)
                .await;
            state.extend(walk);
            result?;
        }
        Ok(())
    }

    /// Answers one agent's part of a query from its scan, walking Kibana first if needed.
    async fn agent_points(
        &self,
        agent: &Agent,
        query: &UsageQuery,
        tally: &CallStats,
    ) -> Result<(Vec<UsagePoint>, BTreeMap<Window, u64>), Error> {
        let (Some(first), Some(last)) = (query.windows.first(), query.windows.last()) else {
            return Ok((Vec::new(), BTreeMap::new()));
        };
        let (start, end) = (first.start, last.end);
        let usernames: Option<Vec<String>> =
            query.users.as_ref().map(|u| u.iter().cloned().collect());
        if usernames.is_some() && !query.refresh {
            // An unfiltered scan that already covers the range answers a user filter too.
            if let Some(slot) = self.scans.get(&(agent.id.clone(), None)).await
                && let Ok(guard) = slot.try_lock()
                && let Some(state) = guard.as_ref()
                && state.next_step(start, end, Instant::now(), &self.ttl) == Some(Step::Serve)
            {
                return Ok(conversations_to_points(
                    agent,
                    state.conversations().iter(),
                    query,
                ));
            }
        }
        let key = (agent.id.clone(), usernames);
        let slot = self
            .scans
            .get_with(key.clone(), async { Arc::new(Mutex::new(None)) })
            .await;
        let mut guard = slot.lock().await;
        self.ensure(
            &mut guard,
            (&agent.id, key.1.as_deref()),
            (start, end),
            query.refresh,
            tally,
        )
        .await?;
        Ok(guard.as_ref().map_or_else(
            || (Vec::new(), BTreeMap::new()),
            |state| conversations_to_points(agent, state.conversations().iter(), query),
        ))
    }
}

impl KibanaProvider {
    /// The lifetime totals of `agent`'s conversations updated in `[since, now]`, from its
    /// unfiltered scan (walked back to `since`; `refresh` re-walks it). Conversations without
    /// an id cannot be followed between polls: they are counted in `tally.unplaced`.
    async fn agent_conversations(
        &self,
        agent: &Agent,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        refresh: bool,
        tally: &CallStats,
    ) -> Result<Vec<ConversationTotals>, Error> {
        let key = (agent.id.clone(), None);
        let slot = self
            .scans
            .get_with(key.clone(), async { Arc::new(Mutex::new(None)) })
            .await;
        let mut guard = slot.lock().await;
        // The walk's end is exclusive: one millisecond past now takes in what was updated now.
        let end = now + chrono::TimeDelta::milliseconds(1);
        self.ensure(&mut guard, (&agent.id, None), (since, end), refresh, tally)
            .await?;
        let Some(state) = guard.as_ref() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for c in state.conversations().iter() {
            if c.updated_at < since {
                continue;
            }
            let Some(id) = &c.id else {
                tally.unplaced.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            out.push(ConversationTotals {
                agent: agent.id.clone(),
                agent_name: agent.name.clone(),
                conversation: id.clone(),
                user: c.username.clone(),
                updated_at: c.updated_at,
                unit: Unit::Tokens,
                counters: c.counters,
                rounds: c.rounds,
                llm_calls: c.llm_calls,
            });
        }
        Ok(out)
    }
}

/// Reads one wire conversation; `None` when it has no readable `updated_at` (it cannot be
/// placed in time).
pub(crate) fn conversation_from_wire(c: ConversationConsumption) -> Option<Conversation> {
    let updated_at = c.updated_at.0?;
    let usage = c.token_usage.0.unwrap_or_default();
    let input = usage.input_tokens.0.unwrap_or(0);
    let output = usage.output_tokens.0.unwrap_or(0);
    // `total = input + output`; anything beyond is kept as other rather than dropped.
    let other = usage
        .total_tokens
        .0
        .map_or(0, |t| t.saturating_sub(input.saturating_add(output)));
    let warnings = c.warnings.0.as_ref().map_or(0, |ws| {
        ws.iter()
            .filter(|w| {
                w.0.as_ref()
                    .and_then(|w| w.kind.0.as_deref())
                    .is_some_and(|k| k == HIGH_INPUT_TOKENS)
            })
            .count() as u64
    });
    Some(Conversation {
        rounds: c.round_count.0,
        llm_calls: c.llm_calls.0,
        id: c.conversation_id.0.filter(|s| !s.is_empty()),
        username: c
            .user
            .0
            .and_then(|u| u.username.0)
            .filter(|s| !s.is_empty()),
        updated_at,
        counters: Counters {
            input,
            output,
            other,
        },
        warnings,
    })
}

/// Places each conversation's lifetime totals at its `updated_at`, in the query window holding
/// it; returns the points and, per window, the `high_input_tokens` warnings of the conversations
/// placed.
pub(crate) fn conversations_to_points<'a>(
    agent: &Agent,
    conversations: impl IntoIterator<Item = &'a Conversation>,
    query: &UsageQuery,
) -> (Vec<UsagePoint>, BTreeMap<Window, u64>) {
    let keep_agent = query.keeps(Dimension::Agent);
    let keep_user = query.keeps(Dimension::User);
    let keep_conversation = query.keeps(Dimension::Conversation);
    let mut warnings: BTreeMap<Window, u64> = BTreeMap::new();
    // Summed per window and projected key while borrowed: an agent may hold tens of thousands
    // of conversations, and strings are then copied once per point, not once per conversation.
    let mut sums: foldhash::HashMap<(Window, Option<&'a str>, Option<&'a str>), Counters> =
        foldhash::HashMap::default();
    for c in conversations {
        if !query.wants_user(c.username.as_deref()) {
            continue;
        }
        let Some(window) = query.window_of(c.updated_at) else {
            continue;
        };
        if c.warnings > 0 {
            let w = warnings.entry(window).or_default();
            *w = w.saturating_add(c.warnings);
        }
        let user = c.username.as_deref().filter(|_| keep_user);
        let conversation = c.id.as_deref().filter(|_| keep_conversation);
        sums.entry((window, user, conversation))
            .or_default()
            .add(&c.counters);
    }
    let mut points: Vec<UsagePoint> = sums
        .into_iter()
        .map(|((window, user, conversation), counters)| UsagePoint {
            window,
            key: PointKey {
                agent: Some(agent.id.clone()).filter(|_| keep_agent),
                user: user.map(str::to_owned),
                conversation: conversation.map(str::to_owned),
                usage_type: None,
                model: None,
            },
            agent_name: agent.name.clone().filter(|_| keep_agent),
            unit: Unit::Tokens,
            counters,
        })
        .collect();
    // The map's order is random; answers are not.
    points.sort_unstable_by(|a, b| (a.window, &a.key).cmp(&(b.window, &b.key)));
    (points, warnings)
}

#[async_trait]
impl UsageProvider for KibanaProvider {
    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: self.name.clone(),
            provider: crate::KIND,
            attribution: Attribution::Conversation,
            dimensions: BTreeSet::from([
                Dimension::Agent,
                Dimension::User,
                Dimension::Conversation,
            ]),
            filters: BTreeSet::from([Dimension::Agent, Dimension::User]),
        }
    }

    /// Every scan is per agent: per-agent totals come from the same walks.
    fn fetch_dimensions(&self, dims: &BTreeSet<Dimension>) -> BTreeSet<Dimension> {
        let mut out = dims.clone();
        out.insert(Dimension::Agent);
        out
    }

    async fn agents(&self) -> Result<Vec<Agent>, ProviderError> {
        let sent = AtomicU64::new(0);
        let agents = self
            .agents_for(DateTime::<Utc>::MAX_UTC, false, &sent)
            .await?;
        Ok(agents.as_ref().clone())
    }

    async fn conversations(
        &self,
        since: DateTime<Utc>,
        refresh: bool,
    ) -> Result<Option<ConversationBatch>, ProviderError> {
        let tally = CallStats::default();
        let now = Utc::now();
        let agents = self.agents_for(now, refresh, &tally.sent).await?;
        let scans: Vec<_> = agents
            .iter()
            .map(|agent| self.agent_conversations(agent, since, now, refresh, &tally))
            .collect();
        let parts: Vec<Vec<ConversationTotals>> = stream::iter(scans)
            .buffer_unordered(self.agent_concurrency)
            .try_collect()
            .await?;
        let mut notes = Vec::new();
        let anonymous = tally.unplaced.load(Ordering::Relaxed);
        if anonymous > 0 {
            notes.push(format!(
                "{anonymous} Kibana conversation(s) without an id or a readable `updated_at` \
                 cannot be followed between polls and were left out"
            ));
        }
        Ok(Some(ConversationBatch {
            conversations: parts.into_iter().flatten().collect(),
            upstream_requests: tally.sent.load(Ordering::Relaxed),
            notes,
        }))
    }

    async fn usage(&self, query: &UsageQuery) -> Result<UsageBatch, ProviderError> {
        let tally = CallStats::default();
        let Some(last) = query.windows.last() else {
            return Ok(UsageBatch {
                warnings: Some(BTreeMap::new()),
                ..UsageBatch::default()
            });
        };
        if query.users.as_ref().is_some_and(BTreeSet::is_empty) {
            return Ok(UsageBatch {
                warnings: Some(BTreeMap::new()),
                ..UsageBatch::default()
            });
        }
        let agents = self
            .agents_for(last.end, query.refresh, &tally.sent)
            .await?;
        // Futures are built before the stream, so that no closure sits in the stream's type
        // (which keeps the returned future `Send` for `async_trait`).
        let scans: Vec<_> = agents
            .iter()
            .filter(|a| query.wants_agent(&a.id))
            .map(|agent| self.agent_points(agent, query, &tally))
            .collect();
        let parts: Vec<(Vec<UsagePoint>, BTreeMap<Window, u64>)> = stream::iter(scans)
            .buffer_unordered(self.agent_concurrency)
            .try_collect()
            .await?;
        let mut points = Vec::new();
        let mut warnings: BTreeMap<Window, u64> = BTreeMap::new();
        for (p, per_window) in parts {
            points.extend(p);
            for (window, n) in per_window {
                let w = warnings.entry(window).or_default();
                *w = w.saturating_add(n);
            }
        }
        let mut notes = Vec::new();
        let unplaced = tally.unplaced.load(Ordering::Relaxed);
        if unplaced > 0 {
            tracing::warn!(source = %self.name, unplaced, "Kibana conversations without a readable updated_at");
            notes.push(format!(
                "{unplaced} Kibana conversation(s) without a readable `updated_at` were left out"
            ));
        }
        Ok(UsageBatch {
            points,
            upstream_requests: tally.sent.load(Ordering::Relaxed),
            warnings: Some(warnings),
            notes,
            partial: false,
            bucket_width: None,
        }
        .compact())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use usage_core::Window;

    use super::*;
    use crate::client::decode_object;
    use crate::model::ConsumptionResponse;

    fn page(json: &str) -> Vec<Option<Conversation>> {
        let r: ConsumptionResponse = decode_object(json.as_bytes()).unwrap();
        r.results
            .unwrap()
            .into_iter()
            .map(|c| c.0.and_then(conversation_from_wire))
            .collect()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn agent() -> Agent {
        Agent {
            id: "elastic-ai-agent".into(),
            name: Some("Elastic AI Agent".into()),
            model: None,
        }
    }

    fn all_dims() -> BTreeSet<Dimension> {
        Dimension::ALL.into_iter().collect()
    }

    #[test]
    fn maps_a_documented_page() {
        let convs: Vec<Conversation> = page(include_str!(
            "../../../fixtures/kibana/consumption_page1.json"
        ))
        .into_iter()
        .map(Option::unwrap)
        .collect();
        assert_eq!(convs.len(), 3);
        assert_eq!(
            convs[0],
            Conversation {
                id: Some("conv-def456".into()),
                username: Some("admin".into()),
                updated_at: utc("2025-03-02T14:30:00Z"),
                counters: Counters {
                    input: 250_000,
                    output: 8000,
                    other: 0
                },
                warnings: 1,
                rounds: Some(12),
                llm_calls: Some(20),
            }
        );
        assert_eq!(
            convs[1].username.as_deref(),
            Some("elastic"),
            "user.id may be absent"
        );
        assert_eq!(
            convs[2].warnings, 2,
            "a warning without round_id still counts"
        );
        assert_eq!(convs[2].updated_at, utc("2025-02-28T23:59:59.999Z"));
    }

    #[test]
    fn partial_and_nonsense_entries_never_panic() {
        let convs = page(include_str!(
            "../../../fixtures/kibana/consumption_partial.json"
        ));
        assert_eq!(convs.len(), 6);
        let p1 = convs[0].clone().unwrap();
        assert_eq!(p1.username, None, "user without username");
        assert_eq!(
            p1.counters,
            Counters {
                input: 700,
                output: 30,
                other: 0
            }
        );
        let p2 = convs[1].clone().unwrap();
        assert_eq!(
            p2.updated_at,
            utc("2025-03-01T10:00:00Z"),
            "offsets are honoured"
        );
        assert_eq!(
            p2.counters,
            Counters::default(),
            "no token_usage reads as zero"
        );
        assert_eq!(p2.warnings, 1, "only high_input_tokens warnings count");
        assert!(
            convs[2].is_none(),
            "an unreadable updated_at cannot be placed"
        );
        let p4 = convs[3].clone().unwrap();
        assert_eq!(p4.id, None);
        assert_eq!(
            p4.updated_at,
            utc("2025-03-01T12:00:00Z"),
            "epoch ms are read"
        );
        assert_eq!(
            p4.counters,
            Counters {
                input: 0,
                output: 0,
                other: 50
            },
            "a bare total is not dropped"
        );
        assert!(convs[4].is_none(), "a non-object entry is skipped");
        let p6 = convs[5].clone().unwrap();
        assert_eq!(
            p6.counters,
            Counters {
                input: 0,
                output: 10,
                other: 90
            }
        );
    }

    #[test]
    fn places_totals_in_the_window_of_updated_at() {
        let convs: Vec<Conversation> = page(include_str!(
            "../../../fixtures/kibana/consumption_page1.json"
        ))
        .into_iter()
        .flatten()
        .collect();
        let day = |d: &str| {
            let s = utc(d);
            Window::new(s, s + Duration::days(1))
        };
        // 2025-03-01 and 2025-03-02: conv-9b2e (Feb 28, 23:59:59.999) is outside.
        let q = UsageQuery::new(
            vec![day("2025-03-01T00:00:00Z"), day("2025-03-02T00:00:00Z")],
            all_dims(),
        );
        let (points, warnings) = conversations_to_points(&agent(), &convs, &q);
        assert_eq!(points.len(), 2);
        assert_eq!(warnings.values().sum::<u64>(), 1);
        let p = points
            .iter()
            .find(|p| p.window == day("2025-03-02T00:00:00Z"))
            .unwrap();
        assert_eq!(
            p.key,
            PointKey {
                agent: Some("elastic-ai-agent".into()),
                user: Some("admin".into()),
                conversation: Some("conv-def456".into()),
                usage_type: None,
                model: None,
            }
        );
        assert_eq!(p.agent_name.as_deref(), Some("Elastic AI Agent"));
        assert_eq!(p.unit, Unit::Tokens);

        // Half-open: a window ending exactly at updated_at does not hold it.
        let q = UsageQuery::new(
            vec![Window::new(
                utc("2025-03-02T14:00:00Z"),
                utc("2025-03-02T14:30:00Z"),
            )],
            all_dims(),
        );
        assert!(conversations_to_points(&agent(), &convs, &q).0.is_empty());
    }

    #[test]
    fn projects_dimensions_and_filters_users() {
        let convs: Vec<Conversation> = page(include_str!(
            "../../../fixtures/kibana/consumption_page1.json"
        ))
        .into_iter()
        .flatten()
        .collect();
        let range = Window::new(utc("2025-01-01T00:00:00Z"), utc("2025-04-01T00:00:00Z"));
        let mut q = UsageQuery::new(vec![range], BTreeSet::from([Dimension::User]));
        let batch = UsageBatch {
            points: conversations_to_points(&agent(), &convs, &q).0,
            ..UsageBatch::default()
        }
        .compact();
        assert_eq!(batch.points.len(), 2, "admin and elastic");
        assert!(
            batch
                .points
                .iter()
                .all(|p| p.key.agent.is_none() && p.key.conversation.is_none())
        );
        assert!(batch.points.iter().all(|p| p.agent_name.is_none()));
        let admin = batch
            .points
            .iter()
            .find(|p| p.key.user.as_deref() == Some("admin"))
            .unwrap();
        assert_eq!(
            admin.counters,
            Counters {
                input: 670_000,
                output: 10_100,
                other: 0
            }
        );

        q.users = Some(BTreeSet::from(["elastic".to_owned()]));
        let (points, warnings) = conversations_to_points(&agent(), &convs, &q);
        assert_eq!(points.len(), 1);
        assert!(warnings.is_empty());
        assert_eq!(points[0].counters.input, 15_000);
    }
}
