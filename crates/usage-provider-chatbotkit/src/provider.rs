//! [`ChatbotkitProvider`]: the [`UsageProvider`] for ChatBotKit, its mode choice and the mapping
//! functions from ChatBotKit payloads to [`UsagePoint`]s.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use usage_core::budget::Budget;
use usage_core::model::{MillisWindows, ceil_ms};
use usage_core::plugin::{AgentList, Discovery};
use usage_core::transport::Transport;
use usage_core::{
    Agent, Attribution, Counters, Dimension, PointKey, ProviderError, SourceInfo,
    UNATTRIBUTED_AGENT, Unit, UsageBatch, UsagePoint, UsageProvider, UsageQuery, Window,
};

use crate::client::{Client, Pager, RecordFilter};
use crate::config::{Config, RecordTypes};
use crate::error::{Error, ErrorKind};
use crate::model::BotUsageResponse;
use crate::scan::{Record, ScanCache, ScanCtx, ScanState, Timing};

/// The only record type `GET /v1/bot/{botId}/usage/fetch` counts.
pub(crate) const BASE_TYPE: &str = "BASE";

/// The vendor dimensions ChatBotKit fills.
const DIMENSIONS: [Dimension; 4] = [
    Dimension::Agent,
    Dimension::User,
    Dimension::Conversation,
    Dimension::UsageType,
];

/// Reads ChatBotKit usage: per-bot range totals when the query allows, usage records otherwise.
pub struct ChatbotkitProvider {
    name: String,
    config: Config,
    client: Client,
    /// The fixed bot list, when configured: the source covers only these bots.
    scope: Option<BTreeSet<String>>,
    /// The bots: the fixed list, or listed and kept for `discovery_ttl`.
    agents: AgentList,
    scans: ScanCache,
}

impl fmt::Debug for ChatbotkitProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatbotkitProvider")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("scans", &self.scans)
            .finish_non_exhaustive()
    }
}

