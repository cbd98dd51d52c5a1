//! Kibana Agent Builder wire types (CONTRACTS.md §2.2-2.6).
//!
//! Every field is optional and read leniently: a field of the wrong type reads as absent, so a
//! partial or odd payload never panics and never fails the whole page. Only a body that is not a
//! JSON object of the expected overall shape is a decode error.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A value that reads as `None` instead of failing when it has an unexpected shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lenient<T>(pub Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(Self(serde_json::from_value(v).ok()))
    }
}

/// A non-negative count that may arrive as an integer, a float or a numeric string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Count(pub Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(Self(count_of(&v)))
    }
}

fn count_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1.8e19)
                .map(|f| f.round() as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

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
    pub search_after: Lenient<Vec<Value>>,
}

/// One conversation's lifetime consumption.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConversationConsumption {
    /// The conversation id (ES `_id`).
    pub conversation_id: Lenient<String>,
    /// The owner; `id` may be absent.
    pub user: Lenient<ConsumptionUser>,
    /// ISO-8601 string from the conversation document.
    pub created_at: Lenient<Value>,
    /// ISO-8601 string from the conversation document; where the totals are placed.
    pub updated_at: Lenient<Value>,
    /// Lifetime token totals.
    pub token_usage: Lenient<TokenUsage>,
    /// High-input-token warnings, one per round above 200 000 input tokens.
    pub warnings: Lenient<Vec<Lenient<ConsumptionWarning>>>,
}

/// The conversation's owner.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConsumptionUser {
    /// The user's profile id; absent for some users.
    pub id: Lenient<String>,
    /// The username, the value `usernames` filters on.
    pub username: Lenient<String>,
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
    pub kind: Lenient<String>,
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
    pub id: Lenient<String>,
    /// The display name.
    pub name: Lenient<String>,
}

/// Kibana's Boom error envelope `{statusCode, error, message, attributes?}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BoomError {
    /// The HTTP status, repeated.
    #[serde(rename = "statusCode")]
    pub status_code: Count,
    /// The HTTP reason phrase.
    pub error: Lenient<String>,
    /// The human message.
    pub message: Lenient<String>,
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
        let c = |v: Value| count_of(&v);
        assert_eq!(c(serde_json::json!(12)), Some(12));
        assert_eq!(c(serde_json::json!(12.4)), Some(12));
        assert_eq!(c(serde_json::json!("25")), Some(25));
        assert_eq!(c(serde_json::json!(-3)), None);
        assert_eq!(c(serde_json::json!("x")), None);
        assert_eq!(c(serde_json::json!(null)), None);
        assert_eq!(c(serde_json::json!([1])), None);
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
