use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::query::parse_query;

const OK: u16 = 200;
const NO: u16 = 503;

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A primary holding the lease: only what `status` reads is set.
fn primary() -> NodeHealth {
    NodeHealth {
        role: Role::Primary,
        holds_valid_lease: true,
        postgres_running: true,
        tags: tags(&[("nofailover", "false"), ("failover_priority", "1")]),
        ..NodeHealth::default()
    }
}

/// A replica streaming 4 KiB behind, in zone eu.
fn replica() -> NodeHealth {
    NodeHealth {
        role: Role::Replica,
        postgres_running: true,
        in_recovery: true,
        streaming: true,
        lag_bytes: Some(4096),
        tags: tags(&[("nofailover", "false"), ("zone", "eu")]),
        ..NodeHealth::default()
    }
}

/// A witness: no lease, no Postgres, no tags.
fn witness() -> NodeHealth {
    NodeHealth {
        role: Role::Witness,
        ..NodeHealth::default()
    }
}

fn with(base: NodeHealth, change: impl FnOnce(&mut NodeHealth)) -> NodeHealth {
    let mut h = base;
    change(&mut h);
    h
}

/// One row per situation: the member, the query string, and the expected
/// status of every endpoint in the order of `Endpoint::ALL`.
#[test]
fn status_table() {
    #[rustfmt::skip]
    let rows: Vec<(&str, NodeHealth, &str, [u16; 14])> = vec![
        //                                                      prim lead repl r-o  stby sync asyn ro-s quo  ro-q hlth live rdy  patr
        ("primary",                     primary(), "",               [OK, OK, NO, OK, NO, NO, NO, OK, NO, OK, OK, OK, OK, OK]),
        ("primary, ?lag= is irrelevant", primary(), "lag=0",         [OK, OK, NO, OK, NO, NO, NO, OK, NO, OK, OK, OK, OK, OK]),
        ("primary, lease deadline passed", with(primary(), |h| h.holds_valid_lease = false), "",    [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, NO, OK]),
        ("primary role, still in recovery (promoting)", with(primary(), |h| h.in_recovery = true), "",           [NO, OK, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, NO, OK]),
        ("primary with lease, Postgres stopped", with(primary(), |h| h.postgres_running = false), "",     [NO, OK, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, NO, OK]),
        ("paused primary", with(primary(), |h| h.paused = true), "",                [OK, OK, NO, OK, NO, NO, NO, OK, NO, OK, OK, OK, OK, OK]),
        ("paused replica", with(replica(), |h| h.paused = true), "",                [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("replica",                     replica(), "",               [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("replica, Postgres stopped", with(replica(), |h| h.postgres_running = false), "",     [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, NO, OK]),
        ("replica role, out of recovery, no lease", with(replica(), |h| h.in_recovery = false), "",          [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, NO, OK]),
        ("lagging replica, no limit", with(replica(), |h| h.lag_bytes = Some(10 << 20)), "",   [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("lagging replica, limit below its lag", with(replica(), |h| h.lag_bytes = Some(10 << 20)), "lag=1MB", [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, NO, OK]),
        ("lagging replica, limit above its lag", with(replica(), |h| h.lag_bytes = Some(10 << 20)), "lag=16MB", [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("lagging replica, limit equal to its lag", with(replica(), |h| h.lag_bytes = Some(10 << 20)), "lag=10485760", [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("replica with unknown lag, limit given", with(replica(), |h| h.lag_bytes = None), "lag=1GB",      [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, NO, OK]),
        ("replica with unknown lag, no limit", with(replica(), |h| h.lag_bytes = None), "",             [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("replica not streaming", with(replica(), |h| h.streaming = false), "",            [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, NO, OK]),
        ("replica not streaming, streaming required", with(replica(), |h| h.streaming = false), "replication_state=streaming", [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, NO, OK]),
        ("replica streaming, streaming required", replica(), "replication_state=streaming",                [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("replica tagged noloadbalance", with(replica(), |h| { h.tags.insert("noloadbalance".into(), "true".into()); }), "", [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, OK, OK]),
        ("replica tagged noloadbalance=false", with(replica(), |h| { h.tags.insert("noloadbalance".into(), "false".into()); }), "", [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("replica, tag filter matches",  replica(), "tag_zone=eu&tag_nofailover=false", [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("replica, tag filter differs",  replica(), "tag_zone=us",   [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, OK]),
        ("replica, tag filter on a missing tag", replica(), "tag_rack=a", [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, OK]),
        ("primary, tag filter differs: leader checks ignore tags", primary(), "tag_zone=us",                                [OK, OK, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, OK]),
        ("witness",                      witness(), "",              [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, NO, OK]),
        ("witness that somehow holds a lease", with(witness(), |h| h.holds_valid_lease = true), "",     [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, NO, OK]),
        ("unknown role, Postgres running in recovery", with(replica(), |h| h.role = Role::Unknown), "",         [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, NO, OK]),
        ("unknown role, Postgres running as a primary with a lease", with(primary(), |h| h.role = Role::Unknown), "",         [NO, OK, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, NO, OK]),
        ("synchronous standby", with(replica(), |h| h.sync_standby = true), "",          [NO, NO, OK, OK, NO, OK, NO, OK, NO, NO, OK, OK, OK, OK]),
        ("synchronous standby, limit below its lag", with(replica(), |h| h.sync_standby = true), "lag=1kB",   [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, NO, OK]),
        ("synchronous standby, Postgres stopped", with(replica(), |h| { h.sync_standby = true; h.postgres_running = false; }), "", [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, NO, OK]),
        ("quorum standby", with(replica(), |h| h.quorum_standby = true), "",        [NO, NO, OK, OK, NO, NO, NO, NO, OK, OK, OK, OK, OK, OK]),
        ("quorum standby, limit below its lag", with(replica(), |h| h.quorum_standby = true), "lag=1kB", [NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, OK, NO, OK]),
        ("holder whose Postgres is stopped: leader, not primary", with(primary(), |h| { h.role = Role::Unknown; h.postgres_running = false; }), "", [NO, OK, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, NO, OK]),
        ("replica, ?lag= no byte count: ignored as Patroni does", with(replica(), |h| h.lag_bytes = Some(10 << 20)), "lag=10mb", [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("replica, readiness within maximum_lag_on_failover", with(replica(), |h| h.maximum_lag_on_failover = Some(1 << 20)), "", [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("replica, readiness past maximum_lag_on_failover", with(replica(), |h| { h.maximum_lag_on_failover = Some(1 << 20); h.lag_bytes = Some(2 << 20); }), "", [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, NO, OK]),
        ("replica, ?lag= overrides maximum_lag_on_failover", with(replica(), |h| { h.maximum_lag_on_failover = Some(1 << 20); h.lag_bytes = Some(2 << 20); }), "lag=4MB", [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("replica replaying behind what it received, readiness by replay", with(replica(), |h| { h.maximum_lag_on_failover = Some(1 << 20); h.lag_bytes = Some(10 << 20); h.receive_lag_bytes = Some(0); }), "", [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, NO, OK]),
        ("replica replaying behind what it received, readiness mode=write", with(replica(), |h| { h.maximum_lag_on_failover = Some(1 << 20); h.lag_bytes = Some(10 << 20); h.receive_lag_bytes = Some(0); }), "mode=write", [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, OK, OK]),
        ("replica, mode=write with its received lag unknown", with(replica(), |h| { h.maximum_lag_on_failover = Some(1 << 20); h.receive_lag_bytes = None; }), "mode=write", [NO, NO, OK, OK, NO, NO, OK, NO, NO, NO, OK, OK, NO, OK]),
    ];

    let mut failures = Vec::new();
    for (name, health, raw_query, expected) in &rows {
        let query = parse_query(Some(raw_query)).expect(name);
        for (endpoint, want) in Endpoint::ALL.iter().zip(expected) {
            let got = status(*endpoint, health, &query, Duration::ZERO).as_u16();
            if got != *want {
                failures.push(format!(
                    "{name} ?{raw_query}: {endpoint:?} answered {got}, want {want}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// `/liveness` by how long the loops have been quiet: a ttl on a writable
/// primary, two elsewhere, and no limit while paused or before the config.
#[test]
fn liveness_follows_the_loops_progress() {
    let ttl = Duration::from_secs(3);
    let live = |health: &NodeHealth, quiet: Duration| {
        status(Endpoint::Liveness, health, &HealthQuery::default(), quiet).as_u16()
    };
    let primary = with(primary(), |h| h.ttl = Some(ttl));
    let replica = with(replica(), |h| h.ttl = Some(ttl));
    assert_eq!(live(&primary, ttl - Duration::from_millis(1)), OK);
    assert_eq!(live(&primary, ttl), NO);
    assert_eq!(live(&replica, ttl), OK);
    assert_eq!(live(&replica, ttl * 2 - Duration::from_millis(1)), OK);
    assert_eq!(live(&replica, ttl * 2), NO);
    let lapsed = with(primary.clone(), |h| h.holds_valid_lease = false);
    assert_eq!(live(&lapsed, ttl), OK, "no writable primary: two ttls");
    let paused = with(primary.clone(), |h| h.paused = true);
    assert_eq!(live(&paused, ttl * 10), OK);
    let unconfigured = with(primary, |h| h.ttl = None);
    assert_eq!(live(&unconfigured, ttl * 10), OK);
}

#[test]
fn every_endpoint_has_a_route() {
    for endpoint in Endpoint::ALL {
        assert!(
            ROUTES.iter().any(|&(_, e)| e == endpoint),
            "{endpoint:?} has no path"
        );
    }
}
