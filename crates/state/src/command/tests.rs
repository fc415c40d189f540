use super::*;
use crate::LeaseTiming;
use crate::model::{MemberRole, PgState, SyncMode};
use std::time::Duration;

fn values() -> ConfigValues {
    ConfigValues::new(LeaseTiming::from_millis(2000, 400, 400), 1000, 1 << 20)
}

fn member(name: &str, node_id: u64, witness: bool) -> Member {
    Member {
        role: if witness {
            MemberRole::Witness
        } else {
            MemberRole::Unknown
        },
        pg_state: if witness {
            PgState::Absent
        } else {
            PgState::Unknown
        },
        witness,
        ..Member::new(name, node_id, format!("127.0.0.1:{}", 7100 + node_id))
    }
}

/// A bootstrapped cluster with members a, b and witness w.
fn cluster() -> ClusterState {
    let mut s = ClusterState::default();
    s.apply(&Command::BootstrapConfig { values: values() })
        .unwrap();
    for m in [
        member("a", 1, false),
        member("b", 2, false),
        member("w", 3, true),
    ] {
        s.apply(&Command::PublishMember { member: m }).unwrap();
    }
    s
}

/// Publishes a data member named `name`.
fn publish(name: &str, node_id: u64) -> Command {
    Command::PublishMember {
        member: member(name, node_id, false),
    }
}

fn request_switchover(from: Option<&str>, to: Option<&str>, at_unix_ms: Option<u64>) -> Command {
    Command::RequestSwitchover {
        switchover: Switchover {
            from: from.map(Into::into),
            to: to.map(Into::into),
            at_unix_ms,
        },
    }
}

fn acquire(member: &str, expected: LeaseVersion) -> Command {
    Command::AcquireLease {
        member: member.into(),
        expected,
        ttl_ms: 2000,
        reason: "test".into(),
        at_unix_ms: 42,
    }
}

fn renew(member: &str, epoch: u64) -> Command {
    Command::RenewLease {
        member: member.into(),
        epoch: Epoch(epoch),
        ttl_ms: 2000,
        lsn: Some(Lsn(100)),
        timeline: Some(1),
    }
}

fn version(epoch: u64, revision: u64) -> LeaseVersion {
    LeaseVersion {
        epoch: Epoch(epoch),
        revision,
    }
}

fn release(member: &str, expected: LeaseVersion) -> Command {
    Command::ReleaseLease {
        member: member.into(),
        expected,
        lsn: Some(Lsn(7)),
    }
}

fn transfer(from: &str, expected: LeaseVersion, to: &str) -> Command {
    Command::TransferLease {
        from: from.into(),
        expected,
        to: to.into(),
        reason: "switchover".into(),
        at_unix_ms: 1,
    }
}

#[test]
fn initialize_is_set_once() {
    let mut s = ClusterState::default();
    let init = |id: &str| Command::Initialize {
        system_id: id.into(),
    };
    assert_eq!(
        s.apply(&init("")),
        Err(Rejection::Invalid {
            reason: "system_id must not be empty".into()
        })
    );
    assert_eq!(s.apply(&init("7")), Ok(Applied::Done));
    assert_eq!(
        s.apply(&init("8")),
        Err(Rejection::AlreadyInitialized {
            system_id: "7".into()
        })
    );
    assert_eq!(s.identity.unwrap().system_id, "7");
}

#[test]
fn bootstrap_config_first_wins_and_validates() {
    let mut s = ClusterState::default();
    let mut bad = values();
    bad.timing.margin = Duration::from_millis(2000);
    assert!(matches!(
        s.apply(&Command::BootstrapConfig { values: bad }),
        Err(Rejection::Invalid { .. })
    ));
    assert!(s.config.is_none());
    s.apply(&Command::BootstrapConfig { values: values() })
        .unwrap();
    let mut other = values();
    other.timing.ttl = Duration::from_millis(9000);
    let out = s
        .apply(&Command::BootstrapConfig { values: other })
        .unwrap();
    assert_eq!(
        out,
        Applied::Config {
            config: DynamicConfig {
                version: 1,
                values: values()
            }
        }
    );
}

#[test]
fn set_config_is_compare_and_set() {
    let mut s = ClusterState::default();
    assert_eq!(
        s.apply(&Command::SetConfig {
            expected_version: 1,
            values: values()
        }),
        Err(Rejection::NotBootstrapped)
    );
    s.apply(&Command::BootstrapConfig { values: values() })
        .unwrap();
    let mut paused = values();
    paused.pause = true;
    assert_eq!(
        s.apply(&Command::SetConfig {
            expected_version: 7,
            values: paused.clone()
        }),
        Err(Rejection::ConfigVersionChanged {
            expected: 7,
            current: 1
        })
    );
    let mut bad = values();
    bad.timing.loop_wait = Duration::from_millis(1700);
    assert!(matches!(
        s.apply(&Command::SetConfig {
            expected_version: 1,
            values: bad
        }),
        Err(Rejection::Invalid { .. })
    ));
    assert_eq!(s.config.as_ref().unwrap().version, 1);
    s.apply(&Command::SetConfig {
        expected_version: 1,
        values: paused,
    })
    .unwrap();
    let config = s.config.unwrap();
    assert_eq!(config.version, 2);
    assert!(config.values.pause);
}

