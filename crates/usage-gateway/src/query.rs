//! Parsing and validating the `GET /v1/usage` query string; every bad parameter is reported.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use usage_core::time::{self, Bucket};
use usage_core::{Dimension, ProviderKind, Window};

use crate::config::ServerConfig;
use crate::error::{ApiError, ParamError};
use crate::registry::Registry;

/// The response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `text/csv`.
    Csv,
    /// A FOCUS 1.2 cost-and-usage CSV (`text/csv`).
    Focus,
}

/// What a bucketed answer shows for buckets without usage (`fill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fill {
    /// Only buckets with usage have rows (the default).
    #[default]
    None,
    /// Every bucket of every group has a row, with zero counters where there was no usage.
    Zero,
}

impl Format {
    /// The `format` value naming it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Focus => "focus",
        }
    }
}

impl Fill {
    /// The `fill` value naming it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zero => "zero",
        }
    }
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
    /// `model` filter.
    pub models: Vec<String>,
    /// Explicit `format`, if given.
    pub format: Option<Format>,
    /// Rows for empty buckets (`fill`).
    pub fill: Fill,
    /// Bucket edges written with the zone's UTC offset instead of `Z` (`bucket_edges=local`).
    pub local_edges: bool,
    /// Whether `end` was given, so that the same query string parses the same way at any time
    /// (nothing depends on "now").
    pub timeless: bool,
}

/// The longest single filter value (`source`, `agent`, `user`, ... after splitting comma lists).
pub const MAX_VALUE_CHARS: usize = 256;

const PARAMS: [&str; 13] = [
    "start",
    "end",
    "tz",
    "bucket",
    "group_by",
    "source",
    "provider",
    "agent",
    "user",
    "model",
    "format",
    "fill",
    "bucket_edges",
];

/// Splits comma lists and repeated parameters into one list, trimming blanks; a value named
/// twice is kept once (in its first place), so that the per-parameter limit counts distinct
/// values (the filters are sets) and, e.g., `provider` can never exceed it by repetition.
fn values(pairs: &[(String, String)], name: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty() && seen.insert(*s))
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

