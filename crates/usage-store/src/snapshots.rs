//! Snapshots of conversation totals (Kibana), on any engine: each poll's totals compared with
//! the last ones stored, the growth placed at the conversation's update time
//! (`usage_placed`), the last totals kept (`usage_conversations`), every poll recorded
//! (`usage_polls`) and totals that shrank kept as notes (`usage_shrunk`); see migration
//! `0003_conversation_snapshots`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type};
use usage_core::model::ceil_ms;
use usage_core::{
    ConversationTotals, Counters, PlacedUsage, PointFilter, PollHistory, PollOutcome, StoreError,
    Unit,
};

use crate::engine::{Engine, db_error};
use crate::sql::{SqlStore, corrupt, instant};

/// Conversations per statement (at most 12 parameters each, within every engine's limit).
const ROWS_PER_STATEMENT: usize = 1000;

const SELECT_TOTALS: &str = "SELECT agent, conversation, end_user, agent_name, unit, input, \
     output, other, updated_at, rounds, llm_calls FROM usage_conversations WHERE source = ";

const UPSERT_TOTALS: &str = "INSERT INTO usage_conversations (source, agent, conversation, \
     end_user, agent_name, unit, input, output, other, updated_at, observed_at, rounds, \
     llm_calls) ";

const ON_TOTALS_CONFLICT: &str = " ON CONFLICT (source, agent, conversation) DO UPDATE SET \
     end_user = excluded.end_user, \
     agent_name = COALESCE(excluded.agent_name, usage_conversations.agent_name), \
     unit = excluded.unit, input = excluded.input, output = excluded.output, \
     other = excluded.other, updated_at = excluded.updated_at, observed_at = excluded.observed_at, \
     rounds = excluded.rounds, llm_calls = excluded.llm_calls";

const INSERT_PLACED: &str = "INSERT INTO usage_placed (source, agent, conversation, placed_at, \
     end_user, agent_name, unit, input, output, other, baseline, observed_at) ";

/// Growth placed at an instant that already holds some (a vendor that changed totals without
/// moving `updated_at`) adds to it.
const ON_PLACED_CONFLICT: &str = " ON CONFLICT (source, agent, conversation, placed_at) DO UPDATE \
     SET input = usage_placed.input + excluded.input, \
     output = usage_placed.output + excluded.output, \
     other = usage_placed.other + excluded.other";

const SELECT_PLACED: &str = "SELECT placed_at, agent, conversation, end_user, agent_name, unit, \
     input, output, other, baseline FROM usage_placed WHERE source = ";

const INSERT_POLL: &str = "INSERT INTO usage_polls (source, polled_at, since, conversations) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (source, polled_at) DO NOTHING";

const INSERT_SHRUNK: &str = "INSERT INTO usage_shrunk (source, agent, conversation, observed_at, \
     note) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, agent, conversation, observed_at) \
     DO NOTHING";

const SELECT_SHRUNK: &str = "SELECT note FROM usage_shrunk WHERE source = $1 \
     AND observed_at >= $2 AND observed_at < $3 ORDER BY observed_at, agent, conversation";

const SELECT_NEWEST_POLL: &str = "SELECT MAX(polled_at) FROM usage_polls WHERE source = $1";

const SELECT_POLL_SPAN: &str = "SELECT MIN(polled_at), MAX(polled_at), \
     (SELECT since FROM usage_polls WHERE source = $1 ORDER BY polled_at LIMIT 1) \
     FROM usage_polls WHERE source = $1";

/// The longest gap between consecutive polls from the last poll at or before `$2` (or `$2`)
/// to the first at or after `$3` (or `$3`).
const SELECT_POLL_GAP: &str = "SELECT MAX(gap) FROM (SELECT polled_at - LAG(polled_at) OVER \
     (ORDER BY polled_at) AS gap FROM usage_polls WHERE source = $1 \
     AND polled_at >= COALESCE((SELECT MAX(polled_at) FROM usage_polls \
         WHERE source = $1 AND polled_at <= $2), $2) \
     AND polled_at <= COALESCE((SELECT MIN(polled_at) FROM usage_polls \
         WHERE source = $1 AND polled_at >= $3), $3)) gaps";

/// A conversation's key: agent and conversation id.
type Key<'a> = (&'a str, &'a str);

/// The totals stored of one conversation.
struct Stored {
    unit: String,
    counters: Counters,
    updated_at: DateTime<Utc>,
}

