//! The record-scan cache: usage records read from `GET /v1/usage/list`, kept per server-side
//! filter with the time span they cover completely, extended and refreshed on demand.
//!
//! `/v1/usage/list` has no date filter and returns records newest first, so a scan always
//! starts at the newest record and walks back. The cache remembers, per filter:
//! - `top_ms`: the wall-clock time at which the last scan from the top started (records up to
//!   it are all present);
//! - a bottom: either the end of the list, or the oldest complete millisecond plus the cursor to
//!   continue from, so an older window costs only the pages below what is cached.
//!
//! Freshness follows the gateway's cache vocabulary: records older than `top_ms - settle` are
//! closed and trusted until the whole scan is `closed_ttl` old; a query touching the open part
//! re-reads the top (down to `top_ms - settle`) once the last top scan is `open_ttl` old.
//! A scan holds its filter's lock, so concurrent queries for the same filter wait for it and
//! then answer from the cache: concurrent scans are coalesced.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::client::{Client, Pager, RecordFilter};
use crate::error::{Error, ErrorKind};
use crate::model::{Text, UsageRecordWire};

/// The most filters kept at once; the least recently used idle one is dropped beyond it.
const MAX_KEYS: usize = 64;

/// One usage record, reduced to what the provider maps.
///
/// Its five strings (id, type, bot, contact, conversation) share one allocation. A scan holds
/// up to hundreds of thousands of records. Sharing one copy of each distinct label between
/// records instead cost a hash lookup per label, most of them cache misses on the tens of
/// thousands of conversations: 9 % of a large cold query, for little memory saved.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// `createdAt`, epoch milliseconds.
    pub created_ms: i64,
    /// `count`.
    pub count: u64,
    /// The id, then the type, bot, contact and conversation, back to back.
    text: Box<str>,
    /// Where each label starts in `text`, which is where the string before it ends; the
    /// conversation runs to the end of `text`.
    starts: [u32; 4],
    /// Bit `i` set: label `i` (type, bot, contact, conversation) is present.
    present: u8,
}

/// The labels of a record, in the order [`Record::new`] takes them.
const TYPE: usize = 0;
const BOT: usize = 1;
const CONTACT: usize = 2;
const CONVERSATION: usize = 3;

impl Record {
    /// A record with `id` and the labels `[type, bot, contact, conversation]`; `None` only
    /// when its strings together exceed 4 GiB, which no vendor body reaches.
    pub(crate) fn new(
        created_ms: i64,
        count: u64,
        id: &str,
        labels: [Option<&str>; 4],
    ) -> Option<Self> {
        let len = id.len() + labels.iter().flatten().map(|l| l.len()).sum::<usize>();
        u32::try_from(len).ok()?;
        let mut text = String::with_capacity(len);
        text.push_str(id);
        // Label `i` starts where the text ends before it is added.
        let mut starts = [0u32; 4];
        let mut present = 0u8;
        for (i, label) in labels.iter().enumerate() {
            starts[i] = text.len() as u32;
            if let Some(l) = label {
                text.push_str(l);
                present |= 1 << i;
            }
        }
        Some(Self {
            created_ms,
            count,
            text: text.into_boxed_str(),
            starts,
            present,
        })
    }

    /// The id (or a stand-in built from the content when the vendor sent none).
    pub(crate) fn id(&self) -> &str {
        &self.text[..self.starts[0] as usize]
    }

