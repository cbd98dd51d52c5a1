//! The store's behaviour: one test function per property, run on both engines — SQLite in a
//! temporary directory, and PostgreSQL at `USAGE_GATEWAY_TEST_DATABASE_URL` (each test in a
//! schema of its own). Without that variable the PostgreSQL tests are skipped with a notice,
//! except under `CI=true`, where they fail: `.ci/run` starts a throw-away cluster
//! (`.ci/postgres.sh`) for them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test setup and assertions panic on unexpected values"
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration as Ttl;

use chrono::{DateTime, Duration, TimeZone, Utc};
use usage_core::store::{merge_coverage, uncovered};
use usage_core::{
    ConversationTotals, Counters, CoveredInterval, Dimension, DynUsageStore, PlacedUsage,
    PointFilter, PointKey, StoreError, Unit, UsageBatch, UsagePoint, Window,
};
use usage_store::testing::{Engine, Fresh, postgres_url};
use usage_store::{POINTS_PER_STATEMENT, StoreLocation};

/// Every stored point.
const ALL: PointFilter = PointFilter {
    agents: None,
    users: None,
    models: None,
};

/// Runs a property on a fresh store of `engine`, then removes the store.
async fn check<F>(engine: Engine, property: F)
where
    F: AsyncFnOnce(&Fresh, DynUsageStore),
{
    let Some(fresh) = Fresh::new(engine).await else {
        return;
    };
    let store = fresh.open().await.unwrap();
    property(&fresh, store).await;
    fresh.remove().await;
}

/// Stamps each property as one test per engine.
macro_rules! on_both_engines {
    ($($property:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $property() {
                    super::check(super::Engine::Sqlite, super::$property).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $property() {
                    super::check(super::Engine::Postgres, super::$property).await;
                }
            )*
        }
    };
}

on_both_engines!(
    points_round_trip_with_every_dimension_and_unit,
    rewriting_a_window_replaces_it,
    coverage_lists_the_written_windows,
    a_write_failing_midway_leaves_nothing,
    an_unknown_or_changed_schema_is_refused_naming_the_migration,
    concurrent_writers_of_one_window_leave_one_copy,
    refused_values_name_what_is_wrong,
    several_windows_are_written_in_one_call,
    several_windows_are_written_all_or_nothing,
    overlapping_windows_are_refused,
    one_holder_leases_a_source_at_a_time,
    an_expired_lease_passes_to_another_holder,
    a_released_lease_is_free_at_once,
    only_the_holder_publishes_progress,
    stores_opened_at_once_on_a_fresh_database_all_open,
    snapshot_growth_is_placed_at_the_update_time,
    shrunk_totals_are_noted_and_nothing_recorded_is_lost,
    placed_usage_is_filtered_by_agent_and_user,
    sums_add_up_points_per_kept_dimension,
    an_older_poll_changes_nothing,
    retention_forgets_snapshot_history_too,
);

fn at(hour: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap() + Duration::hours(hour)
}

fn hour(h: i64) -> Window {
    Window::new(at(h), at(h + 1))
}

/// A point of `window` with the labels `[agent, user, conversation, usage_type]`.
fn point(
    window: Window,
    [agent, user, conversation, usage_type]: [Option<&str>; 4],
    unit: Unit,
    (input, output, other): (u64, u64, u64),
) -> UsagePoint {
    let owned = |l: Option<&str>| l.map(str::to_owned);
    UsagePoint {
        window,
        key: PointKey {
            agent: owned(agent),
            user: owned(user),
            conversation: owned(conversation),
            usage_type: owned(usage_type),
            model: None,
        },
        agent_name: None,
        unit,
        counters: Counters {
            input,
            output,
            other,
        },
    }
}

/// A token point of one agent, without other labels.
fn tokens(window: Window, agent: &str, counters: (u64, u64, u64)) -> UsagePoint {
    point(
        window,
        [Some(agent), None, None, None],
        Unit::Tokens,
        counters,
    )
}

/// The point with an agent name.
fn named(name: &str, point: UsagePoint) -> UsagePoint {
    UsagePoint {
        agent_name: Some(name.to_owned()),
        ..point
    }
}

/// The point with a model.
fn modeled(model: &str, mut point: UsagePoint) -> UsagePoint {
    point.key.model = Some(model.to_owned());
    point
}

/// Points as a provider would give them for `window`: OpenAI- and Anthropic-like (models,
/// units that are not tokens, an empty model beside an absent one), DigitalOcean-like (agent and usage type),
/// ChatBotKit-like (every label, credits), Kibana-like (no usage type), unattributed usage, an
/// empty label beside an absent one, non-ASCII labels, the largest counter the store holds,
/// and two points of one key (added up when stored).
fn sample(window: Window) -> Vec<UsagePoint> {
    let w = window;
    let (tok, cred) = (Unit::Tokens, Unit::Credits);
    let sales = [Some("bot-7"), Some("user-1"), Some("conv-1"), Some("BASE")];
    let kibana = [
        Some("kb-agent"),
        Some("elastic"),
        Some("c-\u{e9}\u{1F600}"),
        None,
    ];
    let unattributed = [
        Some(usage_core::UNATTRIBUTED_AGENT),
        None,
        None,
        Some("BASE"),
    ];
    let support = |t| [Some("do-agent-1"), None, None, Some(t)];
    vec![
        named("Support bot", point(w, support("INPUT"), tok, (120, 0, 0))),
        named("Support bot", point(w, support("OUTPUT"), tok, (0, 80, 0))),
        named("Sales", point(w, sales, cred, (0, 0, 42))),
        named("Sales", point(w, sales, tok, (5, 6, 0))),
        point(w, kibana, tok, (7, 8, 0)),
        point(w, unattributed, cred, (0, 0, 9)),
        point(w, [Some("bot-7"), Some(""), None, None], tok, (1, 2, 3)),
        point(w, [Some("bot-7"), None, None, None], tok, (1, 2, 3)),
        point(w, [None; 4], tok, (1, 2, 3)),
        tokens(w, "big", (i64::MAX as u64, 0, 0)),
        // Same key and unit as the first point, without its name: added up.
        point(w, support("INPUT"), tok, (3, 0, 0)),
        modeled(
            "gpt-4o-mini",
            point(
                w,
                [Some("proj_1"), Some("user-1"), None, Some("input")],
                tok,
                (10, 0, 0),
            ),
        ),
        modeled(
            "gpt-4o-mini",
            point(
                w,
                [Some("proj_1"), None, None, Some("images")],
                Unit::Images,
                (0, 0, 2),
            ),
        ),
        modeled(
            "claude-sonnet-4",
            point(
                w,
                [Some("default"), None, None, Some("web_search_requests")],
                Unit::Requests,
                (0, 0, 3),
            ),
        ),
        modeled(
            "",
            point(w, [Some("proj_1"), None, None, None], tok, (1, 1, 1)),
        ),
    ]
}

