//! The endpoint table and the mapping of one result row to usage: `(usage_type, unit,
//! counters)` per kind of usage, never counting a token twice.

use usage_core::{Counters, Unit};

use crate::model::UsageResult;

/// A metered usage endpoint (`/v1/organization/usage/<path>`).
///
/// `vector_stores` is not one: its `usage_bytes` is the storage level at each bucket, not usage
/// over it, so adding buckets up would be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// Chat/responses tokens.
    Completions,
    /// Embedding input tokens.
    Embeddings,
    /// Moderation input tokens.
    Moderations,
    /// Generated images.
    Images,
    /// Text-to-speech characters.
    AudioSpeeches,
    /// Transcribed seconds.
    AudioTranscriptions,
    /// Code interpreter sessions.
    CodeInterpreterSessions,
    /// Web search calls.
    WebSearchCalls,
    /// File search calls.
    FileSearchCalls,
}

/// How a result row of an endpoint maps to usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// The completions token split (both schema forms).
    Completions,
    /// `input_tokens` as input tokens under this usage type.
    InputTokens(&'static str),
    /// A count in `other` with the endpoint's unit, under the endpoint's path as usage type;
    /// the field read.
    Count(&'static str),
}

/// One row of the endpoint table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointSpec {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The path segment after `/v1/organization/usage/` (and the config name).
    pub path: &'static str,
    /// The unit of its usage.
    pub unit: Unit,
    /// Whether it groups and filters by user (`user_id`, `user_ids`).
    pub user: bool,
    /// Whether it groups and filters by model (`model`, `models`).
    pub model: bool,
    /// How its rows map to usage.
    pub metric: Metric,
}

const fn spec(
    endpoint: Endpoint,
    path: &'static str,
    unit: Unit,
    user: bool,
    model: bool,
    metric: Metric,
) -> EndpointSpec {
    EndpointSpec {
        endpoint,
        path,
        unit,
        user,
        model,
        metric,
    }
}

/// Every metered endpoint: path, unit, which of user/model it reports (table A.3; all report
/// projects), and the mapping of its rows.
pub const ENDPOINTS: [EndpointSpec; 9] = [
    spec(
        Endpoint::Completions,
        "completions",
        Unit::Tokens,
        true,
        true,
        Metric::Completions,
    ),
    spec(
        Endpoint::Embeddings,
        "embeddings",
        Unit::Tokens,
        true,
        true,
        Metric::InputTokens("embeddings:input"),
    ),
    spec(
        Endpoint::Moderations,
        "moderations",
        Unit::Tokens,
        true,
        true,
        Metric::InputTokens("moderations:input"),
    ),
    spec(
        Endpoint::Images,
        "images",
        Unit::Images,
        true,
        true,
        Metric::Count("images"),
    ),
    spec(
        Endpoint::AudioSpeeches,
        "audio_speeches",
        Unit::Characters,
        true,
        true,
        Metric::Count("characters"),
    ),
    spec(
        Endpoint::AudioTranscriptions,
        "audio_transcriptions",
        Unit::Seconds,
        true,
        true,
        Metric::Count("seconds"),
    ),
    spec(
        Endpoint::CodeInterpreterSessions,
        "code_interpreter_sessions",
        Unit::Sessions,
        false,
        false,
        Metric::Count("num_sessions"),
    ),
    spec(
        Endpoint::WebSearchCalls,
        "web_search_calls",
        Unit::Requests,
        true,
        true,
        Metric::Count("num_requests"),
    ),
    spec(
        Endpoint::FileSearchCalls,
        "file_search_calls",
        Unit::Requests,
        true,
        false,
        Metric::Count("num_requests"),
    ),
];

impl Endpoint {
    /// The endpoint's table row.
    pub fn spec(self) -> &'static EndpointSpec {
        &ENDPOINTS[self as usize]
    }

    /// Parses a config / path name.
    pub fn parse(name: &str) -> Option<Self> {
        ENDPOINTS
            .iter()
            .find(|s| s.path == name)
            .map(|s| s.endpoint)
    }
}

fn input(n: u64) -> Counters {
    Counters {
        input: n,
        ..Counters::default()
    }
}

fn output(n: u64) -> Counters {
    Counters {
        output: n,
        ..Counters::default()
    }
}

fn other(n: u64) -> Counters {
    Counters {
        other: n,
        ..Counters::default()
    }
}

