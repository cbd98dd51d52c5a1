//! The normalized usage model every provider maps its vendor's payloads into.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Names the vendor integration behind a source: an open set of names, one per provider crate
/// (each exports its own, e.g. `usage_provider_kibana::KIND`), validated when the gateway's
/// registry is built. Serialized as the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProviderKind(&'static str);

impl ProviderKind {
    /// The in-memory provider used by tests and examples (`usage_core::test_util`).
    pub const STATIC: Self = Self::new("static");

    /// A provider name: lowercase ASCII letters, digits, `-` and `_`, starting with a letter, at
    /// most 32 bytes (checked at compile time where the name is a constant).
    pub const fn new(name: &'static str) -> Self {
        assert!(
            Self::is_valid(name),
            "a provider name is a lowercase letter, then at most 31 of a-z, 0-9, - and _"
        );
        Self(name)
    }

    /// Reports whether `name` may name a provider.
    pub const fn is_valid(name: &str) -> bool {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > 32 || !b[0].is_ascii_lowercase() {
            return false;
        }
        let mut i = 1;
        while i < b.len() {
            let c = b[i];
            if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_') {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Returns the wire name (`digitalocean`, `kibana`, ...).
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for ProviderKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl utoipa::PartialSchema for ProviderKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        // The names come from the gateway's registry, which adds them as `enum` values to this
        // schema in its OpenAPI document.
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A provider name (the registered vendor integrations).",
            ))
            .into()
    }
}

impl ToSchema for ProviderKind {}

/// The agent id under which usage without an agent (e.g. a ChatBotKit record without `botId`) is
/// counted, so that it is never dropped.
pub const UNATTRIBUTED_AGENT: &str = "(unattributed)";

/// A dimension rows can be grouped by.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// The configured source name.
    Source,
    /// The provider kind of the source.
    Provider,
    /// The vendor's agent (or bot) id.
    Agent,
    /// The end user, where the vendor knows one.
    User,
    /// The conversation, where the vendor knows one.
    Conversation,
    /// The vendor's usage type (e.g. `INPUT`, `BASE`, `log_insights:INPUT`).
    UsageType,
    /// The model that did the work, where the vendor says (OpenAI, Anthropic, DigitalOcean
    /// from the agent's model).
    Model,
}

impl Dimension {
    /// Every dimension, in canonical (row sort) order.
    pub const ALL: [Dimension; 7] = [
        Self::Source,
        Self::Provider,
        Self::Agent,
        Self::User,
        Self::Conversation,
        Self::UsageType,
        Self::Model,
    ];

    /// Returns the wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Provider => "provider",
            Self::Agent => "agent",
            Self::User => "user",
            Self::Conversation => "conversation",
            Self::UsageType => "usage_type",
            Self::Model => "model",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Reports whether the dimension comes from the provider's data (as opposed to the
    /// gateway's own `source`/`provider` labels).
    pub fn is_vendor_dimension(self) -> bool {
        !matches!(self, Self::Source | Self::Provider)
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How exactly a source places usage in time.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Attribution {
    /// Usage is counted inside the exact window asked for.
    Exact,
    /// A conversation's lifetime totals are placed at its last update.
    Conversation,
    /// Usage is placed from consumption snapshots kept by the usage store: the growth of each
    /// conversation between two polls is placed at its update time, so it lies within the
    /// poll interval of when it happened and never moves once recorded (the source's entry
    /// states the resolution).
    Snapshot,
}

/// The unit a counter is measured in. Numbers of different units are never added together.
///
/// Besides tokens and credits, vendors meter some work in units that are not tokens (OpenAI's
/// images, speech characters, transcribed seconds, code interpreter sessions, search requests;
/// Anthropic's web search requests): those are counted in their own unit (in `other`, with the
/// vendor's name for them as the usage type), never added to tokens.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Raw model tokens.
    Tokens,
    /// ChatBotKit credit tokens.
    Credits,
    /// Generated or edited images.
    Images,
    /// Characters of text turned into speech.
    Characters,
    /// Seconds of audio transcribed.
    Seconds,
    /// Sessions (e.g. OpenAI code interpreter sessions).
    Sessions,
    /// Requests to a metered tool (e.g. web or file search calls).
    Requests,
}

impl Unit {
    /// Every unit.
    pub const ALL: [Unit; 7] = [
        Self::Tokens,
        Self::Credits,
        Self::Images,
        Self::Characters,
        Self::Seconds,
        Self::Sessions,
        Self::Requests,
    ];

