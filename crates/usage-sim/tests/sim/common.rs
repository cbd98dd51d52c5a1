//! Shared helpers for the simulator tests.

use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};
use reqwest::header::HeaderMap;
use serde_json::Value;
use usage_core::Window;
use usage_sim::{DataSpec, Dataset};

/// A fixed "now" so data is identical between runs.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

pub fn spec() -> DataSpec {
    DataSpec::small(now())
}

pub fn data() -> Arc<Dataset> {
    Arc::new(Dataset::generate(&spec()))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Sends a request and returns status, headers and the JSON body (`Null` if not JSON).
pub async fn send(req: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, v)
}

/// Windows covering the whole span: 14 weeks, one wider than the span, one with millisecond
/// edges.
pub fn windows() -> Vec<Window> {
    let origin = spec().origin();
    let mut out: Vec<Window> = (0..14)
        .map(|i| Window::new(origin + Duration::weeks(i), origin + Duration::weeks(i + 1)))
        .collect();
    out.push(Window::new(
        origin - Duration::days(1),
        now() + Duration::days(1),
    ));
    out.push(Window::new(
        origin + Duration::milliseconds(123_456_789),
        origin + Duration::milliseconds(3_456_789_012),
    ));
    out
}

pub fn rfc3339_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn floor_sec(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::seconds(1)).unwrap()
}

pub fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_owned())
}
