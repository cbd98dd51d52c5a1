//! The store on any engine: one SQL text for both (`$n` placeholders, which SQLite reads too),
//! generic over the engine; what differs is in [`crate::engine`].

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Row, Type};
use usage_core::store::{lease_ttl_ms, merge_points};
use usage_core::{
    ConversationTotals, Counters, CoveredInterval, Dimension, LeaseInfo, PlacedUsage, PointFilter,
    PointKey, PollHistory, PollOutcome, StoreError, Unit, UsagePoint, UsageStore, Window,
    model::ceil_ms,
};

use crate::engine::{Engine, JSON_ROWS_CLOSE, db_error};
use crate::location::StoreLocation;
use crate::migrate;

/// Points per `INSERT` statement: a window with more points is written in several statements
/// of its one transaction (14 parameters a point, within every engine's parameter limit).
pub const POINTS_PER_STATEMENT: usize = 1000;

/// Bits of `usage_points.labels`: which labels a point has (an absent one is stored as '').
const AGENT: i32 = 1;
const USER: i32 = 2;
const CONVERSATION: i32 = 4;
const USAGE_TYPE: i32 = 8;
const MODEL: i32 = 16;

/// Takes the source's row lock (inserting the row the first time), which serializes writers
/// of one source.
const LOCK_SOURCE: &str = "INSERT INTO usage_sources (source) VALUES ($1) \
     ON CONFLICT (source) DO UPDATE SET source = excluded.source";

/// Removes the windows overlapping `[$2, $3)` (their points go with them: ON DELETE CASCADE).
const DELETE_OVERLAPPING: &str =
    "DELETE FROM usage_coverage WHERE source = $1 AND window_start < $3 AND window_end > $2";

const INSERT_COVERAGE: &str = "INSERT INTO usage_coverage \
     (source, window_start, window_end, synced_at) VALUES ($1, $2, $3, $4)";

const INSERT_POINTS: &str = "INSERT INTO usage_points (source, window_start, window_end, unit, \
     labels, agent, end_user, conversation, usage_type, model, agent_name, input, output, other) ";

/// The windows of `$1` inside `[$2, $3]`, as `ws, we, sa` (read as JSON rows).
const SELECT_COVERAGE: &str = "SELECT window_start AS ws, window_end AS we, synced_at AS sa \
     FROM usage_coverage WHERE source = $1 AND window_start >= $2 AND window_end <= $3";

const SELECT_SOURCES: &str = "SELECT DISTINCT source FROM usage_coverage";

const FORGET: &str = "DELETE FROM usage_coverage WHERE source = $1 AND window_end <= $2";

/// With the windows, the snapshot history before the same instant: usage placed, polls and
/// shrink notes (the last totals of each conversation stay: growth is measured from them).
const FORGET_SNAPSHOTS: [(&str, &str); 3] = [
    (
        "DELETE FROM usage_placed WHERE source = $1 AND placed_at < $2",
        "forgetting placed usage",
    ),
    (
        "DELETE FROM usage_polls WHERE source = $1 AND polled_at < $2",
        "forgetting polls",
    ),
    (
        "DELETE FROM usage_shrunk WHERE source = $1 AND observed_at < $2",
        "forgetting shrink notes",
    ),
];

// The lease statements read the database clock where they say `{now}` ([`Engine::NOW_MS`],
// put in by [`timed`]).

/// Takes the lease of `$1` for `$2` until `$3` ms from now when it is free, run out, or held by
/// `$2` already (renewed, progress kept; a new holder starts without progress), atomically:
/// it returns a row only when `$2` holds the lease afterwards. `excluded.updated_at` is the
/// statement's `{now}`.
const TRY_LEASE: &str = "INSERT INTO usage_sync_leases \
     (source, holder, expires_at, progress, updated_at) VALUES ($1, $2, {now} + $3, NULL, {now}) \
     ON CONFLICT (source) DO UPDATE SET holder = excluded.holder, \
     expires_at = excluded.expires_at, \
     progress = CASE WHEN usage_sync_leases.holder = excluded.holder \
         THEN usage_sync_leases.progress END, \
     updated_at = excluded.updated_at \
     WHERE usage_sync_leases.holder = excluded.holder \
         OR usage_sync_leases.expires_at <= excluded.updated_at \
     RETURNING holder";