/// What the store should give back for `points`: one point per window, key and unit, sorted.
fn compacted(points: Vec<UsagePoint>) -> Vec<UsagePoint> {
    UsageBatch {
        points,
        ..UsageBatch::default()
    }
    .compact()
    .points
}

fn totals(points: &[UsagePoint]) -> Counters {
    let mut sum = Counters::default();
    for p in points {
        sum.add(&p.counters);
    }
    sum
}

fn everything() -> Window {
    Window::new(at(-1000), at(1000))
}

/// Every point stored for `source`.
async fn stored(store: &DynUsageStore, source: &str) -> Vec<UsagePoint> {
    store.points(source, everything(), &ALL).await.unwrap()
}

/// Every window stored for `source`.
async fn covered(store: &DynUsageStore, source: &str) -> Vec<CoveredInterval> {
    store.coverage(source, everything()).await.unwrap()
}

async fn points_round_trip_with_every_dimension_and_unit(fresh: &Fresh, store: DynUsageStore) {
    assert_eq!(
        store.engine(),
        match fresh.engine {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    );
    let synced = at(30);
    for h in [0, 1] {
        store
            .put_window("src-a", hour(h), &sample(hour(h)), synced)
            .await
            .unwrap();
    }
    // Another source's points stay apart.
    store
        .put_window("src-b", hour(0), &sample(hour(0))[..1], synced)
        .await
        .unwrap();

    let kept = stored(&store, "src-a").await;
    let mut want = sample(hour(0));
    want.extend(sample(hour(1)));
    assert_eq!(kept, compacted(want));
    let first = kept
        .iter()
        .find(|p| p.key.agent.as_deref() == Some("do-agent-1"))
        .unwrap();
    assert_eq!(first.counters.input, 123);
    assert_eq!(first.agent_name.as_deref(), Some("Support bot"));

    // A range holds whole windows only.
    let one = store
        .points("src-a", Window::new(at(0), at(1)), &ALL)
        .await
        .unwrap();
    assert_eq!(one, compacted(sample(hour(0))));
    let straddling = Window::new(at(0) + Duration::minutes(30), at(2));
    assert_eq!(
        store.points("src-a", straddling, &ALL).await.unwrap(),
        compacted(sample(hour(1)))
    );
    assert!(
        store
            .points("src-a", Window::new(at(5), at(6)), &ALL)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(stored(&store, "nobody").await.is_empty());

    // Filters: agents, users (a point without a user never passes), and both.
    let set = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>());
    for filter in [
        PointFilter {
            agents: set(&["bot-7", "kb-agent"]),
            users: None,
            models: None,
        },
        PointFilter {
            agents: None,
            users: set(&["user-1", ""]),
            models: None,
        },
        PointFilter {
            agents: set(&["bot-7"]),
            users: set(&["user-1"]),
            models: None,
        },
        PointFilter {
            agents: set(&[]),
            users: None,
            models: None,
        },
        PointFilter {
            agents: set(&[""]),
            users: None,
            models: None,
        },
        PointFilter {
            agents: None,
            users: None,
            models: set(&["gpt-4o-mini", ""]),
        },
        PointFilter {
            agents: set(&["proj_1"]),
            users: None,
            models: set(&["claude-sonnet-4"]),
        },
    ] {
        let got = store.points("src-a", hour(0), &filter).await.unwrap();
        let want: Vec<UsagePoint> = compacted(sample(hour(0)))
            .into_iter()
            .filter(|p| filter.matches(&p.key))
            .collect();
        assert_eq!(got, want, "{filter:?}");
    }
    assert_eq!(store.sources().await.unwrap(), ["src-a", "src-b"]);

    // A reopened store reads the same.
    drop(store);
    let reopened = fresh.open().await.unwrap();
    assert_eq!(stored(&reopened, "src-a").await, kept);
}

async fn rewriting_a_window_replaces_it(_: &Fresh, store: DynUsageStore) {
    let w = hour(3);
    store.put_window("s", w, &sample(w), at(10)).await.unwrap();
    let once = stored(&store, "s").await;
    for synced in [at(11), at(12)] {
        store.put_window("s", w, &sample(w), synced).await.unwrap();
    }
    let thrice = stored(&store, "s").await;
    assert_eq!(
        thrice, once,
        "the same window written again is not counted twice"
    );
    assert_eq!(totals(&thrice), totals(&compacted(sample(w))));
    let rows = covered(&store, "s").await;
    assert_eq!(
        rows,
        [CoveredInterval {
            window: w,
            synced_at: at(12)
        }]
    );

    // New contents replace the old ones whole: a key that is gone is gone.
    let newer = vec![tokens(w, "only", (1, 1, 1))];
    store.put_window("s", w, &newer, at(13)).await.unwrap();
    assert_eq!(stored(&store, "s").await, newer);

    // An empty window is held (covered, no points) and replaces too.
    store.put_window("s", w, &[], at(14)).await.unwrap();
    assert!(stored(&store, "s").await.is_empty());
    assert_eq!(covered(&store, "s").await.len(), 1);
}

async fn coverage_lists_the_written_windows(_: &Fresh, store: DynUsageStore) {
    let one = |w: Window| vec![tokens(w, "a", (1, 0, 0))];
    // synced_at is kept to the millisecond, rounded down.
    let synced = at(20) + Duration::microseconds(1_500);
    for h in [0, 1, 2, 5, 6] {
        store
            .put_window("s", hour(h), &one(hour(h)), synced)
            .await
            .unwrap();
    }
    store
        .put_window("other", hour(3), &one(hour(3)), synced)
        .await
        .unwrap();
    let ms = at(20) + Duration::milliseconds(1);
    let row = |a: i64, b: i64| CoveredInterval {
        window: Window::new(at(a), at(b)),
        synced_at: ms,
    };

    let day_one = store
        .coverage("s", Window::new(at(0), at(24)))
        .await
        .unwrap();
    assert_eq!(
        day_one,
        [row(0, 1), row(1, 2), row(2, 3), row(5, 6), row(6, 7)]
    );
    assert_eq!(merge_coverage(&day_one), [row(0, 3), row(5, 7)]);
    assert_eq!(
        uncovered(Window::new(at(0), at(8)), &day_one),
        [Window::new(at(3), at(5)), Window::new(at(7), at(8))]
    );
    // Only windows inside the range.
    let inside = store
        .coverage("s", Window::new(at(1) + Duration::minutes(1), at(6)))
        .await
        .unwrap();
    assert_eq!(inside, [row(2, 3), row(5, 6)]);

    // A window overlapping others replaces them (a day written over its hours): nothing twice.
    let day = Window::new(at(0), at(6));
    store.put_window("s", day, &one(day), synced).await.unwrap();
    assert_eq!(covered(&store, "s").await, [row(0, 6), row(6, 7)]);
    let points = stored(&store, "s").await;
    assert_eq!(
        points.iter().map(|p| p.window).collect::<Vec<_>>(),
        [day, hour(6)]
    );
    assert_eq!(totals(&points).input, 2);

    // Retention: windows ending at or before the instant go, with their points.
    assert_eq!(store.forget("s", at(6)).await.unwrap(), 1);
    assert_eq!(covered(&store, "s").await, [row(6, 7)]);
    assert_eq!(stored(&store, "s").await.len(), 1);
    assert_eq!(store.forget("s", at(100)).await.unwrap(), 1);
    assert_eq!(store.sources().await.unwrap(), ["other"]);
    assert_eq!(covered(&store, "other").await.len(), 1);
}

async fn a_write_failing_midway_leaves_nothing(_: &Fresh, store: DynUsageStore) {
    let w = hour(0);
    store.put_window("s", w, &sample(w), at(5)).await.unwrap();
    let before = stored(&store, "s").await;

    // More points than one statement holds, the bad one in the second statement: the first
    // statement's points, the deletion of the old window and the new coverage row were all
    // sent before the failure.
    let n = 2 * POINTS_PER_STATEMENT + 1;
    let bad = POINTS_PER_STATEMENT + 5;
    let batch = |window: Window| -> Vec<UsagePoint> {
        (0..n)
            .map(|i| {
                let input = if i == bad { u64::MAX } else { 1 };
                let agent = format!("agent-{i:05}");
                tokens(window, &agent, (input, 0, 0))
            })
            .collect()
    };
    let err = store
        .put_window("s", w, &batch(w), at(6))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("input counter 18446744073709551615"),
        "{err}"
    );
    assert_eq!(stored(&store, "s").await, before);
    assert_eq!(
        covered(&store, "s").await,
        [CoveredInterval {
            window: w,
            synced_at: at(5)
        }]
    );

    // A window never written stays uncovered, and a source never written unknown.
    let err = store
        .put_window("fresh", hour(1), &batch(hour(1)), at(6))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    assert!(covered(&store, "fresh").await.is_empty());
    assert!(stored(&store, "fresh").await.is_empty());
    assert_eq!(store.sources().await.unwrap(), ["s"]);

    // The same batch without the bad point is written whole.
    let mut good = batch(hour(1));
    good.remove(bad);
    store
        .put_window("fresh", hour(1), &good, at(7))
        .await
        .unwrap();
    assert_eq!(stored(&store, "fresh").await.len(), n - 1);
}

