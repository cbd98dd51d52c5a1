//! The price table: `[[prices]]` entries that price usage the vendors report without money.
//!
//! An entry matches usage by any of `provider`, `source`, `agent`, `model`, `usage_type` and
//! `counter` (`input`, `output`, `other`); an entry without a matcher matches everything of its
//! unit. Each of a point's three counters is priced by the most specific entry that matches it
//! at that instant (the one with the most matchers set); two entries equally specific that can
//! match the same usage while both are valid are a configuration error naming both, so that a
//! price never depends on the order of the file. An entry is valid from `valid_from`
//! (inclusive) to `valid_to` (exclusive), both RFC 3339 instants with their offset (a price
//! change at midnight in Berlin is `2026-11-01T00:00:00+01:00`), so a new price does not rewrite
//! the history priced by the old one.
//!
//! Prices are per million tokens (`per_million_tokens`), per credit (`per_credit`, ChatBotKit)
//! or per unit of a unit that is not tokens (`per_unit`, with `unit`: images, characters,
//! seconds, sessions, requests).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use std::collections::BTreeSet;

use crate::aggregate::PointCost;
use crate::model::{Counters, Dimension, Unit, UsagePoint, Window};
use crate::money::{Currency, Money};

/// One `[[prices]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// Only usage of this provider (`openai`, ...).
    pub provider: Option<String>,
    /// Only usage of this configured source.
    pub source: Option<String>,
    /// Only usage of this agent id.
    pub agent: Option<String>,
    /// Only usage of this model.
    pub model: Option<String>,
    /// Only usage of this usage type.
    pub usage_type: Option<String>,
    /// Only this counter: `input`, `output` or `other`.
    pub counter: Option<String>,
    /// Price per million tokens (decimal string).
    pub per_million_tokens: Option<String>,
    /// Price per ChatBotKit credit (decimal string).
    pub per_credit: Option<String>,
    /// Price per unit of `unit` (decimal string), for units that are not tokens.
    pub per_unit: Option<String>,
    /// With `per_unit`: the unit (`images`, `characters`, `seconds`, `sessions`, `requests`).
    pub unit: Option<String>,
    /// ISO 4217 code (`USD`).
    pub currency: String,
    /// Valid from this instant (RFC 3339 with offset; absent: always before).
    pub valid_from: Option<String>,
    /// Valid until this instant, exclusive (absent: from then on).
    pub valid_to: Option<String>,
}

/// Which counter of a point a price applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    /// `input`.
    Input,
    /// `output`.
    Output,
    /// `other`.
    Other,
}

impl CounterKind {
    const ALL: [Self; 3] = [Self::Input, Self::Output, Self::Other];

    fn parse(s: &str) -> Option<Self> {
        match s {
            "input" => Some(Self::Input),
            "output" => Some(Self::Output),
            "other" => Some(Self::Other),
            _ => None,
        }
    }

    fn of(self, c: &Counters) -> u64 {
        match self {
            Self::Input => c.input,
            Self::Output => c.output,
            Self::Other => c.other,
        }
    }
}

/// A checked entry.
#[derive(Debug, Clone)]
struct Price {
    /// Its place in the file (`prices[3]`), for messages.
    key: String,
    provider: Option<String>,
    source: Option<String>,
    agent: Option<String>,
    model: Option<String>,
    usage_type: Option<String>,
    counter: Option<CounterKind>,
    unit: Unit,
    /// Price of one unit (a token's price is the million's divided by a million).
    per_one: Decimal,
    currency: Currency,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl Price {
    fn specificity(&self) -> usize {
        [
            self.provider.is_some(),
            self.source.is_some(),
            self.agent.is_some(),
            self.model.is_some(),
            self.usage_type.is_some(),
            self.counter.is_some(),
        ]
        .into_iter()
        .filter(|s| *s)
        .count()
    }

    fn valid_at(&self, t: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| f <= t) && self.to.is_none_or(|e| t < e)
    }

