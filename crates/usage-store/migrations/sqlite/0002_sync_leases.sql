-- Sync leases (SQLite): which replica syncs each source. Instants are integer milliseconds
-- since the Unix epoch (UTC) by the database's clock, never a replica's, so that replicas with
-- skewed clocks agree. Keep in step with ../postgres/.

-- One row per source whose lease was taken and not released: its holder holds it until
-- `expires_at` (then anyone may take it), and `progress` is the opaque text (e.g. JSON) the
-- holder published last (NULL until it does; a new holder starts without it).
CREATE TABLE usage_sync_leases (
    source     TEXT    NOT NULL PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    progress   TEXT,
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
