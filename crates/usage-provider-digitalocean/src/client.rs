//! DigitalOcean HTTP: request building, the outbound budget, and the one status→error function.

use std::fmt;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;
use usage_core::budget::{Budget, BudgetError};

use crate::error::DoError;
use crate::model::{ErrorBody, GetAgentUsageOutput, ListAgentsOutput};

/// DigitalOcean's `per_page` maximum for collections.
const AGENTS_PER_PAGE: &str = "200";

/// Longest vendor message kept in an error.
const MAX_MESSAGE_CHARS: usize = 200;

/// Talks to one DigitalOcean account: every request passes the source's [`Budget`] (per-minute
/// rate, concurrency cap, and the pause a 429 asks for).
pub(crate) struct DoClient {
    http: reqwest::Client,
    base_url: Url,
    token: SecretString,
    budget: Budget,
    max_body: usize,
}

impl fmt::Debug for DoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoClient")
            .field("base_url", &self.base_url.as_str())
            .field("token", &"[REDACTED]")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl DoClient {
    /// Creates a client; `base_url` must be able to be a base (checked by config validation).
    pub(crate) fn new(
        http: reqwest::Client,
        base_url: Url,
        token: SecretString,
        per_minute: NonZeroU32,
        max_concurrency: usize,
    ) -> Self {
        Self {
            http,
            base_url,
            token,
            budget: Budget::new(Some(per_minute), max_concurrency),
            max_body: usage_core::http::DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Caps response bodies at `bytes`.
    pub(crate) fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Returns `base_url` with the given path segments appended, each percent-encoded (an agent
    /// uuid holding `/` or `?` stays one segment).
    pub(crate) fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// The URL of the first agents page.
    pub(crate) fn first_agents_page(&self, only_deployed: bool) -> Url {
        let mut url = self.endpoint(&["v2", "gen-ai", "agents"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("per_page", AGENTS_PER_PAGE);
            if only_deployed {
                q.append_pair("only_deployed", "true");
            }
        }
        url
    }

    /// Resolves a `links.pages.next` value and refuses one that leaves the configured origin,
    /// so the token is never sent to another host.
    pub(crate) fn next_page(&self, current: &Url, next: &str) -> Result<Url, DoError> {
        let url = current.join(next).map_err(|e| DoError::Decode {
            message: format!("links.pages.next is not a URL: {e}"),
        })?;
        if url.origin() != self.base_url.origin() {
            return Err(DoError::Decode {
                message: format!(
                    "links.pages.next points to {}, outside the configured base_url; not following it",
                    url.origin().ascii_serialization()
                ),
            });
        }
        Ok(url)
    }

    /// Fetches one page of `GET /v2/gen-ai/agents`.
    pub(crate) async fn list_agents(&self, url: Url) -> Result<ListAgentsOutput, DoError> {
        self.get_json(url).await
    }

    /// Fetches `GET /v2/gen-ai/agents/{uuid}/usage?start&stop` for an inclusive second range.
    pub(crate) async fn agent_usage(
        &self,
        uuid: &str,
        start: DateTime<Utc>,
        stop: DateTime<Utc>,
    ) -> Result<GetAgentUsageOutput, DoError> {
        let mut url = self.endpoint(&["v2", "gen-ai", "agents", uuid, "usage"]);
        url.query_pairs_mut()
            .append_pair("start", &rfc3339_seconds(start))
            .append_pair("stop", &rfc3339_seconds(stop));
        self.get_json(url).await
    }

    /// Takes `n` calls from the source's per-minute budget, all or nothing, waiting only while
    /// the wait ends before the request deadline; otherwise answers `RateLimited` with the wait
    /// the budget needs. Nothing is taken on failure. Each request then takes a concurrency slot.
    pub(crate) async fn admit(&self, n: u32) -> Result<(), DoError> {
        self.budget.reserve(n).await.map_err(|e| budget_error(&e))
    }

    /// Pauses every call for `d` (keeping the later of an existing pause).
    fn block_for(&self, d: Duration) {
        self.budget.block_for(d);
    }

    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, DoError> {
        let _slot = self.budget.slot().await.map_err(|e| budget_error(&e))?;
        let started = Instant::now();
        let response = self
            .http
            .get(url)
            .bearer_auth(self.token.expose_secret())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| request_error(e, started))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = usage_core::http::read_body(response, self.max_body)
            .await
            .map_err(|e| match e {
                usage_core::http::BodyError::TooLarge { limit } => DoError::Decode {
                    message: usage_core::http::BodyError::too_large_message(limit),
                },
                usage_core::http::BodyError::Read(e) => request_error(e, started),
            })?;
        if !status.is_success() {
            let err = parse_error(status, &headers, &body, Utc::now());
            if let DoError::RateLimited {
                retry_after: Some(d),
            } = &err
            {
                self.block_for(*d);
            }
            return Err(err);
        }
        // The last request the token's budget allowed (the hourly 5 000 included, which
        // `ratelimit-limit` reports): pause until it resets instead of earning a 429.
        if spent(&headers)
            && let Some(d) = retry_after(&headers, Utc::now())
        {
            self.block_for(d);
        }
        usage_core::http::json(&body).map_err(|e| DoError::Decode {
            message: truncate(&format!("unexpected {status} body: {e}")),
        })
    }
}

/// Maps a refusal of the local budget.
fn budget_error(e: &BudgetError) -> DoError {
    match *e {
        BudgetError::ExceedsBudget { .. } => DoError::InvalidQuery {
            message: e.to_string(),
        },
        BudgetError::RateLimited { retry_after } => DoError::RateLimited {
            retry_after: Some(retry_after),
        },
    }
}

/// Formats an instant as DigitalOcean's documented `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339_seconds(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Maps a non-2xx DigitalOcean answer to an error: the one place statuses are decided.
///
/// The body is DigitalOcean's `{id, message, request_id}`, or anything else (a proxy page), in
/// which case a short prefix of it stands in for the message, as godo's `CheckResponse` does.
pub(crate) fn parse_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> DoError {
    let vendor: Option<ErrorBody> = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .filter(|b| b.id.is_some() || b.message.is_some());
    let message = vendor
        .as_ref()
        .map_or_else(|| raw_body_message(body), vendor_message);
    match status.as_u16() {
        400 | 422 => DoError::BadRequest {
            status: status.as_u16(),
            message,
        },
        401 => DoError::Unauthenticated { message },
        403 => DoError::Forbidden { message },
        404 => DoError::NotFound {
            vendor: vendor.is_some_and(|b| b.id.is_some()),
            message,
        },
        429 => DoError::RateLimited {
            retry_after: retry_after(headers, now),
        },
        s if (300..400).contains(&s) => DoError::Upstream {
            status: s,
            message: "DigitalOcean answered with a redirect, which is not followed; check base_url"
                .to_owned(),
        },
        s => DoError::Upstream { status: s, message },
    }
}

/// Reports whether `ratelimit-remaining` says the token's budget is spent.
fn spent(headers: &HeaderMap) -> bool {
    headers
        .get("ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        == Some(0)
}

/// Reads the delay a 429 asks for: `retry-after` (seconds or an HTTP date) first, then
/// `ratelimit-reset` (Unix seconds when the oldest counted request expires). Header names are
/// case-insensitive (`HeaderMap` stores them lowercased; DO's docs spell `rateLimit-reset`).
/// The delay is at least one second.
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let until = |t: DateTime<Utc>| (t - now).to_std().unwrap_or(Duration::ZERO);
    let from_retry_after = text("retry-after").and_then(|v| {
        v.parse::<u64>()
            .ok()
            .map(Duration::from_secs)
            .or_else(|| {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
            })
            .or_else(|| {
                DateTime::parse_from_rfc2822(v)
                    .ok()
                    .map(|t| until(t.with_timezone(&Utc)))
            })
    });
    let from_reset = || {
        text("ratelimit-reset").and_then(|v| {
            let secs = v.parse::<i64>().ok().or_else(|| {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite())
                    .map(|s| s.ceil() as i64)
            })?;
            DateTime::from_timestamp(secs, 0).map(until)
        })
    };
    from_retry_after
        .or_else(from_reset)
        .map(|d| ceil_to_second(d).max(Duration::from_secs(1)))
}

/// Rounds a delay up to whole seconds (errors report seconds).
pub(crate) fn ceil_to_second(d: Duration) -> Duration {
    if d.subsec_nanos() == 0 {
        d
    } else {
        Duration::from_secs(d.as_secs().saturating_add(1))
    }
}

fn vendor_message(b: &ErrorBody) -> String {
    let mut m = b
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .or(b.id.as_deref())
        .unwrap_or("no message")
        .to_owned();
    if let Some(id) = b.request_id.as_deref().filter(|r| !r.is_empty()) {
        m = format!("{} (request_id {})", truncate(&m), truncate(id));
    }
    truncate(&m)
}

fn raw_body_message(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => {
            let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if collapsed.is_empty() {
                "empty body".to_owned()
            } else {
                truncate(&collapsed)
            }
        }
        Err(_) => format!("non-text body ({} bytes)", body.len()),
    }
}

/// Keeps at most [`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE_CHARS {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX_MESSAGE_CHARS).collect();
        t.push('…');
        t
    }
}

