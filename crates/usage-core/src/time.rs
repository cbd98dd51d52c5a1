//! Time planning: parsing `start`/`end`, the default range, and DST-correct bucket edges in any
//! IANA zone (zone rules come from `chrono-tz`, never from this file).

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::Window;

/// How a range is cut into buckets.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// One bucket: the whole range.
    #[default]
    None,
    /// Local clock hours.
    Hour,
    /// Local calendar days.
    Day,
    /// ISO weeks starting Monday, local time.
    Week,
    /// Local calendar months.
    Month,
}

impl Bucket {
    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    /// Returns the wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// Parses an IANA zone name (`Europe/Berlin`, `UTC`).
pub fn parse_tz(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>()
        .map_err(|_| format!("`{s}` is not an IANA time zone name (e.g. `UTC`, `Europe/Berlin`)"))
}

/// Parses a `start`/`end` value: an RFC 3339 date-time, or `YYYY-MM-DD` meaning local midnight in
/// `tz` (the first instant of that day where midnight falls into a DST gap).
pub fn parse_instant(s: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && s.len() == 10
    {
        return Ok(local_to_utc(d.and_time(NaiveTime::MIN), tz));
    }
    Err(format!(
        "`{s}` is neither an RFC 3339 date-time (2026-11-01T00:00:00Z) nor a date (2026-11-01)"
    ))
}

/// A `start`/`end` value resolved against the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The instant the value names.
    pub at: DateTime<Utc>,
    /// Whether the value names a moment relative to `now` (`now`, `today`, `yesterday`, `-24h`),
    /// so that the same text means another instant later.
    pub relative: bool,
}

/// The longest relative duration accepted (`-<n><unit>`), in digits of `n`.
const MAX_RELATIVE_DIGITS: usize = 7;

/// Parses a `start`/`end` value at `now`: everything [`parse_instant`] accepts, plus the keywords
/// `now`, `today` (today's local midnight in `tz`), `yesterday` (the local midnight before it)
/// and relative durations before now: `-90m` and `-24h` are exact minutes and hours, `-30d` and
/// `-2w` are calendar days and weeks in `tz` (the same wall-clock time that many local days ago,
/// so a DST change in between does not shift it by an hour).
pub fn parse_bound(s: &str, tz: Tz, now: DateTime<Utc>) -> Result<Bound, String> {
    let relative = |at| Ok(Bound { at, relative: true });
    let local_days_back = |days: i64| -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&tz).naive_local();
        Some(local_to_utc(
            local.checked_sub_signed(Duration::try_days(days)?)?,
            tz,
        ))
    };
    let midnight_days_back = |days: i64| -> Option<DateTime<Utc>> {
        let today = now.with_timezone(&tz).date_naive();
        let day = today.checked_sub_signed(Duration::try_days(days)?)?;
        Some(local_to_utc(day.and_time(NaiveTime::MIN), tz))
    };
    match s {
        "now" => return relative(now),
        "today" => return midnight_days_back(0).map_or_else(|| Err(out_of_range(s)), relative),
        "yesterday" => {
            return midnight_days_back(1).map_or_else(|| Err(out_of_range(s)), relative);
        }
        _ => {}
    }
    if let Some(rest) = s.strip_prefix('-')
        && let Some(unit) = rest.chars().last()
        && matches!(unit, 'm' | 'h' | 'd' | 'w')
    {
        let digits = &rest[..rest.len() - 1];
        if digits.is_empty()
            || digits.len() > MAX_RELATIVE_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!(
                "`{s}` is not a relative duration: expected `-` then up to {MAX_RELATIVE_DIGITS} digits and m, h, d or w (e.g. `-24h`, `-30d`)"
            ));
        }
        let n: i64 = digits.parse().map_err(|_| out_of_range(s))?;
        let at = match unit {
            'm' => Duration::try_minutes(n).and_then(|d| now.checked_sub_signed(d)),
            'h' => Duration::try_hours(n).and_then(|d| now.checked_sub_signed(d)),
            'd' => local_days_back(n),
            _ => n.checked_mul(7).and_then(local_days_back),
        };
        return at.map_or_else(|| Err(out_of_range(s)), relative);
    }
    parse_instant(s, tz)
        .map(|at| Bound {
            at,
            relative: false,
        })
        .map_err(|_| {
            format!(
                "`{s}` is not an RFC 3339 date-time (2026-11-01T00:00:00Z), a date (2026-11-01), \
                 `now`, `today`, `yesterday` or a duration before now (`-24h`, `-30d`)"
            )
        })
}

