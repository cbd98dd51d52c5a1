//! Fixed-width vendor buckets, and cursor paging: the shared part of vendors whose usage
//! reports answer in UTC buckets of `1m`, `1h` or `1d`, a page of at most `limit` buckets at a
//! time with a `next_page` cursor (OpenAI's `/v1/organization/usage/*`, Anthropic's
//! `/v1/organizations/usage_report/messages`).
//!
//! A query's windows are cut in its own time zone; the vendor's buckets in UTC. A provider plans
//! its requests with [`BucketWidth::plan`]: each window is covered by the coarsest buckets that
//! fit inside it, finer ones only at its edges (a week from 04:41 reads minutes up to 05:00,
//! hours up to midnight, days, then hours and minutes again), so that every bucket lies wholly
//! inside one window and the answer is exact with few requests: `1d` alone for UTC days, `1h`
//! for Berlin days or hour buckets, `1m` for Kolkata days (half an hour off UTC). Edges between
//! whole minutes (e.g. `start=-24h` at 12:00:30) cannot be met: each minute is then counted in
//! the window it starts in ([`BucketWidth::edge_note`] says so in the answer).
//!
//! [`usage_report_limit`] is the most buckets one request may ask for, the same for both
//! vendors.

use std::future::Future;

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::Window;

/// A vendor bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BucketWidth {
    /// `1m`.
    Minute,
    /// `1h`.
    Hour,
    /// `1d` (UTC days).
    Day,
}

impl BucketWidth {
    /// The widths, coarsest first.
    pub const COARSEST_FIRST: [Self; 3] = [Self::Day, Self::Hour, Self::Minute];

    /// The wire name (`1m`, `1h`, `1d`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "1m",
            Self::Hour => "1h",
            Self::Day => "1d",
        }
    }

    /// The width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }

    /// The width as a duration.
    pub fn delta(self) -> TimeDelta {
        TimeDelta::seconds(self.seconds())
    }

    /// Reports whether `t` is a bucket boundary (a whole multiple of the width since the epoch).
    pub fn is_boundary(self, t: DateTime<Utc>) -> bool {
        t.timestamp_subsec_nanos() == 0 && t.timestamp().rem_euclid(self.seconds()) == 0
    }

    /// The boundary at or before `t`.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let secs = t.timestamp();
        let floored = secs - secs.rem_euclid(self.seconds());
        DateTime::from_timestamp(floored, 0).unwrap_or(t)
    }

    /// The boundary at or after `t`.
    pub fn ceil(self, t: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_boundary(t) {
            t
        } else {
            self.floor(t) + self.delta()
        }
    }

    /// Reports whether every window edge is a boundary of this width.
    pub fn fits(self, windows: &[Window]) -> bool {
        windows
            .iter()
            .all(|w| self.is_boundary(w.start) && self.is_boundary(w.end))
    }

    /// When the windows' edges are not boundaries of this width, the note an answer carries.
    pub fn edge_note(self, windows: &[Window]) -> Option<String> {
        (!self.fits(windows)).then(|| {
            format!(
                "the vendor reports whole `{}` buckets and the query's window edges fall inside \
                 some: each bucket is counted in the window it starts in",
                self.as_str()
            )
        })
    }

    /// How many buckets of this width lie in `range` (whose edges are boundaries).
    pub fn count(self, range: Window) -> u64 {
        let secs = (range.end - range.start).num_seconds().max(0);
        u64::try_from(secs.div_euclid(self.seconds())).unwrap_or(0)
    }
}

/// The most buckets one usage request may ask for (its `limit` maximum): 31 `1d`, 168 `1h` or
/// 1440 `1m` buckets. OpenAI's usage endpoints and Anthropic's usage report share these limits
/// (CONTRACTS-openai-anthropic.md).
pub fn usage_report_limit(width: BucketWidth) -> u32 {
    match width {
        BucketWidth::Day => 31,
        BucketWidth::Hour => 168,
        BucketWidth::Minute => 1440,
    }
}