/// One row of `usage_placed` to write.
struct Placed<'a> {
    c: &'a ConversationTotals,
    counters: Counters,
    baseline: bool,
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
    /// [`usage_core::UsageStore::record_poll`].
    pub(crate) async fn write_poll(
        &self,
        source: &str,
        polled_at: DateTime<Utc>,
        since: DateTime<Utc>,
        conversations: &[ConversationTotals],
    ) -> Result<PollOutcome, StoreError> {
        // One snapshot per conversation: the latest, should the vendor list one twice.
        let mut latest: BTreeMap<Key<'_>, &ConversationTotals> = BTreeMap::new();
        for c in conversations {
            let e = latest
                .entry((c.agent.as_str(), c.conversation.as_str()))
                .or_insert(c);
            if c.updated_at > e.updated_at {
                *e = c;
            }
        }
        let observed = polled_at.timestamp_millis();
        let mut tx = self.begin_write(source).await?;
        // A poll older than one recorded (a replica whose lease ran out during its call) would
        // set totals back, and the next poll would place their growth again: refused.
        let newest: Option<i64> = sqlx::query(SELECT_NEWEST_POLL)
            .bind(source)
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| db_error::<DB>("reading the newest poll", &e))?;
        if newest.is_some_and(|n| n > observed) {
            return Ok(PollOutcome {
                superseded: true,
                ..PollOutcome::default()
            });
        }
        let keys: Vec<Key<'_>> = latest.keys().copied().collect();
        let mut stored: HashMap<(String, String), Stored> = HashMap::new();
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let rows = totals_of::<DB>(source, chunk.iter().copied())
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_error::<DB>("reading the last snapshots", &e))?;
            for row in &rows {
                let t = read_totals::<DB>(row)?;
                stored.insert(
                    (t.agent, t.conversation),
                    Stored {
                        unit: t.unit.as_str().to_owned(),
                        counters: t.counters,
                        updated_at: t.updated_at,
                    },
                );
            }
        }

        let mut outcome = PollOutcome::default();
        let mut placed = Vec::new();
        let mut shrunk = Vec::new();
        for c in latest.values() {
            let key = (c.agent.clone(), c.conversation.clone());
            match stored.get(&key) {
                // An older view of the conversation than the one recorded: nothing to learn.
                Some(before) if before.updated_at > c.updated_at => {}
                None => {
                    outcome.baselines += 1;
                    if !c.counters.is_zero() {
                        placed.push(Placed {
                            c,
                            counters: c.counters,
                            baseline: true,
                        });
                    }
                }
                Some(before) => {
                    let (now, was) = (c.counters, before.counters);
                    let grown = Counters {
                        input: now.input.saturating_sub(was.input),
                        output: now.output.saturating_sub(was.output),
                        other: now.other.saturating_sub(was.other),
                    };
                    let same_unit = before.unit == c.unit.as_str();
                    if !same_unit
                        || now.input < was.input
                        || now.output < was.output
                        || now.other < was.other
                    {
                        let note = format!(
                            "{}/{}: totals shrank from {} {} to {} {} at {}; what was recorded \
                             is kept, and growth counts from the new totals",
                            c.agent,
                            c.conversation,
                            was.total(),
                            before.unit,
                            now.total(),
                            c.unit.as_str(),
                            polled_at.to_rfc3339()
                        );
                        shrunk.push((*c, note));
                    }
                    // Counters that grew count, even beside one that shrank.
                    if same_unit && !grown.is_zero() {
                        outcome.grown += 1;
                        placed.push(Placed {
                            c,
                            counters: grown,
                            baseline: false,
                        });
                    }
                }
            }
        }

        let all: Vec<&ConversationTotals> = latest.values().copied().collect();
        for chunk in all.chunks(ROWS_PER_STATEMENT) {
            let rows = chunk
                .iter()
                .map(|c| Ok((*c, bigints(source, c, &c.counters)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut insert = QueryBuilder::<DB>::new(UPSERT_TOTALS);
            insert.push_values(rows, |mut b, (c, n)| {
                b.push_bind(source)
                    .push_bind(c.agent.as_str())
                    .push_bind(c.conversation.as_str())
                    .push_bind(c.user.as_deref())
                    .push_bind(c.agent_name.as_deref())
                    .push_bind(c.unit.as_str())
                    .push_bind(n[0])
                    .push_bind(n[1])
                    .push_bind(n[2])
                    .push_bind(c.updated_at.timestamp_millis())
                    .push_bind(observed)
                    .push_bind(c.rounds.and_then(|r| i64::try_from(r).ok()))
                    .push_bind(c.llm_calls.and_then(|r| i64::try_from(r).ok()));
            });
            insert.push(ON_TOTALS_CONFLICT);
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error::<DB>("writing the snapshots", &e))?;
        }
        for chunk in placed.chunks(ROWS_PER_STATEMENT) {
            let rows = chunk
                .iter()
                .map(|p| Ok((p, bigints(source, p.c, &p.counters)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut insert = QueryBuilder::<DB>::new(INSERT_PLACED);
            insert.push_values(rows, |mut b, (p, n)| {
                b.push_bind(source)
                    .push_bind(p.c.agent.as_str())
                    .push_bind(p.c.conversation.as_str())
                    .push_bind(p.c.updated_at.timestamp_millis())
                    .push_bind(p.c.user.as_deref())
                    .push_bind(p.c.agent_name.as_deref())
                    .push_bind(p.c.unit.as_str())
                    .push_bind(n[0])
                    .push_bind(n[1])
                    .push_bind(n[2])
                    .push_bind(i32::from(p.baseline))
                    .push_bind(observed);
            });
            insert.push(ON_PLACED_CONFLICT);
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error::<DB>("placing usage", &e))?;
        }
        for (c, note) in &shrunk {
            sqlx::query(INSERT_SHRUNK)
                .bind(source)
                .bind(c.agent.as_str())
                .bind(c.conversation.as_str())
                .bind(observed)
                .bind(note.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error::<DB>("noting shrunk totals", &e))?;
        }
        sqlx::query(INSERT_POLL)
            .bind(source)
            .bind(observed)
            .bind(since.timestamp_millis())
            .bind(i64::try_from(latest.len()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error::<DB>("recording the poll", &e))?;
        tx.commit()
            .await
            .map_err(|e| db_error::<DB>("committing the poll", &e))?;
        outcome.shrunk = shrunk.into_iter().map(|(_, note)| note).collect();
        Ok(outcome)
    }

    /// [`usage_core::UsageStore::placed`].
    pub(crate) async fn read_placed(
        &self,
        source: &str,
        range: usage_core::Window,
        filter: &PointFilter,
    ) -> Result<Vec<PlacedUsage>, StoreError> {
        let mut select = QueryBuilder::<DB>::new(SELECT_PLACED);
        select
            .push_bind(source)
            .push(" AND placed_at >= ")
            .push_bind(ceil_ms(range.start))
            .push(" AND placed_at < ")
            .push_bind(ceil_ms(range.end));
        for (set, column) in [(&filter.agents, "agent"), (&filter.users, "end_user")] {
            let Some(set) = set else { continue };
            if set.is_empty() {
                return Ok(Vec::new());
            }
            select.push(format_args!(" AND {column} IN ("));
            let mut values = select.separated(", ");
            for v in set {
                values.push_bind(v.as_str());
            }
            select.push(")");
        }
        select.push(" ORDER BY placed_at, agent, conversation");
        let rows = select
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error::<DB>("reading placed usage", &e))?;
        rows.iter()
            .map(|row| {
                let text =
                    |i: usize| -> Result<&str, StoreError> { row.try_get(i).map_err(corrupt) };
                let opt = |i: usize| -> Result<Option<String>, StoreError> {
                    Ok(row
                        .try_get::<Option<&str>, _>(i)
                        .map_err(corrupt)?
                        .map(str::to_owned))
                };
                let baseline: i32 = row.try_get(9).map_err(corrupt)?;
                Ok(PlacedUsage {
                    at: instant(row.try_get(0).map_err(corrupt)?)?,
                    agent: text(1)?.to_owned(),
                    conversation: text(2)?.to_owned(),
                    user: opt(3)?,
                    agent_name: opt(4)?,
                    unit: unit(text(5)?)?,
                    counters: counters::<DB>(row, 6)?,
                    baseline: baseline != 0,
                })
            })
            .collect()
    }

    /// [`usage_core::UsageStore::last_totals`].
    pub(crate) async fn read_totals(
        &self,
        source: &str,
        conversations: &[(String, String)],
    ) -> Result<Vec<ConversationTotals>, StoreError> {
        let mut out = Vec::new();
        for chunk in conversations.chunks(ROWS_PER_STATEMENT) {
            let keys = chunk.iter().map(|(a, c)| (a.as_str(), c.as_str()));
            let rows = totals_of::<DB>(source, keys)
                .build()
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db_error::<DB>("reading the last snapshots", &e))?;
            for row in &rows {
                out.push(read_totals::<DB>(row)?);
            }
        }
        out.sort_by(|a, b| (&a.agent, &a.conversation).cmp(&(&b.agent, &b.conversation)));
        Ok(out)
    }

    /// [`usage_core::UsageStore::polls`].
    pub(crate) async fn read_polls(
        &self,
        source: &str,
        range: usage_core::Window,
    ) -> Result<Option<PollHistory>, StoreError> {
        let span = sqlx::query(SELECT_POLL_SPAN)
            .bind(source)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_error::<DB>("reading the polls", &e))?;
        let first: Option<i64> = span.try_get(0).map_err(corrupt)?;
        let last: Option<i64> = span.try_get(1).map_err(corrupt)?;
        let since: Option<i64> = span.try_get(2).map_err(corrupt)?;
        let (Some(first), Some(last), Some(since)) = (first, last, since) else {
            return Ok(None);
        };
        let gap = sqlx::query(SELECT_POLL_GAP)
            .bind(source)
            .bind(ceil_ms(range.start))
            .bind(ceil_ms(range.end))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_error::<DB>("reading the poll intervals", &e))?;
        let gap: Option<i64> = gap.try_get(0).map_err(corrupt)?;
        Ok(Some(PollHistory {
            first: instant(first)?,
            covers_from: instant(since)?,
            last: instant(last)?,
            resolution: Duration::from_millis(u64::try_from(gap.unwrap_or(0)).unwrap_or(0)),
        }))
    }

    /// [`usage_core::UsageStore::shrunk`].
    pub(crate) async fn read_shrunk(
        &self,
        source: &str,
        range: usage_core::Window,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(SELECT_SHRUNK)
            .bind(source)
            .bind(ceil_ms(range.start))
            .bind(ceil_ms(range.end))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error::<DB>("reading shrunk totals", &e))?;
        rows.iter()
            .map(|r| r.try_get::<&str, _>(0).map(str::to_owned).map_err(corrupt))
            .collect()
    }
}