const RELEASE_LEASE: &str = "DELETE FROM usage_sync_leases WHERE source = $1 AND holder = $2";

/// Stores progress `$3` only while `$2` holds the lease of `$1` (not run out).
const PUBLISH_PROGRESS: &str = "UPDATE usage_sync_leases SET progress = $3, updated_at = {now} \
     WHERE source = $1 AND holder = $2 AND expires_at > {now}";

/// The lease of `$1`, with the database clock's instant to tell whether it has run out.
const SELECT_LEASE: &str = "SELECT holder, expires_at, progress, updated_at, {now} \
     FROM usage_sync_leases WHERE source = $1";

/// Reads every column the store uses, so that a schema changed by hand fails at open; each
/// with the version of the migration that made its table.
const PROBES: [(i64, &str); 10] = [
    (1, "SELECT source FROM usage_sources WHERE 1 = 0"),
    (
        1,
        "SELECT source, window_start, window_end, synced_at FROM usage_coverage WHERE 1 = 0",
    ),
    (
        1,
        "SELECT source, window_start, window_end, unit, labels, agent, end_user, conversation, \
         usage_type, agent_name, input, output, other FROM usage_points WHERE 1 = 0",
    ),
    (
        2,
        "SELECT source, holder, expires_at, progress, updated_at FROM usage_sync_leases \
         WHERE 1 = 0",
    ),
    (
        3,
        "SELECT source, agent, conversation, end_user, agent_name, unit, input, output, other, \
         updated_at, observed_at FROM usage_conversations WHERE 1 = 0",
    ),
    (
        3,
        "SELECT source, agent, conversation, placed_at, end_user, agent_name, unit, input, \
         output, other, baseline, observed_at FROM usage_placed WHERE 1 = 0",
    ),
    (
        3,
        "SELECT source, polled_at, since, conversations FROM usage_polls WHERE 1 = 0",
    ),
    (
        3,
        "SELECT source, agent, conversation, observed_at, note FROM usage_shrunk WHERE 1 = 0",
    ),
    (
        4,
        "SELECT rounds, llm_calls FROM usage_conversations WHERE 1 = 0",
    ),
    (5, "SELECT model FROM usage_points WHERE 1 = 0"),
];

/// A lease statement with the engine's clock put in for `{now}` (if it reads it).
fn timed<DB: Engine>(statement: &'static str) -> sqlx::AssertSqlSafe<String> {
    // The replacement is the engine's constant expression, never a caller's value.
    sqlx::AssertSqlSafe(statement.replace("{now}", DB::NOW_MS))
}

/// A usage store on the engine `DB`.
pub(crate) struct SqlStore<DB: Engine> {
    pub(crate) pool: Pool<DB>,
    /// The location, as shown (password redacted).
    location: String,
}

