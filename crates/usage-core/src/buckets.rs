//! Fixed-width vendor buckets, and cursor paging: the shared part of vendors whose usage
//! reports answer in UTC buckets of `1m`, `1h` or `1d`, a page of at most `limit` buckets at a
//! time with a `next_page` cursor (OpenAI's `/v1/organization/usage/*`, Anthropic's
//! `/v1/organizations/usage_report/messages`).
//!
//! A query's windows are cut in its own time zone; the vendor's buckets in UTC. The provider asks
//! for the coarsest width whose boundaries include every window edge ([`BucketWidth::for_windows`]),
//! so that every bucket lies wholly inside one window or outside all of them and the answer is
//! exact: `1d` for UTC days, `1h` for Berlin days or hour buckets, `1m` for zones with non-hour
//! offsets (Kolkata) or edges inside an hour. Edges between whole minutes (e.g. `start=-24h` at
//! 12:00:30) cannot be met: each minute is then counted in the window it starts in
//! ([`BucketWidth::edge_note`] says so in the answer).

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

    /// The coarsest width among `allowed` whose boundaries include every window edge; the finest
    /// of `allowed` when none does (its buckets are then counted in the window they start in).
    ///
    /// `allowed` lists the widths a vendor endpoint offers; it must not be empty.
    pub fn for_windows(windows: &[Window], allowed: &[Self]) -> Self {
        let mut widths = allowed.to_vec();
        widths.sort_unstable_by(|a, b| b.cmp(a));
        widths
            .iter()
            .copied()
            .find(|w| w.fits(windows))
            .or_else(|| widths.last().copied())
            .unwrap_or(Self::Minute)
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

    /// The buckets a query needs, as request ranges of at most `limit` buckets each: the
    /// windows are joined where they touch, each run is taken from its first to its last
    /// bucket start inside it (a bucket belongs to the window its start lies in), and cut into
    /// pieces of `limit` buckets. Ranges are ascending and disjoint.
    pub fn request_ranges(self, windows: &[Window], limit: u32) -> Vec<Window> {
        let mut runs: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for w in windows {
            match runs.last_mut() {
                Some(last) if w.start <= last.1 => last.1 = last.1.max(w.end),
                _ => runs.push((w.start, w.end)),
            }
        }
        let step = self.delta() * i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        let mut out: Vec<Window> = Vec::new();
        for (start, end) in runs {
            let (mut from, to) = (self.ceil(start), self.ceil(end));
            // Runs whose buckets meet (edges inside one bucket) share it once.
            if let Some(last) = out.last()
                && from < last.end
            {
                from = last.end;
            }
            while from < to {
                let next = (from + step).min(to);
                out.push(Window::new(from, next));
                from = next;
            }
        }
        out
    }

    /// How many buckets of this width lie in `range` (whose edges are boundaries).
    pub fn count(self, range: Window) -> u64 {
        let secs = (range.end - range.start).num_seconds().max(0);
        u64::try_from(secs.div_euclid(self.seconds())).unwrap_or(0)
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

    #[test]
    fn the_coarsest_width_that_fits_every_edge() {
        use BucketWidth::{Day, Hour, Minute};
        let utc_days = [Window::new(day(1), day(2)), Window::new(day(2), day(3))];
        assert_eq!(BucketWidth::for_windows(&utc_days, &ALL), Day);
        // Berlin days: edges at 23:00 UTC.
        let berlin = [Window::new(
            day(1) - TimeDelta::hours(1),
            day(2) - TimeDelta::hours(1),
        )];
        assert_eq!(BucketWidth::for_windows(&berlin, &ALL), Hour);
        // Kolkata days: edges at 18:30 UTC.
        let kolkata = [Window::new(
            at(18, 30, 0) - TimeDelta::days(1),
            at(18, 30, 0),
        )];
        assert_eq!(BucketWidth::for_windows(&kolkata, &ALL), Minute);
        assert_eq!(Minute.edge_note(&kolkata), None);
        // Edges between minutes: the finest width, with a note.
        let odd = [Window::new(at(12, 0, 30), at(13, 0, 30))];
        assert_eq!(BucketWidth::for_windows(&odd, &ALL), Minute);
        assert!(Minute.edge_note(&odd).is_some());
        // An endpoint offering days only (costs) gets days.
        assert_eq!(BucketWidth::for_windows(&berlin, &[Day]), Day);
    }

    #[test]
    fn request_ranges_cover_runs_in_pages_of_limit_buckets() {
        use BucketWidth::{Day, Hour, Minute};
        // Ten touching days in pages of four, and a separate run two days later.
        let mut windows: Vec<Window> = (1..11).map(|d| Window::new(day(d), day(d + 1))).collect();
        windows.push(Window::new(day(13), day(14)));
        assert_eq!(
            Day.request_ranges(&windows, 4),
            vec![
                Window::new(day(1), day(5)),
                Window::new(day(5), day(9)),
                Window::new(day(9), day(11)),
                Window::new(day(13), day(14)),
            ]
        );
        // Hours in one page.
        assert_eq!(
            Hour.request_ranges(&[Window::new(at(1, 0, 0), at(5, 0, 0))], 168),
            vec![Window::new(at(1, 0, 0), at(5, 0, 0))]
        );
        // Edges between minutes: the buckets starting inside, i.e. from the next minute on.
        assert_eq!(
            Minute.request_ranges(&[Window::new(at(12, 0, 30), at(12, 3, 30))], 1440),
            vec![Window::new(at(12, 1, 0), at(12, 4, 0))]
        );
        // Two runs whose edge buckets meet share that bucket once.
        assert_eq!(
            Minute.request_ranges(
                &[
                    Window::new(at(12, 0, 0), at(12, 0, 10)),
                    Window::new(at(12, 0, 20), at(12, 2, 0)),
                ],
                1440
            ),
            vec![
                Window::new(at(12, 0, 0), at(12, 1, 0)),
                Window::new(at(12, 1, 0), at(12, 2, 0))
            ]
        );
        assert_eq!(Day.count(Window::new(day(1), day(5))), 4);
        assert_eq!(Hour.floor(at(12, 59, 59)), at(12, 0, 0));
        assert_eq!(Hour.ceil(at(12, 0, 1)), at(13, 0, 0));
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
}
