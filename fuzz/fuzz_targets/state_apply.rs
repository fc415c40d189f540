//! `ClusterState::apply` over any sequence of commands: it never panics,
//! it is deterministic, a rejected command changes nothing, and the
//! invariants the lease rules rest on hold after every step.
//!
//! The input is read one of two ways, chosen by its first byte:
//! - `{` or whitespace: a stream of JSON commands, as the Raft log stores
//!   them, so the decoder is fuzzed too;
//! - anything else: commands built from the bytes with names from a small
//!   pool and, most of the time, the lease version the state expects, so
//!   that compare-and-set commands get past their checks and reach deep
//!   states a random `u64` never would.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use raftgres_state::{
    ClusterState, Command, ConfigValues, Epoch, LeaseVersion, Lsn, Member, MemberRole,
    PendingRestart, PgState, Switchover, SyncMode, Tags,
};

/// At most this many commands per input, so one input stays fast.
const MAX_COMMANDS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let commands = match data.first() {
        Some(b'{' | b' ' | b'\n') => from_json(data),
        _ => from_bytes(data),
    };
    let mut state = ClusterState::default();
    let mut twin = ClusterState::default();
    for command in &commands {
        round_trips(command);
        let before = state.clone();
        let response = state.apply(command);
        assert_eq!(
            twin.apply(command),
            response,
            "apply is not deterministic for {command:?}"
        );
        assert_eq!(twin, state, "apply is not deterministic for {command:?}");
        if let Err(rejection) = &response {
            assert_eq!(
                before, state,
                "{command:?} was rejected ({rejection}) but changed the state"
            );
        }
        check_step(&before, &state);
        check_invariants(&state);
    }
    let snapshot = serde_json::to_vec(&state).expect("the state serializes");
    let restored: ClusterState = serde_json::from_slice(&snapshot).expect("a snapshot reads back");
    assert_eq!(restored, state, "a snapshot does not read back as written");
});

fn from_json(data: &[u8]) -> Vec<Command> {
    serde_json::Deserializer::from_slice(data)
        .into_iter::<Command>()
        .map_while(|command| command.ok())
        .take(MAX_COMMANDS)
        .collect()
}

/// A log entry reads back as the command that was written.
fn round_trips(command: &Command) {
    let written = serde_json::to_vec(command).expect("a command serializes");
    let read: Command = serde_json::from_slice(&written).expect("a written command reads back");
    assert_eq!(&read, command, "a log entry does not read back as written");
}

/// What must hold between two consecutive states, whatever was applied.
fn check_step(before: &ClusterState, after: &ClusterState) {
    assert!(
        after.lease.epoch >= before.lease.epoch,
        "the lease epoch went backwards: {} -> {}",
        before.lease.epoch,
        after.lease.epoch
    );
    assert!(
        after.lease.version() >= before.lease.version(),
        "the lease version went backwards"
    );
    if after.lease.holder != before.lease.holder && after.lease.holder.is_some() {
        assert!(
            after.lease.epoch > before.lease.epoch,
            "the lease changed holder without a new epoch (the fencing token)"
        );
    }
    assert!(
        after.lease.timeline >= before.lease.timeline,
        "the cluster's timeline went down"
    );
    if let Some(identity) = &before.identity {
        assert_eq!(after.identity.as_ref(), Some(identity), "identity changed");
    }
    if let (Some(old), Some(new)) = (&before.config, &after.config) {
        assert!(new.version >= old.version, "config version went backwards");
        if new.values != old.values {
            assert!(
                new.version > old.version,
                "config changed without a version"
            );
        }
    }
    assert!(
        after.history.starts_with(&before.history),
        "history was rewritten"
    );
}

fn check_invariants(state: &ClusterState) {
    if let Some(holder) = &state.lease.holder {
        assert!(
            state.members.contains_key(holder),
            "the holder {holder} is not a member"
        );
        assert!(
            !state.sync_set.contains(holder),
            "the holder {holder} is its own synchronous standby"
        );
    }
    if state.lease.timeline_owner.is_some() {
        assert!(state.lease.timeline.is_some(), "an owner of no timeline");
    }
    for name in &state.sync_set {
        assert!(
            state.members.contains_key(name),
            "synchronous standby {name} is not a member"
        );
    }
    if !state.synchronous {
        assert!(state.sync_set.is_empty(), "standbys in asynchronous mode");
        assert_eq!(state.sync_quorum, None, "a quorum in asynchronous mode");
    }
    if let Some(k) = state.sync_quorum {
        assert!(
            usize::try_from(k).is_ok_and(|k| k <= state.sync_set.len()),
            "a quorum of {k} among {} standbys",
            state.sync_set.len()
        );
    }
    if let Some(config) = &state.config {
        assert!(config.version >= 1);
        assert_eq!(config.values.validate(), Ok(()), "an invalid config stored");
    }
    let mut node_ids = BTreeSet::new();
    for (name, member) in &state.members {
        assert_eq!(name, &member.name);
        assert_ne!(member.node_id, 0);
        assert!(
            node_ids.insert(member.node_id),
            "node_id {} twice",
            member.node_id
        );
    }
    for pair in state.history.windows(2) {
        assert!(
            pair[0].epoch < pair[1].epoch,
            "history epochs do not grow: {} then {}",
            pair[0].epoch,
            pair[1].epoch
        );
    }
    if let Some(last) = state.history.last() {
        assert!(last.epoch <= state.lease.epoch);
        if state.lease.holder.is_some() {
            assert_eq!(
                last.epoch, state.lease.epoch,
                "the current epoch has no history entry"
            );
        }
    }
}