impl<DB: Engine> fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("engine", &DB::ENGINE)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl<DB> SqlStore<DB>
where
    DB: Engine,
    DB::Connection: Migrate,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Brings the schema up to date (refusing a foreign or changed one) and checks it.
    pub(crate) async fn new(pool: Pool<DB>, location: &StoreLocation) -> Result<Self, StoreError> {
        let migrator = migrate::migrator(DB::MIGRATIONS);
        if let Err(e) = migrator.run(&pool).await {
            return Err(match migrate::version_of(&e) {
                Some(v) => {
                    let recorded = Self::recorded_description(&pool, v).await;
                    let name = migrate::known_name(DB::MIGRATIONS, v, recorded.as_deref());
                    migrate::schema_error(DB::ENGINE, name, &e)
                }
                None => StoreError::Unavailable {
                    message: format!("{}: applying migrations to {location}: {e}", DB::ENGINE),
                },
            });
        }
        for (version, probe) in PROBES {
            if let Err(e) = sqlx::query(probe).execute(&pool).await {
                return Err(StoreError::Schema {
                    migration: migrate::known_name(DB::MIGRATIONS, version, None),
                    message: format!(
                        "is recorded as applied, but this {} database's tables differ from it \
                         ({e}): the schema was changed by hand",
                        DB::ENGINE
                    ),
                });
            }
        }
        Ok(Self {
            pool,
            location: location.to_string(),
        })
    }

    /// What the database records as the description of migration `version`, if readable.
    async fn recorded_description(pool: &Pool<DB>, version: i64) -> Option<String> {
        let sql = format!(
            "SELECT description FROM {} WHERE version = $1",
            migrate::TABLE
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(version)
            .fetch_optional(pool)
            .await
            .ok()??;
        row.try_get::<&str, _>(0).ok().map(str::to_owned)
    }

    /// Begins a write of `source`, holding its lock (see [`LOCK_SOURCE`]).
    pub(crate) async fn begin_write(
        &self,
        source: &str,
    ) -> Result<sqlx::Transaction<'static, DB>, StoreError> {
        let begun = match DB::BEGIN_WRITE {
            Some(statement) => self.pool.begin_with(statement).await,
            None => self.pool.begin().await,
        };
        let mut tx = begun.map_err(|e| db_error::<DB>("beginning a write", &e))?;
        sqlx::query(LOCK_SOURCE)
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error::<DB>("locking the source", &e))?;
        Ok(tx)
    }

    /// Writes `windows` of `source` (each with its points) in one transaction: what
    /// [`UsageStore::put_windows`] does, and [`UsageStore::put_window`] with one window.
    async fn write_windows(
        &self,
        source: &str,
        windows: &[(Window, &[UsagePoint])],
        synced_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let bounds = checked_windows(source, windows)?;
        if windows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write(source).await?;
        for (&(window, points), (start, end)) in windows.iter().zip(bounds) {
            let steps = [
                (
                    sqlx::query(DELETE_OVERLAPPING)
                        .bind(source)
                        .bind(start)
                        .bind(end),
                    "removing the windows it replaces",
                ),
                (
                    sqlx::query(INSERT_COVERAGE)
                        .bind(source)
                        .bind(start)
                        .bind(end)
                        .bind(synced_at.timestamp_millis()),
                    "recording the window",
                ),
            ];
            for (query, doing) in steps {
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error::<DB>(doing, &e))?;
            }
            for chunk in merge_points(points).chunks(POINTS_PER_STATEMENT) {
                // A refused point returns here: `tx` is dropped, and the transaction (every
                // window of it) rolls back.
                let rows = chunk
                    .iter()
                    .map(|(key, unit, name, counters)| {
                        PointRow::new(source, window, (start, end), key, *unit, *name, counters)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Self::insert_points(&mut tx, rows).await?;
            }
        }
        tx.commit()
            .await
            .map_err(|e| db_error::<DB>("committing the windows", &e))
    }

    /// Reads the points of `source` whose window lies inside `range` and that pass `filter`:
    /// as stored, or (`keep`) added up per window, unit and the kept labels.
    async fn select_points(
        &self,
        source: &str,
        range: Window,
        filter: &PointFilter,
        keep: Option<&BTreeSet<Dimension>>,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        let mut select = QueryBuilder::<DB>::new(
            DB::JSON_ROWS_OPEN.replace("{columns}", "ws, we, u, l, a, eu, c, t, m, n, i, o, x"),
        );
        select.push("SELECT window_start AS ws, window_end AS we, unit AS u, ");
        let labels = [
            (Dimension::Agent, "agent", "a", AGENT),
            (Dimension::User, "end_user", "eu", USER),
            (Dimension::Conversation, "conversation", "c", CONVERSATION),
            (Dimension::UsageType, "usage_type", "t", USAGE_TYPE),
            (Dimension::Model, "model", "m", MODEL),
        ];
        // Grouped in the primary key's column order (labels before the label columns), so
        // that a grouping by agent reads the index in order.
        let mut group = String::from("window_start, window_end, unit, labels");
        match keep {
            None => {
                select.push(
                    "labels AS l, agent AS a, end_user AS eu, conversation AS c, \
                     usage_type AS t, model AS m, agent_name AS n, input AS i, output AS o, \
                     other AS x",
                );
            }
            Some(keep) => {
                let bits: i32 = labels
                    .iter()
                    .filter(|(d, ..)| keep.contains(d))
                    .map(|(.., bit)| bit)
                    .sum();
                select.push(format_args!("(labels & {bits}) AS l"));
                for (d, column, alias, _) in labels {
                    if keep.contains(&d) {
                        select.push(format_args!(", {column} AS {alias}"));
                        group.push_str(", ");
                        group.push_str(column);
                    } else {
                        select.push(format_args!(", '' AS {alias}"));
                    }
                }
                select.push(if keep.contains(&Dimension::Agent) {
                    ", MAX(agent_name) AS n"
                } else {
                    ", NULL AS n"
                });
                select.push(
                    ", CAST(SUM(input) AS BIGINT) AS i, CAST(SUM(output) AS BIGINT) AS o, \
                     CAST(SUM(other) AS BIGINT) AS x",
                );
            }
        }
        select
            .push(" FROM usage_points WHERE source = ")
            .push_bind(source)
            .push(" AND window_start >= ")
            .push_bind(ceil_ms(range.start))
            .push(" AND window_end <= ")
            .push_bind(floor_ms(range.end));
        for (set, column, bit) in [
            (&filter.agents, "agent", AGENT),
            (&filter.users, "end_user", USER),
            (&filter.models, "model", MODEL),
        ] {
            let Some(set) = set else { continue };
            if set.is_empty() {
                return Ok(Vec::new());
            }
            select.push(format_args!(" AND (labels & {bit}) <> 0 AND {column} IN ("));
            let mut values = select.separated(", ");
            for v in set {
                values.push_bind(v.as_str());
            }
            select.push(")");
        }
        if keep.is_some() {
            select.push(format_args!(" GROUP BY {group}"));
        }
        select.push(JSON_ROWS_CLOSE);
        let row = select
            .build()
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_error::<DB>("reading points", &e))?;
        let rows: Vec<StoredPoint> = json_rows(&row)?;
        let mut points = rows
            .into_iter()
            .map(StoredPoint::into_point)
            .collect::<Result<Vec<_>, _>>()?;
        // Rows grouped by the whole `labels` may share a projected key: add them up.
        if keep.is_some() {
            points = usage_core::UsageBatch {
                points,
                ..usage_core::UsageBatch::default()
            }
            .compact()
            .points;
        }
        points.sort_by(|a, b| (a.window, &a.key, a.unit).cmp(&(b.window, &b.key, b.unit)));
        Ok(points)
    }

    /// A lease statement on the engine's clock ([`timed`]), bound to its source (`$1`) and
    /// holder (`$2`).
    fn lease_statement<'q>(
        statement: &'static str,
        source: &'q str,
        holder: &'q str,
    ) -> sqlx::query::Query<'q, DB, DB::Arguments> {
        sqlx::query(timed::<DB>(statement))
            .bind(source)
            .bind(holder)
    }

    /// Inserts the rows of one statement's worth of points.
    async fn insert_points(
        conn: &mut DB::Connection,
        rows: Vec<PointRow<'_>>,
    ) -> Result<(), StoreError> {
        let mut insert = QueryBuilder::<DB>::new(INSERT_POINTS);
        insert.push_values(rows, |mut b, r| {
            b.push_bind(r.source)
                .push_bind(r.start)
                .push_bind(r.end)
                .push_bind(r.unit)
                .push_bind(r.labels)
                .push_bind(r.strings[0])
                .push_bind(r.strings[1])
                .push_bind(r.strings[2])
                .push_bind(r.strings[3])
                .push_bind(r.strings[4])
                .push_bind(r.agent_name)
                .push_bind(r.counters[0])
                .push_bind(r.counters[1])
                .push_bind(r.counters[2]);
        });
        insert
            .build()
            .execute(conn)
            .await
            .map_err(|e| db_error::<DB>("writing points", &e))?;
        Ok(())
    }
}

