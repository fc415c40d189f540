//! Planned changes of primary: who may take over, and when the holder acts.
//!
//! A switchover runs in five steps, each a row of a decision table:
//! the holder stops its Postgres cleanly (`PgAction::StopForSwitchover`), the
//! candidate replays up to the shutdown checkpoint, the holder transfers the
//! lease by compare-and-set (`LeaseAction::Transfer`), the candidate renews
//! and promotes, and the old primary rejoins as a replica (rewind, follow).
//! A request that names a candidate lets only that candidate compete once
//! the lease expires: a failover (`from: None`), or a switchover whose
//! holder died before it could hand over.

use crate::candidacy::{Unfit, live_rival, may_compete, recorded_rank, within_lag};
use raftgres_state::{ClusterState, Member, MemberRole, PgState, Switchover};
use std::time::Duration;

/// How long a holder that stopped for a switchover waits for the candidate
/// to replay its shutdown checkpoint before it gives up and starts again as
/// primary: writes are down meanwhile, so this bounds the outage of a
/// switchover that cannot finish.
pub const SWITCHOVER_CATCHUP: Duration = Duration::from_secs(10);

/// The switchover this member, as holder, must carry out now: one from it
/// whose scheduled time (the requester's wall clock) has come. A failover
/// request (no `from`) that finds this member holding the lease is one too:
/// a member took the lease (or kept it) before the request landed, and the
/// operator still wants the named candidate.
pub fn due_switchover<'a>(
    state: &'a ClusterState,
    me: &str,
    now_unix_ms: u64,
) -> Option<&'a Switchover> {
    state.switchover.as_ref().filter(|s| {
        let mine = match s.from.as_deref() {
            Some(from) => from == me,
            None => state.lease.is_held_by(me) && s.to.as_deref() != Some(me),
        };
        mine && s.at_unix_ms.is_none_or(|at| at <= now_unix_ms)
    })
}

/// A switchover whose time has come is under way. Each of its steps waits
/// for another member's observed progress (the holder's stop, the
/// candidate's replay of the shutdown checkpoint, the transfer), so while
/// it lasts the members look at Postgres far more often than `loop_wait`.
pub fn switchover_under_way(state: &ClusterState, now_unix_ms: u64) -> bool {
    state
        .switchover
        .as_ref()
        .is_some_and(|s| s.at_unix_ms.is_none_or(|at| at <= now_unix_ms))
}

/// Why `m` cannot take over from the holder now, or `None` when it can: a
/// streaming replica of this cluster, fresh, tagged in, within
/// `maximum_lag_on_failover` of the holder's last position, and on the
/// cluster's timeline.
pub fn unfit_candidate(
    state: &ClusterState,
    m: &Member,
    fresh: &dyn Fn(&Member) -> bool,
) -> Option<Unfit> {
    fit_candidate(state, m, fresh).err()
}

fn fit_candidate(
    state: &ClusterState,
    m: &Member,
    fresh: &dyn Fn(&Member) -> bool,
) -> Result<(), Unfit> {
    if state.lease.is_held_by(&m.name) {
        return Err(Unfit::HoldsLease(m.name.clone()));
    }
    may_compete(state, m)?;
    if m.pg_state == PgState::Running && m.role == MemberRole::Replica && !m.streaming {
        return Err(Unfit::NotStreaming(m.name.clone()));
    }
    live_rival(state, m, fresh)?;
    within_lag(state, &m.name, m.replay_lsn.unwrap_or_default())
}

/// The member a switchover hands the lease to: `to` if it is fit, else the
/// error says why; with no `to`, the fit replica with the most WAL, then
/// the highest `failover_priority`, then the first name.
pub fn switchover_candidate(
    state: &ClusterState,
    to: Option<&str>,
    fresh: &dyn Fn(&Member) -> bool,
) -> Result<String, String> {
    if let Some(to) = to {
        let Some(m) = state.members.get(to) else {
            return Err(format!("candidate {to} is not a member of this cluster"));
        };
        return match unfit_candidate(state, m, fresh) {
            Some(reason) => Err(reason.to_string()),
            None => Ok(to.to_owned()),
        };
    }
    state
        .members
        .values()
        .filter(|m| unfit_candidate(state, m, fresh).is_none())
        .max_by_key(|m| recorded_rank(m))
        .map(|m| m.name.clone())
        .ok_or_else(|| {
            "no replica can take over: none is a fresh, streaming replica within maximum_lag_on_failover"
                .to_owned()
        })
}

