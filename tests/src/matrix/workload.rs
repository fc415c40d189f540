//! The workload: clients that write unique ids with the server's timeline
//! across a fault, each acknowledged write recorded with when it was sent
//! and acknowledged.

use super::*;

/// One acknowledged write.
#[derive(Debug, Clone)]
pub(super) struct Ack {
    pub(super) member: String,
    pub(super) id: i64,
    pub(super) timeline: i32,
    /// When the statement was sent.
    pub(super) sent: Instant,
    pub(super) at: Instant,
}

pub(super) type Acks = Arc<Mutex<Vec<Ack>>>;

pub(super) fn push(acks: &Acks, ack: Ack) {
    acks.lock().unwrap_or_else(|e| e.into_inner()).push(ack);
}

/// Ids are unique across writers and runs: a writer's number in the top bits.
pub(super) fn ids(writer: i64, run: u32) -> impl Iterator<Item = i64> {
    let base = (writer << 40) | (i64::from(run) << 24);
    base..base + (1 << 24)
}

pub(super) async fn connect(dsn: &str) -> Option<tokio_postgres::Client> {
    let connecting = tokio_postgres::connect(dsn, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(2), connecting)
        .await
        .ok()?
        .ok()?;
    tokio::spawn(connection);
    Some(client)
}

/// One insert; which member took it, by the server's port.
pub(super) async fn insert(
    client: &tokio_postgres::Client,
    id: i64,
    ports: &BTreeMap<i32, String>,
) -> Result<Ack, String> {
    let sql = format!(
        "INSERT INTO matrix_writes VALUES ($1, (SELECT setting FROM pg_settings WHERE name = 'cluster_name'), {TIMELINE}) \
         RETURNING inet_server_port(), timeline"
    );
    let sent = Instant::now();
    let row = tokio::time::timeout(Duration::from_secs(5), client.query_one(&sql, &[&id]))
        .await
        .map_err(|_| "no answer within 5s".to_owned())?
        .map_err(|e| e.to_string())?;
    let port: i32 = row.try_get(0).map_err(|e| e.to_string())?;
    let timeline: i32 = row.try_get(1).map_err(|e| e.to_string())?;
    Ok(Ack {
        member: ports
            .get(&port)
            .cloned()
            .unwrap_or_else(|| format!("port {port}")),
        id,
        timeline,
        sent,
        at: Instant::now(),
    })
}

/// The writer through the cluster's entry point (HAProxy or pgbouncer),
/// whose first ack after a fault says when writes came back.
pub(super) const ENTRY_WRITER: i64 = 2;

/// Runs `work` in the network namespace `netns` when given (on a thread of
/// its own, so that only its sockets are there), else on this runtime.
pub(super) fn beside(
    netns: Option<String>,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let Some(ns) = netns else {
        return tokio::spawn(work);
    };
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        raftgres_lab::enter_netns(&ns).expect("enter the primary's namespace");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime in the namespace");
        runtime.block_on(work);
        let _ = done.send(());
    });
    tokio::spawn(async move {
        let _ = finished.await;
    })
}

pub(super) struct Workload {
    /// Whether an entry-point writer runs (HAProxy or pgbouncer installed).
    pub(super) has_entry: bool,
    pub(super) stop: watch::Sender<bool>,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
    pub(super) acks: Acks,
}

impl Workload {
    pub(super) async fn start(lab: &Lab, primary: &str, run: u32) -> Workload {
        let ports: BTreeMap<i32, String> = lab
            .description
            .members
            .iter()
            .filter_map(|m| Some((i32::from(m.pg_port?), m.name.clone())))
            .collect();
        let (stop, stopped) = watch::channel(false);
        let acks: Acks = Arc::default();
        let mut tasks = Vec::new();
        let primary_dsn = dsn(lab, primary);
        let netns = lab.member(primary).expect("member").netns.clone();
        // The client connected before the fault, never reconnecting.
        {
            let (acks, ports, mut stopped) = (acks.clone(), ports.clone(), stopped.clone());
            let primary_dsn = primary_dsn.clone();
            tasks.push(beside(netns.clone(), async move {
                let old = connect(&primary_dsn)
                    .await
                    .expect("a connection to the primary before the fault");
                for id in ids(1, run) {
                    if *stopped.borrow() {
                        return;
                    }
                    match insert(&old, id, &ports).await {
                        Ok(ack) => push(&acks, ack),
                        Err(_) => return,
                    }
                    tokio::select! { _ = tokio::time::sleep(EVERY) => {}, _ = stopped.changed() => {} }
                }
            }));
        }
        // Autocommit inserts through HAProxy (or, without it, through a
        // replica's pgbouncer, which its agent points at the primary),
        // reconnecting after failures.
        let entry = lab.haproxy_dsn(true).or_else(|| {
            lab.description
                .members
                .iter()
                .find(|m| m.name != primary && m.dsn.is_some())
                .and_then(|m| m.pgbouncer_dsn.clone())
        });
        let has_entry = entry.is_some();
        if let Some(entry) = entry {
            let (acks, ports, mut stopped) = (acks.clone(), ports.clone(), stopped.clone());
            tasks.push(tokio::spawn(async move {
                let mut client = None;
                for id in ids(ENTRY_WRITER, run) {
                    if *stopped.borrow() {
                        return;
                    }
                    if client.is_none() {
                        client = connect(&entry).await;
                    }
                    if let Some(c) = &client {
                        match insert(c, id, &ports).await {
                            Ok(ack) => push(&acks, ack),
                            Err(_) => client = None,
                        }
                    }
                    tokio::select! { _ = tokio::time::sleep(EVERY) => {}, _ = stopped.changed() => {} }
                }
            }));
        }
        // A CPU-bound statement across the fault, writing at its end.
        {
            let acks = acks.clone();
            let member = primary.to_owned();
            let id = ids(3, run).next().expect("an id");
            tasks.push(beside(netns, async move {
                let long = connect(&primary_dsn)
                    .await
                    .expect("a second connection to the primary");
                let sql = format!(
                    "DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN \
                     WHILE clock_timestamp() < t0 + interval '6 seconds' LOOP END LOOP; \
                     INSERT INTO matrix_writes VALUES ({id}, 'long', {TIMELINE}); END $$"
                );
                let sent = Instant::now();
                if long.batch_execute(&sql).await.is_ok() {
                    push(
                        &acks,
                        Ack {
                            member,
                            id,
                            timeline: 0,
                            sent,
                            at: Instant::now(),
                        },
                    );
                }
            }));
        }
        Workload {
            has_entry,
            stop,
            tasks,
            acks,
        }
    }

    pub(super) fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) async fn finish(self) -> Vec<Ack> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