#[test]
fn config_validation_names_each_rule() {
    type Spoil = fn(&mut ConfigValues);
    #[rustfmt::skip]
    let cases: [(&str, Spoil); 5] = [
        ("ttl_ms", |v| v.timing.ttl = Duration::from_millis(0)),
        ("lease_margin_ms", |v| v.timing.margin = v.timing.ttl),
        ("loop_wait_ms", |v| { v.timing.loop_wait = Duration::from_millis(0) }),
        ("retry_timeout_ms", |v| v.retry_timeout_ms = 0),
        ("synchronous_node_count", |v| { v.synchronous_mode = SyncMode::On; v.synchronous_node_count = 0 }),
    ];
    for (key, spoil) in cases {
        let mut v = values();
        spoil(&mut v);
        let err = v.validate().unwrap_err();
        assert!(err.contains(key), "{key}: {err}");
    }
    assert_eq!(values().validate(), Ok(()));
}

#[test]
fn a_permanent_slot_may_not_take_a_member_slot_name() {
    let mut s = cluster();
    let mut taken = values();
    taken
        .slots
        .insert("b".into(), crate::PermanentSlot::physical());
    match s.apply(&Command::SetConfig {
        expected_version: 1,
        values: taken,
    }) {
        Err(Rejection::Invalid { reason }) => assert!(reason.starts_with("slots.b:"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let mut free = values();
    free.slots
        .insert("keep_me".into(), crate::PermanentSlot::physical());
    s.apply(&Command::SetConfig {
        expected_version: 1,
        values: free,
    })
    .unwrap();
    assert_eq!(s.config.unwrap().version, 2);
}

#[test]
fn publish_member_validates_and_upserts() {
    let mut s = cluster();
    let mut bad = member("Bad Name", 9, false);
    assert!(matches!(
        s.apply(&Command::PublishMember {
            member: bad.clone()
        }),
        Err(Rejection::Invalid { .. })
    ));
    bad.name = "c".into();
    bad.node_id = 0;
    assert!(matches!(
        s.apply(&Command::PublishMember { member: bad }),
        Err(Rejection::Invalid { .. })
    ));
    let clash = member("c", 1, false);
    assert!(matches!(
        s.apply(&Command::PublishMember { member: clash }),
        Err(Rejection::Invalid { .. })
    ));
    let mut a = member("a", 1, false);
    a.pg_state = PgState::Running;
    s.apply(&Command::PublishMember { member: a }).unwrap();
    assert_eq!(s.members["a"].pg_state, PgState::Running);
    assert_eq!(s.members.len(), 3);
}

#[test]
fn remove_member_refuses_the_holder_and_unknowns() {
    let mut s = cluster();
    s.apply(&acquire("a", LeaseVersion::default())).unwrap();
    assert_eq!(
        s.apply(&Command::RemoveMember { name: "a".into() }),
        Err(Rejection::MemberHoldsLease { name: "a".into() })
    );
    assert_eq!(
        s.apply(&Command::RemoveMember { name: "zz".into() }),
        Err(Rejection::UnknownMember { name: "zz".into() })
    );
    s.sync_set.insert("b".into());
    s.apply(&Command::RemoveMember { name: "b".into() })
        .unwrap();
    assert!(!s.members.contains_key("b"));
    assert!(s.sync_set.is_empty());
}

#[test]
fn acquire_needs_bootstrap_known_member_and_no_witness() {
    let mut s = ClusterState::default();
    assert_eq!(
        s.apply(&acquire("a", LeaseVersion::default())),
        Err(Rejection::NotBootstrapped)
    );
    let mut s = cluster();
    assert_eq!(
        s.apply(&acquire("zz", LeaseVersion::default())),
        Err(Rejection::UnknownMember { name: "zz".into() })
    );
    assert_eq!(
        s.apply(&acquire("w", LeaseVersion::default())),
        Err(Rejection::WitnessCannotLead { name: "w".into() })
    );
    let mut zero_ttl = acquire("a", LeaseVersion::default());
    if let Command::AcquireLease { ttl_ms, .. } = &mut zero_ttl {
        *ttl_ms = 0;
    }
    assert!(matches!(s.apply(&zero_ttl), Err(Rejection::Invalid { .. })));
    assert_eq!(s.lease, Lease::default());
}

#[test]
fn acquire_bumps_epoch_and_records_history() {
    let mut s = cluster();
    let out = s.apply(&acquire("a", LeaseVersion::default())).unwrap();
    let Applied::Lease { lease } = out else {
        panic!("expected a lease, got {out:?}")
    };
    assert_eq!(lease.holder.as_deref(), Some("a"));
    assert_eq!(
        lease.version(),
        LeaseVersion {
            epoch: Epoch(1),
            revision: 1
        }
    );
    assert_eq!(s.history.len(), 1);
    assert_eq!(s.history[0].new_holder, "a");
    assert_eq!(s.history[0].previous_holder, None);
    assert_eq!(s.history[0].at_unix_ms, 42);
}

#[test]
fn acquire_with_a_stale_version_is_rejected() {
    let mut s = cluster();
    s.apply(&acquire("a", LeaseVersion::default())).unwrap();
    let seen = s.lease.version();
    // The holder renews after b saw `seen`: b's acquire must fail.
    s.apply(&renew("a", 1)).unwrap();
    let current = s.lease.version();
    assert_eq!(
        s.apply(&acquire("b", seen)),
        Err(Rejection::LeaseVersionChanged {
            expected: seen,
            current
        })
    );
    assert!(s.lease.is_held_by("a"));
    // With the version it saw expire, b takes over and the epoch grows.
    s.apply(&acquire("b", current)).unwrap();
    assert!(s.lease.is_held_by("b"));
    assert_eq!(s.lease.epoch, Epoch(2));
    assert_eq!(s.history[1].previous_holder.as_deref(), Some("a"));
}

#[test]
fn two_candidates_with_the_same_version_only_one_wins() {
    let mut s = cluster();
    let seen = s.lease.version();
    assert!(s.apply(&acquire("a", seen)).is_ok());
    assert!(matches!(
        s.apply(&acquire("b", seen)),
        Err(Rejection::LeaseVersionChanged { .. })
    ));
    assert!(s.lease.is_held_by("a"));
}

#[test]
fn renew_only_by_the_holder_at_its_epoch() {
    let mut s = cluster();
    s.apply(&acquire("a", LeaseVersion::default())).unwrap();
    let not_holder = Rejection::NotHolder {
        member: "b".into(),
        epoch: Epoch(1),
        holder: Some("a".into()),
        current: Epoch(1),
    };
    assert_eq!(s.apply(&renew("b", 1)), Err(not_holder));
    assert!(matches!(
        s.apply(&renew("a", 0)),
        Err(Rejection::NotHolder { .. })
    ));
    let Applied::Lease { lease } = s.apply(&renew("a", 1)).unwrap() else {
        panic!()
    };
    assert_eq!(
        lease.version(),
        LeaseVersion {
            epoch: Epoch(1),
            revision: 2
        }
    );
    assert_eq!(lease.last_lsn, Some(Lsn(100)));
    assert_eq!(lease.timeline, Some(1));
    assert_eq!(s.history.len(), 1, "a renewal is not a change of holder");
}

#[test]
fn a_deposed_holder_cannot_renew() {
    let mut s = cluster();
    s.apply(&acquire("a", LeaseVersion::default())).unwrap();
    let seen = s.lease.version();
    s.apply(&acquire("b", seen)).unwrap();
    assert!(matches!(
        s.apply(&renew("a", 1)),
        Err(Rejection::NotHolder { .. })
    ));
}

#[test]
fn release_clears_holder_and_keeps_epoch() {
    let mut s = cluster();
    s.apply(&acquire("a", LeaseVersion::default())).unwrap();
    assert!(matches!(
        s.apply(&release("b", version(1, 1))),
        Err(Rejection::NotHolder { .. })
    ));
    assert!(matches!(
        s.apply(&release("a", version(2, 1))),
        Err(Rejection::NotHolder { .. })
    ));
    s.apply(&release("a", version(1, 1))).unwrap();
    assert_eq!(s.lease.holder, None);
    assert_eq!(s.lease.epoch, Epoch(1));
    assert_eq!(s.lease.last_lsn, Some(Lsn(7)));
    assert!(matches!(
        s.apply(&release("a", version(1, 2))),
        Err(Rejection::NotHolder { .. })
    ));
    // The next holder gets a new epoch.
    s.apply(&acquire("b", s.lease.version())).unwrap();
    assert_eq!(s.lease.epoch, Epoch(2));
}

#[test]
fn transfer_moves_the_lease_and_clears_the_switchover() {
    let mut s = cluster();
    s.apply(&acquire("a", LeaseVersion::default())).unwrap();
    let v = version(1, 1);
    assert!(matches!(
        s.apply(&transfer("b", v, "a")),
        Err(Rejection::NotHolder { .. })
    ));
    assert!(matches!(
        s.apply(&transfer("a", version(0, 1), "b")),
        Err(Rejection::NotHolder { .. })
    ));
    assert_eq!(
        s.apply(&transfer("a", v, "w")),
        Err(Rejection::WitnessCannotLead { name: "w".into() })
    );
    assert_eq!(
        s.apply(&transfer("a", v, "zz")),
        Err(Rejection::UnknownMember { name: "zz".into() })
    );
    assert!(matches!(
        s.apply(&transfer("a", v, "a")),
        Err(Rejection::Invalid { .. })
    ));
    s.apply(&request_switchover(Some("a"), Some("b"), None))
        .unwrap();
    s.apply(&transfer("a", v, "b")).unwrap();
    assert!(s.lease.is_held_by("b"));
    assert_eq!(s.lease.epoch, Epoch(2));
    assert_eq!(s.switchover, None);
    assert_eq!(s.history.last().unwrap().reason, "switchover");
}

#[test]
fn switchover_requests_are_checked() {
    let mut s = cluster();
    let request = |from: Option<&str>, to: Option<&str>| request_switchover(from, to, Some(5));
    assert!(matches!(
        s.apply(&request(Some("a"), None)),
        Err(Rejection::NotHolder { .. })
    ));
    assert!(matches!(
        s.apply(&request(None, None)),
        Err(Rejection::Invalid { .. })
    ));
    s.apply(&acquire("a", LeaseVersion::default())).unwrap();
    assert_eq!(
        s.apply(&request(Some("a"), Some("w"))),
        Err(Rejection::WitnessCannotLead { name: "w".into() })
    );
    assert!(matches!(
        s.apply(&request(Some("a"), Some("a"))),
        Err(Rejection::Invalid { .. })
    ));
    assert!(matches!(
        s.apply(&request(None, Some("a"))),
        Err(Rejection::Invalid { .. })
    ));
    s.apply(&request(Some("a"), Some("b"))).unwrap();
    assert_eq!(s.switchover.as_ref().unwrap().to.as_deref(), Some("b"));
    s.apply(&Command::CancelSwitchover).unwrap();
    assert_eq!(s.switchover, None);
}

/// `cluster()` with a third data member c, a holding the lease.
fn a_holds_with_c_to_spare() -> ClusterState {
    let mut s = cluster();
    s.apply(&publish("c", 4)).unwrap();
    s.apply(&acquire("a", LeaseVersion::default())).unwrap();
    s
}

#[test]
fn a_failover_request_ends_with_the_next_acquire() {
    let mut s = a_holds_with_c_to_spare();
    let failover = |to: &str| request_switchover(None, Some(to), None);
    s.apply(&failover("b")).unwrap();
    s.apply(&acquire("b", s.lease.version())).unwrap();
    assert_eq!(s.switchover, None);
    assert!(s.lease.is_held_by("b"));
    // Overtaken: someone else acquiring ends it too.
    s.apply(&failover("a")).unwrap();
    s.apply(&acquire("c", s.lease.version())).unwrap();
    assert_eq!(s.switchover, None);
}

#[test]
fn a_switchover_request_ends_when_its_holder_loses_the_lease() {
    let mut s = a_holds_with_c_to_spare();
    s.apply(&request_switchover(Some("a"), Some("b"), Some(5)))
        .unwrap();
    s.apply(&acquire("c", s.lease.version())).unwrap();
    assert_eq!(s.switchover, None);
}

#[test]
fn epoch_never_goes_backwards_over_any_sequence() {
    // A small exhaustive walk: every sequence of 4 commands from a fixed set.
    let mut s0 = cluster();
    s0.apply(&acquire("a", LeaseVersion::default())).unwrap();
    let v = s0.lease.version();
    let commands = [
        renew("a", 1),
        renew("b", 2),
        acquire("b", v),
        acquire(
            "a",
            LeaseVersion {
                epoch: Epoch(2),
                revision: 3,
            },
        ),
        release("a", v),
        release("a", version(1, 2)),
        release("b", version(2, 3)),
        transfer("a", v, "b"),
        transfer("a", version(1, 2), "b"),
    ];
    let n = commands.len();
    for i in 0..n.pow(4) {
        let mut s = s0.clone();
        let mut last = s.lease.version();
        let mut k = i;
        for _ in 0..4 {
            let c = &commands[k % n];
            k /= n;
            let before = s.clone();
            let out = s.apply(c);
            if out.is_err() {
                assert_eq!(s, before, "a rejected command changed the state: {c:?}");
            }
            let now = s.lease.version();
            assert!(
                now.epoch >= last.epoch && now.revision >= last.revision,
                "{c:?}"
            );
            if out.is_ok() {
                assert!(
                    now.revision > last.revision
                        || !matches!(c, Command::AcquireLease { .. } | Command::RenewLease { .. })
                );
            }
            last = now;
        }
    }
}

#[test]
fn commands_round_trip_through_json() {
    let c = acquire(
        "a",
        LeaseVersion {
            epoch: Epoch(3),
            revision: 9,
        },
    );
    let text = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), c);
    let r: Response = Err(Rejection::NotBootstrapped);
    let text = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), r);
}