/// Once the holder has stopped, the member to hand the lease to: `to`, or
/// the most advanced fresh replica. Streaming is not required any more: the
/// stopped primary ended every stream, and what counts now is how far the
/// candidate replayed, which the caller compares with the shutdown checkpoint.
pub fn handover_target<'a>(
    state: &'a ClusterState,
    to: Option<&str>,
    fresh: &dyn Fn(&Member) -> bool,
) -> Option<&'a Member> {
    state
        .members
        .values()
        .filter(|m| to.is_none_or(|to| m.name == to))
        .filter(|m| !state.lease.is_held_by(&m.name) && live_rival(state, m, fresh).is_ok())
        .max_by_key(|m| recorded_rank(m))
}

/// The candidate a pending request names: once the lease expires, it
/// competes alone (while it lives). For a failover request that is the
/// point; for a switchover whose holder died first, it is still the member
/// the operator asked for.
pub fn failover_candidate(state: &ClusterState) -> Option<&str> {
    state.switchover.as_ref().and_then(|s| s.to.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cluster, streaming};
    use raftgres_state::Lsn;

    #[test]
    fn the_best_fit_replica_is_chosen() {
        let s = streaming(cluster(Some("a")));
        assert_eq!(switchover_candidate(&s, None, &|_| true), Ok("b".into()));
        assert_eq!(
            switchover_candidate(&s, Some("c"), &|_| true),
            Ok("c".into())
        );
        let stale_b = |m: &Member| m.name != "b";
        assert_eq!(switchover_candidate(&s, None, &stale_b), Ok("c".into()));
    }

    #[test]
    fn unfit_candidates_are_refused_with_the_reason() {
        let base = streaming(cluster(Some("a")));
        type Change = Box<dyn Fn(&mut ClusterState)>;
        let cases: Vec<(&str, Change, &str)> = vec![
            ("unknown", Box::new(|_| {}), "not a member"),
            ("holder", Box::new(|_| {}), "already holds"),
            (
                "stopped",
                Box::new(|s| s.members.get_mut("b").unwrap().pg_state = PgState::Stopped),
                "not a running replica",
            ),
            (
                "not streaming",
                Box::new(|s| s.members.get_mut("b").unwrap().streaming = false),
                "not streaming",
            ),
            (
                "nofailover",
                Box::new(|s| s.members.get_mut("b").unwrap().tags.nofailover = true),
                "nofailover",
            ),
            (
                "witness",
                Box::new(|s| s.members.get_mut("b").unwrap().witness = true),
                "witness",
            ),
            (
                "lagging",
                Box::new(|s| s.members.get_mut("b").unwrap().replay_lsn = Some(Lsn(1000))),
                "maximum_lag_on_failover",
            ),
            (
                "not synchronous, in synchronous mode",
                Box::new(|s| {
                    s.synchronous = true;
                    s.sync_set = ["c".to_owned()].into();
                }),
                "b is not a synchronous standby",
            ),
            (
                "on an older timeline",
                Box::new(|s| s.lease.timeline = Some(2)),
                "behind the cluster's timeline 2",
            ),
            (
                "timeline unknown",
                Box::new(|s| s.members.get_mut("b").unwrap().timeline = None),
                "has not reported its timeline",
            ),
        ];
        for (case, change, want) in cases {
            let mut s = base.clone();
            change(&mut s);
            let to = match case {
                "unknown" => "zz",
                "holder" => "a",
                _ => "b",
            };
            let err = switchover_candidate(&s, Some(to), &|_| true).unwrap_err();
            assert!(err.contains(want), "{case}: {err}");
        }
        let err = switchover_candidate(&base, Some("b"), &|_| false).unwrap_err();
        assert!(err.contains("recently"), "{err}");
        let mut none = base.clone();
        for m in none.members.values_mut() {
            m.streaming = false;
        }
        assert!(switchover_candidate(&none, None, &|_| true).is_err());
    }

    #[test]
    fn the_lease_is_never_handed_to_a_replica_off_the_timeline() {
        let mut s = streaming(cluster(Some("a")));
        s.lease.timeline = Some(2);
        s.members.get_mut("c").unwrap().timeline = Some(2);
        assert_eq!(
            switchover_candidate(&s, None, &|_| true),
            Ok("c".into()),
            "b has more WAL but is on timeline 1"
        );
        assert_eq!(
            handover_target(&s, None, &|_| true).map(|m| m.name.as_str()),
            Some("c")
        );
        assert!(handover_target(&s, Some("b"), &|_| true).is_none());
    }

    #[test]
    fn a_switchover_is_under_way_for_every_member_from_its_time() {
        let mut s = cluster(Some("a"));
        assert!(!switchover_under_way(&s, 5_000));
        s.switchover = Some(Switchover {
            from: Some("a".into()),
            to: Some("b".into()),
            at_unix_ms: Some(1_000),
        });
        assert!(!switchover_under_way(&s, 999));
        assert!(switchover_under_way(&s, 1_000));
        s.switchover.as_mut().expect("set").at_unix_ms = None;
        assert!(switchover_under_way(&s, 0));
    }

    #[test]
    fn a_switchover_is_due_for_its_holder_at_its_time() {
        let mut s = cluster(Some("a"));
        s.switchover = Some(Switchover {
            from: Some("a".into()),
            to: None,
            at_unix_ms: Some(1_000),
        });
        assert!(due_switchover(&s, "a", 999).is_none());
        assert!(due_switchover(&s, "a", 1_000).is_some());
        assert!(due_switchover(&s, "b", 5_000).is_none());
        s.switchover = Some(Switchover {
            from: None,
            to: Some("b".into()),
            at_unix_ms: None,
        });
        // A failover request that finds a holder is that holder's switchover.
        assert!(due_switchover(&s, "a", 5_000).is_some());
        assert!(due_switchover(&s, "b", 5_000).is_none());
        assert_eq!(failover_candidate(&s), Some("b"));
        s.switchover.as_mut().unwrap().to = None;
        assert_eq!(failover_candidate(&s), None);
    }

    mod rows {
        //! The switchover and named-failover rows of both decision tables.

        use crate::decide::{LeaseAction, Observation, decide};
        use crate::lease::LeaseObserver;
        use crate::local::PgView;
        use crate::peers::PeerObserver;
        use crate::postgres::{PgAction, PgObservation, decide_postgres};
        use crate::testing::{at, cluster, data, holder_lease, observation, paused};
        use raftgres_state::{ClusterState, Lsn, MemberRole, Switchover};

        /// `a` holds the lease (epoch 1) and asked to hand it to `to` at 1000 (wall clock).
        fn switching(to: Option<&str>) -> ClusterState {
            let mut s = cluster(Some("a"));
            for m in s.members.values_mut() {
                m.streaming = m.role == MemberRole::Replica;
            }
            s.switchover = Some(Switchover {
                from: Some("a".into()),
                to: to.map(Into::into),
                at_unix_ms: Some(1_000),
            });
            s
        }

        fn fresh(s: &ClusterState) -> PeerObserver {
            let mut p = PeerObserver::default();
            p.observe(s, at(900));
            p
        }

        fn pg_decision(
            s: &ClusterState,
            pg: &PgView,
            now_unix_ms: u64,
            stopped_at: Option<u64>,
            now: u64,
        ) -> PgAction {
            decide_postgres(&PgObservation {
                me: "a",
                state: s,
                holds_lease: true,
                pg,
                now: at(now),
                now_unix_ms,
                peers: &fresh(s),
                switchover_stopped_at: stopped_at.map(at),
                promotion_vetoed: false,
            })
        }

        fn primary() -> PgView {
            PgView::Running {
                data: data("sys", 5000, true),
                in_recovery: false,
                upstream: None,
                streaming: false,
            }
        }

        #[test]
        fn the_holder_stops_only_when_due_and_a_candidate_is_fit() {
            let s = switching(Some("b"));
            assert_eq!(pg_decision(&s, &primary(), 999, None, 1000), PgAction::None);
            assert_eq!(
                pg_decision(&s, &primary(), 1_000, None, 1000),
                PgAction::StopForSwitchover
            );
            // Poolers first: the holder waits until every live one paused.
            let mut pooled = s.clone();
            pooled.members.get_mut("c").unwrap().pooler = true;
            assert_eq!(
                pg_decision(&pooled, &primary(), 1_000, None, 1000),
                PgAction::None
            );
            pooled.members.get_mut("c").unwrap().pooler_paused_epoch = Some(pooled.lease.epoch);
            assert_eq!(
                pg_decision(&pooled, &primary(), 1_000, None, 1000),
                PgAction::StopForSwitchover
            );
            let mut unfit = s.clone();
            unfit.members.get_mut("b").unwrap().streaming = false;
            assert!(matches!(
                pg_decision(&unfit, &primary(), 1_000, None, 1000),
                PgAction::AbandonSwitchover { reason } if reason.contains("not streaming")
            ));
        }

        #[test]
        fn a_stopped_holder_waits_for_the_candidate_then_gives_up() {
            let s = switching(Some("b"));
            let stopped = PgView::Stopped {
                data: data("sys", 5000, true),
            };
            assert_eq!(
                pg_decision(&s, &stopped, 2_000, Some(1000), 1000 + 9_999),
                PgAction::None
            );
            assert!(matches!(
                pg_decision(&s, &stopped, 2_000, Some(1000), 1000 + 10_000),
                PgAction::AbandonSwitchover { .. }
            ));
            // Stopped for another reason (e.g. a restarted agent): the usual row.
            assert_eq!(
                pg_decision(&s, &stopped, 2_000, None, 1000),
                PgAction::StartPrimary
            );
        }

        fn lease_decision(s: &ClusterState, pg: &PgView, now_unix_ms: u64) -> LeaseAction {
            let mut observer = LeaseObserver::default();
            observer.observe(&s.lease, at(800));
            decide(&Observation {
                now: at(1000),
                holding: Some(&holder_lease(1, 800)),
                now_unix_ms,
                ..observation("a", s, pg, &observer, &fresh(s))
            })
        }

        /// The holder hands the lease of `s` to b.
        fn transfer_to_b(s: &ClusterState) -> LeaseAction {
            LeaseAction::Transfer {
                expected: s.lease.version(),
                to: "b".into(),
            }
        }

        #[test]
        fn the_lease_moves_once_the_candidate_replayed_the_shutdown_checkpoint() {
            let mut s = switching(Some("b"));
            let stopped = PgView::Stopped {
                data: data("sys", 5000, true),
            };
            s.members.get_mut("b").unwrap().replay_lsn = Some(Lsn(5000));
            assert!(matches!(
                lease_decision(&s, &stopped, 2_000),
                LeaseAction::Wait { .. }
            ));
            s.members.get_mut("b").unwrap().replay_lsn = Some(Lsn(5001));
            assert_eq!(lease_decision(&s, &stopped, 2_000), transfer_to_b(&s));
            // Not before its time, and never while Postgres still runs.
            assert!(matches!(
                lease_decision(&s, &stopped, 999),
                LeaseAction::Wait { .. }
            ));
            assert!(matches!(
                lease_decision(&s, &primary(), 2_000),
                LeaseAction::Wait { .. }
            ));
            // The stopped primary ended the candidate's stream; it still
            // gets the lease once it replayed the shutdown checkpoint.
            s.members.get_mut("b").unwrap().streaming = false;
            assert_eq!(lease_decision(&s, &stopped, 2_000), transfer_to_b(&s));
            // With no candidate named, the best fit one gets it.
            let mut any = switching(None);
            any.members.get_mut("b").unwrap().replay_lsn = Some(Lsn(5001));
            assert_eq!(lease_decision(&any, &stopped, 2_000), transfer_to_b(&any));
        }

        /// `me` decides on an expired lease of `a` while a failover names `to`.
        fn failover_decision(me: &str, to: &str, to_fresh: bool, lsn: u64) -> LeaseAction {
            let mut s = cluster(Some("a"));
            s.switchover = Some(Switchover {
                from: None,
                to: Some(to.into()),
                at_unix_ms: None,
            });
            let mut observer = LeaseObserver::default();
            observer.observe(&s.lease, at(0));
            let mut peers = PeerObserver::default();
            // A named candidate counts as live for two ttls (4000 here).
            peers.observe(&s, if to_fresh { at(1500) } else { at(0) });
            let pg = PgView::Running {
                data: data("sys", lsn, false),
                in_recovery: true,
                upstream: Some("a".into()),
                streaming: true,
            };
            decide(&Observation {
                now: at(4500),
                ..observation(me, &s, &pg, &observer, &peers)
            })
        }

        #[test]
        fn a_named_failover_candidate_competes_alone_while_it_lives() {
            // c is behind b and beyond maximum_lag_on_failover, yet named.
            assert!(matches!(
                failover_decision("c", "c", true, 1000),
                LeaseAction::Acquire { .. }
            ));
            assert_eq!(
                failover_decision("b", "c", true, 4800),
                LeaseAction::Wait { until: None }
            );
            // A named candidate that stopped reporting does not block failover.
            assert!(matches!(
                failover_decision("b", "c", false, 4800),
                LeaseAction::Acquire { .. }
            ));
        }

        /// What `me` does with its Postgres in `s`.
        fn pg_of(
            me: &str,
            s: &ClusterState,
            holds_lease: bool,
            pg: &PgView,
            stopped_at: Option<u64>,
        ) -> PgAction {
            decide_postgres(&PgObservation {
                me,
                state: s,
                holds_lease,
                pg,
                now: at(1000),
                now_unix_ms: 2_000,
                peers: &fresh(s),
                switchover_stopped_at: stopped_at.map(at),
                promotion_vetoed: false,
            })
        }

        fn replica_of(upstream: &str) -> PgView {
            PgView::Running {
                data: data("sys", 4800, false),
                in_recovery: true,
                upstream: Some(upstream.into()),
                streaming: true,
            }
        }

        /// Paused, a switchover to a named candidate runs every step, as
        /// unpaused: the holder stops, hands the lease over once the
        /// candidate replayed the shutdown checkpoint, the candidate
        /// promotes, the old primary rewinds and the replicas follow.
        #[test]
        fn a_paused_cluster_runs_a_named_switchover_through_every_step() {
            let s = paused(switching(Some("b")));
            assert_eq!(pg_decision(&s, &primary(), 999, None, 1000), PgAction::None);
            assert_eq!(
                pg_decision(&s, &primary(), 1_000, None, 1000),
                PgAction::StopForSwitchover
            );
            let stopped = PgView::Stopped {
                data: data("sys", 5000, true),
            };
            assert_eq!(
                pg_decision(&s, &stopped, 2_000, Some(1000), 1000 + 9_999),
                PgAction::None
            );
            let mut caught_up = s.clone();
            caught_up.members.get_mut("b").unwrap().replay_lsn = Some(Lsn(5001));
            assert_eq!(
                lease_decision(&caught_up, &stopped, 2_000),
                transfer_to_b(&caught_up)
            );

            // The transfer committed: b holds epoch 2, no timeline owner yet.
            let mut handed = paused(cluster(Some("b")));
            handed.lease.epoch = raftgres_state::Epoch(2);
            handed.lease.timeline_owner = None;
            handed.members.get_mut("b").unwrap().role = MemberRole::Replica;
            let mut observer = LeaseObserver::default();
            observer.observe(&handed.lease, at(900));
            let replica_b = replica_of("a");
            assert_eq!(
                decide(&Observation {
                    now: at(1000),
                    ..observation("b", &handed, &replica_b, &observer, &fresh(&handed))
                }),
                LeaseAction::Renew {
                    epoch: handed.lease.epoch
                },
                "b renews the lease handed to it"
            );
            assert_eq!(
                pg_of("b", &handed, true, &replica_b, None),
                PgAction::Promote
            );

            // b runs as primary: the old primary rewinds, the replicas follow.
            let promoted = paused(cluster(Some("b")));
            let rewind = PgAction::Rewind { source: "b".into() };
            assert_eq!(pg_of("a", &promoted, false, &stopped, Some(1000)), rewind);
            assert_eq!(
                pg_of("c", &promoted, false, &replica_of("a"), None),
                PgAction::Follow {
                    upstream: "b".into()
                }
            );
        }

        /// Paused, a switchover the holder cannot finish leaves the primary
        /// it stopped running again, and one with nobody named (scheduled
        /// before the pause) is not carried out.
        #[test]
        fn a_paused_holder_gives_back_what_a_switchover_stopped() {
            let s = paused(switching(Some("b")));
            let stopped = PgView::Stopped {
                data: data("sys", 5000, true),
            };
            assert!(matches!(
                pg_decision(&s, &stopped, 2_000, Some(1000), 1000 + 10_000),
                PgAction::AbandonSwitchover { .. }
            ));
            // The request is gone; the server it stopped starts again, and
            // only that one: pause leaves any other stopped server alone.
            let abandoned = paused(cluster(Some("a")));
            assert_eq!(
                pg_of("a", &abandoned, true, &stopped, Some(1000)),
                PgAction::StartPrimary
            );
            assert_eq!(pg_of("a", &abandoned, true, &stopped, None), PgAction::None);
            assert_eq!(
                pg_of("a", &abandoned, false, &stopped, None),
                PgAction::None,
                "no rewind of a server stopped for another reason"
            );

            let unnamed = paused(switching(None));
            assert!(matches!(
                pg_decision(&unnamed, &primary(), 1_000, None, 1000),
                PgAction::AbandonSwitchover { reason } if reason.contains("named candidate")
            ));
            assert_eq!(
                pg_decision(&switching(None), &primary(), 1_000, None, 1000),
                PgAction::StopForSwitchover,
                "unpaused, the holder picks the best candidate"
            );
        }

        /// `me` decides, in a paused cluster, on a lease of `a` that
        /// expired; `request` is the pending request, if any.
        fn paused_decision(me: &str, request: Option<Switchover>) -> LeaseAction {
            let mut s = paused(cluster(Some("a")));
            s.switchover = request;
            let mut observer = LeaseObserver::default();
            observer.observe(&s.lease, at(0));
            let mut peers = PeerObserver::default();
            peers.observe(&s, at(1500));
            let pg = PgView::Running {
                data: data("sys", s.members[me].replay_lsn.unwrap_or_default().0, false),
                in_recovery: true,
                upstream: Some("a".into()),
                streaming: true,
            };
            decide(&Observation {
                now: at(4500),
                now_unix_ms: 2_000,
                ..observation(me, &s, &pg, &observer, &peers)
            })
        }

        #[test]
        fn paused_only_a_named_candidate_takes_an_expired_lease() {
            let wait = LeaseAction::Wait { until: None };
            let acquire = LeaseAction::Acquire {
                expected: cluster(Some("a")).lease.version(),
            };
            let request = |from: Option<&str>, at_unix_ms| Switchover {
                from: from.map(Into::into),
                to: Some("c".into()),
                at_unix_ms,
            };
            #[rustfmt::skip]
            let rows: Vec<(&str, &str, Option<Switchover>, LeaseAction)> = vec![
                ("holder died, no request: no automatic failover", "b", None, wait.clone()),
                ("holder died, no request: not even the best replica", "c", None, wait.clone()),
                ("a failover naming c: c takes over", "c", Some(request(None, None)), acquire.clone()),
                ("a failover naming c: b waits", "b", Some(request(None, None)), wait.clone()),
                ("the holder died before handing over to c: c takes over", "c", Some(request(Some("a"), Some(1_000))), acquire.clone()),
                ("a switchover to c scheduled later: not before its time", "c", Some(request(Some("a"), Some(5_000))), wait.clone()),
            ];
            for (name, me, request, want) in rows {
                assert_eq!(paused_decision(me, request), want, "{name}");
            }
        }
    }
}
