//! Generated gRPC code for `proto/raftgres.proto`; the only crate that holds it.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("raftgres.v1");
}