#[async_trait]
impl<DB> UsageStore for SqlStore<DB>
where
    DB: Engine,
    DB::Connection: Migrate,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn engine(&self) -> &'static str {
        DB::ENGINE
    }

    async fn put_window(
        &self,
        source: &str,
        window: Window,
        points: &[UsagePoint],
        synced_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_windows(source, &[(window, points)], synced_at)
            .await
    }

    async fn put_windows(
        &self,
        source: &str,
        windows: &[(Window, Vec<UsagePoint>)],
        synced_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let windows: Vec<(Window, &[UsagePoint])> = windows
            .iter()
            .map(|(w, points)| (*w, &points[..]))
            .collect();
        self.write_windows(source, &windows, synced_at).await
    }

    async fn coverage(
        &self,
        source: &str,
        range: Window,
    ) -> Result<Vec<CoveredInterval>, StoreError> {
        let sql = format!(
            "{}{SELECT_COVERAGE}{JSON_ROWS_CLOSE}",
            DB::JSON_ROWS_OPEN.replace("{columns}", "ws, we, sa")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(source)
            .bind(ceil_ms(range.start))
            .bind(floor_ms(range.end))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_error::<DB>("reading coverage", &e))?;
        let rows: Vec<(i64, i64, i64)> = json_rows(&row)?;
        let mut covered = rows
            .into_iter()
            .map(|(start, end, synced)| {
                Ok(CoveredInterval {
                    window: stored_window(start, end)?,
                    synced_at: instant(synced)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        covered.sort();
        Ok(covered)
    }

    async fn points(
        &self,
        source: &str,
        range: Window,
        filter: &PointFilter,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        self.select_points(source, range, filter, None).await
    }

    async fn sums(
        &self,
        source: &str,
        range: Window,
        filter: &PointFilter,
        keep: &BTreeSet<Dimension>,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        self.select_points(source, range, filter, Some(keep)).await
    }

    async fn sources(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(SELECT_SOURCES)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error::<DB>("listing sources", &e))?;
        let mut sources = rows
            .iter()
            .map(|r| r.try_get::<&str, _>(0).map(str::to_owned).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        sources.sort();
        Ok(sources)
    }

    async fn try_lease(
        &self,
        source: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ttl = lease_ttl_ms(ttl)?;
        let held = Self::lease_statement(TRY_LEASE, source, holder)
            .bind(ttl)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error::<DB>("taking the sync lease", &e))?;
        Ok(held.is_some())
    }

    async fn release_lease(&self, source: &str, holder: &str) -> Result<(), StoreError> {
        Self::lease_statement(RELEASE_LEASE, source, holder)
            .execute(&self.pool)
            .await
            .map_err(|e| db_error::<DB>("releasing the sync lease", &e))?;
        Ok(())
    }

    async fn publish_progress(
        &self,
        source: &str,
        holder: &str,
        progress: &str,
    ) -> Result<bool, StoreError> {
        let done = Self::lease_statement(PUBLISH_PROGRESS, source, holder)
            .bind(progress)
            .execute(&self.pool)
            .await
            .map_err(|e| db_error::<DB>("publishing sync progress", &e))?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn lease(&self, source: &str) -> Result<Option<LeaseInfo>, StoreError> {
        let row = sqlx::query(timed::<DB>(SELECT_LEASE))
            .bind(source)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error::<DB>("reading the sync lease", &e))?;
        let Some(row) = row else { return Ok(None) };
        let ms = |i: usize| -> Result<i64, StoreError> { row.try_get(i).map_err(corrupt) };
        let (expires_at, now) = (ms(1)?, ms(4)?);
        Ok(Some(LeaseInfo {
            holder: row.try_get::<&str, _>(0).map_err(corrupt)?.to_owned(),
            expires_at: instant(expires_at)?,
            expired: expires_at <= now,
            progress: row
                .try_get::<Option<&str>, _>(2)
                .map_err(corrupt)?
                .map(str::to_owned),
            updated_at: instant(ms(3)?)?,
        }))
    }

    async fn record_poll(
        &self,
        source: &str,
        polled_at: DateTime<Utc>,
        since: DateTime<Utc>,
        conversations: &[ConversationTotals],
    ) -> Result<PollOutcome, StoreError> {
        self.write_poll(source, polled_at, since, conversations)
            .await
    }

    async fn placed(
        &self,
        source: &str,
        range: Window,
        filter: &PointFilter,
    ) -> Result<Vec<PlacedUsage>, StoreError> {
        self.read_placed(source, range, filter).await
    }

    async fn last_totals(
        &self,
        source: &str,
        conversations: &[(String, String)],
    ) -> Result<Vec<ConversationTotals>, StoreError> {
        self.read_totals(source, conversations).await
    }

    async fn polls(&self, source: &str, range: Window) -> Result<Option<PollHistory>, StoreError> {
        self.read_polls(source, range).await
    }

    async fn shrunk(&self, source: &str, range: Window) -> Result<Vec<String>, StoreError> {
        self.read_shrunk(source, range).await
    }

    async fn forget(&self, source: &str, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write(source).await?;
        let done = sqlx::query(FORGET)
            .bind(source)
            .bind(floor_ms(before))
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error::<DB>("forgetting windows", &e))?;
        for (statement, doing) in FORGET_SNAPSHOTS {
            sqlx::query(statement)
                .bind(source)
                .bind(floor_ms(before))
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error::<DB>(doing, &e))?;
        }
        tx.commit()
            .await
            .map_err(|e| db_error::<DB>("committing the forget", &e))?;
        Ok(DB::rows_affected(&done))
    }
}

