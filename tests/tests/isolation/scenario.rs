//! The isolation scenario, run once for all the tests in `main.rs`: a
//! three-member lab in network namespaces, two writers inside the
//! primary's namespace (straight to its Postgres, and through its own
//! pgbouncer), the primary's link cut, then healed. What happened is
//! recorded, failed waits included, for the tests to judge.

use raftgres_lab::{Lab, LabNetwork, pg_query_bool};
use raftgres_proto::v1::AgentStatusReply;
use raftgres_tests::writer::{self, Attempt, FirstWrite, TABLE, Writer};
use raftgres_tests::{dsn, lab_dir, lab_spec, log_tail, pgbouncer_dsn, serial, status, wait_until};
use std::time::{Duration, Instant};

/// The tag of the rows the writer through the old primary's pgbouncer sends.
const POOLED: &str = "pgbouncer";

/// Three members, each with its agent, Postgres and pgbouncer in a network
/// namespace of its own, joined by a bridge. Fields drop in declaration
/// order: the agents stop first, then the network goes, then the directory,
/// and last the lock that runs real clusters one at a time.
pub struct NetnsLab {
    pub lab: Lab,
    pub net: LabNetwork,
    pub dir: tempfile::TempDir,
    _serial: tokio::sync::MutexGuard<'static, ()>,
    /// When its set-up began, once this test had the lock.
    began: Instant,
}

impl NetnsLab {
    /// Starts it and waits until it is healthy; returns the primary too.
    /// `None`, after saying why, when not root: namespaces need it.
    pub async fn up() -> Option<(NetnsLab, String)> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "skipped: the isolation test needs root to create network namespaces, veths and a bridge"
            );
            return None;
        }
        let serial = serial().await;
        let began = Instant::now();
        let dir = lab_dir();
        let net = LabNetwork::create(3).expect("create the lab network");
        let spec = lab_spec(dir.path(), 3, false);
        let lab = Lab::up_in_netns(&spec, &net.members()).expect("lab up in namespaces");
        let primary = lab
            .wait_healthy(Duration::from_secs(60))
            .await
            .expect("lab healthy");
        Some((
            NetnsLab {
                lab,
                net,
                dir,
                _serial: serial,
                began,
            },
            primary,
        ))
    }
}

/// What the isolation scenario saw, for the tests to judge.
pub struct Recording {
    pub old: String,
    pub old_epoch: u64,
    /// When the old primary's link was cut.
    pub cut: Instant,
    /// The `n` of every row the old primary's pgbouncer acknowledged before
    /// the cut; both replicas had them all before it.
    pub acked_before: Vec<i64>,
    /// What followed the cut, or why no remaining member took a write
    /// within 30 s of it, after which nothing more was recorded.
    pub promotion: Result<AfterPromotion, String>,
}

/// What the scenario recorded from the majority's first write on.
pub struct AfterPromotion {
    /// The first write the majority acknowledged, on the new primary.
    pub new: FirstWrite,
    pub new_status: Result<AgentStatusReply, String>,
    /// Per surviving member, how long after `new.acked` its pgbouncer took
    /// a write, or why it did not within 20 s.
    pub survivors: Vec<(String, Result<Duration, String>)>,
    /// The direct writer's attempts up to a second after every survivor's
    /// pgbouncer was tried: by then a split brain would have shown.
    pub direct_isolated: Vec<Attempt>,
    /// The direct writer's attempts over the whole run, the heal included.
    pub direct_whole: Vec<Attempt>,
    /// The pgbouncer writer's attempts; it stopped before the heal, after
    /// which it may rightly reach the new primary.
    pub pooled: Vec<Attempt>,
    /// The old primary's log tails when its pgbouncer writer stopped.
    pub old_logs_isolated: String,
    /// How long after the heal the old primary streamed from the new one
    /// with the new one's first row, or why it did not within 45 s.
    pub rejoined: Result<Duration, String>,
    pub old_agent_log: Result<String, String>,
    pub old_logs_rejoined: String,
    /// The lease holder once the healed cluster is healthy.
    pub healed_holder: Result<String, String>,
    /// The pgbouncer writer's rows on the new primary after the heal.
    pub final_rows: Result<Vec<i64>, String>,
}

impl Recording {
    /// For the properties that only mean something once the majority has
    /// promoted.
    pub fn promoted(&self) -> &AfterPromotion {
        self.promotion.as_ref().unwrap_or_else(|e| {
            panic!("not checked: the majority promoted no one within 30 s of the cut: {e}")
        })
    }
}