    /// Returns the wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::Credits => "credits",
            Self::Images => "images",
            Self::Characters => "characters",
            Self::Seconds => "seconds",
            Self::Sessions => "sessions",
            Self::Requests => "requests",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|u| u.as_str() == s)
    }
}

/// Describes a configured source and what it can answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    /// The unique, configured source name.
    pub name: String,
    /// The provider behind it.
    pub provider: ProviderKind,
    /// How exactly usage is placed in time.
    pub attribution: Attribution,
    /// Vendor dimensions the source can fill (`agent`, `user`, `conversation`, `usage_type`).
    pub dimensions: BTreeSet<Dimension>,
    /// Vendor dimensions the source can filter by (`agent`, `user`).
    pub filters: BTreeSet<Dimension>,
}

/// An agent (or bot) as the vendor lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Agent {
    /// The vendor's id (DigitalOcean uuid, Kibana agent id, ChatBotKit bot id).
    pub id: String,
    /// The human name, when the vendor gives one.
    pub name: Option<String>,
    /// The model the agent runs on, when the vendor's agent list says (DigitalOcean): its usage
    /// is attributed to that model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A half-open time window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// Inclusive start.
    pub start: DateTime<Utc>,
    /// Exclusive end.
    pub end: DateTime<Utc>,
}

impl Window {
    /// Creates a window; `start` must be before `end`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        debug_assert!(start < end, "window start must precede its end");
        Self { start, end }
    }

    /// Reports whether `t` falls inside `[start, end)`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

/// What a provider is asked: usage within each of `windows`, split by `dimensions`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageQuery {
    /// Disjoint, ascending windows to answer for. Each answer point belongs to exactly one.
    pub windows: Vec<Window>,
    /// Vendor dimensions to keep; all others are collapsed (left `None`) in the answer.
    pub dimensions: BTreeSet<Dimension>,
    /// Only these agent ids, when set.
    pub agents: Option<BTreeSet<String>>,
    /// Only these users, when set (only asked of sources that can filter by user).
    pub users: Option<BTreeSet<String>>,
    /// Only these models, when set (only asked of sources that can filter by model).
    pub models: Option<BTreeSet<String>>,
    /// A refresh (`Cache-Control: no-cache`): the provider answers from the vendor, not from any
    /// cache of its own (scans, agent lists), so that a failing vendor shows; what it fetches
    /// refills those caches.
    pub refresh: bool,
}

impl UsageQuery {
    /// Creates a query for one window with no filters and the given dimensions.
    pub fn new(windows: Vec<Window>, dimensions: BTreeSet<Dimension>) -> Self {
        Self {
            windows,
            dimensions,
            agents: None,
            users: None,
            models: None,
            refresh: false,
        }
    }

    /// Returns the window holding `t`, if any.
    pub fn window_of(&self, t: DateTime<Utc>) -> Option<Window> {
        self.window_index_of(t).map(|i| self.windows[i])
    }

    /// Returns the index in `windows` of the window holding `t`, if any.
    pub fn window_index_of(&self, t: DateTime<Utc>) -> Option<usize> {
        let idx = self.windows.partition_point(|w| w.end <= t);
        self.windows.get(idx).filter(|w| w.contains(t)).map(|_| idx)
    }

    /// Reports whether an agent passes the agent filter.
    pub fn wants_agent(&self, id: &str) -> bool {
        self.agents.as_ref().is_none_or(|a| a.contains(id))
    }

    /// Reports whether a user passes the user filter.
    pub fn wants_user(&self, user: Option<&str>) -> bool {
        match &self.users {
            None => true,
            Some(users) => user.is_some_and(|u| users.contains(u)),
        }
    }

    /// Reports whether a model passes the model filter (usage without a model never passes a
    /// set filter).
    pub fn wants_model(&self, model: Option<&str>) -> bool {
        match &self.models {
            None => true,
            Some(models) => model.is_some_and(|m| models.contains(m)),
        }
    }

    /// Reports whether the answer should keep a dimension.
    pub fn keeps(&self, d: Dimension) -> bool {
        self.dimensions.contains(&d)
    }
}

/// Finds the windows of instants given in epoch milliseconds, as vendors' usage records carry
/// them, for a long run of records in time order: the last window found is checked first, so
/// each record in the same window as the one before costs two integer comparisons instead of a
/// date conversion and a binary search.
#[derive(Debug)]
pub struct MillisWindows<'q> {
    query: &'q UsageQuery,
    /// `[ceil_ms(start), ceil_ms(end))` and the index of the last window found.
    last: Option<(i64, i64, usize)>,
}