#[test]
fn lsn_displays_like_postgres() {
    assert_eq!(Lsn(0x1_0000_00A0).to_string(), "1/A0");
    assert_eq!(Lsn(0).to_string(), "0/0");
}

#[test]
fn renewal_never_shrinks_the_ttl_within_an_epoch() {
    let mut s = cluster();
    s.apply(&acquire("a", LeaseVersion::default())).unwrap();
    let renew_with = |ttl_ms| Command::RenewLease {
        member: "a".into(),
        epoch: Epoch(1),
        ttl_ms,
        lsn: None,
        timeline: None,
    };
    s.apply(&renew_with(1000)).unwrap();
    assert_eq!(s.lease.ttl_ms, 2000);
    s.apply(&renew_with(3000)).unwrap();
    assert_eq!(s.lease.ttl_ms, 3000);
    let mut shorter = acquire("b", s.lease.version());
    if let Command::AcquireLease { ttl_ms, .. } = &mut shorter {
        *ttl_ms = 1500;
    }
    s.apply(&shorter).unwrap();
    assert_eq!(s.lease.ttl_ms, 1500, "a new epoch starts with its own ttl");
}

#[test]
fn the_timeline_has_an_owner_only_while_no_other_member_held_the_lease() {
    let mut s = cluster();
    let on = |member: &str, epoch: u64, timeline: Option<u32>| Command::RenewLease {
        member: member.into(),
        epoch: Epoch(epoch),
        ttl_ms: 2000,
        lsn: None,
        timeline,
    };
    let release = |s: &ClusterState, member: &str| Command::ReleaseLease {
        member: member.into(),
        expected: s.lease.version(),
        lsn: None,
    };
    let transfer = |s: &ClusterState, from: &str, to: &str| Command::TransferLease {
        from: from.into(),
        expected: s.lease.version(),
        to: to.into(),
        reason: "switchover".into(),
        at_unix_ms: 1,
    };
    let acquire_now = |s: &ClusterState, member: &str| acquire(member, s.lease.version());
    // (step, command, timeline, owner)
    type Step = (
        &'static str,
        Box<dyn Fn(&ClusterState) -> Command>,
        Option<u32>,
        Option<&'static str>,
    );
    #[rustfmt::skip]
    let steps: Vec<Step> = vec![
        ("a acquires a new cluster", Box::new(move |s| acquire_now(s, "a")), None, None),
        ("a renews while its Postgres is not a primary yet", Box::new(move |_| on("a", 1, None)), None, None),
        ("a's primary renews on timeline 1", Box::new(move |_| on("a", 1, Some(1))), Some(1), Some("a")),
        ("a releases: it stays the owner", Box::new(move |s| release(s, "a")), Some(1), Some("a")),
        ("a takes it back: still the owner", Box::new(move |s| acquire_now(s, "a")), Some(1), Some("a")),
        ("a releases again", Box::new(move |s| release(s, "a")), Some(1), Some("a")),
        ("b acquires: it will promote, a's data is a branch", Box::new(move |s| acquire_now(s, "b")), Some(1), None),
        ("b's promoted primary renews on timeline 2", Box::new(move |_| on("b", 3, Some(2))), Some(2), Some("b")),
        ("a renewal on a lower timeline is not recorded", Box::new(move |_| on("b", 3, Some(1))), Some(2), Some("b")),
        ("a switchover to a disowns b", Box::new(move |s| transfer(s, "b", "a")), Some(2), None),
        ("a's promoted primary renews on timeline 3", Box::new(move |_| on("a", 4, Some(3))), Some(3), Some("a")),
    ];
    for (step, command, timeline, owner) in steps {
        let command = command(&s);
        s.apply(&command).unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(s.lease.timeline, timeline, "{step}");
        assert_eq!(s.lease.timeline_owner.as_deref(), owner, "{step}");
    }
}