fn out_of_range(s: &str) -> String {
    format!("`{s}` is outside the supported range of dates")
}

/// Resolves a local wall-clock time to an instant: the earlier of two on a fall-back overlap, and
/// the first existing instant after a spring-forward gap.
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    let mut probe = naive;
    // Real gaps are at most a few hours and on quarter-hour marks; 4 days covers any zone.
    for _ in 0..(4 * 24 * 4) {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                return t.with_timezone(&Utc);
            }
            LocalResult::None => probe += Duration::minutes(15),
        }
    }
    // Unreachable for real zone data; fall back to reading the wall clock as UTC.
    Utc.from_utc_datetime(&naive)
}

/// The default range: the last 7 whole local days before today, in `tz`.
pub fn default_range(now: DateTime<Utc>, tz: Tz) -> Window {
    let today = now.with_timezone(&tz).date_naive();
    let end = local_to_utc(today.and_time(NaiveTime::MIN), tz);
    let start = local_to_utc((today - Duration::days(7)).and_time(NaiveTime::MIN), tz);
    Window::new(start, end)
}

/// Reports whether the wall clock in `tz` reads a full hour at `t`.
fn on_local_hour(t: DateTime<Utc>, tz: Tz) -> bool {
    let local = t.with_timezone(&tz);
    local.minute() == 0 && local.second() == 0 && local.nanosecond() == 0
}

/// The whole local bucket (hour, day, week, month in `tz`) holding `t`, unclipped: the month
/// of a budget, the day a query's end falls in.
pub fn bucket_of(t: DateTime<Utc>, tz: Tz, bucket: Bucket) -> Window {
    let start = floor(t, tz, bucket);
    Window::new(start, next_edge(start, tz, bucket))
}

/// Returns the start of the local bucket holding `t`.
fn floor(t: DateTime<Utc>, tz: Tz, bucket: Bucket) -> DateTime<Utc> {
    let local = t.with_timezone(&tz);
    let date = local.date_naive();
    match bucket {
        Bucket::None => t,
        Bucket::Hour => {
            // Step back from `t` by the local minutes and seconds: correct for whole- and
            // half-hour offsets alike, and never lands in a gap.
            let back = Duration::minutes(i64::from(local.minute()))
                + Duration::seconds(i64::from(local.second()))
                + Duration::nanoseconds(i64::from(local.nanosecond()));
            let hour = t - back;
            if on_local_hour(hour, tz) {
                return hour;
            }
            // The offset changed by a part of an hour in between (Lord Howe's 30-minute DST):
            // the bucket started at the last quarter-hour mark whose wall clock reads a full hour.
            (1..=8)
                .map(|k| hour - Duration::minutes(15 * k))
                .find(|c| on_local_hour(*c, tz))
                .unwrap_or(hour)
        }
        Bucket::Day => local_to_utc(date.and_time(NaiveTime::MIN), tz),
        Bucket::Week => {
            let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
            local_to_utc(monday.and_time(NaiveTime::MIN), tz)
        }
        Bucket::Month => {
            let first = date.with_day(1).unwrap_or(date);
            local_to_utc(first.and_time(NaiveTime::MIN), tz)
        }
    }
}

/// Returns the start of the local bucket after the one starting at `edge`.
fn next_edge(edge: DateTime<Utc>, tz: Tz, bucket: Bucket) -> DateTime<Utc> {
    let date = edge.with_timezone(&tz).date_naive();
    match bucket {
        Bucket::None => DateTime::<Utc>::MAX_UTC,
        Bucket::Hour => {
            let next = edge + Duration::hours(1);
            if on_local_hour(next, tz) {
                return next;
            }
            // A part-hour offset change inside this hour: the next edge is the first
            // quarter-hour mark whose wall clock reads a full hour, so that the bucket around
            // Lord Howe's 30-minute shift lasts 30 or 90 minutes and no edge reads `:30`.
            (1..=8)
                .map(|k| edge + Duration::minutes(15 * k))
                .find(|c| on_local_hour(*c, tz))
                .unwrap_or_else(|| floor(next, tz, Bucket::Hour).max(edge + Duration::minutes(1)))
        }
        Bucket::Day => local_to_utc((date + Duration::days(1)).and_time(NaiveTime::MIN), tz),
        Bucket::Week => local_to_utc((date + Duration::days(7)).and_time(NaiveTime::MIN), tz),
        Bucket::Month => {
            let (y, m) = if date.month() == 12 {
                (date.year() + 1, 1)
            } else {
                (date.year(), date.month() + 1)
            };
            let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(date + Duration::days(31));
            local_to_utc(first.and_time(NaiveTime::MIN), tz)
        }
    }
}

