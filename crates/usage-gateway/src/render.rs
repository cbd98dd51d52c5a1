//! Rendering an aggregation as the JSON body or as RFC 4180 CSV.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde::ser::SerializeMap;
use usage_core::Dimension;
use usage_core::aggregate::{Aggregation, PointCost, Row};
use usage_core::money::Money;

use crate::model::{QueryEcho, SourceEntry, UnitTotals};

/// Formats an instant as UTC RFC 3339 (`2026-11-01T00:00:00Z`).
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// How rows are laid out: the grouping, whether they carry bucket edges, and in which zone's
/// offset those are written.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    /// The `group_by` dimensions, in order.
    pub group_by: &'a [Dimension],
    /// Whether rows carry `bucket_start`/`bucket_end`.
    pub bucketed: bool,
    /// `Some(tz)`: bucket edges with the offset of `tz` (`bucket_edges=local`); `None`: UTC.
    pub local: Option<Tz>,
    /// Whether rows and totals carry `cost` and `unpriced`: some touched source has a cost.
    pub money: bool,
}

impl Layout<'_> {
    /// Formats a bucket edge: UTC with `Z`, or RFC 3339 with the zone's offset at that instant.
    fn edge(&self, t: DateTime<Utc>) -> String {
        match self.local {
            None => ts(t),
            Some(tz) => t
                .with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::AutoSi, false),
        }
    }
}

/// Neutralises spreadsheet formula injection in a text cell, as OWASP advises: a value that
/// starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so that
/// spreadsheet programs show it as text instead of evaluating it. Applied to the CSV's text
/// columns (names and ids that come from vendors and configuration), never to numbers.
pub fn csv_text(v: &str) -> Cow<'_, str> {
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{v}"))
    } else {
        Cow::Borrowed(v)
    }
}

struct RowOut<'a> {
    row: &'a Row,
    layout: &'a Layout<'a>,
}

impl Serialize for RowOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(b) = self.row.bucket {
            m.serialize_entry("bucket_start", &self.layout.edge(b.start))?;
            m.serialize_entry("bucket_end", &self.layout.edge(b.end))?;
        }
        for (d, v) in self.layout.group_by.iter().zip(&self.row.dims) {
            m.serialize_entry(d.as_str(), v)?;
            if *d == Dimension::Agent
                && let Some(name) = &self.row.agent_name
            {
                m.serialize_entry("agent_name", name)?;
            }
        }
        let c = &self.row.counters;
        m.serialize_entry("unit", self.row.unit.as_str())?;
        m.serialize_entry("input_tokens", &c.input)?;
        m.serialize_entry("output_tokens", &c.output)?;
        m.serialize_entry("other_tokens", &c.other)?;
        m.serialize_entry("total_tokens", &c.total())?;
        if self.layout.money {
            m.serialize_entry("cost", &shown_cost(&self.row.cost))?;
            if self.row.cost.unpriced > 0 {
                m.serialize_entry("unpriced", &self.row.cost.unpriced)?;
            }
        }
        m.end()
    }
}

/// A cost as answers show it: one amount per currency; `None` when a sum overflowed.
fn shown_cost(c: &PointCost) -> Option<Vec<Money>> {
    (!c.overflowed).then(|| c.cost.iter().collect())
}

#[derive(Serialize)]
struct Body<'a> {
    query: &'a QueryEcho,
    complete: bool,
    totals: Vec<UnitTotals>,
    rows: Vec<RowOut<'a>>,
    sources: &'a [SourceEntry],
}

/// Returns the per-unit totals of an aggregation, with their cost when `money`.
pub fn totals(agg: &Aggregation, money: bool) -> Vec<UnitTotals> {
    agg.totals
        .iter()
        .map(|(unit, c)| {
            let cost = agg.total_costs.get(unit).filter(|_| money);
            UnitTotals {
                unit: unit.as_str().to_owned(),
                input_tokens: c.input,
                output_tokens: c.output,
                other_tokens: c.other,
                total_tokens: c.total(),
                cost: cost.and_then(shown_cost),
                unpriced: cost.map(|c| c.unpriced).filter(|n| *n > 0),
            }
        })
        .collect()
}