async fn an_unknown_or_changed_schema_is_refused_naming_the_migration(
    fresh: &Fresh,
    store: DynUsageStore,
) {
    drop(store);
    let (bytes, yes, no) = match fresh.engine {
        Engine::Sqlite => ("x'00'", "1", "0"),
        Engine::Postgres => ("'\\x00'::bytea", "TRUE", "FALSE"),
    };
    // Runs `sql` beside the store, then expects opening it to fail naming `migration`.
    let refused = async |sql: &str, migration: &str, says: &str| {
        fresh.exec(sql).await;
        match fresh.open().await {
            Err(StoreError::Schema {
                migration: m,
                message,
            }) => {
                assert_eq!(m, migration, "{message}");
                assert!(message.contains(says), "{message}");
            }
            other => panic!("expected a schema error, got {other:?}"),
        }
    };
    let table = "_usage_store_migrations";

    // A migration this build does not know (a newer build's, or a foreign one).
    let future = format!(
        "INSERT INTO {table} (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from_the_future', {yes}, {bytes}, 0)"
    );
    refused(&future, "9999_from_the_future", "unknown to this build").await;
    fresh
        .exec(&format!("DELETE FROM {table} WHERE version = 9999"))
        .await;
    drop(fresh.open().await.unwrap());

    // A known migration applied with other contents, then recorded as failed halfway.
    fresh
        .exec(&format!("CREATE TABLE saved AS SELECT * FROM {table}"))
        .await;
    let changed = format!("UPDATE {table} SET checksum = {bytes} WHERE version = 1");
    refused(&changed, "0001_usage_store", "checksum mismatch").await;
    let dirty = format!("UPDATE {table} SET success = {no} WHERE version = 1");
    refused(&dirty, "0001_usage_store", "partially applied").await;
    fresh
        .exec(&format!(
            "DELETE FROM {table}; INSERT INTO {table} SELECT * FROM saved"
        ))
        .await;
    drop(fresh.open().await.unwrap());

    // Tables changed by hand under a recorded migration.
    let altered = "ALTER TABLE usage_points DROP COLUMN agent_name";
    refused(altered, "0001_usage_store", "tables differ").await;
}