impl ChatbotkitProvider {
    /// Creates the provider for source `name`, checking the configuration; every request goes
    /// through `http`.
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
        let transport = Transport::new(
            &name,
            http,
            Budget::new(
                config.rate_limit_per_minute.and_then(NonZeroU32::new),
                config.max_concurrency,
            ),
            config.max_body_bytes,
        );
        let client = Client::new(
            transport,
            config.base_url.clone(),
            config.token.clone(),
            config.page_size,
        );
        let scope: Option<BTreeSet<String>> = config
            .agents
            .as_ref()
            .map(|a| a.iter().map(|s| s.trim().to_owned()).collect());
        let fixed: Option<Vec<&String>> = scope.as_ref().map(|ids| ids.iter().collect());
        Ok(Self {
            name,
            agents: AgentList::from_ids(fixed.as_deref(), config.discovery_ttl),
            config,
            client,
            scope,
            scans: ScanCache::default(),
        })
    }

    fn timing(&self) -> Timing {
        Timing {
            open_ttl: self.config.open_ttl,
            closed_ttl: self.config.closed_ttl,
            settle: self.config.settle,
        }
    }

    /// Lists the bots: the fixed list, or `GET /v1/bot/list` (cached for `discovery_ttl`; a
    /// `refresh` lists again).
    async fn discover(&self, refresh: bool, calls: &AtomicU64) -> Result<Arc<Vec<Agent>>, Error> {
        let discover = || async {
            let mut out: Vec<Agent> = Vec::new();
            let mut ids: HashSet<String> = HashSet::new();
            let mut pager = Pager::default();
            let mut cursor: Option<String> = None;
            loop {
                pager.admit(&self.client, "bot/list")?;
                let page = self.client.list_bots(cursor.as_deref(), calls).await?;
                let items = page.items.unwrap_or_default();
                let raw_len = items.len();
                for bot in items {
                    let Some(id) = bot.id.filter(|i| !i.is_empty()) else {
                        continue;
                    };
                    if ids.insert(id.clone()) {
                        out.push(Agent {
                            id,
                            name: bot.name.filter(|n| !n.is_empty()).or(bot.alias),
                            model: None,
                        });
                    }
                }
                match pager.next(raw_len, page.cursor) {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            out.sort();
            Ok::<_, Error>(Discovery {
                agents: out,
                keep: true,
                report: (),
            })
        };
        Ok(self.agents.get(refresh, discover).await?.0)
    }

    /// Decides how to answer a query.
    fn plan(&self, query: &UsageQuery) -> Plan {
        let agents: Option<BTreeSet<String>> = match (&self.scope, &query.agents) {
            (None, None) => None,
            (None, Some(q)) => Some(q.clone()),
            (Some(s), None) => Some(s.clone()),
            (Some(s), Some(q)) => Some(s.intersection(q).cloned().collect()),
        };
        if query.windows.is_empty()
            || agents.as_ref().is_some_and(BTreeSet::is_empty)
            || query.users.as_ref().is_some_and(BTreeSet::is_empty)
        {
            return Plan::Empty;
        }
        let bot_id = agents
            .as_ref()
            .filter(|a| a.len() == 1)
            .and_then(|a| a.first())
            .filter(|a| a.as_str() != UNATTRIBUTED_AGENT)
            .cloned();
        let contact_id = query
            .users
            .as_ref()
            .filter(|u| u.len() == 1)
            .and_then(|u| u.first())
            .cloned();
        let filter = RecordFilter {
            bot_id,
            contact_id,
            usage_type: (self.config.record_types == RecordTypes::Base)
                .then(|| BASE_TYPE.to_owned()),
        };
        let record_level = query.keeps(Dimension::User)
            || query.keeps(Dimension::Conversation)
            || query.keeps(Dimension::UsageType)
            || query.users.is_some()
            || self.config.record_types == RecordTypes::All;
        match agents {
            // Per-bot totals need bot ids, and cannot see records without a bot; with no agent
            // filter (all bots, deleted ones and unattributed records included) only the record
            // list is complete.
            Some(bots) if !record_level && !bots.contains(UNATTRIBUTED_AGENT) => Plan::Range {
                bots: bots.into_iter().collect(),
                filter,
            },
            agents => Plan::Records { agents, filter },
        }
    }

    /// Answers from any cached scan whose filter is `filter` or broader, without a request.
    fn answer_from_cache(
        &self,
        filter: &RecordFilter,
        query: &UsageQuery,
        cx: &MapCtx<'_>,
    ) -> Option<Mapped> {
        let (from_ms, to_ms) = span_ms(&query.windows)?;
        for key in broader_filters(filter) {
            let Some(slot) = self.scans.existing(&key) else {
                continue;
            };
            // A locked slot is being scanned; the caller will wait on its own filter instead.
            let Ok(state) = slot.try_lock() else {
                continue;
            };
            if state.is_fresh_for(from_ms, to_ms, self.timing()) {
                return Some(map_state(&state, from_ms, to_ms, query, cx));
            }
        }
        None
    }

    async fn records_mode(
        &self,
        filter: &RecordFilter,
        query: &UsageQuery,
        cx: &MapCtx<'_>,
        calls: &AtomicU64,
    ) -> Result<Mapped, Error> {
        if !query.refresh
            && let Some(m) = self.answer_from_cache(filter, query, cx)
        {
            return Ok(m);
        }
        let Some((from_ms, to_ms)) = span_ms(&query.windows) else {
            return Ok(Mapped::default());
        };
        let slot = self.scans.slot(filter);
        let mut state = slot.lock().await;
        let scan = ScanCtx {
            client: &self.client,
            filter,
            calls,
        };
        state
            .ensure(scan, (from_ms, to_ms), self.timing(), query.refresh)
            .await?;
        Ok(map_state(&state, from_ms, to_ms, query, cx))
    }

    async fn range_mode(
        &self,
        bots: &[String],
        query: &UsageQuery,
        cx: &MapCtx<'_>,
        calls: &AtomicU64,
    ) -> Result<Mapped, Error> {
        let mut tasks = Vec::new();
        for bot in bots {
            for w in &query.windows {
                let from = ceil_ms(w.start);
                let end = ceil_ms(w.end);
                if end <= from {
                    continue;
                }
                // `to` is inclusive at millisecond precision upstream (the simulator and the
                // vendor's example read it so), so the last instant of [start, end) is end - 1ms.
                let to = end - 1;
                tasks.push((bot.clone(), *w, fmt_ms(from), fmt_ms(to)));
            }
        }
        let mut results = futures::stream::iter(tasks)
            .map(|(bot, w, from, to)| async move {
                let r = self.client.bot_usage(&bot, &from, &to, calls).await;
                (bot, w, r)
            })
            .buffer_unordered(self.config.max_concurrency);
        let mut out = Mapped::default();
        let mut unknown: BTreeSet<String> = BTreeSet::new();
        while let Some((bot, w, r)) = results.next().await {
            match r {
                Ok(resp) => {
                    let point = bot_usage_to_point(&bot, w, &resp, cx)
                        .map_err(|message| Error::new(&self.name, ErrorKind::Decode { message }))?;
                    out.points.extend(point);
                }
                Err(Error {
                    kind:
                        ErrorKind::NotFound {
                            vendor_body: true, ..
                        },
                    ..
                }) => {
                    unknown.insert(bot);
                }
                Err(e) => return Err(e),
            }
        }
        out.notes.extend(
            unknown.into_iter().map(|b| {
                format!("bot `{b}` is unknown to ChatBotKit (404); it counts as no usage")
            }),
        );
        Ok(out)
    }
}

/// How a query is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Nothing can match (no windows, or an empty filter).
    Empty,
    /// `GET /v1/bot/{botId}/usage/fetch` per bot and window; `filter` names the record scan
    /// that may answer instead when it is cached.
    Range {
        bots: Vec<String>,
        filter: RecordFilter,
    },
    /// A scan of `GET /v1/usage/list` with `filter` sent upstream, then filtered to `agents`.
    Records {
        agents: Option<BTreeSet<String>>,
        filter: RecordFilter,
    },
}

