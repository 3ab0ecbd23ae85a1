//! Stamps the binary with the source fingerprint its integration tests check (see `fingerprint.rs`).

include!("fingerprint.rs");

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().and_then(std::path::Path::parent).unwrap_or(&manifest).to_path_buf();
    let (fingerprint, watch) = source_fingerprint(&root);
    for path in watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rustc-env=RVDB_SOURCE_FINGERPRINT={fingerprint}");
}