    /// Whether some usage could match both (no matcher set differently in the two, the same
    /// unit) while both are valid.
    fn overlaps(&self, o: &Price) -> bool {
        let same = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        // `None` is no start (the beginning of time) and no end (its end): `Option`'s order
        // puts `None` first, right for starts only.
        let periods = match (self.from.max(o.from), min_end(self.to, o.to)) {
            (Some(start), Some(end)) => start < end,
            _ => true,
        };
        self.unit == o.unit
            && same(&self.provider, &o.provider)
            && same(&self.source, &o.source)
            && same(&self.agent, &o.agent)
            && same(&self.model, &o.model)
            && same(&self.usage_type, &o.usage_type)
            && (self.counter.is_none() || o.counter.is_none() || self.counter == o.counter)
            && periods
    }
}

/// The earlier of two optional ends (`None`: no end).
fn min_end(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What a priced point is: the labels a price can match.
#[derive(Debug, Clone, Copy)]
pub struct Priced<'a> {
    /// The provider name.
    pub provider: &'a str,
    /// The source name.
    pub source: &'a str,
    /// The agent id, when known.
    pub agent: Option<&'a str>,
    /// The model, when known.
    pub model: Option<&'a str>,
    /// The usage type, when known.
    pub usage_type: Option<&'a str>,
    /// The unit of the counters.
    pub unit: Unit,
    /// When the usage happened (a window's start: windows are cut at every price change).
    pub at: DateTime<Utc>,
}

/// The outcome of pricing one point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pricing {
    /// The cost of the priced counters.
    pub cost: Vec<Money>,
    /// Quantities no entry priced (per counter), so that unpriced usage is reported rather
    /// than priced at 0.
    pub unpriced: u64,
}

/// A checked price table.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    prices: Vec<Price>,
}

