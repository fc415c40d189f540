//! Compiles `proto/` with protox, a pure-Rust compiler, so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let file = format!("{proto_dir}/raftgres.proto");
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([&file], [proto_dir])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
