//! The provider's private error enum and its conversion into [`usage_core::ProviderError`].

use std::time::Duration;

use usage_core::ProviderError;

/// What went wrong talking to DigitalOcean, before the source name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DoError {
    /// 401: the token was rejected.
    Unauthenticated { message: String },
    /// 403: the token lacks `genai:read` or the account lacks access.
    Forbidden { message: String },
    /// 404; `vendor` is true when the body is DigitalOcean's own error object (an unknown
    /// agent), and false when something else (a proxy, a wrong `base_url`) answered.
    NotFound { message: String, vendor: bool },
    /// 429 from DigitalOcean, or the local budget cannot grant the calls in time.
    RateLimited { retry_after: Option<Duration> },
    /// 400/422: DigitalOcean rejected the request as malformed.
    BadRequest { status: u16, message: String },
    /// Any other unexpected status (5xx, 3xx not followed, other 4xx).
    Upstream { status: u16, message: String },
    /// The request could not be sent or the answer could not be read.
    Transport { message: String },
    /// The HTTP client's timeout fired.
    Timeout { elapsed: Duration },
    /// The body is not the documented shape.
    Decode { message: String },
    /// The query cannot be answered as asked.
    InvalidQuery { message: String },
    /// The query needs more usage calls than `max_upstream_calls`.
    SourceLimit {
        message: String,
        calls: usage_core::CallLimit,
    },
}

/// A [`DoError`] with the name of the source it happened in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourcedError {
    /// The configured source name.
    pub source_name: String,
    /// The error.
    pub error: DoError,
}

impl DoError {
    /// Attaches the source name.
    pub(crate) fn at(self, source_name: &str) -> SourcedError {
        SourcedError {
            source_name: source_name.to_owned(),
            error: self,
        }
    }
}

impl From<SourcedError> for ProviderError {
    fn from(e: SourcedError) -> Self {
        let source_name = e.source_name;
        match e.error {
            DoError::Unauthenticated { message } => Self::Unauthenticated {
                source_name,
                message,
            },
            DoError::Forbidden { message } => Self::Forbidden {
                source_name,
                message,
            },
            DoError::NotFound { message, .. } => Self::NotFound {
                source_name,
                message,
                hint: None,
            },
            DoError::RateLimited { retry_after } => Self::RateLimited {
                source_name,
                retry_after,
            },
            DoError::BadRequest { status, message } => Self::Config {
                source_name,
                message: format!(
                    "DigitalOcean rejected the request as malformed (HTTP {status}): {message}"
                ),
            },
            DoError::Upstream { status, message } => Self::Upstream {
                source_name,
                status,
                message,
            },
            DoError::Transport { message } => Self::Transport {
                source_name,
                message,
            },
            DoError::Timeout { elapsed } => Self::Timeout {
                source_name,
                elapsed,
            },
            DoError::Decode { message } => Self::Decode {
                source_name,
                message,
            },
            DoError::InvalidQuery { message } => Self::InvalidQuery {
                source_name,
                message,
            },
            DoError::SourceLimit { message, calls } => Self::SourceLimit {
                source_name,
                message,
                calls,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_keeps_semantics_and_source() {
        let e: ProviderError = DoError::RateLimited {
            retry_after: Some(Duration::from_secs(29)),
        }
        .at("do")
        .into();
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(29)));
        assert!(e.to_string().starts_with("do: "));

        let e: ProviderError = DoError::Upstream {
            status: 503,
            message: "Unexpected server-side error".into(),
        }
        .at("do")
        .into();
        assert!(e.is_transient());
        assert_eq!(e.kind(), "upstream_error");

        let e: ProviderError = DoError::Unauthenticated {
            message: "Unable to authenticate you.".into(),
        }
        .at("do")
        .into();
        assert!(!e.is_transient());
        assert_eq!(e.kind(), "upstream_unauthenticated");

        let e: ProviderError = DoError::BadRequest {
            status: 400,
            message: "bad date".into(),
        }
        .at("do")
        .into();
        assert_eq!(e.kind(), "source_config");
        assert!(e.to_string().contains("bad date"));
    }
}
