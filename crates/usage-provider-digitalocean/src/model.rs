//! DigitalOcean wire types (CONTRACTS.md §1.3-1.5), kept apart from the mapping code.
//!
//! The spec declares no field `required`, so every field is optional and defaults when absent or
//! `null`; unknown fields are ignored. Nothing here can panic on a partial payload.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, de::IgnoredAny};

/// `GET /v2/gen-ai/agents/{uuid}/usage` → `apiGetAgentUsageOutput`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GetAgentUsageOutput {
    /// The agent's own token usage.
    pub usage: Option<ResourceUsage>,
    /// Tokens the Log Insights feature consumed for the agent (kept apart from `usage`).
    pub log_insights_usage: Option<ResourceUsage>,
}

/// `apiResourceUsage`: one aggregate over the asked `[start, stop]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ResourceUsage {
    /// The measurements; several can share a usage type.
    pub measurements: Option<Vec<Option<UsageMeasurement>>>,
    /// The echoed start; Go's zero time reads as unset.
    #[serde(deserialize_with = "lenient_time")]
    pub start: Option<DateTime<Utc>>,
    /// The echoed (inclusive) stop; Go's zero time reads as unset.
    #[serde(deserialize_with = "lenient_time")]
    pub stop: Option<DateTime<Utc>>,
}

/// `apiUsageMeasurement`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct UsageMeasurement {
    /// Token count; proto3 JSON may send int64 as a string, so both are accepted.
    #[serde(deserialize_with = "lenient_tokens")]
    pub tokens: Option<u64>,
    /// `INPUT`, `OUTPUT` or another free string.
    pub usage_type: Option<String>,
}

/// `GET /v2/gen-ai/agents` → `apiListAgentsOutputPublic`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ListAgentsOutput {
    /// The agents of this page.
    pub agents: Option<Vec<Option<AgentPublic>>>,
    /// Pagination links; omitted when the result fits one page.
    pub links: Option<Links>,
}

/// `apiAgentPublic`, only the fields the provider reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AgentPublic {
    /// The agent uuid.
    pub uuid: Option<String>,
    /// The agent's name.
    pub name: Option<String>,
    /// The agent's model (`{"name": "…", "uuid": "…", …}`), read loosely: only its `name` is
    /// used, and any other shape counts as no model rather than failing the page.
    pub model: Option<serde_json::Value>,
}

/// `apiLinks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Links {
    /// Page links.
    pub pages: Option<Pages>,
}

/// `apiPages`: only `next` is relied upon (`previous`/`prev` spellings differ across DO docs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Pages {
    /// The full URL of the next page, absent on the last page.
    pub next: Option<String>,
}

/// The body DigitalOcean sends with every 4xx/5xx (`shared/models/error.yml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorBody {
    /// A short id mirroring the status (`not_found`, `too_many_requests`, ...).
    pub id: Option<String>,
    /// A human message.
    pub message: Option<String>,
    /// The request id, for support tickets.
    pub request_id: Option<String>,
}

/// Go's zero time, which DigitalOcean sends for unset timestamps.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Reads an optional RFC 3339 timestamp; Go's zero time, `null`, an unparsable string or a
/// non-string all read as unset.
fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw: Option<serde_json::Value> = Option::deserialize(d)?;
    Ok(raw
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .and_then(parse_time))
}

/// Parses a vendor timestamp, reading Go's zero time (any year-1 instant) as unset.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if s == GO_ZERO_TIME || s.starts_with("0001-01-01T") {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Reads a token count from a JSON integer, an integral float or a decimal string; rejects
/// negative and fractional values, which no token count can be.
fn lenient_tokens<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(TokensVisitor)
}

struct TokensVisitor;

impl<'de> Visitor<'de> for TokensVisitor {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative token count (integer or decimal string)")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format!("negative token count {v}")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // 2^64 as f64; anything at or above it does not fit a u64.
        const LIMIT: f64 = 18_446_744_073_709_551_616.0;
        if v.fract() == 0.0 && (0.0..LIMIT).contains(&v) {
            Ok(Some(v as u64))
        } else {
            Err(E::custom(format!(
                "token count {v} is not a whole non-negative number"
            )))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(None);
        }
        t.parse::<u64>().map(Some).map_err(|_| {
            let shown: String = t.chars().take(40).collect();
            E::custom(format!(
                "token count `{shown}` is not a non-negative integer"
            ))
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Err(de::Error::custom("token count is an object"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(de::Error::custom("token count is an array"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(json: &str) -> Result<UsageMeasurement, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn tokens_accept_numbers_and_numeric_strings() {
        assert_eq!(measurement(r#"{"tokens": 12}"#).unwrap().tokens, Some(12));
        assert_eq!(measurement(r#"{"tokens": "12"}"#).unwrap().tokens, Some(12));
        assert_eq!(measurement(r#"{"tokens": 12.0}"#).unwrap().tokens, Some(12));
        assert_eq!(measurement(r#"{"tokens": null}"#).unwrap().tokens, None);
        assert_eq!(measurement(r"{}").unwrap().tokens, None);
        assert_eq!(
            measurement(r#"{"tokens": "18446744073709551615"}"#)
                .unwrap()
                .tokens,
            Some(u64::MAX)
        );
    }

    #[test]
    fn tokens_reject_nonsense_without_panicking() {
        for bad in [
            r#"{"tokens": -1}"#,
            r#"{"tokens": 1.5}"#,
            r#"{"tokens": "lots"}"#,
            r#"{"tokens": {"n": 1}}"#,
            r#"{"tokens": [1]}"#,
            r#"{"tokens": true}"#,
            r#"{"tokens": 1e30}"#,
        ] {
            assert!(measurement(bad).is_err(), "{bad} must not decode");
        }
    }

    #[test]
    fn go_zero_time_reads_as_unset() {
        let u: ResourceUsage = serde_json::from_str(
            r#"{"start": "0001-01-01T00:00:00Z", "stop": "2024-01-31T23:59:59Z"}"#,
        )
        .unwrap();
        assert_eq!(u.start, None);
        assert_eq!(u.stop, parse_time("2024-01-31T23:59:59Z"));
        assert!(u.stop.is_some());
        let odd: ResourceUsage =
            serde_json::from_str(r#"{"start": 5, "stop": "yesterday"}"#).unwrap();
        assert_eq!((odd.start, odd.stop), (None, None));
    }

    #[test]
    fn nulls_everywhere_decode() {
        let out: GetAgentUsageOutput = serde_json::from_str(
            r#"{"usage": {"measurements": [null, {"usage_type": null, "tokens": null}]}, "log_insights_usage": null}"#,
        )
        .unwrap();
        assert_eq!(out.usage.unwrap().measurements.unwrap().len(), 2);
        let list: ListAgentsOutput =
            serde_json::from_str(r#"{"agents": null, "links": {"pages": null}, "meta": 7}"#)
                .unwrap();
        assert!(list.agents.is_none());
    }
}
