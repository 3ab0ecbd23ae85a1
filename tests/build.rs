//! The source fingerprint of this checkout, which the harness requires of the `rvdb` binary it runs (see
//! `crates/rvdb/fingerprint.rs`).

include!("../crates/rvdb/fingerprint.rs");

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    emit_source_fingerprint(manifest.parent().unwrap_or(&manifest));
}
