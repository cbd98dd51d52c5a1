//! The vendor HTTP transport (feature `http`): the one send path every provider's client uses.
//!
//! A [`Transport`] holds what a source's vendor requests share: the reqwest client, the source's
//! [`Budget`], the body cap and the source name. [`Transport::send`] does, once for every vendor:
//! budget admission (which also notes the request for [`crate::requests`]), the per-call request
//! count, the send, the capped body read, the vendor's rate-limit headers (a spent budget pauses
//! the source until its reset; see [`rate_limit_delay`]), the mapping of a non-2xx answer through
//! the vendor's own error table ([`Vendor::refused`]), the pause a 429 asks for, and the transport
//! failures (timeouts, and the cause chain of anything else, cut to [`MAX_MESSAGE_CHARS`]).
//!
//! A provider's client is left with what really differs per vendor: building requests (URL,
//! authentication, vendor headers), decoding bodies, and its [`Vendor`] impl.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::ProviderError;
use crate::budget::{Budget, BudgetError};
use crate::http::{BodyError, read_body};

/// Vendor messages kept in errors are cut to this many characters.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// The longest pause a vendor's rate-limit headers are believed for.
pub const MAX_RATE_LIMIT_DELAY: Duration = Duration::from_secs(3600);

/// What the transport itself can fail with, before the vendor's client names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The source's budget refused the request (spent until after the request deadline, or more
    /// requests asked for at once than its whole per-minute budget).
    Budget(BudgetError),
    /// No answer within the client's timeout.
    Timeout {
        /// How long the request ran.
        elapsed: Duration,
    },
    /// The request could not be sent or its answer not read: the error's cause chain, without
    /// the URL, cut to [`MAX_MESSAGE_CHARS`].
    Transport {
        /// What failed.
        message: String,
    },
    /// The answer's body is larger than the source's `max_body_bytes`; it was not read further.
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
}

impl TransportError {
    /// Describes the failure in a sentence (for providers that keep a message).
    pub fn message(&self) -> String {
        match self {
            Self::Budget(e) => e.to_string(),
            Self::Timeout { elapsed } => format!("timed out after {}ms", elapsed.as_millis()),
            Self::Transport { message } => message.clone(),
            Self::TooLarge { limit } => BodyError::too_large_message(*limit),
        }
    }
}

/// A non-2xx answer, handed to the vendor's error table.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// The status.
    pub status: StatusCode,
    /// The answer's headers.
    pub headers: &'a HeaderMap,
    /// The body (at most `max_body_bytes`).
    pub body: &'a [u8],
    /// The delay the answer's rate-limit headers ask for ([`rate_limit_delay`]), if any.
    pub retry_after: Option<Duration>,
}

/// A vendor's part of the transport: how its client names failures.
pub trait Vendor {
    /// The provider's error type.
    type Error;

    /// The vendor's error table: maps a non-2xx answer to an error.
    fn refused(&self, answer: &Refusal<'_>) -> Self::Error;

    /// Names a failure of the transport itself.
    fn failed(&self, error: TransportError) -> Self::Error;

    /// The pause an error asks the whole source to take (a 429 with a known delay): every
    /// request of the source waits for it, instead of earning more 429s.
    fn pause(&self, error: &Self::Error) -> Option<Duration>;
}

/// The [`Vendor`] of a provider whose error type is [`ProviderError`] (OpenAI, Anthropic): its
/// own status table (`refused`), and what such providers share — transport failures and budget
/// refusals named by [`provider_failure`] and [`budget_refusal`], and a pause for every 429:
/// the delay the answer gives or, when it gives none, `default_pause` (so that other queries on
/// the source do not keep sending while the vendor is refusing).
#[derive(Debug, Clone, Copy)]
pub struct ProviderVendor<'a> {
    /// The source's name.
    pub source: &'a str,
    /// The vendor's status table: `(source, answer)` → error.
    pub refused: fn(&str, &Refusal<'_>) -> ProviderError,
    /// The pause after a 429 without a delay.
    pub default_pause: Duration,
}

impl Vendor for ProviderVendor<'_> {
    type Error = ProviderError;

