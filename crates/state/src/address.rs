//! A member's Postgres address (`Member::pg_address`), as replicas and
//! poolers dial it and the REST API shows it.

use crate::model::Member;

/// `host` and `port` of a `host:port` or `[v6]:port` address; the host
/// without brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// `None` for anything that is not `host:port` or `[v6]:port`: no port,
    /// a port that is not a number, or an IPv6 address without brackets,
    /// whose port cannot be told apart.
    pub fn parse(address: &str) -> Option<HostPort> {
        let (host, port) = match address.strip_prefix('[') {
            Some(bracketed) => {
                let (host, rest) = bracketed.split_once(']')?;
                (host, rest.strip_prefix(':')?)
            }
            None => {
                let (host, port) = address.split_once(':')?;
                if port.contains(':') {
                    return None;
                }
                (host, port)
            }
        };
        if host.is_empty() {
            return None;
        }
        Some(HostPort {
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    }
}

impl Member {
    /// Where this member's Postgres is reached; `None` when it has not
    /// published a dialable address.
    pub fn pg_host_port(&self) -> Option<HostPort> {
        self.pg_address.as_deref().and_then(HostPort::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_names_v4_and_bracketed_v6() {
        let parse = |a: &str| HostPort::parse(a).map(|h| (h.host, h.port));
        assert_eq!(parse("10.0.0.1:5432"), Some(("10.0.0.1".into(), 5432)));
        assert_eq!(
            parse("db1.example:6432"),
            Some(("db1.example".into(), 6432))
        );
        assert_eq!(parse("[fe80::1]:5433"), Some(("fe80::1".into(), 5433)));
        for bad in [
            "db1",
            "db1:",
            "db1:x",
            ":5432",
            "fe80::1",
            "fe80::1:5432",
            "[::1]",
            "[::1]5432",
            "db1:99999",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
