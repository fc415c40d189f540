//! Each member's agent settings file, built as the config crate's schema so
//! that the lab writes only keys the agent reads.

use crate::pgbouncer;
use crate::process::{PG_REPLICATION_USER, PG_SUPERUSER};
use crate::spec::{ApiAuth, LabMember, PgAuth};
use crate::tls::MemberTls;
use raftgres_config::PgSslMode;
use raftgres_config::schema;
use std::path::Path;

/// The lab's cluster name.
const SCOPE: &str = "lab";

/// The settings of `member`, one of `all`. Members speak Raft and the REST
/// API over TLS with the lab's CA (`ca`), and reach each other's Postgres
/// over TLS only, checking that the certificate names the address they
/// dialled.
pub(crate) fn agent_settings(
    member: &LabMember,
    all: &[LabMember],
    api_auth: &ApiAuth,
    pg_auth: &PgAuth,
    pg_bin_dir: Option<&Path>,
    (ca, tls): (&Path, &MemberTls),
) -> schema::Agent {
    let raft = schema::Raft {
        tls_ca_file: Some(ca.to_owned()),
        tls_cert_file: Some(tls.cert_file.clone()),
        tls_key_file: Some(tls.key_file.clone()),
        ..schema::Raft::new(member.raft_addr.clone())
    };
    let postgresql = match (&member.pg_host, member.pg_port) {
        (Some(host), Some(port)) => {
            Some(postgresql(member, host, port, pg_auth, pg_bin_dir, ca, tls))
        }
        _ => None,
    };
    let restapi = schema::RestApi {
        listen: member.api_listen().map(|listen| listen.to_string()),
        authentication: Some(schema::BasicAuth {
            username: api_auth.username.clone(),
            password: api_auth.password.clone(),
        }),
        certfile: Some(tls.api_cert_file.clone()),
        keyfile: Some(tls.api_key_file.clone()),
        ..schema::RestApi::default()
    };
    let pgbouncer = match (member.pgbouncer_listen(), &member.pgbouncer_databases_file) {
        (Some(listen), Some(file)) => Some(schema::PgBouncer {
            databases_file: file.clone(),
            listen: listen.to_string(),
            admin_user: pgbouncer::ADMIN_USER.to_owned(),
            admin_password: Some(pg_auth.pgbouncer_admin.clone()),
            dbname: pgbouncer::WRITE_DB.to_owned(),
            write_db: Some(pgbouncer::WRITE_DB.to_owned()),
            read_db: Some(pgbouncer::READ_DB.to_owned()),
        }),
        _ => None,
    };
    schema::Agent {
        scope: SCOPE.to_owned(),
        name: member.name.clone(),
        node_id: member.node_id,
        data_dir: member.data_dir.clone(),
        witness: member.witness,
        tags: schema::Tags::default(),
        raft,
        postgresql,
        restapi,
        members: all
            .iter()
            .map(|m| schema::Member {
                id: m.node_id,
                name: m.name.clone(),
                raft_addr: m.raft_addr.clone(),
            })
            .collect(),
        bootstrap: schema::Bootstrap::default(),
        pgbouncer,
        log: schema::Log::default(),
    }
}

