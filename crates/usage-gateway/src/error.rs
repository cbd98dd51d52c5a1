//! One `ApiError`, one table from error to HTTP status, rendered as RFC 9457 problem+json.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use usage_core::ProviderError;
use utoipa::ToSchema;

use crate::model::SourceEntry;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Builds the problem `type` URI for a short kind (`invalid_parameter`, `rate_limited`, ...).
pub fn problem_type(kind: &str) -> String {
    format!("urn:usage-gateway:problem:{kind}")
}

/// One invalid query parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ParamError {
    /// The parameter name (`start`, `group_by`, ...).
    #[schema(example = "group_by")]
    pub parameter: String,
    /// What is wrong with it.
    #[schema(
        example = "unknown dimension `team`; expected one of source, provider, agent, user, conversation, usage_type, model"
    )]
    pub message: String,
}

impl ParamError {
    /// Creates a parameter error.
    pub fn new(parameter: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            parameter: parameter.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    #[schema(example = "urn:usage-gateway:problem:invalid_parameter")]
    pub kind: String,
    /// A short summary of the kind.
    #[schema(example = "Invalid query parameter")]
    pub title: String,
    /// The HTTP status (for source errors: the status the gateway would answer alone).
    #[schema(example = 400)]
    pub status: u16,
    /// What happened in this instance.
    pub detail: String,
    /// Every bad parameter (400 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ParamError>>,
    /// Seconds after which a retry may succeed (rate-limited sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Per-source results (502/504 when every source failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub sources: Option<Vec<SourceEntry>>,
    /// `urn:request-id:<id>`, the request id also returned in `x-request-id`; set on every
    /// problem response body (not on the problems inside `sources[].error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "urn:request-id:4f0c2a9e-2b7d-4c1e-9a3f-0d6b8e5c7a21")]
    pub instance: Option<String>,
}

impl Problem {
    /// Creates a problem without parameter errors or sources.
    pub fn new(kind: &str, title: &str, status: u16, detail: impl Into<String>) -> Self {
        Self {
            kind: problem_type(kind),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            errors: None,
            retry_after: None,
            sources: None,
            instance: None,
        }
    }

    /// Describes a source's failure (shown inside `sources[].error`).
    pub fn from_provider(e: &ProviderError) -> Self {
        let (title, status) = match e {
            ProviderError::Timeout { .. } => ("Source timed out", 504),
            ProviderError::RateLimited { .. } => ("Source rate limited", 429),
            ProviderError::QuotaExceeded { .. } => ("Vendor quota exhausted", 502),
            ProviderError::Unauthenticated { .. } | ProviderError::Forbidden { .. } => {
                ("Vendor refused the source's credentials", 502)
            }
            ProviderError::Config { .. } => ("Source misconfigured", 502),
            ProviderError::CircuitOpen { .. } => ("Source circuit open", 503),
            ProviderError::InvalidQuery { .. } => ("Query not answerable by this source", 400),
            ProviderError::SourceLimit { .. } => ("Query exceeds a limit of this source", 400),
            _ => ("Vendor request failed", 502),
        };
        let mut p = Self::new(e.kind(), title, status, e.public_detail());
        p.retry_after = e.retry_after().map(|d| d.as_secs().max(1));
        p
    }
}

/// Every way a request can fail; a single source failing is data, not an `ApiError`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with every bad parameter.
    #[error("invalid query parameters")]
    BadRequest(Vec<ParamError>),
    /// 401: missing or invalid token (never says why).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 403: insufficient scope or access.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such route.
    #[error("not found")]
    NotFound,
    /// 405: route exists, method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413: the request announces a body larger than `server.max_body_bytes`.
    #[error("request body too large: {0}")]
    PayloadTooLarge(String),
    /// 431: more header lines or header bytes than `server.max_headers`/`max_header_bytes`.
    #[error("request headers too large: {0}")]
    HeadersTooLarge(String),
    /// 502/504 when every touched source failed.
    #[error("every source failed")]
    AllSourcesFailed {
        /// 502, or 504 when all timed out.
        status: u16,
        /// The per-source entries.
        sources: Vec<SourceEntry>,
    },
    /// 500: a bug; details go to the log, not the body.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Renders the problem object.
    pub fn problem(&self) -> Problem {
        match self {
            Self::BadRequest(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.parameter, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut p =
                    Problem::new("invalid_parameter", "Invalid query parameter", 400, detail);
                p.errors = Some(errors.clone());
                p
            }
            Self::Unauthorized => Problem::new(
                "unauthorized",
                "Unauthorized",
                401,
                "A valid bearer token is required.",
            ),
            Self::Forbidden(d) => Problem::new("forbidden", "Forbidden", 403, d.clone()),
            Self::NotFound => Problem::new("not_found", "Not found", 404, "No such route."),
            Self::MethodNotAllowed => Problem::new(
                "method_not_allowed",
                "Method not allowed",
                405,
                "This route does not answer this method.",
            ),
            Self::PayloadTooLarge(d) => Problem::new(
                "payload_too_large",
                "Request body too large",
                413,
                d.clone(),
            ),
            Self::HeadersTooLarge(d) => Problem::new(
                "headers_too_large",
                "Request header fields too large",
                431,
                d.clone(),
            ),
            Self::AllSourcesFailed { status, sources } => {
                let (kind, title) = if *status == 504 {
                    ("all_sources_timed_out", "Every source timed out")
                } else {
                    ("all_sources_failed", "Every source failed")
                };
                let mut p = Problem::new(
                    kind,
                    title,
                    *status,
                    "No source answered and no cached data exists; see `sources` for each failure.",
                );
                p.sources = Some(sources.clone());
                p
            }
            Self::Internal(_) => Problem::new(
                "internal",
                "Internal error",
                500,
                "The gateway failed; the error was logged.",
            ),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::AllSourcesFailed { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(msg) = self {
            tracing::error!(error = %msg, "internal error");
        }
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        resp.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if matches!(self, Self::MethodNotAllowed) {
            // Every route of this API answers GET only.
            resp.insert_header((header::ALLOW, HeaderValue::from_static("GET")));
        }
        if matches!(self, Self::Unauthorized) {
            resp.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            ));
        }
        resp.body(serde_json::to_vec(&self.problem()).unwrap_or_default())
    }
}