async fn concurrent_writers_of_one_window_leave_one_copy(_: &Fresh, store: DynUsageStore) {
    let w = hour(0);
    let version = |tag: &str, n: u64| -> Arc<Vec<UsagePoint>> {
        Arc::new(
            (0..50)
                .map(|i| {
                    let agent = format!("{tag}-{i}");
                    point(
                        w,
                        [Some(&agent), None, None, Some("T")],
                        Unit::Tokens,
                        (n, 0, 0),
                    )
                })
                .collect(),
        )
    };
    let (a, b) = (version("a", 1), version("b", 2));
    for round in 0..10 {
        // Rounds after the first replace a window that exists.
        let tasks = [a.clone(), b.clone()].map(|points| {
            let store = store.clone();
            tokio::spawn(async move { store.put_window("s", w, &points, at(round)).await })
        });
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let kept = stored(&store, "s").await;
        assert!(
            kept == compacted(a.to_vec()) || kept == compacted(b.to_vec()),
            "round {round}: {} points stored, not one writer's 50",
            kept.len()
        );
        assert_eq!(covered(&store, "s").await.len(), 1);
    }
}

async fn refused_values_name_what_is_wrong(_: &Fresh, store: DynUsageStore) {
    let refused = |r: Result<(), StoreError>| match r {
        Err(StoreError::Refused { message }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // A window that is not whole milliseconds would move points across windows if rounded.
    let odd = Window::new(at(0) + Duration::microseconds(1), at(1));
    let message = refused(store.put_window("s", odd, &[], at(2)).await);
    assert!(message.contains("whole milliseconds"), "{message}");
    // A point of another window.
    let message = refused(
        store
            .put_window("s", hour(0), &sample(hour(1)), at(2))
            .await,
    );
    assert!(message.contains("a point of window"), "{message}");
    // Each counter is checked.
    for counters in [(0, u64::MAX, 0), (0, 0, i64::MAX as u64 + 1)] {
        let p = tokens(hour(0), "x", counters);
        let message = refused(store.put_window("s", hour(0), &[p], at(2)).await);
        assert!(
            message.contains("above the largest the store holds"),
            "{message}"
        );
    }
    // Two points of one key that overflow only together are refused too.
    let half = tokens(hour(0), "x", (i64::MAX as u64 / 2 + 1, 0, 0));
    refused(
        store
            .put_window("s", hour(0), &[half.clone(), half], at(2))
            .await,
    );
    assert!(store.sources().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_postgres_password_never_shows() {
    // Nothing listens on port 1: the store is unavailable, and says where without the secret.
    let err =
        usage_store::open("postgres://gw:hunter2-secret@127.0.0.1:1/usage?password=qs-secret")
            .await
            .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("qs-secret"),
        "{shown}"
    );
    assert!(
        shown.contains("postgres://gw:***@127.0.0.1:1/usage"),
        "{shown}"
    );

    let Some(url) = postgres_url() else { return };
    let location = StoreLocation::parse(&url).unwrap();
    let store = location.open().await.unwrap();
    let mut real = url::Url::parse(&url).unwrap();
    let password = real.password().unwrap().to_owned();
    for shown in [format!("{store:?}"), format!("{location} {location:?}")] {
        assert!(!shown.contains(&password), "{shown}");
        assert!(shown.contains(":***@"), "{shown}");
    }
    // A wrong password: the server refuses it, and neither password shows.
    real.set_password(Some("wrong-secret-42")).unwrap();
    let err = usage_store::open(real.as_str()).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert!(
        !shown.contains("wrong-secret-42") && !shown.contains(&password),
        "{shown}"
    );
}

#[tokio::test]
async fn an_sqlite_store_is_created_at_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    let store = usage_store::open(path.to_str().unwrap()).await.unwrap();
    assert!(path.exists());
    assert!(format!("{store:?}").contains("plain.db"));
    drop(store);
    let missing = dir.path().join("no-such-dir").join("x.db");
    let err = usage_store::open(missing.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

async fn several_windows_are_written_in_one_call(_: &Fresh, store: DynUsageStore) {
    // A day written before is replaced by the hours written over it (the first hour's write
    // removes it, and the second finds nothing left to remove).
    let day = Window::new(at(0), at(24));
    store
        .put_window("s", day, &[tokens(day, "old", (9, 9, 9))], at(30))
        .await
        .unwrap();
    let one = |w: Window| vec![tokens(w, "a", (1, 0, 0))];
    // Touching windows are disjoint; an empty one is held too; the order given is free.
    let windows = vec![
        (hour(1), one(hour(1))),
        (hour(0), sample(hour(0))),
        (hour(2), Vec::new()),
    ];
    store.put_windows("s", &windows, at(31)).await.unwrap();
    let row = |h: i64| CoveredInterval {
        window: hour(h),
        synced_at: at(31),
    };
    assert_eq!(covered(&store, "s").await, [row(0), row(1), row(2)]);
    let mut want = sample(hour(0));
    want.extend(one(hour(1)));
    assert_eq!(stored(&store, "s").await, compacted(want));

    // Written again, the windows replace themselves: nothing twice.
    store.put_windows("s", &windows, at(32)).await.unwrap();
    assert_eq!(covered(&store, "s").await.len(), 3);
    let mut want = totals(&sample(hour(0)));
    want.input += 1;
    assert_eq!(totals(&stored(&store, "s").await), want);

    // No windows: nothing is done, not even the source recorded.
    store.put_windows("none", &[], at(33)).await.unwrap();
    assert_eq!(store.sources().await.unwrap(), ["s"]);
}

async fn several_windows_are_written_all_or_nothing(_: &Fresh, store: DynUsageStore) {
    store
        .put_window("s", hour(0), &sample(hour(0)), at(5))
        .await
        .unwrap();
    let before = (stored(&store, "s").await, covered(&store, "s").await);
    let refused = async |windows: Vec<(Window, Vec<UsagePoint>)>, says: &str| {
        match store.put_windows("s", &windows, at(6)).await {
            Err(StoreError::Refused { message }) => assert!(message.contains(says), "{message}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(
            (stored(&store, "s").await, covered(&store, "s").await),
            before,
            "nothing of any window is written"
        );
    };
    // The last window's counter is refused while the first ones (one replacing hour 0) were
    // already sent: none of them stays.
    refused(
        vec![
            (hour(0), vec![tokens(hour(0), "new", (1, 0, 0))]),
            (hour(1), sample(hour(1))),
            (hour(2), vec![tokens(hour(2), "x", (u64::MAX, 0, 0))]),
        ],
        "input counter 18446744073709551615",
    )
    .await;
    // A point of another window, in the second window: refused before anything is sent.
    refused(
        vec![
            (hour(1), sample(hour(1))),
            (hour(2), vec![tokens(hour(3), "x", (1, 0, 0))]),
        ],
        "a point of window",
    )
    .await;
    // A window that is not whole milliseconds.
    let odd = Window::new(at(4), at(5) + Duration::microseconds(1));
    refused(
        vec![(hour(1), sample(hour(1))), (odd, Vec::new())],
        "whole milliseconds",
    )
    .await;
    assert_eq!(store.sources().await.unwrap(), ["s"]);
}

async fn overlapping_windows_are_refused(_: &Fresh, store: DynUsageStore) {
    let refused = async |windows: &[Window]| -> String {
        let windows: Vec<(Window, Vec<UsagePoint>)> =
            windows.iter().map(|w| (*w, Vec::new())).collect();
        match store.put_windows("s", &windows, at(6)).await {
            Err(StoreError::Refused { message }) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    let two = Window::new(at(0), at(2));
    // Named in the order of their starts, whatever the order given.
    let message = refused(&[hour(5), hour(1), two]).await;
    assert!(
        message.contains(&format!(
            "windows [{}, {}) and [{}, {}) overlap",
            at(0).to_rfc3339(),
            at(2).to_rfc3339(),
            at(1).to_rfc3339(),
            at(2).to_rfc3339()
        )),
        "{message}"
    );
    // The same window twice overlaps itself.
    let message = refused(&[hour(3), hour(3)]).await;
    assert!(message.contains("overlap"), "{message}");
    assert!(store.sources().await.unwrap().is_empty());
    assert!(covered(&store, "s").await.is_empty());
}

/// Long enough never to run out during a test.
const LONG: Ttl = Ttl::from_secs(600);

async fn one_holder_leases_a_source_at_a_time(_: &Fresh, store: DynUsageStore) {
    assert!(store.lease("src").await.unwrap().is_none());
    // Replicas contending at once: exactly one wins.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let holder = format!("replica-{i}");
                let won = store.try_lease("src", &holder, LONG).await.unwrap();
                won.then_some(holder)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        winners.extend(t.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let holder = &winners[0];
    let held = store.lease("src").await.unwrap().unwrap();
    assert_eq!(&held.holder, holder);
    assert!(!held.expired);
    assert_eq!(held.progress, None);
    // Timed by the database clock: on this machine, about now and LONG from it.
    let ttl = Duration::from_std(LONG).unwrap();
    let slack = Duration::seconds(5);
    assert!((held.updated_at - Utc::now()).abs() < slack, "{held:?}");
    assert!(
        (held.expires_at - held.updated_at - ttl).abs() < slack,
        "{held:?}"
    );

    // The others still lose; the holder renews (here for longer).
    assert!(!store.try_lease("src", "other", LONG).await.unwrap());
    assert!(store.try_lease("src", holder, 2 * LONG).await.unwrap());
    let renewed = store.lease("src").await.unwrap().unwrap();
    assert_eq!(&renewed.holder, holder);
    assert!(
        renewed.expires_at >= held.expires_at + ttl - slack,
        "{renewed:?}"
    );
    assert!(!store.try_lease("src", "other", LONG).await.unwrap());

    // Another source's lease is apart.
    assert!(store.try_lease("src-2", "other", LONG).await.unwrap());
    assert_eq!(store.lease("src").await.unwrap().unwrap().holder, *holder);

    // A ttl outside what the store grants is refused.
    for ttl in [
        Ttl::ZERO,
        usage_core::store::MAX_LEASE_TTL + Ttl::from_millis(1),
    ] {
        let err = store.try_lease("src", holder, ttl).await.unwrap_err();
        assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    }
}

async fn an_expired_lease_passes_to_another_holder(_: &Fresh, store: DynUsageStore) {
    let short = Ttl::from_millis(200);
    assert!(store.try_lease("src", "a", short).await.unwrap());
    assert!(
        store
            .publish_progress("src", "a", "{\"at\":1}")
            .await
            .unwrap()
    );
    assert!(!store.try_lease("src", "b", LONG).await.unwrap());
    tokio::time::sleep(Ttl::from_millis(400)).await;

    // Run out, by the database clock: still named, but free.
    let stale = store.lease("src").await.unwrap().unwrap();
    assert_eq!(stale.holder, "a");
    assert!(stale.expired, "{stale:?}");
    assert!(
        !store
            .publish_progress("src", "a", "{\"at\":2}")
            .await
            .unwrap(),
        "a holder whose lease ran out publishes nothing"
    );
    assert!(store.try_lease("src", "b", LONG).await.unwrap());
    let taken = store.lease("src").await.unwrap().unwrap();
    assert_eq!(taken.holder, "b");
    assert!(!taken.expired);
    assert_eq!(taken.progress, None, "a new holder starts without progress");
    assert!(taken.updated_at >= stale.updated_at);
    // The old holder cannot take it back while it runs.
    assert!(!store.try_lease("src", "a", short).await.unwrap());
}

async fn a_released_lease_is_free_at_once(_: &Fresh, store: DynUsageStore) {
    assert!(store.try_lease("src", "a", LONG).await.unwrap());
    // Only the holder releases it.
    store.release_lease("src", "b").await.unwrap();
    assert_eq!(store.lease("src").await.unwrap().unwrap().holder, "a");
    assert!(!store.try_lease("src", "b", LONG).await.unwrap());
    store.release_lease("src", "a").await.unwrap();
    assert!(store.lease("src").await.unwrap().is_none());
    assert!(store.try_lease("src", "b", LONG).await.unwrap());
    assert_eq!(store.lease("src").await.unwrap().unwrap().holder, "b");
    // Releasing what one does not hold (any more) does nothing.
    store.release_lease("src", "a").await.unwrap();
    store.release_lease("nothing", "a").await.unwrap();
    assert_eq!(store.lease("src").await.unwrap().unwrap().holder, "b");
}

async fn only_the_holder_publishes_progress(_: &Fresh, store: DynUsageStore) {
    assert!(!store.publish_progress("src", "a", "{}").await.unwrap());
    assert!(store.lease("src").await.unwrap().is_none());
    assert!(store.try_lease("src", "a", LONG).await.unwrap());
    assert!(
        !store
            .publish_progress("src", "b", "{\"b\":1}")
            .await
            .unwrap()
    );
    assert_eq!(store.lease("src").await.unwrap().unwrap().progress, None);

    let progress = "{\"window\":\"2026-11-02T03:00:00Z\",\"done\":0.5,\"note\":\"\u{e9}\"}";
    assert!(store.publish_progress("src", "a", progress).await.unwrap());
    let lease = store.lease("src").await.unwrap().unwrap();
    assert_eq!(lease.progress.as_deref(), Some(progress));
    assert_eq!(lease.holder, "a");
    assert!(!lease.expired);
    // Renewing keeps it; publishing again replaces it.
    assert!(store.try_lease("src", "a", LONG).await.unwrap());
    let renewed = store.lease("src").await.unwrap().unwrap();
    assert_eq!(renewed.progress.as_deref(), Some(progress));
    assert!(renewed.updated_at >= lease.updated_at);
    assert!(
        store
            .publish_progress("src", "a", "{\"done\":1}")
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .lease("src")
            .await
            .unwrap()
            .unwrap()
            .progress
            .as_deref(),
        Some("{\"done\":1}")
    );
}

/// Replicas starting together on a fresh database each apply or find the migrations, none
/// failing on another's half-applied schema (SQLite: a lock file beside the database;
/// PostgreSQL: sqlx's advisory lock).
async fn stores_opened_at_once_on_a_fresh_database_all_open(fresh: &Fresh, _: DynUsageStore) {
    let Some(empty) = Fresh::new(fresh.engine).await else {
        return;
    };
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let location = empty.location.clone();
            tokio::spawn(async move { usage_store::open(&location).await })
        })
        .collect();
    for task in opening {
        task.await.unwrap().unwrap();
    }
    empty.remove().await;
}

/// TLS to PostgreSQL: with `sslmode=verify-full` and the server's CA the store opens; without
/// that CA (the system's roots do not hold the test cluster's self-signed one) it is refused
/// at the TLS handshake, and the error shows no password.
#[tokio::test]
async fn postgres_over_verified_tls() {
    let Some(url) = postgres_url() else {
        return;
    };
    let ca = match std::env::var("USAGE_GATEWAY_TEST_DATABASE_CA") {
        Ok(ca) if !ca.is_empty() => ca,
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "USAGE_GATEWAY_TEST_DATABASE_CA is unset under CI=true (.ci/postgres.sh sets it)"
            )
        }
        _ => return,
    };
    let mut verified = url::Url::parse(&url).unwrap();
    verified
        .query_pairs_mut()
        .append_pair("sslmode", "verify-full")
        .append_pair("sslrootcert", &ca);
    drop(usage_store::open(verified.as_str()).await.unwrap());

    let mut unverified = url::Url::parse(&url).unwrap();
    unverified
        .query_pairs_mut()
        .append_pair("sslmode", "verify-full");
    let err = usage_store::open(unverified.as_str()).await.unwrap_err();
    let password = url::Url::parse(&url)
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    assert!(!err.to_string().contains(&password), "{err}");
    assert!(!format!("{err:?}").contains(&password), "{err:?}");
}

/// What a test reads of a placed usage: instant, conversation, (input, output), baseline.
type Seen<'a> = (DateTime<Utc>, &'a str, (u64, u64), bool);

/// A conversation's lifetime totals at a poll.
fn snap(
    agent: &str,
    id: &str,
    user: Option<&str>,
    updated: DateTime<Utc>,
    io: (u64, u64),
) -> ConversationTotals {
    ConversationTotals {
        agent: agent.to_owned(),
        agent_name: Some(format!("{agent} name")),
        conversation: id.to_owned(),
        user: user.map(str::to_owned),
        updated_at: updated,
        unit: Unit::Tokens,
        counters: Counters {
            input: io.0,
            output: io.1,
            other: 0,
        },
        // Some rounds and calls, growing with the tokens.
        rounds: Some(io.0 / 10),
        llm_calls: (io.1 > 0).then_some(io.1),
    }
}

fn all_time() -> Window {
    Window::new(at(-1000), at(1000))
}

/// Each poll places a conversation's growth since the last at its new update time; its first
/// poll places its totals as a baseline; a poll repeated or one that no longer lists a
/// conversation places nothing and loses nothing.
async fn snapshot_growth_is_placed_at_the_update_time(_: &Fresh, store: DynUsageStore) {
    let minute = |h: i64, m: i64| at(h) + Duration::minutes(m);
    let a1 = snap("kb", "a", Some("elastic"), minute(0, 10), (100, 10));
    let out = store
        .record_poll("s", at(1), at(-100), std::slice::from_ref(&a1))
        .await
        .unwrap();
    assert_eq!((out.baselines, out.grown), (1, 0));
    let a2 = snap("kb", "a", Some("elastic"), minute(1, 20), (150, 25));
    let b1 = snap("kb", "b", None, minute(1, 30), (7, 3));
    let out = store
        .record_poll("s", at(2), at(1), &[a2.clone(), b1.clone()])
        .await
        .unwrap();
    assert_eq!((out.baselines, out.grown), (1, 1));
    // The same totals again (a repeated poll), and a poll that lists neither conversation.
    let out = store
        .record_poll("s", at(2), at(1), &[a2.clone(), b1.clone()])
        .await
        .unwrap();
    assert_eq!((out.baselines, out.grown), (0, 0));
    store.record_poll("s", at(4), at(2), &[]).await.unwrap();

    let placed = store.placed("s", all_time(), &ALL).await.unwrap();
    let seen: Vec<Seen<'_>> = placed
        .iter()
        .map(|p| {
            (
                p.at,
                p.conversation.as_str(),
                (p.counters.input, p.counters.output),
                p.baseline,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (minute(0, 10), "a", (100, 10), true),
            (minute(1, 20), "a", (50, 15), false),
            (minute(1, 30), "b", (7, 3), true),
        ]
    );
    assert_eq!(placed[0].user.as_deref(), Some("elastic"));
    assert_eq!(placed[0].agent_name.as_deref(), Some("kb name"));
    // Only what lies in the range.
    let hour1 = store.placed("s", hour(1), &ALL).await.unwrap();
    assert_eq!(hour1.len(), 2);
    let totals = store
        .last_totals(
            "s",
            &[("kb".into(), "a".into()), ("kb".into(), "zz".into())],
        )
        .await
        .unwrap();
    assert_eq!(totals, [a2]);
    let polls = store
        .polls("s", Window::new(at(1), at(3)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((polls.first, polls.last), (at(1), at(4)));
    assert_eq!(polls.covers_from, at(-100));
    // From the poll at 1 to the first after 3 (at 4): the longest gap is 2 hours.
    assert_eq!(polls.resolution, std::time::Duration::from_secs(2 * 3600));
    assert!(store.polls("other", all_time()).await.unwrap().is_none());
}

/// Totals that shrink are noted; what was recorded stays, and growth counts from the new
/// totals (counters that grew meanwhile count at once).
async fn shrunk_totals_are_noted_and_nothing_recorded_is_lost(_: &Fresh, store: DynUsageStore) {
    store
        .record_poll(
            "s",
            at(1),
            at(0),
            &[snap("kb", "a", None, at(0), (100, 10))],
        )
        .await
        .unwrap();
    let out = store
        .record_poll("s", at(2), at(1), &[snap("kb", "a", None, at(1), (40, 15))])
        .await
        .unwrap();
    assert_eq!(out.shrunk.len(), 1, "{out:?}");
    assert!(
        out.shrunk[0].contains("kb/a: totals shrank from 110 tokens to 55 tokens"),
        "{out:?}"
    );
    store
        .record_poll("s", at(3), at(2), &[snap("kb", "a", None, at(2), (60, 15))])
        .await
        .unwrap();
    let placed = store.placed("s", all_time(), &ALL).await.unwrap();
    let mut sum = Counters::default();
    for p in &placed {
        sum.add(&p.counters);
    }
    // 100 + 20 input (from 40 to 60), 10 + 5 output (from 10 to 15).
    assert_eq!((sum.input, sum.output), (120, 15));
    let notes = store.shrunk("s", Window::new(at(2), at(3))).await.unwrap();
    assert_eq!(notes, out.shrunk);
    assert!(store.shrunk("s", hour(5)).await.unwrap().is_empty());
}

/// The agent and user filters apply to placed usage as to points.
async fn placed_usage_is_filtered_by_agent_and_user(_: &Fresh, store: DynUsageStore) {
    let polls = [
        snap("kb", "a", Some("elastic"), at(0), (1, 0)),
        snap("kb", "b", None, at(0), (2, 0)),
        snap("other", "c", Some("admin"), at(0), (4, 0)),
    ];
    store.record_poll("s", at(1), at(0), &polls).await.unwrap();
    let only = |agents: Option<&[&str]>, users: Option<&[&str]>| PointFilter {
        agents: agents.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
        users: users.map(|u| u.iter().map(|s| (*s).to_owned()).collect()),
        models: None,
    };
    let sum = |placed: Vec<PlacedUsage>| placed.iter().map(|p| p.counters.input).sum::<u64>();
    assert_eq!(
        sum(store
            .placed("s", all_time(), &only(Some(&["kb"]), None))
            .await
            .unwrap()),
        3
    );
    assert_eq!(
        sum(store
            .placed("s", all_time(), &only(None, Some(&["admin"])))
            .await
            .unwrap()),
        4
    );
    assert_eq!(
        sum(store
            .placed("s", all_time(), &only(Some(&[]), None))
            .await
            .unwrap()),
        0
    );
    assert_eq!(sum(store.placed("s", all_time(), &ALL).await.unwrap()), 7);
}

/// `sums` equals the stored points projected to the kept dimensions and added up, for every
/// choice of dimensions, with the filters applied.
async fn sums_add_up_points_per_kept_dimension(_: &Fresh, store: DynUsageStore) {
    // The sample's labels with small counters (its largest ones would overflow a sum, which
    // the database refuses as an error rather than wrapping).
    for h in 0..3 {
        let points: Vec<UsagePoint> = sample(hour(h))
            .into_iter()
            .enumerate()
            .map(|(i, mut p)| {
                let i = i as u64;
                p.counters = Counters {
                    input: i + 1,
                    output: 2 * i,
                    other: i % 3,
                };
                p
            })
            .collect();
        store
            .put_window("s", hour(h), &points, at(9))
            .await
            .unwrap();
    }
    let dims = [
        Dimension::Agent,
        Dimension::User,
        Dimension::Conversation,
        Dimension::UsageType,
        Dimension::Model,
    ];
    let filters = [
        ALL,
        PointFilter {
            agents: Some(BTreeSet::from(["bot-7".to_owned(), "kb-agent".to_owned()])),
            users: None,
            models: None,
        },
        PointFilter {
            agents: None,
            users: None,
            models: Some(BTreeSet::from(["gpt-4o-mini".to_owned()])),
        },
    ];
    for mask in 0..32u8 {
        let keep: BTreeSet<Dimension> = dims
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, d)| *d)
            .collect();
        for filter in &filters {
            let range = Window::new(at(0), at(3));
            let expected = UsageBatch {
                points: store
                    .points("s", range, filter)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|mut p| {
                        p.key = p.key.project(&keep);
                        if !keep.contains(&Dimension::Agent) {
                            p.agent_name = None;
                        }
                        p
                    })
                    .collect(),
                ..UsageBatch::default()
            }
            .compact();
            let got = store.sums("s", range, filter, &keep).await.unwrap();
            assert_eq!(got, expected.points, "keep {keep:?}, filter {filter:?}");
        }
    }
}

/// A poll older than one recorded (a replica whose lease ran out during its call) writes
/// nothing, so that the next poll does not place growth twice.
async fn an_older_poll_changes_nothing(_: &Fresh, store: DynUsageStore) {
    store
        .record_poll(
            "s",
            at(2),
            at(0),
            &[snap("kb", "a", None, at(1), (100, 10))],
        )
        .await
        .unwrap();
    let late = store
        .record_poll("s", at(1), at(0), &[snap("kb", "a", None, at(0), (40, 5))])
        .await
        .unwrap();
    assert!(late.superseded, "{late:?}");
    let totals = store
        .last_totals("s", &[("kb".into(), "a".into())])
        .await
        .unwrap();
    assert_eq!(totals[0].counters.input, 100);
    assert!(store.shrunk("s", all_time()).await.unwrap().is_empty());
    // The next poll places only what grew since the newest one.
    store
        .record_poll(
            "s",
            at(3),
            at(2),
            &[snap("kb", "a", None, at(2), (130, 10))],
        )
        .await
        .unwrap();
    let sum: u64 = store
        .placed("s", all_time(), &ALL)
        .await
        .unwrap()
        .iter()
        .map(|p| p.counters.input)
        .sum();
    assert_eq!(sum, 130);
}

/// Retention (`forget`) drops the snapshot history before the instant too, and keeps each
/// conversation's last totals, so that growth after it is still measured from them.
async fn retention_forgets_snapshot_history_too(_: &Fresh, store: DynUsageStore) {
    store
        .record_poll("s", at(1), at(0), &[snap("kb", "a", None, at(0), (100, 0))])
        .await
        .unwrap();
    store
        .record_poll("s", at(5), at(1), &[snap("kb", "a", None, at(4), (150, 0))])
        .await
        .unwrap();
    store.forget("s", at(3)).await.unwrap();
    let placed = store.placed("s", all_time(), &ALL).await.unwrap();
    assert_eq!(
        placed
            .iter()
            .map(|p| (p.at, p.counters.input))
            .collect::<Vec<_>>(),
        [(at(4), 50)]
    );
    let polls = store.polls("s", all_time()).await.unwrap().unwrap();
    assert_eq!((polls.first, polls.last), (at(5), at(5)));
    store
        .record_poll("s", at(7), at(5), &[snap("kb", "a", None, at(6), (170, 0))])
        .await
        .unwrap();
    let after = store
        .placed("s", Window::new(at(5), at(8)), &ALL)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].counters.input, 20);
}
