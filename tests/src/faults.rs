//! The workload and the checker the fault tests share: clients whose
//! connections were opened before the fault, writing unique ids and
//! recording which commits were acknowledged, by which member and when.

use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One acknowledged commit.
#[derive(Debug, Clone)]
pub struct Ack {
    pub member: String,
    pub id: i64,
    pub at: Instant,
}

/// A client with one connection to one member, opened before the fault,
/// inserting an id every `every` until stopped or until its connection
/// fails (it never reconnects: a reconnect would reach another server).
pub struct Writer {
    stop: watch::Sender<bool>,
    acks: std::sync::Arc<std::sync::Mutex<Vec<Ack>>>,
    task: tokio::task::JoinHandle<Option<String>>,
}

impl Writer {
    /// Connects now (the table `fault_writes (id bigint, member text)` must
    /// exist) and starts writing.
    pub async fn start(member: &str, dsn: &str, first_id: i64, every: Duration) -> Writer {
        let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
            .await
            .expect("the writer connects before the fault");
        tokio::spawn(connection);
        let (stop, mut stopped) = watch::channel(false);
        let member = member.to_owned();
        let acks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = acks.clone();
        let task = tokio::spawn(async move {
            let mut id = first_id;
            while !*stopped.borrow() {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&id, &member];
                let insert = client.execute(
                    "INSERT INTO fault_writes (id, member) VALUES ($1, $2)",
                    &params,
                );
                match tokio::time::timeout(Duration::from_secs(10), insert).await {
                    Ok(Ok(_)) => record.lock().unwrap_or_else(|e| e.into_inner()).push(Ack {
                        member: member.clone(),
                        id,
                        at: Instant::now(),
                    }),
                    Ok(Err(e)) => return Some(e.to_string()),
                    Err(_) => return Some("no answer within 10s".into()),
                }
                id += 1;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => {}
                }
            }
            None
        });
        Writer { stop, acks, task }
    }

    /// The writes acknowledged so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the writer has stopped on its own: its connection failed.
    pub fn ended(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops writing; the acknowledged commits and the error that ended
    /// the writer, if one did.
    pub async fn finish(self) -> (Vec<Ack>, Option<String>) {
        let _ = self.stop.send(true);
        let acks = self.acks.clone();
        let ended = self.task.await.expect("writer task");
        let acks = acks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (acks, ended)
    }
}

/// The moment a member first acknowledged a write as the new primary:
/// writes through a fresh connection until one commits, bounded.
pub async fn first_write_on(dsn: &str, member: &str, id: i64, within: Duration) -> Ack {
    let deadline = Instant::now() + within;
    loop {
        let sql = format!("INSERT INTO fault_writes (id, member) VALUES ({id}, '{member}')");
        if crate::execute(dsn, &sql).await.is_ok() {
            return Ack {
                member: member.to_owned(),
                id,
                at: Instant::now(),
            };
        }
        assert!(
            Instant::now() < deadline,
            "{member} took no write within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The checker's first invariant: no member acknowledged a write after
/// another member's first acknowledged write as primary.
pub fn assert_no_write_after_takeover(old: &[Ack], new_first: &Ack) {
    let late: Vec<&Ack> = old
        .iter()
        .filter(|a| a.member != new_first.member && a.at >= new_first.at)
        .collect();
    assert!(
        late.is_empty(),
        "split brain: {} write(s) acknowledged by the old primary after {} took its first write (ids {:?})",
        late.len(),
        new_first.member,
        late.iter().map(|a| a.id).collect::<Vec<_>>()
    );
}
