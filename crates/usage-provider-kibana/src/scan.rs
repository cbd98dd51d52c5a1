//! The per-agent scan cache: which conversations a walk down the `updated_at desc` list found,
//! how far back it reached, and when each part goes stale.
//!
//! Kibana has no time filter, so answering a range means paging from the newest conversation
//! back to the range start. A scan is kept so that later queries inside the covered range send
//! nothing. Conversations updated within `settle` of the scan are *open*: they may still grow
//! (and move to a later `updated_at`), so queries touching them re-walk the top of the list after
//! `open_ttl`. The rest is *closed* and serves for `closed_ttl`. A re-walk of the top merges into
//! the kept scan by conversation id, so a conversation that moved is counted once, at its new
//! `updated_at`.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use usage_core::Counters;

/// A conversation as the scan keeps it: lifetime totals placed at `updated_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conversation {
    /// The conversation id, when Kibana gave one.
    pub id: Option<String>,
    /// The owner's username, when Kibana gave one.
    pub username: Option<String>,
    /// The last update: where the lifetime totals are counted.
    pub updated_at: DateTime<Utc>,
    /// Lifetime input/output tokens (other is what `total_tokens` has beyond them).
    pub counters: Counters,
    /// How many `high_input_tokens` warnings the conversation carries.
    pub warnings: u64,
    /// Rounds so far, when Kibana gave them.
    pub rounds: Option<u64>,
    /// LLM calls so far, when Kibana gave them.
    pub llm_calls: Option<u64>,
}

/// Conversations, at most one per id (the most recently updated copy wins).
///
/// A table keyed by each conversation's own id: one hash per insert and no copy of the id.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConversationSet {
    by_id: hashbrown::HashTable<Conversation>,
    hasher: foldhash::fast::RandomState,
    anonymous: Vec<Conversation>,
}

/// The hash of a held conversation's id, as [`ConversationSet::insert`] computed it (only
/// conversations with an id are in the table).
fn rehash(hasher: &foldhash::fast::RandomState, c: &Conversation) -> u64 {
    hasher.hash_one(c.id.as_deref().unwrap_or_default())
}

impl ConversationSet {
    /// Adds a conversation, keeping the later copy when the id is already known.
    pub(crate) fn insert(&mut self, c: Conversation) {
        let Some(id) = c.id.as_deref() else {
            self.anonymous.push(c);
            return;
        };
        let hash = self.hasher.hash_one(id);
        match self.by_id.find_mut(hash, |o| o.id.as_deref() == Some(id)) {
            Some(old) if old.updated_at >= c.updated_at => {}
            Some(old) => *old = c,
            None => {
                let hasher = &self.hasher;
                self.by_id.insert_unique(hash, c, |o| rehash(hasher, o));
            }
        }
    }

    /// Makes room for `n` more conversations.
    fn reserve(&mut self, n: usize) {
        let hasher = &self.hasher;
        self.by_id.reserve(n, |o| rehash(hasher, o));
    }

    /// Keeps only the conversations `keep` accepts.
    fn retain(&mut self, mut keep: impl FnMut(&Conversation) -> bool) {
        self.by_id.retain(|c| keep(c));
        self.anonymous.retain(|c| keep(c));
    }

    /// Iterates over every conversation, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Conversation> {
        self.by_id.iter().chain(&self.anonymous)
    }

    /// Returns how many conversations are held.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len() + self.anonymous.len()
    }
}

/// How far back a walk got.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reach {
    /// To the oldest conversation: the walk saw the whole list.
    Everything,
    /// Every conversation updated after `oldest` was seen; `cursor` continues further back.
    Until {
        /// The oldest `updated_at` on the last page fetched.
        oldest: DateTime<Utc>,
        /// That page's `search_after`.
        cursor: Vec<Value>,
    },
}

impl Reach {
    fn oldest(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Everything => None,
            Self::Until { oldest, .. } => Some(*oldest),
        }
    }

    /// Reports whether `self` reaches strictly further back than `other`.
    fn deeper_than(&self, other: &Self) -> bool {
        match (self.oldest(), other.oldest()) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => a < b,
            (_, None) => false,
        }
    }
}