/// One point as bound to an `INSERT`: its labels as stored and its counters as `BIGINT`s.
struct PointRow<'a> {
    source: &'a str,
    start: i64,
    end: i64,
    unit: &'static str,
    labels: i32,
    strings: [&'a str; 5],
    agent_name: Option<&'a str>,
    counters: [i64; 3],
}

impl<'a> PointRow<'a> {
    fn new(
        source: &'a str,
        window: Window,
        (start, end): (i64, i64),
        key: &'a PointKey,
        unit: Unit,
        agent_name: Option<&'a str>,
        counters: &Counters,
    ) -> Result<Self, StoreError> {
        let mut labels = 0;
        let mut strings = [""; 5];
        for (i, (label, bit)) in [
            (&key.agent, AGENT),
            (&key.user, USER),
            (&key.conversation, CONVERSATION),
            (&key.usage_type, USAGE_TYPE),
            (&key.model, MODEL),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(l) = label {
                labels |= bit;
                strings[i] = l;
            }
        }
        let mut stored = [0; 3];
        for (slot, (name, value)) in stored.iter_mut().zip([
            ("input", counters.input),
            ("output", counters.output),
            ("other", counters.other),
        ]) {
            *slot = i64::try_from(value).map_err(|_| StoreError::Refused {
                message: format!(
                    "{source}, window {}, agent {:?}: the {name} counter {value} is above the \
                     largest the store holds ({})",
                    show(window),
                    key.agent.as_deref().unwrap_or("(none)"),
                    i64::MAX
                ),
            })?;
        }
        Ok(Self {
            source,
            start,
            end,
            unit: unit.as_str(),
            labels,
            strings,
            agent_name,
            counters: stored,
        })
    }
}