/// Maps a reqwest failure: the client's timeout → `Timeout`, anything else → `Transport` with the
/// error's cause chain (reqwest's own message alone hides e.g. "connection refused"). The URL is
/// left out: the cause is what matters, and it must fit the message limit.
fn request_error(e: reqwest::Error, started: Instant) -> DoError {
    if e.is_timeout() {
        return DoError::Timeout {
            elapsed: started.elapsed(),
        };
    }
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    DoError::Transport {
        message: truncate(&message),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn err(status: u16, body: &str) -> DoError {
        parse_error(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            now(),
        )
    }

    #[test]
    fn status_table() {
        let body = |id: &str, msg: &str| format!(r#"{{"id":"{id}","message":"{msg}"}}"#);
        assert_eq!(
            err(401, &body("unauthorized", "Unable to authenticate you.")),
            DoError::Unauthenticated {
                message: "Unable to authenticate you.".into()
            }
        );
        assert_eq!(
            err(403, &body("forbidden", "You do not have access.")),
            DoError::Forbidden {
                message: "You do not have access.".into()
            }
        );
        assert_eq!(
            err(
                404,
                &body(
                    "not_found",
                    "The resource you requested could not be found."
                )
            ),
            DoError::NotFound {
                message: "The resource you requested could not be found.".into(),
                vendor: true
            }
        );
        assert_eq!(
            err(429, &body("too_many_requests", "API rate limit exceeded.")),
            DoError::RateLimited { retry_after: None }
        );
        assert_eq!(
            err(500, &body("server_error", "Unexpected server-side error")),
            DoError::Upstream {
                status: 500,
                message: "Unexpected server-side error".into()
            }
        );
        assert_eq!(
            err(503, "<html><body>Service   Unavailable</body></html>"),
            DoError::Upstream {
                status: 503,
                message: "<html><body>Service Unavailable</body></html>".into()
            }
        );
        assert!(matches!(
            err(400, &body("bad_request", "bad start")),
            DoError::BadRequest { status: 400, .. }
        ));
        assert!(matches!(
            err(301, ""),
            DoError::Upstream { status: 301, .. }
        ));
        assert!(
            matches!(err(418, ""), DoError::Upstream { status: 418, message } if message == "empty body")
        );
    }

    #[test]
    fn a_404_without_do_body_is_not_an_unknown_agent() {
        assert_eq!(
            err(404, "404 page not found"),
            DoError::NotFound {
                message: "404 page not found".into(),
                vendor: false
            }
        );
        assert!(matches!(
            err(404, "{}"),
            DoError::NotFound { vendor: false, .. }
        ));
    }

    #[test]
    fn request_id_rides_along_and_long_messages_are_cut() {
        let e = err(
            500,
            r#"{"id":"server_error","message":"boom","request_id":"4d9d8375"}"#,
        );
        assert_eq!(
            e,
            DoError::Upstream {
                status: 500,
                message: "boom (request_id 4d9d8375)".into()
            }
        );
        let long = "x".repeat(5000);
        let DoError::Upstream { message, .. } = err(502, &long) else {
            panic!("502 is upstream")
        };
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        let DoError::Upstream { message, .. } = parse_error(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            &[0xff, 0xfe, 0x00],
            now(),
        ) else {
            panic!("502 is upstream")
        };
        assert_eq!(message, "non-text body (3 bytes)");
    }

    #[test]
    fn retry_after_wins_over_reset() {
        let h = headers(&[("retry-after", "29"), ("ratelimit-reset", "1700000100")]);
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(29)));
        let h = headers(&[("ratelimit-reset", "1700000100")]);
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(100)));
        let h = headers(&[("ratelimit-reset", "1600000000")]);
        assert_eq!(
            retry_after(&h, now()),
            Some(Duration::from_secs(1)),
            "a past reset still waits a second"
        );
        let h = headers(&[("retry-after", "Tue, 14 Nov 2023 22:13:27 GMT")]);
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(7)));
        let h = headers(&[("retry-after", "0.2")]);
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(1)));
        let h = headers(&[("retry-after", "soon"), ("ratelimit-reset", "later")]);
        assert_eq!(retry_after(&h, now()), None);
        assert_eq!(retry_after(&HeaderMap::new(), now()), None);
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::HeaderName::from_bytes(b"RateLimit-Reset").unwrap(),
            HeaderValue::from_static("1700000042"),
        );
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(42)));
        let e = parse_error(StatusCode::TOO_MANY_REQUESTS, &h, b"{}", now());
        assert_eq!(
            e,
            DoError::RateLimited {
                retry_after: Some(Duration::from_secs(42))
            }
        );
    }

    #[test]
    fn seconds_format() {
        let t = DateTime::parse_from_rfc3339("2024-01-31T23:59:59.999+00:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339_seconds(t), "2024-01-31T23:59:59Z");
    }

    fn client(base: &str) -> DoClient {
        DoClient::new(
            reqwest::Client::new(),
            Url::parse(base).unwrap(),
            SecretString::from("t"),
            NonZeroU32::new(2).unwrap(),
            1,
        )
    }

    #[test]
    fn endpoints_encode_segments_and_keep_prefixes() {
        let c = client("http://127.0.0.1:1/proxy/do/");
        assert_eq!(
            c.endpoint(&["v2", "gen-ai", "agents", "a/b?c", "usage"])
                .as_str(),
            "http://127.0.0.1:1/proxy/do/v2/gen-ai/agents/a%2Fb%3Fc/usage"
        );
        let c = client("http://127.0.0.1:1");
        assert_eq!(
            c.first_agents_page(true).as_str(),
            "http://127.0.0.1:1/v2/gen-ai/agents?per_page=200&only_deployed=true"
        );
    }

    #[test]
    fn next_links_stay_on_the_configured_origin() {
        let c = client("http://127.0.0.1:1");
        let cur = c.first_agents_page(false);
        assert_eq!(
            c.next_page(
                &cur,
                "http://127.0.0.1:1/v2/gen-ai/agents?page=2&per_page=200"
            )
            .unwrap()
            .as_str(),
            "http://127.0.0.1:1/v2/gen-ai/agents?page=2&per_page=200"
        );
        assert!(c.next_page(&cur, "/v2/gen-ai/agents?page=2").is_ok());
        assert!(matches!(
            c.next_page(&cur, "https://evil.example/v2/gen-ai/agents?page=2"),
            Err(DoError::Decode { .. })
        ));
    }

    #[tokio::test]
    async fn budget_grants_all_or_nothing_and_reports_the_wait() {
        let c = client("http://127.0.0.1:1");
        c.admit(2).await.unwrap();
        let started = Instant::now();
        let e = c.admit(1).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "gives up at once"
        );
        let DoError::RateLimited {
            retry_after: Some(wait),
        } = e
        else {
            panic!("{e:?}")
        };
        assert!(
            wait > usage_core::budget::DEFAULT_MAX_WAIT && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(matches!(
            c.admit(3).await,
            Err(DoError::InvalidQuery { .. })
        ));
        c.admit(0).await.unwrap();
    }

    #[tokio::test]
    async fn a_vendor_429_blocks_further_calls() {
        let c = client("http://127.0.0.1:1");
        c.block_for(Duration::from_secs(29));
        let e = c.admit(1).await.unwrap_err();
        assert_eq!(
            e,
            DoError::RateLimited {
                retry_after: Some(Duration::from_secs(29))
            }
        );
        // A short block is waited out.
        let c = client("http://127.0.0.1:1");
        c.block_for(Duration::from_millis(100));
        c.admit(1).await.unwrap();
    }
}
