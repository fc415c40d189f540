//! What the settings-file tests share.

/// The smallest valid settings file: a member of a two-member cluster
/// with its Postgres.
pub const MINIMAL: &str = "\
scope: demo
name: node1
node_id: 1
data_dir: /var/lib/raftgres/node1
raft:
  listen: 127.0.0.1:7101
postgresql:
  listen: 127.0.0.1:5432
  authentication: {superuser: {password: su-secret}, replication: {password: repl-secret}}
members:
  - id: 1
    name: node1
    raft_addr: 127.0.0.1:7101
  - id: 2
    name: node2
    raft_addr: 127.0.0.1:7102
";
