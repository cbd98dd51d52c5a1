//! Totals against `usage-sim`'s ground truth, in both modes, plus the conformance suite and the
//! simulator's faults.
// Helpers outside `#[test]` functions panic on purpose when a test's setup is wrong.
#![allow(clippy::unwrap_used)]
// Short names (s = simulator, p = provider, q = query, b = batch) keep the assertions readable.
#![allow(clippy::many_single_char_names)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use usage_core::test_util::conformance;
use usage_core::{
    Dimension, ProviderError, UNATTRIBUTED_AGENT, Unit, UsageBatch, UsageProvider, UsageQuery,
    Window,
};
use usage_provider_chatbotkit::{ChatbotkitProvider, Config, RecordTypes};
use usage_sim::{BASE_TYPE, CursorEnd, DataSpec, Dataset, SimHandle, TakeLimit, TruthFilter};

struct Sim {
    data: Arc<Dataset>,
    handle: SimHandle,
    now: DateTime<Utc>,
}

async fn sim() -> Sim {
    let now = Utc::now().duration_trunc(Duration::minutes(1)).unwrap();
    let data = Arc::new(Dataset::generate(&DataSpec::small(now)));
    let handle = usage_sim::start_chatbotkit(data.clone(), None)
        .await
        .unwrap();
    Sim { data, handle, now }
}

fn provider(s: &Sim, f: impl FnOnce(&mut Config)) -> ChatbotkitProvider {
    let mut c = Config::new(usage_sim::CBK_TOKEN);
    c.base_url = s.handle.base_url.parse().unwrap();
    f(&mut c);
    ChatbotkitProvider::new("cbk-sim", c, reqwest::Client::new()).unwrap()
}

fn dims(d: &[Dimension]) -> BTreeSet<Dimension> {
    d.iter().copied().collect()
}

fn one(s: &str) -> BTreeSet<String> {
    BTreeSet::from([s.to_owned()])
}

/// `TruthFilter` counting what the provider counts by default: `BASE` records.
fn base(mut f: TruthFilter) -> TruthFilter {
    f.usage_type = Some(BASE_TYPE.to_owned());
    f
}

fn per_window(b: &UsageBatch) -> BTreeMap<Window, u64> {
    let mut out = BTreeMap::new();
    for p in &b.points {
        assert_eq!(p.unit, Unit::Credits);
        assert_eq!((p.counters.input, p.counters.output), (0, 0));
        *out.entry(p.window).or_default() += p.counters.other;
    }
    out
}

fn windows(start: DateTime<Utc>, step: Duration, n: i64) -> Vec<Window> {
    (0..n)
        .map(|i| {
            Window::new(
                start + step * i32::try_from(i).unwrap(),
                start + step * i32::try_from(i + 1).unwrap(),
            )
        })
        .collect()
}

/// Asserts that every window's total equals the truth under `f`.
fn assert_truth(s: &Sim, b: &UsageBatch, ws: &[Window], f: &TruthFilter, what: &str) {
    let got = per_window(b);
    let mut nonzero = 0;
    for w in ws {
        let want = s.data.chatbotkit.truth(f, *w);
        nonzero += u64::from(want > 0);
        assert_eq!(
            got.get(w).copied().unwrap_or(0),
            want,
            "{what}: window {w:?}"
        );
    }
    assert!(
        got.keys().all(|w| ws.contains(w)),
        "{what}: points outside the windows"
    );
    assert!(nonzero > 0, "{what}: the test needs usage in some window");
}

