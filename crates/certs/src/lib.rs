//! The cluster's certificate authority for mutual TLS between members:
//! a CA, and certificates for members and for the operator's tools, named
//! as `raftgres_consensus::transport::tls` checks them. Used by
//! `raftgresctl tls issue` (and so the Ansible role) and by the lab.
//!
//! Files in one directory: `ca.pem` and `ca.key` (private), and per
//! certificate `NAME.pem` and `NAME.key` (private). Issuing is idempotent:
//! a file that exists is kept, so a run for a new member leaves the CA and
//! the other members' certificates as they are.

use raftgres_consensus::transport::tls::{MEMBER_NAME, NODE_NAME_PREFIX, node_name};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("cannot {what}: {reason}")]
    Crypto { what: &'static str, reason: String },
    #[error(
        "{0:?} is not a certificate name: use 1-63 characters of [a-z0-9_-] (the member's name)"
    )]
    BadName(String),
    #[error("{0} exists without its pair file; remove it or restore the pair")]
    HalfPair(PathBuf),
}

fn crypto(what: &'static str) -> impl Fn(rcgen::Error) -> CertError {
    move |e| CertError::Crypto {
        what,
        reason: e.to_string(),
    }
}

fn file_error(path: &Path) -> impl Fn(std::io::Error) -> CertError + '_ {
    move |e| CertError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), CertError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(file_error(path))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(file_error(path))?;
    file.write_all(text.as_bytes()).map_err(file_error(path))
}

fn check_name(name: &str) -> Result<(), CertError> {
    if raftgres_state::is_valid_name(name) {
        Ok(())
    } else {
        Err(CertError::BadName(name.to_owned()))
    }
}

/// A certificate and its key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Whether this run wrote them (false: they existed and were kept).
    pub created: bool,
}

/// The cluster's CA, loaded from or created in its directory.
pub struct Authority {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    pub ca: Pair,
}