impl<'q> MillisWindows<'q> {
    /// Creates a finder over `query`'s windows.
    pub fn new(query: &'q UsageQuery) -> Self {
        Self { query, last: None }
    }

    /// Returns the index in the query's `windows` of the window holding the instant `ms`.
    pub fn index_of(&mut self, ms: i64) -> Option<usize> {
        if let Some((lo, hi, idx)) = self.last
            && lo <= ms
            && ms < hi
        {
            return Some(idx);
        }
        let idx = self
            .query
            .window_index_of(DateTime::from_timestamp_millis(ms)?)?;
        let w = self.query.windows[idx];
        self.last = Some((ceil_ms(w.start), ceil_ms(w.end), idx));
        Some(idx)
    }
}

/// Rounds up to the millisecond: an instant of whole milliseconds `t` lies at or after `x` iff
/// `t >= ceil_ms(x)`.
///
/// An instant inside a leap second (`23:59:60.5`, which `parse_instant` accepts) sorts after
/// every instant of the second before and before the next second's start, so it rounds up to
/// that start; `timestamp_millis` would count its extra second and land half a second late.
pub fn ceil_ms(t: DateTime<Utc>) -> i64 {
    let nanos = t.timestamp_subsec_nanos();
    if nanos >= 1_000_000_000 {
        return t.timestamp().saturating_add(1).saturating_mul(1000);
    }
    let ms = t.timestamp_millis();
    if nanos.is_multiple_of(1_000_000) {
        ms
    } else {
        ms.saturating_add(1)
    }
}

/// The input/output/other token counters of one point or row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counters {
    /// Input (prompt) tokens.
    pub input: u64,
    /// Output (completion) tokens.
    pub output: u64,
    /// Everything neither input nor output, including vendors that give no split.
    pub other: u64,
}

impl Counters {
    /// Returns `input + output + other`, saturating.
    pub fn total(&self) -> u64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.other)
    }

    /// Adds another set of counters, saturating.
    pub fn add(&mut self, o: &Counters) {
        self.input = self.input.saturating_add(o.input);
        self.output = self.output.saturating_add(o.output);
        self.other = self.other.saturating_add(o.other);
    }

    /// Reports whether every counter is zero.
    pub fn is_zero(&self) -> bool {
        self.input == 0 && self.output == 0 && self.other == 0
    }
}

/// The vendor-side labels of a point; `None` means "unknown or collapsed".
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PointKey {
    /// Agent id.
    pub agent: Option<String>,
    /// End user.
    pub user: Option<String>,
    /// Conversation id.
    pub conversation: Option<String>,
    /// Vendor usage type.
    pub usage_type: Option<String>,
    /// Model.
    pub model: Option<String>,
}

impl PointKey {
    /// Returns the label for a vendor dimension (`None` for `source`/`provider`).
    pub fn get(&self, d: Dimension) -> Option<&str> {
        match d {
            Dimension::Agent => self.agent.as_deref(),
            Dimension::User => self.user.as_deref(),
            Dimension::Conversation => self.conversation.as_deref(),
            Dimension::UsageType => self.usage_type.as_deref(),
            Dimension::Model => self.model.as_deref(),
            Dimension::Source | Dimension::Provider => None,
        }
    }

    /// Keeps only the labels of the given dimensions.
    #[must_use]
    pub fn project(mut self, keep: &BTreeSet<Dimension>) -> Self {
        if !keep.contains(&Dimension::Agent) {
            self.agent = None;
        }
        if !keep.contains(&Dimension::User) {
            self.user = None;
        }
        if !keep.contains(&Dimension::Conversation) {
            self.conversation = None;
        }
        if !keep.contains(&Dimension::UsageType) {
            self.usage_type = None;
        }
        if !keep.contains(&Dimension::Model) {
            self.model = None;
        }
        self
    }
}

/// One normalized measurement: counters for a key inside one of the query's windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsagePoint {
    /// The query window this point belongs to.
    pub window: Window,
    /// The vendor labels.
    pub key: PointKey,
    /// The agent's human name, when known.
    pub agent_name: Option<String>,
    /// The unit of the counters.
    pub unit: Unit,
    /// The counters.
    pub counters: Counters,
}

