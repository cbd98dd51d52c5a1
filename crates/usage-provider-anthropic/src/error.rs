//! The one table from an Anthropic answer (status and error envelope) to
//! [`usage_core::ProviderError`], and the transport's own failures.

use std::time::Duration;

use reqwest::StatusCode;
use usage_core::ProviderError;
use usage_core::transport::{Refusal, truncate};

use crate::model::ErrorEnvelope;

/// Maps a non-2xx answer of source `source` to an error (a 429 keeps the delay the answer's
/// headers give, `None` when they give none).
///
/// 400/413/422 (`invalid_request_error`) → invalid query with the vendor's message; 401 →
/// unauthenticated; 403 → forbidden (e.g. a key that is not an Admin key); 404 → not found;
/// 429 → rate limited; 5xx, 529 `overloaded_error` included → upstream (retryable); anything
/// else → upstream.
pub(crate) fn parse_error(source: &str, answer: &Refusal<'_>) -> ProviderError {
    status_table(source, answer.status, answer.body, answer.retry_after)
}

/// [`parse_error`] on the answer's parts.
fn status_table(
    source: &str,
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> ProviderError {
    let message = message(status, body);
    let source_name = source.to_owned();
    match status.as_u16() {
        400 | 413 | 422 => ProviderError::InvalidQuery {
            source_name,
            message: format!("Anthropic rejected the request (HTTP {status}): {message}"),
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
            hint: None,
        },
        429 => ProviderError::RateLimited {
            source_name,
            retry_after,
        },
        s => ProviderError::Upstream {
            source_name,
            status: s,
            message,
        },
    }
}

/// The envelope's `type: message (request_id …)`, or a note that the body was not Anthropic's
/// (a body that is not the envelope, e.g. a proxy's page, is not quoted: it could echo the
/// request's headers).
fn message(status: StatusCode, body: &[u8]) -> String {
    let envelope = serde_json::from_slice::<ErrorEnvelope>(body).ok();
    let detail = envelope.as_ref().and_then(|e| e.error.as_ref());
    let Some(detail) = detail.filter(|d| d.kind.is_some() || d.message.is_some()) else {
        return format!("HTTP {} without Anthropic's error body", status.as_u16());
    };
    let mut m = match (detail.kind.as_deref(), detail.message.as_deref()) {
        (Some(k), Some(m)) => format!("{k}: {}", m.trim()),
        (Some(k), None) => k.to_owned(),
        (None, m) => m.unwrap_or_default().trim().to_owned(),
    };
    if let Some(id) = envelope
        .as_ref()
        .and_then(|e| e.request_id.as_deref())
        .filter(|r| !r.is_empty())
    {
        m = format!("{} (request_id {})", truncate(&m), truncate(id));
    }
    truncate(&m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str, retry: Option<u64>) -> ProviderError {
        super::status_table(
            "an",
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            retry.map(Duration::from_secs),
        )
    }

    fn envelope(kind: &str, message: &str) -> String {
        format!(
            r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}},"request_id":"req_011"}}"#
        )
    }

    #[test]
    fn status_table() {
        let e = err(
            400,
            &envelope(
                "invalid_request_error",
                "limit: Input should be less than or equal to 31",
            ),
            None,
        );
        assert_eq!(e.kind(), "invalid_query");
        assert!(
            e.to_string()
                .contains("invalid_request_error: limit: Input should be less than or equal to 31 (request_id req_011)"),
            "{e}"
        );
        assert_eq!(
            err(
                401,
                &envelope("authentication_error", "invalid x-api-key"),
                None
            )
            .kind(),
            "upstream_unauthenticated"
        );
        assert_eq!(
            err(403, &envelope("permission_error", "no"), None).kind(),
            "upstream_forbidden"
        );
        assert_eq!(
            err(404, &envelope("not_found_error", "no"), None).kind(),
            "upstream_not_found"
        );
        let limited = err(429, &envelope("rate_limit_error", "slow"), Some(7));
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(
            err(429, &envelope("rate_limit_error", "slow"), None).retry_after(),
            None
        );
        let overloaded = err(529, &envelope("overloaded_error", "Overloaded"), None);
        assert!(overloaded.is_transient() && overloaded.is_vendor_fault());
        assert!(
            overloaded
                .to_string()
                .contains("overloaded_error: Overloaded")
        );
        assert!(err(500, &envelope("api_error", "boom"), None).is_transient());
    }

    #[test]
    fn other_bodies_are_not_quoted() {
        let e = err(502, "<html>x-api-key: sk-ant-admin01-secret</html>", None);
        assert!(
            e.to_string()
                .ends_with("HTTP 502 without Anthropic's error body"),
            "{e}"
        );
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = err(503, &"x".repeat(5000), None);
        assert!(!e.to_string().contains("xxx"), "{e}");
        assert!(
            err(500, "", None)
                .to_string()
                .contains("HTTP 500 without Anthropic's error body")
        );
        let e = err(404, r#"{"detail": "not here"}"#, None);
        assert!(!e.to_string().contains("not here"), "{e}");
    }
}
