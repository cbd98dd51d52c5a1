-- The model label (issue 21: the `model` dimension). Keep in step with the other engine's
-- file of the same name.
--
-- Usage stored before this version was written without models, while DigitalOcean (the
-- agent's model) and the new vendors now report one: kept, those hours would answer
-- `group_by=model` with `null` where a live answer names the model. So the stored usage is
-- dropped here (its windows with it) and the background sync fetches it again, within its
-- budget share. Conversation snapshots (Kibana, which has no models) are kept.
DELETE FROM usage_points;
DELETE FROM usage_coverage;
DROP TABLE usage_points;

-- As in 0001, with `model` (label bit 16) in the key.
CREATE TABLE usage_points (
    source       TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    window_end   INTEGER NOT NULL,
    unit         TEXT    NOT NULL,
    labels       INTEGER NOT NULL CHECK (labels BETWEEN 0 AND 31),
    agent        TEXT    NOT NULL,
    end_user     TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    usage_type   TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    agent_name   TEXT,
    input        INTEGER NOT NULL CHECK (input >= 0),
    output       INTEGER NOT NULL CHECK (output >= 0),
    other        INTEGER NOT NULL CHECK (other >= 0),
    PRIMARY KEY (source, window_start, window_end, unit, labels, agent, end_user, conversation, usage_type, model),
    FOREIGN KEY (source, window_start, window_end)
        REFERENCES usage_coverage (source, window_start, window_end) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
