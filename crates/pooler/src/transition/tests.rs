use super::*;
use Action::*;

/// A switchover, named as the agent names it (by lease epoch).
type Switchover = u64;
type Plan = Vec<Action<Switchover>>;

const A: u16 = 5432;
const B: u16 = 5433;
const C: u16 = 5434;

fn target(port: u16) -> Target {
    Target {
        host: "127.0.0.1".into(),
        port,
    }
}

fn routes(write: Option<u16>, read: &[u16]) -> Routes {
    Routes {
        write: write.map(target),
        read: read.iter().copied().map(target).collect(),
        write_db: "app".into(),
        read_db: None,
        dbname: "app".into(),
    }
}

/// The write database at `port`.
fn to(port: u16) -> Routes {
    routes(Some(port), &[])
}

fn nowhere() -> Routes {
    routes(None, &[])
}

/// Serving the primary at `port`, as written.
fn serving(port: u16) -> Applied<Switchover> {
    Applied {
        routes: Some(to(port)),
        serving: Some(target(port)),
        fenced: false,
        paused_for: None,
    }
}

/// After [`fence_at_start`], from whatever pgbouncer did.
fn started(knows_write_db: bool) -> Applied<Switchover> {
    let mut applied = Applied::unknown();
    let start = want(nowhere());
    for action in fence_at_start(knows_write_db) {
        applied.record(action, &start);
    }
    applied
}

fn fenced_nowhere() -> Applied<Switchover> {
    Applied {
        routes: Some(nowhere()),
        serving: None,
        fenced: true,
        paused_for: None,
    }
}

fn paused(mut applied: Applied<Switchover>, switchover: Switchover) -> Applied<Switchover> {
    applied.paused_for = Some(switchover);
    applied
}

/// No switchover due, and still waiting for a new primary if paused.
fn want(routes: Routes) -> Desired<Switchover> {
    Desired {
        routes,
        pause_for: None,
        pause_expired: false,
    }
}

fn due(routes: Routes, switchover: Switchover) -> Desired<Switchover> {
    Desired {
        pause_for: Some(switchover),
        ..want(routes)
    }
}

/// Paused too long with no primary.
fn expired(routes: Routes) -> Desired<Switchover> {
    Desired {
        pause_expired: true,
        ..want(routes)
    }
}

fn observed(host: &str, port: u16, disabled: bool) -> Applied<Switchover> {
    Applied::observed(Some(host), port, disabled)
}

/// Runs `plan` as if every step succeeded.
fn after(mut applied: Applied<Switchover>, desired: &Desired<Switchover>) -> Applied<Switchover> {
    for action in applied.plan(desired) {
        applied.record(action, desired);
    }
    applied
}

/// Failovers, as `raftgresctl pooler` and a member's pgbouncer both see
/// them: what pgbouncer does now, where clients should go, and the steps in
/// order. Once they are done there is nothing left to do.
#[test]
fn the_steps_for_each_failover_situation() {
    #[rustfmt::skip]
    let rows: Vec<(&str, Applied<Switchover>, Desired<Switchover>, Plan)> = vec![
        ("start, no leader yet",       started(true),                      want(nowhere()),             vec![Rewrite]),
        ("start, a leader",            started(true),                      want(to(A)),                 vec![Rewrite, Enable]),
        ("start, added, no leader",    started(false),                     want(nowhere()),             vec![]),
        ("start, added, a leader",     started(false),                     want(to(A)),                 vec![Rewrite, Enable]),
        ("steady",                     serving(A),                         want(to(A)),                 vec![]),
        ("leader lost",                serving(A),                         want(nowhere()),             vec![Fence, Rewrite]),
        ("still no leader",            fenced_nowhere(),                   want(nowhere()),             vec![]),
        ("a leader after a fence",     fenced_nowhere(),                   want(to(B)),                 vec![Rewrite, Enable]),
        ("leader moved while serving", serving(A),                         want(to(B)),                 vec![Rewrite, KillResume]),
        ("only the replicas changed",  serving(A),                         want(routes(Some(A), &[B])), vec![Rewrite]),
        ("once: serving the leader",   observed("127.0.0.1", A, false),    want(to(A)),                 vec![Rewrite]),
        ("once: serving another",      observed("127.0.0.1", B, false),    want(to(A)),                 vec![Rewrite, KillResume]),
        ("once: disabled",             observed("127.0.0.1", A, true),     want(to(A)),                 vec![Rewrite, Enable]),
        ("once: no server, no leader", observed(NO_SERVER_HOST, A, false), want(nowhere()),             vec![Fence, Rewrite]),
        ("once: not known yet",        Applied::unknown(),                 want(to(A)),                 vec![Rewrite, KillResume]),
    ];
    for (situation, applied, desired, steps) in rows {
        assert_eq!(applied.plan(&desired), steps, "{situation}");
        let done = after(applied, &desired);
        assert_eq!(done.plan(&desired), vec![], "{situation}: then nothing");
        assert_eq!(done.serves(), desired.routes.write.is_some(), "{situation}");
        assert_eq!(done.serving, desired.routes.write, "{situation}");
    }
}

