//! Everything that is specific to PostgreSQL 15: where its binaries live on
//! Debian, the names of the files it reads, and the labels `pg_controldata`
//! prints. Moving to another major version starts (and ideally ends) here.

/// The major version this crate is written and tested against.
pub const MAJOR_VERSION: u32 = 15;

/// Where Debian's `postgresql-15` package installs the server binaries.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The binaries this crate runs, all looked up in `PgSettings::bin_dir`.
pub(crate) mod bin {
    pub const INITDB: &str = "initdb";
    pub const POSTGRES: &str = "postgres";
    pub const PG_BASEBACKUP: &str = "pg_basebackup";
    pub const PG_REWIND: &str = "pg_rewind";
    pub const PG_CONTROLDATA: &str = "pg_controldata";
}

/// Files inside the data directory.
pub(crate) mod file {
    /// Present in every initialized data directory.
    pub const PG_VERSION: &str = "PG_VERSION";
    pub const POSTGRESQL_CONF: &str = "postgresql.conf";
    pub const PG_HBA_CONF: &str = "pg_hba.conf";
    /// Ours; `postgresql.conf` includes it. Rewritten on every role change.
    pub const MANAGED_CONF: &str = "raftgres.conf";
    /// Since PostgreSQL 12 the presence of this file, not a `recovery.conf`,
    /// makes the server start as a standby.
    pub const STANDBY_SIGNAL: &str = "standby.signal";
    /// Targeted recovery; we never create it, but a leftover one would make a
    /// primary stop at the end of its WAL instead of opening for writes.
    pub const RECOVERY_SIGNAL: &str = "recovery.signal";
    /// The postmaster's lock file; its first line is the postmaster's PID.
    pub const POSTMASTER_PID: &str = "postmaster.pid";
    /// A Unix socket is `<dir>/.s.PGSQL.<port>`, its lock file the same
    /// with `.lock` appended.
    pub const SOCKET_PREFIX: &str = ".s.PGSQL.";
}

/// Server settings whose names changed across versions.
pub(crate) mod guc {
    /// Renamed from `wal_keep_segments` in PostgreSQL 13.
    pub const WAL_KEEP_SIZE: &str = "wal_keep_size";
    /// In `postgresql.conf` (not `recovery.conf`) since PostgreSQL 12, and
    /// reloadable (SIGHUP) since 13, so a standby can follow a new primary
    /// without a restart.
    pub const PRIMARY_CONNINFO: &str = "primary_conninfo";
    pub const PRIMARY_SLOT_NAME: &str = "primary_slot_name";
}

/// The labels `pg_controldata` prints (with `LC_ALL=C`) for the fields we read.
pub(crate) mod controldata {
    pub const SYSTEM_ID: &str = "Database system identifier";
    pub const STATE: &str = "Database cluster state";
    pub const CHECKPOINT_LSN: &str = "Latest checkpoint location";
    pub const REDO_LSN: &str = "Latest checkpoint's REDO location";
    pub const TIMELINE: &str = "Latest checkpoint's TimeLineID";
    pub const MIN_RECOVERY_LSN: &str = "Minimum recovery ending location";
    pub const MIN_RECOVERY_TIMELINE: &str = "Min recovery ending loc's timeline";

    /// The values of `Database cluster state` (`dbState()` in
    /// `src/bin/pg_controldata/pg_controldata.c`).
    pub mod state {
        pub const STARTING: &str = "starting up";
        pub const SHUT_DOWN: &str = "shut down";
        pub const SHUT_DOWN_IN_RECOVERY: &str = "shut down in recovery";
        pub const SHUTTING_DOWN: &str = "shutting down";
        pub const IN_CRASH_RECOVERY: &str = "in crash recovery";
        pub const IN_ARCHIVE_RECOVERY: &str = "in archive recovery";
        pub const IN_PRODUCTION: &str = "in production";
    }
}

/// SQL whose spelling depends on the version.
pub(crate) mod sql {
    /// `pg_get_wal_replay_pause_state()` exists since PostgreSQL 14; before,
    /// `pg_is_wal_replay_paused()` could not tell "requested" from "paused".
    pub const REPLAY_PAUSE_STATE: &str = "pg_get_wal_replay_pause_state()";
    /// Its answer when no pause is requested.
    pub const NOT_PAUSED: &str = "not paused";
}