/// Checks a cost query against a vendor's daily cost report (OpenAI's
/// `/v1/organization/costs`, Anthropic's `/v1/organizations/cost_report`): every window edge
/// must be a UTC midnight (the reports have `1d` buckets only, so no other edge can be met
/// exactly), and no user or model filter may be set (the reports cannot apply them). The
/// error is [`ProviderError::InvalidQuery`](crate::ProviderError::InvalidQuery) naming `vendor`.
pub fn check_daily_cost_query(
    source: &str,
    vendor: &str,
    query: &crate::model::UsageQuery,
) -> Result<(), crate::ProviderError> {
    let invalid = |message: String| crate::ProviderError::InvalidQuery {
        source_name: source.to_owned(),
        message,
    };
    let unfiltered: Vec<&str> = [
        (query.users.is_some(), "user"),
        (query.models.is_some(), "model"),
    ]
    .into_iter()
    .filter_map(|(set, d)| set.then_some(d))
    .collect();
    if !unfiltered.is_empty() {
        return Err(invalid(format!(
            "{vendor}'s costs cannot be filtered by {}: leave that filter out of a cost query",
            unfiltered.join(" or ")
        )));
    }
    if !BucketWidth::Day.fits(&query.windows) {
        return Err(invalid(format!(
            "{vendor}'s costs are reported per day in UTC: every window must start and end at \
             a UTC midnight"
        )));
    }
    Ok(())
}

/// One request range of a [`BucketWidth::plan`]: read at `width`, over `range` (whose edges are
/// boundaries of `width`).
pub type Piece = (BucketWidth, Window);

impl BucketWidth {
    /// Plans the requests for `windows`: pieces of one width each, ascending and disjoint, of at
    /// most `limit(width)` buckets, every bucket wholly inside one window.
    ///
    /// Windows are first taken to the finest allowed width by the bucket-start rule (a bucket
    /// belongs to the window its start lies in: `[ceil(start), ceil(end))`). Each window
    /// `[a, b)` is then covered from the coarsest width down: with `x` = the first boundary of
    /// the width at or after `a` and `y` = the last at or before `b`, `[x, y)` is read at that
    /// width when not empty and the edges `[a, x)`, `[y, b)` at finer widths. Touching pieces of
    /// one width are joined across windows before being cut at `limit(width)` buckets.
    ///
    /// That mixed plan is used when it needs fewer requests than reading everything at the
    /// coarsest width whose boundaries include every window edge; otherwise (and on a tie) the
    /// single width is: UTC days read `1d`, Berlin days `1h` and Kolkata days `1m`, each in one
    /// width, while a week from 04:41 reads minutes and hours at its ends and days between.
    ///
    /// `allowed` lists the widths a vendor endpoint offers; with none, minutes are used.
    pub fn plan(windows: &[Window], allowed: &[Self], limit: fn(Self) -> u32) -> Vec<Piece> {
        let mut widths = allowed.to_vec();
        widths.sort_unstable_by(|a, b| b.cmp(a));
        widths.dedup();
        if widths.is_empty() {
            widths.push(Self::Minute);
        }
        let finest = widths[widths.len() - 1];
        let mut sorted = windows.to_vec();
        sorted.sort_unstable();
        let mut snapped: Vec<Window> = Vec::new();
        for w in sorted {
            let (mut a, b) = (finest.ceil(w.start), finest.ceil(w.end));
            // Windows whose buckets meet (edges inside one bucket) share it once.
            if let Some(last) = snapped.last() {
                a = a.max(last.end);
            }
            if a < b {
                snapped.push(Window::new(a, b));
            }
        }
        let single = widths
            .iter()
            .copied()
            .find(|w| w.fits(&snapped))
            .unwrap_or(finest);
        let one = pieces(&snapped, &[single], limit);
        let mixed = pieces(&snapped, &widths, limit);
        if mixed.len() < one.len() { mixed } else { one }
    }