/// A member's pgbouncer across switchovers: one row per situation.
#[test]
fn the_steps_for_each_switchover_situation() {
    #[rustfmt::skip]
    let rows: Vec<(&str, Applied<Switchover>, Desired<Switchover>, Plan)> = vec![
        ("due while serving",                  serving(A),                  due(to(A), 1),                 vec![Pause(1)]),
        ("due while fenced",                   fenced_nowhere(),            due(nowhere(), 1),             vec![PauseFenced(1)]),
        ("due: the pause goes first, alone",   serving(A),                  due(to(B), 1),                 vec![Pause(1)]),
        ("paused for it already",              paused(serving(A), 1),       due(to(A), 1),                 vec![]),
        ("a later switchover pauses again",    paused(serving(A), 1),       due(to(A), 2),                 vec![Pause(2)]),
        ("paused, reads changed: no RELOAD",   paused(serving(A), 1),       due(routes(Some(A), &[C]), 1), vec![]),
        ("paused, old primary stopped",        paused(serving(A), 1),       due(nowhere(), 1),             vec![]),
        ("paused, lease moved, not promoted",  paused(serving(A), 1),       want(nowhere()),               vec![]),
        ("paused, no primary for too long",    paused(serving(A), 1),       expired(nowhere()),            vec![Fence, Rewrite, Resume]),
        ("paused, the new primary runs",       paused(serving(A), 1),       want(to(B)),                   vec![Rewrite, Resume]),
        ("paused while fenced, a primary",     paused(fenced_nowhere(), 1), want(to(B)),                   vec![Rewrite, Enable, Resume]),
        ("paused while fenced, still none",    paused(fenced_nowhere(), 1), due(nowhere(), 1),             vec![]),
        ("cancelled",                          paused(serving(A), 1),       want(to(A)),                   vec![Resume]),
        ("cancelled while fenced",             paused(fenced_nowhere(), 1), want(nowhere()),               vec![Resume]),
        ("cancelled, reads changed meanwhile", paused(serving(A), 1),       want(routes(Some(A), &[C])),   vec![Rewrite, Resume]),
    ];
    for (situation, applied, desired, steps) in rows {
        assert_eq!(applied.plan(&desired), steps, "{situation}");
    }
}

/// The switchover the agent runs, step by step from one member's pgbouncer:
/// clients wait on the old entry until the new primary runs, and are never
/// KILLed.
#[test]
fn a_switchover_pauses_holds_and_resumes_towards_the_new_primary() {
    let phases: Vec<(&str, Desired<Switchover>, Plan)> = vec![
        ("due", due(to(A), 7), vec![Pause(7)]),
        ("old primary stopped", due(nowhere(), 7), vec![]),
        ("lease transferred", want(nowhere()), vec![]),
        ("new primary runs", want(to(B)), vec![Rewrite, Resume]),
        ("done", want(to(B)), vec![]),
    ];
    let mut applied = serving(A);
    for (phase, desired, steps) in phases {
        assert_eq!(applied.plan(&desired), steps, "{phase}");
        applied = after(applied, &desired);
    }
    assert_eq!(applied, serving(B));
}

#[test]
fn a_failed_step_is_planned_again() {
    // The RELOAD went through, the KILL did not.
    let moved = want(to(B));
    let mut applied = serving(A);
    applied.record(Rewrite, &moved);
    assert_eq!(applied.plan(&moved), vec![KillResume]);
    // The RELOAD after a fence went through, the ENABLE did not.
    let mut applied = fenced_nowhere();
    applied.record(Rewrite, &moved);
    assert_eq!(applied.plan(&moved), vec![Enable]);
    // The switchover's RELOAD went through, its RESUME did not.
    let mut applied = paused(serving(A), 1);
    applied.record(Rewrite, &moved);
    assert_eq!(applied.plan(&moved), vec![Resume]);
    // A fence that went through is not repeated.
    let lost = want(nowhere());
    let mut applied = serving(A);
    applied.record(Fence, &lost);
    assert_eq!(applied.plan(&lost), vec![Rewrite]);
    applied.record(Rewrite, &lost);
    assert!(applied.plan(&lost).is_empty());
}

#[test]
fn the_start_adds_an_unknown_write_database_before_fencing_it() {
    assert_eq!(fence_at_start::<Switchover>(true), vec![Fence]);
    assert_eq!(fence_at_start::<Switchover>(false), vec![Rewrite, Fence]);
    assert_eq!(started(false), fenced_nowhere());
}
