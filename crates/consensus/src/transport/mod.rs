//! How Raft messages and forwarded requests travel: gRPC between agents, or
//! an in-memory router with injectable partitions for tests.

pub mod bounds;
pub mod grpc;
pub mod incoming;
pub mod memory;
pub mod server;
pub mod tls;

use serde::Serialize;
use serde::de::DeserializeOwned;

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own plain data types to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("cannot decode {what}: {e}"))
}