    fn refused(&self, answer: &Refusal<'_>) -> ProviderError {
        (self.refused)(self.source, answer)
    }

    fn failed(&self, error: TransportError) -> ProviderError {
        provider_failure(self.source, error)
    }

    fn pause(&self, error: &ProviderError) -> Option<Duration> {
        match error {
            ProviderError::RateLimited { retry_after, .. } => {
                Some(retry_after.unwrap_or(self.default_pause))
            }
            _ => None,
        }
    }
}

/// Names a failure of the transport of source `source` as a [`ProviderError`]: the budget's
/// refusal ([`budget_refusal`]), a timeout, a transport failure, or an oversized body (a decode
/// error).
pub fn provider_failure(source: &str, error: TransportError) -> ProviderError {
    let source_name = source.to_owned();
    match error {
        TransportError::Budget(e) => budget_refusal(source, &e),
        TransportError::Timeout { elapsed } => ProviderError::Timeout {
            source_name,
            elapsed,
        },
        TransportError::Transport { message } => ProviderError::Transport {
            source_name,
            message,
        },
        e @ TransportError::TooLarge { .. } => ProviderError::Decode {
            source_name,
            message: e.message(),
        },
    }
}

/// Names a refusal of source `source`'s budget: spent (or paused) → rate limited with its
/// wait; more requests at once than the whole per-minute budget → an invalid query.
pub fn budget_refusal(source: &str, e: &BudgetError) -> ProviderError {
    match e.retry_after() {
        Some(wait) => ProviderError::RateLimited {
            source_name: source.to_owned(),
            retry_after: Some(wait),
        },
        None => ProviderError::InvalidQuery {
            source_name: source.to_owned(),
            message: e.to_string(),
        },
    }
}

/// How a request takes its place in the source's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// One request from the rate budget and a concurrency slot ([`Budget::admit`]).
    Admit,
    /// Only a concurrency slot: the caller reserved the rate budget for a planned fan-out
    /// beforehand ([`Budget::reserve`]).
    Reserved,
}

/// A successful (2xx) vendor answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, read in full (at most `max_body_bytes`).
    pub body: Bytes,
}

/// The shared HTTP send path of one source (cheap to clone: the budget is shared).
#[derive(Clone)]
pub struct Transport {
    http: reqwest::Client,
    budget: Arc<Budget>,
    max_body: usize,
    source: Arc<str>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("source", &self.source)
            .field("budget", &self.budget)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport for the source `source`, sending with `http` through `budget`, reading
    /// bodies up to `max_body` bytes.
    pub fn new(source: &str, http: reqwest::Client, budget: Budget, max_body: usize) -> Self {
        Self {
            http,
            budget: Arc::new(budget),
            max_body,
            source: source.into(),
        }
    }

