//! Compiles `proto/rvdb/v1/*.proto` with `protox` (a pure-Rust protoc), so no system `protoc` is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "rvdb/v1/types.proto",
        "rvdb/v1/node.proto",
        "rvdb/v1/manager.proto",
        "rvdb/v1/backup.proto",
        "rvdb/v1/store.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
