//! Anthropic wire types (CONTRACTS-openai-anthropic.md B.3, and the Admin API's workspaces
//! list), kept apart from the mapping.
//!
//! Every field is optional and defaults when absent or `null` (the contract leaves open whether
//! `cache_creation` and `server_tool_use` can be either); unknown fields and enum values are
//! ignored. Counts may come as integers or as whole JSON numbers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

/// A page of a bucketed report: `GET /v1/organizations/usage_report/messages`
/// (`MessagesUsageReport`, buckets [`UsageBucket`]) or `GET /v1/organizations/cost_report`
/// (buckets [`CostBucket`]).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Report<B> {
    /// Buckets, oldest first, empty ones included.
    #[serde(default = "Option::default")]
    pub data: Option<Vec<B>>,
    /// Whether another page follows.
    #[serde(default)]
    pub has_more: bool,
    /// The cursor of the next page (`page=`).
    #[serde(default)]
    pub next_page: Option<String>,
}

/// A bucket of a report: where it starts.
pub(crate) trait Starting {
    /// Inclusive start.
    fn starting_at(&self) -> DateTime<Utc>;
}

impl Starting for UsageBucket {
    fn starting_at(&self) -> DateTime<Utc> {
        self.starting_at
    }
}

impl Starting for CostBucket {
    fn starting_at(&self) -> DateTime<Utc> {
        self.starting_at
    }
}

/// One time bucket.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UsageBucket {
    /// Inclusive start (RFC 3339).
    pub starting_at: DateTime<Utc>,
    /// The aggregation rows.
    #[serde(default)]
    pub results: Option<Vec<UsageRow>>,
}

/// One aggregation row: the counts of one combination of the grouped dimensions.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct UsageRow {
    #[serde(deserialize_with = "count")]
    pub uncached_input_tokens: u64,
    #[serde(deserialize_with = "count")]
    pub output_tokens: u64,
    #[serde(deserialize_with = "count")]
    pub cache_read_input_tokens: u64,
    pub cache_creation: Option<CacheCreation>,
    pub server_tool_use: Option<ServerToolUse>,
    /// `null` when not grouped, and for the default workspace.
    pub workspace_id: Option<String>,
    /// `null` when not grouped, and for Console usage.
    pub api_key_id: Option<String>,
    /// `null` when not grouped.
    pub model: Option<String>,
}

/// `cache_creation`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct CacheCreation {
    #[serde(deserialize_with = "count")]
    pub ephemeral_5m_input_tokens: u64,
    #[serde(deserialize_with = "count")]
    pub ephemeral_1h_input_tokens: u64,
}

/// `server_tool_use`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct ServerToolUse {
    #[serde(deserialize_with = "count")]
    pub web_search_requests: u64,
}

/// One daily bucket of the cost report.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CostBucket {
    /// Inclusive start (RFC 3339).
    pub starting_at: DateTime<Utc>,
    /// The rows.
    #[serde(default)]
    pub results: Option<Vec<CostRow>>,
}

/// One cost row; every field but `amount` and `currency` is `null` unless grouped.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct CostRow {
    /// Minor units (cents) as a decimal string, fractional cents included (`"123.78912"`).
    pub amount: Option<String>,
    /// `USD`.
    pub currency: Option<String>,
    /// `null` when not grouped, and for the default workspace.
    pub workspace_id: Option<String>,
    /// `Claude Sonnet 4 Usage - Input Tokens` (grouped by description).
    pub description: Option<String>,
    /// `tokens`, `web_search`, `code_execution`, ... (grouped by description).
    pub cost_type: Option<String>,
    /// The model of token costs (grouped by description).
    pub model: Option<String>,
    /// `uncached_input_tokens`, `output_tokens`, ... (token costs, grouped by description).
    pub token_type: Option<String>,
}

/// `GET /v1/organizations/workspaces`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WorkspaceList {
    pub data: Option<Vec<Workspace>>,
    pub has_more: bool,
    /// The id to pass as `after_id` for the next page.
    pub last_id: Option<String>,
}

/// One workspace (only the fields read).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Workspace {
    pub id: Option<String>,
    pub name: Option<String>,
}

/// Anthropic's error envelope `{"type":"error","error":{"type","message"},"request_id"}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorEnvelope {
    pub error: Option<ErrorDetail>,
    pub request_id: Option<String>,
}

/// The envelope's `error`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub message: Option<String>,
}

/// A count: a non-negative integer, a whole non-negative JSON number, or `null` (0).
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(usage_core::http::opt_count(d)?.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_null_and_unknown_fields_read_as_zero_or_ignored() {
        let r: UsageRow = serde_json::from_str(
            r#"{"uncached_input_tokens": 5, "cache_creation": null, "server_tool_use": {},
                "output_tokens": null, "speed": "fast", "inference_geo": "mars",
                "cache_read_input_tokens": 7.0}"#,
        )
        .unwrap();
        assert_eq!(
            (
                r.uncached_input_tokens,
                r.output_tokens,
                r.cache_read_input_tokens
            ),
            (5, 0, 7)
        );
        assert_eq!(r.cache_creation, None);
        assert_eq!(r.server_tool_use, Some(ServerToolUse::default()));
        assert!(serde_json::from_str::<UsageRow>(r#"{"output_tokens": -1}"#).is_err());
        assert!(serde_json::from_str::<UsageRow>(r#"{"output_tokens": 1.5}"#).is_err());
        let page: Report<UsageBucket> = serde_json::from_str("{}").unwrap();
        assert!(page.data.is_none() && !page.has_more && page.next_page.is_none());
    }
}