/// Hole 8: a release or transfer decided at one revision must not commit
/// after a later renewal of the same epoch. The holder dropped its belief to
/// send it, then (the command not committed in time) renewed and believed
/// again; a late commit of the old command would free or hand over a lease
/// its holder still acts on.
#[test]
fn a_release_or_transfer_decided_before_a_renewal_is_refused() {
    type Hand = fn(LeaseVersion) -> Command;
    #[rustfmt::skip]
    let cases: [(&str, Hand); 2] = [
        ("release", |v| release("a", v)),
        ("transfer", |v| transfer("a", v, "b")),
    ];
    for (what, hand) in cases {
        let mut s = cluster();
        s.apply(&acquire("a", LeaseVersion::default())).unwrap();
        let decided = s.lease.version();
        s.apply(&renew("a", 1)).unwrap();
        let before = s.clone();
        let current = s.lease.version();
        assert_eq!(decided.epoch, current.epoch, "{what}: same epoch");
        let refusal = s.apply(&hand(decided)).unwrap_err();
        assert_eq!(
            refusal,
            Rejection::LeaseVersionChanged {
                expected: decided,
                current
            },
            "{what}"
        );
        assert!(
            refusal
                .to_string()
                .contains("re-read the lease and decide again"),
            "{what}: {refusal}"
        );
        assert_eq!(s, before, "{what}: a refused command changed the state");
        // With the version it holds now, the holder's command goes through.
        s.apply(&hand(current)).unwrap();
        assert!(!s.lease.is_held_by("a"), "{what}");
    }
}