/// Parses a raw query string against the server limits and the registered providers, at `now`.
pub fn parse(
    raw: &str,
    limits: &ServerConfig,
    registry: &Registry,
    now: DateTime<Utc>,
) -> Result<UsageRequest, ApiError> {
    // Ranges relative to now (`now`, `-24h`, the default range) end at a whole second: the
    // vendors' ranges have second precision (a fraction would be cut, with a note).
    let now = chrono::SubsecRound::trunc_subsecs(now, 0);
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
                format!("unknown parameter; expected {}", PARAMS.join(", ")),
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
    let mut bound = |name: &str| {
        single(&pairs, name, &mut errors)
            .map(|s| time::parse_bound(s, tz, now).map_err(|m| ParamError::new(name, m)))
    };
    let start = bound("start");
    let end = bound("end");
    // The range depends on the time when `end` is missing ("up to now" or the default) or when
    // either bound is relative to now (`now`, `today`, `-24h`).
    let relative = [&start, &end]
        .into_iter()
        .any(|b| matches!(b, Some(Ok(b)) if b.relative));
    let timeless = end.is_some() && !relative;
    let start = start.map(|b| b.map(|b| b.at));
    let end = end.map(|b| b.map(|b| b.at));
    let (start, end) = match (start, end) {
        (None, None) => {
            let default = time::default_range(now, tz);
            (Ok(default.start), Ok(default.end))
        }
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
            let max =
                chrono::Duration::from_std(limits.max_range.get()).unwrap_or(chrono::Duration::MAX);
            if e - s > max {
                errors.push(ParamError::new(
                    "end",
                    format!(
                        "the range is longer than the configured maximum of {} (server.max_range)",
                        limits.max_range
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
                    format!(
                        "unknown dimension `{v}`; expected one of {}",
                        DIMENSIONS.replace('|', ", ")
                    ),
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
        if let Some(long) = v.iter().find(|s| s.chars().count() > MAX_VALUE_CHARS) {
            let head: String = long.chars().take(32).collect();
            errors.push(ParamError::new(
                name,
                format!("value `{head}…` is longer than {MAX_VALUE_CHARS} characters"),
            ));
        }
        v
    };
    let sources = list("source");
    let provider_names = list("provider");
    let agents = list("agent");
    let users = list("user");
    let models = list("model");
    let mut providers = Vec::new();
    for p in provider_names {
        match registry.get(&p) {
            Some(d) => providers.push(d.kind),
            None => errors.push(ParamError::new(
                "provider",
                format!(
                    "unknown provider `{p}`; expected one of {}",
                    registry.names()
                ),
            )),
        }
    }
    let format = match single(&pairs, "format", &mut errors) {
        None => None,
        Some("json") => Some(Format::Json),
        Some("csv") => Some(Format::Csv),
        Some("focus") => Some(Format::Focus),
        Some(other) => {
            errors.push(ParamError::new(
                "format",
                format!("`{other}` is not json, csv or focus"),
            ));
            None
        }
    };

    let fill = match single(&pairs, "fill", &mut errors) {
        None | Some("none") => Fill::None,
        Some("zero") => Fill::Zero,
        Some(other) => {
            errors.push(ParamError::new(
                "fill",
                format!("`{other}` is not none or zero"),
            ));
            Fill::None
        }
    };
    let local_edges = match single(&pairs, "bucket_edges", &mut errors) {
        None | Some("utc") => false,
        Some("local") => true,
        Some(other) => {
            errors.push(ParamError::new(
                "bucket_edges",
                format!("`{other}` is not utc or local"),
            ));
            false
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
            models,
            format,
            fill,
            local_edges,
            timeless,
        }),
        _ => Err(ApiError::BadRequest(errors)),
    }
}

/// The grouping dimensions, as `group_by` names them.
const DIMENSIONS: &str = "source|provider|agent|user|conversation|usage_type|model";

/// The `start`/`end` values relative to now, as the OpenAPI document states them.
const RELATIVE_PATTERN: &str = "^(now|today|yesterday|-[0-9]{1,7}[mhdw])$";

/// A comma list of `names` (alternatives separated by `|`): blanks around items and empty items
/// are ignored, exactly as [`parse`] splits lists.
pub(crate) fn comma_list_pattern(names: &str) -> String {
    format!(r"^\s*(({names})\s*)?(,\s*(({names})\s*)?)*$")
}

fn string_schema() -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String)
}

/// Declares a named OpenAPI schema for a query parameter type.
macro_rules! param_schema {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $ty;

        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let schema: utoipa::openapi::schema::Schema = $schema;
                schema.into()
            }
        }

        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
        }
    };
}

param_schema!(
    /// `start`/`end`: an RFC 3339 date-time, or a date meaning local midnight in `tz`.
    InstantParam,
    "Instant",
    {
        use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, SchemaFormat};
        AnyOfBuilder::new()
            .description(Some(
                "An RFC 3339 date-time; a date (YYYY-MM-DD) meaning local midnight in `tz`; \
                 `now`, `today` or `yesterday` (local midnights in `tz`); or a duration before \
                 now: `-90m`, `-24h` (exact), `-30d`, `-2w` (local days and weeks in `tz`).",
            ))
            .item(string_schema().format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))))
            .item(string_schema().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))))
            .item(string_schema().pattern(Some(RELATIVE_PATTERN)))
            .into()
    }
);

param_schema!(
    /// `tz`: a string, not an enum of the zone database's names: an enum froze one tzdata
    /// release into the document, broke generated clients (aliases such as `GMT0` and `GMT-0`
    /// collide as identifiers) and made Swagger UI a 597-entry dropdown. [`parse`] validates it.
    TimeZoneParam,
    "TimeZone",
    string_schema()
        .description(Some(
            "An IANA time zone name (e.g. `UTC`, `Europe/Berlin`, `Asia/Kolkata`), validated by the \
             server against its time zone database: an unknown name is a 400 naming `tz`.",
        ))
        .examples(["UTC", "Europe/Berlin", "Asia/Kolkata"])
        .into()
);

