//! The backup format on disk: the binary point records of `points-<shard>.bin.zst`, hashed as they are
//! written, and `manifest.json`; reading and verifying them (checksums, counts) before a restore creates anything.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupFile {
    pub name: String,
    pub points: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub rvdb_version: String,
    pub name: String,
    pub store: StoreConfig,
    pub point_count: u64,
    pub created_at: String,
    pub created_unix_ms: u64,
    pub compression: String,
    pub files: Vec<BackupFile>,
}

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

pub(super) fn write_record(
    w: &mut impl Write,
    id: &str,
    version: u64,
    vector: &[f32],
    metadata: &str,
) -> std::io::Result<()> {
    w.write_all(&(id.len() as u32).to_le_bytes())?;
    w.write_all(id.as_bytes())?;
    w.write_all(&version.to_le_bytes())?;
    w.write_all(&(vector.len() as u32).to_le_bytes())?;
    for x in vector {
        w.write_all(&x.to_le_bytes())?;
    }
    w.write_all(&(metadata.len() as u32).to_le_bytes())?;
    w.write_all(metadata.as_bytes())
}

/// One decoded backup record.
pub(super) struct Record {
    pub(super) id: String,
    pub(super) vector: Vec<f32>,
    pub(super) metadata: String,
}

/// Reads the next record; `Ok(None)` at a clean end of stream, an error on a truncated or malformed one.
pub(super) fn read_record(r: &mut impl Read, max_dim: u32) -> std::result::Result<Option<Record>, String> {
    let mut len = [0u8; 4];
    match r.read(&mut len[..1]) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    let mut exact = |buf: &mut [u8]| r.read_exact(buf).map_err(|e| format!("truncated record: {e}"));
    exact(&mut len[1..])?;
    let id_len = u32::from_le_bytes(len) as usize;
    if id_len == 0 || id_len > 512 {
        return Err(format!("bad id length {id_len}"));
    }
    let mut id = vec![0u8; id_len];
    exact(&mut id)?;
    let mut v8 = [0u8; 8];
    exact(&mut v8)?;
    let mut d4 = [0u8; 4];
    exact(&mut d4)?;
    let dim = u32::from_le_bytes(d4);
    if dim == 0 || dim > max_dim {
        return Err(format!("bad dimension {dim}"));
    }
    let mut raw = vec![0u8; dim as usize * 4];
    exact(&mut raw)?;
    exact(&mut d4)?;
    let meta_len = u32::from_le_bytes(d4) as usize;
    if meta_len > rvdb_core::types::MAX_METADATA_BYTES {
        return Err(format!("bad metadata length {meta_len}"));
    }
    let mut meta = vec![0u8; meta_len];
    exact(&mut meta)?;
    Ok(Some(Record {
        id: String::from_utf8(id).map_err(|_| "id is not UTF-8".to_string())?,
        vector: raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        metadata: String::from_utf8(meta).map_err(|_| "metadata is not UTF-8".to_string())?,
    }))
}

pub(super) fn read_manifest(dir: &Path) -> Result<Manifest> {
    let bytes =
        std::fs::read(dir.join("manifest.json")).map_err(io_err(format!("reading {}/manifest.json", dir.display())))?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::InvalidArgument(format!("backup manifest {} is not valid: {e}", dir.display())))?;
    if m.format != FORMAT || m.format_version != FORMAT_VERSION {
        return Err(GatewayError::InvalidArgument(format!(
            "backup {} has format {} v{}, this rvdb reads {FORMAT} v{FORMAT_VERSION}",
            dir.display(),
            m.format,
            m.format_version
        )));
    }
    Ok(m)
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
