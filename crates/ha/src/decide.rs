//! What to do about the lease, one row of the decision table per situation.

use crate::lease::{HolderLease, LeaseObserver, MonoInstant};
use raftgres_state::{ClusterState, Epoch, LeaseVersion};
use std::time::Duration;

/// Everything one decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub now: MonoInstant,
    pub me: &'a str,
    /// The applied replicated state on this member.
    pub state: &'a ClusterState,
    /// This member's own lease, as it last knew it committed.
    pub holding: Option<&'a HolderLease>,
    pub observer: &'a LeaseObserver,
    /// A lease command is already on its way; one at a time keeps the
    /// holder's send instants ordered.
    pub in_flight: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAction {
    /// Nothing to do until `until` (or until the state changes).
    Wait {
        until: Option<MonoInstant>,
    },
    Renew {
        epoch: Epoch,
    },
    /// Compare-and-set on the exact version this member saw expire or released.
    Acquire {
        expected: LeaseVersion,
    },
}

impl<'a> Observation<'a> {
    /// A member competes only if it is registered, not a witness, and not
    /// tagged out of failover.
    fn eligible(&self) -> bool {
        self.state
            .members
            .get(self.me)
            .is_some_and(|m| !m.witness && !m.tags.nofailover && m.tags.failover_priority > 0)
    }
}