param_schema!(
    /// `bucket`.
    BucketParam,
    "Bucket",
    string_schema()
        .description(Some("The bucket size: none, hour, day, week (ISO, Monday) or month."))
        .enum_values(Some(["none", "hour", "day", "week", "month"]))
        .into()
);

param_schema!(
    /// `format` as `GET /v1/usage` documents it: JSON only, so that generated clients type
    /// that operation's 200 as JSON; CSV has its own operation, `GET /v1/usage.csv`. The server
    /// still takes `format=csv` (and `Accept: text/csv`) on `/v1/usage`, as API v1 promises.
    FormatParam,
    "Format",
    string_schema()
        .description(Some(
            "The response format of `GET /v1/usage`: `json`. For CSV use `GET /v1/usage.csv` \
             (operation `getUsageCsv`).",
        ))
        .enum_values(Some(["json"]))
        .into()
);

param_schema!(
    /// `fill`.
    FillParam,
    "Fill",
    string_schema()
        .description(Some(
            "Rows for buckets without usage: none (only buckets with usage) or zero (every bucket of every group).",
        ))
        .enum_values(Some(["none", "zero"]))
        .into()
);

param_schema!(
    /// `bucket_edges`.
    BucketEdgesParam,
    "BucketEdges",
    string_schema()
        .description(Some(
            "How bucket edges are written: utc (`2026-11-26T23:00:00Z`) or local (RFC 3339 with the offset of `tz`, `2026-11-27T00:00:00+01:00`).",
        ))
        .enum_values(Some(["utc", "local"]))
        .into()
);

param_schema!(
    /// `group_by`: a comma list of dimensions.
    GroupByParam,
    "GroupBy",
    string_schema()
        .description(Some(
            "A comma list of dimensions (blanks and empty items ignored); empty for totals only.",
        ))
        .pattern(Some(comma_list_pattern(DIMENSIONS)))
        .into()
);

param_schema!(
    /// One `provider` value: a provider name or a comma list of them.
    ProviderListParam,
    "ProviderList",
    string_schema()
        .description(Some(
            "A provider name, or a comma list of them (blanks and empty items ignored).",
        ))
        // The pattern of the registered names is set by `crate::openapi`'s `Providers`.
        .into()
);

param_schema!(
    /// One `source`/`agent`/`user` value.
    FilterValueParam,
    "FilterValue",
    string_schema()
        .description(Some(
            "A value, or a comma list of values (blanks and empty items ignored); each value at most 256 characters.",
        ))
        .max_length(Some(MAX_VALUE_CHARS))
        .into()
);

