//! Which connections a server takes: at most a total, and at most a share
//! per client address, so that a flood of idle sockets from one host can
//! neither take the server's file descriptors nor the other clients'
//! places. The REST API and the Raft port both admit through it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// The connections a server holds, in total and per address.
#[derive(Clone)]
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One admitted connection's place; dropping it frees the place.
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_address.remove(&self.address);
            }
        }
    }
}

impl Admission {
    pub fn new(max_total: usize, max_per_address: usize) -> Admission {
        Admission {
            max_total,
            max_per_address,
            counts: Arc::default(),
        }
    }

    /// A place for a connection from `peer`, or `None` when the total or
    /// `peer`'s share is used: close the connection then.
    pub fn admit(&self, peer: SocketAddr) -> Option<Slot> {
        // An IPv4 client seen through an IPv6 socket is the same address.
        let address = peer.ip().to_canonical();
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mine = c.by_address.get(&address).copied().unwrap_or(0);
        if c.total >= self.max_total || mine >= self.max_per_address {
            return None;
        }
        c.total += 1;
        *c.by_address.entry(address).or_insert(0) += 1;
        Some(Slot {
            counts: self.counts.clone(),
            address,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_address_and_freed_on_drop() {
        let admission = Admission::new(3, 2);
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let a1 = admission.admit(a).expect("first from a");
        let _a2 = admission.admit(a).expect("second from a");
        assert!(admission.admit(a).is_none(), "a's share is used");
        let _b1 = admission.admit(b).expect("b has its own share");
        assert!(admission.admit(b).is_none(), "the total is used");
        drop(a1);
        let b2 = admission.admit(b).expect("a freed a slot");
        drop(b2);
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5001".parse().unwrap();
        let _a3 = admission.admit(mapped).expect("a's second place");
        assert!(
            admission.admit(a).is_none(),
            "a mapped IPv4 address shares its share"
        );
    }
}
