//! Rendering an aggregation as the JSON body or as RFC 4180 CSV.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;
use usage_core::Dimension;
use usage_core::aggregate::{Aggregation, Row};

use crate::model::{QueryEcho, SourceEntry, UnitTotals};

/// Formats an instant as UTC RFC 3339 (`2026-11-01T00:00:00Z`).
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

struct RowOut<'a> {
    row: &'a Row,
    group_by: &'a [Dimension],
}

impl Serialize for RowOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(b) = self.row.bucket {
            m.serialize_entry("bucket_start", &ts(b.start))?;
            m.serialize_entry("bucket_end", &ts(b.end))?;
        }
        for (d, v) in self.group_by.iter().zip(&self.row.dims) {
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
        m.end()
    }
}

#[derive(Serialize)]
struct Body<'a> {
    query: &'a QueryEcho,
    complete: bool,
    totals: Vec<UnitTotals>,
    rows: Vec<RowOut<'a>>,
    sources: &'a [SourceEntry],
}

/// Returns the per-unit totals of an aggregation.
pub fn totals(agg: &Aggregation) -> Vec<UnitTotals> {
    agg.totals
        .iter()
        .map(|(unit, c)| UnitTotals {
            unit: unit.as_str().to_owned(),
            input_tokens: c.input,
            output_tokens: c.output,
            other_tokens: c.other,
            total_tokens: c.total(),
        })
        .collect()
}

/// Serializes the JSON body.
pub fn json(
    query: &QueryEcho,
    complete: bool,
    agg: &Aggregation,
    group_by: &[Dimension],
    sources: &[SourceEntry],
) -> Vec<u8> {
    let body = Body {
        query,
        complete,
        totals: totals(agg),
        rows: agg
            .rows
            .iter()
            .map(|row| RowOut { row, group_by })
            .collect(),
        sources,
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Serializes the rows as CSV with a header row; columns follow the JSON field names.
pub fn csv(
    agg: &Aggregation,
    group_by: &[Dimension],
    bucketed: bool,
) -> Result<Vec<u8>, csv::Error> {
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
    w.write_record(&header)?;
    for row in &agg.rows {
        let mut rec: Vec<String> = Vec::with_capacity(header.len());
        if let Some(b) = row.bucket {
            rec.push(ts(b.start));
            rec.push(ts(b.end));
        } else if bucketed {
            rec.extend([String::new(), String::new()]);
        }
        for (d, v) in group_by.iter().zip(&row.dims) {
            rec.push(v.clone().unwrap_or_default());
            if *d == Dimension::Agent {
                rec.push(row.agent_name.clone().unwrap_or_default());
            }
        }
        let c = &row.counters;
        rec.push(row.unit.as_str().to_owned());
        for n in [c.input, c.output, c.other, c.total()] {
            rec.push(n.to_string());
        }
        w.write_record(&rec)?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}