/// The query parameters of `GET /v1/usage` as the OpenAPI document states them; [`parse`]
/// reads the same names. Constraints that involve several parameters (`end` after `start`, the
/// configured `max_range` and `max_buckets`, configured source names) are in the descriptions.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Inclusive start: RFC 3339 date-time, YYYY-MM-DD (local midnight in `tz`), `now`,
    /// `today`, `yesterday`, or a duration before now (`-24h`, `-30d`; days and weeks are local
    /// days in `tz`); the answer's `query.start` gives the instant it resolved to. Default: 7
    /// whole days before today in `tz`, or 7 days before `end` when only `end` is given.
    #[param(value_type = Option<InstantParam>)]
    pub start: Option<String>,
    /// Exclusive end, same forms as `start` (`end=now` includes today so far); must be after
    /// `start`, and the range at most the configured `max_range` (366 days by default). Default:
    /// today's local midnight, or now when only `start` is given.
    #[param(value_type = Option<InstantParam>)]
    pub end: Option<String>,
    /// IANA time zone for dates and bucket edges (DST-correct), e.g. `Europe/Berlin`; an
    /// unknown name is a 400. Default: UTC.
    #[param(value_type = Option<TimeZoneParam>)]
    pub tz: Option<String>,
    /// none, hour, day, week (ISO, Monday), month; a query may span at most the configured
    /// `max_buckets` (2000 by default). Default: none.
    #[param(value_type = Option<BucketParam>)]
    pub bucket: Option<String>,
    /// Comma list of source, provider, agent, user, conversation, usage_type, model. Default
    /// source,agent; empty for totals only.
    #[param(value_type = Option<GroupByParam>)]
    pub group_by: Option<String>,
    /// Only these configured sources (repeated, or comma lists; at most 100 values by default).
    /// Names outside the caller's access answer 403, unknown names 400.
    #[param(value_type = Option<Vec<FilterValueParam>>, max_items = 100)]
    pub source: Option<Vec<String>>,
    /// Only these providers (the registered ones: digitalocean, kibana, chatbotkit, openai,
    /// anthropic in this build; see `ProviderKind`), repeated, or comma lists.
    #[param(value_type = Option<Vec<ProviderListParam>>, max_items = 100)]
    pub provider: Option<Vec<String>>,
    /// Only these agents: `<source>/<agent_id>` or a bare agent id (repeated, or comma lists;
    /// at most 100 values by default).
    #[param(value_type = Option<Vec<FilterValueParam>>, max_items = 100)]
    pub agent: Option<Vec<String>>,
    /// Only these users (repeated, or comma lists; at most 100 values by default); sources
    /// without users are reported `skipped`.
    #[param(value_type = Option<Vec<FilterValueParam>>, max_items = 100)]
    pub user: Option<Vec<String>>,
    /// Only these models, as the vendors name them (e.g. `gpt-4o-mini-2024-07-18`; repeated,
    /// or comma lists; at most 100 values by default); sources without models are reported
    /// `skipped`.
    #[param(value_type = Option<Vec<FilterValueParam>>, max_items = 100)]
    pub model: Option<Vec<String>>,
    /// `json` (the default). CSV is `GET /v1/usage.csv`; `format=csv` and `Accept: text/csv`
    /// still answer CSV here too, but this operation documents JSON only.
    #[param(value_type = Option<FormatParam>)]
    pub format: Option<String>,
    /// With a `bucket`: `zero` gives every bucket of the range a row for every group that has
    /// usage anywhere in the range (zero counters where it had none), so charts have no gaps;
    /// `none` gives only buckets with usage. Default: none.
    #[param(value_type = Option<FillParam>)]
    pub fill: Option<String>,
    /// `local` writes `bucket_start`/`bucket_end` as RFC 3339 with the UTC offset of `tz` at that
    /// instant (`2026-11-27T00:00:00+01:00` for a Berlin day), in JSON and CSV; `utc` with `Z`.
    /// The instants are the same either way. Default: utc.
    #[param(value_type = Option<BucketEdgesParam>)]
    pub bucket_edges: Option<String>,
}

impl UsageRequest {
    /// The filters as echoed in the response (`source`, `provider`, `agent`, `user`, `model`).
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
            ("model", self.models.clone()),
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
    use proptest::prelude::*;

    use super::*;