/// Sets up the lab and the writers, cuts the primary's link, records what
/// the majority, the isolated primary and its clients do, heals the link
/// and records the rejoin. Errors before the cut end it; afterwards every
/// observation is recorded, failed or not, for the tests to judge.
pub async fn run() -> Result<Option<Recording>, String> {
    let Some((env, old)) = NetnsLab::up().await else {
        return Ok(None);
    };
    let (lab, net) = (&env.lab, &env.net);
    let set_up = env.began.elapsed();
    let old_ns = lab
        .member(&old)
        .expect("member")
        .netns
        .clone()
        .expect("the old primary runs in a namespace");
    let others: Vec<String> = lab.names().into_iter().filter(|n| *n != old).collect();
    let old_epoch = status(lab, &old)
        .await
        .map_err(|e| format!("the primary's status: {e}"))?
        .lease_epoch;

    writer::create_table(&dsn(lab, &old))
        .await
        .map_err(|e| format!("create the probe table on the primary: {e}"))?;
    for name in &others {
        let replica = dsn(lab, name);
        let exists = format!("SELECT to_regclass('{TABLE}') IS NOT NULL");
        wait_until(
            lab,
            &[name.as_str()],
            Duration::from_secs(10),
            &format!("{name} replicates the probe table"),
            || async { pg_query_bool(&replica, &exists).await == Ok(true) },
        )
        .await?;
    }

    // Inside the old primary's namespace, cutting its link does not cut
    // these writers off.
    let direct = Writer::start(
        Some(old_ns.as_str()),
        &dsn(lab, &old),
        "direct",
        Duration::from_secs(1),
    );
    let pooled = Writer::start(
        Some(old_ns.as_str()),
        &pgbouncer_dsn(lab, &old),
        POOLED,
        Duration::from_secs(2),
    );
    for (writing, within, what) in [
        (
            &direct,
            10,
            "the in-namespace writer commits on the primary",
        ),
        (&pooled, 20, "the primary's own pgbouncer takes writes"),
    ] {
        let within = Duration::from_secs(within);
        wait_until(lab, &[old.as_str()], within, what, || async {
            writing.committed() >= 10
        })
        .await?;
    }

    // Replication is asynchronous: hold the pgbouncer writer until both
    // replicas have its last acknowledged row, so every row it acknowledged
    // before the cut must survive whoever wins.
    pooled.hold().await;
    let acked_before: Vec<i64> = pooled
        .attempts()
        .iter()
        .filter(|a| a.outcome.is_committed())
        .filter_map(|a| a.n)
        .collect();
    let last_acked_before = *acked_before
        .last()
        .ok_or("nothing acknowledged through pgbouncer")?;
    for name in &others {
        let replica = dsn(lab, name);
        wait_until(
            lab,
            &[name.as_str()],
            Duration::from_secs(10),
            &format!("{name} replays the pgbouncer writer's row {last_acked_before}"),
            || async {
                writer::rows_of(&replica, POOLED)
                    .await
                    .is_ok_and(|rows| rows.contains(&last_acked_before))
            },
        )
        .await?;
    }

    let cut = Instant::now();
    net.isolate(&old_ns).expect("cut the primary's link");
    pooled.resume();
    let promotion = match writer::first_acknowledged(lab, &others, Duration::from_secs(30)).await {
        Ok(new) => Ok(after_promotion(&env, &old, &old_ns, new, direct, pooled).await),
        Err(e) => Err(e),
    };
    let recorded = Recording {
        old,
        old_epoch,
        cut,
        acked_before,
        promotion,
    };
    print_figures(&recorded, set_up, env.began);
    Ok(Some(recorded))
}

/// From the majority's first write on: the survivors' pgbouncers, the
/// isolated primary's writers, the heal and the rejoin.
async fn after_promotion(
    env: &NetnsLab,
    old: &str,
    old_ns: &str,
    new: FirstWrite,
    direct: Writer,
    pooled: Writer,
) -> AfterPromotion {
    let lab = &env.lab;
    let name_of_new = new.member.clone();
    let new_status = status(lab, &name_of_new).await;
    let mut survivors = Vec::new();
    for name in lab.names().into_iter().filter(|n| n != old) {
        let through = pgbouncer_dsn(lab, &name);
        let sql = writer::insert(&format!("survivor:{name}"), None);
        let took = wait_until(
            lab,
            &[name.as_str(), name_of_new.as_str()],
            Duration::from_secs(20),
            &format!("{name}'s pgbouncer takes a write once {name_of_new} is primary"),
            || async {
                writer::attempt(&through, &sql, Duration::from_secs(1))
                    .await
                    .is_committed()
            },
        )
        .await;
        survivors.push((name, took.map(|()| new.acked.elapsed())));
    }
    // Let the direct writer run on a little, so a later write on the old
    // side, a split brain, would be seen too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let direct_isolated = direct.attempts();
    let pooled = pooled.finish();
    let old_logs_isolated = log_tail(lab, old);

    let healed = Instant::now();
    env.net.heal(old_ns).expect("heal the primary's link");
    let (old_dsn, new_dsn) = (dsn(lab, old), dsn(lab, &name_of_new));
    let new_host = lab
        .member(&name_of_new)
        .expect("member")
        .pg_host
        .clone()
        .expect("pg host");
    let follows = format!(
        "SELECT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver \
         WHERE status = 'streaming' AND sender_host = '{new_host}')"
    );
    let streams_to = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_replication \
         WHERE application_name = '{old}' AND state = 'streaming')"
    );
    let has_new_row = format!(
        "SELECT EXISTS (SELECT 1 FROM {TABLE} WHERE writer = '{}')",
        new.writer
    );
    let rejoined = wait_until(
        lab,
        &[old, name_of_new.as_str()],
        Duration::from_secs(45),
        &format!("{old} streams from {name_of_new} with {name_of_new}'s writes"),
        || async {
            pg_query_bool(&old_dsn, &follows).await == Ok(true)
                && pg_query_bool(&new_dsn, &streams_to).await == Ok(true)
                && pg_query_bool(&old_dsn, &has_new_row).await == Ok(true)
        },
    )
    .await
    .map(|()| healed.elapsed());
    let old_log = &lab.member(old).expect("member").log;
    let old_agent_log =
        std::fs::read_to_string(old_log).map_err(|e| format!("read {}: {e}", old_log.display()));
    let old_logs_rejoined = log_tail(lab, old);
    let healed_holder = lab
        .wait_healthy(Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string());
    let final_rows = writer::rows_of(&new_dsn, POOLED).await;
    AfterPromotion {
        new,
        new_status,
        survivors,
        direct_isolated,
        direct_whole: direct.finish(),
        pooled,
        old_logs_isolated,
        rejoined,
        old_agent_log,
        old_logs_rejoined,
        healed_holder,
        final_rows,
    }
}

