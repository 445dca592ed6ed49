//! The schema, as a list of migrations (`user_version` counts those applied).

/// Schema migrations, in order: migration `i` brings `user_version` from `i`
/// to `i + 1`. Append only; never edit a released one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: teams, keys, plugin versions, activations.
    "CREATE TABLE teams (
        name TEXT PRIMARY KEY NOT NULL,
        created_at INTEGER NOT NULL,
        allowed_models TEXT,      -- JSON array, NULL = every model
        allowed_providers TEXT,   -- JSON array, NULL = every account
        zdr INTEGER NOT NULL DEFAULT 0,
        policy_config TEXT,       -- JSON document given to the team's plugin
        active_version INTEGER    -- NULL = the bundled default policy
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        team TEXT NOT NULL REFERENCES teams(name),
        key_sha256 TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE policy_versions (
        team TEXT NOT NULL REFERENCES teams(name),
        version INTEGER NOT NULL,
        component BLOB NOT NULL,
        sha256 TEXT NOT NULL,
        wit_version TEXT NOT NULL,
        uploader TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        PRIMARY KEY (team, version)
    );
    CREATE TABLE activations (
        id INTEGER PRIMARY KEY,
        team TEXT NOT NULL REFERENCES teams(name),
        version INTEGER NOT NULL,
        activated_at INTEGER NOT NULL,
        FOREIGN KEY (team, version) REFERENCES policy_versions(team, version)
    );",
    // 2: key scopes (team admin tokens), teams declared by the config file,
    // and why a team's active plugin was set aside after repeated faults.
    "ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'api';
    ALTER TABLE teams ADD COLUMN origin TEXT NOT NULL DEFAULT 'admin';
    ALTER TABLE teams ADD COLUMN set_aside TEXT;",
    // 3: the spend ledger: what served requests cost and would have cost on
    // the team's baseline model, per UTC day, team, provider account, model
    // and policy label (no foreign key: config teams and spend outlive edits).
    "CREATE TABLE spend (
        day TEXT NOT NULL,            -- YYYY-MM-DD, UTC
        team TEXT NOT NULL,
        account TEXT NOT NULL,
        model TEXT NOT NULL,
        label TEXT NOT NULL,
        requests INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        baseline_usd REAL NOT NULL,
        PRIMARY KEY (day, team, account, model, label)
    );
    CREATE INDEX spend_by_team ON spend (team, day);
    CREATE INDEX spend_by_account ON spend (account, day);",
    // 4: the request log: one record per request the executor handled
    // (docs/request-log.md). The columns are what the admin API filters on;
    // `record` is the whole record as JSON (its schema versioned inside).
    "CREATE TABLE request_log (
        seq INTEGER PRIMARY KEY,      -- insertion order: the paging cursor
        id TEXT NOT NULL,             -- the record id (also in `record`)
        time_ms INTEGER NOT NULL,     -- arrival, Unix milliseconds
        team TEXT NOT NULL,
        api TEXT NOT NULL,
        model TEXT NOT NULL,          -- the model the caller asked for
        provider TEXT,                -- the account that served it, if any
        served_model TEXT,
        status INTEGER NOT NULL,      -- the HTTP status the caller got
        label TEXT,                   -- the policy's label for its plan
        record TEXT NOT NULL
    );
    -- One index: every extra one is a b-tree insert per request. Age
    -- retention walks `seq` (arrival order); an `id` lookup scans.
    CREATE INDEX request_log_by_team ON request_log (team, seq);",
    // 5: a team's shadow policy: an uploaded version deciding beside the
    // active one on a sampled share of requests, never routing them. `seq`
    // counts attachments, so re-attaching the same version starts afresh.
    "ALTER TABLE teams ADD COLUMN shadow_version INTEGER;
    ALTER TABLE teams ADD COLUMN shadow_sample REAL;
    ALTER TABLE teams ADD COLUMN shadow_attached_at INTEGER;
    ALTER TABLE teams ADD COLUMN shadow_seq INTEGER NOT NULL DEFAULT 0;",
    // 6: the request log in batches: one row per team per write of the
    // log's writer, its records' JSON Lines compressed (store/request_log.rs).
    // A row per record cost more than the rest of the log together
    // (BENCHMARKS.md §8d). Rows of schema 4 move over as they are, one each.
    "CREATE TABLE request_log_batches (
        seq INTEGER PRIMARY KEY,      -- write order; a cursor is seq << 16 | place
        team TEXT NOT NULL,
        first_ms INTEGER NOT NULL,    -- the earliest arrival in the row, Unix ms
        last_ms INTEGER NOT NULL,     -- the latest
        records INTEGER NOT NULL,
        encoding INTEGER NOT NULL,    -- 0: JSON Lines; 1: LZ4 block of them, size first
        data BLOB NOT NULL
    );
    CREATE INDEX request_log_batches_by_team ON request_log_batches (team, seq);
    INSERT INTO request_log_batches (team, first_ms, last_ms, records, encoding, data)
        SELECT team, time_ms, time_ms, 1, 0, CAST(record || char(10) AS BLOB)
        FROM request_log ORDER BY seq;
    DROP TABLE request_log;",
];
