//! Fresh, empty stores for tests (feature `testing`): an SQLite file in a temporary directory,
//! or a schema of its own in the PostgreSQL at `USAGE_GATEWAY_TEST_DATABASE_URL`. Without that
//! variable the PostgreSQL stores are skipped (`None`, with a note once per process), except
//! under `CI=true`, where asking for one panics: `.ci/run` starts a throw-away cluster
//! (`.ci/postgres.sh`) for them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test setup panics on unexpected values"
)]

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use sqlx::AssertSqlSafe;
use usage_core::{DynUsageStore, StoreError};

/// The variable naming the test PostgreSQL.
pub const DATABASE_URL: &str = "USAGE_GATEWAY_TEST_DATABASE_URL";

/// Numbers the PostgreSQL schemas of one test process.
static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(0);

/// A database engine of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite, in a temporary directory.
    Sqlite,
    /// PostgreSQL at `USAGE_GATEWAY_TEST_DATABASE_URL`, in a schema of its own.
    Postgres,
}

/// A fresh, empty store location of one engine, removed when the test ends.
#[derive(Debug)]
pub struct Fresh {
    /// The engine.
    pub engine: Engine,
    /// The store's location (for `usage_store::open` or `[store] url`).
    pub location: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl Fresh {
    /// A new location, or `None` when PostgreSQL is not configured (outside CI).
    pub async fn new(engine: Engine) -> Option<Self> {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("usage.db");
                Some(Self {
                    engine,
                    location: format!("sqlite://{}", path.display()),
                    _dir: Some(dir),
                    schema: None,
                })
            }
            Engine::Postgres => {
                let admin = postgres_url()?;
                let schema = format!(
                    "usage_store_test_{}_{}_{}",
                    std::process::id(),
                    NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed),
                    Utc::now().timestamp_micros()
                );
                let pool = sqlx::PgPool::connect(&admin).await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                let mut url = url::Url::parse(&admin).unwrap();
                url.query_pairs_mut()
                    .append_pair("options", &format!("-c search_path={schema}"));
                Some(Self {
                    engine,
                    location: url.to_string(),
                    _dir: None,
                    schema: Some((admin, schema)),
                })
            }
        }
    }

    /// Opens the store there.
    pub async fn open(&self) -> Result<DynUsageStore, StoreError> {
        crate::open(&self.location).await
    }

    /// Runs raw SQL on the database, beside the store.
    pub async fn exec(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        if self.schema.is_some() {
            let pool = sqlx::PgPool::connect(&self.location).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        } else {
            let path = self.location.trim_start_matches("sqlite://");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
                .await
                .unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }

    /// Removes the store (the PostgreSQL schema; the SQLite directory goes with `self`).
    pub async fn remove(self) {
        if let Some((admin, schema)) = &self.schema {
            let pool = sqlx::PgPool::connect(admin).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

/// The PostgreSQL URL of the tests, `None` (skip) when unset outside CI.
pub fn postgres_url() -> Option<String> {
    match std::env::var(DATABASE_URL) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{DATABASE_URL} is unset under CI=true: the PostgreSQL tests must run in CI \
             (.ci/run starts a cluster with .ci/postgres.sh)"
        ),
        _ => {
            // Once per run, and past the test harness's capture of `eprintln!`.
            static TOLD: std::sync::Once = std::sync::Once::new();
            TOLD.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "note: the PostgreSQL store tests are skipped: set {DATABASE_URL} \
                     (`bash .ci/postgres.sh` starts a throw-away cluster and prints it)"
                );
            });
            None
        }
    }
}