/// Serializes the JSON body.
pub fn json(
    query: &QueryEcho,
    complete: bool,
    agg: &Aggregation,
    layout: &Layout<'_>,
    sources: &[SourceEntry],
) -> Vec<u8> {
    let body = Body {
        query,
        complete,
        totals: totals(agg, layout.money),
        rows: agg.rows.iter().map(|row| RowOut { row, layout }).collect(),
        sources,
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// What a source's answer says about its data, without how it was fetched (`fetched_at`,
/// `duration_ms`, `upstream_requests`, `cached`, `age_seconds` and problem details are left
/// out, as they differ between fetches and replicas of the same data).
#[derive(Serialize)]
struct SourceData<'a> {
    source: &'a str,
    provider: &'a str,
    status: crate::model::SourceStatus,
    attribution: usage_core::Attribution,
    warnings: Option<u64>,
    notes: &'a [String],
    problem: Option<&'a str>,
}

/// The strong entity tag of an answer, derived from its data: the query as understood, the
/// format, `complete`, totals, rows and each source's status, attribution, warnings, notes and
/// problem type. Replicas (and refetches) that see the same data give the same tag, although
/// their bodies differ in fetch metadata.
pub fn etag(
    format: &str,
    query: &QueryEcho,
    complete: bool,
    agg: &Aggregation,
    layout: &Layout<'_>,
    sources: &[SourceEntry],
) -> String {
    #[derive(Serialize)]
    struct Data<'a> {
        format: &'a str,
        query: &'a QueryEcho,
        complete: bool,
        totals: Vec<UnitTotals>,
        rows: Vec<RowOut<'a>>,
        sources: Vec<SourceData<'a>>,
        /// FOCUS bodies show exact amounts, rows four places: the tag must see what the body
        /// shows.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        exact: Vec<String>,
    }
    let data = Data {
        format,
        query,
        complete,
        totals: totals(agg, layout.money),
        rows: agg.rows.iter().map(|row| RowOut { row, layout }).collect(),
        sources: sources
            .iter()
            .map(|s| SourceData {
                source: &s.source,
                provider: s.provider.as_str(),
                status: s.status,
                attribution: s.attribution,
                warnings: s.warnings,
                notes: &s.notes,
                problem: s.error.as_ref().map(|p| p.kind.as_str()),
            })
            .collect(),
        exact: if format == "focus" {
            agg.rows
                .iter()
                .flat_map(|r| r.cost.cost.iter().map(|m| focus_decimal(m.amount)))
                .collect()
        } else {
            Vec::new()
        },
    };
    let mut h = HashWriter(xxhash_rust::xxh3::Xxh3::new());
    // Writing into a hasher cannot fail; serializing these types cannot either.
    let _ = serde_json::to_writer(&mut h, &data);
    format!("\"{:032x}\"", h.0.digest128())
}

