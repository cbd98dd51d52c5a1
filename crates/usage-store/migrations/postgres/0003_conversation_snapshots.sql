-- Snapshots of conversation totals (Kibana): usage placed in time from the growth between two
-- polls. Instants are integer milliseconds since the Unix epoch (UTC). Keep in step with the
-- other engine's file of the same name.

-- The last totals seen of each conversation of a source.
CREATE TABLE usage_conversations (
    source       TEXT   NOT NULL REFERENCES usage_sources (source),
    agent        TEXT   NOT NULL,
    conversation TEXT   NOT NULL,
    end_user     TEXT,
    agent_name   TEXT,
    unit         TEXT   NOT NULL,
    input        BIGINT NOT NULL CHECK (input >= 0),
    output       BIGINT NOT NULL CHECK (output >= 0),
    other        BIGINT NOT NULL CHECK (other >= 0),
    updated_at   BIGINT NOT NULL,
    observed_at  BIGINT NOT NULL,
    PRIMARY KEY (source, agent, conversation)
);

-- Usage placed in time: a conversation's growth between two polls at its new updated_at, or
-- (baseline = 1) its totals at the first poll that saw it, at its updated_at then.
CREATE TABLE usage_placed (
    source       TEXT    NOT NULL REFERENCES usage_sources (source),
    agent        TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    placed_at    BIGINT  NOT NULL,
    end_user     TEXT,
    agent_name   TEXT,
    unit         TEXT    NOT NULL,
    input        BIGINT  NOT NULL CHECK (input >= 0),
    output       BIGINT  NOT NULL CHECK (output >= 0),
    other        BIGINT  NOT NULL CHECK (other >= 0),
    baseline     INTEGER NOT NULL CHECK (baseline IN (0, 1)),
    observed_at  BIGINT  NOT NULL,
    PRIMARY KEY (source, agent, conversation, placed_at)
);
CREATE INDEX usage_placed_by_time ON usage_placed (source, placed_at);

-- Every poll of a source: when, and from which updated_at on it looked.
CREATE TABLE usage_polls (
    source        TEXT   NOT NULL REFERENCES usage_sources (source),
    polled_at     BIGINT NOT NULL,
    since         BIGINT NOT NULL,
    conversations BIGINT NOT NULL,
    PRIMARY KEY (source, polled_at)
);

-- Totals that shrank (a reset, an edited conversation), as seen at a poll.
CREATE TABLE usage_shrunk (
    source       TEXT   NOT NULL REFERENCES usage_sources (source),
    agent        TEXT   NOT NULL,
    conversation TEXT   NOT NULL,
    observed_at  BIGINT NOT NULL,
    note         TEXT   NOT NULL,
    PRIMARY KEY (source, agent, conversation, observed_at)
);