#[tokio::test]
async fn both_modes_equal_the_ground_truth_per_bot_and_window() {
    let s = sim().await;
    let start = s.now - Duration::days(30);
    let layouts = [
        windows(start, Duration::days(1), 29),
        windows(start, Duration::weeks(1), 4),
        vec![Window::new(start, s.now - Duration::days(1))],
    ];
    for ws in &layouts {
        for bot in s.data.chatbotkit.bots() {
            let truth = base(TruthFilter::agent(&bot.id));
            // Range mode: a fresh provider, so no cached scan can answer for it.
            let range = provider(&s, |_| {});
            let calls_before = s.handle.calls("cbk.bot_usage");
            let mut q = UsageQuery::new(ws.clone(), dims(&[Dimension::Agent]));
            q.agents = Some(one(&bot.id));
            let b = range.usage(&q).await.unwrap();
            assert_eq!(
                s.handle.calls("cbk.bot_usage") - calls_before,
                ws.len() as u64
            );
            assert_truth(&s, &b, ws, &truth, "range mode");
            assert!(
                b.points
                    .iter()
                    .all(|p| p.agent_name.as_deref() == Some(bot.name.as_str()))
            );
            // Record mode (a record-level dimension forces it).
            let records = provider(&s, |_| {});
            let list_before = s.handle.calls("cbk.usage_list");
            let mut q = UsageQuery::new(
                ws.clone(),
                dims(&[Dimension::Agent, Dimension::Conversation]),
            );
            q.agents = Some(one(&bot.id));
            let b = records.usage(&q).await.unwrap();
            assert!(s.handle.calls("cbk.usage_list") > list_before);
            assert_truth(&s, &b, ws, &truth, "record mode");
            assert!(
                b.points
                    .iter()
                    .all(|p| p.key.agent.as_deref() == Some(bot.id.as_str()))
            );
        }
    }
}

#[tokio::test]
async fn unfiltered_queries_count_unattributed_records_and_every_dimension_adds_up() {
    let s = sim().await;
    let p = provider(&s, |_| {});
    let ws = windows(s.now - Duration::days(20), Duration::days(1), 19);
    let q = UsageQuery::new(ws.clone(), dims(&[Dimension::Agent]));
    let b = p.usage(&q).await.unwrap();
    assert_truth(&s, &b, &ws, &base(TruthFilter::default()), "all agents");
    // Per agent, the unattributed one included.
    let mut agents: Vec<String> = s
        .data
        .chatbotkit
        .bots()
        .iter()
        .map(|b| b.id.clone())
        .collect();
    agents.push(UNATTRIBUTED_AGENT.to_owned());
    for a in &agents {
        let mut only = b.clone();
        only.points.retain(|p| p.key.agent.as_ref() == Some(a));
        assert_truth(&s, &only, &ws, &base(TruthFilter::agent(a)), a);
    }
    let unattributed: u64 = ws
        .iter()
        .map(|w| {
            s.data
                .chatbotkit
                .truth(&base(TruthFilter::agent(UNATTRIBUTED_AGENT)), *w)
        })
        .sum();
    assert!(unattributed > 0, "the simulator has records without a bot");
    // The same span again with every dimension: from the cache, same totals.
    let before = s.handle.total_calls();
    let all = dims(&[
        Dimension::Agent,
        Dimension::User,
        Dimension::Conversation,
        Dimension::UsageType,
    ]);
    let b2 = p.usage(&UsageQuery::new(ws.clone(), all)).await.unwrap();
    assert_eq!(
        s.handle.total_calls(),
        before,
        "a covered range costs no request"
    );
    assert_eq!(per_window(&b2), per_window(&b));
    assert!(
        b2.points
            .iter()
            .all(|p| p.key.usage_type.as_deref() == Some(BASE_TYPE))
    );
    // Per contact and per conversation.
    let mut by_user: BTreeMap<Option<String>, u64> = BTreeMap::new();
    let mut by_conv: BTreeMap<Option<String>, u64> = BTreeMap::new();
    for p in &b2.points {
        *by_user.entry(p.key.user.clone()).or_default() += p.counters.other;
        *by_conv.entry(p.key.conversation.clone()).or_default() += p.counters.other;
    }
    let whole = Window::new(ws[0].start, ws[ws.len() - 1].end);
    for (user, got) in by_user.iter().filter(|(u, _)| u.is_some()) {
        let f = base(TruthFilter {
            user: user.clone(),
            ..TruthFilter::default()
        });
        assert_eq!(*got, s.data.chatbotkit.truth(&f, whole), "user {user:?}");
    }
    for (conv, got) in by_conv.iter().filter(|(c, _)| c.is_some()).take(20) {
        let f = base(TruthFilter {
            conversation: conv.clone(),
            ..TruthFilter::default()
        });
        assert_eq!(
            *got,
            s.data.chatbotkit.truth(&f, whole),
            "conversation {conv:?}"
        );
    }
    // A user filter (one contact) is sent upstream and gives that contact's truth.
    let (user, _) = by_user.iter().find(|(u, _)| u.is_some()).unwrap();
    let user = user.clone().unwrap();
    let mut q = UsageQuery::new(ws.clone(), dims(&[Dimension::Agent]));
    q.users = Some(one(&user));
    let b3 = p.usage(&q).await.unwrap();
    assert_truth(
        &s,
        &b3,
        &ws,
        &base(TruthFilter {
            user: Some(user.clone()),
            ..TruthFilter::default()
        }),
        "user filter",
    );
}

