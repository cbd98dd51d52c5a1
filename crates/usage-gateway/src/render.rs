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