/// The statement reading the last totals of the conversations `keys` of `source`.
fn totals_of<'a, DB>(source: &'a str, keys: impl Iterator<Item = Key<'a>>) -> QueryBuilder<DB>
where
    DB: Engine,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    let mut select = QueryBuilder::<DB>::new(SELECT_TOTALS);
    select
        .push_bind(source)
        .push(" AND (agent, conversation) IN (VALUES ");
    let mut values = select.separated(", ");
    for (agent, conversation) in keys {
        values
            .push("(")
            .push_bind_unseparated(agent)
            .push_unseparated(", ")
            .push_bind_unseparated(conversation)
            .push_unseparated(")");
    }
    select.push(")");
    select
}

/// The counters as `BIGINT`s, refusing one above what the store holds.
fn bigints(
    source: &str,
    c: &ConversationTotals,
    counters: &Counters,
) -> Result<[i64; 3], StoreError> {
    let mut out = [0; 3];
    for (slot, (name, value)) in out.iter_mut().zip([
        ("input", counters.input),
        ("output", counters.output),
        ("other", counters.other),
    ]) {
        *slot = i64::try_from(value).map_err(|_| StoreError::Refused {
            message: format!(
                "{source}, conversation {}/{}: the {name} counter {value} is above the largest \
                 the store holds ({})",
                c.agent,
                c.conversation,
                i64::MAX
            ),
        })?;
    }
    Ok(out)
}