/// Everything the mapping functions need besides the payload.
#[derive(Debug)]
pub(crate) struct MapCtx<'a> {
    /// Dimensions kept in the answer.
    pub keep: BTreeSet<Dimension>,
    /// Only these agent ids (`UNATTRIBUTED_AGENT` for records without a bot), when set.
    pub agents: Option<&'a BTreeSet<String>>,
    /// Bot names by id.
    pub names: &'a HashMap<String, String>,
    /// The configured unit.
    pub unit: Unit,
    /// Which record types count.
    pub record_types: RecordTypes,
}

/// Points plus the remarks gathered while mapping.
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    pub points: Vec<UsagePoint>,
    pub notes: Vec<String>,
}

fn point(window: Window, key: PointKey, cx: &MapCtx<'_>, count: u64) -> UsagePoint {
    let agent_name = if cx.keep.contains(&Dimension::Agent) {
        key.agent.as_ref().and_then(|a| cx.names.get(a)).cloned()
    } else {
        None
    };
    UsagePoint {
        window,
        key: key.project(&cx.keep),
        agent_name,
        unit: cx.unit,
        // ChatBotKit gives no input/output split: counts are `other`, in the configured unit.
        counters: Counters {
            input: 0,
            output: 0,
            other: count,
        },
    }
}

/// Maps one `/v1/bot/{botId}/usage/fetch` answer for one window; `None` when it holds no usage.
pub(crate) fn bot_usage_to_point(
    bot: &str,
    window: Window,
    resp: &BotUsageResponse,
    cx: &MapCtx<'_>,
) -> Result<Option<UsagePoint>, String> {
    let tokens = match &resp.tokens {
        None => 0,
        Some(n) => n
            .as_u64()
            .ok_or_else(|| format!("bot `{bot}` usage: `tokens` is not a non-negative integer"))?,
    };
    if tokens == 0 {
        return Ok(None);
    }
    let key = PointKey {
        agent: Some(bot.to_owned()),
        ..PointKey::default()
    };
    Ok(Some(point(window, key, cx, tokens)))
}