/// Maps one result row: `(usage_type, unit, counters)` per non-zero kind of usage. Missing
/// metric fields count 0; `num_model_requests` is not reported.
///
/// Completions in the CURRENT schema (the row has the key `input_uncached_tokens`), where
/// `input_tokens = uncached + cached + cache_write` (so a `null` uncached count is
/// `input_tokens − input_cached_tokens − input_cache_write_tokens`) and the modality fields are
/// parts:
/// `input` = uncached − uncached audio − uncached image, `output` = output − audio − image
/// output, and in `other`: `input_cached`, `input_cache_write`, `input_audio`, `input_image`,
/// `output_audio`, `output_image`. In the LEGACY schema (no such key; `input_tokens` and
/// `output_tokens` were text only and `input_audio_tokens` included cached audio): `input` =
/// input − cached, `output` = output, and in `other`: `input_cached`, `input_audio`,
/// `output_audio`. Either way the counters add up to every token once.
pub(crate) fn result_usage(
    spec: &EndpointSpec,
    r: &UsageResult,
) -> Vec<(&'static str, Unit, Counters)> {
    let n = |v: Option<u64>| v.unwrap_or(0);
    let rows: Vec<(&'static str, Counters)> = match spec.metric {
        Metric::Completions => match r.input_uncached_tokens {
            Some(uncached) => vec![
                (
                    "input",
                    input(
                        uncached
                            .unwrap_or_else(|| {
                                n(r.input_tokens)
                                    .saturating_sub(n(r.input_cached_tokens))
                                    .saturating_sub(n(r.input_cache_write_tokens))
                            })
                            .saturating_sub(n(r.input_audio_tokens))
                            .saturating_sub(n(r.input_image_tokens)),
                    ),
                ),
                (
                    "output",
                    output(
                        n(r.output_tokens)
                            .saturating_sub(n(r.output_audio_tokens))
                            .saturating_sub(n(r.output_image_tokens)),
                    ),
                ),
                ("input_cached", other(n(r.input_cached_tokens))),
                ("input_cache_write", other(n(r.input_cache_write_tokens))),
                ("input_audio", other(n(r.input_audio_tokens))),
                ("input_image", other(n(r.input_image_tokens))),
                ("output_audio", other(n(r.output_audio_tokens))),
                ("output_image", other(n(r.output_image_tokens))),
            ],
            None => vec![
                (
                    "input",
                    input(n(r.input_tokens).saturating_sub(n(r.input_cached_tokens))),
                ),
                ("output", output(n(r.output_tokens))),
                ("input_cached", other(n(r.input_cached_tokens))),
                ("input_audio", other(n(r.input_audio_tokens))),
                ("output_audio", other(n(r.output_audio_tokens))),
            ],
        },
        Metric::InputTokens(usage_type) => vec![(usage_type, input(n(r.input_tokens)))],
        Metric::Count(field) => vec![(spec.path, other(n(r.count(field))))],
    };
    rows.into_iter()
        .filter(|(_, c)| !c.is_zero())
        .map(|(t, c)| (t, spec.unit, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(json: &str) -> UsageResult {
        serde_json::from_str(json).unwrap()
    }

    fn total(v: &[(&str, Unit, Counters)]) -> u64 {
        v.iter().map(|(_, _, c)| c.total()).sum()
    }

    fn get(v: &[(&str, Unit, Counters)], t: &str) -> Counters {
        v.iter()
            .find(|(n, _, _)| *n == t)
            .map_or_else(Counters::default, |(_, _, c)| *c)
    }

    /// The official example of spec 2.3.0 (A.9.1).
    const CURRENT: &str = r#"{"object":"organization.usage.completions.result",
      "input_tokens":1000,"input_cached_tokens":400,"input_cache_write_tokens":100,
      "input_uncached_tokens":500,"output_tokens":500,"input_text_tokens":400,
      "output_text_tokens":400,"input_cached_text_tokens":300,"input_audio_tokens":50,
      "input_cached_audio_tokens":50,"output_audio_tokens":50,"input_image_tokens":50,
      "input_cached_image_tokens":50,"output_image_tokens":50,"num_model_requests":5,
      "project_id":null,"user_id":null,"api_key_id":null,"model":null,"batch":null,
      "service_tier":null}"#;

    #[test]
    fn current_schema_counts_every_token_once() {
        let spec = Endpoint::Completions.spec();
        let u = result_usage(spec, &row(CURRENT));
        assert_eq!(get(&u, "input"), input(400));
        assert_eq!(get(&u, "output"), output(400));
        assert_eq!(get(&u, "input_cached"), other(400));
        assert_eq!(get(&u, "input_cache_write"), other(100));
        assert_eq!(get(&u, "input_audio"), other(50));
        assert_eq!(get(&u, "input_image"), other(50));
        assert_eq!(get(&u, "output_audio"), other(50));
        assert_eq!(get(&u, "output_image"), other(50));
        // The identity: input_tokens + output_tokens.
        assert_eq!(total(&u), 1000 + 500);
        assert!(u.iter().all(|(_, unit, _)| *unit == Unit::Tokens));
    }

    #[test]
    fn legacy_schema_counts_every_token_once() {
        let spec = Endpoint::Completions.spec();
        let u = result_usage(
            spec,
            &row(
                r#"{"object":"organization.usage.completions.result","input_tokens":1000,
                "input_cached_tokens":300,"output_tokens":400,"input_audio_tokens":120,
                "output_audio_tokens":80,"num_model_requests":3}"#,
            ),
        );
        assert_eq!(get(&u, "input"), input(700));
        assert_eq!(get(&u, "input_cached"), other(300));
        assert_eq!(get(&u, "output"), output(400));
        assert_eq!(get(&u, "input_audio"), other(120));
        assert_eq!(get(&u, "output_audio"), other(80));
        assert_eq!(total(&u), 1000 + 400 + 120 + 80);
        assert_eq!(u.len(), 5);
    }

    #[test]
    fn the_form_is_decided_per_row_and_a_null_uncached_key_is_current() {
        let spec = Endpoint::Completions.spec();
        let legacy = result_usage(spec, &row(r#"{"input_tokens":10,"output_tokens":5}"#));
        assert_eq!(get(&legacy, "input"), input(10));
        // A null uncached count is what input_tokens leaves after cache reads and writes.
        let current = result_usage(
            spec,
            &row(
                r#"{"input_tokens":100,"output_tokens":5,"input_uncached_tokens":null,
                "input_cached_tokens":30,"input_cache_write_tokens":20,"input_audio_tokens":10}"#,
            ),
        );
        assert_eq!(get(&current, "input"), input(40));
        assert_eq!(get(&current, "input_cached"), other(30));
        assert_eq!(get(&current, "input_cache_write"), other(20));
        assert_eq!(get(&current, "input_audio"), other(10));
        assert_eq!(total(&current), 100 + 5, "every token once");
        // Inconsistent counts saturate at 0.
        let over = result_usage(
            spec,
            &row(r#"{"input_tokens":10,"input_uncached_tokens":null,"input_cached_tokens":30}"#),
        );
        assert_eq!(get(&over, "input"), Counters::default());
        assert_eq!(get(&over, "input_cached"), other(30));
    }

    #[test]
    fn inconsistent_parts_saturate_and_zero_slots_make_no_usage() {
        let spec = Endpoint::Completions.spec();
        let u = result_usage(
            spec,
            &row(r#"{"input_uncached_tokens":10,"input_audio_tokens":30,"output_tokens":0}"#),
        );
        assert_eq!(get(&u, "input"), Counters::default());
        assert_eq!(u.len(), 1, "{u:?}");
        assert!(result_usage(spec, &row("{}")).is_empty());
    }

    #[test]
    fn other_endpoints_map_to_their_units() {
        let cases = [
            (
                Endpoint::Embeddings,
                r#"{"input_tokens":20,"num_model_requests":2}"#,
                "embeddings:input",
                Unit::Tokens,
                input(20),
            ),
            (
                Endpoint::Moderations,
                r#"{"input_tokens":7}"#,
                "moderations:input",
                Unit::Tokens,
                input(7),
            ),
            (
                Endpoint::Images,
                r#"{"images":2,"size":"1024x1024","source":"image.generation"}"#,
                "images",
                Unit::Images,
                other(2),
            ),
            (
                Endpoint::AudioSpeeches,
                r#"{"characters":45}"#,
                "audio_speeches",
                Unit::Characters,
                other(45),
            ),
            (
                Endpoint::AudioTranscriptions,
                r#"{"seconds":10}"#,
                "audio_transcriptions",
                Unit::Seconds,
                other(10),
            ),
            (
                Endpoint::CodeInterpreterSessions,
                r#"{"num_sessions":1}"#,
                "code_interpreter_sessions",
                Unit::Sessions,
                other(1),
            ),
            (
                Endpoint::WebSearchCalls,
                r#"{"num_requests":3,"num_model_requests":9,"context_level":"high"}"#,
                "web_search_calls",
                Unit::Requests,
                other(3),
            ),
            (
                Endpoint::FileSearchCalls,
                r#"{"num_requests":2,"vector_store_id":"vs_abc"}"#,
                "file_search_calls",
                Unit::Requests,
                other(2),
            ),
        ];
        for (e, json, ty, unit, c) in cases {
            assert_eq!(
                result_usage(e.spec(), &row(json)),
                vec![(ty, unit, c)],
                "{e:?}"
            );
        }
        for s in &ENDPOINTS {
            assert_eq!(s.endpoint.spec(), s, "the table is in enum order");
            assert_eq!(Endpoint::parse(s.path), Some(s.endpoint));
        }
        assert_eq!(Endpoint::parse("vector_stores"), None);
    }
}