#[test]
fn a_lease_recorded_before_timeline_owners_existed_still_reads() {
    let old = r#"{"holder":"a","epoch":4,"revision":9,"ttl_ms":3000,"last_lsn":100,"timeline":2}"#;
    let lease: Lease = serde_json::from_str(old).unwrap();
    assert_eq!(lease.timeline, Some(2));
    assert_eq!(lease.timeline_owner, None);
}

#[test]
fn a_newer_version_than_the_current_one_is_refused_too() {
    let mut s = cluster();
    s.apply(&acquire("a", LeaseVersion::default())).unwrap();
    for command in [
        release("a", version(1, 5)),
        transfer("a", version(1, 5), "b"),
    ] {
        assert_eq!(
            s.apply(&command),
            Err(Rejection::LeaseVersionChanged {
                expected: version(1, 5),
                current: version(1, 1)
            })
        );
    }
    assert!(s.lease.is_held_by("a"));
}

/// Raft log entries are JSON. A release or transfer written before it named
/// the exact version carried a bare `epoch`; decoding one must fail and say
/// which field is missing rather than guess a revision.
#[test]
fn an_epoch_only_release_or_transfer_is_refused_at_decode() {
    let old = [
        r#"{"type":"release_lease","member":"a","epoch":1,"lsn":null}"#,
        r#"{"type":"transfer_lease","from":"a","epoch":1,"to":"b","reason":"switchover","at_unix_ms":1}"#,
    ];
    for text in old {
        let err = serde_json::from_str::<Command>(text).unwrap_err();
        assert!(
            err.to_string().contains("missing field `expected`"),
            "{text}: {err}"
        );
    }
    for command in [
        release("a", version(1, 2)),
        transfer("a", version(1, 2), "b"),
    ] {
        let text = serde_json::to_string(&command).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), command);
    }
}

