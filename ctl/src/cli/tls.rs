//! `tls issue`'s options.

use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TlsCmd {
    /// Issue the cluster's CA (DIR/ca.pem, ca.key) and certificates
    /// (DIR/NAME.pem, NAME.key), keeping every file that exists: run it again
    /// for a new member. Keys are written mode 600; keep ca.key off the members.
    Issue {
        /// Where the CA and the certificates live.
        #[arg(long)]
        dir: PathBuf,
        /// A member's certificate, as NAME:NODE_ID (its `name` and `node_id`); repeatable.
        #[arg(long = "member", value_name = "NAME:NODE_ID", value_parser = parse_member)]
        members: Vec<(String, u64)>,
        /// A certificate for the operator's tools, which reaches any member
        /// but speaks for none; repeatable.
        #[arg(long = "tools", value_name = "NAME")]
        tools: Vec<String>,
        /// A REST API server certificate (DIR/NAME-api.pem, NAME-api.key)
        /// for the host names and addresses clients connect to, as
        /// NAME=HOST[,HOST...]; repeatable.
        #[arg(long = "api", value_name = "NAME=HOST[,HOST...]", value_parser = parse_hosts)]
        api: Vec<(String, Vec<String>)>,
        /// A Postgres server certificate (DIR/NAME-pg.pem, NAME-pg.key,
        /// for ssl_cert_file and ssl_key_file) for the host names and
        /// addresses members connect to (postgresql.connect_address's host,
        /// and 127.0.0.1 when Postgres listens on a wildcard address), as
        /// NAME=HOST[,HOST...]; repeatable.
        #[arg(long = "postgres", value_name = "NAME=HOST[,HOST...]", value_parser = parse_hosts)]
        postgres: Vec<(String, Vec<String>)>,
    },
}

fn parse_hosts(text: &str) -> Result<(String, Vec<String>), String> {
    let (name, hosts) = text.split_once('=').ok_or_else(|| {
        format!("{text:?}: expected NAME=HOST[,HOST...], e.g. db1=10.0.0.11,db1.example.com")
    })?;
    if name.is_empty() {
        return Err(format!("{text:?}: the certificate needs a name before `=`"));
    }
    let hosts: Vec<String> = hosts.split(',').map(str::to_owned).collect();
    if hosts.iter().any(String::is_empty) {
        return Err(format!(
            "{text:?}: a host name or address is empty; separate them with single commas"
        ));
    }
    Ok((name.to_owned(), hosts))
}

fn parse_member(text: &str) -> Result<(String, u64), String> {
    let (name, id) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected NAME:NODE_ID, e.g. node1:1"))?;
    let id: u64 = id
        .parse()
        .map_err(|_| format!("{text:?}: the node id {id:?} is not a whole number"))?;
    if id == 0 {
        return Err(format!("{text:?}: node ids start at 1"));
    }
    Ok((name.to_owned(), id))
}