impl Authority {
    /// Opens the CA in `dir`, creating it (and `dir`) if it has none.
    pub fn open_or_create(dir: &Path) -> Result<Authority, CertError> {
        fs::create_dir_all(dir).map_err(file_error(dir))?;
        let cert = dir.join("ca.pem");
        let key = dir.join("ca.key");
        // The same subject and key make the same issuer: certificates
        // signed by a reopened CA verify against the ca.pem written first.
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(crypto("build the CA"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "raftgres cluster CA");
        let (key_pair, created) = match (cert.exists(), key.exists()) {
            (true, true) => {
                let key_pem = fs::read_to_string(&key).map_err(file_error(&key))?;
                let key_pair = KeyPair::from_pem(&key_pem).map_err(crypto("read the CA key"))?;
                (key_pair, false)
            }
            (false, false) => {
                let key_pair = KeyPair::generate().map_err(crypto("generate the CA key"))?;
                let ca = params
                    .self_signed(&key_pair)
                    .map_err(crypto("sign the CA"))?;
                write_new(&key, &key_pair.serialize_pem(), 0o600)?;
                write_new(&cert, &ca.pem(), 0o644)?;
                (key_pair, true)
            }
            (true, false) => return Err(CertError::HalfPair(cert)),
            (false, true) => return Err(CertError::HalfPair(key)),
        };
        let issuer = Issuer::new(params, key_pair);
        Ok(Authority {
            dir: dir.to_owned(),
            issuer,
            ca: Pair { cert, key, created },
        })
    }

    /// Member `name`'s certificate, naming `raftgres-member` and
    /// `raftgres-node-<node_id>`.
    pub fn member(&self, name: &str, node_id: u64) -> Result<Pair, CertError> {
        self.leaf(name, vec![MEMBER_NAME.to_owned(), node_name(node_id)])
    }

    /// A certificate for the operator's tools, named `name`: it reaches any
    /// member but speaks for none.
    pub fn tools(&self, name: &str) -> Result<Pair, CertError> {
        self.leaf(name, vec![MEMBER_NAME.to_owned()])
    }

    /// A server certificate for `hosts` (names or IP addresses clients
    /// connect to): the REST API's (`restapi.connect_address`'s host) or
    /// Postgres's (`postgresql.connect_address`'s host).
    pub fn server(&self, name: &str, hosts: &[String]) -> Result<Pair, CertError> {
        if hosts.is_empty() {
            return Err(CertError::Crypto {
                what: "issue a server certificate",
                reason: "it needs at least one host name or address".into(),
            });
        }
        // The Raft port admits any certificate from this CA that names a
        // member identity: a server key, readable by more than the agent
        // (HAProxy's host, backups), must not be one.
        if let Some(host) = hosts
            .iter()
            .find(|h| h.as_str() == MEMBER_NAME || h.starts_with(NODE_NAME_PREFIX))
        {
            return Err(CertError::Crypto {
                what: "issue a server certificate",
                reason: format!(
                    "{host:?} names a Raft member identity; use the host names and addresses clients connect to"
                ),
            });
        }
        // libpq before PostgreSQL 15 compares the host it dialled only with
        // dNSName entries (and the CN), never with iPAddress ones: a client
        // of 14 that dials 10.0.0.5 with sslmode=verify-full needs
        // "10.0.0.5" as a dNSName too. Clients of 15 and later, and
        // rustls, match the iPAddress entry, and skip that dNSName (an
        // address is no valid DNS name for them).
        let literal_addresses = hosts
            .iter()
            .filter(|h| h.parse::<std::net::IpAddr>().is_ok())
            .cloned()
            .collect();
        self.leaf_with(name, hosts.to_vec(), literal_addresses)
    }

    fn leaf(&self, name: &str, names: Vec<String>) -> Result<Pair, CertError> {
        self.leaf_with(name, names, Vec::new())
    }

    /// A leaf naming `names` (each an iPAddress entry when it parses as
    /// an address, else a dNSName one) and `dns_literals` as dNSName
    /// entries whatever they look like.
    fn leaf_with(
        &self,
        name: &str,
        names: Vec<String>,
        dns_literals: Vec<String>,
    ) -> Result<Pair, CertError> {
        check_name(name)?;
        if name == "ca" {
            return Err(CertError::BadName(name.to_owned()));
        }
        let cert = self.dir.join(format!("{name}.pem"));
        let key = self.dir.join(format!("{name}.key"));
        match (cert.exists(), key.exists()) {
            (true, true) => {
                return Ok(Pair {
                    cert,
                    key,
                    created: false,
                });
            }
            (true, false) => return Err(CertError::HalfPair(cert)),
            (false, true) => return Err(CertError::HalfPair(key)),
            (false, false) => {}
        }
        let key_pair = KeyPair::generate().map_err(crypto("generate a key"))?;
        let mut params = CertificateParams::new(names).map_err(crypto("build a certificate"))?;
        for literal in dns_literals {
            let entry = literal.try_into().map_err(crypto("build a certificate"))?;
            params.subject_alt_names.push(SanType::DnsName(entry));
        }
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let signed = params
            .signed_by(&key_pair, &self.issuer)
            .map_err(crypto("sign a certificate"))?;
        write_new(&key, &key_pair.serialize_pem(), 0o600)?;
        write_new(&cert, &signed.pem(), 0o644)?;
        Ok(Pair {
            cert,
            key,
            created: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};

    fn names_in(pem_file: &Path, name: &str) -> bool {
        let der = CertificateDer::from_pem_file(pem_file).expect("a PEM certificate");
        let cert = webpki::EndEntityCert::try_from(&der).expect("parse");
        cert.verify_is_valid_for_subject_name(&ServerName::try_from(name.to_owned()).unwrap())
            .is_ok()
    }

    /// Whether `leaf` chains to the CA in `ca`, as a TLS client checks it.
    fn signed_by(leaf: &Path, ca: &Path) -> bool {
        let ca_der = CertificateDer::from_pem_file(ca).expect("CA PEM");
        let anchor = webpki::anchor_from_trusted_cert(&ca_der).expect("trust anchor");
        let der = CertificateDer::from_pem_file(leaf).expect("leaf PEM");
        let cert = webpki::EndEntityCert::try_from(&der).expect("parse");
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            rustls_pki_types::UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .is_ok()
    }

    #[test]
    fn issues_once_and_keeps_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::open_or_create(dir.path()).unwrap();
        assert!(ca.ca.created);
        let m1 = ca.member("node1", 1).unwrap();
        assert!(m1.created);
        assert!(names_in(&m1.cert, "raftgres-member"));
        assert!(names_in(&m1.cert, "raftgres-node-1"));
        assert!(!names_in(&m1.cert, "raftgres-node-2"));
        let mode = fs::metadata(&m1.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let tools = ca.tools("tools").unwrap();
        assert!(names_in(&tools.cert, "raftgres-member"));
        assert!(!names_in(&tools.cert, "raftgres-node-1"));

        // A second run keeps the CA and node1, and issues node2 from the same CA.
        let first_ca = fs::read(&ca.ca.cert).unwrap();
        let first_m1 = fs::read(&m1.cert).unwrap();
        let again = Authority::open_or_create(dir.path()).unwrap();
        assert!(!again.ca.created);
        assert!(!again.member("node1", 1).unwrap().created);
        assert_eq!(fs::read(&again.ca.cert).unwrap(), first_ca);
        assert_eq!(fs::read(&m1.cert).unwrap(), first_m1);
        let m2 = again.member("node2", 2).unwrap();
        assert!(m2.created && names_in(&m2.cert, "raftgres-node-2"));
        assert!(
            signed_by(&m2.cert, &again.ca.cert),
            "a reopened CA signs for the first ca.pem"
        );
        assert!(signed_by(&m1.cert, &again.ca.cert));
        let other = tempfile::tempdir().unwrap();
        let stranger = Authority::open_or_create(other.path()).unwrap();
        assert!(!signed_by(&m2.cert, &stranger.ca.cert));
    }

    #[test]
    fn a_rest_certificate_names_the_addresses_clients_use() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::open_or_create(dir.path()).unwrap();
        let rest = ca
            .server("api", &["127.0.0.1".into(), "db1.example".into()])
            .unwrap();
        let der = CertificateDer::from_pem_file(&rest.cert).unwrap();
        let cert = webpki::EndEntityCert::try_from(&der).unwrap();
        for name in ["127.0.0.1", "db1.example"] {
            assert!(
                cert.verify_is_valid_for_subject_name(&ServerName::try_from(name).unwrap())
                    .is_ok(),
                "{name}"
            );
        }
        assert!(
            cert.verify_is_valid_for_subject_name(&ServerName::try_from("10.0.0.9").unwrap())
                .is_err()
        );
        assert!(ca.server("api2", &[]).is_err());
        for identity in [MEMBER_NAME.to_owned(), node_name(1)] {
            let err = ca
                .server("api3", std::slice::from_ref(&identity))
                .unwrap_err();
            assert!(err.to_string().contains("Raft member identity"), "{err}");
        }
    }

    /// Whether the certificate's DER holds `entry`, a GeneralName as
    /// encoded in subjectAltName (context tag, length, value).
    fn has_san_entry(pem_file: &Path, tag: u8, value: &[u8]) -> bool {
        let der = CertificateDer::from_pem_file(pem_file).unwrap();
        let mut entry = vec![tag, value.len() as u8];
        entry.extend_from_slice(value);
        der.windows(entry.len()).any(|w| w == entry.as_slice())
    }

    #[test]
    fn an_address_is_also_a_dns_name_for_libpq_before_15() {
        const DNS_NAME: u8 = 0x82; // [2] IMPLICIT IA5String
        const IP_ADDRESS: u8 = 0x87; // [7] IMPLICIT OCTET STRING
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::open_or_create(dir.path()).unwrap();
        let pg = ca
            .server("node1-pg", &["127.0.0.1".into(), "db1.example".into()])
            .unwrap();
        assert!(has_san_entry(&pg.cert, IP_ADDRESS, &[127, 0, 0, 1]));
        assert!(has_san_entry(&pg.cert, DNS_NAME, b"127.0.0.1"));
        assert!(has_san_entry(&pg.cert, DNS_NAME, b"db1.example"));
        // rustls still matches the address through its iPAddress entry.
        assert!(names_in(&pg.cert, "127.0.0.1"));
        assert!(names_in(&pg.cert, "db1.example"));
        assert!(!names_in(&pg.cert, "10.0.0.9"));
        // Member identities stay names only.
        let m1 = ca.member("node1", 1).unwrap();
        assert!(!has_san_entry(&m1.cert, DNS_NAME, b"127.0.0.1"));
    }

    #[test]
    fn bad_names_and_half_pairs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::open_or_create(dir.path()).unwrap();
        for bad in ["", "Node1", "a/b", "ca"] {
            assert!(
                matches!(ca.member(bad, 1), Err(CertError::BadName(_))),
                "{bad:?}"
            );
        }
        fs::write(dir.path().join("node3.pem"), "x").unwrap();
        let err = ca.member("node3", 3).unwrap_err();
        assert!(err.to_string().contains("without its pair"), "{err}");
    }
}