/// One point as `select_points` reads it (a JSON array): window bounds, unit, label bits, the
/// five labels ('' when absent), the agent name and the three counters.
#[derive(serde::Deserialize)]
struct StoredPoint(
    i64,
    i64,
    String,
    i32,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    i64,
);

impl StoredPoint {
    fn into_point(self) -> Result<UsagePoint, StoreError> {
        let Self(
            start,
            end,
            unit,
            labels,
            agent,
            user,
            conversation,
            usage_type,
            model,
            name,
            i,
            o,
            x,
        ) = self;
        let label = |value: String, bit: i32| (labels & bit != 0).then_some(value);
        let counter = |v: i64, name: &str| -> Result<u64, StoreError> {
            u64::try_from(v).map_err(|_| StoreError::Corrupt {
                message: format!("a stored {name} counter is negative ({v})"),
            })
        };
        Ok(UsagePoint {
            window: stored_window(start, end)?,
            key: PointKey {
                agent: label(agent, AGENT),
                user: label(user, USER),
                conversation: label(conversation, CONVERSATION),
                usage_type: label(usage_type, USAGE_TYPE),
                model: label(model, MODEL),
            },
            agent_name: name,
            unit: Unit::parse(&unit).ok_or_else(|| StoreError::Corrupt {
                message: format!("unknown unit {unit:?}"),
            })?,
            counters: Counters {
                input: counter(i, "input")?,
                output: counter(o, "output")?,
                other: counter(x, "other")?,
            },
        })
    }
}

