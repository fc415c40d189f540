use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What to start.
#[derive(Debug, Clone)]
pub struct LabSpec {
    pub dir: PathBuf,
    /// Members that compete for the lease.
    pub members: usize,
    /// Adds one witness member (votes, never holds the lease).
    pub witness: bool,
    /// Raft ports, one per member; `None` picks free loopback ports.
    pub ports: Option<Vec<u16>>,
    /// The `raftgres-agent` binary to copy into the lab.
    pub agent_bin: PathBuf,
}

/// `DIR/lab.json`: what the lab started, for scripts, tests and `lab down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabDescription {
    pub dir: PathBuf,
    pub agent_bin: PathBuf,
    pub members: Vec<LabMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabMember {
    pub name: String,
    pub node_id: u64,
    pub witness: bool,
    pub raft_addr: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// The agent process itself (no wrapper), so signals reach it.
    pub agent_pid: u32,
    /// Postgres' address; `None` for a witness.
    pub pg_host: Option<String>,
    pub pg_port: Option<u16>,
    /// A libpq connection string a client can write with.
    pub dsn: Option<String>,
    /// The agent's REST API (Patroni-compatible health endpoints).
    pub api_url: String,
    /// The network namespace the agent (and so its Postgres) runs in, when
    /// the lab was started with [`crate::Lab::up_in_netns`]; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

impl LabDescription {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    pub fn member(&self, name: &str) -> Option<&LabMember> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// The agent settings file of one lab member.
pub(crate) fn agent_config(member: &LabMember, scope: &str, all: &[LabMember]) -> String {
    let mut text = format!(
        "scope: {scope}\nname: {}\nnode_id: {}\ndata_dir: {}\nwitness: {}\nraft:\n  listen: {}\n",
        member.name,
        member.node_id,
        member.data_dir.display(),
        member.witness,
        member.raft_addr,
    );
    if let (Some(host), Some(port)) = (&member.pg_host, member.pg_port) {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        text.push_str(&format!("postgresql:\n  listen: {host}:{port}\n"));
    }
    if let Some(listen) = member.api_url.strip_prefix("http://") {
        text.push_str(&format!("restapi:\n  listen: {listen}\n"));
    }
    text.push_str("members:\n");
    for m in all {
        text.push_str(&format!(
            "  - {{id: {}, name: {}, raft_addr: \"{}\"}}\n",
            m.node_id, m.name, m.raft_addr
        ));
    }
    text
}
