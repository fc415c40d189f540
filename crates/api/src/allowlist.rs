//! Patroni's `restapi.allowlist` and `allowlist_include_members`: which
//! client addresses may call the mutating endpoints at all, before their
//! credentials are even looked at.

use raftgres_state::ClusterState;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address or a network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    address: IpAddr,
    prefix: u8,
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNet, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| {
            format!("{text:?} is not an IP address or a network (CIDR, e.g. 10.0.0.0/24); host names are not resolved")
        })?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(IpNet {
            address: address.to_canonical(),
            prefix,
        })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl IpNet {
    pub fn contains(&self, client: IpAddr) -> bool {
        // Each address as its bits and their count; IPv4 in the low 32.
        let bits = |a: IpAddr| -> (u128, u32) {
            match a.to_canonical() {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ((net, width), (ip, ip_width)) = (bits(self.address), bits(client));
        if width != ip_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        let network = |v: u128| v.checked_shr(shift).unwrap_or(0);
        network(net) == network(ip)
    }
}

/// Who may call the mutating endpoints; empty and without members: anyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    pub nets: Vec<IpNet>,
    /// The members' own API addresses (from their `api_url` in the state).
    pub include_members: bool,
}

impl Allowlist {
    pub fn is_open(&self) -> bool {
        self.nets.is_empty() && !self.include_members
    }

    /// Whether `client` may call a mutating endpoint; `state` is read only
    /// when the members' addresses are needed.
    pub fn admits(&self, client: IpAddr, state: impl FnOnce() -> ClusterState) -> bool {
        if self.is_open() || self.nets.iter().any(|n| n.contains(client)) {
            return true;
        }
        self.include_members
            && state().members.values().any(|m| {
                m.api_url
                    .as_deref()
                    .and_then(host_of)
                    .is_some_and(|host| host == client.to_canonical())
            })
    }
}

/// The IP address in an `api_url` such as `https://10.0.0.1:8008/patroni`.
fn host_of(url: &str) -> Option<IpAddr> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.parse::<IpAddr>().ok().map(|a| a.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftgres_state::{Member, MemberRole, PgState};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        let rows = [
            ("10.0.0.0/24", "10.0.0.77", true),
            ("10.0.0.0/24", "10.0.1.1", false),
            ("10.0.0.5", "10.0.0.5", true),
            ("10.0.0.5", "10.0.0.6", false),
            ("0.0.0.0/0", "192.168.1.1", true),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::1", "::1", true),
            ("10.0.0.0/8", "fd00::1", false),
        ];
        for (net, client, inside) in rows {
            let net: IpNet = net.parse().unwrap();
            assert_eq!(net.contains(ip(client)), inside, "{net} {client}");
        }
        for bad in ["db1.example", "10.0.0.0/33", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn members_are_admitted_by_their_api_address_when_asked() {
        let mut state = ClusterState::default();
        state.members.insert(
            "m1".into(),
            Member {
                api_url: Some("https://10.0.0.1:8008/patroni".into()),
                role: MemberRole::Replica,
                pg_state: PgState::Running,
                ..Member::new("m1", 1, "10.0.0.1:7000")
            },
        );
        let state = || state.clone();
        let open = Allowlist::default();
        assert!(open.admits(ip("192.0.2.1"), state));
        let admins = Allowlist {
            nets: vec!["192.0.2.0/28".parse().unwrap()],
            include_members: false,
        };
        assert!(admins.admits(ip("192.0.2.1"), state));
        assert!(!admins.admits(ip("10.0.0.1"), state));
        let with_members = Allowlist {
            include_members: true,
            ..admins
        };
        assert!(with_members.admits(ip("10.0.0.1"), state));
        assert!(!with_members.admits(ip("10.0.0.2"), state));
    }
}