    fn registry() -> Registry {
        Registry::builtin()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 8, 10, 0, 0).unwrap()
    }

    fn bad(raw: &str) -> Vec<ParamError> {
        match parse(raw, &ServerConfig::default(), &registry(), now()) {
            Err(ApiError::BadRequest(e)) => e,
            other => panic!("expected 400 for {raw}: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let q = parse("", &ServerConfig::default(), &registry(), now()).unwrap();
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
    fn only_queries_with_an_end_are_timeless() {
        let limits = ServerConfig::default();
        let later = now() + chrono::Duration::days(3);
        let both = "start=2026-11-01&end=2026-11-03&bucket=day";
        assert!(parse(both, &limits, &registry(), now()).unwrap().timeless);
        assert_eq!(
            parse(both, &limits, &registry(), now()).unwrap(),
            parse(both, &limits, &registry(), later).unwrap(),
            "a timeless parse is the same at any time"
        );
        assert!(
            parse("end=2026-11-03", &limits, &registry(), now())
                .unwrap()
                .timeless
        );
        for raw in ["", "start=2026-11-01", "bucket=day"] {
            let q = parse(raw, &limits, &registry(), now()).unwrap();
            assert!(!q.timeless, "`{raw}` depends on the time");
            assert_ne!(
                q.range,
                parse(raw, &limits, &registry(), later).unwrap().range,
                "`{raw}`"
            );
        }
    }

    #[test]
    fn keywords_resolve_at_now_and_are_never_timeless() {
        let limits = ServerConfig::default();
        // now() is 2026-11-08T10:00Z: 11:00 in Berlin.
        let q = parse(
            "start=today&end=now&tz=Europe/Berlin",
            &limits,
            &registry(),
            now(),
        )
        .unwrap();
        assert_eq!(
            q.range,
            Window::new(Utc.with_ymd_and_hms(2026, 11, 7, 23, 0, 0).unwrap(), now())
        );
        assert!(!q.timeless, "`end=now` moves with the clock");
        let q = parse("start=-24h&end=2026-11-09", &limits, &registry(), now()).unwrap();
        assert_eq!(q.range.start, now() - chrono::Duration::hours(24));
        assert!(!q.timeless, "a relative `start` moves with the clock");
        let q = parse("start=yesterday&end=today", &limits, &registry(), now()).unwrap();
        assert_eq!(q.range.end - q.range.start, chrono::Duration::days(1));
        assert!(!q.timeless);
        // Only `start`, relative: up to now.
        let q = parse("start=-30d&bucket=day", &limits, &registry(), now()).unwrap();
        assert_eq!(q.range.end, now());
        // From 10:00 thirty days ago: that day's rest, 29 whole days and today so far.
        assert_eq!(q.windows.len(), 31);
        // A bad keyword is named, with what is accepted.
        let e = bad("start=tomorrow");
        assert_eq!(e[0].parameter, "start");
        assert!(e[0].message.contains("`yesterday`"), "{}", e[0].message);
        assert_eq!(bad("end=-1y")[0].parameter, "end");
    }

    #[test]
    fn fill_and_bucket_edges() {
        let limits = ServerConfig::default();
        let q = parse("", &limits, &registry(), now()).unwrap();
        assert_eq!((q.fill, q.local_edges), (Fill::None, false));
        let q = parse("fill=zero&bucket_edges=local", &limits, &registry(), now()).unwrap();
        assert_eq!((q.fill, q.local_edges), (Fill::Zero, true));
        let q = parse("fill=none&bucket_edges=utc", &limits, &registry(), now()).unwrap();
        assert_eq!((q.fill, q.local_edges), (Fill::None, false));
        let e = bad("fill=zeros&bucket_edges=berlin");
        let names: Vec<_> = e.iter().map(|e| e.parameter.as_str()).collect();
        assert_eq!(names, ["fill", "bucket_edges"]);
    }

    #[test]
    fn the_range_limit_is_quoted_as_configured() {
        #[derive(serde::Deserialize)]
        struct File {
            server: ServerConfig,
        }
        let e = bad("start=2025-01-01&end=2026-11-01");
        assert_eq!(
            e[0].message,
            "the range is longer than the configured maximum of 366d (server.max_range)"
        );
        let text = "[server]\nmax_range = \" 30 days \"\n";
        let limits = toml::from_str::<File>(text).unwrap().server;
        match parse(
            "start=2026-09-01&end=2026-11-01",
            &limits,
            &registry(),
            now(),
        ) {
            Err(ApiError::BadRequest(e)) => assert_eq!(
                e[0].message,
                "the range is longer than the configured maximum of 30 days (server.max_range)"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lists_and_repeats() {
        let q = parse(
            "group_by=agent,user&group_by=agent&source=a,b&source=c&bucket=day&tz=Europe/Berlin&start=2026-11-01&end=2026-11-03",
            &ServerConfig::default(),
            &registry(),
            now(),
        )
        .unwrap();
        assert_eq!(q.group_by, vec![Dimension::Agent, Dimension::User]);
        assert_eq!(q.sources, vec!["a", "b", "c"]);
        assert_eq!(q.windows.len(), 2);
        let q = parse("group_by=", &ServerConfig::default(), &registry(), now()).unwrap();
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
        // The OpenAPI document states the default limits.
        assert_eq!(ServerConfig::default().max_filter_values, 100, "maxItems");
        // The limit counts distinct values: a name repeated beyond it is one value.
        let limits = ServerConfig::default();
        let repeated = vec!["kibana,digitalocean"; 120].join("&provider=");
        let q = parse(&format!("provider={repeated}"), &limits, &registry(), now()).unwrap();
        assert_eq!(q.providers.len(), 2);
        let many: Vec<String> = (0..101).map(|i| format!("m{i}")).collect();
        assert_eq!(
            bad(&format!("model={}", many.join(",")))[0].parameter,
            "model"
        );
        // A long value cut for the message at a character, not a byte, boundary.
        let e = bad(&format!("user={}", "é".repeat(MAX_VALUE_CHARS + 1)));
        assert_eq!(e[0].parameter, "user");
        assert!(
            e[0].message
                .starts_with(&format!("value `{}…`", "é".repeat(32)))
        );
    }

    /// A value for one parameter: known good values, near misses, extremes and noise.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("2026-11-01".to_owned()),
            Just("2026-11-01T00:00:00Z".to_owned()),
            Just("9999-12-31T23:59:59Z".to_owned()),
            Just("0001-01-01".to_owned()),
            Just("-262143-01-01T00:00:00Z".to_owned()),
            Just("2026-02-30".to_owned()),
            Just("Europe/Berlin".to_owned()),
            Just("Pacific/Kiritimati".to_owned()),
            "(none|hour|day|week|month|json|csv|source|agent|user|usage_type|model|kibana)",
            "[a-z,/]{0,40}",
            "\\PC{0,300}",
            any::<String>(),
        ]
    }

    fn query() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("start"),
            Just("end"),
            Just("tz"),
            Just("bucket"),
            Just("group_by"),
            Just("source"),
            Just("provider"),
            Just("agent"),
            Just("user"),
            Just("model"),
            Just("format"),
            Just("other"),
        ];
        prop_oneof![
            // Arbitrary raw text, percent signs and separators included.
            any::<String>(),
            "[a-z=&%0-9A-F+,;]{0,200}",
            // Well-formed pairs with arbitrary values.
            prop::collection::vec((name, value()), 0..8)
                .prop_map(|pairs| { serde_urlencoded::to_string(&pairs).unwrap_or_default() }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any query string is parsed or refused with named parameters: never a panic, never an
        /// accepted query outside the limits.
        #[test]
        fn any_query_string_parses_or_errors(raw in query(), small in any::<bool>()) {
            let mut limits = ServerConfig::default();
            if small {
                limits.max_buckets = 5;
                limits.max_range =
                    crate::config::WrittenDuration::new(std::time::Duration::from_secs(3 * 86_400), "3d");
                limits.max_filter_values = 2;
            }
            match parse(&raw, &limits, &registry(), now()) {
                Ok(q) => {
                    prop_assert!(q.range.start < q.range.end);
                    prop_assert!(!q.windows.is_empty());
                    prop_assert!(q.windows.len() <= limits.max_buckets);
                    prop_assert!(
                        (q.range.end - q.range.start).to_std().unwrap() <= limits.max_range.get()
                    );
                    prop_assert!(q.windows.windows(2).all(|w| w[0].end <= w[1].start));
                    for list in [&q.sources, &q.agents, &q.users, &q.models] {
                        prop_assert!(list.len() <= limits.max_filter_values);
                        prop_assert!(list.iter().all(|v| v.chars().count() <= MAX_VALUE_CHARS));
                    }
                }
                Err(ApiError::BadRequest(errors)) => prop_assert!(!errors.is_empty()),
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}
