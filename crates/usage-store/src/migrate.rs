//! The versioned migrations (`migrations/<engine>/<version>_<description>.sql`), embedded in the
//! binary, and the schema check at open: sqlx's migrator applies what is missing and refuses a
//! database whose applied migrations this build does not know, or knows with other contents,
//! and the store reports which migration in terms of its file name.

use sqlx::SqlSafeStr;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use usage_core::StoreError;

/// The table recording the applied migrations: the store's own, so that a database shared
/// with another application that uses sqlx's default table keeps the two apart.
pub(crate) const TABLE: &str = "_usage_store_migrations";

/// One migration file, embedded.
#[derive(Debug)]
pub(crate) struct Embedded {
    /// The number the file name starts with.
    pub version: i64,
    /// The file name without `.sql`: `<version, 4 digits>_<description>`.
    pub name: &'static str,
    /// The file's text.
    pub sql: &'static str,
}

impl Embedded {
    /// The file name after the version: what sqlx records as the description.
    pub fn description(&self) -> &'static str {
        self.name.split_once('_').map_or(self.name, |(_, d)| d)
    }
}

/// Embeds `migrations/<engine>/<name>.sql` as migration `version`.
macro_rules! embed {
    ($engine:literal, $version:literal, $name:literal) => {
        Embedded {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/", $engine, "/", $name, ".sql")),
        }
    };
}

/// The SQLite migrations, in order.
pub(crate) const SQLITE: &[Embedded] = &[
    embed!("sqlite", 1, "0001_usage_store"),
    embed!("sqlite", 2, "0002_sync_leases"),
    embed!("sqlite", 3, "0003_conversation_snapshots"),
    embed!("sqlite", 4, "0004_snapshot_rounds"),
    embed!("sqlite", 5, "0005_model_label"),
];

/// The PostgreSQL migrations, in order (the same versions and names as SQLite's).
pub(crate) const POSTGRES: &[Embedded] = &[
    embed!("postgres", 1, "0001_usage_store"),
    embed!("postgres", 2, "0002_sync_leases"),
    embed!("postgres", 3, "0003_conversation_snapshots"),
    embed!("postgres", 4, "0004_snapshot_rounds"),
    embed!("postgres", 5, "0005_model_label"),
];

/// Builds sqlx's migrator over `migrations`, recording them in [`TABLE`].
pub(crate) fn migrator(migrations: &'static [Embedded]) -> Migrator {
    let mut migrator = Migrator::with_migrations(
        migrations
            .iter()
            .map(|m| {
                Migration::new(
                    m.version,
                    m.description().into(),
                    MigrationType::Simple,
                    m.sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    migrator.dangerous_set_table_name(TABLE);
    migrator
}

/// Names a migration as its file does: `0001_usage_store`.
pub(crate) fn name(version: i64, description: &str) -> String {
    format!("{version:04}_{description}")
}

/// Names a migration this build knows, or gives its number with `recorded` (what the database
/// says it is) for one it does not.
pub(crate) fn known_name(migrations: &[Embedded], version: i64, recorded: Option<&str>) -> String {
    match migrations.iter().find(|m| m.version == version) {
        Some(m) => m.name.to_owned(),
        None => name(version, recorded.unwrap_or("(unknown description)")),
    }
}

/// The version a migration error is about, if any.
pub(crate) fn version_of(e: &MigrateError) -> Option<i64> {
    match e {
        MigrateError::ExecuteMigration(_, v)
        | MigrateError::VersionMissing(v)
        | MigrateError::VersionMismatch(v)
        | MigrateError::VersionNotPresent(v)
        | MigrateError::VersionTooOld(v, _)
        | MigrateError::VersionTooNew(v, _)
        | MigrateError::Dirty(v) => Some(*v),
        _ => None,
    }
}

/// Turns a migrator error about `migration` into the store's error, saying what to do.
pub(crate) fn schema_error(engine: &str, migration: String, e: &MigrateError) -> StoreError {
    let message = match e {
        MigrateError::VersionMissing(_) => format!(
            "is applied to this {engine} database but unknown to this build (a newer \
             usage-gateway migrated it, or it is another application's): refusing to use it; \
             run the newer build, or point the store at another database"
        ),
        MigrateError::VersionMismatch(_) => format!(
            "is applied to this {engine} database with other contents than this build's \
             (checksum mismatch in {TABLE}): the schema was changed by hand or by another \
             build; refusing to use it"
        ),
        MigrateError::Dirty(_) => format!(
            "is recorded as partially applied to this {engine} database (dirty in {TABLE}): \
             repair the schema by hand, then remove that row"
        ),
        MigrateError::ExecuteMigration(source, _) => {
            format!("failed on this {engine} database: {source}")
        }
        other => format!("{other}"),
    };
    StoreError::Schema { migration, message }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "the test reads the crate's own files")]

    use super::*;

    /// The embedded lists are exactly the files in `migrations/<engine>/`, so a new file
    /// cannot be forgotten, and both engines have the same versions.
    #[test]
    fn every_migration_file_is_embedded() {
        for (engine, embedded) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(engine);
            let mut files: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            files.sort();
            let names: Vec<String> = embedded.iter().map(|m| format!("{}.sql", m.name)).collect();
            assert_eq!(files, names, "{engine}");
            for m in embedded {
                assert_eq!(m.name, name(m.version, m.description()), "{engine}");
            }
            assert!(embedded.windows(2).all(|w| w[0].version < w[1].version));
        }
        let versions = |e: &[Embedded]| e.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(versions(SQLITE), versions(POSTGRES));
    }
}