/// Cuts `range` into local buckets, clipped to the range at both ends.
///
/// Returns `Err(n)` with a lower bound of the bucket count when there are more than `max`.
pub fn buckets(range: Window, tz: Tz, bucket: Bucket, max: usize) -> Result<Vec<Window>, usize> {
    if bucket == Bucket::None {
        return if max >= 1 { Ok(vec![range]) } else { Err(1) };
    }
    let mut out = Vec::new();
    let mut edge = floor(range.start, tz, bucket);
    while edge < range.end {
        let next = next_edge(edge, tz, bucket);
        let w = Window::new(edge.max(range.start), next.min(range.end));
        if out.len() == max {
            return Err(max + 1);
        }
        out.push(w);
        edge = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_dates_as_local_midnight() {
        let berlin = parse_tz("Europe/Berlin").unwrap();
        assert_eq!(
            parse_instant("2026-07-01", berlin).unwrap(),
            utc("2026-06-30T22:00:00Z")
        );
        assert_eq!(
            parse_instant("2026-01-01", berlin).unwrap(),
            utc("2025-12-31T23:00:00Z")
        );
        assert_eq!(
            parse_instant("2026-01-01T05:00:00+02:00", berlin).unwrap(),
            utc("2026-01-01T03:00:00Z")
        );
        assert!(parse_instant("2026-13-01", berlin).is_err());
        assert!(parse_instant("yesterday", berlin).is_err());
        assert!(parse_tz("Mars/Olympus").is_err());
    }

    #[test]
    fn keywords_and_relative_durations_resolve_in_the_zone() {
        let berlin = parse_tz("Europe/Berlin").unwrap();
        // 2026-03-30 10:00 in Berlin (CEST), the day after the change to summer time.
        let now = utc("2026-03-30T08:00:00Z");
        let at = |s: &str| parse_bound(s, berlin, now).unwrap();
        assert_eq!(
            at("now"),
            Bound {
                at: now,
                relative: true
            }
        );
        assert_eq!(at("today").at, utc("2026-03-29T22:00:00Z"));
        // Yesterday's midnight was still winter time.
        assert_eq!(at("yesterday").at, utc("2026-03-28T23:00:00Z"));
        assert_eq!(at("-24h").at, utc("2026-03-29T08:00:00Z"));
        assert_eq!(at("-90m").at, utc("2026-03-30T06:30:00Z"));
        // One local day back is 10:00 local on the 29th (after the change, CEST): 23 hours;
        // two days back is 10:00 CET on the 28th: 47 hours.
        assert_eq!(at("-1d").at, utc("2026-03-29T08:00:00Z"));
        assert_eq!(at("-2d").at, utc("2026-03-28T09:00:00Z"));
        assert_eq!(at("-1w").at, utc("2026-03-23T09:00:00Z"));
        assert!(at("-1w").relative);
        // Fixed values are not relative, and mean the same at any time.
        assert_eq!(
            parse_bound("2026-03-29", berlin, now).unwrap(),
            Bound {
                at: utc("2026-03-28T23:00:00Z"),
                relative: false
            }
        );
        for bad in [
            "-",
            "-h",
            "-1y",
            "-1.5h",
            "--1h",
            "-1 h",
            "+1h",
            "-12345678d",
            "Today",
            "tomorrow",
        ] {
            assert!(parse_bound(bad, berlin, now).is_err(), "{bad}");
        }
        // The largest accepted count still resolves (far back, but a valid instant).
        assert!(parse_bound("-9999999w", berlin, now).is_ok());
    }

    #[test]
    fn midnight_in_a_gap_resolves_to_the_first_instant() {
        // America/Santiago springs forward at local midnight (2026-09-06 00:00 -> 01:00).
        let tz = parse_tz("America/Santiago").unwrap();
        let t = parse_instant("2026-09-06", tz).unwrap();
        assert_eq!(t.with_timezone(&tz).hour(), 1);
    }

    #[test]
    fn day_buckets_across_dst_have_23_and_25_hours() {
        let tz = parse_tz("Europe/Berlin").unwrap();
        let range = Window::new(
            parse_instant("2026-03-28", tz).unwrap(),
            parse_instant("2026-03-30", tz).unwrap(),
        );
        let b = buckets(range, tz, Bucket::Day, 100).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!((b[1].end - b[1].start).num_hours(), 23);
        let range = Window::new(
            parse_instant("2026-10-25", tz).unwrap(),
            parse_instant("2026-10-26", tz).unwrap(),
        );
        let b = buckets(range, tz, Bucket::Day, 100).unwrap();
        assert_eq!((b[0].end - b[0].start).num_hours(), 25);
        let h = buckets(range, tz, Bucket::Hour, 100).unwrap();
        assert_eq!(h.len(), 25);
    }

    #[test]
    fn weeks_start_monday_and_months_have_calendar_lengths() {
        let tz = parse_tz("UTC").unwrap();
        let range = Window::new(utc("2026-11-04T00:00:00Z"), utc("2026-11-20T00:00:00Z"));
        let w = buckets(range, tz, Bucket::Week, 10).unwrap();
        assert_eq!(w[0].start, range.start);
        assert_eq!(w[1].start, utc("2026-11-09T00:00:00Z")); // a Monday
        assert_eq!(w.last().unwrap().end, range.end);
        let range = Window::new(utc("2026-01-15T00:00:00Z"), utc("2026-04-01T00:00:00Z"));
        let m = buckets(range, tz, Bucket::Month, 10).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[1],
            Window::new(utc("2026-02-01T00:00:00Z"), utc("2026-03-01T00:00:00Z"))
        );
    }

    #[test]
    fn half_hour_zone_hours_align_locally() {
        let tz = parse_tz("Asia/Kolkata").unwrap();
        let range = Window::new(utc("2026-11-01T00:00:00Z"), utc("2026-11-01T03:00:00Z"));
        let h = buckets(range, tz, Bucket::Hour, 10).unwrap();
        assert_eq!(h[0], Window::new(range.start, utc("2026-11-01T00:30:00Z")));
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn hours_across_a_half_hour_dst_shift_start_on_the_local_hour() {
        // Lord Howe falls back 30 minutes at 2026-04-05 02:00 +11 (15:00Z) and springs forward
        // 30 minutes at 2026-10-04 02:00 +10:30 (15:30Z).
        let tz = parse_tz("Australia/Lord_Howe").unwrap();
        let range = Window::new(utc("2026-04-04T13:00:00Z"), utc("2026-04-04T17:30:00Z"));
        let h = buckets(range, tz, Bucket::Hour, 10).unwrap();
        let starts: Vec<_> = h.iter().map(|w| w.start).collect();
        assert_eq!(
            starts,
            [
                utc("2026-04-04T13:00:00Z"), // 00:00 +11
                utc("2026-04-04T14:00:00Z"), // 01:00 +11, 90 minutes until 02:00 +10:30
                utc("2026-04-04T15:30:00Z"), // 02:00 +10:30
                utc("2026-04-04T16:30:00Z"), // 03:00 +10:30
            ]
        );
        let range = Window::new(utc("2026-10-03T13:30:00Z"), utc("2026-10-03T17:00:00Z"));
        let h = buckets(range, tz, Bucket::Hour, 10).unwrap();
        let starts: Vec<_> = h.iter().map(|w| w.start).collect();
        assert_eq!(
            starts,
            [
                utc("2026-10-03T13:30:00Z"), // 00:00 +10:30
                utc("2026-10-03T14:30:00Z"), // 01:00 +10:30, 90 minutes until 03:00 +11
                utc("2026-10-03T16:00:00Z"), // 03:00 +11
            ]
        );
        // A range starting inside the long hour floors to its local-hour start.
        let range = Window::new(utc("2026-04-04T15:10:00Z"), utc("2026-04-04T16:00:00Z"));
        let h = buckets(range, tz, Bucket::Hour, 10).unwrap();
        assert_eq!(h[0], Window::new(range.start, utc("2026-04-04T15:30:00Z")));
    }

    #[test]
    fn too_many_buckets_is_an_error() {
        let tz = parse_tz("UTC").unwrap();
        let range = Window::new(utc("2026-11-01T00:00:00Z"), utc("2026-11-03T00:00:00Z"));
        assert_eq!(buckets(range, tz, Bucket::Hour, 10), Err(11));
        assert_eq!(buckets(range, tz, Bucket::Hour, 48).unwrap().len(), 48);
    }

    #[test]
    fn default_range_is_seven_whole_days() {
        let tz = parse_tz("UTC").unwrap();
        let r = default_range(utc("2026-11-08T10:00:00Z"), tz);
        assert_eq!(
            r,
            Window::new(utc("2026-11-01T00:00:00Z"), utc("2026-11-08T00:00:00Z"))
        );
    }
}