impl PriceTable {
    /// Checks the entries: each a valid price and currency, one price field fitting its unit,
    /// valid instants in order, no two equally specific entries that can match the same usage
    /// at once. Problems are `(key, message)` with keys as `prices[i].field`.
    pub fn new(entries: &[PriceEntry]) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut prices = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match check(i, e) {
                Ok(p) => prices.push(p),
                Err(mut p) => problems.append(&mut p),
            }
        }
        for (i, a) in prices.iter().enumerate() {
            for b in &prices[i + 1..] {
                if a.specificity() == b.specificity() && a.overlaps(b) {
                    problems.push((
                        b.key.clone(),
                        format!(
                            "overlaps {}: both can price the same usage at the same time with \
                             equal specificity; add a matcher to one or make their validity \
                             periods disjoint",
                            a.key
                        ),
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(Self { prices })
        } else {
            Err(problems)
        }
    }

    /// Reports whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// Reports whether some entry can price usage of `source`, a source of `provider` (no
    /// `provider`/`source` matcher, or matching ones).
    pub fn covers(&self, provider: &str, source: &str) -> bool {
        self.for_source(provider, source).next().is_some()
    }

    fn for_source<'a>(
        &'a self,
        provider: &'a str,
        source: &'a str,
    ) -> impl Iterator<Item = &'a Price> + 'a {
        self.prices.iter().filter(move |e| {
            e.provider.as_deref().is_none_or(|p| p == provider)
                && e.source.as_deref().is_none_or(|s| s == source)
        })
    }

    /// The dimensions the entries that can price `source` match on (`agent`, `model`,
    /// `usage_type`): its usage must be fetched with them, whatever the query groups by, for
    /// each point to meet its price.
    pub fn dimensions(&self, provider: &str, source: &str) -> BTreeSet<Dimension> {
        let mut out = BTreeSet::new();
        for e in self.for_source(provider, source) {
            for (set, d) in [
                (e.agent.is_some(), Dimension::Agent),
                (e.model.is_some(), Dimension::Model),
                (e.usage_type.is_some(), Dimension::UsageType),
            ] {
                if set {
                    out.insert(d);
                }
            }
        }
        out
    }

    /// The instants strictly inside `range` where an entry that can price `source` (within the
    /// query's `agents` and `models` filters, when set) starts or stops being valid, sorted:
    /// windows are cut there, so that each part is priced by the prices valid in it (a price
    /// change at midnight prices each side by its own price).
    pub fn changes(
        &self,
        provider: &str,
        source: &str,
        range: Window,
        agents: Option<&BTreeSet<String>>,
        models: Option<&BTreeSet<String>>,
    ) -> Vec<DateTime<Utc>> {
        let within = |want: &Option<String>, filter: Option<&BTreeSet<String>>| match (want, filter)
        {
            (Some(w), Some(f)) => f.contains(w),
            _ => true,
        };
        let mut out: Vec<DateTime<Utc>> = self
            .for_source(provider, source)
            .filter(|e| within(&e.agent, agents) && within(&e.model, models))
            .flat_map(|e| [e.from, e.to])
            .flatten()
            .filter(|t| range.start < *t && *t < range.end)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Prices a point of `source` (a source of `provider`) whose window starts at `at`: the
    /// window lies within one validity period of every entry (see [`PriceTable::changes`]).
    pub fn cost(
        &self,
        provider: &str,
        source: &str,
        p: &UsagePoint,
        at: DateTime<Utc>,
    ) -> PointCost {
        let pricing = self.price(
            &Priced {
                provider,
                source,
                agent: p.key.agent.as_deref(),
                model: p.key.model.as_deref(),
                usage_type: p.key.usage_type.as_deref(),
                unit: p.unit,
                at,
            },
            &p.counters,
        );
        let mut out = PointCost {
            unpriced: pricing.unpriced,
            ..PointCost::default()
        };
        for m in pricing.cost {
            if out.cost.add(m).is_none() {
                out.overflowed = true;
            }
        }
        out
    }

    /// Prices a point's counters: each counter by the most specific entry matching it.
    pub fn price(&self, p: &Priced<'_>, counters: &Counters) -> Pricing {
        let mut out = Pricing::default();
        for kind in CounterKind::ALL {
            let quantity = kind.of(counters);
            if quantity == 0 {
                continue;
            }
            let best = self
                .prices
                .iter()
                .filter(|e| matches(e, p, kind))
                .max_by_key(|e| e.specificity());
            match best.and_then(|e| {
                e.per_one
                    .checked_mul(Decimal::from(quantity))
                    .map(|amount| Money {
                        amount,
                        currency: e.currency,
                    })
            }) {
                Some(m) => out.cost.push(m),
                None => out.unpriced = out.unpriced.saturating_add(quantity),
            }
        }
        out
    }
}

fn matches(e: &Price, p: &Priced<'_>, kind: CounterKind) -> bool {
    let is =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    e.unit == p.unit
        && e.valid_at(p.at)
        && is(&e.provider, Some(p.provider))
        && is(&e.source, Some(p.source))
        && is(&e.agent, p.agent)
        && is(&e.model, p.model)
        && is(&e.usage_type, p.usage_type)
        && e.counter.is_none_or(|c| c == kind)
}

fn check(i: usize, e: &PriceEntry) -> Result<Price, Vec<(String, String)>> {
    let key = format!("prices[{i}]");
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push((format!("{key}.{field}"), message));
    };
    let currency = Currency::parse(&e.currency)
        .map_err(|m| problem("currency", m.to_string()))
        .ok();
    let counter = match e.counter.as_deref() {
        None => None,
        Some(c) => {
            let k = CounterKind::parse(c);
            if k.is_none() {
                problem("counter", format!("`{c}` is not input, output or other"));
            }
            k
        }
    };
    let instant = |field: &str, v: &Option<String>, problem: &mut dyn FnMut(&str, String)| {
        let s = v.as_deref()?;
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Some(t.with_timezone(&Utc));
        }
        problem(
            field,
            format!(
                "`{s}` is not an RFC 3339 instant with its offset (e.g. 2026-11-01T00:00:00+01:00)"
            ),
        );
        None
    };
    let from = instant("valid_from", &e.valid_from, &mut problem);
    let to = instant("valid_to", &e.valid_to, &mut problem);
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        problem("valid_to", "must be after valid_from".to_owned());
    }
    let set: Vec<(&str, &String)> = [
        ("per_million_tokens", &e.per_million_tokens),
        ("per_credit", &e.per_credit),
        ("per_unit", &e.per_unit),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let priced = match set.as_slice() {
        [(field, text)] => {
            let amount = Decimal::from_str_exact(text.trim())
                .ok()
                .filter(|d| !d.is_sign_negative());
            match (amount, *field) {
                (None, _) => {
                    problem(
                        field,
                        format!("`{text}` is not a decimal price of at least 0"),
                    );
                    None
                }
                (Some(a), "per_million_tokens") => {
                    if e.unit.as_deref().is_some_and(|u| u != "tokens") {
                        problem("unit", "per_million_tokens prices tokens".to_owned());
                    }
                    Some((Unit::Tokens, a / Decimal::from(1_000_000u32)))
                }
                (Some(a), "per_credit") => {
                    if e.unit.as_deref().is_some_and(|u| u != "credits") {
                        problem("unit", "per_credit prices credits".to_owned());
                    }
                    Some((Unit::Credits, a))
                }
                (Some(a), _) => match e.unit.as_deref().and_then(Unit::parse) {
                    Some(u) if !matches!(u, Unit::Tokens | Unit::Credits) => Some((u, a)),
                    _ => {
                        problem(
                            "unit",
                            "per_unit needs `unit`: images, characters, seconds, sessions or \
                             requests (tokens use per_million_tokens, credits per_credit)"
                                .to_owned(),
                        );
                        None
                    }
                },
            }
        }
        [] => {
            problem(
                "per_million_tokens",
                "one price is needed: per_million_tokens, per_credit or per_unit".to_owned(),
            );
            None
        }
        _ => {
            problem(
                set[1].0,
                "one price per entry: per_million_tokens, per_credit or per_unit".to_owned(),
            );
            None
        }
    };
    match (currency, priced) {
        (Some(currency), Some((unit, per_one))) if problems.is_empty() => Ok(Price {
            key,
            provider: e.provider.clone(),
            source: e.source.clone(),
            agent: e.agent.clone(),
            model: e.model.clone(),
            usage_type: e.usage_type.clone(),
            counter,
            unit,
            per_one,
            currency,
            from,
            to,
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn entries(json: &str) -> Vec<PriceEntry> {
        #[derive(Deserialize)]
        struct File {
            prices: Vec<PriceEntry>,
        }
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        serde_json::from_value::<File>(v).unwrap().prices
    }

    fn point<'a>(
        model: Option<&'a str>,
        usage_type: Option<&'a str>,
        at: DateTime<Utc>,
    ) -> Priced<'a> {
        Priced {
            provider: "openai",
            source: "openai",
            agent: Some("proj_1"),
            model,
            usage_type,
            unit: Unit::Tokens,
            at,
        }
    }

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
    }

    fn tokens(input: u64, output: u64, other: u64) -> Counters {
        Counters {
            input,
            output,
            other,
        }
    }

    fn shown(p: &Pricing) -> Vec<String> {
        p.cost
            .iter()
            .map(|m| format!("{} {}", m.display_amount(), m.currency))
            .collect()
    }

    #[test]
    fn the_most_specific_price_wins_per_counter_and_unpriced_usage_is_reported() {
        let table = PriceTable::new(&entries(
            r#"{"prices": [
                {"provider": "openai", "per_million_tokens": "1", "currency": "USD"},
                {"provider": "openai", "model": "gpt-4o-mini", "counter": "input", "per_million_tokens": "0.15", "currency": "USD"},
                {"provider": "openai", "model": "gpt-4o-mini", "counter": "output", "per_million_tokens": "0.60", "currency": "USD"}
            ]}"#,
        ))
        .unwrap();
        let mini = table.price(
            &point(Some("gpt-4o-mini"), None, at(1, 0)),
            &tokens(2_000_000, 1_000_000, 500_000),
        );
        // input 2M × 0.15, output 1M × 0.60, other 0.5M × 1 (the general price).
        assert_eq!(shown(&mini), ["0.3000 USD", "0.6000 USD", "0.5000 USD"]);
        assert_eq!(mini.unpriced, 0);
        let other = table.price(&point(Some("o3"), None, at(1, 0)), &tokens(1_000_000, 0, 0));
        assert_eq!(shown(&other), ["1.0000 USD"]);
        // Another provider's usage has no price: reported, not priced at 0.
        let mut p = point(None, None, at(1, 0));
        p.provider = "anthropic";
        let none = table.price(&p, &tokens(10, 20, 0));
        assert!(none.cost.is_empty());
        assert_eq!(none.unpriced, 30);
    }

    #[test]
    fn a_price_change_at_local_midnight_prices_each_side_by_its_own_price() {
        let table = PriceTable::new(&entries(
            r#"{"prices": [
                {"model": "m", "per_million_tokens": "2", "currency": "EUR", "valid_to": "2026-11-02T00:00:00+01:00"},
                {"model": "m", "per_million_tokens": "3", "currency": "EUR", "valid_from": "2026-11-02T00:00:00+01:00"}
            ]}"#,
        ))
        .unwrap();
        let change = Utc.with_ymd_and_hms(2026, 11, 1, 23, 0, 0).unwrap();
        let before = change - chrono::Duration::seconds(1);
        let one = tokens(1_000_000, 0, 0);
        assert_eq!(
            shown(&table.price(&point(Some("m"), None, before), &one)),
            ["2.0000 EUR"]
        );
        assert_eq!(
            shown(&table.price(&point(Some("m"), None, change), &one)),
            ["3.0000 EUR"]
        );
    }

    #[test]
    fn mistakes_and_overlaps_name_their_entries() {
        let e = PriceTable::new(&entries(
            r#"{"prices": [
                {"model": "m", "per_million_tokens": "2", "currency": "USD"},
                {"agent": "a", "per_million_tokens": "3", "currency": "USD", "valid_from": "2026-01-01T00:00:00Z"},
                {"model": "m", "usage_type": "input", "per_million_tokens": "-1", "currency": "US"},
                {"per_unit": "0.04", "currency": "USD"},
                {"per_unit": "0.04", "unit": "images", "per_credit": "1", "currency": "USD"},
                {"per_credit": "0.001", "currency": "USD", "valid_from": "2026-02-01T00:00:00Z", "valid_to": "2026-01-01T00:00:00Z"}
            ]}"#,
        ))
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "prices[2].currency",
                "prices[2].per_million_tokens",
                "prices[3].unit",
                "prices[4].per_unit",
                "prices[5].valid_to",
                "prices[1]",
            ],
            "{e:?}"
        );
        assert!(e[5].1.contains("overlaps prices[0]"), "{e:?}");
        // Disjoint periods, other units or a different matcher value do not overlap.
        PriceTable::new(&entries(
            r#"{"prices": [
                {"model": "m", "per_million_tokens": "2", "currency": "USD", "valid_to": "2026-01-01T00:00:00Z"},
                {"model": "m", "per_million_tokens": "3", "currency": "USD", "valid_from": "2026-01-01T00:00:00Z"},
                {"model": "n", "per_million_tokens": "3", "currency": "USD"},
                {"model": "m", "unit": "images", "per_unit": "0.04", "currency": "USD"},
                {"model": "m", "counter": "input", "per_million_tokens": "1", "currency": "USD"},
                {"model": "m", "counter": "output", "per_million_tokens": "4", "currency": "USD"}
            ]}"#,
        ))
        .unwrap();
    }

    #[test]
    fn a_source_needs_the_dimensions_and_cuts_of_its_own_prices() {
        let table = PriceTable::new(&entries(
            r#"{"prices": [
                {"provider": "openai", "model": "gpt-4o-mini", "per_million_tokens": "1", "currency": "USD", "valid_to": "2026-11-02T00:00:00+01:00"},
                {"provider": "openai", "model": "gpt-4o-mini", "per_million_tokens": "2", "currency": "USD", "valid_from": "2026-11-02T00:00:00+01:00"},
                {"source": "cbk", "agent": "bot", "usage_type": "chat", "per_credit": "0.1", "currency": "EUR", "valid_from": "2026-10-01T00:00:00Z"}
            ]}"#,
        ))
        .unwrap();
        assert!(table.covers("openai", "openai"));
        assert!(!table.covers("kibana", "kb"));
        assert!(table.covers("chatbotkit", "cbk"));
        assert_eq!(
            table.dimensions("openai", "openai"),
            BTreeSet::from([Dimension::Model])
        );
        assert_eq!(
            table.dimensions("chatbotkit", "cbk"),
            BTreeSet::from([Dimension::Agent, Dimension::UsageType])
        );
        // The change at Berlin midnight (23:00Z) is inside the first range, at the edge of the
        // second (not a cut), and other sources' changes never cut this one's windows.
        let range = Window::new(at(1, 0), at(3, 0));
        assert_eq!(
            table.changes("openai", "openai", range, None, None),
            [at(1, 23)]
        );
        assert!(
            table
                .changes(
                    "openai",
                    "openai",
                    Window::new(at(1, 23), at(3, 0)),
                    None,
                    None
                )
                .is_empty()
        );
        assert!(table.changes("kibana", "kb", range, None, None).is_empty());
        // A query filtered to other models is not cut at this model's price change.
        let o3 = BTreeSet::from(["o3".to_owned()]);
        assert!(
            table
                .changes("openai", "openai", range, None, Some(&o3))
                .is_empty()
        );
        // `cost` prices a usage point by its labels at the given instant.
        let p = UsagePoint {
            window: Window::new(at(1, 23), at(2, 0)),
            key: crate::model::PointKey {
                model: Some("gpt-4o-mini".into()),
                ..crate::model::PointKey::default()
            },
            agent_name: None,
            unit: Unit::Tokens,
            counters: tokens(500_000, 0, 0),
        };
        let c = table.cost("openai", "openai", &p, p.window.start);
        let shown: Vec<String> = c.cost.iter().map(|m| m.display_amount()).collect();
        assert_eq!((shown, c.unpriced), (vec!["1.0000".to_owned()], 0));
    }

    #[test]
    fn credits_are_priced_per_credit_and_never_by_token_prices() {
        let table = PriceTable::new(&entries(
            r#"{"prices": [
                {"provider": "chatbotkit", "per_credit": "0.000004", "currency": "USD"},
                {"provider": "chatbotkit", "per_million_tokens": "2", "currency": "USD"}
            ]}"#,
        ))
        .unwrap();
        let mut credits = point(None, None, at(1, 0));
        credits.provider = "chatbotkit";
        credits.unit = Unit::Credits;
        // 2 500 000 credits × 0.000004 = 10 (other counter: ChatBotKit gives no split).
        let p = table.price(&credits, &tokens(0, 0, 2_500_000));
        assert_eq!((shown(&p), p.unpriced), (vec!["10.0000 USD".to_owned()], 0));
        // Images of the same provider: no entry of that unit, so unpriced, not priced at 0.
        credits.unit = Unit::Images;
        let p = table.price(&credits, &tokens(0, 0, 3));
        assert_eq!((p.cost.len(), p.unpriced), (0, 3));
    }
}