const NAMES: [&str; 4] = ["m1", "m2", "m3", "w1"];

fn from_bytes(data: &[u8]) -> Vec<Command> {
    let mut u = Unstructured::new(data);
    // The state the commands are built against, so that the versions they
    // expect are the current ones as often as a real proposer's are.
    let mut shadow = ClusterState::default();
    let mut commands = Vec::new();
    while !u.is_empty() && commands.len() < MAX_COMMANDS {
        let Ok(command) = command(&mut u, &shadow) else {
            break;
        };
        let _ = shadow.apply(&command);
        commands.push(command);
    }
    commands
}

fn name(u: &mut Unstructured) -> Result<String> {
    // Now and then a name the state must refuse or has never seen.
    if u.ratio(1, 16)? {
        return u.arbitrary();
    }
    Ok((*u.choose(&NAMES)?).to_owned())
}

fn small(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0..=7)? {
        0 => u.arbitrary()?,
        1 => u64::MAX,
        n => n * 500,
    })
}

fn version(u: &mut Unstructured, state: &ClusterState) -> Result<LeaseVersion> {
    let current = state.lease.version();
    Ok(match u.int_in_range(0..=7)? {
        0 => u
            .arbitrary::<(u64, u64)>()
            .map(|(epoch, revision)| LeaseVersion {
                epoch: Epoch(epoch),
                revision,
            })?,
        1 => LeaseVersion {
            revision: current.revision.wrapping_add(1),
            ..current
        },
        _ => current,
    })
}

fn epoch(u: &mut Unstructured, state: &ClusterState) -> Result<Epoch> {
    Ok(if u.ratio(1, 8)? {
        Epoch(u.arbitrary()?)
    } else {
        state.lease.epoch
    })
}

fn holder_or_name(u: &mut Unstructured, state: &ClusterState) -> Result<String> {
    match &state.lease.holder {
        Some(holder) if u.ratio(3, 4)? => Ok(holder.clone()),
        _ => name(u),
    }
}

fn config_values(u: &mut Unstructured) -> Result<ConfigValues> {
    // Mostly a valid config (ttl 30 s), bent in one or two fields.
    let mut values = ConfigValues {
        timing: raftgres_state::LeaseTiming::from_millis(30_000, 1_000, 2_000),
        retry_timeout_ms: 10_000,
        maximum_lag_on_failover: 1 << 20,
        synchronous_mode: *u.choose(&[SyncMode::Off, SyncMode::On, SyncMode::Quorum])?,
        synchronous_mode_strict: u.arbitrary()?,
        synchronous_node_count: u.int_in_range(0..=3)?,
        postgresql_parameters: BTreeMap::new(),
        pause: u.arbitrary()?,
        slots: BTreeMap::new(),
        ignore_slots: Vec::new(),
    };
    // A permanent slot whose name may be invalid or a member's own slot's.
    if u.ratio(1, 8)? {
        let name = u.choose(&["keep_me", "node1", "Bad-Name", ""])?.to_string();
        values
            .slots
            .insert(name, raftgres_state::PermanentSlot::physical());
    }
    if u.ratio(1, 4)? {
        values.timing.ttl = std::time::Duration::from_millis(small(u)?);
    }
    if u.ratio(1, 4)? {
        values.timing.margin = std::time::Duration::from_millis(small(u)?);
    }
    if u.ratio(1, 4)? {
        values.timing.loop_wait = std::time::Duration::from_millis(small(u)?);
    }
    if u.ratio(1, 8)? {
        values.retry_timeout_ms = small(u)?;
    }
    if u.ratio(1, 8)? {
        values.postgresql_parameters = u.arbitrary()?;
    }
    Ok(values)
}