/// What one walk down the list (one or more pages) found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Walk {
    /// The conversations of every page.
    pub conversations: Vec<Conversation>,
    /// How far back the walk got; `None` until a page with a placeable conversation arrived.
    pub reach: Option<Reach>,
}

/// The TTLs that govern a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ttls {
    /// Lifetime of open data.
    pub open: Duration,
    /// Lifetime of closed data.
    pub closed: Duration,
    /// How long after its update a conversation is open.
    pub settle: Duration,
}

impl Ttls {
    fn settle(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settle).unwrap_or(chrono::Duration::MAX)
    }
}

/// What must be fetched before a scan can answer a range.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Nothing: the scan answers.
    Serve,
    /// Walk from the newest conversation until one older than `stop_before` shows up.
    FromTop {
        /// The walk's stop line.
        stop_before: DateTime<Utc>,
    },
    /// Continue the walk from `cursor` until one older than `stop_before` shows up.
    Extend {
        /// Where the kept scan stopped.
        cursor: Vec<Value>,
        /// The walk's stop line.
        stop_before: DateTime<Utc>,
    },
}

/// One agent's cached scan.
#[derive(Debug, Clone)]
pub(crate) struct ScanState {
    conversations: ConversationSet,
    reach: Reach,
    /// Wall-clock start of the walk that fetched the top of the list.
    top_at: DateTime<Utc>,
    /// Monotonic start of that walk (open TTL).
    top_fetched: Instant,
    /// Monotonic start of the oldest walk whose data is still held (closed TTL).
    since: Instant,
}

impl ScanState {
    /// Creates a scan from a walk from the top that started at `at` / `started`. A walk that
    /// claims no reach (no page with a placeable conversation) covers nothing.
    pub(crate) fn from_walk(walk: Walk, at: DateTime<Utc>, started: Instant) -> Self {
        let mut conversations = ConversationSet::default();
        conversations.reserve(walk.conversations.len());
        for c in walk.conversations {
            conversations.insert(c);
        }
        Self {
            conversations,
            reach: walk.reach.unwrap_or(Reach::Until {
                oldest: DateTime::<Utc>::MAX_UTC,
                cursor: Vec::new(),
            }),
            top_at: at,
            top_fetched: started,
            since: started,
        }
    }

    /// Returns the conversations held.
    pub(crate) fn conversations(&self) -> &ConversationSet {
        &self.conversations
    }

    /// Reports whether the closed data is too old to serve at all.
    pub(crate) fn expired(&self, now: Instant, ttl: &Ttls) -> bool {
        now.saturating_duration_since(self.since) >= ttl.closed
    }

    /// Decides what to fetch before answering `[start, end)`; `None` means drop the scan and
    /// walk from the top.
    pub(crate) fn next_step(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        now: Instant,
        ttl: &Ttls,
    ) -> Option<Step> {
        if self.expired(now, ttl) {
            return None;
        }
        let open_line = self.top_at - ttl.settle();
        let top_stale =
            end > open_line && now.saturating_duration_since(self.top_fetched) >= ttl.open;
        if top_stale {
            // Re-walk at least the open part (and what the scan holds of it), so that the merge
            // replaces every conversation that may have moved.
            let floor = self.reach.oldest().map_or(open_line, |o| o.max(open_line));
            return Some(Step::FromTop { stop_before: floor });
        }
        Some(self.coverage_step(start).unwrap_or(Step::Serve))
    }

    /// Returns the walk further back the scan needs to hold everything updated since `start`,
    /// or `None` when it holds it already.
    pub(crate) fn coverage_step(&self, start: DateTime<Utc>) -> Option<Step> {
        match &self.reach {
            Reach::Until { oldest, cursor } if *oldest >= start => Some(Step::Extend {
                cursor: cursor.clone(),
                stop_before: start,
            }),
            _ => None,
        }
    }

