//! Stamps the binary with the source fingerprint its integration tests check (see `fingerprint.rs`).

include!("fingerprint.rs");

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    emit_source_fingerprint(manifest.parent().and_then(std::path::Path::parent).unwrap_or(&manifest));
}