impl UsagePoint {
    /// Keeps only the labels of the given dimensions, and the agent name only with the agent.
    #[must_use]
    pub fn project(mut self, keep: &BTreeSet<Dimension>) -> Self {
        self.key = self.key.project(keep);
        if !keep.contains(&Dimension::Agent) {
            self.agent_name = None;
        }
        self
    }
}

/// A provider's answer to one [`UsageQuery`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBatch {
    /// The points, at most one per (window, key, unit) once [`UsageBatch::compact`] ran.
    pub points: Vec<UsagePoint>,
    /// How many HTTP requests the provider sent upstream to answer.
    pub upstream_requests: u64,
    /// Vendor-flagged warnings (Kibana `high_input_tokens`) per window, when the vendor has such
    /// a notion (`Some`, possibly empty) — per window so that answers can be cached per window.
    pub warnings: Option<BTreeMap<Window, u64>>,
    /// Remarks on data the answer lacks although the call succeeded (e.g. an agent the vendor no
    /// longer knows); shown to callers in the source's entry.
    pub notes: Vec<String>,
    /// Set when the answer lacks data the source holds (e.g. agents on an agent list page that
    /// could not be read; `notes` say which): the gateway's answer is then not `complete`.
    pub partial: bool,
    /// For vendors that report usage in fixed buckets (OpenAI, Anthropic): the bucket widths the
    /// answer was read at, coarsest first, joined by `, ` (`1d`, or `1d, 1h, 1m` for a week
    /// whose ends fall inside hours), shown in the source's entry.
    pub bucket_width: Option<String>,
}

impl UsageBatch {
    /// Sums the vendor-flagged warnings over every window.
    pub fn warnings_total(&self) -> Option<u64> {
        self.warnings.as_ref().map(|w| w.values().sum())
    }

    /// Merges points with the same window, key and unit, and sorts them, so that equal answers
    /// are equal values.
    #[must_use]
    pub fn compact(mut self) -> Self {
        let mut merged: BTreeMap<(Window, PointKey, Unit), (Option<String>, Counters)> =
            BTreeMap::new();
        for p in self.points.drain(..) {
            let e = merged
                .entry((p.window, p.key, p.unit))
                .or_insert((None, Counters::default()));
            if e.0.is_none() {
                e.0 = p.agent_name;
            }
            e.1.add(&p.counters);
        }
        self.points = merged
            .into_iter()
            .map(|((window, key, unit), (agent_name, counters))| UsagePoint {
                window,
                key,
                agent_name,
                unit,
                counters,
            })
            .collect();
        self
    }

    /// Approximates the heap size of the batch in bytes, for cache weighing.
    pub fn approx_bytes(&self) -> usize {
        let strings: usize = self
            .points
            .iter()
            .map(|p| {
                [
                    &p.key.agent,
                    &p.key.user,
                    &p.key.conversation,
                    &p.key.usage_type,
                    &p.key.model,
                    &p.agent_name,
                ]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>()
            })
            .sum();
        std::mem::size_of::<Self>()
            + self.points.len() * std::mem::size_of::<UsagePoint>()
            + strings
    }
}

/// One vendor-reported cost: money spent for a key inside one of the query's windows (vendor
/// cost APIs report whole UTC days: OpenAI's `/v1/organization/costs`, Anthropic's
/// `/v1/organizations/cost_report`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostPoint {
    /// The query window this cost belongs to.
    pub window: Window,
    /// The vendor labels: agent = project or workspace, model where the vendor says,
    /// usage type = the vendor's line item or token type.
    pub key: PointKey,
    /// The unit of the usage this cost is for (`tokens` for token line items, `images`,
    /// `requests` for tool calls, ...), so that it joins the rows of that unit.
    pub unit: Unit,
    /// The amount, unrounded.
    pub money: crate::money::Money,
}

/// A provider's answer to a cost query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostBatch {
    /// The points, at most one per (window, key, unit, currency) once [`CostBatch::compact`]
    /// ran.
    pub points: Vec<CostPoint>,
    /// How many HTTP requests the provider sent upstream to answer.
    pub upstream_requests: u64,
    /// Remarks on the answer, shown to callers in the source's entry.
    pub notes: Vec<String>,
}