    /// Merges a fresh walk from the top: it replaces everything newer than where it stopped,
    /// and every conversation it saw again.
    pub(crate) fn merge_top(&mut self, walk: Walk, at: DateTime<Utc>, started: Instant) {
        let Some(Reach::Until { oldest, .. }) = &walk.reach else {
            *self = Self::from_walk(walk, at, started);
            return;
        };
        let oldest = *oldest;
        let reach = walk.reach.clone().unwrap_or(Reach::Everything);
        let seen: HashSet<&str> = walk
            .conversations
            .iter()
            .filter_map(|c| c.id.as_deref())
            .collect();
        self.conversations.retain(|c| {
            c.updated_at <= oldest && c.id.as_deref().is_none_or(|id| !seen.contains(id))
        });
        let keeps_old = self.conversations.len() > 0 || self.reach.deeper_than(&reach);
        for c in walk.conversations {
            self.conversations.insert(c);
        }
        if !self.reach.deeper_than(&reach) {
            self.reach = reach;
        }
        if !keeps_old {
            self.since = started;
        }
        self.top_at = at;
        self.top_fetched = started;
    }

    /// Adds a walk (possibly cut short) that continued from the scan's cursor.
    pub(crate) fn extend(&mut self, walk: Walk) {
        for c in walk.conversations {
            self.conversations.insert(c);
        }
        if let Some(reach) = walk.reach
            && reach.deeper_than(&self.reach)
        {
            self.reach = reach;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn conv(id: &str, min: i64, input: u64) -> Conversation {
        Conversation {
            id: Some(id.into()),
            username: Some("u".into()),
            updated_at: t(min),
            counters: Counters {
                input,
                output: 0,
                other: 0,
            },
            rounds: None,
            llm_calls: None,
            warnings: 0,
        }
    }

    fn until(min: i64) -> Reach {
        Reach::Until {
            oldest: t(min),
            cursor: vec![Value::from(min)],
        }
    }

    const TTL: Ttls = Ttls {
        open: Duration::from_secs(60),
        closed: Duration::from_secs(3600),
        settle: Duration::from_secs(600),
    };

    fn total(s: &ScanState) -> u64 {
        s.conversations().iter().map(|c| c.counters.input).sum()
    }

    #[test]
    fn covered_ranges_are_served_and_deeper_ones_extended() {
        let now = Instant::now();
        let s = ScanState::from_walk(
            Walk {
                conversations: vec![conv("a", 0, 1), conv("b", -100, 2)],
                reach: Some(until(-100)),
            },
            t(0),
            now,
        );
        assert_eq!(s.next_step(t(-50), t(1), now, &TTL), Some(Step::Serve));
        assert_eq!(
            s.next_step(t(-100), t(-50), now, &TTL),
            Some(Step::Extend {
                cursor: vec![Value::from(-100)],
                stop_before: t(-100)
            }),
            "ties at the stop line may continue on the next page"
        );
        // The top is stale for open ranges only, and only after the open TTL.
        let later = now + Duration::from_secs(61);
        assert_eq!(
            s.next_step(t(-50), t(1), later, &TTL),
            Some(Step::FromTop {
                stop_before: t(-10)
            })
        );
        assert_eq!(s.next_step(t(-50), t(-10), later, &TTL), Some(Step::Serve));
        assert_eq!(
            s.next_step(t(-50), t(-10), now + Duration::from_secs(3600), &TTL),
            None
        );
    }

    #[test]
    fn a_refresh_walks_at_least_to_what_the_scan_holds_of_the_open_part() {
        let now = Instant::now();
        let s = ScanState::from_walk(
            Walk {
                conversations: vec![conv("a", 0, 1)],
                reach: Some(until(-3)),
            },
            t(0),
            now,
        );
        assert_eq!(
            s.next_step(t(-2), t(1), now + Duration::from_secs(61), &TTL),
            Some(Step::FromTop { stop_before: t(-3) })
        );
    }

    #[test]
    fn merging_a_refresh_counts_moved_conversations_once() {
        let now = Instant::now();
        let mut s = ScanState::from_walk(
            Walk {
                conversations: vec![conv("a", -5, 10), conv("b", -20, 20), conv("c", -300, 30)],
                reach: Some(until(-300)),
            },
            t(0),
            now,
        );
        // "b" continued (moved to +2 and grew), "a" was deleted, "d" is new.
        let later = now + Duration::from_secs(120);
        s.merge_top(
            Walk {
                conversations: vec![conv("b", 2, 25), conv("d", 1, 5), conv("e", -30, 7)],
                reach: Some(until(-30)),
            },
            t(2),
            later,
        );
        let mut ids: Vec<_> = s
            .conversations()
            .iter()
            .map(|c| c.id.clone().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, ["b", "c", "d", "e"]);
        assert_eq!(total(&s), 25 + 30 + 5 + 7);
        assert_eq!(s.reach, until(-300), "the deeper old reach is kept");
        assert!(
            s.expired(now + Duration::from_secs(3600), &TTL),
            "old closed data keeps its age"
        );
        assert_eq!(s.next_step(t(-200), t(3), later, &TTL), Some(Step::Serve));
    }

    #[test]
    fn a_refresh_that_sees_everything_replaces_the_scan() {
        let now = Instant::now();
        let mut s = ScanState::from_walk(
            Walk {
                conversations: vec![conv("a", -5, 10), conv("z", -500, 1)],
                reach: Some(until(-500)),
            },
            t(0),
            now,
        );
        let later = now + Duration::from_secs(120);
        s.merge_top(
            Walk {
                conversations: vec![conv("a", 1, 11)],
                reach: Some(Reach::Everything),
            },
            t(1),
            later,
        );
        assert_eq!(total(&s), 11);
        assert_eq!(s.reach, Reach::Everything);
        assert!(
            !s.expired(now + Duration::from_secs(3600), &TTL),
            "all data is new"
        );
    }

    #[test]
    fn a_refresh_that_reaches_past_the_old_scan_restarts_the_closed_clock() {
        let now = Instant::now();
        let mut s = ScanState::from_walk(
            Walk {
                conversations: vec![conv("a", -2, 10)],
                reach: Some(until(-2)),
            },
            t(0),
            now,
        );
        let later = now + Duration::from_secs(120);
        s.merge_top(
            Walk {
                conversations: vec![conv("a", -2, 10), conv("b", -15, 1)],
                reach: Some(until(-15)),
            },
            t(2),
            later,
        );
        assert_eq!(s.conversations().len(), 2);
        assert_eq!(s.reach, until(-15));
        assert!(!s.expired(now + Duration::from_secs(3600), &TTL));
    }

    #[test]
    fn extending_keeps_the_later_copy_of_a_conversation() {
        let now = Instant::now();
        let mut s = ScanState::from_walk(
            Walk {
                conversations: vec![conv("a", -1, 10)],
                reach: Some(until(-1)),
            },
            t(0),
            now,
        );
        s.extend(Walk {
            conversations: vec![conv("a", -50, 3), conv("b", -60, 4)],
            reach: Some(Reach::Everything),
        });
        assert_eq!(total(&s), 14);
        assert_eq!(s.reach, Reach::Everything);
        assert_eq!(s.next_step(t(-10_000), t(-5), now, &TTL), Some(Step::Serve));
        let mut set = ConversationSet::default();
        set.insert(Conversation {
            id: None,
            ..conv("x", 0, 1)
        });
        set.insert(Conversation {
            id: None,
            ..conv("x", 0, 1)
        });
        assert_eq!(set.len(), 2, "conversations without an id are never merged");
    }

    #[test]
    fn a_growing_set_still_finds_every_id() {
        // Inserted one by one (the table grows and rehashes many times), then each id again:
        // newer copies replace, older ones are ignored, nothing is added.
        let mut set = ConversationSet::default();
        for i in 0..5000 {
            set.insert(conv(&format!("c{i}"), -10, 1));
        }
        for i in 0..5000 {
            let (minutes, input) = if i % 2 == 0 { (-5, 2) } else { (-20, 7) };
            set.insert(conv(&format!("c{i}"), minutes, input));
        }
        set.retain(|c| c.id.as_deref() != Some("c0"));
        set.insert(conv("c0", -30, 5));
        assert_eq!(set.len(), 5000);
        let sum: u64 = set.iter().map(|c| c.counters.input).sum();
        assert_eq!(sum, 2499 * 2 + 2500 + 5);
    }
}