    /// The reqwest client, to build requests with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The source's budget (e.g. to [`Budget::reserve`] a planned fan-out).
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The source's name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Sends `request` and returns the successful answer, or the vendor's error.
    ///
    /// The request takes its budget place as `admission` says, right before it is sent; `sent`
    /// (the call's request count) grows by one once it has. Whatever the status, a response
    /// saying the vendor's budget is spent (`ratelimit-remaining: 0` or
    /// `x-ratelimit-remaining: 0`) pauses the source until the reset it gives. A non-2xx answer
    /// is named by `vendor`'s error table; an error that asks for a pause pauses the source.
    pub async fn send<V: Vendor>(
        &self,
        vendor: &V,
        admission: Admission,
        request: reqwest::RequestBuilder,
        sent: Option<&AtomicU64>,
    ) -> Result<Answer, V::Error> {
        let refused = |e| vendor.failed(TransportError::Budget(e));
        let _permit = match admission {
            Admission::Admit => self.budget.admit().await.map_err(refused)?,
            Admission::Reserved => self.budget.slot().await.map_err(refused)?,
        };
        if let Some(sent) = sent {
            sent.fetch_add(1, Ordering::Relaxed);
        }
        let started = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|e| vendor.failed(request_error(&e, started)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(response, self.max_body)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => vendor.failed(TransportError::TooLarge { limit }),
                BodyError::Read(e) => vendor.failed(request_error(&e, started)),
            })?;
        let now = Utc::now();
        if let Some(d) = spent_budget_delay(&headers, now) {
            self.budget.block_for(d);
        }
        if !status.is_success() {
            let err = vendor.refused(&Refusal {
                status,
                headers: &headers,
                body: &body,
                retry_after: rate_limit_delay(&headers, now),
            });
            if let Some(d) = vendor.pause(&err) {
                self.budget.block_for(d);
            }
            return Err(err);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// Maps a reqwest failure: the client's timeout → [`TransportError::Timeout`], anything else →
/// [`TransportError::Transport`] with the error's cause chain (reqwest's own message alone
/// hides e.g. "connection refused"), without the URL (ours, not news).
pub fn request_error(e: &reqwest::Error, started: Instant) -> TransportError {
    if e.is_timeout() {
        return TransportError::Timeout {
            elapsed: started.elapsed(),
        };
    }
    let mut message = e.to_string();
    if let Some(url) = e.url() {
        message = message.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    TransportError::Transport {
        message: truncate(&message),
    }
}

/// Keeps at most [`MAX_MESSAGE_CHARS`] characters of a trimmed vendor message (an ellipsis
/// marks a cut).
pub fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The pause a vendor's rate-limit headers ask for, read the same way for every vendor:
/// `Retry-After` first (delay seconds, also fractional, or an HTTP date), then the reset of
/// the IETF draft's `RateLimit-Reset` (DigitalOcean: Unix seconds) or the common
/// `X-RateLimit-Reset` (ChatBotKit), each as delay seconds, Unix seconds, Unix milliseconds, an
/// RFC 3339 date-time or an HTTP date. The delay is rounded up to whole seconds, at least one,
/// and capped at [`MAX_RATE_LIMIT_DELAY`] (a header far in the future must not stop a source
/// for days).
pub fn rate_limit_delay(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let retry_after = header(headers, "retry-after").and_then(|v| {
        delay_seconds(v).or_else(|| {
            DateTime::parse_from_rfc2822(v)
                .ok()
                .map(|t| until(t.with_timezone(&Utc), now))
        })
    });
    retry_after
        .or_else(|| header(headers, "ratelimit-reset").and_then(|v| reset_delay(v, now)))
        .or_else(|| header(headers, "x-ratelimit-reset").and_then(|v| reset_delay(v, now)))
        .map(|d| ceil_to_second(d.min(MAX_RATE_LIMIT_DELAY)).max(Duration::from_secs(1)))
}

/// When an answer says the vendor's budget is spent (`ratelimit-remaining: 0` or
/// `x-ratelimit-remaining: 0`), the pause until its reset ([`rate_limit_delay`]).
pub fn spent_budget_delay(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let spent = ["ratelimit-remaining", "x-ratelimit-remaining"]
        .iter()
        .filter_map(|name| header(headers, name))
        .any(|v| v.parse::<f64>().is_ok_and(|n| n <= 0.0));
    if spent {
        rate_limit_delay(headers, now)
    } else {
        None
    }
}

/// A non-negative, finite number of seconds.
fn delay_seconds(v: &str) -> Option<Duration> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// A reset value: delay seconds, Unix seconds (from 10^9, i.e. 2001), Unix milliseconds (from
/// 10^12), an RFC 3339 date-time or an HTTP date.
fn reset_delay(v: &str, now: DateTime<Utc>) -> Option<Duration> {
    if let Ok(n) = v.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        let at = if n >= 1e12 {
            DateTime::from_timestamp_millis(n.ceil() as i64)?
        } else if n >= 1e9 {
            DateTime::from_timestamp(n.ceil() as i64, 0)?
        } else {
            return delay_seconds(v);
        };
        return Some(until(at, now));
    }
    DateTime::parse_from_rfc3339(v)
        .or_else(|_| DateTime::parse_from_rfc2822(v))
        .ok()
        .map(|t| until(t.with_timezone(&Utc), now))
}

fn until(t: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (t - now).to_std().unwrap_or(Duration::ZERO)
}

/// Rounds a delay up to whole seconds (errors report seconds).
fn ceil_to_second(d: Duration) -> Duration {
    if d.subsec_nanos() == 0 {
        d
    } else {
        Duration::from_secs(d.as_secs().saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn delay(pairs: &[(&'static str, &str)]) -> Option<u64> {
        rate_limit_delay(&headers(pairs), now()).map(|d| d.as_secs())
    }

    #[test]
    fn provider_vendors_pause_for_every_429() {
        fn table(source: &str, a: &Refusal<'_>) -> ProviderError {
            ProviderError::RateLimited {
                source_name: source.to_owned(),
                retry_after: a.retry_after,
            }
        }
        let v = ProviderVendor {
            source: "s",
            refused: table,
            default_pause: Duration::from_secs(60),
        };
        let h = HeaderMap::new();
        let answer = |retry_after| Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: &h,
            body: b"",
            retry_after,
        };
        let given = v.refused(&answer(Some(Duration::from_secs(7))));
        assert_eq!(v.pause(&given), Some(Duration::from_secs(7)));
        let none = v.refused(&answer(None));
        assert_eq!(none.retry_after(), None, "the vendor gave no delay");
        assert_eq!(v.pause(&none), Some(Duration::from_secs(60)));
        let timeout = v.failed(TransportError::Timeout {
            elapsed: Duration::from_secs(1),
        });
        assert_eq!(timeout.kind(), "timeout");
        assert_eq!(v.pause(&timeout), None);
        let spent = v.failed(TransportError::Budget(BudgetError::RateLimited {
            retry_after: Duration::from_secs(3),
        }));
        assert_eq!(spent.retry_after(), Some(Duration::from_secs(3)));
        let exceeds = budget_refusal(
            "s",
            &BudgetError::ExceedsBudget {
                requested: 9,
                per_minute: 5,
            },
        );
        assert_eq!(exceeds.kind(), "invalid_query");
        assert_eq!(
            v.failed(TransportError::TooLarge { limit: 10 }).kind(),
            "upstream_decode"
        );
    }

    #[test]
    fn every_vendor_format_of_the_delay() {
        // Retry-After: seconds, fractional seconds (rounded up), an HTTP date.
        assert_eq!(delay(&[("retry-after", "7")]), Some(7));
        assert_eq!(delay(&[("retry-after", " 2.5 ")]), Some(3));
        assert_eq!(
            delay(&[("retry-after", "Fri, 15 Jan 2027 08:00:30 GMT")]),
            Some(30)
        );
        // DigitalOcean's RateLimit-Reset: Unix seconds.
        assert_eq!(delay(&[("ratelimit-reset", "1800000042")]), Some(42));
        // ChatBotKit's X-RateLimit-Reset: delay seconds, Unix seconds or milliseconds, RFC 3339,
        // HTTP date.
        assert_eq!(delay(&[("x-ratelimit-reset", "12")]), Some(12));
        assert_eq!(delay(&[("x-ratelimit-reset", "1800000005")]), Some(5));
        assert_eq!(delay(&[("x-ratelimit-reset", "1800000005500")]), Some(6));
        assert_eq!(
            delay(&[("x-ratelimit-reset", "2027-01-15T08:01:00Z")]),
            Some(60)
        );
        assert_eq!(
            delay(&[("x-ratelimit-reset", "Fri, 15 Jan 2027 08:00:09 GMT")]),
            Some(9)
        );
        // Retry-After wins over a reset; at least one second; at most an hour.
        assert_eq!(
            delay(&[("retry-after", "4"), ("ratelimit-reset", "1800000042")]),
            Some(4)
        );
        assert_eq!(delay(&[("retry-after", "0")]), Some(1));
        assert_eq!(delay(&[("retry-after", "1800000000")]), Some(3600));
        assert_eq!(delay(&[("x-ratelimit-reset", "1900000000")]), Some(3600));
        // In the past: the least pause. Nonsense: none.
        assert_eq!(delay(&[("ratelimit-reset", "1700000000")]), Some(1));
        for bad in ["soon", "-3", "NaN", "inf", ""] {
            assert_eq!(delay(&[("retry-after", bad)]), None, "{bad}");
            assert_eq!(delay(&[("x-ratelimit-reset", bad)]), None, "{bad}");
        }
    }

    #[test]
    fn a_spent_budget_pauses_until_its_reset() {
        let spent = |pairs: &[(&'static str, &str)]| {
            spent_budget_delay(&headers(pairs), now()).map(|d| d.as_secs())
        };
        assert_eq!(
            spent(&[
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", "1800000010")
            ]),
            Some(10)
        );
        assert_eq!(
            spent(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "3")]),
            Some(3)
        );
        assert_eq!(
            spent(&[
                ("ratelimit-remaining", "1"),
                ("ratelimit-reset", "1800000010")
            ]),
            None
        );
        // Spent without a reset: nothing to wait for.
        assert_eq!(spent(&[("x-ratelimit-remaining", "0")]), None);
    }

    #[test]
    fn messages_are_cut_at_a_character() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 5);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("  short  "), "short");
    }

    /// A vendor whose errors are plain strings, for the send path's own tests.
    struct Plain;

    impl Vendor for Plain {
        type Error = String;

        fn refused(&self, a: &Refusal<'_>) -> String {
            format!(
                "{} {} {:?}",
                a.status.as_u16(),
                String::from_utf8_lossy(a.body),
                a.retry_after.map(|d| d.as_secs())
            )
        }

        fn failed(&self, e: TransportError) -> String {
            format!("failed: {}", e.message())
        }

        fn pause(&self, e: &String) -> Option<Duration> {
            e.starts_with("429").then_some(Duration::from_secs(30))
        }
    }

    /// Serves `answers` (raw HTTP responses) to one connection each, in order.
    async fn serve(answers: Vec<String>) -> String {
        crate::http::test_server::serve(answers.into_iter().map(|a| (a, Vec::new())).collect())
            .await
    }

    fn answer(status: &str, extra: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn one_send_path_for_every_outcome() {
        let url = serve(vec![
            answer("200 OK", "", "{}"),
            answer("503 Service Unavailable", "", "down"),
            answer("200 OK", "", &"x".repeat(100)),
            answer("429 Too Many Requests", "retry-after: 2\r\n", "slow"),
        ])
        .await;
        let t = Transport::new("src", reqwest::Client::new(), Budget::new(None, 2), 64);
        let count = AtomicU64::new(0);
        let send = || t.send(&Plain, Admission::Admit, t.http().get(&url), Some(&count));
        let ok = send().await.unwrap();
        assert_eq!((ok.status.as_u16(), &ok.body[..]), (200, &b"{}"[..]));
        assert_eq!(send().await.unwrap_err(), "503 down None");
        assert_eq!(
            send().await.unwrap_err(),
            "failed: the vendor's response is larger than max_body_bytes (64 bytes); it was rejected"
        );
        assert_eq!(send().await.unwrap_err(), "429 slow Some(2)");
        assert_eq!(count.load(Ordering::Relaxed), 4);
        // The 429 paused the source: the next request is refused without being sent.
        let paused = crate::budget::with_deadline(
            tokio::time::Instant::now() + Duration::from_secs(5),
            send(),
        )
        .await
        .unwrap_err();
        assert!(paused.starts_with("failed: "), "{paused}");
        assert_eq!(count.load(Ordering::Relaxed), 4);
        // Nobody listens any more: the cause chain says why, without the URL.
        let t = Transport::new("src", reqwest::Client::new(), Budget::new(None, 2), 64);
        let e = t
            .send(&Plain, Admission::Reserved, t.http().get(&url), None)
            .await
            .unwrap_err();
        assert!(e.contains("onnection refused") && !e.contains(&url), "{e}");
    }
}
