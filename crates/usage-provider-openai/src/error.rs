//! The one status table: a non-2xx OpenAI answer (its `{"error": {...}}` envelope) and the
//! transport's own failures → [`ProviderError`].

use std::time::Duration;

use reqwest::StatusCode;
use usage_core::ProviderError;
use usage_core::transport::{Refusal, truncate};

use crate::model::ErrorEnvelope;

/// The hint a 404 carries (the provider's words only).
const NOT_FOUND_HINT: &str = "OpenAI answered 404 for the organization usage API: check base_url \
     (the API root, e.g. https://api.openai.com, without /v1)";

/// The vendor's message: `error.message` (with `param` and `code` when given), or a note that
/// the body was not OpenAI's (a proxy page is not quoted).
fn message(status: StatusCode, body: &[u8]) -> String {
    let Some(e) = serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .and_then(|env| env.error)
    else {
        return format!("HTTP {} without OpenAI's error body", status.as_u16());
    };
    let mut m = e
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or("no message")
        .to_owned();
    let extra: Vec<String> = [("param", &e.param), ("code", &e.code), ("type", &e.kind)]
        .into_iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k} {v}"))
        })
        .collect();
    if !extra.is_empty() {
        m = format!("{} ({})", truncate(&m), extra.join(", "));
    }
    truncate(&m)
}

/// Maps a non-2xx answer of source `source` (the transport's [`Refusal`]).
pub(crate) fn refused(source: &str, answer: &Refusal<'_>) -> ProviderError {
    status_table(source, answer.status, answer.body, answer.retry_after)
}

/// Maps a non-2xx answer; `retry_after` is the delay its rate-limit headers give.
fn status_table(
    source: &str,
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> ProviderError {
    let source_name = source.to_owned();
    let message = message(status, body);
    match status.as_u16() {
        400 | 422 => ProviderError::InvalidQuery {
            source_name,
            message: format!("OpenAI rejected the request: {message}"),
        },
        401 => ProviderError::Unauthenticated {
            source_name,
            message,
        },
        403 => ProviderError::Forbidden {
            source_name,
            message,
        },
        404 => ProviderError::NotFound {
            source_name,
            message,
            hint: Some(NOT_FOUND_HINT.to_owned()),
        },
        429 => ProviderError::RateLimited {
            source_name,
            retry_after,
        },
        s if (300..400).contains(&s) => ProviderError::Upstream {
            source_name,
            status: s,
            message: "OpenAI answered with a redirect, which is not followed; check base_url"
                .to_owned(),
        },
        s => ProviderError::Upstream {
            source_name,
            status: s,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str) -> ProviderError {
        super::status_table(
            "oa",
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            None,
        )
    }

    fn envelope(kind: &str, code: Option<&str>, msg: &str) -> String {
        serde_json::json!({"error": {"message": msg, "type": kind, "param": null, "code": code}})
            .to_string()
    }

    #[test]
    fn status_table() {
        let e = err(
            400,
            r#"{"error":{"message":"Invalid 'limit'","type":"invalid_request_error","param":"limit","code":null}}"#,
        );
        assert_eq!(e.kind(), "invalid_query");
        assert!(
            e.to_string()
                .contains("Invalid 'limit' (param limit, type invalid_request_error)"),
            "{e}"
        );
        assert_eq!(
            err(
                401,
                &envelope(
                    "invalid_request_error",
                    Some("invalid_api_key"),
                    "Incorrect API key provided"
                )
            )
            .kind(),
            "upstream_unauthenticated"
        );
        assert_eq!(
            err(
                403,
                &envelope("invalid_request_error", None, "insufficient permissions")
            )
            .kind(),
            "upstream_forbidden"
        );
        let nf = err(404, "404 page not found");
        assert_eq!(nf.kind(), "upstream_not_found");
        assert!(nf.public_detail().contains("base_url"));
        assert!(
            !nf.to_string().contains("page not found"),
            "a proxy body is not quoted"
        );
        assert_eq!(
            err(
                429,
                &envelope("requests", Some("rate_limit_exceeded"), "slow down")
            )
            .retry_after(),
            None
        );
        assert_eq!(
            super::status_table(
                "oa",
                StatusCode::TOO_MANY_REQUESTS,
                b"{}",
                Some(Duration::from_secs(7))
            )
            .retry_after(),
            Some(Duration::from_secs(7))
        );
        let up = err(
            503,
            &envelope("server_error", None, "The server had an error"),
        );
        assert!(up.is_transient() && up.is_vendor_fault());
        assert!(matches!(
            err(302, ""),
            ProviderError::Upstream { status: 302, .. }
        ));
        let long = envelope("server_error", None, &"x".repeat(5000));
        let ProviderError::Upstream { message, .. } = err(500, &long) else {
            panic!()
        };
        assert!(message.chars().count() <= usage_core::transport::MAX_MESSAGE_CHARS + 1);
    }
}
