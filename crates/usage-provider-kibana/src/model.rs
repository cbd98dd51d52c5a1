//! Kibana Agent Builder wire types (CONTRACTS.md §2.2-2.6).
//!
//! Every field is optional and read leniently: a field of the wrong type reads as absent, so a
//! partial or odd payload never panics and never fails the whole page. Only a body that is not a
//! JSON object of the expected overall shape is a decode error.

use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, TimeZone, Utc};
use serde::de::value::MapAccessDeserializer;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

// Leniency is built from visitors, never from an intermediate `serde_json::Value`: a page of
// 100 conversations is read in one pass, and an odd value is skipped where it stands.

/// Skips the rest of a sequence.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips the rest of a map.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// The visitor methods of every JSON scalar (and `null`), each reading as `$wrapper(None)`.
macro_rules! scalars_read_as_none {
    ($wrapper:ident) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($wrapper(None))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($wrapper(None))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($wrapper(None))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($wrapper(None))
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($wrapper(None))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($wrapper(None))
        }
    };
}

/// An object-shaped value (a wire struct) that reads as `None` when the JSON value is not an
/// object. The struct's own fields are lenient, so only a repeated key inside the object fails.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lenient<T>(pub Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|()| Lenient(None))
            }
            scalars_read_as_none!(Lenient);
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// An array that reads as `None` when the JSON value is not an array; its items must be
/// lenient themselves ([`Lenient`], [`Leaf`] or `Value`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LenientVec<T>(pub Option<Vec<T>>);