fn postgresql(
    member: &LabMember,
    host: &str,
    port: u16,
    pg_auth: &PgAuth,
    pg_bin_dir: Option<&Path>,
    ca: &Path,
    tls: &MemberTls,
) -> schema::Postgres {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let login = |username: &str, password: &str| schema::PgLogin {
        username: Some(username.to_owned()),
        password: Some(password.to_owned()),
        password_file: None,
    };
    let authentication = schema::PgAuthentication {
        superuser: login(PG_SUPERUSER, &pg_auth.superuser),
        replication: login(PG_REPLICATION_USER, &pg_auth.replication),
        rewind: None,
    };
    let mut settings = schema::Postgres::new(format!("{host}:{port}"), authentication);
    settings.data_dir = member.pg_data_dir.clone();
    if let Some(bin_dir) = pg_bin_dir {
        settings.bin_dir = bin_dir.to_owned();
    }
    if let Some((cert, key)) = &tls.pg {
        settings.parameters = [
            ("ssl", "on".to_owned()),
            ("ssl_cert_file", cert.display().to_string()),
            ("ssl_key_file", key.display().to_string()),
        ]
        .map(|(name, value)| (name.to_owned(), value))
        .into();
        settings.tls = schema::PgTls {
            sslmode: PgSslMode::VerifyFull,
            sslrootcert: Some(ca.to_owned()),
        };
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn member(name: &str, node_id: u64, witness: bool, dir: &Path) -> LabMember {
        LabMember {
            name: name.into(),
            node_id,
            witness,
            raft_addr: format!("127.0.0.1:{}", 17100 + node_id),
            config: dir.join(format!("{name}.yml")),
            data_dir: dir.join(name),
            log: dir.join(format!("{name}.log")),
            agent_pid: 0,
            pg_host: (!witness).then(|| "127.0.0.1".into()),
            pg_port: (!witness).then_some(15400 + node_id as u16),
            dsn: None,
            api_url: format!("https://127.0.0.1:{}", 18000 + node_id),
            netns: None,
            pgbouncer_port: (!witness).then_some(16400 + node_id as u16),
            pgbouncer_dsn: None,
            pgbouncer_admin_dsn: None,
            pgbouncer_config: None,
            pgbouncer_databases_file: (!witness).then(|| dir.join(format!("{name}-db.ini"))),
            pgbouncer_log: None,
            pgbouncer_pid: None,
            pg_disk: None,
            pg_data_dir: None,
        }
    }

    fn files(dir: &Path, name: &str, witness: bool) -> MemberTls {
        let file = |what: &str| dir.join(format!("{name}-{what}.pem"));
        MemberTls {
            cert_file: file("raft"),
            key_file: file("raft-key"),
            api_cert_file: file("api"),
            api_key_file: file("api-key"),
            pg: (!witness).then(|| (file("pg"), file("pg-key"))),
        }
    }

    /// What the lab writes is what the agent loads, for a database member
    /// and a witness alike.
    #[test]
    fn every_member_s_settings_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "").expect("CA file");
        let all = [
            member("node1", 1, false, dir.path()),
            member("witness", 2, true, dir.path()),
        ];
        let api_auth = ApiAuth {
            username: "raftgres".into(),
            password: "0123456789".into(),
        };
        let pg_auth = PgAuth {
            superuser: "1111".into(),
            replication: "true".into(),
            pgbouncer_admin: "on".into(),
        };
        for m in &all {
            let tls = files(dir.path(), &m.name, m.witness);
            let settings = agent_settings(m, &all, &api_auth, &pg_auth, None, (&ca, &tls));
            let text = settings.to_yaml().expect("UTF-8 paths");
            std::fs::write(&m.config, &text).expect("write");
            std::fs::set_permissions(&m.config, std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
            let loaded = raftgres_config::load_with_env(&m.config, [])
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(loaded.witness, m.witness);
            assert_eq!(loaded.members.len(), 2);
            assert_eq!(loaded.restapi.url(), m.api_url);
            assert_eq!(
                loaded.restapi.authentication.map(|a| a.password),
                Some(api_auth.password.clone())
            );
            assert_eq!(
                loaded.raft.tls.map(|t| t.cert_file),
                Some(tls.cert_file.clone())
            );
            let pg = loaded.postgresql;
            assert_eq!(pg.is_none(), m.witness, "{text}");
            if let Some(pg) = pg {
                assert_eq!(pg.authentication.replication.password, "true");
                assert_eq!(pg.tls.sslmode, PgSslMode::VerifyFull);
                assert_eq!(pg.parameters["ssl"], "on");
                assert_eq!(pg.data_dir, PathBuf::from(&m.data_dir).join("pgdata"));
                let pgb = loaded.pgbouncer.expect("a pgbouncer beside Postgres");
                assert_eq!(pgb.admin_password.as_deref(), Some("on"));
                assert_eq!(pgb.read_db.as_deref(), Some(pgbouncer::READ_DB));
            }
        }
    }

    /// A lab on other binaries keeps them across agent restarts: the
    /// settings file, which a restarted agent reads, names them.
    #[test]
    fn the_postgres_bin_dir_is_in_the_settings_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "").expect("CA file");
        let bin = dir.path().join("pg18").join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        let node1 = member("node1", 1, false, dir.path());
        let api_auth = ApiAuth {
            username: "raftgres".into(),
            password: "0123456789".into(),
        };
        let pg_auth = PgAuth {
            superuser: "1111".into(),
            replication: "2222".into(),
            pgbouncer_admin: "3333".into(),
        };
        let tls = files(dir.path(), "node1", false);
        let all = [node1.clone()];
        let settings = agent_settings(&node1, &all, &api_auth, &pg_auth, Some(&bin), (&ca, &tls));
        let text = settings.to_yaml().expect("UTF-8 paths");
        std::fs::write(&node1.config, &text).expect("write");
        std::fs::set_permissions(&node1.config, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let loaded = raftgres_config::load_with_env(&node1.config, [])
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(loaded.postgresql.expect("a database member").bin_dir, bin);
    }
}
