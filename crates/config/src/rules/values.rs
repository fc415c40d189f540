//! Rules for one value at a time, each returning what is wrong as a
//! sentence; the caller names the key.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;

const MAX_IDENTIFIER_LEN: usize = 63;

pub(crate) fn identifier(value: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
    if (1..=MAX_IDENTIFIER_LEN).contains(&value.len()) && value.bytes().all(allowed) {
        Ok(())
    } else {
        Err(format!(
            "must be 1 to {MAX_IDENTIFIER_LEN} characters from a-z, 0-9, `_` and `-`, \
             got {value:?}"
        ))
    }
}

/// A PostgreSQL role name the agent can use without quoting.
pub(crate) fn role_name(value: &str) -> Result<(), String> {
    let first_ok = |b: u8| b.is_ascii_lowercase() || b == b'_';
    let rest_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let bytes = value.as_bytes();
    match bytes.split_first() {
        Some((&first, rest))
            if bytes.len() <= MAX_IDENTIFIER_LEN
                && first_ok(first)
                && rest.iter().all(|&b| rest_ok(b)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "must be 1 to {MAX_IDENTIFIER_LEN} characters from a-z, 0-9 and `_`, \
             not starting with a digit, got {value:?}"
        )),
    }
}

/// A PostgreSQL parameter name the agent does not set itself.
pub(crate) fn parameter_name(name: &str) -> Result<(), String> {
    let first_ok = |b: u8| b.is_ascii_lowercase() || b == b'_';
    let rest_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.';
    let well_formed = name
        .as_bytes()
        .split_first()
        .is_some_and(|(&first, rest)| first_ok(first) && rest.iter().all(|&b| rest_ok(b)));
    if !well_formed {
        return Err(format!(
            "parameter names start with a-z or `_` and continue with a-z, 0-9, `_` and `.`, \
             got {name:?}"
        ));
    }
    if raftgres_state::AGENT_MANAGED_PARAMETERS.contains(&name) {
        return Err(format!(
            "the agent owns the parameter {name:?} and sets it itself; remove it from \
             postgresql.parameters"
        ));
    }
    Ok(())
}

pub(crate) fn positive_id(id: u64) -> Result<(), String> {
    if id == 0 {
        Err("must be greater than 0: Raft ids start at 1".into())
    } else {
        Ok(())
    }
}

pub(crate) fn positive(value: u64) -> Result<(), String> {
    if value == 0 {
        Err("must be greater than 0".into())
    } else {
        Ok(())
    }
}

/// `example_port` only shapes the examples in the messages.
pub(crate) fn listen_address(text: &str, example_port: u16) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        format!(
            "expected an IP address and port like 127.0.0.1:{example_port} or \
             [::]:{example_port} (not a hostname), got {text:?}"
        )
    })?;
    if addr.port() == 0 {
        return Err(format!(
            "port 0 lets the system pick a port peers cannot know; choose a fixed port, \
             got {text:?}"
        ));
    }
    Ok(addr)
}

fn address_examples(port: u16) -> String {
    format!("10.0.0.1:{port}, node1.example:{port} or [::1]:{port}")
}

/// A `host:port` another member can dial. `example_port` only shapes the
/// examples in the messages.
pub(crate) fn dialable_address(text: &str, example_port: u16) -> Result<(), String> {
    let examples = address_examples(example_port);
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("expected host:port like {examples}, got {text:?}"));
    };
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0);
    if !port_ok {
        return Err(format!(
            "expected a port from 1 to 65535 after the last `:`, got {text:?}"
        ));
    }
    let ip = if let Some(bracketed) = host.strip_prefix('[') {
        let v6 = bracketed
            .strip_suffix(']')
            .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
            .ok_or_else(|| format!("expected an IPv6 address inside [ ], got {text:?}"))?;
        Some(IpAddr::V6(v6))
    } else {
        let hostname_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !hostname_ok {
            return Err(format!(
                "expected host:port like {examples} (IPv6 inside [ ], no scheme), \
                 got {text:?}"
            ));
        }
        host.parse::<IpAddr>().ok()
    };
    if ip.is_some_and(|ip| ip.is_unspecified()) {
        return Err(format!(
            "{text:?} means every interface, which others cannot dial; give a concrete address"
        ));
    }
    Ok(())
}

/// A database or user name pgbouncer's `[databases]` lines can carry as is.
pub(crate) fn pg_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_IDENTIFIER_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1-{MAX_IDENTIFIER_LEN} characters of letters, digits, `_` and `-`, got {value:?}"
        ))
    }
}

/// Whether two servers binding `a` and `b` would fight over the port. A
/// wildcard bind takes the port on every address, so it collides with any
/// other bind of that port.
pub(crate) fn binds_collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

pub(crate) fn absolute(path: &Path) -> Result<(), String> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(format!(
            "must be an absolute path, got {:?}",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialable_addresses() {
        for good in [
            "127.0.0.1:7101",
            "node1:1",
            "node-1.example.com:65535",
            "[::1]:7101",
            "[fe80::1]:80",
        ] {
            assert_eq!(dialable_address(good, 7101), Ok(()), "{good}");
        }
        for bad in [
            "",
            "7101",
            "node1",
            "node1:",
            ":7101",
            "node1:0",
            "node1:65536",
            "node1:+80",
            "node1: 80",
            "::1:7101",
            "[::1:7101",
            "[nothex]:7101",
            "http://node1:7101",
            "node 1:7101",
            "0.0.0.0:7101",
            "[::]:7101",
        ] {
            assert!(dialable_address(bad, 7101).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn identifiers() {
        assert_eq!(identifier("a"), Ok(()));
        assert_eq!(identifier("node_1-b"), Ok(()));
        assert_eq!(identifier(&"a".repeat(63)), Ok(()));
        for bad in ["", "Node1", "node.1", "node 1", "nöde", &"a".repeat(64)] {
            assert!(identifier(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn listen_addresses() {
        assert!(listen_address("0.0.0.0:7101", 7101).is_ok());
        assert!(listen_address("[::]:7101", 7101).is_ok());
        assert!(listen_address("127.0.0.1:0", 7101).is_err());
        assert!(listen_address("localhost:7101", 7101).is_err());
        let message = listen_address("localhost", 5432).unwrap_err();
        assert!(message.contains("127.0.0.1:5432"), "{message}");
    }

    #[test]
    fn role_names() {
        assert_eq!(role_name("postgres"), Ok(()));
        assert_eq!(role_name("_repl_2"), Ok(()));
        assert_eq!(role_name(&"a".repeat(63)), Ok(()));
        for bad in [
            "",
            "2pg",
            "Postgres",
            "repl-user",
            "pg.user",
            "pg user",
            &"a".repeat(64),
        ] {
            assert!(role_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn parameter_names() {
        for good in [
            "shared_buffers",
            "_x",
            "auto_explain.log_min_duration",
            "work_mem2",
        ] {
            assert_eq!(parameter_name(good), Ok(()), "{good}");
        }
        for bad in ["", "Work_mem", "2x", ".x", "work-mem", "work mem"] {
            assert!(parameter_name(bad).is_err(), "{bad:?} was accepted");
        }
        for managed in raftgres_state::AGENT_MANAGED_PARAMETERS {
            let message = parameter_name(managed).unwrap_err();
            assert!(message.contains("the agent owns"), "{message}");
        }
    }
}
