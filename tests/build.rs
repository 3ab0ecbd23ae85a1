//! The source fingerprint of this checkout, which the harness requires of the `rvdb` binary it runs (see
//! `crates/rvdb/fingerprint.rs`).

include!("../crates/rvdb/fingerprint.rs");

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().unwrap_or(&manifest).to_path_buf();
    let (fingerprint, watch) = source_fingerprint(&root);
    for path in watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rustc-env=RVDB_SOURCE_FINGERPRINT={fingerprint}");
}
