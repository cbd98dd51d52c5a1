//! OpenAI wire types (CONTRACTS-openai-anthropic.md A.3, A.6, A.7, and the Projects admin API),
//! kept apart from the mapping.
//!
//! Every field but a bucket's `start_time` is optional and defaults when absent or `null`;
//! counts may be whole numbers written as floats (`12.0`); unknown fields and enum values are
//! ignored (only the fields read are declared).

use serde::{Deserialize, Deserializer};

/// `UsageResponse`: a page of buckets, of a usage endpoint ([`UsageBucket`]) or of costs
/// ([`CostsBucket`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(bound(deserialize = "B: Deserialize<'de>"))]
pub(crate) struct BucketPage<B> {
    /// The buckets, oldest first (absent or `null`: none).
    #[serde(default = "Vec::new", deserialize_with = "null_as_empty")]
    pub data: Vec<B>,
    /// Whether more buckets follow.
    #[serde(default)]
    pub has_more: bool,
    /// The cursor of the next page.
    #[serde(default)]
    pub next_page: Option<String>,
}

/// A page of a usage endpoint.
#[cfg(test)]
pub(crate) type UsagePage = BucketPage<UsageBucket>;

/// `UsageTimeBucket`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UsageBucket {
    /// Bucket start, Unix seconds (required: a bucket without it cannot be placed).
    pub start_time: i64,
    /// The rows; absent or `null` reads as none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub results: Vec<UsageResult>,
}

/// One result row of any usage endpoint: its dimensions and every metric the mapping reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct UsageResult {
    /// `project_id` (set when grouped by it).
    pub project_id: Option<String>,
    /// `user_id` (set when grouped by it; `null` for service-account keys).
    pub user_id: Option<String>,
    /// `model` (set when grouped by it).
    pub model: Option<String>,
    #[serde(deserialize_with = "count")]
    pub input_tokens: Option<u64>,
    #[serde(deserialize_with = "count")]
    pub output_tokens: Option<u64>,
    #[serde(deserialize_with = "count")]
    pub input_cached_tokens: Option<u64>,
    #[serde(deserialize_with = "count")]
    pub input_cache_write_tokens: Option<u64>,
    /// `Some` when the KEY is present (even `null`): the current completions schema.
    #[serde(deserialize_with = "present")]
    #[allow(
        clippy::option_option,
        reason = "key absent, null and a number differ here"
    )]
    pub input_uncached_tokens: Option<Option<u64>>,
    #[serde(deserialize_with = "count")]
    pub input_audio_tokens: Option<u64>,
    #[serde(deserialize_with = "count")]
    pub input_image_tokens: Option<u64>,
    #[serde(deserialize_with = "count")]
    pub output_audio_tokens: Option<u64>,
    #[serde(deserialize_with = "count")]
    pub output_image_tokens: Option<u64>,
    #[serde(deserialize_with = "count")]
    pub images: Option<u64>,
    #[serde(deserialize_with = "count")]
    pub characters: Option<u64>,
    #[serde(deserialize_with = "count")]
    pub seconds: Option<u64>,
    #[serde(deserialize_with = "count")]
    pub num_sessions: Option<u64>,
    #[serde(deserialize_with = "count")]
    pub num_requests: Option<u64>,
}

impl UsageResult {
    /// The count field `name` of a non-token endpoint (0 when absent).
    pub(crate) fn count(&self, name: &str) -> Option<u64> {
        match name {
            "images" => self.images,
            "characters" => self.characters,
            "seconds" => self.seconds,
            "num_sessions" => self.num_sessions,
            "num_requests" => self.num_requests,
            _ => None,
        }
    }
}

/// One daily bucket of costs.
#[derive(Debug, Deserialize)]
pub(crate) struct CostsBucket {
    /// Bucket start, Unix seconds (required: a bucket without it cannot be placed).
    pub start_time: i64,
    /// The rows; absent or `null` reads as none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub results: Vec<CostsResult>,
}