/// Counts of records `records_to_points` left out, for notes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// Records of another type than `BASE` (with `record_types = "base"`).
    pub other_types: u64,
    /// Their summed counts.
    pub other_type_count: u64,
}

/// Maps usage records to points, filtering client-side by type, agent, user and window.
pub(crate) fn records_to_points<'r>(
    records: impl IntoIterator<Item = &'r Record>,
    query: &UsageQuery,
    cx: &MapCtx<'_>,
) -> (Vec<UsagePoint>, Skipped) {
    // Records are summed per window and projected key while still borrowed: a scan holds up to
    // hundreds of thousands of records, and most queries keep one or two dimensions, so strings
    // are copied once per point, not once per record.
    // Keyed by the window's index: hashing a `Window` (two dates) cost more than the rest of
    // the key.
    type Borrowed<'r> = (
        usize,
        Option<&'r str>,
        Option<&'r str>,
        Option<&'r str>,
        Option<&'r str>,
    );
    // Which dimensions are kept, looked up once rather than four times per record.
    let [agent_kept, user_kept, conversation_kept, type_kept] = [
        Dimension::Agent,
        Dimension::User,
        Dimension::Conversation,
        Dimension::UsageType,
    ]
    .map(|d| cx.keep.contains(&d));
    let keep = |kept: bool, v: Option<&'r str>| v.filter(|_| kept);
    // foldhash: the default SipHash made hashing the keys a fifth of mapping a large scan.
    let mut sums: foldhash::HashMap<Borrowed<'r>, u64> = foldhash::HashMap::default();
    let mut skipped = Skipped::default();
    // Records come in time order: most share the window of the record before.
    let mut windows = MillisWindows::new(query);
    for r in records {
        let agent = r.bot_id().unwrap_or(UNATTRIBUTED_AGENT);
        if cx.agents.is_some_and(|a| !a.contains(agent)) || !query.wants_user(r.contact_id()) {
            continue;
        }
        let Some(window) = windows.index_of(r.created_ms) else {
            continue;
        };
        if cx.record_types == RecordTypes::Base && r.usage_type() != Some(BASE_TYPE) {
            skipped.other_types += 1;
            skipped.other_type_count = skipped.other_type_count.saturating_add(r.count);
            continue;
        }
        let key = (
            window,
            keep(agent_kept, Some(agent)),
            keep(user_kept, r.contact_id()),
            keep(conversation_kept, r.conversation_id()),
            keep(type_kept, r.usage_type()),
        );
        let sum = sums.entry(key).or_insert(0);
        *sum = sum.saturating_add(r.count);
    }
    let owned = |v: Option<&str>| v.map(str::to_owned);
    let mut points: Vec<UsagePoint> = sums
        .into_iter()
        .map(|((window, agent, user, conversation, usage_type), count)| {
            let key = PointKey {
                agent: owned(agent),
                user: owned(user),
                conversation: owned(conversation),
                usage_type: owned(usage_type),
                model: None,
            };
            point(query.windows[window], key, cx, count)
        })
        .collect();
    // The map's order is random; answers are not.
    points.sort_unstable_by(|a, b| (a.window, &a.key).cmp(&(b.window, &b.key)));
    (points, skipped)
}

fn map_state(
    state: &ScanState,
    from_ms: i64,
    to_ms: i64,
    query: &UsageQuery,
    cx: &MapCtx<'_>,
) -> Mapped {
    let (points, skipped) = records_to_points(state.records(from_ms, to_ms), query, cx);
    let mut notes = Vec::new();
    if skipped.other_types > 0 {
        notes.push(format!(
            "{} usage records of types other than BASE ({} in their units) are not counted \
             (record_types = \"base\", matching ChatBotKit's per-bot totals)",
            skipped.other_types, skipped.other_type_count
        ));
    }
    if state.skipped() > 0 {
        notes.push(format!(
            "{} usage records without a usable createdAt or count were skipped",
            state.skipped()
        ));
    }
    Mapped { points, notes }
}