/// The margin's floor (docs/lease.md, "The margin's floor"): `ttl_ms / 500`
/// rounded up, for two clocks each up to 1000 ppm off, plus 100 ms for the
/// holder's timer lateness and the fence's kill.
#[test]
fn lease_margin_below_its_floor_is_refused() {
    for (ttl_ms, floor) in [(2000, 104), (3000, 106), (3001, 107), (60_000, 220)] {
        let mut v = values();
        v.timing.ttl = Duration::from_millis(ttl_ms);
        v.timing.margin = Duration::from_millis(floor - 1);
        let err = v.validate().unwrap_err();
        for named in [
            "lease_margin_ms",
            &format!("at least {floor}"),
            "docs/lease.md",
        ] {
            assert!(
                err.contains(named),
                "ttl {ttl_ms}: {named} missing from {err}"
            );
        }
        v.timing.margin = Duration::from_millis(floor);
        assert_eq!(v.validate(), Ok(()), "ttl {ttl_ms}");
    }
    let mut zero = values();
    zero.timing.margin = Duration::from_millis(0);
    assert!(zero.validate().unwrap_err().contains("lease_margin_ms"));
    // A PATCH /config that lowers the margin below the floor is refused
    // and changes nothing.
    let mut s = cluster();
    assert!(matches!(
        s.apply(&Command::SetConfig {
            expected_version: 1,
            values: zero
        }),
        Err(Rejection::Invalid { .. })
    ));
    assert_eq!(s.config.as_ref().unwrap().values, values());
}

/// An edit is checked more strictly than a committed entry: what the state
/// machine accepted before stays accepted on replay, so members of two
/// versions apply the same log alike.
#[test]
fn an_edit_refuses_what_would_be_stored_and_ignored() {
    assert_eq!(values().validate_edit(), Ok(()));
    type Change = fn(&mut ConfigValues);
    #[rustfmt::skip]
    let cases: [(&str, Change); 7] = [
        ("\"work mem\" is not a server setting name", |v| { v.postgresql_parameters.insert("work mem".into(), "4MB".into()); }),
        ("postgresql.parameters.search_path must not contain line breaks", |v| { v.postgresql_parameters.insert("search_path".into(), "a\nfsync = off".into()); }),
        ("synchronous_node_count (17) must be at most 16", |v| { v.synchronous_node_count = 17 }),
        ("postgresql.parameters.primary_slot_name is set by the agent", |v| { v.postgresql_parameters.insert("primary_slot_name".into(), "x".into()); }),
        ("postgresql.parameters.synchronous_standby_names is set by the agent", |v| { v.postgresql_parameters.insert("synchronous_standby_names".into(), "*".into()); }),
        ("ttl_ms must be at most 600000 (10 minutes), got 600001", |v| { v.timing.ttl = Duration::from_millis(crate::MAX_TTL_MS + 1); v.timing.margin = Duration::from_millis(2000); }),
        ("retry_timeout_ms (2001) must be at most ttl_ms (2000)", |v| v.retry_timeout_ms = 2001),
    ];
    for (needle, change) in cases {
        let mut v = values();
        change(&mut v);
        assert_eq!(
            v.validate(),
            Ok(()),
            "{needle}: replay must still accept it"
        );
        let err = v.validate_edit().unwrap_err();
        assert!(err.contains(needle), "{err} lacks {needle:?}");
    }
}

fn sync_set(member: &str, epoch: u64, members: &[&str], synchronous: bool) -> Command {
    Command::SetSyncSet {
        member: member.into(),
        epoch: Epoch(epoch),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        synchronous,
        quorum: None,
    }
}

fn quorum_set(member: &str, epoch: u64, members: &[&str], k: u32) -> Command {
    Command::SetSyncSet {
        member: member.into(),
        epoch: Epoch(epoch),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        synchronous: true,
        quorum: Some(k),
    }
}

fn report(member: &str, lease: LeaseVersion, lsn: u64) -> Command {
    Command::ReportPosition {
        member: member.into(),
        lease,
        lsn: Lsn(lsn),
    }
}

/// A cluster with a third database member c, its database initialized,
/// and a holding the lease at epoch 1.
fn held_by_a() -> ClusterState {
    let mut s = cluster();
    s.apply(&publish("c", 4)).unwrap();
    s.apply(&Command::Initialize {
        system_id: "sys".into(),
    })
    .unwrap();
    s.apply(&acquire("a", s.lease.version())).unwrap();
    s
}

#[test]
fn only_the_holder_sets_its_synchronous_standbys_and_only_real_ones() {
    let mut s = held_by_a();
    #[rustfmt::skip]
    let rows: [(Command, &str); 6] = [
        (sync_set("b", 1, &["c"], true), "does not hold the lease"),
        (sync_set("a", 2, &["c"], true), "does not hold the lease"),
        (sync_set("a", 1, &["a"], true), "its own synchronous standby"),
        (sync_set("a", 1, &["w"], true), "witness"),
        (sync_set("a", 1, &["zz"], true), "unknown member zz"),
        (sync_set("a", 1, &["b"], false), "no synchronous standbys"),
    ];
    for (command, needle) in rows {
        let err = s.apply(&command).expect_err(needle).to_string();
        assert!(err.contains(needle), "{command:?}: {err}");
    }
    assert!(s.sync_set.is_empty() && !s.synchronous);
    s.apply(&sync_set("a", 1, &["b", "c"], true)).unwrap();
    assert_eq!(s.sync_set, ["b".to_owned(), "c".to_owned()].into());
    assert!(s.synchronous);
    s.apply(&sync_set("a", 1, &[], false)).unwrap();
    assert!(s.sync_set.is_empty() && !s.synchronous);
}