#[tokio::test]
async fn record_types_all_equals_the_truth_of_every_type() {
    let s = sim().await;
    let p = provider(&s, |c| c.record_types = RecordTypes::All);
    let ws = windows(s.now - Duration::days(40), Duration::weeks(1), 5);
    let b = p
        .usage(&UsageQuery::new(ws.clone(), dims(&[Dimension::UsageType])))
        .await
        .unwrap();
    assert_truth(&s, &b, &ws, &TruthFilter::default(), "all types");
    assert!(
        b.points
            .iter()
            .any(|p| p.key.usage_type.as_deref() == Some(usage_sim::EMBEDDING_TYPE))
    );
    let bot = &s.data.chatbotkit.bots()[0].id;
    let mut q = UsageQuery::new(ws.clone(), BTreeSet::new());
    q.agents = Some(one(bot));
    let b = p.usage(&q).await.unwrap();
    assert_eq!(s.handle.calls("cbk.bot_usage"), 0, "never range mode");
    assert_truth(&s, &b, &ws, &TruthFilter::agent(bot), "all types, one bot");
}

#[tokio::test]
async fn records_on_a_window_edge_fall_in_the_later_window_in_both_modes() {
    let s = sim().await;
    let records = s.data.chatbotkit.records();
    let r = records
        .iter()
        .rev()
        .find(|r| {
            r.bot_id.is_some()
                && r.usage_type == BASE_TYPE
                && r.created_at < (s.now - Duration::days(2)).timestamp_millis()
        })
        .unwrap();
    let bot = r.bot_id.clone().unwrap();
    let edge = DateTime::from_timestamp_millis(r.created_at).unwrap();
    let ws = vec![
        Window::new(edge - Duration::hours(6), edge),
        Window::new(edge, edge + Duration::hours(6)),
    ];
    for record_mode in [false, true] {
        let p = provider(&s, |_| {});
        let mut q = UsageQuery::new(
            ws.clone(),
            if record_mode {
                dims(&[Dimension::User])
            } else {
                BTreeSet::new()
            },
        );
        q.agents = Some(one(&bot));
        let b = p.usage(&q).await.unwrap();
        let got = per_window(&b);
        for w in &ws {
            let want = s.data.chatbotkit.truth(&base(TruthFilter::agent(&bot)), *w);
            assert_eq!(
                got.get(w).copied().unwrap_or(0),
                want,
                "record mode {record_mode}, {w:?}"
            );
        }
        assert!(got.get(&ws[1]).copied().unwrap_or(0) >= r.count);
    }
}

#[tokio::test]
async fn conformance_suite() {
    let s = sim().await;
    let p = provider(&s, |_| {});
    conformance(
        &p,
        Window::new(s.now - Duration::days(20), s.now - Duration::days(1)),
    )
    .await;
    let fixed = provider(&s, |c| {
        c.agents = Some(
            s.data
                .chatbotkit
                .bots()
                .iter()
                .map(|b| b.id.clone())
                .collect(),
        );
    });
    conformance(
        &fixed,
        Window::new(s.now - Duration::days(20), s.now - Duration::days(1)),
    )
    .await;
}

fn base_records(s: &Sim) -> u64 {
    s.data
        .chatbotkit
        .records()
        .iter()
        .filter(|r| r.usage_type == BASE_TYPE)
        .count() as u64
}