impl<T> Default for LenientVec<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LenientVec<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = LenientVec<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(LenientVec(Some(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|()| LenientVec(None))
            }
            scalars_read_as_none!(LenientVec);
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A scalar the wire may send in several JSON forms; each form it accepts has a conversion,
/// every other value (objects and arrays included) reads as absent.
pub(crate) trait Scalar: Sized {
    /// From a JSON string.
    fn from_str(_: &str) -> Option<Self> {
        None
    }
    /// From a non-negative JSON integer.
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    /// From a negative JSON integer.
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    /// From a JSON number with a fraction or exponent.
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
}

impl Scalar for String {
    fn from_str(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
}

/// A non-negative count: an integer, a float (rounded) or a numeric string.
impl Scalar for u64 {
    fn from_str(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
    fn from_u64(n: u64) -> Option<Self> {
        Some(n)
    }
    fn from_f64(f: f64) -> Option<Self> {
        (0.0..1.8e19).contains(&f).then(|| f.round() as u64)
    }
}

/// A time: an RFC 3339 string, or an integer of epoch milliseconds.
impl Scalar for DateTime<Utc> {
    fn from_str(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
    fn from_u64(n: u64) -> Option<Self> {
        i64::try_from(n).ok().and_then(Self::from_i64)
    }
    fn from_i64(ms: i64) -> Option<Self> {
        Utc.timestamp_millis_opt(ms).single()
    }
}

/// A [`Scalar`] that reads as `None` instead of failing when it has an unexpected shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leaf<T>(pub Option<T>);

impl<T> Default for Leaf<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Scalar> Deserialize<'de> for Leaf<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Scalar> Visitor<'de> for V<T> {
            type Value = Leaf<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Leaf(T::from_str(s)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Leaf(T::from_u64(n)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Leaf(T::from_i64(n)))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Self::Value, E> {
                Ok(Leaf(T::from_f64(f)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Leaf(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Leaf(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|()| Leaf(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|()| Leaf(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A non-negative count that may arrive as an integer, a float or a numeric string.
pub(crate) type Count = Leaf<u64>;

/// Body of `POST …/agents/{agent_id}/consumption`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ConsumptionRequest<'a> {
    /// Page size (1..=100).
    pub size: u32,
    /// Always `updated_at`: the scan walks back in time.
    pub sort_field: &'static str,
    /// Always `desc`.
    pub sort_order: &'static str,
    /// The previous page's `search_after`, verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_after: Option<&'a [Value]>,
    /// Only these usernames (exact match on `user_name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usernames: Option<&'a [String]>,
}

/// Answer of the consumption route.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConsumptionResponse {
    /// One entry per conversation; `None` when absent or null.
    pub results: Option<Vec<Lenient<ConversationConsumption>>>,
    /// Exact hit count (not used for paging).
    pub total: Count,
    /// The sort values of the last hit; omitted when the page is empty.
    pub search_after: LenientVec<Value>,
}

/// One conversation's lifetime consumption: the fields the provider uses. Others (`created_at`,
/// `title`, the user's profile `id`) are skipped unread.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConversationConsumption {
    /// The conversation id (ES `_id`).
    pub conversation_id: Leaf<String>,
    /// The owner.
    pub user: Lenient<ConsumptionUser>,
    /// ISO-8601 string from the conversation document; where the totals are placed.
    pub updated_at: Leaf<DateTime<Utc>>,
    /// Lifetime token totals.
    pub token_usage: Lenient<TokenUsage>,
    /// High-input-token warnings, one per round above 200 000 input tokens.
    pub warnings: LenientVec<Lenient<ConsumptionWarning>>,
    /// Rounds (user turns) so far: kept with snapshots.
    pub round_count: Count,
    /// LLM calls so far: kept with snapshots.
    pub llm_calls: Count,
}

/// The conversation's owner.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConsumptionUser {
    /// The username, the value `usernames` filters on.
    pub username: Leaf<String>,
}

/// Lifetime token totals of a conversation (`total = input + output`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
#[allow(clippy::struct_field_names, reason = "the wire names")]
pub(crate) struct TokenUsage {
    /// Input tokens summed over every round.
    pub input_tokens: Count,
    /// Output tokens summed over every round.
    pub output_tokens: Count,
    /// Their sum.
    pub total_tokens: Count,
}

/// One warning of a conversation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConsumptionWarning {
    /// `high_input_tokens` in every version read.
    #[serde(rename = "type")]
    pub kind: Leaf<String>,
}

/// Answer of `GET /api/agent_builder/agents`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AgentsResponse {
    /// The agents of the space.
    pub results: Option<Vec<Lenient<AgentDefinition>>>,
}

/// The parts of an agent definition the gateway uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AgentDefinition {
    /// The agent id (path parameter of the consumption route).
    pub id: Leaf<String>,
    /// The display name.
    pub name: Leaf<String>,
}

/// Kibana's Boom error envelope `{statusCode, error, message, attributes?}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BoomError {
    /// The HTTP status, repeated.
    #[serde(rename = "statusCode")]
    pub status_code: Count,
    /// The HTTP reason phrase.
    pub error: Leaf<String>,
    /// The human message.
    pub message: Leaf<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_omits_absent_fields() {
        let body = ConsumptionRequest {
            size: 100,
            sort_field: "updated_at",
            sort_order: "desc",
            search_after: None,
            usernames: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"size": 100, "sort_field": "updated_at", "sort_order": "desc"})
        );
        let cursor = vec![
            serde_json::json!(1_740_823_200_000_u64),
            serde_json::json!("x"),
        ];
        let users = vec!["alice".to_owned()];
        let body = ConsumptionRequest {
            search_after: Some(&cursor),
            usernames: Some(&users),
            ..body
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v["search_after"],
            serde_json::json!([1_740_823_200_000_u64, "x"])
        );
        assert_eq!(v["usernames"], serde_json::json!(["alice"]));
    }

    #[test]
    fn counts_are_lenient() {
        let c = |v: Value| serde_json::from_value::<Count>(v).unwrap().0;
        assert_eq!(c(serde_json::json!(12)), Some(12));
        assert_eq!(c(serde_json::json!(12.4)), Some(12));
        assert_eq!(c(serde_json::json!("25")), Some(25));
        assert_eq!(c(serde_json::json!(-3)), None);
        assert_eq!(c(serde_json::json!(-3.5)), None);
        assert_eq!(c(serde_json::json!("x")), None);
        assert_eq!(c(serde_json::json!(null)), None);
        assert_eq!(c(serde_json::json!([1])), None);
        assert_eq!(c(serde_json::json!({"n": 1})), None);
    }

    #[test]
    fn times_are_rfc3339_or_epoch_millis() {
        let t = |json: &str| serde_json::from_str::<Leaf<DateTime<Utc>>>(json).unwrap().0;
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
        assert_eq!(t(r#""2026-03-01T10:00:00.000Z""#), Some(at));
        assert_eq!(t(r#"" 2026-03-01T11:00:00+01:00 ""#), Some(at));
        assert_eq!(t("1772359200000"), Some(at));
        assert_eq!(t(r#""yesterday""#), None);
        assert_eq!(t("1.5"), None);
        assert_eq!(t("18446744073709551615"), None);
        assert_eq!(t(r#"{"t": 1}"#), None);
    }

    #[test]
    fn odd_fields_read_as_absent() {
        let r: ConsumptionResponse = serde_json::from_str(
            r#"{"results": [7, {"conversation_id": 5, "user": "bob", "token_usage": {"input_tokens": "10", "output_tokens": true},
                "warnings": [{"type": "high_input_tokens"}, 3]}], "search_after": "nope", "total": "2"}"#,
        )
        .unwrap();
        let results = r.results.unwrap();
        assert_eq!(results.len(), 2);
        assert!(results[0].0.is_none());
        let conv = results[1].0.clone().unwrap();
        assert!(conv.conversation_id.0.is_none());
        assert!(conv.user.0.is_none());
        let tu = conv.token_usage.0.unwrap();
        assert_eq!(tu.input_tokens.0, Some(10));
        assert_eq!(tu.output_tokens.0, None);
        assert_eq!(conv.warnings.0.unwrap().len(), 2);
        assert!(r.search_after.0.is_none());
        assert_eq!(r.total.0, Some(2));
        let r: ConsumptionResponse = serde_json::from_str(r#"{"results": null}"#).unwrap();
        assert!(r.results.is_none());
        assert!(serde_json::from_str::<ConsumptionResponse>(r#"{"results": 3}"#).is_err());
    }
}