/// In synchronous mode a member outside the set never takes the lease,
/// however it asks: by acquiring an expired or released lease, or by a
/// switchover. The last holder may take it back, and an operator's
/// failover to a named member is the one way past the rule.
#[test]
fn in_synchronous_mode_only_the_sync_set_and_the_last_holder_take_the_lease() {
    let mut s = held_by_a();
    s.apply(&sync_set("a", 1, &["b"], true)).unwrap();
    let err = s.apply(&transfer("a", s.lease.version(), "c")).unwrap_err();
    assert!(
        matches!(&err, Rejection::NotSynchronous { name, .. } if name == "c"),
        "{err}"
    );
    s.apply(&release("a", s.lease.version())).unwrap();
    let err = s.apply(&acquire("c", s.lease.version())).unwrap_err();
    assert!(
        err.to_string().contains("c is not a synchronous standby"),
        "{err}"
    );
    assert_eq!(s.lease.holder, None, "nothing changed");

    // The last holder takes its lease back; the set stays.
    s.apply(&acquire("a", s.lease.version())).unwrap();
    assert_eq!(s.sync_set, ["b".to_owned()].into());

    // A synchronous standby takes over: it leaves the set, which the new
    // holder then widens with the members that follow it.
    s.apply(&release("a", s.lease.version())).unwrap();
    s.apply(&acquire("b", s.lease.version())).unwrap();
    assert_eq!(s.lease.holder.as_deref(), Some("b"));
    assert!(s.sync_set.is_empty() && s.synchronous);

    // Nobody else is synchronous now, so only an operator's failover
    // passes the rule.
    let epoch = s.lease.epoch;
    s.apply(&release("b", s.lease.version())).unwrap();
    assert!(s.apply(&acquire("c", s.lease.version())).is_err());
    s.apply(&request_switchover(None, Some("c"), None)).unwrap();
    s.apply(&acquire("c", s.lease.version())).unwrap();
    assert_eq!(s.lease.holder.as_deref(), Some("c"));
    assert!(s.lease.epoch > epoch);

    // Asynchronous again: anyone may.
    s.apply(&sync_set("c", s.lease.epoch.0, &[], false))
        .unwrap();
    s.apply(&transfer("c", s.lease.version(), "a")).unwrap();
    assert_eq!(s.lease.holder.as_deref(), Some("a"));
}

#[test]
fn removing_a_member_takes_it_out_of_the_sync_set() {
    let mut s = held_by_a();
    s.apply(&sync_set("a", 1, &["b", "c"], true)).unwrap();
    s.apply(&Command::RemoveMember { name: "c".into() })
        .unwrap();
    assert_eq!(s.sync_set, ["b".to_owned()].into());
}

/// a holds the lease at epoch 1 with quorum standbys b, c and d (each
/// commit on at least `k` of them), then releases it.
fn quorum_released(k: u32) -> ClusterState {
    let mut s = held_by_a();
    s.apply(&publish("d", 5)).unwrap();
    s.apply(&quorum_set("a", 1, &["b", "c", "d"], k)).unwrap();
    s.apply(&release("a", s.lease.version())).unwrap();
    s
}

/// The quorum rule, row by row: each commit is on at least k of the n
/// quorum standbys, so a candidate needs n - k + 1 of them (itself
/// included) to have reported, after the lease ended, positions no
/// further than its own.
#[test]
fn in_quorum_mode_a_candidate_shows_it_has_every_acknowledged_commit() {
    type Reports = &'static [(&'static str, u64)];
    #[rustfmt::skip]
    let rows: [(u32, Reports, &str, Result<(), &str>); 11] = [
        // k = 1: any commit may be on one standby only; all three must report.
        (1, &[("b", 10), ("c", 10), ("d", 9)], "b", Ok(())),
        (1, &[("b", 10), ("c", 11), ("d", 9)], "b", Err("3 of the quorum")),
        (1, &[("b", 10), ("c", 10)], "b", Err("and 2 have")),
        (1, &[("b", 10), ("c", 11), ("d", 9)], "c", Ok(())),
        // k = 2: two of the three suffice, if the candidate is the furthest.
        (2, &[("b", 10), ("c", 11)], "b", Err("and 1 have")),
        (2, &[("b", 10), ("c", 11)], "c", Ok(())),
        (2, &[("c", 11), ("d", 12)], "c", Err("and 1 have")),
        // k = n: every standby has every commit; its own report is enough.
        (3, &[("d", 1)], "d", Ok(())),
        (3, &[], "d", Err("and 0 have")),
        // k = 0: no standby is known to have them all.
        (0, &[("b", 10), ("c", 10), ("d", 10)], "b", Err("4 of the quorum")),
        // Outside the set, even with the most WAL.
        (2, &[("b", 1), ("c", 1), ("d", 1)], "w", Err("is a witness")),
    ];
    for (k, reports, candidate, expected) in rows {
        let mut s = quorum_released(k);
        let ended = s.lease.version();
        for (member, lsn) in reports {
            s.apply(&report(member, ended, *lsn)).unwrap();
        }
        let outcome = s.apply(&acquire(candidate, ended));
        match expected {
            Ok(()) => {
                assert!(
                    outcome.is_ok(),
                    "k={k} {reports:?} {candidate}: {outcome:?}"
                );
                assert!(s.may_take_lease(candidate) || s.lease.is_held_by(candidate));
            }
            Err(needle) => {
                let err = outcome.expect_err(needle).to_string();
                assert!(err.contains(needle), "k={k} {reports:?} {candidate}: {err}");
                assert!(
                    !s.may_take_lease(candidate),
                    "k={k} {reports:?} {candidate}"
                );
                assert_eq!(s.lease.holder, None, "nothing changed");
            }
        }
    }
}