    /// The distinct widths of a plan, coarsest first, joined by `, ` (e.g. `1d, 1h, 1m`);
    /// `None` for an empty plan.
    pub fn plan_label(pieces: &[Piece]) -> Option<String> {
        let widths: std::collections::BTreeSet<Self> = pieces.iter().map(|(w, _)| *w).collect();
        (!widths.is_empty()).then(|| {
            widths
                .iter()
                .rev()
                .map(|w| w.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

/// The bucket limits of the widths a plan uses, coarsest first, for a message: e.g. "31 `1d`
/// or 1440 `1m` buckets".
pub fn plan_limits(pieces: &[Piece], limit: fn(BucketWidth) -> u32) -> String {
    let widths: std::collections::BTreeSet<BucketWidth> = pieces.iter().map(|(w, _)| *w).collect();
    let parts: Vec<String> = widths
        .iter()
        .rev()
        .map(|w| format!("{} `{}`", limit(*w), w.as_str()))
        .collect();
    match parts.split_last() {
        None => "no buckets".to_owned(),
        Some((last, [])) => format!("{last} buckets"),
        Some((last, rest)) => format!("{} or {last} buckets", rest.join(", ")),
    }
}

/// Covers each of `windows` (edges on boundaries of the finest of `widths`, coarsest first)
/// with the coarsest buckets that fit, joins touching pieces of one width and cuts them at
/// `limit(width)` buckets.
fn pieces(windows: &[Window], widths: &[BucketWidth], limit: fn(BucketWidth) -> u32) -> Vec<Piece> {
    let mut segments: Vec<Piece> = Vec::new();
    for w in windows {
        cover(w.start, w.end, widths, &mut segments);
    }
    let mut joined: Vec<Piece> = Vec::new();
    for (width, range) in segments {
        match joined.last_mut() {
            Some((w, last)) if *w == width && last.end == range.start => last.end = range.end,
            _ => joined.push((width, range)),
        }
    }
    let mut out = Vec::new();
    for (width, range) in joined {
        let step = width.delta() * i32::try_from(limit(width).max(1)).unwrap_or(i32::MAX);
        let mut from = range.start;
        while from < range.end {
            let next = (from + step).min(range.end);
            out.push((width, Window::new(from, next)));
            from = next;
        }
    }
    out
}

/// Covers `[from, to)` (edges on boundaries of the finest of `widths`, coarsest first) with
/// the coarsest buckets that fit, finer ones at the edges.
fn cover(from: DateTime<Utc>, to: DateTime<Utc>, widths: &[BucketWidth], out: &mut Vec<Piece>) {
    let Some((&width, finer)) = widths.split_first() else {
        return;
    };
    if from >= to {
        return;
    }
    if finer.is_empty() {
        out.push((width, Window::new(from, to)));
        return;
    }
    // The whole buckets of this width inside: from the first boundary to the last.
    let (first, last) = (width.ceil(from), width.floor(to));
    if first < last {
        cover(from, first, finer, out);
        out.push((width, Window::new(first, last)));
        cover(last, to, finer, out);
    } else {
        cover(from, to, finer, out);
    }
}

/// Why [`follow_cursor`] stopped before the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagingStop<E> {
    /// A page could not be read.
    Page(E),
    /// The vendor handed back a cursor it had given before (it would loop for ever).
    Loop {
        /// Pages read until then.
        pages: usize,
    },
    /// More than `max_pages` pages.
    TooMany {
        /// The limit.
        max_pages: usize,
    },
}

impl<E: std::fmt::Display> PagingStop<E> {
    /// A message for an error: the page's own, or what went wrong with the cursor.
    pub fn message(&self) -> String {
        match self {
            Self::Page(e) => e.to_string(),
            Self::Loop { pages } => format!(
                "the vendor's `next_page` cursor after page {pages} repeats an earlier one; \
                 paging stopped"
            ),
            Self::TooMany { max_pages } => {
                format!("the answer did not end within {max_pages} pages; paging stopped")
            }
        }
    }
}

/// Reads every page of a cursor-paged vendor answer: `fetch(cursor)` sends one request (the
/// first with `None`) and returns the page's items and the next cursor (`None` on the last
/// page); the items of every page are returned in order, with the number of pages read.
///
/// A cursor seen before (a vendor looping) or more than `max_pages` pages stop the reading:
/// a vendor bug must not turn into endless requests.
pub async fn follow_cursor<T, E, F, Fut>(
    max_pages: usize,
    mut fetch: F,
) -> Result<(Vec<T>, usize), PagingStop<E>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), E>>,
{
    let mut items = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        if pages == max_pages {
            return Err(PagingStop::TooMany { max_pages });
        }
        let (page, next) = fetch(cursor.take()).await.map_err(PagingStop::Page)?;
        pages += 1;
        items.extend(page);
        match next {
            None => return Ok((items, pages)),
            Some(next) if seen.contains(&next) => return Err(PagingStop::Loop { pages }),
            Some(next) => {
                seen.push(next.clone());
                cursor = Some(next);
            }
        }
    }
}

/// One page of a cursor-paged usage report, as [`follow_planned_range`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorPage<T> {
    /// The page's items (buckets).
    pub items: Vec<T>,
    /// Whether another page follows.
    pub has_more: bool,
    /// The next page's cursor (an empty one counts as none).
    pub next_page: Option<String>,
}

/// Reads every page of one planned request range (OpenAI's and Anthropic's usage reports):
/// `fetch(cursor, admission)` sends one request; the first page's was reserved with the
/// query's plan ([`Admission::Reserved`](crate::transport::Admission::Reserved)), each further
/// page takes its own place in the budget
/// ([`Admission::Admit`](crate::transport::Admission::Admit)). A page that says `has_more`
/// without a cursor is the error `no_cursor()`; loops and more than `max_pages` pages stop as
/// in [`follow_cursor`].
#[cfg(feature = "http")]
pub async fn follow_planned_range<T, E, F, Fut>(
    max_pages: usize,
    no_cursor: impl Fn() -> E,
    mut fetch: F,
) -> Result<(Vec<T>, usize), PagingStop<E>>
where
    F: FnMut(Option<String>, crate::transport::Admission) -> Fut,
    Fut: Future<Output = Result<CursorPage<T>, E>>,
{
    use crate::transport::Admission;
    let no_cursor = &no_cursor;
    follow_cursor(max_pages, |cursor: Option<String>| {
        let admission = if cursor.is_some() {
            Admission::Admit
        } else {
            Admission::Reserved
        };
        let page = fetch(cursor, admission);
        async move {
            let page = page.await?;
            match (page.has_more, page.next_page.filter(|p| !p.is_empty())) {
                (false, _) => Ok((page.items, None)),
                (true, Some(next)) => Ok((page.items, Some(next))),
                (true, None) => Err(no_cursor()),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 2, h, m, s).unwrap()
    }

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap()
    }

    const ALL: [BucketWidth; 3] = BucketWidth::COARSEST_FIRST;

    fn plan(windows: &[Window]) -> Vec<Piece> {
        BucketWidth::plan(windows, &ALL, usage_report_limit)
    }

    #[test]
    fn whole_windows_keep_a_single_width() {
        use BucketWidth::{Day, Hour, Minute};
        // UTC days: one `1d` piece.
        let utc_days = [Window::new(day(1), day(2)), Window::new(day(2), day(3))];
        assert_eq!(plan(&utc_days), vec![(Day, Window::new(day(1), day(3)))]);
        assert_eq!(BucketWidth::plan_label(&plan(&utc_days)).unwrap(), "1d");
        // Berlin days: edges at 23:00 UTC, no whole UTC day inside one.
        let h = TimeDelta::hours;
        let berlin = [
            Window::new(day(1) - h(1), day(2) - h(1)),
            Window::new(day(2) - h(1), day(3) - h(1)),
        ];
        assert_eq!(
            plan(&berlin),
            vec![(Hour, Window::new(day(1) - h(1), day(3) - h(1)))]
        );
        // Kolkata days: edges at 18:30 UTC. Hours inside with minutes at the edges would take
        // three requests; minutes alone take one.
        let kolkata = [Window::new(
            at(18, 30, 0) - TimeDelta::days(1),
            at(18, 30, 0),
        )];
        let got = plan(&kolkata);
        assert_eq!(got, vec![(Minute, kolkata[0])]);
        assert_eq!(BucketWidth::plan_label(&got).unwrap(), "1m");
        assert_eq!(Minute.edge_note(&kolkata), None);
        // Hour windows read at `1h`.
        let hours = [
            Window::new(at(1, 0, 0), at(2, 0, 0)),
            Window::new(at(2, 0, 0), at(5, 0, 0)),
        ];
        assert_eq!(
            plan(&hours),
            vec![(Hour, Window::new(at(1, 0, 0), at(5, 0, 0)))]
        );
        // An endpoint offering days only (costs) gets days.
        assert_eq!(
            BucketWidth::plan(&berlin, &[Day], usage_report_limit),
            vec![(Day, Window::new(day(1), day(3)))]
        );
        assert_eq!(BucketWidth::plan_label(&[]), None);
    }

    #[test]
    fn a_week_to_now_reads_days_with_hours_and_minutes_at_the_edges() {
        use BucketWidth::{Day, Hour, Minute};
        // `start=-7d` with now = 2026-11-09 04:41:23: the buckets starting inside are those
        // from 04:42 on.
        let now = Utc.with_ymd_and_hms(2026, 11, 9, 4, 41, 23).unwrap();
        let week = [Window::new(now - TimeDelta::days(7), now)];
        let t = |d, h, m| Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
        let got = plan(&week);
        assert_eq!(
            got,
            vec![
                (Minute, Window::new(t(2, 4, 42), t(2, 5, 0))),
                (Hour, Window::new(t(2, 5, 0), t(3, 0, 0))),
                (Day, Window::new(t(3, 0, 0), t(9, 0, 0))),
                (Hour, Window::new(t(9, 0, 0), t(9, 4, 0))),
                (Minute, Window::new(t(9, 4, 0), t(9, 4, 42))),
            ]
        );
        assert_eq!(BucketWidth::plan_label(&got).unwrap(), "1d, 1h, 1m");
        assert_eq!(
            plan_limits(&got, usage_report_limit),
            "31 `1d`, 168 `1h` or 1440 `1m` buckets"
        );
        assert!(Minute.edge_note(&week).is_some(), "edges between minutes");
        // Day windows of that range: the partial first and last days take finer pieces, the
        // pieces of one width join across windows.
        let mut days = vec![Window::new(now - TimeDelta::days(7), t(3, 0, 0))];
        days.extend((3..9).map(|d| Window::new(t(d, 0, 0), t(d + 1, 0, 0))));
        days.push(Window::new(t(9, 0, 0), now));
        assert_eq!(plan(&days), got);
    }

    #[test]
    fn pieces_hold_at_most_limit_buckets() {
        use BucketWidth::{Day, Minute};
        // 40 UTC days: 31 + 9.
        let forty = [Window::new(day(1), day(1) + TimeDelta::days(40))];
        assert_eq!(
            plan(&forty),
            vec![
                (Day, Window::new(day(1), day(1) + TimeDelta::days(31))),
                (
                    Day,
                    Window::new(day(1) + TimeDelta::days(31), day(1) + TimeDelta::days(40))
                ),
            ]
        );
        // A run of ten days in pages of four, and a separate run two days later.
        let mut windows: Vec<Window> = (1..11).map(|d| Window::new(day(d), day(d + 1))).collect();
        windows.push(Window::new(day(13), day(14)));
        assert_eq!(
            BucketWidth::plan(&windows, &ALL, |_| 4),
            vec![
                (Day, Window::new(day(1), day(5))),
                (Day, Window::new(day(5), day(9))),
                (Day, Window::new(day(9), day(11))),
                (Day, Window::new(day(13), day(14))),
            ]
        );
        // Minutes cut at the limit.
        let m = TimeDelta::minutes;
        assert_eq!(
            BucketWidth::plan(
                &[Window::new(at(12, 0, 0), at(12, 5, 0) + m(0))],
                &[Minute],
                |_| 2
            ),
            vec![
                (Minute, Window::new(at(12, 0, 0), at(12, 2, 0))),
                (Minute, Window::new(at(12, 2, 0), at(12, 4, 0))),
                (Minute, Window::new(at(12, 4, 0), at(12, 5, 0))),
            ]
        );
    }

    #[test]
    fn edges_between_minutes_follow_the_bucket_start_rule() {
        use BucketWidth::{Hour, Minute};
        // The buckets starting inside, i.e. from the next minute on.
        let odd = [Window::new(at(12, 0, 30), at(12, 3, 30))];
        assert_eq!(
            plan(&odd),
            vec![(Minute, Window::new(at(12, 1, 0), at(12, 4, 0)))]
        );
        assert!(Minute.edge_note(&odd).is_some());
        // An hour between minutes: minutes, then minutes again (no whole hour inside).
        let hour = [Window::new(at(12, 0, 30), at(13, 0, 30))];
        assert_eq!(
            plan(&hour),
            vec![(Minute, Window::new(at(12, 1, 0), at(13, 1, 0)))]
        );
        // Two windows whose edge minutes meet share that minute once; none is empty.
        assert_eq!(
            plan(&[
                Window::new(at(12, 0, 0), at(12, 0, 10)),
                Window::new(at(12, 0, 20), at(12, 2, 0)),
            ]),
            vec![(Minute, Window::new(at(12, 0, 0), at(12, 2, 0)))]
        );
        // Two days with a ragged end: the whole days, then minutes (one request less than
        // 2,881 minutes).
        let ragged = [Window::new(
            day(1),
            day(3) + TimeDelta::seconds(20 * 60 + 5),
        )];
        assert_eq!(
            plan(&ragged),
            vec![
                (BucketWidth::Day, Window::new(day(1), day(3))),
                (Minute, Window::new(day(3), day(3) + TimeDelta::minutes(21))),
            ]
        );
        // Hours with a ragged end: minutes alone are one request.
        assert_eq!(
            plan(&[Window::new(at(1, 0, 0), at(3, 20, 5))]),
            vec![(Minute, Window::new(at(1, 0, 0), at(3, 21, 0)))]
        );
        assert_eq!(BucketWidth::Day.count(Window::new(day(1), day(5))), 4);
        assert_eq!(Hour.floor(at(12, 59, 59)), at(12, 0, 0));
        assert_eq!(Hour.ceil(at(12, 0, 1)), at(13, 0, 0));
        assert_eq!(usage_report_limit(BucketWidth::Day), 31);
        assert_eq!(usage_report_limit(Hour), 168);
        assert_eq!(usage_report_limit(Minute), 1440);
    }

    #[cfg(feature = "http")]
    #[tokio::test]
    async fn planned_ranges_reserve_the_first_page_and_need_a_cursor_for_more() {
        use crate::transport::Admission;
        let seen = std::sync::Mutex::new(Vec::new());
        let (items, pages) = follow_planned_range(
            5,
            || "no cursor",
            |cursor: Option<String>, admission| {
                seen.lock().unwrap().push((cursor.clone(), admission));
                async move {
                    Ok(match cursor.as_deref() {
                        None => CursorPage {
                            items: vec![1],
                            has_more: true,
                            next_page: Some("p2".to_owned()),
                        },
                        _ => CursorPage {
                            items: vec![2],
                            has_more: false,
                            // Ignored without has_more.
                            next_page: Some("p3".to_owned()),
                        },
                    })
                }
            },
        )
        .await
        .unwrap();
        assert_eq!((items, pages), (vec![1, 2], 2));
        assert_eq!(
            seen.into_inner().unwrap(),
            vec![
                (None, Admission::Reserved),
                (Some("p2".to_owned()), Admission::Admit)
            ]
        );
        let missing = follow_planned_range(
            5,
            || "no cursor",
            |_c: Option<String>, _a| async {
                Ok(CursorPage::<u8> {
                    items: vec![],
                    has_more: true,
                    next_page: Some(String::new()),
                })
            },
        )
        .await;
        assert_eq!(missing, Err(PagingStop::Page("no cursor")));
    }

    #[tokio::test]
    async fn cursor_paging_reads_every_page_and_stops_loops() {
        let pages = |script: Vec<Option<&'static str>>| {
            let script = std::sync::Arc::new(std::sync::Mutex::new(script.into_iter()));
            move |_cursor: Option<String>| {
                let next = script.lock().unwrap().next().flatten().map(str::to_owned);
                async move { Ok::<_, String>((vec![1], next)) }
            }
        };
        let (items, n) = follow_cursor(10, pages(vec![Some("a"), Some("b"), None]))
            .await
            .unwrap();
        assert_eq!((items.len(), n), (3, 3));
        let looped = follow_cursor(10, pages(vec![Some("a"), Some("b"), Some("a")])).await;
        assert_eq!(looped, Err(PagingStop::Loop { pages: 3 }));
        let many = follow_cursor(2, pages(vec![Some("a"), Some("b"), None])).await;
        assert_eq!(many, Err(PagingStop::TooMany { max_pages: 2 }));
        let failed = follow_cursor(5, |_c: Option<String>| async {
            Err::<(Vec<u8>, _), _>("boom")
        })
        .await;
        assert_eq!(failed, Err(PagingStop::Page("boom")));
    }

    #[test]
    fn cost_queries_need_utc_days_and_no_user_or_model_filter() {
        use crate::model::UsageQuery;
        let days = UsageQuery::new(
            vec![Window::new(day(1), day(3))],
            std::collections::BTreeSet::default(),
        );
        assert!(check_daily_cost_query("s", "OpenAI", &days).is_ok());
        let hours = UsageQuery::new(
            vec![Window::new(at(1, 0, 0), day(3))],
            std::collections::BTreeSet::default(),
        );
        let e = check_daily_cost_query("s", "OpenAI", &hours).unwrap_err();
        assert!(
            matches!(&e, crate::ProviderError::InvalidQuery { message, .. }
                if message.contains("per day in UTC")),
            "{e}"
        );
        let mut users = days.clone();
        users.users = Some(["u".to_owned()].into());
        users.models = Some(["m".to_owned()].into());
        let e = check_daily_cost_query("s", "Anthropic", &users).unwrap_err();
        assert!(e.to_string().contains("by user or model"), "{e}");
    }

    #[test]
    fn cost_batches_compact_exactly_per_currency() {
        use crate::model::{CostBatch, CostPoint, PointKey};
        use crate::money::{Currency, Money};
        let w = Window::new(day(1), day(2));
        let p = |v: &str, c: &str| CostPoint {
            window: w,
            key: PointKey::default(),
            unit: crate::model::Unit::Tokens,
            money: Money::from_major(v, Currency::parse(c).unwrap()).unwrap(),
        };
        let b = CostBatch {
            points: vec![p("0.1", "usd"), p("0.2", "USD"), p("1", "EUR")],
            ..CostBatch::default()
        }
        .compact()
        .unwrap();
        assert_eq!(b.points.len(), 2);
        let usd = b.sum(|p| p.money.currency == Currency::USD);
        assert_eq!(usd.iter().next().unwrap().amount.to_string(), "0.3");
    }
}
