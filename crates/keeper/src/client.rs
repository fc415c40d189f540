//! The agent's end of the keeper socket.

use crate::error::{KeeperError, Result};
use crate::protocol::{KeeperStatus, PROTOCOL, Reply, Request};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// Most requests answer at once; this bounds a keeper that does not.
pub const QUICK: Duration = Duration::from_secs(2);

/// One connection to the keeper, opened on first use and again after any
/// failure.
pub struct KeeperClient {
    socket: PathBuf,
    link: Option<(BufReader<OwnedReadHalf>, OwnedWriteHalf)>,
}

impl KeeperClient {
    pub fn new(socket: &Path) -> Self {
        KeeperClient {
            socket: socket.to_owned(),
            link: None,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn connect(&mut self) -> Result<()> {
        if self.link.is_some() {
            return Ok(());
        }
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|e| KeeperError::Unreachable {
                    socket: self.socket.clone(),
                    reason: e.to_string(),
                })?;
        let (read, write) = stream.into_split();
        self.link = Some((BufReader::new(read), write));
        Ok(())
    }

    async fn exchange(&mut self, request: &Request) -> Result<Reply> {
        self.connect().await?;
        let socket = self.socket.clone();
        let (read, write) = self.link.as_mut().expect("connected above");
        let mut text = serde_json::to_string(request).map_err(|e| KeeperError::BadReply {
            socket: socket.clone(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        let lost = |e: std::io::Error| KeeperError::Unreachable {
            socket: socket.clone(),
            reason: e.to_string(),
        };
        write.write_all(text.as_bytes()).await.map_err(lost)?;
        let mut line = String::new();
        if read.read_line(&mut line).await.map_err(lost)? == 0 {
            return Err(KeeperError::Unreachable {
                socket,
                reason: "the keeper closed the connection".into(),
            });
        }
        let reply: Reply =
            serde_json::from_str(line.trim_end()).map_err(|e| KeeperError::BadReply {
                socket: socket.clone(),
                reason: e.to_string(),
            })?;
        let status = match &reply {
            Reply::Done { status } | Reply::Refused { status, .. } => status,
            Reply::BadRequest { .. } => return Ok(reply),
        };
        if status.protocol != PROTOCOL {
            return Err(KeeperError::Protocol {
                socket,
                found: status.protocol,
                expected: PROTOCOL,
            });
        }
        Ok(reply)
    }

    /// Sends one request and waits up to `timeout` for its reply. A refusal
    /// is an error; a broken or slow link is dropped, so the next call
    /// reconnects.
    pub async fn call(&mut self, request: &Request, timeout: Duration) -> Result<KeeperStatus> {
        let outcome = tokio::time::timeout(timeout, self.exchange(request)).await;
        let reply = match outcome {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                self.link = None;
                return Err(e);
            }
            Err(_) => {
                self.link = None;
                return Err(KeeperError::Timeout {
                    socket: self.socket.clone(),
                    after: timeout,
                });
            }
        };
        match reply {
            Reply::Done { status } => Ok(status),
            Reply::Refused { reason, .. } | Reply::BadRequest { reason } => {
                Err(KeeperError::Refused { reason })
            }
        }
    }

    pub async fn status(&mut self) -> Result<KeeperStatus> {
        self.call(&Request::Status, QUICK).await
    }
}
