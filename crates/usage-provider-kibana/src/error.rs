//! The Kibana provider's private errors and their mapping to [`ProviderError`].

use std::time::Duration;

use usage_core::ProviderError;

/// What went wrong, before it is named for the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ErrorKind {
    /// 401: the credentials were rejected.
    #[error("Kibana rejected the credentials: {0}")]
    Unauthenticated(String),
    /// 403: a missing privilege or an insufficient license.
    #[error("{0}")]
    Forbidden(String),
    /// 404 on an Agent Builder route.
    #[error("{hint}; Kibana said: {message}")]
    NotFound {
        /// What the 404 likely means, in the provider's own words (shown to API callers).
        hint: String,
        /// Kibana's message (logs only).
        message: String,
    },
    /// 400: Kibana rejected the request as malformed.
    #[error("Kibana rejected the request (a configuration error or a gateway bug): {0}")]
    BadRequest(String),
    /// 429 from a proxy in front of Kibana.
    #[error("rate limited")]
    RateLimited(Option<Duration>),
    /// Any other status (5xx are transient: Elasticsearch rejections arrive as 500).
    #[error("HTTP {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// Kibana's message.
        message: String,
    },
    /// The request could not be sent or the answer not read.
    #[error("{0}")]
    Transport(String),
    /// The request did not finish in time.
    #[error("timed out")]
    Timeout(Duration),
    /// The body is not the documented shape.
    #[error("{0}")]
    Decode(String),
    /// The source cannot work as configured.
    #[error("{0}")]
    Config(String),
}

/// An error of one source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {kind}")]
pub(crate) struct Error {
    /// The configured source name.
    pub source_name: String,
    /// What happened.
    pub kind: ErrorKind,
}

impl Error {
    /// Creates an error of the named source.
    pub(crate) fn new(source_name: &str, kind: ErrorKind) -> Self {
        Self {
            source_name: source_name.to_owned(),
            kind,
        }
    }
}

impl From<Error> for ProviderError {
    fn from(e: Error) -> Self {
        let source_name = e.source_name;
        match e.kind {
            ErrorKind::Unauthenticated(message) => Self::Unauthenticated {
                source_name,
                message,
            },
            ErrorKind::Forbidden(message) => Self::Forbidden {
                source_name,
                message,
            },
            ErrorKind::NotFound { hint, message } => Self::NotFound {
                source_name,
                message: format!("{hint}; Kibana said: {message}"),
                hint: Some(hint),
            },
            kind @ ErrorKind::BadRequest(_) => Self::Config {
                source_name,
                message: kind.to_string(),
            },
            ErrorKind::RateLimited(retry_after) => Self::RateLimited {
                source_name,
                retry_after,
            },
            ErrorKind::Status { status, message } => Self::Upstream {
                source_name,
                status,
                message,
            },
            ErrorKind::Transport(message) => Self::Transport {
                source_name,
                message,
            },
            ErrorKind::Timeout(elapsed) => Self::Timeout {
                source_name,
                elapsed,
            },
            ErrorKind::Decode(message) => Self::Decode {
                source_name,
                message,
            },
            ErrorKind::Config(message) => Self::Config {
                source_name,
                message,
            },
        }
    }
}