/// Positions measured under an earlier version of the lease may predate
/// the old primary's last commits: they count for nothing.
#[test]
fn only_positions_measured_after_the_lease_ended_count() {
    let mut s = held_by_a();
    s.apply(&publish("d", 5)).unwrap();
    s.apply(&quorum_set("a", 1, &["b", "c", "d"], 2)).unwrap();
    // A holder that crashed never releases: positions are reported under
    // the version it held. A renewal after them makes them worthless.
    let held = s.lease.version();
    s.apply(&report("b", held, 10)).unwrap();
    s.apply(&report("c", held, 10)).unwrap();
    s.apply(&renew("a", 1)).unwrap();
    assert!(!s.may_take_lease("b"));
    s.apply(&release("a", s.lease.version())).unwrap();
    let ended = s.lease.version();
    let err = s.apply(&report("b", held, 10)).unwrap_err();
    assert!(
        matches!(err, Rejection::LeaseVersionChanged { .. }),
        "{err}"
    );
    s.apply(&report("b", ended, 10)).unwrap();
    s.apply(&report("c", ended, 9)).unwrap();
    // The holder retakes its lease, and lets it go again: the reports were
    // for the lease before.
    s.apply(&acquire("a", ended)).unwrap();
    s.apply(&release("a", s.lease.version())).unwrap();
    let err = s.apply(&acquire("b", s.lease.version())).unwrap_err();
    assert!(err.to_string().contains("and 0 have"), "{err}");
}

#[test]
fn positions_come_from_database_members_that_do_not_hold_the_lease() {
    let mut s = quorum_released(2);
    let ended = s.lease.version();
    for (who, needle) in [("w", "witness"), ("zz", "unknown member zz")] {
        let err = s.apply(&report(who, ended, 1)).unwrap_err().to_string();
        assert!(err.contains(needle), "{who}: {err}");
    }
    s.apply(&acquire("a", ended)).unwrap();
    let err = s.apply(&report("a", s.lease.version(), 1)).unwrap_err();
    assert!(err.to_string().contains("a holds the lease"), "{err}");
}

#[test]
fn a_quorum_is_never_larger_than_its_standbys() {
    let mut s = held_by_a();
    let err = s.apply(&quorum_set("a", 1, &["b", "c"], 3)).unwrap_err();
    assert!(err.to_string().contains("a quorum of 3 among 2"), "{err}");
    let mut asynchronous = quorum_set("a", 1, &[], 0);
    if let Command::SetSyncSet { synchronous, .. } = &mut asynchronous {
        *synchronous = false;
    }
    assert!(s.apply(&asynchronous).is_err());
    s.apply(&quorum_set("a", 1, &["b", "c"], 2)).unwrap();
    assert_eq!((s.sync_quorum, s.synchronous), (Some(2), true));
}

/// When the lease passes to a quorum standby, or one is removed, it may
/// have been one of the k with a commit: the others are known to hold one
/// fewer, and the claim stays true.
#[test]
fn the_quorum_shrinks_with_the_members_that_leave_the_set() {
    let mut s = quorum_released(2);
    let ended = s.lease.version();
    s.apply(&report("c", ended, 10)).unwrap();
    s.apply(&report("d", ended, 10)).unwrap();
    s.apply(&acquire("c", ended)).unwrap();
    assert_eq!(s.sync_set, ["b".to_owned(), "d".to_owned()].into());
    assert_eq!(s.sync_quorum, Some(1));
    assert!(s.positions.is_empty());
    s.apply(&Command::RemoveMember { name: "d".into() })
        .unwrap();
    assert_eq!(s.sync_set, ["b".to_owned()].into());
    assert_eq!(s.sync_quorum, Some(0));
    // A switchover needs no reports: the candidate replayed the old
    // primary's shutdown checkpoint.
    s.apply(&quorum_set("c", s.lease.epoch.0, &["a", "b"], 2))
        .unwrap();
    s.apply(&transfer("c", s.lease.version(), "a")).unwrap();
    assert_eq!((s.sync_set.len(), s.sync_quorum), (1, Some(1)));
}

#[test]
fn synchronous_mode_reads_as_patroni_writes_it() {
    for (written, mode) in [
        ("false", SyncMode::Off),
        ("true", SyncMode::On),
        ("\"quorum\"", SyncMode::Quorum),
        ("\"on\"", SyncMode::On),
        ("\"off\"", SyncMode::Off),
    ] {
        let read: SyncMode = serde_json::from_str(written).expect(written);
        assert_eq!(read, mode, "{written}");
    }
    for mode in [SyncMode::Off, SyncMode::On, SyncMode::Quorum] {
        let text = serde_json::to_string(&mode).unwrap();
        assert_eq!(serde_json::from_str::<SyncMode>(&text).unwrap(), mode);
    }
    assert_eq!(serde_json::to_string(&SyncMode::On).unwrap(), "true");
    let err = serde_json::from_str::<SyncMode>("\"maybe\"").unwrap_err();
    assert!(err.to_string().contains("\"maybe\" is none of"), "{err}");
}