/// Feeds serialized bytes into a hasher without building them in memory.
struct HashWriter(xxhash_rust::xxh3::Xxh3);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serializes the rows as CSV with a header row; columns follow the JSON field names. Text
/// cells are guarded against formula injection ([`csv_text`]).
pub fn csv(agg: &Aggregation, layout: &Layout<'_>) -> Result<Vec<u8>, csv::Error> {
    let Layout {
        group_by,
        bucketed,
        money,
        ..
    } = *layout;
    // One cost column per currency in the answer (`cost_usd`), amounts never added across.
    let currencies: Vec<usage_core::money::Currency> = if money {
        let set: std::collections::BTreeSet<_> = agg
            .rows
            .iter()
            .flat_map(|r| r.cost.cost.iter().map(|m| m.currency))
            .collect();
        set.into_iter().collect()
    } else {
        Vec::new()
    };
    let cost_columns: Vec<String> = currencies
        .iter()
        .map(|c| format!("cost_{}", c.as_str().to_ascii_lowercase()))
        .collect();
    let mut w = csv::Writer::from_writer(Vec::with_capacity(64 + agg.rows.len() * 96));
    let mut header: Vec<&str> = Vec::new();
    if bucketed {
        header.extend(["bucket_start", "bucket_end"]);
    }
    for d in group_by {
        header.push(d.as_str());
        if *d == Dimension::Agent {
            header.push("agent_name");
        }
    }
    header.extend([
        "unit",
        "input_tokens",
        "output_tokens",
        "other_tokens",
        "total_tokens",
    ]);
    header.extend(cost_columns.iter().map(String::as_str));
    if money {
        header.push("unpriced");
    }
    w.write_record(&header)?;
    for row in &agg.rows {
        let mut rec: Vec<String> = Vec::with_capacity(header.len());
        if let Some(b) = row.bucket {
            rec.push(layout.edge(b.start));
            rec.push(layout.edge(b.end));
        } else if bucketed {
            rec.extend([String::new(), String::new()]);
        }
        let text = |v: &Option<String>| {
            v.as_deref()
                .map_or_else(String::new, |v| csv_text(v).into_owned())
        };
        for (d, v) in group_by.iter().zip(&row.dims) {
            rec.push(text(v));
            if *d == Dimension::Agent {
                rec.push(text(&row.agent_name));
            }
        }
        let c = &row.counters;
        rec.push(row.unit.as_str().to_owned());
        for n in [c.input, c.output, c.other, c.total()] {
            rec.push(n.to_string());
        }
        for currency in &currencies {
            rec.push(
                row.cost
                    .cost
                    .iter()
                    .find(|m| m.currency == *currency && !row.cost.overflowed)
                    .map(|m| m.display_amount())
                    .unwrap_or_default(),
            );
        }
        if money {
            rec.push(row.cost.unpriced.to_string());
        }
        w.write_record(&rec)?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// What a FOCUS export needs beyond the rows: the range (the charge period of unbucketed rows)
/// and each source's billing names.
#[derive(Debug, Clone, Copy)]
pub struct FocusContext<'a> {
    /// The query's range.
    pub range: usage_core::Window,
    /// Each source's billing names, by source name.
    pub billing: &'a std::collections::BTreeMap<String, usage_core::plugin::Billing>,
}

/// The FOCUS 1.2 columns written, in order. Costs (`BilledCost`, `EffectiveCost`, `ListCost`,
/// `ContractedCost`) are the same amount: the gateway knows no discounts or commitments.
pub const FOCUS_COLUMNS: [&str; 32] = [
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountStatus",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "Tags",
    "x_UnpricedQuantity",
];

/// A decimal as FOCUS numbers are written: exact, always with a decimal point (a column of
/// whole numbers would read as integers, not decimals).
fn focus_decimal(d: rust_decimal::Decimal) -> String {
    let s = d.normalize().to_string();
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// Text as FOCUS string columns take it: ASCII only (other characters become `?`; the exact
/// value is in `Tags`), guarded against formula injection as CSV cells are.
fn focus_text(v: &str) -> String {
    let ascii: String = v
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect();
    csv_text(&ascii).into_owned()
}

/// JSON with every character outside ASCII escaped (`\u00e9`), so that `Tags` stays ASCII and
/// exact.
fn ascii_json(v: &serde_json::Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                // Writing into a String cannot fail.
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// A unit as FOCUS names units: `Tokens`, `Credits`, `Images`, ...
fn focus_unit(unit: usage_core::Unit) -> String {
    let s = unit.as_str();
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// Serializes the rows as a FOCUS 1.2 cost-and-usage CSV: one line per row and currency of its
/// cost (rows without cost are left out: FOCUS lines are charges). The layout's `group_by`
/// must hold `source` (the billing account). Charge periods are the buckets (the range when
/// unbucketed), billing periods their UTC months; `ResourceId` is `<source>/<agent>` (and
/// `ResourceType` `Agent`) when `agent` is grouped; `Tags` holds the grouped dimensions exactly; `x_UnpricedQuantity` the
/// row's quantity no cost covers (`ConsumedQuantity` counts it, `PricingQuantity` not).
pub fn focus(
    agg: &Aggregation,
    layout: &Layout<'_>,
    ctx: &FocusContext<'_>,
) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(512 + agg.rows.len() * 512));
    w.write_record(FOCUS_COLUMNS)?;
    let dim = |row: &Row, d: Dimension| {
        layout
            .group_by
            .iter()
            .position(|g| *g == d)
            .and_then(|i| row.dims.get(i).cloned().flatten())
    };
    for row in &agg.rows {
        if row.cost.overflowed || row.cost.cost.is_empty() {
            continue;
        }
        let Some(source) = dim(row, Dimension::Source) else {
            continue;
        };
        let billing = ctx
            .billing
            .get(&source)
            .copied()
            .unwrap_or(usage_core::plugin::Billing {
                provider_name: "Unknown",
                service_name: "Unknown",
            });
        let period = row.bucket.unwrap_or(ctx.range);
        // The billing period: the UTC month of the charge (charges are cut at month starts).
        let month =
            usage_core::time::bucket_of(period.start, chrono_tz::UTC, usage_core::Bucket::Month);
        let (month_start, month_end) = (month.start, month.end);
        let agent = dim(row, Dimension::Agent);
        let model = dim(row, Dimension::Model);
        let mut tags = serde_json::Map::new();
        for (d, v) in layout.group_by.iter().zip(&row.dims) {
            if let Some(v) = v {
                tags.insert(d.as_str().to_owned(), serde_json::Value::from(v.as_str()));
            }
        }
        if let Some(name) = &row.agent_name {
            tags.insert("agent_name".into(), serde_json::Value::from(name.as_str()));
        }
        let tags = ascii_json(&serde_json::Value::Object(tags));
        let mut what = vec![format!("{} {}", billing.provider_name, row.unit.as_str())];
        what.extend(
            row.agent_name
                .clone()
                .or_else(|| agent.clone())
                .map(|a| format!("agent {a}")),
        );
        what.extend(model.as_ref().map(|m| format!("model {m}")));
        let description = what.join(", ");
        let total = row.counters.total();
        let priced = total.saturating_sub(row.cost.unpriced);
        let unit = focus_unit(row.unit);
        for money in row.cost.cost.iter() {
            let amount = focus_decimal(money.amount);
            let rec: [String; 32] = [
                amount.clone(),
                focus_text(&source),
                focus_text(&source),
                money.currency.as_str().to_owned(),
                ts(month_end),
                ts(month_start),
                "Usage".into(),
                String::new(),
                focus_text(&description),
                "Usage-Based".into(),
                ts(period.end),
                ts(period.start),
                String::new(),
                format!("{total}.0"),
                unit.clone(),
                amount.clone(),
                amount.clone(),
                String::new(),
                focus_text(billing.provider_name),
                amount.clone(),
                format!("{priced}.0"),
                unit.clone(),
                focus_text(billing.provider_name),
                focus_text(billing.provider_name),
                agent
                    .as_ref()
                    .map(|a| focus_text(&format!("{source}/{a}")))
                    .unwrap_or_default(),
                row.agent_name
                    .as_ref()
                    .or(agent.as_ref())
                    .map(|n| focus_text(n))
                    .unwrap_or_default(),
                agent
                    .as_ref()
                    .map(|_| "Agent".to_owned())
                    .unwrap_or_default(),
                "AI and Machine Learning".into(),
                focus_text(billing.service_name),
                "Generative AI".into(),
                tags.clone(),
                row.cost.unpriced.to_string(),
            ];
            w.write_record(&rec)?;
        }
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focus_text_and_tags_stay_ascii_and_tags_exact() {
        assert_eq!(focus_text("Support – FR"), "Support ? FR");
        assert_eq!(focus_text("=cmd"), "'=cmd");
        let v = serde_json::json!({"agent_name": "Équipe 🤖"});
        let tags = ascii_json(&v);
        assert!(tags.is_ascii(), "{tags}");
        assert_eq!(tags, r#"{"agent_name":"\u00c9quipe \ud83e\udd16"}"#);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&tags).unwrap(), v);
    }

    #[test]
    fn focus_numbers_always_have_a_decimal_point() {
        let d = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
        assert_eq!(focus_decimal(d("3")), "3.0");
        assert_eq!(focus_decimal(d("3.1000")), "3.1");
        assert_eq!(focus_decimal(d("0.00000015")), "0.00000015");
        assert_eq!(focus_decimal(d("-2.50")), "-2.5");
        // The billing month of a charge on New Year's Eve.
        let month = usage_core::time::bucket_of(
            DateTime::parse_from_rfc3339("2026-12-31T23:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            chrono_tz::UTC,
            usage_core::Bucket::Month,
        );
        assert_eq!(
            (month.start, month.end),
            (
                DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
                DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
    }
}
