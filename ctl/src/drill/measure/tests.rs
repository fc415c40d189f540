use super::*;
use serde::Deserialize;
use serde_json::json;

fn at(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn acked(seq: u64, sent: u64, acked: u64, by: &str) -> Write {
    Write {
        seq,
        sent_at: at(sent),
        outcome: Ok(Ack {
            at: at(acked),
            by: by.to_owned(),
        }),
    }
}

fn failed(seq: u64, sent: u64, error: &str) -> Write {
    Write {
        seq,
        sent_at: at(sent),
        outcome: Err(error.to_owned()),
    }
}

/// A switchover at 2 s from m1 to m2: three writes on m1, two refused
/// while it stopped, one that timed out (but committed on m1 before the
/// handover), then m2.
fn facts() -> Facts {
    Facts {
        setting: Setting {
            action: Action::Switchover,
            cluster: "lab".into(),
            entry: "HAProxy (127.0.0.1:5000)".into(),
            table: "raftgres_drill_00ff".into(),
            table_dropped: true,
            old_primary: "m1".into(),
            old_timeline: Some(1),
            new_primary: "m2".into(),
            new_timeline: Some(2),
            writes_per_second: 10,
        },
        action_sent: at(2000),
        action_done: at(2900),
        writes: vec![
            acked(1, 1800, 1805, "m1"),
            acked(2, 1900, 1904, "m1"),
            acked(3, 2000, 2010, "m1"),
            failed(4, 2100, "m1 (127.0.0.1:5432): connection refused"),
            failed(5, 2200, "m1 (127.0.0.1:5432): connection refused"),
            failed(6, 2300, "no answer within 10s"),
            // Sent before the next, answered after it: order by answer.
            acked(7, 2400, 3300, "m2"),
            acked(8, 2500, 3100, "m2"),
            acked(9, 3400, 3402, "m2"),
        ],
        found: [1, 2, 3, 6, 7, 8, 9].into(),
    }
}

#[test]
fn rto_is_the_longest_gap_between_answers_and_the_wait_for_the_new_primary() {
    let report = Report::of(&facts());
    // Answers at 1805, 1904, 2010, 3100 (#8), 3300 (#7), 3402.
    assert_eq!(
        report.rto,
        Rto {
            longest_gap_ms: Some(1090),
            gap_after_seq: Some(3),
            gap_before_seq: Some(8),
            to_new_primary_ms: Some(1100),
        }
    );
    assert_eq!(
        report.writes,
        Counts {
            attempted: 9,
            acknowledged: 6,
            failed: 3
        }
    );
    assert_eq!((report.action_at_ms, report.action_took_ms), (2000, 900));
    assert_eq!(report.wrote_ms, 3402 - 1800);
}

#[test]
fn rpo_counts_acknowledged_writes_missing_on_the_new_primary() {
    let report = Report::of(&facts());
    assert_eq!(
        report.rpo,
        Rpo {
            lost: 0,
            lost_seqs: vec![],
            failed_but_committed: 1
        }
    );
    let mut lossy = facts();
    lossy.found = [1, 6, 8, 9].into();
    let report = Report::of(&lossy);
    assert_eq!(report.rpo.lost, 3);
    assert_eq!(report.rpo.lost_seqs, [2, 3, 7]);
    assert!(
        report.table().contains("| 3 (#2, #3, #7)"),
        "{}",
        report.table()
    );
}

#[test]
fn errors_are_counted_by_text_the_most_frequent_first() {
    let report = Report::of(&facts());
    assert_eq!(
        report.errors,
        [
            ErrorCount {
                count: 2,
                error: "m1 (127.0.0.1:5432): connection refused".into()
            },
            ErrorCount {
                count: 1,
                error: "no answer within 10s".into()
            },
        ]
    );
}

#[test]
fn without_answers_the_figures_are_unknown_not_zero() {
    let mut facts = facts();
    facts.writes = vec![acked(1, 0, 5, "m1"), failed(2, 100, "refused")];
    facts.found = [1].into();
    let report = Report::of(&facts);
    assert_eq!(report.rto.longest_gap_ms, None);
    assert_eq!(report.rto.to_new_primary_ms, None);
    let table = report.table();
    assert!(
        table.contains("fewer than two writes acknowledged"),
        "{table}"
    );
    assert!(table.contains("never: m2 acknowledged no write"), "{table}");
    let json: Value = serde_json::from_str(&report.json()).expect("JSON");
    assert_eq!(json["rto"]["longest_gap_ms"], Value::Null);
    assert_eq!(json["rto"]["to_new_primary_ms"], Value::Null);
    facts.writes.clear();
    assert_eq!(Report::of(&facts).wrote_ms, 0);
}

#[test]
fn json_has_stable_keys() {
    let json: Value = serde_json::from_str(&Report::of(&facts()).json()).expect("JSON");
    assert_eq!(json["action"], "switchover");
    assert_eq!(json["cluster"], "lab");
    assert_eq!(json["old_primary"], "m1");
    assert_eq!(json["old_timeline"], 1);
    assert_eq!(json["new_primary"], "m2");
    assert_eq!(json["new_timeline"], 2);
    assert_eq!(json["table"], "raftgres_drill_00ff");
    assert_eq!(json["table_dropped"], true);
    assert_eq!(json["writes"]["failed"], 3);
    assert_eq!(json["rpo"]["lost"], 0);
    assert_eq!(json["rto"]["longest_gap_ms"], 1090);
    assert_eq!(json["errors"][0]["count"], 2);
}

#[test]
fn the_table_reads_like_patronictl_s() {
    let expected = "\
+ Drill: switchover of cluster lab ------------------------------------------------------+
| Measure                        | Value                                                 |
+--------------------------------+-------------------------------------------------------+
| Entry                          | HAProxy (127.0.0.1:5000)                              |
| Old primary                    | m1 (timeline 1)                                       |
| New primary                    | m2 (timeline 2)                                       |
| Action                         | sent at 2.000 s, answered after 0.900 s               |
| Writes                         | 9 sent at 10/s over 1.602 s, 6 acknowledged, 3 failed |
| RTO: longest write gap         | 1.090 s (between writes #3 and #8)                    |
| RTO: to the new primary        | 1.100 s from the request                              |
| RPO: acknowledged writes lost  | 0                                                     |
| Failed writes committed anyway | 1                                                     |
| Table                          | raftgres_drill_00ff (dropped)                         |
+--------------------------------+-------------------------------------------------------+
Errors:
      2 x m1 (127.0.0.1:5432): connection refused
      1 x no answer within 10s
";
    assert_eq!(Report::of(&facts()).table(), expected);
    let mut kept = facts();
    kept.setting.table_dropped = false;
    assert!(Report::of(&kept).table().contains("(NOT dropped)"));
}

#[test]
fn many_kinds_of_error_are_summed_beyond_the_first_five() {
    let mut facts = facts();
    facts.writes = (1..=8)
        .map(|n| failed(n, n * 10, &format!("error {n}")))
        .collect();
    let table = Report::of(&facts).table();
    assert!(
        table.contains("      3 x other errors (see --format json)"),
        "{table}"
    );
    assert_eq!(Report::of(&facts).errors.len(), 8);
}

#[test]
fn the_drill_acts_after_a_quarter_of_its_duration_within_bounds() {
    assert_eq!(lead(Duration::from_secs(8)), Duration::from_secs(2));
    assert_eq!(lead(Duration::from_secs(2)), Duration::from_secs(1));
    assert_eq!(lead(Duration::from_secs(3600)), Duration::from_secs(10));
}

#[test]
fn the_timeline_is_the_wal_file_name_s_first_eight_hex_digits() {
    assert_eq!(timeline_of_walfile("000000020000000000000003"), Some(2));
    assert_eq!(timeline_of_walfile("0000001A0000000000000003"), Some(26));
    assert_eq!(timeline_of_walfile("00000002"), None);
    assert_eq!(timeline_of_walfile("zz0000020000000000000003"), None);
    assert_eq!(timeline_of_walfile(""), None);
}

fn view(members: Value) -> ClusterView {
    ClusterView::deserialize(&json!({"scope": "lab", "members": members})).expect("lenient")
}

#[test]
fn the_failover_candidate_is_ranked_as_the_agents_rank() {
    let leader = json!({"name": "m1", "role": "leader", "state": "running"});
    let replica = |name: &str, lsn: &str, tags: Value| {
        json!({"name": name, "role": "replica", "state": "streaming", "replay_lsn": lsn,
               "tags": tags, "stale": false})
    };
    let plain = || json!({"nofailover": false, "failover_priority": 1});
    let with_leader = |replicas: Vec<Value>| {
        view(Value::Array(
            std::iter::once(leader.clone()).chain(replicas).collect(),
        ))
    };
    let cases = [
        // The most WAL wins.
        (
            vec![
                replica("m2", "0/3000000", plain()),
                replica("m3", "0/3000060", plain()),
            ],
            "m3",
        ),
        // Then the priority (as text too), then the first name.
        (
            vec![
                replica("m4", "0/3000060", plain()),
                replica("m3", "0/3000060", json!({"failover_priority": "2"})),
                replica("m2", "0/3000060", plain()),
            ],
            "m3",
        ),
        (
            vec![
                replica("m4", "0/3000060", plain()),
                replica("m2", "0/3000060", plain()),
            ],
            "m2",
        ),
        // An unknown position still counts, behind every known one.
        (
            vec![
                replica("m2", "unknown", plain()),
                replica("m3", "0/1", plain()),
            ],
            "m3",
        ),
    ];
    for (replicas, want) in cases {
        assert_eq!(
            best_replica(&with_leader(replicas)),
            Ok(want.into()),
            "{want}"
        );
    }
    // Tagged out, not streaming, stale or a witness: never.
    let err = best_replica(&with_leader(vec![
        replica("m2", "1/0", json!({"nofailover": true})),
        replica("m3", "1/0", json!({"nofailover": "true"})),
        replica("m4", "1/0", json!({"failover_priority": 0})),
        json!({"name": "m5", "role": "replica", "state": "running", "replay_lsn": "1/0"}),
        json!({"name": "m6", "role": "replica", "state": "streaming", "stale": true}),
        json!({"name": "w", "role": "witness", "state": "running"}),
    ]))
    .expect_err("nobody fits");
    assert!(
        err.contains("cluster lab has no replica to fail over to"),
        "{err}"
    );
}

#[test]
fn lsns_parse_as_postgres_writes_them() {
    assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
    assert_eq!(parse_lsn("0/0"), Some(0));
    assert_eq!(parse_lsn("0/100000000"), None);
    assert_eq!(parse_lsn("unknown"), None);
}
