-- The usage store (SQLite). Instants are integer milliseconds since the Unix epoch (UTC);
-- windows are half-open [window_start, window_end). Keep in step with ../postgres/.

-- One row per source ever written: writers of a source lock it (the write transaction begins
-- IMMEDIATE here, so SQLite serializes writers anyway).
CREATE TABLE usage_sources (
    source TEXT NOT NULL PRIMARY KEY
) STRICT;

-- The windows held per source, one row per written window.
CREATE TABLE usage_coverage (
    source       TEXT    NOT NULL REFERENCES usage_sources (source),
    window_start INTEGER NOT NULL,
    window_end   INTEGER NOT NULL,
    synced_at    INTEGER NOT NULL,
    PRIMARY KEY (source, window_start, window_end),
    CHECK (window_start < window_end)
) STRICT, WITHOUT ROWID;

-- The points of each covered window, one per key and unit. A label the point lacks is stored
-- as '' with its bit clear in `labels` (1 agent, 2 end_user, 4 conversation, 8 usage_type), so
-- that the key is NOT NULL (a primary key) and an absent label differs from an empty one.
CREATE TABLE usage_points (
    source       TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    window_end   INTEGER NOT NULL,
    unit         TEXT    NOT NULL,
    labels       INTEGER NOT NULL CHECK (labels BETWEEN 0 AND 15),
    agent        TEXT    NOT NULL,
    end_user     TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    usage_type   TEXT    NOT NULL,
    agent_name   TEXT,
    input        INTEGER NOT NULL CHECK (input >= 0),
    output       INTEGER NOT NULL CHECK (output >= 0),
    other        INTEGER NOT NULL CHECK (other >= 0),
    PRIMARY KEY (source, window_start, window_end, unit, labels, agent, end_user, conversation, usage_type),
    FOREIGN KEY (source, window_start, window_end)
        REFERENCES usage_coverage (source, window_start, window_end) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