    fn label(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = self.starts[i] as usize;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.text.len(), |&e| e as usize);
        Some(&self.text[start..end])
    }

    /// `type`.
    pub(crate) fn usage_type(&self) -> Option<&str> {
        self.label(TYPE)
    }

    /// `botId`.
    pub(crate) fn bot_id(&self) -> Option<&str> {
        self.label(BOT)
    }

    /// `contactId`.
    pub(crate) fn contact_id(&self) -> Option<&str> {
        self.label(CONTACT)
    }

    /// `conversationId`.
    pub(crate) fn conversation_id(&self) -> Option<&str> {
        self.label(CONVERSATION)
    }

    /// The order records are kept in: `(createdAt, id)`.
    fn key(&self) -> (i64, &str) {
        (self.created_ms, self.id())
    }

    /// Maps a wire record; `None` when it has no usable `createdAt` or `count` (or, as
    /// [`Record::new`], when its strings exceed 4 GiB).
    pub(crate) fn from_wire(wire: &UsageRecordWire<'_>) -> Option<Self> {
        let created_ms = wire.created_at.as_ref()?.as_i64()?;
        let count = wire.count.as_ref()?.as_u64()?;
        let usage_type = wire.usage_type.as_ref().map(Text::as_str);
        let labels = [
            usage_type,
            nonempty(wire.bot_id.as_ref()),
            nonempty(wire.contact_id.as_ref()),
            nonempty(wire.conversation_id.as_ref()),
        ];
        if let Some(id) = nonempty(wire.id.as_ref()) {
            return Self::new(created_ms, count, id, labels);
        }
        let [kind, bot, contact, conversation] = labels.map(|l| l.unwrap_or(""));
        let stand_in = format!("~{kind}|{count}|{bot}|{contact}|{conversation}");
        Self::new(created_ms, count, &stand_in, labels)
    }
}

/// The record's fields, not its layout.
impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("created_ms", &self.created_ms)
            .field("id", &self.id())
            .field("usage_type", &self.usage_type())
            .field("count", &self.count)
            .field("bot_id", &self.bot_id())
            .field("contact_id", &self.contact_id())
            .field("conversation_id", &self.conversation_id())
            .finish_non_exhaustive()
    }
}

/// A string field's value, unless absent or empty.
fn nonempty<'s>(field: Option<&'s Text<'_>>) -> Option<&'s str> {
    field.map(Text::as_str).filter(|s| !s.is_empty())
}

/// Cache timing, from the source config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub open_ttl: Duration,
    pub closed_ttl: Duration,
    pub settle: Duration,
}

impl Timing {
    fn settle_ms(&self) -> i64 {
        i64::try_from(self.settle.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Where a completed scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bottom {
    /// The list ended: every older record is present too.
    Exhausted,
    /// Records with `createdAt >= complete_from` are all present; `resume` continues below.
    At { complete_from: i64, resume: String },
}

#[derive(Debug, Clone)]
struct Coverage {
    born: Instant,
    top_ms: i64,
    top_at: Instant,
    bottom: Bottom,
}

/// The cached records of one filter.
#[derive(Debug, Default)]
pub(crate) struct ScanState {
    /// Sorted by `(created_ms, id)`, one record per key: a sorted `Vec` rather than a map, as
    /// records arrive by the page in order and are read by range.
    records: Vec<Record>,
    coverage: Option<Coverage>,
    /// Records without a usable `createdAt`/`count` seen by the scans behind this state.
    skipped: u64,
}

/// How one pass over `/v1/usage/list` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ScanEnd {
    /// An end rule fired: an empty page or an absent/empty/repeated cursor.
    Exhausted,
    /// A record older than the watermark was read; the pass stopped after that page.
    Stopped { min_ms: i64, resume: String },
}

/// What a pass has read so far (kept even when a later page fails).
#[derive(Debug, Default)]
struct Progress {
    records: Vec<Record>,
    min_ms: Option<i64>,
    /// The cursor after the last page read, when the list goes on.
    next: Option<String>,
    skipped: u64,
}

impl Progress {
    fn end_here(&self) -> Option<ScanEnd> {
        Some(ScanEnd::Stopped {
            min_ms: self.min_ms?,
            resume: self.next.clone()?,
        })
    }
}

/// What every pass of one call needs: the client, the filter sent and the call's request
/// counter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanCtx<'a> {
    pub client: &'a Client,
    pub filter: &'a RecordFilter,
    pub calls: &'a AtomicU64,
}

/// Reads pages from `cursor` until an end rule fires or a record older than `watermark` shows up.
async fn scan(
    cx: ScanCtx<'_>,
    cursor: Option<String>,
    watermark: i64,
    progress: &mut Progress,
) -> Result<ScanEnd, Error> {
    let ScanCtx {
        client,
        filter,
        calls,
    } = cx;
    let mut pager = Pager::starting_at(cursor.as_deref());
    let mut cursor = cursor;
    loop {
        pager.admit(client, "usage/list")?;
        let before = (progress.records.len(), progress.min_ms, progress.skipped);
        let page = client
            .list_usage(
                cursor.as_deref(),
                filter,
                calls,
                |item| match Record::from_wire(&item) {
                    Some(r) => {
                        progress.min_ms = Some(
                            progress
                                .min_ms
                                .map_or(r.created_ms, |m| m.min(r.created_ms)),
                        );
                        progress.records.push(r);
                    }
                    None => progress.skipped += 1,
                },
            )
            .await
            .inspect_err(|_| {
                // A page that fails part-way through decoding counts for nothing.
                progress.records.truncate(before.0);
                (progress.min_ms, progress.skipped) = (before.1, before.2);
            })?;
        let Some(next) = pager.next(page.items, page.cursor) else {
            return Ok(ScanEnd::Exhausted);
        };
        progress.next = Some(next.clone());
        if progress.min_ms.is_some_and(|m| m < watermark) {
            return Ok(ScanEnd::Stopped {
                min_ms: progress.min_ms.unwrap_or(watermark),
                resume: next,
            });
        }
        cursor = Some(next);
    }
}

impl ScanState {
    /// Reports whether `[from_ms, to_ms)` can be answered from the cache without a request.
    pub(crate) fn is_fresh_for(&self, from_ms: i64, to_ms: i64, t: Timing) -> bool {
        let Some(c) = &self.coverage else {
            return false;
        };
        if c.born.elapsed() >= t.closed_ttl {
            return false;
        }
        let bottom_ok = match &c.bottom {
            Bottom::Exhausted => true,
            Bottom::At { complete_from, .. } => from_ms >= *complete_from,
        };
        let top_ok =
            to_ms <= c.top_ms.saturating_sub(t.settle_ms()) || c.top_at.elapsed() < t.open_ttl;
        bottom_ok && top_ok
    }

