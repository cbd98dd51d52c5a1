//! What differs between the engines: how to connect, how a write transaction begins, the
//! migrations, the database clock, and which engine errors are transient. Everything else is the shared SQL of
//! [`crate::sql`].

use std::path::Path;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult};
use sqlx::{Pool, Postgres, Sqlite};
use url::Url;
use usage_core::StoreError;

use crate::location::{StoreLocation, scrub};
use crate::migrate::{self, Embedded};

/// How long a caller waits for a pooled connection (and, with PostgreSQL, for the server to
/// accept one) before the store answers `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an SQLite writer waits for another writer's lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A database engine the store runs on.
/// Closes a query opened with [`Engine::JSON_ROWS_OPEN`].
pub(crate) const JSON_ROWS_CLOSE: &str = ") AS json_rows";

pub(crate) trait Engine: sqlx::Database {
    /// The engine's name.
    const ENGINE: &'static str;
    /// The statement that opens a write transaction (`None`: the driver's `BEGIN`).
    const BEGIN_WRITE: Option<&'static str>;
    /// The versioned migrations, in order.
    const MIGRATIONS: &'static [Embedded];
    /// An SQL expression of the database clock's current instant, in integer milliseconds
    /// since the Unix epoch: what leases are timed by, so that replicas with skewed clocks
    /// agree.
    const NOW_MS: &'static str;
    /// Opens a query that returns the rows of the subquery after it (closed with
    /// [`JSON_ROWS_CLOSE`]) as one JSON array of arrays of `{columns}`, in one text value:
    /// sqlx hands SQLite rows over one by one through a channel, at tens of microseconds each,
    /// which made reads of thousands of rows slow; one row of JSON costs far less.
    const JSON_ROWS_OPEN: &'static str;

    /// Rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Reports whether an engine error code means "busy or unreachable, retry later".
    fn is_transient_code(code: &str) -> bool;
}

impl Engine for Sqlite {
    const ENGINE: &'static str = "sqlite";
    // IMMEDIATE takes the write lock at once (waiting up to the busy timeout), so that two
    // writers never both read and then fail to upgrade.
    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const MIGRATIONS: &'static [Embedded] = migrate::SQLITE;
    // `unixepoch('subsec')` (SQLite 3.42+; the bundled library is newer) has the milliseconds;
    // it is the same throughout one statement.
    const NOW_MS: &'static str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";
    const JSON_ROWS_OPEN: &'static str = "SELECT json_group_array(json_array({columns})) FROM (";

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn is_transient_code(code: &str) -> bool {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
        code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
    }
}

impl Engine for Postgres {
    const ENGINE: &'static str = "postgres";
    const BEGIN_WRITE: Option<&'static str> = None;
    const MIGRATIONS: &'static [Embedded] = migrate::POSTGRES;
    // `clock_timestamp()`, not `now()`: the time of the statement, not of its transaction's
    // start.
    const NOW_MS: &'static str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
    const JSON_ROWS_OPEN: &'static str =
        "SELECT COALESCE(json_agg(json_build_array({columns}))::text, '[]') FROM (";

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn is_transient_code(code: &str) -> bool {
        // Connection exceptions, serialization failures and deadlocks, insufficient resources,
        // and the server shutting down or starting up.
        code.starts_with("08")
            || code.starts_with("53")
            || matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
    }
}

/// Maps an engine error to the store's, naming what was being done.
pub(crate) fn db_error<DB: Engine>(doing: &str, e: &sqlx::Error) -> StoreError {
    let message = format!("{}: {doing}: {e}", DB::ENGINE);
    let transient = match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| DB::is_transient_code(&c)),
        _ => false,
    };
    if transient {
        StoreError::Unavailable { message }
    } else {
        StoreError::Database { message }
    }
}

/// Opens (creating when missing) the SQLite file at `path` (`location` names it in errors).
pub(crate) async fn connect_sqlite(
    path: &Path,
    location: &StoreLocation,
) -> Result<Pool<Sqlite>, StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| open_error::<Sqlite>(location, &e))
}

/// Connects to the PostgreSQL database at `url` (`location` names it in errors).
pub(crate) async fn connect_postgres(
    url: &Url,
    location: &StoreLocation,
) -> Result<Pool<Postgres>, StoreError> {
    let options: PgConnectOptions =
        url.as_str()
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Config {
                message: scrub(
                    &format!("{location}: not a usable PostgreSQL URL: {e}"),
                    &location.secrets(),
                ),
            })?;
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| open_error::<Postgres>(location, &e))
}

/// An error opening `location`, with its password scrubbed from the engine's message.
fn open_error<DB: Engine>(location: &StoreLocation, e: &sqlx::Error) -> StoreError {
    let secrets = location.secrets();
    match db_error::<DB>(&format!("cannot open {location}"), e) {
        StoreError::Unavailable { message } => StoreError::Unavailable {
            message: scrub(&message, &secrets),
        },
        StoreError::Database { message } => StoreError::Database {
            message: scrub(&message, &secrets),
        },
        other => other,
    }
}