impl AfterPromotion {
    pub fn final_rows(&self) -> &[i64] {
        self.final_rows.as_ref().unwrap_or_else(|e| {
            panic!(
                "read the pgbouncer writer's rows on the final primary {}: {e}",
                self.new.member
            )
        })
    }
}

/// When the last attempt that may have committed ended.
pub fn last_maybe_committed(attempts: &[Attempt]) -> Option<Instant> {
    attempts
        .iter()
        .filter(|a| a.outcome.may_have_committed())
        .map(|a| a.at)
        .max()
}

/// The attempts that ended after the cut, timed from it, for failure
/// messages.
pub fn after_cut(attempts: &[Attempt], cut: Instant) -> Vec<String> {
    attempts
        .iter()
        .filter(|a| a.at >= cut)
        .map(|a| format!("{} (n {:?}) {}", ms(a.at - cut), a.n, a.outcome))
        .collect()
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The timings the run showed, for the reader; nothing here is asserted.
fn print_figures(r: &Recording, set_up: Duration, began: Instant) {
    println!("isolation: lab healthy after {}", ms(set_up));
    let Ok(p) = &r.promotion else {
        return;
    };
    let (cut, new) = (r.cut, &p.new);
    let since_cut = |at: Instant| {
        at.checked_duration_since(cut)
            .map_or_else(|| format!("-{}", ms(cut - at)), ms)
    };
    println!(
        "isolation: old primary {}, new primary {}",
        r.old, new.member
    );
    if let Some(old_last) = last_maybe_committed(&p.direct_isolated) {
        let last_ack = p
            .direct_isolated
            .iter()
            .filter(|a| a.outcome.is_committed())
            .map(|a| a.at)
            .max()
            .unwrap_or(old_last);
        println!(
            "isolation: cut -> old primary's last acknowledged write {}, last possibly committed {}",
            since_cut(last_ack),
            since_cut(old_last)
        );
        let refusals: Vec<&Attempt> = p
            .direct_isolated
            .iter()
            .filter(|a| a.at > old_last && !a.outcome.may_have_committed())
            .collect();
        if let Some(first) = refusals.first() {
            println!(
                "isolation: cut -> old primary's first refusal {} ({}); {} refusals before the promotion",
                since_cut(first.at),
                first.outcome,
                refusals.iter().filter(|a| a.at < new.sent).count()
            );
        }
        println!(
            "isolation: cut -> new primary's first accepted write sent {}, acknowledged {}; gap after the old primary's last write {}",
            since_cut(new.sent),
            since_cut(new.acked),
            ms(new.sent.saturating_duration_since(old_last))
        );
    }
    let pooled_acked_after_cut: Vec<&Attempt> = p
        .pooled
        .iter()
        .filter(|a| a.sent >= cut && a.outcome.is_committed())
        .collect();
    println!(
        "isolation: pgbouncer of the old primary: {} rows acknowledged before the cut, {} \
         acknowledged after it (the last {}), {} attempts after the promotion",
        r.acked_before.len(),
        pooled_acked_after_cut.len(),
        pooled_acked_after_cut
            .last()
            .map_or_else(|| "-".to_owned(), |a| since_cut(a.at)),
        p.pooled.iter().filter(|a| a.sent >= new.sent).count()
    );
    if let Some(failed) = p
        .pooled
        .iter()
        .find(|a| a.sent >= cut && !a.outcome.is_committed())
    {
        println!(
            "isolation: cut -> old primary's pgbouncer first failed write {} ({})",
            since_cut(failed.at),
            failed.outcome
        );
    }
    for (name, took) in &p.survivors {
        if let Ok(after) = took {
            println!(
                "isolation: new primary's first acknowledged write -> {name}'s pgbouncer takes a write {}",
                ms(*after)
            );
        }
    }
    if let Ok(rejoined) = p.rejoined {
        println!(
            "isolation: heal -> old primary streaming from the new one {}",
            ms(rejoined)
        );
    }
    println!("isolation: whole scenario {}", ms(began.elapsed()));
}
