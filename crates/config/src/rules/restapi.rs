//! `restapi`: where the agent's HTTP API listens, its TLS, and who may call
//! the mutating endpoints.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::reached_at;
use super::values::{absolute, binds_collide, listen_address};
use crate::read::Ctx;
use crate::schema;
use crate::{
    ApiCredentials, ConfigError, PostgresSettings, RaftSettings, RestApiSettings, RestApiTls,
    VerifyClient,
};

const RESTAPI_PORT_EXAMPLE: u16 = 8008;
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, RESTAPI_PORT_EXAMPLE));

pub(super) fn settings(
    ctx: &Ctx,
    file: schema::RestApi,
    raft: &RaftSettings,
    postgresql: Option<&PostgresSettings>,
) -> Result<RestApiSettings, ConfigError> {
    let listen_key = "restapi.listen";
    let (listen, shown) = match &file.listen {
        Some(text) => {
            let listen = listen_address(text, RESTAPI_PORT_EXAMPLE)
                .map_err(|reason| ctx.invalid(listen_key, reason))?;
            (listen, listen.to_string())
        }
        // The user never wrote it, so say where the address came from.
        None => (DEFAULT_LISTEN, format!("the default {DEFAULT_LISTEN}")),
    };
    let mut others = vec![("raft.listen", "the Raft server", raft.listen)];
    if let Some(pg) = postgresql {
        others.push(("postgresql.listen", "Postgres", pg.listen));
    }
    let free = |candidate: SocketAddr| !others.iter().any(|&(_, _, o)| binds_collide(candidate, o));
    if let Some(&(other_key, server, other)) =
        others.iter().find(|&&(_, _, o)| binds_collide(listen, o))
    {
        // Three candidates for at most two taken ports: one is always free.
        let example = (0..3)
            .map(|offset| SocketAddr::new(listen.ip(), RESTAPI_PORT_EXAMPLE + offset))
            .find(|&candidate| free(candidate))
            .unwrap_or(DEFAULT_LISTEN);
        return Err(ctx.invalid(
            listen_key,
            format!(
                "{shown} uses the port of {other_key} ({other}); the REST API and {server} \
                 cannot both bind it, set {listen_key} to another port, e.g. {example}"
            ),
        ));
    }
    let connect_address = reached_at(
        ctx,
        ("restapi.connect_address", file.connect_address),
        (listen_key, listen),
        RESTAPI_PORT_EXAMPLE,
        "other members and tools should connect to",
    )?;
    let authentication = file
        .authentication
        .map(|auth| credentials(ctx, auth))
        .transpose()?;
    let tls = tls(
        ctx,
        [
            ("restapi.certfile", file.certfile),
            ("restapi.keyfile", file.keyfile),
            ("restapi.cafile", file.cafile),
        ],
        file.verify_client,
    )?;
    for (i, entry) in file.allowlist.iter().enumerate() {
        if entry.trim().is_empty() {
            return Err(ctx.invalid(
                &format!("restapi.allowlist[{i}]"),
                "must be an IP address or a network in CIDR notation",
            ));
        }
    }
    if file.authenticate_reads && authentication.is_none() {
        return Err(ctx.invalid(
            "restapi.authenticate_reads",
            "needs restapi.authentication: reads would ask for credentials nobody has",
        ));
    }

    Ok(RestApiSettings {
        listen,
        connect_address,
        authentication,
        tls,
        allowlist: file.allowlist,
        allowlist_include_members: file.allowlist_include_members,
        authenticate_reads: file.authenticate_reads,
    })
}

/// Patroni's `certfile`, `keyfile`, `cafile` and `verify_client`.
fn tls(
    ctx: &Ctx,
    files: [(&str, Option<std::path::PathBuf>); 3],
    verify_client: VerifyClient,
) -> Result<Option<RestApiTls>, ConfigError> {
    for (key, path) in &files {
        if let Some(path) = path {
            ctx.check(key, absolute(path))?;
        }
    }
    let verify_key = "restapi.verify_client";
    let [(_, certfile), (keyfile_key, keyfile), (cafile_key, cafile)] = files;
    let Some(certfile) = certfile else {
        if let Some(key) = [
            (keyfile_key, keyfile.is_some()),
            (cafile_key, cafile.is_some()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
        {
            return Err(ctx.invalid(
                key,
                "is set without restapi.certfile: TLS needs the server's certificate",
            ));
        }
        if verify_client != VerifyClient::None {
            return Err(ctx.invalid(
                verify_key,
                "asks for client certificates, which need TLS: set restapi.certfile, \
                 keyfile and cafile",
            ));
        }
        return Ok(None);
    };
    let Some(keyfile) = keyfile else {
        return Err(ctx.invalid(
            keyfile_key,
            "is required with restapi.certfile: the server's private key",
        ));
    };
    if verify_client != VerifyClient::None && cafile.is_none() {
        return Err(ctx.invalid(
            cafile_key,
            "is required when verify_client asks for client certificates: the CA that \
             signs them",
        ));
    }
    Ok(Some(RestApiTls {
        certfile,
        keyfile,
        cafile,
        verify_client,
    }))
}

fn credentials(ctx: &Ctx, file: schema::BasicAuth) -> Result<ApiCredentials, ConfigError> {
    ctx.check(
        "restapi.authentication.username",
        basic_auth_username(&file.username),
    )?;
    ctx.check(
        "restapi.authentication.password",
        basic_auth_password(&file.password),
    )?;
    Ok(ApiCredentials {
        username: file.username,
        password: file.password,
    })
}

fn basic_auth_username(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err("must not be empty: give the user name clients send with HTTP basic auth".into())
    } else if value.contains(':') {
        Err(format!(
            "must not contain `:`, which HTTP basic auth uses to split user name and \
             password, got {value:?}"
        ))
    } else if value.chars().any(char::is_control) {
        Err(format!(
            "must not contain control characters, which an HTTP header cannot carry, \
             got {value:?}"
        ))
    } else {
        Ok(())
    }
}

/// Never echoes the value: messages end up in logs.
fn basic_auth_password(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err(
            "must not be empty: an empty password would let anyone call the mutating \
             endpoints"
                .into(),
        )
    } else if value.chars().any(char::is_control) {
        Err(
            "must not contain line breaks or other control characters, which an HTTP \
             header cannot carry"
                .into(),
        )
    } else {
        Ok(())
    }
}