/// Scans every record under each cursor-end mode with `page_size`, when the server serves
/// `served` items per page: the totals equal the truth, in at most two pages more than needed.
/// Discovery pages the same way and names every bot.
async fn scan_under_every_cursor_end(s: &Sim, page_size: u32, served: u64) {
    let ws = vec![Window::new(
        s.now - Duration::days(100),
        s.now - Duration::hours(1),
    )];
    for end in [
        CursorEnd::Absent,
        CursorEnd::Empty,
        CursorEnd::Repeat,
        CursorEnd::LastItem,
    ] {
        s.handle.faults().set_cursor_end(end);
        let p = provider(s, |c| c.page_size = page_size);
        let before = s.handle.calls("cbk.usage_list");
        let b = p
            .usage(&UsageQuery::new(ws.clone(), dims(&[Dimension::User])))
            .await
            .unwrap();
        let what = format!("{end:?} page_size {page_size}");
        assert_truth(s, &b, &ws, &base(TruthFilter::default()), &what);
        let pages = s.handle.calls("cbk.usage_list") - before;
        assert!(
            pages <= base_records(s) / served + 2,
            "{what}: {pages} pages"
        );
        let agents = p.agents().await.unwrap();
        assert_eq!(agents.len(), s.data.chatbotkit.bots().len(), "{what}");
    }
}

#[tokio::test]
async fn every_cursor_end_ends_the_scan_with_the_same_totals() {
    let s = sim().await;
    for take in [100, 7] {
        scan_under_every_cursor_end(&s, take, u64::from(take)).await;
    }
}

#[tokio::test]
async fn a_server_serving_fewer_items_than_asked_loses_nothing() {
    let s = sim().await;
    // Pages small enough that a provider stopping at the first short page would miss most
    // records, and the bot list takes more than one page too.
    let served = (s.data.chatbotkit.bots().len() - 1).min(10);
    assert!(served > 1, "the data needs more than two bots");
    s.handle.faults().set_take_limit(TakeLimit {
        max: served,
        reject: false,
    });
    scan_under_every_cursor_end(&s, 25, served as u64).await;
}

#[tokio::test]
async fn a_refused_page_size_falls_back_to_100_once() {
    let s = sim().await;
    s.handle.faults().set_take_limit(TakeLimit {
        max: 100,
        reject: true,
    });
    let ws = vec![Window::new(
        s.now - Duration::days(100),
        s.now - Duration::hours(1),
    )];
    let p = provider(&s, |c| c.page_size = 500);
    let b = p
        .usage(&UsageQuery::new(ws.clone(), dims(&[Dimension::User])))
        .await
        .unwrap();
    assert_truth(&s, &b, &ws, &base(TruthFilter::default()), "fallback");
    let pages = base_records(&s).div_ceil(100);
    // One refused request, then pages of 100.
    let usage_calls = s.handle.calls("cbk.usage_list");
    assert!(
        (pages + 1..=pages + 2).contains(&usage_calls),
        "{usage_calls} usage calls for {pages} pages"
    );
    assert_eq!(b.upstream_requests, usage_calls);
    // The source keeps 100: the bot list is asked with it, and nothing is refused again.
    let agents = p.agents().await.unwrap();
    assert_eq!(agents.len(), s.data.chatbotkit.bots().len());
    assert_eq!(
        s.handle.calls("cbk.bots"),
        u64::try_from(s.data.chatbotkit.bots().len().div_ceil(100)).unwrap()
    );
    // A page size the server refuses even at 100 is an error, not a loop.
    s.handle.faults().set_take_limit(TakeLimit {
        max: 50,
        reject: true,
    });
    let e = provider(&s, |c| c.page_size = 500)
        .usage(&UsageQuery::new(ws.clone(), BTreeSet::new()))
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Config { .. }), "{e:?}");
}

#[tokio::test]
async fn concurrent_queries_share_one_scan_and_repeats_are_free() {
    let s = sim().await;
    s.handle.faults().set_latency(
        std::time::Duration::from_millis(20),
        std::time::Duration::ZERO,
    );
    let p = provider(&s, |c| c.page_size = 20);
    let ws = windows(s.now - Duration::days(30), Duration::days(1), 29);
    let q = UsageQuery::new(ws.clone(), dims(&[Dimension::Conversation]));
    let answers = futures::future::join_all((0..6).map(|_| p.usage(&q))).await;
    let requests: u64 = answers
        .iter()
        .map(|a| a.as_ref().unwrap().upstream_requests)
        .sum();
    assert_eq!(
        requests,
        s.handle.calls("cbk.usage_list"),
        "upstream_requests counts what was sent"
    );
    let first = answers[0].as_ref().unwrap();
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().unwrap().points == first.points)
    );
    // Only one call scanned: the others waited and read its records.
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.as_ref().unwrap().upstream_requests > 0)
            .count(),
        1
    );
    let b = p.usage(&q).await.unwrap();
    assert_eq!(b.upstream_requests, 0);
    // An older range costs only the pages below what is cached.
    let before = s.handle.calls("cbk.usage_list");
    let older = windows(s.now - Duration::days(60), Duration::days(1), 30);
    let b = p
        .usage(&UsageQuery::new(older.clone(), BTreeSet::new()))
        .await
        .unwrap();
    assert_truth(&s, &b, &older, &base(TruthFilter::default()), "older range");
    let extra = s.handle.calls("cbk.usage_list") - before;
    let recs_30d = s
        .data
        .chatbotkit
        .records()
        .iter()
        .filter(|r| {
            r.usage_type == BASE_TYPE
                && r.created_at >= (s.now - Duration::days(60)).timestamp_millis()
                && r.created_at < (s.now - Duration::days(30)).timestamp_millis()
        })
        .count() as u64;
    assert!(
        extra <= recs_30d / 20 + 2,
        "{extra} pages for {recs_30d} records"
    );
}