    /// Reads whatever `[from_ms, to_ms)` needs that the cache lacks or holds too long; a
    /// `refresh` (`Cache-Control: no-cache`) rereads the range from the top whatever the cache
    /// holds (a failed reread of the top changes nothing).
    pub(crate) async fn ensure(
        &mut self,
        cx: ScanCtx<'_>,
        (from_ms, to_ms): (i64, i64),
        t: Timing,
        refresh: bool,
    ) -> Result<(), Error> {
        if self
            .coverage
            .as_ref()
            .is_some_and(|c| c.born.elapsed() >= t.closed_ttl)
        {
            *self = Self::default();
        }
        let Some(cov) = self.coverage.clone() else {
            return self.first_scan(cx, from_ms).await;
        };
        let open_from = cov.top_ms.saturating_sub(t.settle_ms());
        if refresh {
            // Down to the range's start, and at least the open part, which the reread makes fresh.
            self.refresh_top(cx, from_ms.min(open_from)).await?;
        } else if to_ms > open_from && cov.top_at.elapsed() >= t.open_ttl {
            self.refresh_top(cx, open_from).await?;
        }
        if let Some(Coverage {
            bottom:
                Bottom::At {
                    complete_from,
                    resume,
                },
            ..
        }) = self.coverage.clone()
            && from_ms < complete_from
        {
            self.extend(cx, resume, complete_from, from_ms).await?;
        }
        Ok(())
    }

    async fn first_scan(&mut self, cx: ScanCtx<'_>, from_ms: i64) -> Result<(), Error> {
        let top_at = Instant::now();
        let top_ms = Utc::now().timestamp_millis();
        let mut p = Progress::default();
        let result = scan(cx, None, from_ms, &mut p).await;
        let end = match &result {
            Ok(end) => Some(end.clone()),
            // Keep the pages read before a failure; the next call continues below them.
            Err(_) => p.end_here(),
        };
        if let Some(end) = end {
            self.records.clear();
            self.skipped = p.skipped;
            self.insert(p.records);
            self.coverage = Some(Coverage {
                born: top_at,
                top_ms,
                top_at,
                bottom: bottom_of(end, i64::MAX),
            });
        }
        result.map(|_| ())
    }