/// Reads the rows a query opened with [`Engine::JSON_ROWS_OPEN`] returned.
fn json_rows<DB, T>(row: &DB::Row) -> Result<Vec<T>, StoreError>
where
    DB: Engine,
    T: serde::de::DeserializeOwned,
    for<'q> &'q str: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let text: &str = row.try_get(0).map_err(corrupt)?;
    serde_json::from_str(text).map_err(corrupt)
}

pub(crate) fn corrupt(e: impl fmt::Display) -> StoreError {
    StoreError::Corrupt {
        message: format!("reading a stored value: {e}"),
    }
}

/// The bounds in milliseconds of each window to write (see [`exact_window`]), in the order
/// given; refuses a point given for another window than its own, and windows that overlap
/// (naming two of them).
fn checked_windows(
    source: &str,
    windows: &[(Window, &[UsagePoint])],
) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut bounds = Vec::with_capacity(windows.len());
    for &(window, points) in windows {
        bounds.push(exact_window(window)?);
        if let Some(p) = points.iter().find(|p| p.window != window) {
            return Err(StoreError::Refused {
                message: format!(
                    "{source}: a point of window {} given for window {}",
                    show(p.window),
                    show(window)
                ),
            });
        }
    }
    // Sorted by start, the windows are disjoint when each ends by the next one's start.
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by_key(|&i| bounds[i]);
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if bounds[b].0 < bounds[a].1 {
            return Err(StoreError::Refused {
                message: format!(
                    "{source}: windows {} and {} overlap: the windows written at once must be \
                     disjoint",
                    show(windows[a].0),
                    show(windows[b].0)
                ),
            });
        }
    }
    Ok(bounds)
}

/// The window's bounds in milliseconds, refusing a window that is empty or whose bounds are
/// not whole milliseconds (rounding would move points across windows).
fn exact_window(window: Window) -> Result<(i64, i64), StoreError> {
    let exact = |t: DateTime<Utc>| {
        let nanos = t.timestamp_subsec_nanos();
        (nanos < 1_000_000_000 && nanos.is_multiple_of(1_000_000)).then(|| t.timestamp_millis())
    };
    match (exact(window.start), exact(window.end)) {
        (Some(start), Some(end)) if start < end => Ok((start, end)),
        _ => Err(StoreError::Refused {
            message: format!(
                "window {} is empty or not in whole milliseconds",
                show(window)
            ),
        }),
    }
}

/// Rounds down to the millisecond: a whole-millisecond instant `t` lies at or before `x` iff
/// `t <= floor_ms(x)` (an instant inside a leap second rounds to the millisecond before the
/// next second).
fn floor_ms(t: DateTime<Utc>) -> i64 {
    let nanos = t.timestamp_subsec_nanos();
    let secs = t.timestamp();
    if nanos >= 1_000_000_000 {
        return secs
            .saturating_add(1)
            .saturating_mul(1000)
            .saturating_sub(1);
    }
    secs.saturating_mul(1000)
        .saturating_add(i64::from(nanos / 1_000_000))
}

pub(crate) fn instant(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt {
        message: format!("stored instant {ms} ms is out of range"),
    })
}

fn stored_window(start: i64, end: i64) -> Result<Window, StoreError> {
    let (start, end) = (instant(start)?, instant(end)?);
    if start >= end {
        return Err(StoreError::Corrupt {
            message: format!("stored window [{start}, {end}) is empty"),
        });
    }
    Ok(Window::new(start, end))
}

fn show(w: Window) -> String {
    format!("[{}, {})", w.start.to_rfc3339(), w.end.to_rfc3339())
}
