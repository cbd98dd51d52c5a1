//! Parsing and validating the `GET /v1/usage` query string; every bad parameter is reported.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use usage_core::time::{self, Bucket};
use usage_core::{Dimension, ProviderKind, Window};

use crate::config::ServerConfig;
use crate::error::{ApiError, ParamError};

/// The response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `text/csv`.
    Csv,
}

/// A validated `/v1/usage` query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageRequest {
    /// The half-open range.
    pub range: Window,
    /// The zone of dates and bucket edges.
    pub tz: Tz,
    /// The bucket size.
    pub bucket: Bucket,
    /// The windows (buckets, clipped to the range).
    pub windows: Vec<Window>,
    /// Grouping dimensions, in order, without duplicates.
    pub group_by: Vec<Dimension>,
    /// `source` filter.
    pub sources: Vec<String>,
    /// `provider` filter.
    pub providers: Vec<ProviderKind>,
    /// `agent` filter (`<source>/<id>` or a bare id).
    pub agents: Vec<String>,
    /// `user` filter.
    pub users: Vec<String>,
    /// Explicit `format`, if given.
    pub format: Option<Format>,
}

const PARAMS: [&str; 10] = [
    "start", "end", "tz", "bucket", "group_by", "source", "provider", "agent", "user", "format",
];

/// Splits comma lists and repeated parameters into one list, trimming blanks.
fn values(pairs: &[(String, String)], name: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn single<'a>(
    pairs: &'a [(String, String)],
    name: &str,
    errors: &mut Vec<ParamError>,
) -> Option<&'a str> {
    let mut it = pairs.iter().filter(|(k, _)| k == name);
    let first = it.next().map(|(_, v)| v.as_str());
    if it.next().is_some() {
        errors.push(ParamError::new(name, "given more than once"));
    }
    first
}

/// Parses a raw query string against the server limits, at `now`.
pub fn parse(
    raw: &str,
    limits: &ServerConfig,
    now: DateTime<Utc>,
) -> Result<UsageRequest, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw).map_err(|_| {
        ApiError::BadRequest(vec![ParamError::new(
            "(query)",
            "the query string is not valid application/x-www-form-urlencoded",
        )])
    })?;
    let mut errors = Vec::new();
    for (k, _) in &pairs {
        if !PARAMS.contains(&k.as_str()) && !errors.iter().any(|e: &ParamError| e.parameter == *k) {
            errors.push(ParamError::new(
                k,
                "unknown parameter; expected start, end, tz, bucket, group_by, source, provider, agent, user, format",
            ));
        }
    }

    let tz = match single(&pairs, "tz", &mut errors) {
        None => chrono_tz::UTC,
        Some(s) => time::parse_tz(s).unwrap_or_else(|m| {
            errors.push(ParamError::new("tz", m));
            chrono_tz::UTC
        }),
    };
    let bucket = match single(&pairs, "bucket", &mut errors) {
        None => Bucket::None,
        Some(s) => Bucket::parse(s).unwrap_or_else(|| {
            errors.push(ParamError::new(
                "bucket",
                format!("`{s}` is not one of none, hour, day, week, month"),
            ));
            Bucket::None
        }),
    };
    let mut instant = |name: &str| {
        single(&pairs, name, &mut errors)
            .map(|s| time::parse_instant(s, tz).map_err(|m| ParamError::new(name, m)))
    };
    let start = instant("start");
    let end = instant("end");
    let default = time::default_range(now, tz);
    let (start, end) = match (start, end) {
        (None, None) => (Ok(default.start), Ok(default.end)),
        // Only `start`: up to now. Only `end`: the seven days before it.
        (Some(s), None) => (s, Ok(now)),
        (None, Some(e)) => (e.clone().map(|e| e - chrono::Duration::days(7)), e),
        (Some(s), Some(e)) => (s, e),
    };
    let range = match (start, end) {
        (Ok(s), Ok(e)) if e <= s => {
            errors.push(ParamError::new("end", "must be after `start`"));
            None
        }
        (Ok(s), Ok(e)) => {
            let max = chrono::Duration::from_std(limits.max_range).unwrap_or(chrono::Duration::MAX);
            if e - s > max {
                errors.push(ParamError::new(
                    "end",
                    format!(
                        "the range is longer than the configured maximum of {}",
                        humantime::format_duration(limits.max_range)
                    ),
                ));
                None
            } else {
                Some(Window::new(s, e))
            }
        }
        (s, e) => {
            errors.extend(s.err());
            errors.extend(e.err());
            None
        }
    };
    let windows = range.map_or_else(Vec::new, |r| {
        match time::buckets(r, tz, bucket, limits.max_buckets) {
            Ok(w) => w,
            Err(n) => {
                errors.push(ParamError::new(
                    "bucket",
                    format!(
                        "the query needs more than {} buckets (at least {n}); choose a coarser bucket or a shorter range",
                        limits.max_buckets
                    ),
                ));
                Vec::new()
            }
        }
    });

    let group_by = if pairs.iter().any(|(k, _)| k == "group_by") {
        let mut out = Vec::new();
        for v in values(&pairs, "group_by") {
            match Dimension::parse(&v) {
                Some(d) if !out.contains(&d) => out.push(d),
                Some(_) => {}
                None => errors.push(ParamError::new(
                    "group_by",
                    format!("unknown dimension `{v}`; expected one of source, provider, agent, user, conversation, usage_type"),
                )),
            }
        }
        out
    } else {
        vec![Dimension::Source, Dimension::Agent]
    };

    let mut list = |name: &str| {
        let v = values(&pairs, name);
        if v.len() > limits.max_filter_values {
            errors.push(ParamError::new(
                name,
                format!(
                    "lists {} values; at most {} are allowed",
                    v.len(),
                    limits.max_filter_values
                ),
            ));
        }
        if let Some(long) = v.iter().find(|s| s.len() > 256) {
            errors.push(ParamError::new(
                name,
                format!("value `{}…` is longer than 256 bytes", &long[..32]),
            ));
        }
        v
    };
    let sources = list("source");
    let provider_names = list("provider");
    let agents = list("agent");
    let users = list("user");
    let mut providers = Vec::new();
    for p in provider_names {
        match ProviderKind::parse(&p) {
            Some(k) => providers.push(k),
            None => errors.push(ParamError::new(
                "provider",
                format!(
                    "unknown provider `{p}`; expected digitalocean, kibana, chatbotkit, static"
                ),
            )),
        }
    }
    let format = match single(&pairs, "format", &mut errors) {
        None => None,
        Some("json") => Some(Format::Json),
        Some("csv") => Some(Format::Csv),
        Some(other) => {
            errors.push(ParamError::new(
                "format",
                format!("`{other}` is not json or csv"),
            ));
            None
        }
    };

    match range {
        Some(range) if errors.is_empty() => Ok(UsageRequest {
            range,
            tz,
            bucket,
            windows,
            group_by,
            sources,
            providers,
            agents,
            users,
            format,
        }),
        _ => Err(ApiError::BadRequest(errors)),
    }
}