fn member(u: &mut Unstructured) -> Result<Member> {
    let name = name(u)?;
    let witness = name.starts_with('w') || u.ratio(1, 16)?;
    let node_id = match NAMES.iter().position(|n| *n == name) {
        Some(i) if !u.ratio(1, 16)? => i as u64 + 1,
        _ => u.int_in_range(0..=5)?,
    };
    let pending: BTreeMap<String, PendingRestart> = if u.ratio(1, 8)? {
        BTreeMap::from([(
            u.arbitrary()?,
            PendingRestart {
                old_value: u.arbitrary()?,
                new_value: u.arbitrary()?,
            },
        )])
    } else {
        BTreeMap::new()
    };
    Ok(Member {
        role: *u.choose(&[
            MemberRole::Unknown,
            MemberRole::Primary,
            MemberRole::Replica,
            MemberRole::Witness,
        ])?,
        pg_state: *u.choose(&[PgState::Running, PgState::Stopped, PgState::Crashed])?,
        timeline: u.arbitrary()?,
        receive_lsn: u.arbitrary::<Option<u64>>()?.map(Lsn),
        replay_lsn: u.arbitrary::<Option<u64>>()?.map(Lsn),
        streaming: u.arbitrary()?,
        pooler: u.arbitrary()?,
        pooler_paused_epoch: u.arbitrary::<Option<u64>>()?.map(Epoch),
        tags: Tags {
            nofailover: u.arbitrary()?,
            failover_priority: u.int_in_range(0..=2)?,
            nosync: u.arbitrary()?,
            noloadbalance: u.arbitrary()?,
            clonefrom: u.arbitrary()?,
            replicatefrom: if u.arbitrary()? {
                Some((*u.choose(&NAMES)?).to_owned())
            } else {
                None
            },
            ..Tags::default()
        },
        witness,
        heartbeat: u.arbitrary()?,
        pending_restart: pending,
        ..Member::new(name, node_id, "127.0.0.1:7101")
    })
}

fn command(u: &mut Unstructured, state: &ClusterState) -> Result<Command> {
    Ok(match u.int_in_range(0..=13)? {
        0 => Command::Initialize {
            system_id: if u.ratio(1, 4)? {
                String::new()
            } else {
                u.arbitrary::<u64>()?.to_string()
            },
        },
        1 => Command::BootstrapConfig {
            values: config_values(u)?,
        },
        2 => Command::SetConfig {
            expected_version: match &state.config {
                Some(config) if !u.ratio(1, 8)? => config.version,
                _ => u.int_in_range(0..=3)?,
            },
            values: config_values(u)?,
        },
        3 | 4 => Command::PublishMember { member: member(u)? },
        5 => Command::RemoveMember { name: name(u)? },
        6 => Command::AcquireLease {
            member: name(u)?,
            expected: version(u, state)?,
            ttl_ms: small(u)?,
            reason: "fuzz".into(),
            at_unix_ms: u.arbitrary()?,
        },
        7 => Command::RenewLease {
            member: holder_or_name(u, state)?,
            epoch: epoch(u, state)?,
            ttl_ms: small(u)?,
            lsn: u.arbitrary::<Option<u64>>()?.map(Lsn),
            timeline: u.arbitrary()?,
        },
        8 => Command::ReleaseLease {
            member: holder_or_name(u, state)?,
            expected: version(u, state)?,
            lsn: u.arbitrary::<Option<u64>>()?.map(Lsn),
        },
        9 => Command::TransferLease {
            from: holder_or_name(u, state)?,
            expected: version(u, state)?,
            to: name(u)?,
            reason: "fuzz".into(),
            at_unix_ms: u.arbitrary()?,
        },
        10 => Command::RequestSwitchover {
            switchover: Switchover {
                from: if u.arbitrary()? {
                    Some(holder_or_name(u, state)?)
                } else {
                    None
                },
                to: if u.arbitrary()? { Some(name(u)?) } else { None },
                at_unix_ms: u.arbitrary()?,
            },
        },
        11 => Command::CancelSwitchover,
        12 => {
            let mut members = BTreeSet::new();
            for _ in 0..u.int_in_range(0..=3)? {
                members.insert(name(u)?);
            }
            let synchronous = u.ratio(3, 4)?;
            Command::SetSyncSet {
                member: holder_or_name(u, state)?,
                epoch: epoch(u, state)?,
                quorum: if u.arbitrary()? {
                    Some(u.int_in_range(0..=4)?)
                } else {
                    None
                },
                members,
                synchronous,
            }
        }
        _ => Command::ReportPosition {
            member: name(u)?,
            lease: version(u, state)?,
            lsn: Lsn(u.arbitrary()?),
        },
    })
}
