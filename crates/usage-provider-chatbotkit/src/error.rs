//! The crate's private error type and its conversion into [`usage_core::ProviderError`].

use std::time::Duration;

use usage_core::ProviderError;

/// What went wrong, before the source name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// 401.
    Unauthenticated { message: String },
    /// 402/403: plan or permission.
    Forbidden { message: String },
    /// 404.
    NotFound {
        message: String,
        /// The body was ChatBotKit's error shape (so the route exists; the resource does not).
        vendor_body: bool,
    },
    /// 429 `TOO_MANY_REQUESTS`, or a local `X-RateLimit-*` budget that is spent.
    RateLimited { retry_after: Option<Duration> },
    /// `LIMITS_REACHED`: the plan quota is exhausted.
    QuotaExceeded { message: String },
    /// 400/422: the vendor rejected the request as malformed.
    BadRequest { status: u16, message: String },
    /// Any other status.
    Status { status: u16, message: String },
    /// The request could not be sent or the body not read.
    Transport { message: String },
    /// reqwest's timeout fired.
    Timeout { elapsed: Duration },
    /// The body is not the documented shape.
    Decode { message: String },
}

/// A private error: a kind plus the source it happened on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Error {
    pub(crate) source_name: String,
    pub(crate) kind: ErrorKind,
}

impl Error {
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
            ErrorKind::Unauthenticated { message } => Self::Unauthenticated {
                source_name,
                message,
            },
            ErrorKind::Forbidden { message } => Self::Forbidden {
                source_name,
                message,
            },
            ErrorKind::NotFound { message, .. } => Self::NotFound {
                source_name,
                message,
                hint: None,
            },
            ErrorKind::RateLimited { retry_after } => Self::RateLimited {
                source_name,
                retry_after,
            },
            ErrorKind::QuotaExceeded { message } => Self::QuotaExceeded {
                source_name,
                message,
            },
            ErrorKind::BadRequest { status, message } => Self::Config {
                source_name,
                message: format!("ChatBotKit rejected the request (HTTP {status}): {message}"),
            },
            ErrorKind::Status { status, message } => Self::Upstream {
                source_name,
                status,
                message,
            },
            ErrorKind::Transport { message } => Self::Transport {
                source_name,
                message,
            },
            ErrorKind::Timeout { elapsed } => Self::Timeout {
                source_name,
                elapsed,
            },
            ErrorKind::Decode { message } => Self::Decode {
                source_name,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_semantic_variants() {
        let conv = |k| ProviderError::from(Error::new("cbk", k));
        let e = conv(ErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        });
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let e = conv(ErrorKind::QuotaExceeded {
            message: "limits".into(),
        });
        assert!(!e.is_transient());
        assert_eq!(e.kind(), "quota_exceeded");
        let e = conv(ErrorKind::BadRequest {
            status: 400,
            message: "bad".into(),
        });
        assert_eq!(e.kind(), "source_config");
        assert!(e.to_string().starts_with("cbk: "));
        let e = conv(ErrorKind::Status {
            status: 503,
            message: String::new(),
        });
        assert!(e.is_transient());
        assert_eq!(
            conv(ErrorKind::NotFound {
                message: "x".into(),
                vendor_body: true
            })
            .kind(),
            "upstream_not_found"
        );
    }
}