fn earliest(a: Option<MonoInstant>, b: Option<MonoInstant>) -> Option<MonoInstant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub fn decide(o: &Observation<'_>) -> LeaseAction {
    let Some(config) = &o.state.config else {
        // The dynamic config (ttl, loop_wait) arrives with bootstrap.
        return LeaseAction::Wait { until: None };
    };
    let lease = &o.state.lease;
    let holding = o.holding.filter(|h| h.matches(lease, o.me));
    if o.in_flight {
        return LeaseAction::Wait {
            until: holding.map(|h| h.deadline),
        };
    }
    if lease.is_held_by(o.me) {
        let renew_at = match holding {
            Some(h) => h.last_renew_sent + Duration::from_millis(config.values.loop_wait_ms),
            // The state names us but we know no deadline (restart, or a reply
            // lost): only a committed renewal can tell us one.
            None => o.now,
        };
        if o.now >= renew_at {
            return LeaseAction::Renew { epoch: lease.epoch };
        }
        return LeaseAction::Wait {
            until: earliest(Some(renew_at), holding.map(|h| h.deadline)),
        };
    }
    if !o.eligible() {
        return LeaseAction::Wait { until: None };
    }
    if o.observer.expired(lease, o.now) {
        return LeaseAction::Acquire {
            expected: lease.version(),
        };
    }
    LeaseAction::Wait {
        until: o.observer.expires_at(lease),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftgres_state::{ConfigValues, DynamicConfig, Lease, Member, MemberRole, PgState, Tags};

    fn at(ms: u64) -> MonoInstant {
        MonoInstant(Duration::from_millis(ms))
    }

    fn member(name: &str, witness: bool, tags: Tags) -> Member {
        Member {
            name: name.into(),
            node_id: 1,
            raft_addr: "x:1".into(),
            api_url: None,
            pg_address: None,
            role: MemberRole::Unknown,
            pg_state: PgState::Unknown,
            timeline: None,
            receive_lsn: None,
            replay_lsn: None,
            tags,
            witness,
        }
    }

    fn state(holder: Option<&str>, epoch: u64, revision: u64) -> ClusterState {
        let mut s = ClusterState {
            config: Some(DynamicConfig {
                version: 1,
                values: ConfigValues {
                    ttl_ms: 2000,
                    loop_wait_ms: 400,
                    retry_timeout_ms: 1000,
                    lease_margin_ms: 400,
                    maximum_lag_on_failover: 0,
                    synchronous_mode: false,
                    synchronous_mode_strict: false,
                    synchronous_node_count: 1,
                    postgresql_parameters: Default::default(),
                    pause: false,
                },
            }),
            lease: Lease {
                holder: holder.map(Into::into),
                epoch: Epoch(epoch),
                revision,
                ttl_ms: 2000,
                last_lsn: None,
                timeline: None,
            },
            ..Default::default()
        };
        let normal = Tags {
            nofailover: false,
            failover_priority: 1,
        };
        s.members
            .insert("a".into(), member("a", false, normal.clone()));
        s.members.insert("b".into(), member("b", false, normal));
        s.members.insert(
            "w".into(),
            member(
                "w",
                true,
                Tags {
                    nofailover: false,
                    failover_priority: 1,
                },
            ),
        );
        s.members.insert(
            "nf".into(),
            member(
                "nf",
                false,
                Tags {
                    nofailover: true,
                    failover_priority: 1,
                },
            ),
        );
        s.members.insert(
            "p0".into(),
            member(
                "p0",
                false,
                Tags {
                    nofailover: false,
                    failover_priority: 0,
                },
            ),
        );
        s
    }

    struct Row {
        name: &'static str,
        me: &'static str,
        state: ClusterState,
        holding: Option<HolderLease>,
        /// (version revision seen, at ms)
        seen: Option<u64>,
        now: u64,
        in_flight: bool,
        want: LeaseAction,
    }

    fn held(epoch: u64, sent: u64) -> HolderLease {
        HolderLease::acquired(
            Epoch(epoch),
            at(sent),
            Duration::from_millis(2000),
            Duration::from_millis(400),
        )
    }

    #[test]
    fn decision_table() {
        let v = |epoch, revision| LeaseVersion {
            epoch: Epoch(epoch),
            revision,
        };
        let rows = vec![
            Row {
                name: "no config yet: wait",
                me: "a",
                state: ClusterState::default(),
                holding: None,
                seen: None,
                now: 0,
                in_flight: false,
                want: LeaseAction::Wait { until: None },
            },
            Row {
                name: "fresh cluster, no holder: acquire",
                me: "a",
                state: state(None, 0, 0),
                holding: None,
                seen: None,
                now: 0,
                in_flight: false,
                want: LeaseAction::Acquire { expected: v(0, 0) },
            },
            Row {
                name: "released lease: acquire at once",
                me: "b",
                state: state(None, 3, 7),
                holding: None,
                seen: Some(0),
                now: 1,
                in_flight: false,
                want: LeaseAction::Acquire { expected: v(3, 7) },
            },
            Row {
                name: "holder before renew time: wait for renew or deadline",
                me: "a",
                state: state(Some("a"), 1, 1),
                holding: Some(held(1, 1000)),
                seen: None,
                now: 1200,
                in_flight: false,
                want: LeaseAction::Wait {
                    until: Some(at(1400)),
                },
            },
            Row {
                name: "holder at renew time: renew",
                me: "a",
                state: state(Some("a"), 1, 1),
                holding: Some(held(1, 1000)),
                seen: None,
                now: 1400,
                in_flight: false,
                want: LeaseAction::Renew { epoch: Epoch(1) },
            },
            Row {
                name: "holder past its deadline still renews: only a commit can restore it",
                me: "a",
                state: state(Some("a"), 1, 1),
                holding: Some(held(1, 0)),
                seen: None,
                now: 5000,
                in_flight: false,
                want: LeaseAction::Renew { epoch: Epoch(1) },
            },
            Row {
                name: "state names me, no deadline known: renew now",
                me: "a",
                state: state(Some("a"), 2, 5),
                holding: None,
                seen: None,
                now: 10,
                in_flight: false,
                want: LeaseAction::Renew { epoch: Epoch(2) },
            },
            Row {
                name: "my belief is an older epoch: renew the current one",
                me: "a",
                state: state(Some("a"), 2, 5),
                holding: Some(held(1, 0)),
                seen: None,
                now: 10,
                in_flight: false,
                want: LeaseAction::Renew { epoch: Epoch(2) },
            },
            Row {
                name: "renewal in flight: wait until deadline",
                me: "a",
                state: state(Some("a"), 1, 1),
                holding: Some(held(1, 0)),
                seen: None,
                now: 500,
                in_flight: true,
                want: LeaseAction::Wait {
                    until: Some(at(1600)),
                },
            },
            Row {
                name: "other holds, not expired: wait until expiry",
                me: "b",
                state: state(Some("a"), 1, 4),
                holding: None,
                seen: Some(100),
                now: 1000,
                in_flight: false,
                want: LeaseAction::Wait {
                    until: Some(at(2100)),
                },
            },
            Row {
                name: "other holds, expired: acquire with the version seen",
                me: "b",
                state: state(Some("a"), 1, 4),
                holding: None,
                seen: Some(100),
                now: 2100,
                in_flight: false,
                want: LeaseAction::Acquire { expected: v(1, 4) },
            },
            Row {
                name: "other holds, never seen: wait",
                me: "b",
                state: state(Some("a"), 1, 4),
                holding: None,
                seen: None,
                now: 9999,
                in_flight: false,
                want: LeaseAction::Wait { until: None },
            },
            Row {
                name: "deposed: another holds, my old belief is ignored",
                me: "a",
                state: state(Some("b"), 2, 6),
                holding: Some(held(1, 0)),
                seen: Some(0),
                now: 100,
                in_flight: false,
                want: LeaseAction::Wait {
                    until: Some(at(2000)),
                },
            },
            Row {
                name: "witness never competes",
                me: "w",
                state: state(None, 0, 0),
                holding: None,
                seen: None,
                now: 0,
                in_flight: false,
                want: LeaseAction::Wait { until: None },
            },
            Row {
                name: "nofailover never competes",
                me: "nf",
                state: state(Some("a"), 1, 1),
                holding: None,
                seen: Some(0),
                now: 99_999,
                in_flight: false,
                want: LeaseAction::Wait { until: None },
            },
            Row {
                name: "priority 0 never competes",
                me: "p0",
                state: state(None, 1, 2),
                holding: None,
                seen: None,
                now: 0,
                in_flight: false,
                want: LeaseAction::Wait { until: None },
            },
            Row {
                name: "unregistered member never competes",
                me: "zz",
                state: state(None, 0, 0),
                holding: None,
                seen: None,
                now: 0,
                in_flight: false,
                want: LeaseAction::Wait { until: None },
            },
            Row {
                name: "acquire in flight: wait",
                me: "b",
                state: state(None, 1, 2),
                holding: None,
                seen: None,
                now: 0,
                in_flight: true,
                want: LeaseAction::Wait { until: None },
            },
        ];
        for row in rows {
            let mut observer = LeaseObserver::default();
            if let Some(seen) = row.seen {
                observer.observe(&row.state.lease, at(seen));
            }
            let o = Observation {
                now: at(row.now),
                me: row.me,
                state: &row.state,
                holding: row.holding.as_ref(),
                observer: &observer,
                in_flight: row.in_flight,
            };
            assert_eq!(decide(&o), row.want, "{}", row.name);
        }
    }
}