/// `organization.costs.result`, only the fields read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CostsResult {
    /// The amount.
    pub amount: Option<CostsAmount>,
    /// `<model>, <kind>` or another line item (set when grouped by it).
    pub line_item: Option<String>,
    /// The project (set when grouped by it; `null` for usage of no project).
    pub project_id: Option<String>,
}

/// `amount`: a JSON number in major units, kept as its text so that it is read exactly.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CostsAmount {
    /// The number's text as sent (`0.06`, `1.2e-5`).
    pub value: Option<Box<serde_json::value::RawValue>>,
    /// Lower-case ISO 4217 (`usd`).
    pub currency: Option<String>,
}

/// `GET /v1/organization/projects`: a list page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ProjectList {
    /// The projects.
    #[serde(deserialize_with = "null_as_empty")]
    pub data: Vec<Project>,
    /// The id to pass as `after` for the next page.
    pub last_id: Option<String>,
    /// Whether more projects follow.
    pub has_more: bool,
}

/// `organization.project`, only the fields read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Project {
    /// `proj_…`.
    pub id: Option<String>,
    /// The name.
    pub name: Option<String>,
}

/// OpenAI's error envelope `{"error": {message, type, param, code}}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorEnvelope {
    /// The error.
    pub error: Option<ErrorBody>,
}

/// The inner error object.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorBody {
    /// The message.
    pub message: Option<String>,
    /// `invalid_request_error`, ...
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The parameter at fault.
    pub param: Option<String>,
    /// A machine code (`invalid_api_key`, ...).
    pub code: Option<String>,
}

#[allow(
    clippy::option_option,
    reason = "key absent, null and a number differ here"
)]
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    count(d).map(Some)
}

/// A metric: a non-negative integer, a whole number written as a float, or `null`.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    usage_core::http::opt_count(d)
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_and_unknown_fields_decode() {
        let p: UsagePage = serde_json::from_str(
            r#"{"object":"page","data":[{"object":"bucket","start_time":60,"end_time":120,
               "results":null,"extra":1},{"start_time":120,"results":[{"object":"x",
               "service_tier":"flex_new","batch":true,"model":null}]}],"has_more":false,
               "next_page":null,"new_field":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(p.data.len(), 2);
        assert!(p.data[0].results.is_empty());
        assert_eq!(p.data[1].results[0], UsageResult::default());
        let e: ErrorEnvelope = serde_json::from_str(
            r#"{"error":{"message":"m","type":"t","param":null,"code":null}}"#,
        )
        .unwrap();
        assert_eq!(e.error.unwrap().message.as_deref(), Some("m"));
    }

    #[test]
    fn a_bucket_needs_its_start() {
        let e = serde_json::from_str::<UsagePage>(r#"{"data":[{"results":[]}]}"#).unwrap_err();
        assert!(e.to_string().contains("start_time"), "{e}");
        let b: UsageBucket = serde_json::from_str(r#"{"start_time":60}"#).unwrap();
        assert!(b.results.is_empty());
    }

    #[test]
    fn metrics_may_be_whole_numbers_written_as_floats() {
        let r: UsageResult =
            serde_json::from_str(r#"{"input_tokens":12.0,"output_tokens":3,"images":null}"#)
                .unwrap();
        assert_eq!(
            (r.input_tokens, r.output_tokens, r.images),
            (Some(12), Some(3), None)
        );
        let current: UsageResult =
            serde_json::from_str(r#"{"input_uncached_tokens":5.0}"#).unwrap();
        assert_eq!(current.input_uncached_tokens, Some(Some(5)));
        assert!(serde_json::from_str::<UsageResult>(r#"{"input_tokens":1.5}"#).is_err());
        assert!(serde_json::from_str::<UsageResult>(r#"{"seconds":-1}"#).is_err());
    }
}
