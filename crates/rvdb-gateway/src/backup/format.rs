//! The backup format on disk: the binary point records of `points-<shard>.bin.zst`, hashed as they are
//! written, and `manifest.json`; reading and verifying them (checksums, counts) before a restore creates anything.
//! The records and the manifest themselves are encoded and parsed by [`rvdb_core::backup_format`] (pure, and
//! fuzzed there); this module adds the files, zstd and the checksums.

use super::*;

pub use rvdb_core::backup_format::{BackupFile, Manifest};
pub(super) use rvdb_core::backup_format::{ManifestError, parse_manifest, read_record, write_record};
pub(super) use rvdb_core::types::hex;

/// A writer that hashes what passes through it and counts bytes.
pub(super) struct HashingWriter<W: Write> {
    pub(super) inner: W,
    pub(super) hash: Sha256,
    pub(super) bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub(super) fn read_manifest(dir: &Path) -> Result<Manifest> {
    let bytes =
        std::fs::read(dir.join("manifest.json")).map_err(io_err(format!("reading {}/manifest.json", dir.display())))?;
    parse_manifest(&bytes).map_err(|e| match e {
        ManifestError::Invalid(e) => {
            GatewayError::InvalidArgument(format!("backup manifest {} is not valid: {e}", dir.display()))
        }
        ManifestError::Unsupported { format, version } => GatewayError::InvalidArgument(format!(
            "backup {} has format {format} v{version}, this rvdb reads {FORMAT} v{FORMAT_VERSION}",
            dir.display()
        )),
    })
}

/// Checks a backup completely: manifest, each file's size and SHA-256, and that every record decodes and the
/// counts match. Returns the manifest.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let m = read_manifest(dir)?;
    let corrupt = |msg: String| GatewayError::InvalidArgument(format!("backup '{}' is corrupted: {msg}", m.name));
    let mut total = 0u64;
    for f in &m.files {
        validate_file_name("backup file", &f.name)?;
        let path = dir.join(&f.name);
        let bytes = std::fs::read(&path).map_err(|e| corrupt(format!("{} cannot be read: {e}", f.name)))?;
        if bytes.len() as u64 != f.bytes {
            return Err(corrupt(format!(
                "{} has {} bytes, the manifest says {} (truncated?)",
                f.name,
                bytes.len(),
                f.bytes
            )));
        }
        if hex(&Sha256::digest(&bytes)) != f.sha256 {
            return Err(corrupt(format!("{} fails its SHA-256 checksum", f.name)));
        }
        let mut dec = zstd::Decoder::new(&bytes[..]).map_err(|e| corrupt(format!("{}: {e}", f.name)))?;
        let mut n = 0u64;
        while read_record(&mut dec, m.store.dimension).map_err(|e| corrupt(format!("{}: {e}", f.name)))?.is_some() {
            n += 1;
        }
        if n != f.points {
            return Err(corrupt(format!("{} holds {n} points, the manifest says {}", f.name, f.points)));
        }
        total += n;
    }
    if total != m.point_count {
        return Err(corrupt(format!("{total} points in files, the manifest says {}", m.point_count)));
    }
    Ok(m)
}
