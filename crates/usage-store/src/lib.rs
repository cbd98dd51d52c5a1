//! `usage-store`: [`usage_core::UsageStore`] on SQLite (embedded, a file) and PostgreSQL (for
//! several replicas), with sqlx.
//!
//! [`open`] takes `[store]`'s location: a file path or `sqlite://PATH` opens (creating) an
//! SQLite file, `postgres://…` a PostgreSQL database. Opening applies the versioned migrations
//! of `migrations/<engine>/` (embedded in the binary, recorded in `_usage_store_migrations`)
//! and refuses a database whose applied migrations this build does not know or knows with
//! other contents, naming the migration.
//!
//! # Schema
//!
//! Both engines have the same tables (`migrations/`): `usage_sources` (one row per source, the
//! lock writers of a source take), `usage_coverage` (one row per written window: source,
//! `[window_start, window_end)` and `synced_at`, instants as integer milliseconds) and
//! `usage_points` (one row per source, window, unit and the four labels — agent, user,
//! conversation, usage type — with the agent name and the three counters). A point's key is
//! its primary key, and its window's coverage row owns it (`ON DELETE CASCADE`), so a point
//! never outlives the coverage that vouches for it. Writing a window deletes the coverage rows
//! it overlaps, with their points, and inserts its own, in one transaction (several disjoint
//! windows written at once share that transaction).
//!
//! `usage_sync_leases` (migration `0002_sync_leases`) holds one sync lease per source: its
//! holder, `expires_at`, the opaque `progress` text the holder published and `updated_at`
//! (milliseconds by the database's clock, never a replica's: `clock_timestamp()` in
//! PostgreSQL, `unixepoch('subsec')` in SQLite). A lease is taken or renewed by one
//! `INSERT … ON CONFLICT DO UPDATE … WHERE` that only succeeds when the lease is free, run out
//! or the caller's, so replicas sharing a PostgreSQL store agree on one holder per source.

mod engine;
mod location;
mod migrate;
mod snapshots;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use sqlx::{Postgres, Sqlite};
use usage_core::{DynUsageStore, StoreError};

pub use location::StoreLocation;
pub use sql::POINTS_PER_STATEMENT;

/// Takes an exclusive lock on `<path>.lock` (created when missing), waiting for another
/// process that holds it; the lock is released when the returned file is dropped.
async fn lock_beside(path: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock = std::path::PathBuf::from(name);
    let shown = lock.display().to_string();
    let taken = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| StoreError::Unavailable {
        message: format!("sqlite: locking {shown}: {e}"),
    })?;
    taken.map_err(|e| StoreError::Config {
        message: format!("sqlite: cannot lock {shown} for the migrations: {e}"),
    })
}

/// Opens the store at `location` (see [`StoreLocation::parse`]), bringing its schema up to
/// date.
pub async fn open(location: &str) -> Result<DynUsageStore, StoreError> {
    StoreLocation::parse(location)?.open().await
}

impl StoreLocation {
    /// Opens the store here, bringing its schema up to date.
    pub async fn open(&self) -> Result<DynUsageStore, StoreError> {
        Ok(match self {
            Self::Sqlite(path) => {
                let pool = engine::connect_sqlite(path, self).await?;
                // SQLite has no lock sqlx's migrator could take (PostgreSQL's uses an advisory
                // lock): processes opening one file at once would both apply a migration, and
                // the second would fail. A lock on a file beside it serializes them.
                let _migrating = lock_beside(path).await?;
                Arc::new(sql::SqlStore::<Sqlite>::new(pool, self).await?)
            }
            Self::Postgres(url) => {
                let pool = engine::connect_postgres(url, self).await?;
                Arc::new(sql::SqlStore::<Postgres>::new(pool, self).await?)
            }
        })
    }
}