#[tokio::test]
async fn simulator_faults_map_to_errors_and_scans_survive_flaky_pages() {
    let s = sim().await;
    let ws = vec![Window::new(
        s.now - Duration::days(30),
        s.now - Duration::days(1),
    )];
    let q = UsageQuery::new(ws.clone(), dims(&[Dimension::User]));
    let f = s.handle.faults();
    f.force_next(1, 429);
    let e = provider(&s, |_| {}).usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::RateLimited { .. }), "{e:?}");
    f.force_limits_reached(1);
    let e = provider(&s, |_| {}).usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::QuotaExceeded { .. }), "{e:?}");
    f.force_next(1, 401);
    let e = provider(&s, |_| {}).usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Unauthenticated { .. }), "{e:?}");
    f.set_malformed_json(true);
    let e = provider(&s, |_| {}).usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
    f.clear();
    f.set_truncated(true);
    let e = provider(&s, |_| {}).usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
    f.clear();
    let mut wrong = Config::new("not-the-token");
    wrong.base_url = s.handle.base_url.parse().unwrap();
    let e = ChatbotkitProvider::new("x", wrong, reqwest::Client::new())
        .unwrap()
        .usage(&q)
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Unauthenticated { .. }), "{e:?}");
    // A scan over many small pages with 30% failing pages still completes, keeping what it read.
    f.set_error_rate(0.3);
    let p = provider(&s, |c| c.page_size = 10);
    let mut attempts = 0;
    let b = loop {
        attempts += 1;
        match p.usage(&q).await {
            Ok(b) => break b,
            Err(e) => assert!(e.is_transient(), "{e:?}"),
        }
        assert!(attempts < 200, "no progress");
    };
    f.clear();
    assert_truth(&s, &b, &ws, &base(TruthFilter::default()), "flaky scan");
}

#[tokio::test]
async fn bench_sized_data_week_by_hour() {
    let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let data = Arc::new(Dataset::generate(&DataSpec::bench(now)));
    let handle = usage_sim::start_chatbotkit(data.clone(), None)
        .await
        .unwrap();
    let s = Sim { data, handle, now };
    let ws = windows(s.now - Duration::days(8), Duration::hours(1), 168);
    let p = provider(&s, |_| {});
    let started = std::time::Instant::now();
    let b = p
        .usage(&UsageQuery::new(ws.clone(), dims(&[Dimension::Agent])))
        .await
        .unwrap();
    assert_truth(
        &s,
        &b,
        &ws,
        &base(TruthFilter::default()),
        "bench, all agents",
    );
    let pages = b.upstream_requests;
    let again = p
        .usage(&UsageQuery::new(ws.clone(), dims(&[Dimension::User])))
        .await
        .unwrap();
    assert_eq!(again.upstream_requests, 0);
    let bot = &s.data.chatbotkit.bots()[0].id;
    let fresh = provider(&s, |c| c.max_concurrency = 8);
    let mut q = UsageQuery::new(ws.clone(), BTreeSet::new());
    q.agents = Some(one(bot));
    let r = fresh.usage(&q).await.unwrap();
    assert_eq!(r.upstream_requests, 168);
    assert_truth(
        &s,
        &r,
        &ws,
        &base(TruthFilter::agent(bot)),
        "bench, range mode",
    );
    eprintln!(
        "bench: {pages} pages + 168 range requests in {:?}",
        started.elapsed()
    );
}
