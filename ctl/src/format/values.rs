//! The values shown in the tables and by single-value commands: roles,
//! LSNs, versions, connection strings.

use serde_json::Value;

/// Patroni's names for the roles.
pub fn role_title(role: Option<&str>) -> String {
    match role {
        Some("leader") => "Leader".into(),
        Some("replica") => "Replica".into(),
        Some("sync_standby") => "Sync Standby".into(),
        Some("quorum_standby") => "Quorum Standby".into(),
        Some("witness") => "Witness".into(),
        Some(other) => other.into(),
        None => String::new(),
    }
}

/// A libpq connection string for `host` and `port`; a value with a space,
/// a quote or a backslash quoted as libpq reads it.
pub fn dsn(host: &str, port: u16) -> String {
    let quoted = if host.is_empty() || host.contains([' ', '\'', '\\']) {
        format!("'{}'", host.replace('\\', "\\\\").replace('\'', "\\'"))
    } else {
        host.to_owned()
    };
    format!("host={quoted} port={port}")
}

/// An LSN the way Postgres writes it: `16/B374D848`.
pub fn lsn(bytes: u64) -> String {
    format!("{:X}/{:X}", bytes >> 32, bytes & 0xFFFF_FFFF)
}

/// `GET /patroni` as one line: the agent's version and its Postgres'.
pub fn agent_version(status: &Value) -> String {
    let agent = status
        .pointer("/patroni/version")
        .and_then(Value::as_str)
        .unwrap_or("(version unknown)");
    let postgres = match status.get("server_version") {
        Some(Value::Number(n)) => n.as_u64().filter(|v| *v > 0).map(postgres_version),
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    match postgres {
        Some(postgres) => format!("raftgres-agent {agent}, PostgreSQL {postgres}"),
        None => format!("raftgres-agent {agent}"),
    }
}

/// Postgres' numeric version: 150004 is 15.4; before 10 it had three
/// parts, 90624 is 9.6.24.
pub fn postgres_version(num: u64) -> String {
    if num >= 100_000 {
        format!("{}.{}", num / 10_000, num % 10_000)
    } else {
        format!("{}.{}.{}", num / 10_000, num / 100 % 100, num % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dsn_quotes_as_libpq_reads() {
        assert_eq!(dsn("10.0.0.1", 5432), "host=10.0.0.1 port=5432");
        assert_eq!(dsn("::1", 5433), "host=::1 port=5433");
        assert_eq!(dsn("a b'c", 1), "host='a b\\'c' port=1");
    }

    #[test]
    fn lsn_is_written_as_postgres_writes_it() {
        assert_eq!(lsn(0), "0/0");
        assert_eq!(lsn(0x3000060), "0/3000060");
        assert_eq!(lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(lsn(u64::MAX), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn agent_version_names_both_versions() {
        let status = json!({"server_version": 150004, "patroni": {"version": "0.1.0"}});
        assert_eq!(
            agent_version(&status),
            "raftgres-agent 0.1.0, PostgreSQL 15.4"
        );
        assert_eq!(postgres_version(90624), "9.6.24");
        let witness = json!({"server_version": 0, "patroni": {"version": "0.1.0"}});
        assert_eq!(agent_version(&witness), "raftgres-agent 0.1.0");
        assert_eq!(
            agent_version(&json!([])),
            "raftgres-agent (version unknown)"
        );
    }
}