impl UsageRequest {
    /// The filters as echoed in the response (`source`, `provider`, `agent`, `user`).
    pub fn filters(&self) -> BTreeMap<String, Vec<String>> {
        let mut f = BTreeMap::new();
        for (name, v) in [
            ("source", self.sources.clone()),
            (
                "provider",
                self.providers
                    .iter()
                    .map(|p| p.as_str().to_owned())
                    .collect(),
            ),
            ("agent", self.agents.clone()),
            ("user", self.users.clone()),
        ] {
            if !v.is_empty() {
                f.insert(name.to_owned(), v);
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 8, 10, 0, 0).unwrap()
    }

    fn bad(raw: &str) -> Vec<ParamError> {
        match parse(raw, &ServerConfig::default(), now()) {
            Err(ApiError::BadRequest(e)) => e,
            other => panic!("expected 400 for {raw}: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let q = parse("", &ServerConfig::default(), now()).unwrap();
        assert_eq!(
            q.range.start,
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            q.range.end,
            Utc.with_ymd_and_hms(2026, 11, 8, 0, 0, 0).unwrap()
        );
        assert_eq!(q.group_by, vec![Dimension::Source, Dimension::Agent]);
        assert_eq!(q.windows, vec![q.range]);
    }

    #[test]
    fn lists_and_repeats() {
        let q = parse(
            "group_by=agent,user&group_by=agent&source=a,b&source=c&bucket=day&tz=Europe/Berlin&start=2026-11-01&end=2026-11-03",
            &ServerConfig::default(),
            now(),
        )
        .unwrap();
        assert_eq!(q.group_by, vec![Dimension::Agent, Dimension::User]);
        assert_eq!(q.sources, vec!["a", "b", "c"]);
        assert_eq!(q.windows.len(), 2);
        let q = parse("group_by=", &ServerConfig::default(), now()).unwrap();
        assert!(q.group_by.is_empty());
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let e = bad("group_by=team&tz=Mars/Base&bucket=year&format=xml&provider=aws&foo=1");
        let names: Vec<_> = e.iter().map(|e| e.parameter.as_str()).collect();
        for p in ["foo", "tz", "bucket", "group_by", "provider", "format"] {
            assert!(names.contains(&p), "{p} missing in {names:?}");
        }
        assert_eq!(bad("start=2026-11-05&end=2026-11-01")[0].parameter, "end");
        assert_eq!(bad("start=2020-01-01&end=2026-11-01")[0].parameter, "end");
        assert_eq!(
            bad("start=2026-01-01&end=2026-11-01&bucket=hour")[0].parameter,
            "bucket"
        );
        assert_eq!(bad("start=nope")[0].parameter, "start");
        assert_eq!(bad("tz=UTC&tz=UTC")[0].parameter, "tz");
    }
}