    async fn refresh_top(&mut self, cx: ScanCtx<'_>, open_from: i64) -> Result<(), Error> {
        let top_at = Instant::now();
        let top_ms = Utc::now().timestamp_millis();
        let mut p = Progress::default();
        // A failed refresh changes nothing: the open part would be half old, half new.
        let end = scan(cx, None, open_from, &mut p).await?;
        let Some(cov) = self.coverage.as_mut() else {
            return Ok(());
        };
        cov.top_ms = top_ms;
        cov.top_at = top_at;
        match end {
            ScanEnd::Exhausted => {
                // The pass read the whole list.
                self.records.clear();
                self.skipped = p.skipped;
                cov.bottom = Bottom::Exhausted;
            }
            ScanEnd::Stopped { min_ms, resume } => {
                let fresh_from = min_ms.saturating_add(1);
                self.records.retain(|r| r.created_ms < fresh_from);
                self.skipped = self.skipped.saturating_add(p.skipped);
                if let Bottom::At { complete_from, .. } = &cov.bottom
                    && fresh_from < *complete_from
                {
                    cov.bottom = Bottom::At {
                        complete_from: fresh_from,
                        resume,
                    };
                }
            }
        }
        self.insert(p.records);
        Ok(())
    }

    async fn extend(
        &mut self,
        cx: ScanCtx<'_>,
        resume: String,
        complete_from: i64,
        from_ms: i64,
    ) -> Result<(), Error> {
        let mut p = Progress::default();
        let result = scan(cx, Some(resume), from_ms, &mut p).await;
        let end = match &result {
            Ok(end) => Some(end.clone()),
            Err(e)
                if matches!(
                    e.kind,
                    ErrorKind::BadRequest { .. } | ErrorKind::NotFound { .. }
                ) =>
            {
                // The saved cursor is no longer accepted: start over next time.
                *self = Self::default();
                return result.map(|_| ());
            }
            Err(_) => p.end_here(),
        };
        if let (Some(end), Some(cov)) = (end, self.coverage.as_mut()) {
            cov.bottom = bottom_of(end, complete_from);
            self.skipped = self.skipped.saturating_add(p.skipped);
            self.insert(p.records);
        }
        result.map(|_| ())
    }

    /// Adds records (as read, newest first); a record whose `(created_ms, id)` is already cached
    /// replaces it.
    fn insert(&mut self, mut records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        // Cached records first, then the new ones, oldest first: two ascending runs, which the
        // stable sort merges in linear time and keeps in that order among equal keys.
        records.reverse();
        if self.records.is_empty() {
            // A first scan: no copy of what can be hundreds of thousands of records.
            self.records = records;
        } else {
            self.records.append(&mut records);
        }
        // A page order that is already ascending (the usual case) needs no sort at all, and no
        // sort buffer as large as the records.
        if !self.records.is_sorted_by(|a, b| a.key() <= b.key()) {
            self.records.sort_by(|a, b| a.key().cmp(&b.key()));
        }
        // Of each run of equal keys keep the last, the newest copy.
        let same = |a: &Record, b: &Record| a.key() == b.key();
        let mut kept = 0;
        for i in 0..self.records.len() {
            if i + 1 < self.records.len() && same(&self.records[i], &self.records[i + 1]) {
                continue;
            }
            self.records.swap(kept, i);
            kept += 1;
        }
        self.records.truncate(kept);
    }

    /// Returns the cached records with `from_ms <= createdAt < to_ms`, oldest first.
    pub(crate) fn records(&self, from_ms: i64, to_ms: i64) -> impl Iterator<Item = &Record> {
        let lo = self.records.partition_point(|r| r.created_ms < from_ms);
        let hi = self
            .records
            .partition_point(|r| r.created_ms < to_ms)
            .max(lo);
        self.records[lo..hi].iter()
    }

    /// Returns how many malformed records the scans behind this state skipped.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// The bottom after a pass that ended with `end`, never above `previous` (exclusive of ties at
/// the oldest millisecond read, which may continue on the next page).
fn bottom_of(end: ScanEnd, previous: i64) -> Bottom {
    match end {
        ScanEnd::Exhausted => Bottom::Exhausted,
        ScanEnd::Stopped { min_ms, resume } => Bottom::At {
            complete_from: min_ms.saturating_add(1).min(previous),
            resume,
        },
    }
}

struct Slot {
    state: Arc<tokio::sync::Mutex<ScanState>>,
    last_used: Instant,
}

/// Scan states by server-side filter.
#[derive(Default)]
pub(crate) struct ScanCache {
    slots: Mutex<HashMap<RecordFilter, Slot>>,
}

impl fmt::Debug for ScanCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.slots.lock().map(|s| s.len()).unwrap_or_default();
        f.debug_struct("ScanCache").field("filters", &n).finish()
    }
}