/// The filters whose scans hold every record `filter` would return: itself first, then broader.
fn broader_filters(filter: &RecordFilter) -> Vec<RecordFilter> {
    let mut out = vec![filter.clone()];
    let mut push = |f: RecordFilter| {
        if !out.contains(&f) {
            out.push(f);
        }
    };
    push(RecordFilter {
        contact_id: None,
        ..filter.clone()
    });
    push(RecordFilter {
        bot_id: None,
        ..filter.clone()
    });
    push(RecordFilter {
        bot_id: None,
        contact_id: None,
        ..filter.clone()
    });
    out
}

/// Formats epoch milliseconds as ISO 8601 with milliseconds (`2026-11-01T00:00:00.000Z`).
pub(crate) fn fmt_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `[ceil_ms(first start), ceil_ms(last end))` of ascending windows.
fn span_ms(windows: &[Window]) -> Option<(i64, i64)> {
    Some((
        ceil_ms(windows.first()?.start),
        ceil_ms(windows.last()?.end),
    ))
}

#[async_trait]
impl UsageProvider for ChatbotkitProvider {
    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: self.name.clone(),
            provider: crate::KIND,
            attribution: Attribution::Exact,
            dimensions: DIMENSIONS.into_iter().collect(),
            filters: BTreeSet::from([Dimension::Agent, Dimension::User]),
        }
    }

    /// Totals per bot come from the same requests as totals over bots: the per-bot totals are
    /// asked per bot, and a record scan reads every bot's records; so `agent` is fetched
    /// whenever the query stays above record level (with `user`, `conversation` or `usage_type`
    /// the record scan answers, and its scan cache serves every grouping of those).
    fn fetch_dimensions(&self, dims: &BTreeSet<Dimension>) -> BTreeSet<Dimension> {
        let mut out = dims.clone();
        if !dims.iter().any(|d| {
            matches!(
                d,
                Dimension::User | Dimension::Conversation | Dimension::UsageType
            )
        }) {
            out.insert(Dimension::Agent);
        }
        out
    }

    async fn agents(&self) -> Result<Vec<Agent>, ProviderError> {
        let calls = AtomicU64::new(0);
        Ok(self.discover(false, &calls).await?.as_ref().clone())
    }

    async fn usage(&self, query: &UsageQuery) -> Result<UsageBatch, ProviderError> {
        let plan = self.plan(query);
        let calls = AtomicU64::new(0);
        let keep: BTreeSet<Dimension> = query
            .dimensions
            .iter()
            .copied()
            .filter(|d| DIMENSIONS.contains(d))
            .collect();
        let mut notes = Vec::new();
        let mut names: HashMap<String, String> = HashMap::new();
        if plan != Plan::Empty && keep.contains(&Dimension::Agent) && self.scope.is_none() {
            // Names only ride along: without them the numbers are still right.
            match self.discover(query.refresh, &calls).await {
                Ok(bots) => {
                    names = bots
                        .iter()
                        .filter_map(|a| Some((a.id.clone(), a.name.clone()?)))
                        .collect();
                }
                Err(e) => notes.push(format!("bot names are missing: {}", ProviderError::from(e))),
            }
        }
        let mapped = match &plan {
            Plan::Empty => Mapped::default(),
            Plan::Range { bots, filter } => {
                let agents: BTreeSet<String> = bots.iter().cloned().collect();
                let cx = MapCtx {
                    keep,
                    agents: Some(&agents),
                    names: &names,
                    unit: self.config.unit,
                    record_types: self.config.record_types,
                };
                // A cached record scan answers too (both modes count the same records), but not
                // a refresh.
                let cached = if query.refresh {
                    None
                } else {
                    self.answer_from_cache(filter, query, &cx)
                };
                match cached {
                    Some(m) => m,
                    None => self.range_mode(bots, query, &cx, &calls).await?,
                }
            }
            Plan::Records { agents, filter } => {
                let cx = MapCtx {
                    keep,
                    agents: agents.as_ref(),
                    names: &names,
                    unit: self.config.unit,
                    record_types: self.config.record_types,
                };
                self.records_mode(filter, query, &cx, &calls).await?
            }
        };
        notes.extend(mapped.notes);
        Ok(UsageBatch {
            points: mapped.points,
            upstream_requests: calls.load(Ordering::Relaxed),
            warnings: None,
            notes,
            partial: false,
            bucket_width: None,
        }
        .compact())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::model::read_page;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn provider(cfg: impl FnOnce(&mut Config)) -> ChatbotkitProvider {
        let mut c = Config::new("tok");
        cfg(&mut c);
        ChatbotkitProvider::new("cbk", c, reqwest::Client::new()).unwrap()
    }

    fn fixture_records() -> Vec<Record> {
        let mut out = Vec::new();
        for s in [
            include_str!("../../../fixtures/chatbotkit/usage_list_page1.json"),
            include_str!("../../../fixtures/chatbotkit/usage_list_page2.json"),
        ] {
            let (items, _) = read_page(s).unwrap();
            out.extend(items.iter().filter_map(Record::from_wire));
        }
        out
    }

    fn dims(d: &[Dimension]) -> BTreeSet<Dimension> {
        d.iter().copied().collect()
    }

    fn cx<'a>(
        keep: &[Dimension],
        names: &'a HashMap<String, String>,
        types: RecordTypes,
    ) -> MapCtx<'a> {
        MapCtx {
            keep: dims(keep),
            agents: None,
            names,
            unit: Unit::Credits,
            record_types: types,
        }
    }

    const BOT: &str = "cmb1y7r0d000008jv2h6c4wq9";

    #[test]
    fn records_map_to_other_credits_with_every_dimension() {
        let names = HashMap::from([(BOT.to_owned(), "Support Agent".to_owned())]);
        let all = [
            Dimension::Agent,
            Dimension::User,
            Dimension::Conversation,
            Dimension::UsageType,
        ];
        let w = Window::new(t(1_751_000_000_000), t(1_751_100_000_000));
        let q = UsageQuery::new(vec![w], dims(&all));
        let (points, skipped) =
            records_to_points(&fixture_records(), &q, &cx(&all, &names, RecordTypes::Base));
        assert_eq!(
            skipped,
            Skipped {
                other_types: 1,
                other_type_count: 55
            }
        );
        assert_eq!(points.len(), 3);
        let p = points.iter().find(|p| p.counters.other == 1287).unwrap();
        assert_eq!(p.key.agent.as_deref(), Some(BOT));
        assert_eq!(p.key.user.as_deref(), Some("cmb0c0n7t000008l1alice001"));
        assert_eq!(
            p.key.conversation.as_deref(),
            Some("cmb8wzz5f000008l4b1m0a7kp")
        );
        assert_eq!(p.key.usage_type.as_deref(), Some("BASE"));
        assert_eq!(p.agent_name.as_deref(), Some("Support Agent"));
        assert_eq!(p.unit, Unit::Credits);
        assert_eq!(
            (p.counters.input, p.counters.output, p.counters.total()),
            (0, 0, 1287)
        );
        // The record without botId is counted under the unattributed agent, never dropped.
        let u = points.iter().find(|p| p.counters.other == 342).unwrap();
        assert_eq!(u.key.agent.as_deref(), Some(UNATTRIBUTED_AGENT));
        assert_eq!(u.agent_name, None);
        // `all` counts the other type too.
        let (points, skipped) =
            records_to_points(&fixture_records(), &q, &cx(&all, &names, RecordTypes::All));
        assert_eq!(points.len(), 4);
        assert_eq!(skipped, Skipped::default());
    }

    #[test]
    fn records_are_filtered_client_side_and_projected() {
        let names = HashMap::new();
        let w = Window::new(t(1_751_000_000_000), t(1_751_100_000_000));
        let mut q = UsageQuery::new(vec![w], BTreeSet::new());
        q.users = Some(BTreeSet::from(["cmb0c0n7t000008l1bob00002".to_owned()]));
        let (points, _) =
            records_to_points(&fixture_records(), &q, &cx(&[], &names, RecordTypes::Base));
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].key, PointKey::default(), "no dimension kept");
        assert_eq!(points[0].counters.other, 900);
        q.users = None;
        let only_unattributed = BTreeSet::from([UNATTRIBUTED_AGENT.to_owned()]);
        let mut c = cx(&[Dimension::Agent], &names, RecordTypes::Base);
        c.agents = Some(&only_unattributed);
        let (points, _) = records_to_points(&fixture_records(), &q, &c);
        assert_eq!(points.iter().map(|p| p.counters.other).sum::<u64>(), 342);
    }

    #[test]
    fn epoch_ms_window_edges() {
        // Records at start, end - 1ms, end: the last one belongs to the next window.
        let start = 1_800_000_000_000;
        let end = start + 3_600_000;
        let rec = |ms: i64, count: u64| {
            Record::new(
                ms,
                count,
                &format!("r{ms}"),
                [Some("BASE"), Some("b"), None, None],
            )
            .unwrap()
        };
        let records = [
            rec(start - 1, 1),
            rec(start, 10),
            rec(end - 1, 100),
            rec(end, 1000),
        ];
        let w1 = Window::new(t(start), t(end));
        let w2 = Window::new(t(end), t(end + 3_600_000));
        let q = UsageQuery::new(vec![w1, w2], BTreeSet::new());
        let names = HashMap::new();
        let (points, _) = records_to_points(&records, &q, &cx(&[], &names, RecordTypes::Base));
        let batch = UsageBatch {
            points,
            ..UsageBatch::default()
        }
        .compact();
        assert_eq!(batch.points.len(), 2);
        assert_eq!(
            (batch.points[0].window, batch.points[0].counters.other),
            (w1, 110)
        );
        assert_eq!(
            (batch.points[1].window, batch.points[1].counters.other),
            (w2, 1000)
        );
    }

    #[test]
    fn range_times_are_inclusive_milliseconds() {
        let s = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        assert_eq!(fmt_ms(ceil_ms(s)), "2026-11-01T00:00:00.000Z");
        assert_eq!(
            fmt_ms(ceil_ms(s + Duration::hours(1)) - 1),
            "2026-11-01T00:59:59.999Z"
        );
        // Sub-millisecond edges round up, so [start, end) keeps exactly the same records.
        assert_eq!(ceil_ms(s + Duration::microseconds(1)), ceil_ms(s) + 1);
        assert_eq!(ceil_ms(s + Duration::microseconds(1000)), ceil_ms(s) + 1);
    }

    #[test]
    fn bot_usage_mapping() {
        let names = HashMap::from([("b".to_owned(), "Bot".to_owned())]);
        let w = Window::new(t(0), t(1000));
        let c = cx(&[Dimension::Agent], &names, RecordTypes::Base);
        let resp: BotUsageResponse =
            serde_json::from_str(include_str!("../../../fixtures/chatbotkit/bot_usage.json"))
                .unwrap();
        let p = bot_usage_to_point("b", w, &resp, &c).unwrap().unwrap();
        assert_eq!(
            p.counters,
            Counters {
                input: 0,
                output: 0,
                other: 482_113
            }
        );
        assert_eq!(p.agent_name.as_deref(), Some("Bot"));
        assert_eq!(p.key.agent.as_deref(), Some("b"));
        let empty: BotUsageResponse = serde_json::from_str("{}").unwrap();
        assert_eq!(bot_usage_to_point("b", w, &empty, &c).unwrap(), None);
        let neg: BotUsageResponse = serde_json::from_str(r#"{"tokens":-4}"#).unwrap();
        assert!(bot_usage_to_point("b", w, &neg, &c).is_err());
        let c = cx(&[], &names, RecordTypes::Base);
        let p = bot_usage_to_point("b", w, &resp, &c).unwrap().unwrap();
        assert_eq!((p.key, p.agent_name), (PointKey::default(), None));
    }

    #[test]
    fn mode_choice() {
        let w = Window::new(t(0), t(1000));
        let p = provider(|_| {});
        let base = Some("BASE".to_owned());
        // No agent filter: only records are complete (unattributed, deleted bots).
        let q = UsageQuery::new(vec![w], dims(&[Dimension::Agent]));
        assert_eq!(
            p.plan(&q),
            Plan::Records {
                agents: None,
                filter: RecordFilter {
                    usage_type: base.clone(),
                    ..RecordFilter::default()
                }
            }
        );
        let mut q2 = q.clone();
        q2.agents = Some(BTreeSet::from(["b1".to_owned(), "b2".to_owned()]));
        assert!(matches!(p.plan(&q2), Plan::Range { ref bots, .. } if bots == &["b1", "b2"]));
        q2.agents = Some(BTreeSet::from(["b1".to_owned()]));
        assert_eq!(
            p.plan(&q2),
            Plan::Range {
                bots: vec!["b1".into()],
                filter: RecordFilter {
                    bot_id: Some("b1".into()),
                    contact_id: None,
                    usage_type: base.clone()
                }
            }
        );
        q2.agents = Some(BTreeSet::from([
            "b1".to_owned(),
            UNATTRIBUTED_AGENT.to_owned(),
        ]));
        assert!(matches!(p.plan(&q2), Plan::Records { .. }));
        // Any record-level dimension or a user filter needs records.
        for d in [
            Dimension::User,
            Dimension::Conversation,
            Dimension::UsageType,
        ] {
            let mut q3 = q.clone();
            q3.agents = Some(BTreeSet::from(["b1".to_owned()]));
            q3.dimensions.insert(d);
            assert!(matches!(p.plan(&q3), Plan::Records { .. }), "{d}");
        }
        let mut q4 = q.clone();
        q4.agents = Some(BTreeSet::from(["b1".to_owned()]));
        q4.users = Some(BTreeSet::from(["alice".to_owned()]));
        assert_eq!(
            p.plan(&q4),
            Plan::Records {
                agents: q4.agents.clone(),
                filter: RecordFilter {
                    bot_id: Some("b1".into()),
                    contact_id: Some("alice".into()),
                    usage_type: base
                }
            }
        );
        q4.users = Some(BTreeSet::new());
        assert_eq!(p.plan(&q4), Plan::Empty);
        // A fixed bot list is the source's scope.
        let fixed = provider(|c| c.agents = Some(vec!["b1".into(), "b2".into()]));
        assert!(matches!(fixed.plan(&q), Plan::Range { ref bots, .. } if bots.len() == 2));
        let mut q5 = q.clone();
        q5.agents = Some(BTreeSet::from(["b3".to_owned()]));
        assert_eq!(fixed.plan(&q5), Plan::Empty);
        // `all` types always scan records.
        let all = provider(|c| c.record_types = RecordTypes::All);
        assert!(matches!(
            all.plan(&q2),
            Plan::Records {
                filter: RecordFilter {
                    usage_type: None,
                    ..
                },
                ..
            }
        ));
        assert_eq!(
            p.plan(&UsageQuery::new(vec![], BTreeSet::new())),
            Plan::Empty
        );
    }

    #[test]
    fn broader_filters_start_with_the_exact_one() {
        let f = RecordFilter {
            bot_id: Some("b".into()),
            contact_id: Some("c".into()),
            usage_type: Some("BASE".into()),
        };
        let b = broader_filters(&f);
        assert_eq!(b.len(), 4);
        assert_eq!(b[0], f);
        assert!(b[3].bot_id.is_none() && b[3].contact_id.is_none() && b[3].usage_type.is_some());
        assert_eq!(broader_filters(&RecordFilter::default()).len(), 1);
    }

    #[test]
    fn describe_lists_vendor_dimensions_and_debug_hides_the_token() {
        let p = provider(|c| c.token = "sk-secret-xyz".to_owned().into());
        let info = p.describe();
        assert_eq!(info.provider, crate::KIND);
        assert_eq!(info.dimensions.len(), 4);
        assert!(info.filters.is_subset(&info.dimensions));
        assert!(!format!("{p:?}").contains("sk-secret-xyz"));
        let bad = ChatbotkitProvider::new(
            "x",
            Config {
                page_size: 0,
                ..Config::new("t")
            },
            reqwest::Client::new(),
        );
        assert!(matches!(bad, Err(ProviderError::Config { .. })));
    }
}