fn unit(text: &str) -> Result<Unit, StoreError> {
    Unit::parse(text).ok_or_else(|| StoreError::Corrupt {
        message: format!("unknown unit {text:?}"),
    })
}

/// Reads three counter columns starting at `first`.
fn counters<DB>(row: &DB::Row, first: usize) -> Result<Counters, StoreError>
where
    DB: Engine,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let counter = |i: usize, name: &str| -> Result<u64, StoreError> {
        let v: i64 = row.try_get(i).map_err(corrupt)?;
        u64::try_from(v).map_err(|_| StoreError::Corrupt {
            message: format!("a stored {name} counter is negative ({v})"),
        })
    };
    Ok(Counters {
        input: counter(first, "input")?,
        output: counter(first + 1, "output")?,
        other: counter(first + 2, "other")?,
    })
}

/// Reads one row of [`SELECT_TOTALS`].
fn read_totals<DB>(row: &DB::Row) -> Result<ConversationTotals, StoreError>
where
    DB: Engine,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Decode<'q, DB>,
    for<'q> &'q str: Decode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    let text = |i: usize| -> Result<&str, StoreError> { row.try_get(i).map_err(corrupt) };
    let opt = |i: usize| -> Result<Option<String>, StoreError> {
        Ok(row
            .try_get::<Option<&str>, _>(i)
            .map_err(corrupt)?
            .map(str::to_owned))
    };
    let count = |i: usize| -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = row.try_get(i).map_err(corrupt)?;
        v.map(|v| {
            u64::try_from(v).map_err(|_| StoreError::Corrupt {
                message: format!("a stored count is negative ({v})"),
            })
        })
        .transpose()
    };
    Ok(ConversationTotals {
        agent: text(0)?.to_owned(),
        conversation: text(1)?.to_owned(),
        user: opt(2)?,
        agent_name: opt(3)?,
        unit: unit(text(4)?)?,
        counters: counters::<DB>(row, 5)?,
        updated_at: instant(row.try_get(8).map_err(corrupt)?)?,
        rounds: count(9)?,
        llm_calls: count(10)?,
    })
}