impl ScanCache {
    /// Returns the state of a filter, creating it (and dropping an idle old one) when needed.
    pub(crate) fn slot(&self, key: &RecordFilter) -> Arc<tokio::sync::Mutex<ScanState>> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if let Some(s) = slots.get_mut(key) {
            s.last_used = now;
            return Arc::clone(&s.state);
        }
        if slots.len() >= MAX_KEYS {
            let idle = slots
                .iter()
                .filter(|(_, s)| Arc::strong_count(&s.state) == 1)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = idle {
                slots.remove(&k);
            }
        }
        let state = Arc::new(tokio::sync::Mutex::new(ScanState::default()));
        slots.insert(
            key.clone(),
            Slot {
                state: Arc::clone(&state),
                last_used: now,
            },
        );
        state
    }

    /// Returns the state of a filter only if it exists.
    pub(crate) fn existing(
        &self,
        key: &RecordFilter,
    ) -> Option<Arc<tokio::sync::Mutex<ScanState>>> {
        let slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.get(key).map(|s| Arc::clone(&s.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Option<Record> {
        let w: UsageRecordWire<'_> = serde_json::from_str(json).unwrap();
        Record::from_wire(&w)
    }

    #[test]
    fn records_need_time_and_count() {
        assert!(record(r#"{"count":3}"#).is_none());
        assert!(record(r#"{"createdAt":5}"#).is_none());
        assert!(record(r#"{"createdAt":5,"count":-1}"#).is_none());
        let r = record(r#"{"createdAt":5,"count":3,"type":"BASE","botId":""}"#).unwrap();
        assert_eq!(r.bot_id(), None, "an empty botId is no bot");
        assert_eq!(r.id(), "~BASE|3|||");
        let r = record(r#"{"id":"r1","createdAt":5,"count":3,"contactId":"c"}"#).unwrap();
        assert_eq!((r.id(), r.contact_id()), ("r1", Some("c")));
        // An empty type is a type; an empty id, contact or conversation is none.
        let r = record(
            r#"{"id":"","createdAt":5,"count":3,"type":"","botId":"b","contactId":"","conversationId":""}"#,
        )
        .unwrap();
        assert_eq!(
            (r.usage_type(), r.contact_id(), r.conversation_id()),
            (Some(""), None, None)
        );
        assert_eq!(
            r.id(),
            "~|3|b||",
            "the stand-in id for a record without one"
        );
        let r = record(
            r#"{"createdAt":5,"count":3,"type":"T","botId":"b","contactId":"c","conversationId":"v"}"#,
        )
        .unwrap();
        assert_eq!(r.id(), "~T|3|b|c|v");
    }

    /// A record's id and labels: type, bot, contact, conversation.
    type Strings<'r> = (
        &'r str,
        Option<&'r str>,
        Option<&'r str>,
        Option<&'r str>,
        Option<&'r str>,
    );

    fn strings(r: &Record) -> Strings<'_> {
        (
            r.id(),
            r.usage_type(),
            r.bot_id(),
            r.contact_id(),
            r.conversation_id(),
        )
    }

    #[test]
    fn records_keep_each_string_apart() {
        let r = record(
            r#"{"id":"rid","createdAt":1,"count":2,"type":"BASE","botId":"bot","contactId":"ct","conversationId":"conv"}"#,
        )
        .unwrap();
        assert_eq!(
            strings(&r),
            ("rid", Some("BASE"), Some("bot"), Some("ct"), Some("conv"))
        );
        // Multi-byte text is cut only between whole strings.
        let r = record(
            r#"{"id":"é","createdAt":1,"count":2,"type":"日本","botId":"ü","conversationId":"\u00e9x"}"#,
        )
        .unwrap();
        assert_eq!(
            strings(&r),
            ("é", Some("日本"), Some("ü"), None, Some("éx"))
        );
        assert_eq!((r.created_ms, r.count), (1, 2));
        // Every combination of present and absent labels, with an empty type (kept: only
        // empty ids, bots, contacts and conversations count as absent).
        for mask in 0u8..16 {
            let pick = |i: u8, v: &'static str| (mask & (1 << i) != 0).then_some(v);
            let labels = [pick(0, ""), pick(1, "b"), pick(2, "cc"), pick(3, "ddd")];
            let r = Record::new(7, 1, "x", labels).unwrap();
            let [kind, bot, contact, conversation] = labels;
            assert_eq!(
                strings(&r),
                ("x", kind, bot, contact, conversation),
                "mask {mask:04b}"
            );
        }
        // Equal content, equal records; a label moved to another field is another record.
        let a = Record::new(1, 1, "i", [None, Some("x"), None, None]).unwrap();
        let b = Record::new(1, 1, "i", [None, None, Some("x"), None]).unwrap();
        assert_eq!(a, a.clone());
        assert_ne!(a, b);
        assert_eq!(
            format!("{a:?}"),
            "Record { created_ms: 1, id: \"i\", usage_type: None, count: 1, bot_id: \
             Some(\"x\"), contact_id: None, conversation_id: None, .. }"
        );
    }

    #[test]
    fn freshness_rules() {
        let t = Timing {
            open_ttl: Duration::from_secs(60),
            closed_ttl: Duration::from_secs(3600),
            settle: Duration::from_secs(300),
        };
        let mut s = ScanState::default();
        assert!(!s.is_fresh_for(0, 1, t));
        let now = Instant::now();
        s.coverage = Some(Coverage {
            born: now,
            top_ms: 1_000_000,
            top_at: now,
            bottom: Bottom::At {
                complete_from: 500_000,
                resume: "c".into(),
            },
        });
        assert!(s.is_fresh_for(500_000, 2_000_000, t));
        assert!(!s.is_fresh_for(499_999, 600_000, t), "below the bottom");
        // An old top scan still answers closed spans, not open ones.
        let old = now.checked_sub(Duration::from_secs(120)).unwrap();
        if let Some(c) = s.coverage.as_mut() {
            c.top_at = old;
        }
        assert!(s.is_fresh_for(500_000, 700_000, t));
        assert!(!s.is_fresh_for(500_000, 700_001, t));
        if let Some(c) = s.coverage.as_mut() {
            c.born = now.checked_sub(Duration::from_secs(4000)).unwrap();
            c.bottom = Bottom::Exhausted;
        }
        assert!(!s.is_fresh_for(0, 1, t), "closed_ttl expired");
    }

    #[test]
    fn bottom_never_rises() {
        assert_eq!(
            bottom_of(
                ScanEnd::Stopped {
                    min_ms: 10,
                    resume: "x".into()
                },
                5
            ),
            Bottom::At {
                complete_from: 5,
                resume: "x".into()
            }
        );
        assert_eq!(
            bottom_of(
                ScanEnd::Stopped {
                    min_ms: 10,
                    resume: "x".into()
                },
                i64::MAX
            ),
            Bottom::At {
                complete_from: 11,
                resume: "x".into()
            }
        );
        assert_eq!(bottom_of(ScanEnd::Exhausted, 5), Bottom::Exhausted);
    }

    #[test]
    fn range_reads_half_open() {
        let mut s = ScanState::default();
        let rec = |ms, id: &str| Record::new(ms, 1, id, [None; 4]).unwrap();
        s.insert(vec![
            rec(9, "a"),
            rec(10, "b"),
            rec(19, "c"),
            rec(20, "d"),
            rec(10, "b"),
        ]);
        let ids: Vec<&str> = s.records(10, 20).map(Record::id).collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn a_newer_copy_replaces_the_cached_record() {
        let mut s = ScanState::default();
        let rec = |ms, id: &str, count| Record::new(ms, count, id, [None; 4]).unwrap();
        // As read: newest first.
        s.insert(vec![rec(30, "c", 1), rec(20, "b", 1), rec(10, "a", 1)]);
        s.insert(vec![
            rec(40, "d", 4),
            rec(20, "b", 7),
            rec(20, "a", 2),
            rec(5, "z", 1),
        ]);
        let got: Vec<(i64, &str, u64)> = s
            .records(0, 100)
            .map(|r| (r.created_ms, r.id(), r.count))
            .collect();
        assert_eq!(
            got,
            [
                (5, "z", 1),
                (10, "a", 1),
                (20, "a", 2),
                (20, "b", 7),
                (30, "c", 1),
                (40, "d", 4)
            ]
        );
    }
}