impl CostBatch {
    /// Merges points with the same window, key, unit and currency (amounts added exactly), and
    /// sorts them, so that equal answers are equal values. `None` when a sum would overflow.
    pub fn compact(mut self) -> Option<Self> {
        let mut merged: BTreeMap<
            (Window, PointKey, Unit, crate::money::Currency),
            rust_decimal::Decimal,
        > = BTreeMap::new();
        for p in self.points.drain(..) {
            let sum = merged
                .entry((p.window, p.key, p.unit, p.money.currency))
                .or_insert(rust_decimal::Decimal::ZERO);
            *sum = sum.checked_add(p.money.amount)?;
        }
        self.points = merged
            .into_iter()
            .map(|((window, key, unit, currency), amount)| CostPoint {
                window,
                key,
                unit,
                money: crate::money::Money { amount, currency },
            })
            .collect();
        Some(self)
    }

    /// The amounts summed per currency over the points `keep` accepts.
    pub fn sum(&self, keep: impl Fn(&CostPoint) -> bool) -> crate::money::Costs {
        let mut c = crate::money::Costs::default();
        for p in self.points.iter().filter(|p| keep(p)) {
            // Overflow is out of reach for sums of compacted points; ignore it here.
            let _ = c.add(p.money);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn millis_windows_agree_with_window_of_in_any_order() {
        let base = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let sub = chrono::Duration::microseconds(500);
        let w = |a: i64, b: i64| {
            Window::new(
                base + chrono::Duration::milliseconds(a),
                base + chrono::Duration::milliseconds(b),
            )
        };
        // Adjacent windows, a gap, and edges that fall between two milliseconds.
        let mut third = w(30, 40);
        third.start += sub;
        third.end += sub;
        let q = UsageQuery::new(vec![w(0, 10), w(10, 20), third], BTreeSet::new());
        let b = base.timestamp_millis();
        let mut times: Vec<i64> = (-5..50).map(|d| b + d).collect();
        let reversed: Vec<i64> = times.iter().rev().copied().collect();
        times.extend(reversed);
        times.extend([b + 35, b + 5, b + 30, b + 31, b + 40, b + 41, b + 15]);
        let mut finder = MillisWindows::new(&q);
        for ms in times {
            let want = q.window_of(at(ms));
            let got = finder.index_of(ms).map(|i| q.windows[i]);
            assert_eq!(got, want, "at {} ms", ms - b);
        }
        assert_eq!(finder.index_of(i64::MAX), None);
    }

    #[test]
    fn a_bound_inside_a_leap_second_rounds_up_to_the_next_second() {
        let midnight = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        let leap = crate::time::parse_instant("2026-12-31T23:59:60.5Z", chrono_tz::UTC).unwrap();
        assert!(leap < midnight && leap > midnight - chrono::Duration::seconds(1));
        assert_eq!(ceil_ms(leap), midnight.timestamp_millis());
        let q = UsageQuery::new(
            vec![
                Window::new(midnight - chrono::Duration::hours(1), leap),
                Window::new(leap, midnight + chrono::Duration::hours(1)),
            ],
            BTreeSet::new(),
        );
        let m = midnight.timestamp_millis();
        let mut finder = MillisWindows::new(&q);
        for ms in [m - 1, m + 200, m - 1, m, m - 2_000] {
            assert_eq!(
                finder.index_of(ms),
                q.window_index_of(at(ms)),
                "at {} ms",
                ms - m
            );
        }
    }
}

/// One conversation's lifetime totals as a vendor reports them at one poll (Kibana's
/// consumption API): what a snapshot of a conversation holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationTotals {
    /// The agent the conversation belongs to.
    pub agent: String,
    /// The agent's human name, when known.
    pub agent_name: Option<String>,
    /// The conversation id (unique within its agent).
    pub conversation: String,
    /// The user, when known.
    pub user: Option<String>,
    /// When the conversation was last updated (its last round).
    pub updated_at: DateTime<Utc>,
    /// The unit of the counters.
    pub unit: Unit,
    /// The lifetime totals.
    pub counters: Counters,
    /// Rounds (user turns) so far, when the vendor reports them.
    pub rounds: Option<u64>,
    /// LLM calls so far, when the vendor reports them.
    pub llm_calls: Option<u64>,
}

/// A provider's answer to [`crate::UsageProvider::conversations`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationBatch {
    /// Every conversation updated at or after the asked instant, with its lifetime totals.
    pub conversations: Vec<ConversationTotals>,
    /// How many HTTP requests the provider sent upstream to answer.
    pub upstream_requests: u64,
    /// Remarks on data the answer lacks although the call succeeded.
    pub notes: Vec<String>,
}
